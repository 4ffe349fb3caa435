//! Against the real Bolt server `cargo xtask services` starts (ArcadeDB on 127.0.0.1:7687,
//! database `test`, user `root`): what the sink relies on, without the sink.

use std::collections::BTreeMap;
use std::time::Duration;

use etlhost_bolt_client::packstream::{self as ps, encode, Ps};
use etlhost_bolt_client::{Auth, BoltError, Connection, Settings};

const ADDRESS: &str = "127.0.0.1:7687";
const DATABASE: Option<&str> = Some("test");

fn connect() -> Connection {
    let settings = Settings {
        auth: Auth::Basic {
            user: "root",
            password: "etlhost-pass",
        },
        tls: None,
        routing: None,
        timeout: Duration::from_secs(10),
    };
    Connection::connect(ADDRESS, &settings).unwrap_or_else(|e| {
        panic!("no Bolt server at {ADDRESS} ({e}): start it with `cargo xtask services`")
    })
}

/// All records of a read, with its field names.
fn read(conn: &mut Connection, query: &str, params: &Ps) -> (Vec<String>, Vec<Vec<Ps>>) {
    let fields = conn
        .run_read(DATABASE, query, |m| encode(m, params))
        .unwrap();
    let (records, more) = conn.pull(-1).unwrap();
    assert!(!more);
    (fields, records)
}

fn no_params() -> Ps {
    Ps::Map(BTreeMap::new())
}

#[test]
fn return_one() {
    let mut conn = connect();
    assert!(conn.version() >= (4, 0), "{:?}", conn.version());
    let (fields, records) = read(&mut conn, "RETURN 1 AS one", &no_params());
    assert_eq!(fields, ["one"]);
    assert_eq!(records, [vec![Ps::Int(1)]]);
}

#[test]
fn parameters_come_back_unchanged() {
    let mut conn = connect();
    let x = Ps::List(vec![
        Ps::Int(i64::MIN),
        Ps::Int(40_000),
        Ps::Float(1.5),
        Ps::String("é".repeat(300)),
        Ps::Bool(true),
        Ps::Null,
    ]);
    let params = Ps::Map(BTreeMap::from([("x".to_string(), x.clone())]));
    let (_, records) = read(&mut conn, "RETURN $x AS x", &params);
    assert_eq!(records, [vec![x]]);
}

#[test]
fn a_transaction_writes_and_a_failure_leaves_the_connection_usable() {
    let mut conn = connect();
    let label = "BoltClientTest";
    conn.run_in_transaction(DATABASE, &format!("MATCH (n:{label}) DELETE n"), |m| {
        ps::map_header(m, 0)
    })
    .unwrap();
    conn.run_in_transaction(
        DATABASE,
        &format!("UNWIND $rows AS row CREATE (:{label} {{id: row.id}})"),
        |m| {
            ps::map_header(m, 1);
            ps::string(m, "rows");
            ps::list_header(m, 3);
            for id in 1..=3 {
                ps::map_header(m, 1);
                ps::string(m, "id");
                ps::int(m, id);
            }
        },
    )
    .unwrap();

    let err = conn
        .run_in_transaction(DATABASE, "CREATE (:Broken", |m| ps::map_header(m, 0))
        .unwrap_err();
    assert!(
        matches!(&err, BoltError::Server { code, .. } if code.starts_with("Neo.ClientError.")),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    let query = format!("MATCH (n:{label}) RETURN n.id AS id ORDER BY id");
    let (_, records) = read(&mut conn, &query, &no_params());
    assert_eq!(records, [1, 2, 3].map(|i| vec![Ps::Int(i)]));
    conn.run_in_transaction(DATABASE, &format!("MATCH (n:{label}) DELETE n"), |m| {
        ps::map_header(m, 0)
    })
    .unwrap();
}

#[test]
fn a_wrong_password_is_refused() {
    let settings = Settings {
        auth: Auth::Basic {
            user: "root",
            password: "not-the-password",
        },
        tls: None,
        routing: None,
        timeout: Duration::from_secs(10),
    };
    let refused = Connection::connect(ADDRESS, &settings).and_then(|mut c| {
        c.run_read(DATABASE, "RETURN 1", |m| ps::map_header(m, 0))
            .map(|_| ())
    });
    assert!(
        matches!(refused, Err(BoltError::Server { .. })),
        "{:?}",
        refused.err()
    );
}
