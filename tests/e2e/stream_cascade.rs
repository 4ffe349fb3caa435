//! Issue 31, point 2: what InnoDB changes through foreign keys (`ON DELETE CASCADE / SET NULL`,
//! `ON UPDATE CASCADE / SET NULL`) is not in the binlog; the stream finds those rows in the graph
//! and applies the same changes, through a three-level chain, a self-referencing table and a
//! composite key. Flows as `etlhost init --mode stream` writes them; the graph is then checked
//! with `etlhost verify` and by counts against MySQL.

use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;
use xtask::services::{BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};

use crate::stream::{cypher, head, run_to_end, Running};
use crate::support::{etlhost_command, exec, graph, mysql, scratch_dir};

/// Tables and their foreign keys: team <- member <- task (three levels of ON DELETE CASCADE,
/// member also ON UPDATE CASCADE), note -> member ON DELETE SET NULL, badge -> team ON UPDATE SET
/// NULL, employee -> employee (self-reference, ON DELETE CASCADE), squad (team_id, no) <- seat
/// (composite, ON DELETE CASCADE ON UPDATE CASCADE), squad.team_id -> team ON UPDATE CASCADE.
const SCHEMA: [&str; 8] = [
    "CREATE TABLE team (id INT PRIMARY KEY, name VARCHAR(50))",
    "CREATE TABLE member (id INT PRIMARY KEY, name VARCHAR(50), team_id INT, \
     CONSTRAINT member_team FOREIGN KEY (team_id) REFERENCES team (id) \
     ON DELETE CASCADE ON UPDATE CASCADE)",
    "CREATE TABLE task (id INT PRIMARY KEY, title VARCHAR(50), member_id INT NOT NULL, \
     CONSTRAINT task_member FOREIGN KEY (member_id) REFERENCES member (id) ON DELETE CASCADE)",
    "CREATE TABLE note (id INT PRIMARY KEY, body VARCHAR(50), member_id INT, \
     CONSTRAINT note_member FOREIGN KEY (member_id) REFERENCES member (id) ON DELETE SET NULL)",
    "CREATE TABLE badge (id INT PRIMARY KEY, team_id INT, \
     CONSTRAINT badge_team FOREIGN KEY (team_id) REFERENCES team (id) \
     ON DELETE SET NULL ON UPDATE SET NULL)",
    "CREATE TABLE employee (id INT PRIMARY KEY, name VARCHAR(50), manager_id INT, \
     CONSTRAINT employee_manager FOREIGN KEY (manager_id) REFERENCES employee (id) \
     ON DELETE CASCADE)",
    "CREATE TABLE squad (team_id INT, no INT, name VARCHAR(50), PRIMARY KEY (team_id, no), \
     CONSTRAINT squad_team FOREIGN KEY (team_id) REFERENCES team (id) \
     ON DELETE CASCADE ON UPDATE CASCADE)",
    "CREATE TABLE seat (id INT PRIMARY KEY, squad_team INT, squad_no INT, \
     CONSTRAINT seat_squad FOREIGN KEY (squad_team, squad_no) REFERENCES squad (team_id, no) \
     ON DELETE CASCADE ON UPDATE CASCADE)",
];

const TABLES: [(&str, &str); 8] = [
    ("team", "Team"),
    ("member", "Member"),
    ("task", "Task"),
    ("note", "Note"),
    ("badge", "Badge"),
    ("employee", "Employee"),
    ("squad", "Squad"),
    ("seat", "Seat"),
];

