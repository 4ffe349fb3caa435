//! Issue 31, points 5 and 6: schema changes while streaming, and MariaDB binlog features.
//!
//! The dangerous case is a stream that is behind an `ALTER TABLE` (stopped, or lagging): rows
//! logged before it must not be read with the table's later columns. These tests make the DDL
//! and the rows around it while etlhost is stopped, then start it and compare the graph with
//! MySQL, or the exact error. The shared server logs column names (`binlog_row_metadata=FULL`,
//! set by `cargo xtask services`); a server of its own checks the path without them.

use std::path::Path;

use mysql_async::prelude::Queryable;
use xtask::mariadb::ExtraMariaDb;

use crate::stream::{
    assert_graph_equals, first_error, head, mysql_rows, private_pool, run_to_end, start_stream,
    stream_spec, Running,
};
use crate::support::{etlhost_command, exec, graph, mysql, scratch_dir};

async fn all(pool: &mysql_async::Pool, statements: &[&str]) {
    for sql in statements {
        exec(pool, sql).await;
    }
}

/// Where the newest event of `kind` (as `SHOW BINLOG EVENTS` names it) after a table map of
/// `table` ends in the head's file (other tests write to the same log meanwhile).
async fn last_event_end(pool: &mysql_async::Pool, table: &str, kind: &str) -> String {
    let (file, _) = head(pool).await;
    let mut c = pool.get_conn().await.unwrap();
    let events: Vec<(String, u64, String, u32, u64, String)> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap();
    let mut mapped = false;
    let mut end = None;
    for (_, _, event, _, event_end, info) in events {
        if event == "Table_map" {
            mapped = info.ends_with(&format!("({table})"));
        } else if mapped && event == kind {
            end = Some(event_end);
            mapped = false;
        }
    }
    let end = end.unwrap_or_else(|| panic!("no {kind} event of {table} in {file}"));
    format!("{file}:{end}")
}

/// Streams until caught up, then stops (SIGTERM, exit 130): later changes find it behind.
async fn stream_then_stop(pool: &mysql_async::Pool, spec: &Path, dir: &Path, fresh: bool) {
    let mut job = Running::start(spec, dir, fresh);
    job.wait_until_acked(&head(pool).await);
    assert_eq!(job.terminate(), 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_columns_added_while_stopped_or_caught_up_are_followed_by_name() {
    let pool = mysql("ss_lag").await;
    let _g = graph("ss_lag").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, a VARCHAR(20), b INT, c VARCHAR(20))",
    )
    .await;
    exec(&pool, "INSERT INTO person VALUES (1, 'a1', 1, 'c1')").await;
    let (dir, spec, mut job) = start_stream("ss_lag");
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(job.terminate(), 130);
    // Read by position with the table's later columns, (2, 'a2', 2, 'c2') would put 2 under
    // `m` and 'c2' under `b`: by name, the columns added since are NULL, as MySQL has them.
    all(
        &pool,
        &[
            "INSERT INTO person VALUES (2, 'a2', 2, 'c2')",
            "INSERT INTO person VALUES (3, 'a3', 3, 'c3')",
            "ALTER TABLE person ADD COLUMN m INT AFTER a",
            "INSERT INTO person VALUES (4, 'a4', 44, 4, 'c4')",
            "UPDATE person SET c = 'c2x' WHERE id = 2",
            "UPDATE person SET m = 11 WHERE id = 1",
            "ALTER TABLE person ADD COLUMN z VARCHAR(10) NULL DEFAULT NULL FIRST",
            "DELETE FROM person WHERE id = 3",
            "INSERT INTO person VALUES ('z5', 5, 'a5', 55, 5, 'c5')",
        ],
    )
    .await;
    let mut job = Running::start(&spec, &dir, false);
    job.wait_until_acked(&head(&pool).await);
    assert_graph_equals(&mysql_rows(&pool).await, "ss_lag");
    // Caught up (each change read before the next is made), the same, and a type changed
    // within its kind.
    for sql in [
        "ALTER TABLE person ADD COLUMN k INT AFTER id",
        "INSERT INTO person VALUES ('z6', 6, 66, 'a6', 6, 6, 'c6')",
        "ALTER TABLE person MODIFY m BIGINT, MODIFY c VARCHAR(40)",
        "UPDATE person SET c = CONCAT(c, '!'), m = 9000000000 WHERE id = 6",
    ] {
        exec(&pool, sql).await;
        job.wait_until_acked(&head(&pool).await);
    }
    assert_graph_equals(&mysql_rows(&pool).await, "ss_lag");
    assert_eq!(job.terminate(), 130);
}

