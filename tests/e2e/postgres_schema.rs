//! A real PostgreSQL schema (issue 33, point 8) through `etlhost init`, `run` and `verify`: tables
//! with foreign keys (one composite), a join table, an enum, a domain, an array column and a
//! partitioned table whose partitions init leaves out. Node and relationship counts are checked in
//! the graph, and verify must find every flow clean.

use std::path::PathBuf;

use crate::support::{
    etlhost_command, graph, one, pg_database, pg_init, pg_sql, read_summary, Output,
};

const DB: &str = "e2e_pg_shop";

/// The shop in a fresh database `db`: customers, products, orders (an enum), order items (a
/// join table), addresses (a composite key), deliveries (a composite foreign key, ON UPDATE
/// CASCADE), events (partitioned by date) and a domain and an array on customers.
pub(crate) fn shop_schema(db: &str) {
    pg_database(db);
    pg_sql(
        db,
        "CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
         CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
         CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, email email, tags text[]);
         CREATE TABLE product (sku text PRIMARY KEY, title text, price numeric(10,2));
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customer,
           status order_status NOT NULL, placed date);
         CREATE TABLE order_item (order_id bigint REFERENCES orders ON DELETE CASCADE,
           sku text REFERENCES product, qty int NOT NULL, PRIMARY KEY (order_id, sku));
         CREATE TABLE address (customer_id int REFERENCES customer, n int, city text,
           PRIMARY KEY (customer_id, n));
         CREATE TABLE delivery (id int PRIMARY KEY, customer_id int NOT NULL, address_n int NOT NULL,
           FOREIGN KEY (customer_id, address_n) REFERENCES address ON UPDATE CASCADE);
         CREATE TABLE event (id int, at date, customer_id int REFERENCES customer, kind text,
           PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE event_2025 PARTITION OF event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO customer VALUES (1, 'Ann', 'ann@shop.test', '{vip,early}'),
           (2, 'Bö', 'bo@shop.test', '{}'), (3, 'Cy', NULL, NULL);
         INSERT INTO product VALUES ('P1', 'Rocket', 99.90), ('P2', 'Anvil', 10), ('P3', 'Glue', NULL);
         INSERT INTO orders VALUES (10, 1, 'paid', '2024-03-01'), (11, 1, 'new', NULL),
           (12, 2, 'shipped', '2024-05-06'), (13, 3, 'paid', '2025-01-02');
         INSERT INTO order_item VALUES (10, 'P1', 1), (10, 'P2', 3), (11, 'P2', 1), (12, 'P3', 2),
           (13, 'P1', 5);
         INSERT INTO address VALUES (1, 1, 'Berlin'), (1, 2, 'Köln'), (2, 1, 'Oslo');
         INSERT INTO delivery VALUES (100, 1, 2), (101, 2, 1);
         INSERT INTO event SELECT g, DATE '2024-06-01' + g * 60, 1 + g % 3, 'visit'
           FROM generate_series(1, 6) g;",
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg_init");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `etlhost COMMAND SPEC EXTRA...` to its end.
pub(crate) fn etlhost(command: &str, spec: &std::path::Path, extra: &[&str]) -> Output {
    let out = etlhost_command()
        .arg(command)
        .arg(spec)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    Output::from(out)
}

async fn count(g: &neo4rs::Graph, cypher: &str) -> i64 {
    one::<i64>(g, cypher).await
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_init_run_verify_a_shop_schema() {
    shop_schema(DB);
    let g = graph("pg_shop").await;
    let spec = scratch("shop.yaml");
    let out = pg_init(DB, "pg_shop", &spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&spec).unwrap();
    // Partitions are read through their parent: no flow of their own.
    assert!(!text.contains("event_2024"), "{text}");
    assert!(text.contains("plugin: postgres"), "{text}");
    assert!(
        out.stdout.starts_with(&format!(
            "wrote {}: 6 node flows, 4 relationship flows from foreign keys, 1 from join tables",
            spec.display()
        )),
        "{}\n{text}",
        out.stdout
    );

    let summary = scratch("shop.summary.json");
    let s = summary.display().to_string();
    let out = etlhost("run", &spec, &["--quiet", "--summary-json", &s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = read_summary(&summary);
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    for (label, n) in [
        ("Customer", 3),
        ("Product", 3),
        ("Orders", 4),
        ("Address", 3),
        ("Delivery", 2),
        ("Event", 6),
    ] {
        let got = count(&g, &format!("MATCH (n:{label}) RETURN count(n) AS n")).await;
        assert_eq!(got, n, "{label} nodes");
    }
    assert_eq!(count(&g, "MATCH (n) RETURN count(n) AS n").await, 21);
    // orders -> customer 4, order_item 5 (join table), address -> customer 3, delivery -> address
    // 2 (composite key), event -> customer 6.
    assert_eq!(count(&g, "MATCH ()-[r]->() RETURN count(r) AS n").await, 20);
    let to_addr: String = one(
        &g,
        "MATCH (d:Delivery)-->(a:Address) WITH toString(d.id) + '>' + a.city AS x ORDER BY x \
         RETURN reduce(s = '', x IN collect(x) | s + x + ';') AS n",
    )
    .await;
    assert_eq!(to_addr, "100>Köln;101>Oslo;");
    // The enum as its label, the domain as its base type, the array as a list.
    let status: String = one(&g, "MATCH (o:Orders {id: 12}) RETURN o.status AS n").await;
    assert_eq!(status, "shipped");
    let email: String = one(&g, "MATCH (c:Customer {id: 1}) RETURN c.email AS n").await;
    assert_eq!(email, "ann@shop.test");
    let tags: Vec<String> = one(&g, "MATCH (c:Customer {id: 1}) RETURN c.tags AS n").await;
    assert_eq!(tags, ["vip", "early"]);

    let out = etlhost("verify", &spec, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .ends_with("\nverify: 11 of 11 flows match, 0 different, 0 not verifiable\n"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("missing            1"),
        "{}",
        out.stdout
    );

    // A change in the source is found by verify, by key and property.
    pg_sql(
        DB,
        "UPDATE product SET title = 'Big Rocket' WHERE sku = 'P1'",
    );
    let out = etlhost("verify", &spec, &[]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(out
        .stdout
        .ends_with("\nverify: 10 of 11 flows match, 1 different, 0 not verifiable\n"));
    assert!(
        out.stdout.contains(
            "flow product: DIFFERENT\n  rows in source     3\n  entities in graph  3\n  missing            0\n  extra              0\n  different          1  sku=\"P1\" [title]\n"
        ),
        "{}",
        out.stdout
    );
}