/// Three teams, four members each with two tasks and a note, a badge per team, a chain of
/// managers 1 <- 2 <- 3 <- 4 and 5 beside it, two squads per team with a seat each.
async fn seed(pool: &mysql_async::Pool) {
    for s in SCHEMA {
        exec(pool, s).await;
    }
    exec(
        pool,
        "INSERT INTO team VALUES (1, 'red'), (2, 'blue'), (3, 'green')",
    )
    .await;
    for m in 1..=12 {
        let team = 1 + (m - 1) / 4;
        exec(
            pool,
            &format!("INSERT INTO member VALUES ({m}, 'm{m}', {team})"),
        )
        .await;
        exec(
            pool,
            &format!(
                "INSERT INTO task VALUES ({a}, 't', {m}), ({b}, 't', {m})",
                a = m * 10,
                b = m * 10 + 1
            ),
        )
        .await;
        exec(pool, &format!("INSERT INTO note VALUES ({m}, 'n', {m})")).await;
    }
    exec(pool, "INSERT INTO badge VALUES (1, 1), (2, 2), (3, 3)").await;
    exec(
        pool,
        "INSERT INTO employee VALUES (1, 'ceo', NULL), (2, 'vp', 1), (3, 'lead', 2), (4, 'dev', 3), (5, 'cfo', 1)",
    )
    .await;
    exec(
        pool,
        "INSERT INTO squad VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c'), (2, 2, 'd'), (3, 1, 'e')",
    )
    .await;
    exec(
        pool,
        "INSERT INTO seat VALUES (1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2), (5, 3, 1), (6, NULL, NULL)",
    )
    .await;
}

