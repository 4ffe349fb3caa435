//! Rows go in on the MySQL side and must come out, all of them and unchanged, on the graph side.

use crate::support::{exec, graph, mysql, one, person_table, run_job, SpecBuilder};

#[tokio::test(flavor = "multi_thread")]
async fn hundred_thousand_rows_arrive_as_nodes_with_their_contents() {
    person_table("e2e_full", 100_000, "person-").await;
    let g = graph("e2e_full").await;

    // Two readers over four splits, and two writers with a connection each.
    let text = SpecBuilder::new("full")
        .top("parallelism: 2")
        .mysql_table("e2e_full", "person")
        .partition("id", 4)
        .sink_bolt(
            "e2e_full",
            "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
        )
        .batch(1000)
        .sink_line("parallelism: 2")
        .build();
    let summary = run_job("full", &text);

    assert_eq!(summary["read"], 100_000);
    assert_eq!(summary["written"], 100_000);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["batches"], 100);
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        100_000
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN sum(p.id) AS n").await,
        5_000_050_000
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(DISTINCT p.id) AS n").await,
        100_000
    );
    for id in [1, 4242, 99_999, 100_000] {
        let name: String = one(
            &g,
            &format!("MATCH (p:Person {{id: {id}}}) RETURN p.name AS n"),
        )
        .await;
        assert_eq!(name, format!("person-{id}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_partial_batch_is_written() {
    person_table("e2e_tail", 99_999, "p").await;
    let g = graph("e2e_tail").await;

    let text = SpecBuilder::new("tail")
        .mysql_table("e2e_tail", "person")
        .sink_bolt(
            "e2e_tail",
            "UNWIND $batch AS row CREATE (:Person {id: row.id})",
        )
        .batch(1000)
        .build();
    let summary = run_job("tail", &text);

    assert_eq!(summary["written"], 99_999);
    // 99 full batches and the partial one of 999 rows.
    assert_eq!(summary["batches"], 100);
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        99_999
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN max(p.id) AS n").await,
        99_999
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn column_types_unicode_and_nulls_survive() {
    let db = mysql("e2e_types").await;
    exec(
        &db,
        "CREATE TABLE t (
            id BIGINT UNSIGNED PRIMARY KEY,
            small TINYINT, big BIGINT, ubig BIGINT UNSIGNED,
            price DECIMAL(20,4), ratio FLOAT, score DOUBLE,
            name VARCHAR(100), bio TEXT,
            born DATE, seen DATETIME(6), stamp TIMESTAMP NULL, dur TIME,
            raw BLOB, email VARCHAR(100)
        ) CHARACTER SET utf8mb4",
    )
    .await;
    exec(
        &db,
        "INSERT INTO t VALUES
         (1, -128, -9223372036854775808, 18446744073709551615, 12345678901234.5678, 0.1, 2.5,
          '中文 名字 😀👩‍💻', 'ünïcödé ✓', '2024-02-29', '2024-02-29 01:02:03.000004', '2001-09-09 01:46:40',
          '-838:59:59', X'00FF10', 'a@example.com'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let g = graph("e2e_types").await;
    let text = SpecBuilder::new("types")
        .mysql_table("e2e_types", "t")
        .sink_bolt("e2e_types", "UNWIND $batch AS row CREATE (n:T) SET n = row")
        .batch(1000)
        .build();
    let summary = run_job("types", &text);
    assert_eq!(summary["written"], 2);

    let get = |prop: &str| format!("MATCH (n:T {{id: 1}}) RETURN n.{prop} AS n");
    assert_eq!(one::<String>(&g, &get("name")).await, "中文 名字 😀👩‍💻");
    assert_eq!(one::<String>(&g, &get("bio")).await, "ünïcödé ✓");
    assert_eq!(one::<i64>(&g, &get("small")).await, -128);
    assert_eq!(one::<i64>(&g, &get("big")).await, i64::MIN);
    // Beyond i64 an unsigned value keeps its digits as text; decimals keep every digit as text.
    assert_eq!(
        one::<String>(&g, &get("ubig")).await,
        "18446744073709551615"
    );
    assert_eq!(
        one::<String>(&g, &get("price")).await,
        "12345678901234.5678"
    );
    assert_eq!(one::<f64>(&g, &get("ratio")).await, 0.1);
    assert_eq!(one::<f64>(&g, &get("score")).await, 2.5);
    assert_eq!(
        one::<Vec<u8>>(&g, &get("raw")).await,
        vec![0x00, 0xFF, 0x10]
    );
    assert!(
        one::<bool>(
            &g,
            "MATCH (n:T {id: 1}) RETURN n.born = date('2024-02-29') AS n"
        )
        .await
    );
    assert!(
        one::<bool>(
            &g,
            "MATCH (n:T {id: 1}) RETURN n.seen = localdatetime('2024-02-29T01:02:03.000004') AS n"
        )
        .await
    );
    assert!(
        one::<bool>(
            &g,
            "MATCH (n:T {id: 1}) RETURN n.stamp = localdatetime('2001-09-09T01:46:40') AS n"
        )
        .await
    );

    // A NULL column is an absent property, not a property holding null.
    let keys: Vec<String> = one(&g, "MATCH (n:T {id: 2}) RETURN keys(n) AS n").await;
    assert_eq!(keys, ["id"]);
}
