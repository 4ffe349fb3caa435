//! Incremental sync: a later run reads only the rows at or past the stored cursor, and MERGE keeps
//! the graph equal to the table.

use std::path::{Path, PathBuf};

use crate::support::{exec, graph, mysql, one, run_job_with, SpecBuilder};

fn spec(state: &Path) -> String {
    SpecBuilder::new("items")
        .top("parallelism: 2")
        .top(format_args!("checkpoint:\n  dir: {}", state.display()))
        .mysql_table("e2e_incremental", "item")
        .partition("id", 0)
        .source_line("cursor_column: updated_at")
        .sink_bolt(
            "e2e_incremental",
            "UNWIND $batch AS row MERGE (n:Item {id: row.id}) SET n.name = row.name",
        )
        .setup("CREATE CONSTRAINT item_id IF NOT EXISTS FOR (n:Item) REQUIRE n.id IS UNIQUE")
        .build()
}

/// Runs the job; returns its summary.
fn run(text: &str, extra: &[&str]) -> serde_json::Value {
    run_job_with("incremental", text, extra).0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_run_reads_only_rows_past_the_cursor() {
    let pool = mysql("e2e_incremental").await;
    exec(
        &pool,
        "CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(50), updated_at DATETIME NOT NULL)",
    )
    .await;
    // Row i was last updated i seconds into 2026.
    exec(
        &pool,
        "INSERT INTO item SELECT seq, CONCAT('item-', seq), \
         TIMESTAMP('2026-01-01') + INTERVAL seq SECOND FROM seq_1_to_1000",
    )
    .await;
    let g = graph("e2e_incremental").await;
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("incremental-state");
    let _ = std::fs::remove_dir_all(&state);
    let text = spec(&state);

    let first = run(&text, &[]);
    assert_eq!(first["read"], 1000);
    let cursor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("items.cursor.json")).unwrap())
            .unwrap();
    assert_eq!(cursor["column"], "updated_at");
    assert_eq!(cursor["text"], "2026-01-01T00:16:40");

    // Between runs: 10 new rows and 5 updated ones, all later than anything read.
    exec(
        &pool,
        "INSERT INTO item SELECT seq, CONCAT('item-', seq), \
         TIMESTAMP('2026-02-01') + INTERVAL seq SECOND FROM seq_1001_to_1010",
    )
    .await;
    exec(
        &pool,
        "UPDATE item SET name = CONCAT('changed-', id), updated_at = '2026-03-01' WHERE id <= 5",
    )
    .await;
    let second = run(&text, &[]);
    // 15 changed rows, and the row at the stored cursor itself (the bound is inclusive).
    assert_eq!(second["read"], 16);
    assert_eq!(second["written"], 16);
    assert_eq!(
        one::<i64>(&g, "MATCH (n:Item) RETURN count(n) AS n").await,
        1010
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (n:Item) WHERE n.name STARTS WITH 'changed-' RETURN count(n) AS n"
        )
        .await,
        5
    );
    let name: String = one(&g, "MATCH (n:Item {id: 3}) RETURN n.name AS n").await;
    assert_eq!(name, "changed-3");
    let name: String = one(&g, "MATCH (n:Item {id: 1010}) RETURN n.name AS n").await;
    assert_eq!(name, "item-1010");

    // Nothing changed: only the rows at the cursor (the 5 updated together) are read again.
    let third = run(&text, &[]);
    assert_eq!(third["read"], 5);

    // --full reads everything and stores the cursor anew.
    let full = run(&text, &["--full"]);
    assert_eq!(full["read"], 1010);
    assert_eq!(
        one::<i64>(&g, "MATCH (n:Item) RETURN count(n) AS n").await,
        1010
    );
}