/// `etlhost init --mode stream` for database `db` into graph `db`, with a fast checkpoint.
pub(crate) fn init_stream_spec(db: &str, dir: &Path) -> PathBuf {
    let spec = dir.join(format!("{db}.yaml"));
    let out = etlhost_command()
        .arg("init")
        .arg(&spec)
        .args(["--mode", "stream"])
        .args([
            "--source-url",
            &format!("mysql://127.0.0.1:{MYSQL_PORT}/{db}"),
        ])
        .args(["--source-user", "etl", "--source-password", "etl"])
        .args(["--sink-uri", &format!("bolt://127.0.0.1:{BOLT_PORT}")])
        .args(["--sink-user", GRAPH_USER, "--sink-password", GRAPH_PASSWORD])
        .args(["--sink-database", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&spec).unwrap()
        + &format!(
            "checkpoint: {{dir: {}, interval: 100ms}}\n",
            dir.join("cp").display()
        );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// `etlhost verify` finds every flow equal, and every label counts MySQL's rows.
async fn assert_verified(pool: &mysql_async::Pool, db: &str, spec: &Path) {
    assert_verified_tables(pool, db, spec, &TABLES).await
}

/// The same for `tables` (table, label).
async fn assert_verified_tables(
    pool: &mysql_async::Pool,
    db: &str,
    spec: &Path,
    tables: &[(&str, &str)],
) {
    let out = etlhost_command().arg("verify").arg(spec).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = pool.get_conn().await.unwrap();
    for (table, label) in tables {
        let want: i64 = c
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap()
            .unwrap();
        let got = cypher(db, &format!("MATCH (n:{label}) RETURN count(n) AS n"));
        assert_eq!(got[0]["n"], want, "{label} nodes\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sc_cascades_through_three_levels_a_self_reference_and_a_composite_key() {
    let db = "sc_cascade";
    let pool = mysql(db).await;
    seed(&pool).await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = init_stream_spec(db, &dir);
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("rows_query"), "{text}");
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);

    // ON DELETE CASCADE three levels down (team -> member -> task), SET NULL on notes and
    // badges, and the composite key (team -> squad -> seat).
    exec(&pool, "DELETE FROM team WHERE id = 1").await;
    // A self-reference: 2 takes 3, which takes 4; 5 stays.
    exec(&pool, "DELETE FROM employee WHERE id = 2").await;
    // ON UPDATE CASCADE (members, squads whose key changes, their seats through the composite
    // key) and ON UPDATE SET NULL (the badge).
    exec(&pool, "UPDATE team SET id = 20 WHERE id = 2").await;
    // A delete in the middle of a transaction, around changes of the same tables.
    let mut c = pool.get_conn().await.unwrap();
    let mut tx = c
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .unwrap();
    for s in [
        "INSERT INTO member VALUES (13, 'm13', 3)",
        "DELETE FROM member WHERE id = 9",
        "INSERT INTO task VALUES (130, 't', 13)",
        "INSERT INTO note VALUES (13, 'n', 13)",
    ] {
        tx.query_drop(s).await.unwrap();
    }
    tx.commit().await.unwrap();
    drop(c);
    job.wait_until_acked(&head(&pool).await);

    assert_verified(&pool, db, &spec).await;
    let teams = cypher(
        db,
        "MATCH (m:Member)-[:TEAM]->(t:Team) RETURN t.id AS t ORDER BY t",
    );
    let teams: Vec<i64> = teams.iter().map(|r| r["t"].as_i64().unwrap()).collect();
    assert_eq!(teams, [3, 3, 3, 3, 20, 20, 20, 20]);
    let nulls = cypher(
        db,
        "MATCH (n:Note) WHERE n.member_id IS NULL RETURN count(n) AS n",
    );
    assert_eq!(
        nulls[0]["n"], 5,
        "notes of the 4 members of team 1 and of member 9"
    );
    assert_eq!(job.terminate(), 130);
}

/// A cascading foreign key whose child table is streamed without a `rows_query` refuses the
/// start, before the snapshot, naming the key, the table and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_cascade_the_stream_cannot_follow_is_refused_at_start() {
    let db = "sc_refused";
    let pool = mysql(db).await;
    exec(&pool, SCHEMA[0]).await;
    exec(&pool, SCHEMA[1]).await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = hand_spec(db, &dir, &[("team", "Team"), ("member", "Member")]);
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(
        crate::stream::first_error(&stderr),
        "error: cannot stream: foreign key `member_team` of `member` (ON DELETE CASCADE, ON UPDATE CASCADE) changes rows of `member` that MySQL does not write to its binlog, and no flow of table `member` has a `rows_query` to find them in the graph: add `rows_query` to its node flow (`etlhost init --mode stream` writes one), or change the foreign key to RESTRICT",
        "{stderr}"
    );
    assert_eq!(code, 3, "{stderr}");
    // Refused before the snapshot: nothing was copied.
    let n = cypher(db, "MATCH (n) RETURN count(n) AS n");
    assert_eq!(n[0]["n"], 0);
}

/// `DROP TABLE` of a streamed table stops the stream at that statement, naming it, the table and
/// the binlog position; a restart stops there again. (`TRUNCATE` is followed instead:
/// `stream::st_a_truncate_of_a_streamed_table_removes_its_nodes_in_order`.)
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_drop_of_a_streamed_table_stops_the_stream_at_its_position() {
    let pool = crate::support::person_table("sc_drop", 50, "p").await;
    exec(&pool, "CREATE TABLE other (id INT PRIMARY KEY)").await;
    let _g = graph("sc_drop").await;
    let (_dir, spec, mut job) = crate::stream::start_stream("sc_drop");
    exec(&pool, "DROP TABLE other").await;
    exec(&pool, "INSERT INTO person (id, name) VALUES (1001, 'new')").await;
    job.wait_until_acked(&head(&pool).await);

    exec(&pool, "DROP TABLE person").await;
    let (file, pos) = head(&pool).await;
    let expected = format!(
        "error: job failed: plugin mysql: the binlog at {file}:{pos} has `DROP TABLE `person` /* generated by server */`, which drops the streamed table sc_drop.person without row events: the stream stops here rather than let the target drift from MySQL; run the flow again with --fresh for a new snapshot"
    );
    // Polled until it reports: the stream stops on its own.
    let started = std::time::Instant::now();
    while !job.stderr().contains("error: job failed") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the stream went on past the DROP:\n{}",
            job.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stderr = job.stderr();
    assert_eq!(job.terminate(), 3, "{stderr}");
    assert_eq!(crate::stream::first_error(&stderr), expected);
    assert_eq!(
        cypher("sc_drop", "MATCH (p:Person) RETURN count(p) AS n")[0]["n"],
        51
    );
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(
        (code, crate::stream::first_error(&stderr)),
        (3, expected.as_str())
    );
}

/// SIGKILL while a cascade is being applied (after the parent's delete reached the graph), then a
/// restart: the recorded position is before the delete, which is applied again and finds what
/// is left, so the graph ends equal to MySQL.
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_kill_in_the_middle_of_a_cascade_ends_exact_after_a_restart() {
    let db = "sc_kill";
    let pool = mysql(db).await;
    for s in &SCHEMA[..3] {
        exec(&pool, s).await;
    }
    exec(&pool, "INSERT INTO team VALUES (1, 'big'), (2, 'small')").await;
    let members: Vec<String> = (1..=1_000)
        .map(|i| format!("({i}, 'm', {})", if i <= 995 { 1 } else { 2 }))
        .collect();
    exec(
        &pool,
        &format!("INSERT INTO member VALUES {}", members.join(", ")),
    )
    .await;
    exec(&pool, "INSERT INTO task SELECT id, 't', id FROM member").await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = init_stream_spec(db, &dir);
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "DELETE FROM team WHERE id = 1").await;
    let started = std::time::Instant::now();
    while cypher(db, "MATCH (t:Team {id: 1}) RETURN count(t) AS n")[0]["n"] != 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{}",
            job.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    job.sigkill();
    let mut job = Running::start(&spec, &dir, false);
    job.wait_until_acked(&head(&pool).await);
    assert_verified_tables(&pool, db, &spec, &TABLES[..3]).await;
    assert_eq!(job.terminate(), 130);
}