/// Where the statement `sql` of database `db` ends in the binlog's head file.
async fn statement_end(pool: &mysql_async::Pool, db: &str, sql: &str) -> String {
    let (file, _) = head(pool).await;
    let mut c = pool.get_conn().await.unwrap();
    let events: Vec<(String, u64, String, u32, u64, String)> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap();
    let info = format!("use `{db}`; {sql}");
    let end = events
        .iter()
        .rev()
        .find(|e| e.2 == "Query" && e.5.starts_with(&info))
        .unwrap_or_else(|| panic!("no `{sql}` in {file}"))
        .4;
    format!("{file}:{end}")
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_an_alter_that_rewrites_every_row_stops_the_stream_at_the_statement() {
    let pool = mysql("ss_alter").await;
    let _g = graph("ss_alter").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, a VARCHAR(20), b INT)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO person VALUES (1, 'a1', 1), (2, 'a2', 2)",
    )
    .await;
    let (dir, spec, mut job) = start_stream("ss_alter");
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(job.terminate(), 130);
    // Each statement changes rows 1 and 2 in MySQL without a row event; their nodes would keep
    // `b`, lack `d`, keep `a`.
    for (sql, what) in [
        (
            "ALTER TABLE person DROP COLUMN b",
            "drops column `b` from every row",
        ),
        (
            "ALTER TABLE person ADD COLUMN d INT NOT NULL DEFAULT 5",
            "fills the new column `d` of every row",
        ),
        (
            "ALTER TABLE person RENAME COLUMN a TO aa",
            "renames column `a` to `aa` in every row",
        ),
    ] {
        exec(&pool, sql).await;
        let at = statement_end(&pool, "ss_alter", sql).await;
        let (code, stderr) = run_to_end(&spec, &[]);
        assert_eq!(code, 3, "{stderr}");
        assert_eq!(
            first_error(&stderr),
            format!(
                "error: job failed: plugin mysql: the binlog at {at} has `{sql}`, which {what} of \
                 the streamed table ss_alter.person without row events (nodes written before would \
                 keep the old values): the stream stops here rather than let the target drift from \
                 MySQL; run the flow again with --fresh for a new snapshot"
            )
        );
        // As the error says: a new snapshot, and the stream goes on.
        stream_then_stop(&pool, &spec, &dir, true).await;
        assert_graph_equals(&mysql_rows(&pool).await, "ss_alter");
    }
    // Caught up, with the table's columns read before: a type of another kind converts every
    // row (a widening within its kind passes).
    let mut job = Running::start(&spec, &dir, false);
    exec(&pool, "INSERT INTO person VALUES (3, 'a3', 3)").await;
    job.wait_until_acked(&head(&pool).await);
    exec(
        &pool,
        "ALTER TABLE person MODIFY d BIGINT NOT NULL DEFAULT 5",
    )
    .await;
    job.wait_until_acked(&head(&pool).await);
    let sql = "ALTER TABLE person MODIFY d VARCHAR(10)";
    exec(&pool, sql).await;
    let at = statement_end(&pool, "ss_alter", sql).await;
    let start = std::time::Instant::now();
    while !job.stderr().contains("error: ") {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the stream goes on after `{sql}`"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stderr = job.stderr();
    assert_eq!(job.terminate(), 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has `{sql}`, which converts \
             column `d` of every row to varchar of the streamed table ss_alter.person without row \
             events (nodes written before would keep the old values): the stream stops here \
             rather than let the target drift from MySQL; run the flow again with --fresh for a \
             new snapshot"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_a_rename_or_a_type_change_behind_the_stream_stops_it_clearly() {
    let pool = mysql("ss_stop").await;
    let _g = graph("ss_stop").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, a VARCHAR(20), n INT)",
    )
    .await;
    let (dir, spec, mut job) = start_stream("ss_stop");
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(job.terminate(), 130);
    exec(&pool, "INSERT INTO person VALUES (1, 'a1', 1)").await;
    let at = last_event_end(&pool, "ss_stop.person", "Write_rows_v1").await;
    exec(&pool, "ALTER TABLE person CHANGE a b VARCHAR(20)").await;
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has rows of ss_stop.person with \
             column `a` that the table no longer has, and the table has column `b` that these rows \
             lack: a column was renamed (or dropped and another added) after they were logged, and \
             which one cannot be told; the stream stops here rather than guess: run the flow again \
             with --fresh for a new snapshot"
        )
    );
    // The name back, another type: the values logged as INT cannot pass as VARCHAR.
    all(
        &pool,
        &[
            "ALTER TABLE person CHANGE b a VARCHAR(20)",
            "ALTER TABLE person MODIFY n VARCHAR(20)",
        ],
    )
    .await;
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has rows of ss_stop.person logged \
             when its column `n` was int; it is varchar now (ALTER TABLE ... MODIFY or CHANGE \
             since), and those values cannot be converted to the new type safely; the stream stops \
             here rather than guess: run the flow again with --fresh for a new snapshot"
        )
    );
    // As the error says: a new snapshot, and the stream goes on.
    stream_then_stop(&pool, &spec, &dir, true).await;
    assert_graph_equals(&mysql_rows(&pool).await, "ss_stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_without_column_names_a_changed_table_behind_the_stream_stops_it() {
    let dir = scratch_dir("ss_nometa");
    // MariaDB's default binlog_row_metadata (NO_LOG): the binlog has no column names.
    let server = ExtraMariaDb::start(
        &dir.join("srv"),
        &[
            "--log-bin={dir}/binlog".into(),
            "--binlog-format=ROW".into(),
            "--server-id=1".into(),
        ],
    )
    .unwrap();
    let pool = private_pool(&server, "ss_nometa").await;
    let _g = graph("ss_nometa").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, a VARCHAR(20), b INT)",
    )
    .await;
    let url = format!("mysql://127.0.0.1:{}/ss_nometa", server.port);
    let spec = dir.join("ss_nometa.yaml");
    std::fs::write(&spec, stream_spec("ss_nometa", &url, "ss_nometa", &dir, "")).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    assert!(
        job.stderr().contains(
            "binlog_row_metadata is NO_LOG: the binlog does not name a row's columns, so a schema \
             change made while the stream is behind is checked by column count and types only"
        ),
        "{}",
        job.stderr()
    );
    assert_eq!(job.terminate(), 130);
    // A type changed within its kind keeps positions and kinds: followed.
    all(
        &pool,
        &[
            "INSERT INTO person VALUES (1, 'a1', 1)",
            "ALTER TABLE person MODIFY b BIGINT",
            "INSERT INTO person VALUES (2, 'a2', 9000000000)",
        ],
    )
    .await;
    stream_then_stop(&pool, &spec, &dir, false).await;
    assert_graph_equals(&mysql_rows(&pool).await, "ss_nometa");
    // A column dropped: three values, two columns, and nothing to say which two.
    exec(&pool, "INSERT INTO person VALUES (3, 'a3', 3)").await;
    let at = last_event_end(&pool, "ss_nometa.person", "Write_rows_v1").await;
    exec(&pool, "ALTER TABLE person DROP COLUMN a").await;
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has rows of ss_nometa.person with \
             3 columns, but the table has 2 now: its columns changed (ALTER TABLE) after these rows \
             were logged, and the binlog does not name them, so their values cannot be placed \
             safely; the stream stops here rather than guess: run the flow again with --fresh for \
             a new snapshot, and SET GLOBAL binlog_row_metadata = FULL (and \
             binlog-row-metadata=FULL in the server's configuration) so that later schema changes \
             are followed by column name"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_mixed_transactions_load_data_and_one_phase_xa_stream_and_a_prepared_xa_stops() {
    let pool = mysql("ss_feat").await;
    let _g = graph("ss_feat").await;
    all(
        &pool,
        &[
            "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(40))",
            "CREATE TABLE other (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let (dir, spec, mut job) = start_stream("ss_feat");
    job.wait_until_acked(&head(&pool).await);
    // One transaction over a streamed table and another one.
    let mut c = pool.get_conn().await.unwrap();
    for sql in [
        "BEGIN",
        "INSERT INTO person VALUES (1, 'p1'), (2, 'p2')",
        "INSERT INTO other VALUES (1)",
        "UPDATE person SET name = 'p1x' WHERE id = 1",
        "INSERT INTO other VALUES (2)",
        "DELETE FROM person WHERE id = 2",
        "COMMIT",
        // Logged as an ordinary transaction.
        "XA START 'ss1'",
        "INSERT INTO person VALUES (100, 'xa one phase')",
        "XA END 'ss1'",
        "XA COMMIT 'ss1' ONE PHASE",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    // LOAD DATA is logged as row events.
    let csv = dir.join("people.csv");
    let lines: String = (10..60).map(|i| format!("{i},loaded {i}\n")).collect();
    std::fs::write(&csv, lines).unwrap();
    let load = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE person FIELDS TERMINATED BY ','",
        csv.display()
    );
    let out = std::process::Command::new("mariadb")
        .args(["-uroot", "--local-infile=1", "ss_feat", "-e", &load])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    job.wait_until_acked(&head(&pool).await);
    assert_graph_equals(&mysql_rows(&pool).await, "ss_feat");
    assert_eq!(mysql_rows(&pool).await.len(), 52);
    assert_eq!(job.terminate(), 130);

    // A two-phase XA is logged at PREPARE and decided later (maybe rolled back): refused at
    // its PREPARE. Rows of a table outside the spec are ignored, said once.
    for sql in [
        "INSERT INTO other VALUES (3)",
        "INSERT INTO other VALUES (4)",
        "XA START 'ss2'",
        "INSERT INTO person VALUES (200, 'two phase')",
        "XA END 'ss2'",
        "XA PREPARE 'ss2'",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let at = last_event_end(&pool, "ss_feat.person", "XA_prepare").await;
    c.query_drop("XA ROLLBACK 'ss2'").await.unwrap();
    let out = etlhost_command()
        .arg("run")
        .arg(&spec)
        .env("RUST_LOG", "info")
        .env("ETLHOST_HOLDER", "e2e")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr
            .matches("the binlog has changes of ss_feat.other, which no flow streams: they are ignored (said once per table)")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has a prepared XA transaction (XA \
             PREPARE) that changes the streamed table person: its rows are logged at PREPARE and \
             it may still be rolled back, so etlhost does not stream two-phase XA; the stream \
             stops here rather than risk applying a rolled-back transaction. Commit such changes \
             with XA COMMIT ... ONE PHASE or an ordinary transaction, then run the flow again with \
             --fresh for a new snapshot"
        )
    );
    assert_graph_equals(&mysql_rows(&pool).await, "ss_feat");
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_compressed_binlog_events_are_refused_at_start_and_stop_the_stream() {
    let dir = scratch_dir("ss_compress");
    let server = ExtraMariaDb::start(
        &dir.join("srv"),
        &[
            "--log-bin={dir}/binlog".into(),
            "--binlog-format=ROW".into(),
            "--server-id=1".into(),
            "--log-bin-compress=ON".into(),
        ],
    )
    .unwrap();
    let pool = private_pool(&server, "ss_compress").await;
    let _g = graph("ss_compress").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, note VARCHAR(1000))",
    )
    .await;
    let url = format!("mysql://127.0.0.1:{}/ss_compress", server.port);
    let spec = dir.join("ss_compress.yaml");
    std::fs::write(
        &spec,
        stream_spec("ss_compress", &url, "ss_compress", &dir, ""),
    )
    .unwrap();
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        "error: cannot stream from the source: plugin mysql: log_bin_compress is ON: the server \
         writes compressed binlog events, which etlhost cannot read: SET GLOBAL log_bin_compress \
         = OFF (and log-bin-compress=OFF in the server's configuration); events already written \
         compressed cannot be streamed, so start with --fresh after switching it off"
    );
    // Switched on while streaming: the first compressed event (a row above
    // log_bin_compress_min_len) stops the stream.
    server
        .root_sql("SET GLOBAL log_bin_compress = OFF")
        .unwrap();
    stream_then_stop(&pool, &spec, &dir, true).await;
    server.root_sql("SET GLOBAL log_bin_compress = ON").unwrap();
    exec(&pool, "INSERT INTO person VALUES (1, REPEAT('x', 600))").await;
    let at = last_event_end(&pool, "ss_compress.person", "Write_rows_compressed_v1").await;
    server
        .root_sql("SET GLOBAL log_bin_compress = OFF")
        .unwrap();
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has a compressed event (type \
             166; log_bin_compress was switched on after the stream started), which etlhost \
             cannot read: the stream stops here rather than pass over its changes; SET GLOBAL \
             log_bin_compress = OFF (and log-bin-compress=OFF in the server's configuration), \
             then run the flow again with --fresh for a new snapshot"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ss_a_replica_with_log_slave_updates_streams_what_its_primary_wrote() {
    let dir = scratch_dir("ss_replica");
    let binlog = |id: &str| {
        vec![
            "--log-bin={dir}/binlog".to_string(),
            "--binlog-format=ROW".into(),
            "--binlog-row-metadata=FULL".into(),
            format!("--server-id={id}"),
        ]
    };
    let primary = ExtraMariaDb::start(&dir.join("primary"), &binlog("1")).unwrap();
    let mut args = binlog("2");
    args.push("--log-slave-updates=ON".into());
    let replica = ExtraMariaDb::start(&dir.join("replica"), &args).unwrap();
    // From the primary's present: its log begins with the creation of the user both have.
    let from = primary.root_sql("SELECT @@gtid_binlog_pos").unwrap();
    replica
        .root_sql(&format!(
            "SET GLOBAL gtid_slave_pos = '{}'; CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'etl', \
             MASTER_PASSWORD = 'etl', MASTER_USE_GTID = slave_pos; START SLAVE",
            from.trim(),
            primary.port
        ))
        .unwrap();
    let on_primary = private_pool(&primary, "ss_replica").await;
    exec(
        &on_primary,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(40))",
    )
    .await;
    exec(
        &on_primary,
        "INSERT INTO person VALUES (1, 'p1'), (2, 'p2')",
    )
    .await;
    let on_replica = mysql_async::Pool::new(
        format!("mysql://etl:etl@127.0.0.1:{}/mysql", replica.port).as_str(),
    );
    let replicated = |pool: mysql_async::Pool| async move {
        let start = std::time::Instant::now();
        loop {
            let mut c = pool.get_conn().await.unwrap();
            let n: Option<i64> = c
                .query_first("SELECT COUNT(*) FROM ss_replica.person")
                .await
                .ok()
                .flatten();
            if n == Some(2) {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "not replicated"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    replicated(on_replica.clone()).await;
    let _g = graph("ss_replica").await;
    let url = format!("mysql://127.0.0.1:{}/ss_replica", replica.port);
    let spec = dir.join("ss_replica.yaml");
    std::fs::write(
        &spec,
        stream_spec("ss_replica", &url, "ss_replica", &dir, ""),
    )
    .unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&on_replica).await);
    // Changes made on the primary reach the replica's binlog (server id 1) and the graph.
    all(
        &on_primary,
        &[
            "INSERT INTO person VALUES (3, 'p3')",
            "UPDATE person SET name = 'p1x' WHERE id = 1",
            "DELETE FROM person WHERE id = 2",
            "INSERT INTO person VALUES (2, 'p2 again')",
        ],
    )
    .await;
    let primary_head = head(&on_primary).await;
    // The replica has applied everything once its gtid_slave_pos reaches the primary's.
    let gtid: String = {
        let mut c = on_primary.get_conn().await.unwrap();
        c.query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap()
    };
    let start = std::time::Instant::now();
    loop {
        let mut c = on_replica.get_conn().await.unwrap();
        let at: String = c
            .query_first("SELECT @@gtid_slave_pos")
            .await
            .unwrap()
            .unwrap();
        if at == gtid {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the replica stays at {at}, the primary is at {gtid} ({primary_head:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (file, _) = head(&on_replica).await;
    let events: Vec<(String, u64, String, u32, u64, String)> = on_replica
        .get_conn()
        .await
        .unwrap()
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.2 == "Write_rows_v1" && e.3 == 1),
        "the replica's binlog has no rows of server 1: {events:?}"
    );
    job.wait_until_acked(&head(&on_replica).await);
    assert_graph_equals(&mysql_rows(&on_primary).await, "ss_replica");
    assert_eq!(job.terminate(), 130);
}

/// A row change the binlog does not carry as rows (an UPDATE logged as a statement by a session
/// with binlog_format = STATEMENT) stops the stream at its event; a rolled-back transaction that
/// also changed a non-transactional table leaves the graph as MySQL has it.
#[tokio::test(flavor = "multi_thread")]
async fn ss_a_row_change_logged_as_a_statement_stops_the_stream_and_a_rollback_is_followed() {
    let pool = mysql("ss_stmt").await;
    let _g = graph("ss_stmt").await;
    all(
        &pool,
        &[
            "CREATE TABLE person (id INT PRIMARY KEY, a VARCHAR(20), b INT)",
            "CREATE TABLE audit (id INT) ENGINE = MyISAM",
            "INSERT INTO person VALUES (1, 'a1', 1), (2, 'a2', 2)",
        ],
    )
    .await;
    let (dir, spec, mut job) = start_stream("ss_stmt");
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(job.terminate(), 130);

    let sql = "UPDATE person SET b = b + 1";
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop("SET SESSION binlog_format = 'STATEMENT'")
        .await
        .unwrap();
    c.query_drop(sql).await.unwrap();
    drop(c);
    let at = statement_end(&pool, "ss_stmt", sql).await;
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog at {at} has `{sql}`, a change of the \
             streamed table ss_stmt.person logged as a statement rather than as rows \
             (binlog_format STATEMENT or MIXED in that session, or a MEMORY table emptied at a \
             restart): the stream stops here rather than pass over it; keep binlog_format=ROW for \
             every session, then run the flow again with --fresh for a new snapshot"
        )
    );
    stream_then_stop(&pool, &spec, &dir, true).await;
    assert_graph_equals(&mysql_rows(&pool).await, "ss_stmt");

    // A transaction that changed a streamed table and a MyISAM one, then rolled back: MariaDB
    // logs the MyISAM row alone and drops the undone ones, so the stream follows exactly (the
    // follower still stops at a ROLLBACK that ends streamed changes, which MySQL may write).
    let mut c = pool.get_conn().await.unwrap();
    for s in [
        "BEGIN",
        "UPDATE person SET b = 10 WHERE id = 1",
        "INSERT INTO audit VALUES (1)",
        "ROLLBACK",
    ] {
        c.query_drop(s).await.unwrap();
    }
    drop(c);
    stream_then_stop(&pool, &spec, &dir, false).await;
    assert_graph_equals(&mysql_rows(&pool).await, "ss_stmt");
}
