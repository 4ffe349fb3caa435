//! The shop schema of `postgres_schema.rs` (issue 33, point 8) through a stream: a spec from
//! `etlhost init --mode stream` snapshots it, then follows every table while it changes (inserts,
//! foreign-key moves, an enum, a domain and an array changed, a composite key changed with ON
//! UPDATE CASCADE, a row moved between partitions, deletes with ON DELETE CASCADE, TRUNCATE of a
//! join table and of the partitioned table), through a SIGKILL and a restart. After each step
//! `etlhost verify` finds every flow equal, and the graph's nodes and relationships are counted
//! exactly. Last, a TRUNCATE of one partition, which PostgreSQL does not publish through the
//! parent: verify names the row it left in the graph, and is clean again once that row is back.
//!
//! Synchronisation polls `etlhost verify` until it is clean (a generous deadline), so no step
//! depends on timing.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::postgres_schema::{etlhost, shop_schema};
use crate::stream::{cypher, Running};
use crate::support::{pg_init, pg_sql, scratch_dir, Output};

const DB: &str = "e_pgshop_stream";

/// What `etlhost verify` ends with when every flow of the shop matches.
const CLEAN: &str = "\nverify: 11 of 11 flows match, 0 different, 0 not verifiable\n";

/// Polls `check` until it answers `Ok`; fails with its last answer when the job exits or two
/// minutes pass.
fn until(job: &mut Running, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        if let Some(code) = job.exited() {
            panic!("etlhost exited ({code}):\n{}", job.stderr());
        }
        let Err(last) = check() else { return };
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{last}\n{}",
            job.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until `etlhost verify` finds every flow equal, then checks the graph's counts.
fn settles(job: &mut Running, spec: &Path, want: &str) {
    until(job, || {
        let out = etlhost("verify", spec, &[]);
        match out.code == 0 && out.stdout.ends_with(CLEAN) {
            true => Ok(()),
            false => Err(format!(
                "the graph never equalled the shop: verify exited {}:\n{}{}",
                out.code, out.stdout, out.stderr
            )),
        }
    });
    assert_eq!(counts(), want);
}

/// The graph's nodes by label and relationships by `Start-TYPE->End`, with their counts.
fn counts() -> String {
    let rows = |q: &str| -> Vec<String> {
        cypher(DB, q)
            .iter()
            .map(|r| format!("{} {}", r["k"].as_str().unwrap(), r["n"]))
            .collect()
    };
    let nodes = rows(
        "MATCH (n) WITH labels(n)[0] AS k WHERE NOT k STARTS WITH 'Etlhost' \
         RETURN k, count(*) AS n ORDER BY k",
    );
    let rels = rows(
        "MATCH (a)-[r]->(b) RETURN labels(a)[0] + '-' + type(r) + '->' + labels(b)[0] AS k, \
         count(r) AS n ORDER BY k",
    );
    format!("{}; {}", nodes.join(", "), rels.join(", "))
}

/// What [`counts`] gives for a shop of `[address, customer, delivery, event, product]` nodes,
/// 4 orders and `items` order items: every address, delivery, event and order has its one
/// foreign key's relationship.
fn shop(nodes: [u32; 5], items: u32) -> String {
    let [a, c, d, e, p] = nodes;
    format!(
        "Address {a}, Customer {c}, Delivery {d}, Event {e}, Orders 4, Product {p}; \
         Address-CUSTOMER->Customer {a}, Delivery-ADDRESS->Address {d}, \
         Event-CUSTOMER->Customer {e}, Orders-CUSTOMER->Customer 4, Orders-ORDER_ITEM->Product {items}"
    )
}

/// A property of the one node a Cypher pattern `m` matches, as text.
fn prop(m: &str, expr: &str) -> String {
    let rows = cypher(DB, &format!("MATCH {m} RETURN {expr} AS v"));
    assert_eq!(rows.len(), 1, "{m}: {rows:?}");
    match &rows[0]["v"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn pg_stream_a_shop_schema_through_changes_a_kill_and_truncates() {
    shop_schema(DB);
    xtask::graph::fresh_graph(DB).expect("create graph database");
    let dir = scratch_dir(DB);
    let spec = dir.join("shop.yaml");
    let out: Output = pg_init(DB, DB, &spec, &["--mode", "stream"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut job = Running::start(&spec, &dir, true);
    settles(&mut job, &spec, &shop([3, 3, 2, 6, 3], 5));

    // Inserts in every table, then updates and deletes, each statement its own transaction.
    pg_sql(
        DB,
        "INSERT INTO customer VALUES (4, 'Dee', 'dee@shop.test', '{new}');
         INSERT INTO product VALUES ('P4', 'Nails', 1.25);
         INSERT INTO orders VALUES (14, 4, 'new', '2025-04-04');
         INSERT INTO order_item VALUES (14, 'P4', 2), (14, 'P1', 1);
         INSERT INTO address VALUES (4, 1, 'Paris');
         INSERT INTO delivery VALUES (102, 4, 1);
         INSERT INTO event VALUES (7, '2024-08-01', 4, 'buy'), (8, '2025-03-03', 2, 'visit');",
    );
    for sql in [
        // A foreign-key move; the enum; the domain and the array; a join table's property.
        "UPDATE orders SET customer_id = 2 WHERE id = 11",
        "UPDATE orders SET status = 'shipped' WHERE id = 10",
        "UPDATE customer SET email = 'ann@new.test', tags = '{vip,early,gold}' WHERE id = 1",
        "UPDATE customer SET tags = '{}' WHERE id = 3",
        "UPDATE order_item SET qty = 7 WHERE order_id = 10 AND sku = 'P2'",
        // A composite foreign key moved (Köln to Berlin), then Berlin's key changed: ON UPDATE
        // CASCADE moves the delivery's key columns with it, and PostgreSQL logs that update.
        "UPDATE delivery SET address_n = 1 WHERE id = 100",
        "UPDATE address SET n = 3 WHERE customer_id = 1 AND n = 1",
        // The partition key: out of event_2024 into event_2025 (a delete and an insert on the
        // partitions, published as the partitioned table's).
        "UPDATE event SET at = '2025-02-01' WHERE id = 1",
        // ON DELETE CASCADE: order 12's item goes with it.
        "DELETE FROM orders WHERE id = 12",
        "DELETE FROM event WHERE id = 2",
    ] {
        pg_sql(DB, sql);
    }
    settles(&mut job, &spec, &shop([4, 4, 3, 7, 4], 6));
    assert_eq!(prop("(:Orders {id: 11})-->(c:Customer)", "c.id"), "2");
    assert_eq!(prop("(o:Orders {id: 10})", "o.status"), "shipped");
    assert_eq!(prop("(c:Customer {id: 1})", "c.email"), "ann@new.test");
    assert_eq!(
        prop("(c:Customer {id: 1})", "c.tags"),
        r#"["vip","early","gold"]"#
    );
    assert_eq!(prop("(c:Customer {id: 3})", "c.tags"), "[]");
    assert_eq!(
        prop("(:Delivery {id: 100})-->(a:Address)", "a.city + ' ' + a.n"),
        "Berlin 3"
    );
    assert_eq!(prop("(e:Event {id: 1})", "toString(e.at)"), "2025-02-01");

    // Changes, a SIGKILL while the stream may be writing them, more changes while it is down,
    // and a restart that resumes from the recorded position.
    pg_sql(
        DB,
        "UPDATE event SET at = '2024-12-24', kind = 'moved back' WHERE id = 8;
         DELETE FROM order_item WHERE order_id = 14 AND sku = 'P1';
         UPDATE orders SET customer_id = 4, status = 'paid' WHERE id = 13;",
    );
    job.sigkill();
    pg_sql(
        DB,
        "INSERT INTO customer VALUES (5, 'Eve', NULL, '{a,NULL}');
         INSERT INTO event VALUES (9, '2025-05-05', 5, 'after');
         UPDATE product SET price = 2.50 WHERE sku = 'P4';",
    );
    let mut job = Running::start(&spec, &dir, false);
    settles(&mut job, &spec, &shop([4, 5, 3, 8, 4], 5));
    assert_eq!(prop("(e:Event {id: 8})", "toString(e.at)"), "2024-12-24");

    // TRUNCATE of the join table and of the partitioned table (published as the parent's, with
    // the rows of every partition), then rows again.
    pg_sql(DB, "TRUNCATE order_item");
    pg_sql(DB, "TRUNCATE event");
    pg_sql(
        DB,
        "INSERT INTO event VALUES (10, '2024-10-10', 5, 'again'), (11, '2025-11-11', 1, 'again');
         INSERT INTO order_item VALUES (10, 'P4', 1);",
    );
    settles(&mut job, &spec, &shop([4, 5, 3, 2, 4], 1));

    // PostgreSQL does not publish a TRUNCATE of one partition when the publication publishes
    // through the parent (its documented rule): the stream never sees it, and verify finds the
    // partition's rows left in the graph. A customer inserted after it shows the stream past it.
    pg_sql(DB, "TRUNCATE event_2024");
    pg_sql(DB, "INSERT INTO customer VALUES (6, 'Fay', NULL, NULL)");
    until(&mut job, || {
        match cypher(DB, "MATCH (c:Customer {id: 6}) RETURN c").len() {
            1 => Ok(()),
            n => Err(format!("{n} customers 6")),
        }
    });
    let out = etlhost("verify", &spec, &[]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    for part in [
        "flow event: DIFFERENT\n  rows in source     1\n  entities in graph  2\n  \
         missing            0\n  extra              1  (id=10, at=2024-10-10)\n",
        "flow event_customer: DIFFERENT\n  rows in source     1\n  entities in graph  2\n  \
         missing            0\n  extra              1  (id=10, at=2024-10-10, customer_id=5)\n",
        "\nverify: 9 of 11 flows match, 2 different, 0 not verifiable\n",
    ] {
        assert!(out.stdout.contains(part), "{part}\n{}", out.stdout);
    }
    // The row written again: the stream's MERGE meets the node left, and every flow is equal.
    pg_sql(
        DB,
        "INSERT INTO event VALUES (10, '2024-10-10', 5, 'again')",
    );
    settles(&mut job, &spec, &shop([4, 6, 3, 2, 4], 1));
    assert_eq!(job.terminate(), 130);
}

/// A stream of the partitioned table `ev` of database `db` into graph database `db`, with more
/// source options `options` (`, slot: x`).
fn partitioned_spec(dir: &Path, db: &str, options: &str) -> std::path::PathBuf {
    let text = crate::stream::stream_spec(db, &crate::support::pg_url(db), db, dir, "")
        .replacen("plugin: mysql", "plugin: postgres", 1)
        .replacen("table: person}", &format!("table: ev{options}}}"), 1)
        .replace(":Person", ":Ev");
    let path = dir.join(format!("{db}{}.yaml", options.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// What would lose a partitioned table's changes is refused before anything is copied, with the
/// fix: a partition without a replica identity of its own (PostgreSQL would refuse the user's
/// updates once it is published), a publication named in the spec that publishes the partitions
/// as themselves. A publication of etlhost's own name is set to publish through the parent, and
/// a row written into a partition then reaches the graph.
#[test]
fn pg_stream_partitioned_table_refusals_and_the_publication_via_the_parent() {
    let db = "e_pgpartref";
    crate::support::pg_database(db);
    pg_sql(
        db,
        "CREATE TABLE ev (id int, at date, kind text) PARTITION BY RANGE (at);
         CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         ALTER TABLE ev REPLICA IDENTITY FULL; ALTER TABLE ev_2025 REPLICA IDENTITY FULL;
         INSERT INTO ev VALUES (1, '2024-05-05', 'a'), (2, '2025-05-05', 'b');
         CREATE PUBLICATION e_leaves FOR TABLE ev;
         CREATE PUBLICATION etlhost_e_pgpartref_public_ev FOR TABLE ev;",
    );
    xtask::graph::fresh_graph(db).expect("create graph database");
    let dir = scratch_dir(db);
    let spec = partitioned_spec(&dir, db, "");
    let (code, err) = crate::stream::run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        crate::stream::first_error(&err),
        "error: cannot stream from the source: plugin postgres: table `ev` is partitioned, and its \
         partitions ev_2024 have no primary key and no REPLICA IDENTITY of their own (a partition \
         does not take its parent's), so PostgreSQL would refuse their updates and deletes once \
         they are published: ALTER TABLE ev_2024 REPLICA IDENTITY FULL, and the same for each of \
         them, or add a primary key to \"ev\""
    );
    pg_sql(db, "ALTER TABLE ev_2024 REPLICA IDENTITY FULL");
    let named = partitioned_spec(&dir, db, ", publication: e_leaves");
    let (code, err) = crate::stream::run_to_end(&named, &["--fresh"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        crate::stream::first_error(&err),
        "error: cannot stream from the source: plugin postgres: publication `e_leaves` publishes \
         the partitions of \"ev\" as themselves, and the flows read the partitioned \
         table, so its changes would be lost: ALTER PUBLICATION \"e_leaves\" SET \
         (publish_via_partition_root = true)"
    );

    // Once the copy is in the graph, the slot is there: a row written into a partition now
    // arrives through the stream, as the partitioned table's.
    let mut job = Running::start(&spec, &dir, true);
    let kinds = |want: usize| {
        let kinds = cypher(db, "MATCH (n:Ev) RETURN n.kind AS k ORDER BY k");
        match kinds.len() == want {
            true => Ok(()),
            false => Err(format!("{kinds:?}")),
        }
    };
    until(&mut job, || kinds(2));
    let via_root =
        "SELECT pubviaroot FROM pg_publication WHERE pubname = 'etlhost_e_pgpartref_public_ev'";
    assert_eq!(pg_sql(db, via_root), "t");
    pg_sql(
        db,
        "INSERT INTO ev_2025 VALUES (3, '2025-06-06', 'into the partition')",
    );
    until(&mut job, || kinds(3));
    let third = cypher(db, "MATCH (n:Ev {id: 3}) RETURN n.kind AS k");
    assert_eq!(third[0]["k"], "into the partition");
    assert_eq!(job.terminate(), 130);
}