/// A job of `db` streaming `flows` (table, label) into graph `db` with hand-written Cypher and no
/// `rows_query`.
fn hand_spec(db: &str, dir: &Path, flows: &[(&str, &str)]) -> PathBuf {
    let spec = dir.join(format!("{db}.yaml"));
    let flow = |name: &str, label: &str| {
        format!(
            "  - name: {name}s
    source: {{options: {{table: {name}}}}}
    sink:
      options:
        query: \"UNWIND $batch AS row MERGE (n:{label} {{id: row.id}}) SET n = row\"
        delete_query: \"UNWIND $batch AS row MATCH (n:{label} {{id: row.id}}) DETACH DELETE n\"
"
        )
    };
    let flows: String = flows.iter().map(|(t, l)| flow(t, l)).collect();
    let text = format!(
        "name: {db}
mode: stream
checkpoint: {{dir: {cp}, interval: 100ms}}
source:
  plugin: mysql
  options: {{url: \"mysql://127.0.0.1:{MYSQL_PORT}/{db}\", user: etl, password: etl}}
sink:
  plugin: bolt
  options: {{uri: \"bolt://127.0.0.1:{BOLT_PORT}\", user: {GRAPH_USER}, password: {GRAPH_PASSWORD}, database: {db}}}
flows:
{flows}",
        cp = dir.join("cp").display()
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Cascades the stream cannot see are named at start: a streamed table's cascading key to a
/// table the job does not stream, and a streamed table's cascade into a table it does not stream.
#[tokio::test(flavor = "multi_thread")]
async fn sc_cascades_across_the_spec_boundary_are_named_at_start() {
    let db = "sc_boundary";
    let pool = mysql(db).await;
    exec(&pool, SCHEMA[0]).await;
    exec(&pool, SCHEMA[1]).await;
    let _g = graph(db).await;
    let cases = [
        (
            ("member", "Member"),
            "foreign key `member_team` of streamed table `member` (ON DELETE CASCADE, ON UPDATE CASCADE) refers to `team`, which no flow of this job streams: the rows it changes in `member` are not seen, so the graph's `member` may differ from MySQL; stream `team` too",
        ),
        (
            ("team", "Team"),
            "foreign key `member_team` of `member` (ON DELETE CASCADE, ON UPDATE CASCADE) changes rows of `member` when rows of streamed table `team` change, but no flow of this job streams `member`: those changes are not followed",
        ),
    ];
    for (flow, warning) in cases {
        let dir = scratch_dir(&format!("{db}_{}", flow.0));
        let spec = hand_spec(db, &dir, &[flow]);
        let mut job = Running::start(&spec, &dir, true);
        job.wait_until_acked(&head(&pool).await);
        let stderr = job.stderr();
        assert!(stderr.contains(warning), "{stderr}");
        assert_eq!(job.terminate(), 130);
    }
}

/// A key change of referenced rows inside a transaction handed on in parts of one change each
/// (`max_transaction_changes: 1`): each delete ends a part and its insert starts the next, so
/// only the next part tells a key change (ON UPDATE CASCADE: the members follow) from a delete
/// (ON DELETE CASCADE: the members would go). The members follow.
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_key_change_split_across_parts_of_a_transaction_cascades_as_an_update() {
    let db = "sc_parts";
    let pool = mysql(db).await;
    exec(&pool, SCHEMA[0]).await;
    exec(&pool, SCHEMA[1]).await;
    exec(
        &pool,
        "INSERT INTO team VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO member VALUES (1, 'x', 1), (2, 'y', 2), (3, 'z', 3), (4, 'w', 3)",
    )
    .await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = init_stream_spec(db, &dir);
    let text = std::fs::read_to_string(&spec).unwrap() + "stream: {max_transaction_changes: 1}\n";
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "UPDATE team SET id = id + 10 ORDER BY id DESC").await;
    exec(&pool, "DELETE FROM team WHERE id = 11").await;
    job.wait_until_acked(&head(&pool).await);
    let rows = cypher(
        db,
        "MATCH (m:Member)-[:TEAM]->(t:Team) RETURN m.id AS m, t.id AS t ORDER BY m",
    );
    let pairs: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r["m"].as_i64().unwrap(), r["t"].as_i64().unwrap()))
        .collect();
    assert_eq!(pairs, [(2, 12), (3, 13), (4, 13)]);
    assert_verified_tables(&pool, db, &spec, &TABLES[..2]).await;
    assert_eq!(job.terminate(), 130);
}

/// With `foreign_key_checks = 0` InnoDB takes no ON DELETE action: the children stay in MySQL,
/// pointing at a parent that is gone, and so they stay in the graph (the rows event says so).
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_delete_without_foreign_key_checks_cascades_nothing() {
    let db = "sc_nofk";
    let pool = mysql(db).await;
    seed(&pool).await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = init_stream_spec(db, &dir);
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);

    let mut c = pool.get_conn().await.unwrap();
    c.query_drop("SET SESSION foreign_key_checks = 0")
        .await
        .unwrap();
    c.query_drop("DELETE FROM team WHERE id = 1").await.unwrap();
    drop(c);
    // Then one with the checks on again, which cascades as usual.
    exec(&pool, "DELETE FROM team WHERE id = 2").await;
    job.wait_until_acked(&head(&pool).await);

    let mut c = pool.get_conn().await.unwrap();
    for (table, label) in [("team", "Team"), ("member", "Member"), ("task", "Task")] {
        let want: i64 = c
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap()
            .unwrap();
        let got = cypher(db, &format!("MATCH (n:{label}) RETURN count(n) AS n"));
        assert_eq!(got[0]["n"], want, "{label} nodes");
    }
    // Team 1's four members (and their tasks) are still there; team 2's went.
    let members = cypher(
        db,
        "MATCH (m:Member) RETURN m.team_id AS t, count(m) AS n ORDER BY t",
    );
    assert_eq!(
        members,
        [
            serde_json::json!({"t": 1, "n": 4}),
            serde_json::json!({"t": 3, "n": 4})
        ]
    );
    assert_eq!(job.terminate(), 130);
}

/// A transaction that deletes a manager (its report goes by the cascade) and then inserts both
/// again, read again after a kill: the cascade, found again in the graph as it is now, deletes the
/// report that the transaction's later insert made, so that insert is written again rather than
/// skipped as already written. The graph ends with both rows.
#[tokio::test(flavor = "multi_thread")]
async fn sc_a_cascade_read_again_after_a_kill_keeps_what_its_transaction_wrote_after_it() {
    let db = "sc_again";
    let pool = mysql(db).await;
    exec(&pool, SCHEMA[5]).await;
    exec(
        &pool,
        "INSERT INTO employee VALUES (1, 'ceo', NULL), (2, 'vp', 1)",
    )
    .await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = init_stream_spec(db, &dir);
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    let mut c = pool.get_conn().await.unwrap();
    for sql in [
        "START TRANSACTION",
        "DELETE FROM employee WHERE id = 1",
        "INSERT INTO employee VALUES (1, 'ceo 2', NULL), (2, 'vp 2', 1)",
        "COMMIT",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    drop(c);
    job.wait_until_acked(&head(&pool).await);
    let names = || {
        cypher(
            db,
            "MATCH (e:Employee) RETURN e.id AS id, e.name AS name ORDER BY id",
        )
    };
    assert_eq!(names().len(), 2);
    // Killed before anything else moves its records: the restart reads the transaction again.
    job.sigkill();
    let mut job = Running::start(&spec, &dir, false);
    job.wait_until_acked(&head(&pool).await);
    let got: Vec<(i64, String)> = names()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, [(1, "ceo 2".into()), (2, "vp 2".into())]);
    assert_eq!(job.terminate(), 130);
}
