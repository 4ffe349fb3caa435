//! The reader's speed against a bare tokio-postgres binary COPY loop over the same rows:
//! `cargo run --release -p etlhost-postgres --example copy_speed -- URL USER PASSWORD TABLE`.
//! The bare loop only counts the COPY's bytes; the reader decodes every value and encodes the
//! batches the host receives.

use std::time::Instant;

use etlhost_plugin_sdk::{codec, Options, Source, Split, SplitReader};
use etlhost_postgres::{PgOptions, PgSource};
use futures_util::StreamExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, user, password, table] = &args[..] else {
        panic!("usage: copy_speed URL USER PASSWORD TABLE");
    };
    let options: PgOptions = serde_json::from_value(serde_json::json!({
        "url": url, "user": user, "password": password, "table": table, "tls": "disable",
    }))
    .unwrap();
    options.check().unwrap();
    for round in 0..3 {
        let bare = bare_copy(url, user, password, table);
        let start = Instant::now();
        let source = PgSource::open(options.clone()).unwrap_or_else(|e| panic!("{e:?}"));
        let split = Split {
            id: 0,
            range: None,
            cursor: None,
            stream: None,
        };
        let mut reader = source.open_split(&split).unwrap();
        let mut rows = 0;
        while let Some(b) = reader.next_encoded().unwrap() {
            rows += codec::row_count(&b).unwrap();
        }
        let ours = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {rows} rows, reader {ours:.3} s, bare COPY {:.3} s: {:.2} of the bare speed",
            bare,
            bare / ours
        );
    }
}

fn bare_copy(url: &str, user: &str, password: &str, table: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.user(user).password(password);
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let sql = format!("COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)");
        let stream = client.copy_out(&sql).await.unwrap();
        let mut stream = std::pin::pin!(stream);
        let mut bytes = 0;
        while let Some(chunk) = stream.next().await {
            bytes += chunk.unwrap().len();
        }
        assert!(bytes > 0);
        start.elapsed().as_secs_f64()
    })
}
