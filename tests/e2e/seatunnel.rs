//! SeaTunnel job files run as they are: the incident's job (`/work/shared/incident.md`) and the
//! variants its author ran, with only hosts, ports, databases and credentials changed, against a
//! `person(ID, NAME)` table of 99,999 rows; and each converted to YAML runs to the same result.

use std::path::Path;
use std::process::Command;

use neo4rs::Graph;
use xtask::services::{
    BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};

use crate::support::{etlhost, exec, graph, mysql, one, scratch_dir, Output};

const ROWS: u64 = 99_999;

/// The incident's job file, word for word but for where the servers are.
fn incident(mysql_db: &str, graph_db: &str) -> String {
    format!(
        r#"env {{
  execution.parallelism = 2
  job.mode = "BATCH"
  job.name = "merge-test-person-BATCH"
  checkpoint.interval = 60000
}}
source {{
  Jdbc {{
    url = "jdbc:mysql://127.0.0.1:{MYSQL_PORT}/{mysql_db}?useSSL=false&serverTimezone=Asia/Shanghai"
    driver = "com.mysql.jdbc.Driver"
    user = "{MYSQL_USER}"
    password = "{MYSQL_PASSWORD}"
    query = "SELECT ID,NAME FROM person"
    result_table_name = "merge.test.person"
    fetch_size = 1000
    connection_check_timeout_sec = 20000
    partition_column = "ID"     # numeric primary key used to split the table
    partition_num = 10          # number of splits; default: the job parallelism
  }}
}}
transform {{ }}
sink {{
  MysqlToNeo4j {{                       # a custom sink the user wrote
    source_table_name = "merge.test.person"
    uri = "bolt://127.0.0.1:{BOLT_PORT}"
    username = "{GRAPH_USER}"
    password = "{GRAPH_PASSWORD}"
    database = "{graph_db}"
    max_transaction_retry_time = 30000
    max_connection_timeout = 30000
    max_batch_size = 1000
    write_mode = "BATCH"               # or one row per transaction
    queryConfigList = [{{
      tableName = "merge.test.person"
      rowKind = "INSERT"
      query = "unwind $batch as row create(p:merge_person {{ID: row.ID, NAME: row.NAME}})"
      queryParamPosition = {{ ID = 0, NAME = 1 }}   # row field index -> Cypher parameter name
    }}]
  }}
}}
"#
    )
}

/// Without splitting: parallelism 1, the partition lines commented out.
fn unsplit(text: &str) -> String {
    text.replace("execution.parallelism = 2", "execution.parallelism = 1")
        .replace("    partition_column", "    # partition_column")
        .replace("    partition_num", "    # partition_num")
}

/// Their first version: one row per transaction, parameters filled by position.
fn one_by_one(text: &str) -> String {
    text.replace("    max_batch_size = 1000\n", "")
        .replace(
            "    write_mode = \"BATCH\"               # or one row per transaction\n",
            "    format = \"default\"\n",
        )
        .replace(
            "unwind $batch as row create(p:merge_person {ID: row.ID, NAME: row.NAME})",
            "create(p:merge_person {ID: $ID, NAME: $NAME})",
        )
}

/// To the console instead of Neo4j, with SeaTunnel's standard `Console` sink.
fn console(text: &str) -> String {
    let start = text.find("sink {").unwrap();
    format!("{}sink {{\n  Console {{ }}\n}}\n", &text[..start])
}

/// `person(ID INT PRIMARY KEY, NAME VARCHAR(100))`, upper-case as in the incident, 99,999 rows.
async fn person(db: &str) {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE person (ID INT PRIMARY KEY, NAME VARCHAR(100))",
    )
    .await;
    exec(
        &pool,
        &format!("INSERT INTO person SELECT seq, CONCAT('name-', seq) FROM seq_1_to_{ROWS}"),
    )
    .await;
    pool.disconnect().await.unwrap();
}

fn etl(dir: &Path, args: &[&str], log: &str) -> Output {
    let out = Command::new(etlhost())
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", log)
        .output()
        .unwrap();
    Output::from(out)
}

/// Runs `spec` (in `dir`) to success and returns its summary and output.
fn run(dir: &Path, spec: &str, log: &str) -> (serde_json::Value, Output) {
    let summary = dir.join(format!("{spec}.summary.json"));
    let out = etl(
        dir,
        &[
            "run",
            spec,
            "--quiet",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
        log,
    );
    assert_eq!(out.code, 0, "etlhost run {spec} failed:\n{}", out.stderr);
    let s = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (s, out)
}

/// Writes `job.conf` and `etlhost convert`s it to `job.yaml`.
fn write_and_convert(dir: &Path, text: &str) {
    std::fs::write(dir.join("job.conf"), text).unwrap();
    let out = etl(dir, &["convert", "job.conf", "-o", "job.yaml"], "warn");
    assert_eq!(out.code, 0, "convert failed:\n{}", out.stderr);
    assert!(out.stdout.starts_with("wrote job.yaml"), "{}", out.stdout);
}

/// The graph holds exactly one `:merge_person` per row, each with its name.
async fn assert_graph(g: &Graph) {
    let n: i64 = one(g, "MATCH (p:merge_person) RETURN count(p) AS n").await;
    assert_eq!(n, ROWS as i64);
    let ids: i64 = one(g, "MATCH (p:merge_person) RETURN count(DISTINCT p.ID) AS n").await;
    assert_eq!(ids, ROWS as i64);
    let named: i64 = one(
        g,
        "MATCH (p:merge_person) WHERE p.NAME = 'name-' + toString(p.ID) RETURN count(p) AS n",
    )
    .await;
    assert_eq!(named, ROWS as i64);
}

/// Runs `job.conf`, checks the graph, then runs the converted `job.yaml` into a fresh graph.
async fn conf_and_yaml(dir: &Path, graph_db: &str) -> [serde_json::Value; 2] {
    let g = graph(graph_db).await;
    let (from_conf, _) = run(dir, "job.conf", "warn");
    assert_graph(&g).await;
    let g = graph(graph_db).await;
    let (from_yaml, _) = run(dir, "job.yaml", "warn");
    assert_graph(&g).await;
    for s in [&from_conf, &from_yaml] {
        assert_eq!(s["read"], ROWS);
        assert_eq!(s["written"], ROWS);
        assert_eq!(s["failed"], 0);
    }
    [from_conf, from_yaml]
}

/// The incident's job as written: 10 splits on 2 readers, batches of 1,000 with `UNWIND`, and
/// the final partial batch of 999 rows arrives (99,999 nodes, not 99,000).
#[tokio::test(flavor = "multi_thread")]
async fn the_incidents_partitioned_batch_job() {
    person("st_incident").await;
    let dir = scratch_dir("st_incident");
    let text = incident("st_incident", "st_incident");
    write_and_convert(&dir, &text);

    let plan = etl(&dir, &["plan", "job.conf"], "warn");
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(plan.stdout.lines().count(), 11, "{}", plan.stdout);

    let g = graph("st_incident").await;
    let (s, out) = run(&dir, "job.conf", "info");
    assert_graph(&g).await;
    let per_reader: Vec<u64> = serde_json::from_value(s["read_per_reader"].clone()).unwrap();
    assert_eq!(per_reader.len(), 2);
    assert!(per_reader.iter().all(|n| *n > 0), "{per_reader:?}");
    let splits: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("split read"))
        .collect();
    assert_eq!(splits.len(), 10, "{}", out.stderr);
    for reader in ["reader=0", "reader=1"] {
        assert!(splits.iter().any(|l| l.contains(reader)), "{splits:?}");
    }
    // Keys with no etlhost equivalent are named, with why.
    assert!(
        out.stderr
            .contains("job.conf:10: source.Jdbc.driver: `driver` dropped"),
        "{}",
        out.stderr
    );

    let g = graph("st_incident").await;
    let (y, _) = run(&dir, "job.yaml", "warn");
    assert_graph(&g).await;
    assert_eq!(y["read_per_reader"].as_array().unwrap().len(), 2);
    let yaml = std::fs::read_to_string(dir.join("job.yaml")).unwrap();
    assert!(yaml.contains("partition_num: 10"), "{yaml}");
    assert!(
        yaml.contains("# sink.MysqlToNeo4j.queryConfigList[0].queryParamPosition (line 37)"),
        "{yaml}"
    );
}

/// Without splitting, still batched; then with the query's columns swapped and
/// queryParamPosition swapped to match: the `$batch` rows carry queryParamPosition's names.
#[tokio::test(flavor = "multi_thread")]
async fn the_unsplit_batch_job_and_its_yaml() {
    person("st_unsplit").await;
    let dir = scratch_dir("st_unsplit");
    let text = unsplit(&incident("st_unsplit", "st_unsplit"));
    write_and_convert(&dir, &text);
    let [s, _] = conf_and_yaml(&dir, "st_unsplit").await;
    assert_eq!(s["read_per_reader"].as_array().unwrap().len(), 1);
    assert_eq!(s["batches"], 100);

    let swapped = text
        .replace(
            "SELECT ID,NAME FROM person",
            "SELECT NAME AS a, ID AS b FROM person",
        )
        .replace("{ ID = 0, NAME = 1 }", "{ ID = 1, NAME = 0 }");
    std::fs::write(dir.join("job.conf"), swapped).unwrap();
    let g = graph("st_unsplit").await;
    run(&dir, "job.conf", "warn");
    assert_graph(&g).await;
}

/// The first version: one CREATE per row with `$ID` and `$NAME` filled by position.
#[tokio::test(flavor = "multi_thread")]
async fn the_one_by_one_job_with_query_param_position() {
    person("st_onebyone").await;
    let dir = scratch_dir("st_onebyone");
    write_and_convert(&dir, &one_by_one(&incident("st_onebyone", "st_onebyone")));
    let yaml = std::fs::read_to_string(dir.join("job.yaml")).unwrap();
    assert!(yaml.contains("write_mode: one_by_one"), "{yaml}");
    assert!(yaml.contains("row_parameters: true"), "{yaml}");
    let [s, y] = conf_and_yaml(&dir, "st_onebyone").await;
    assert_eq!(s["batches"], ROWS);
    assert_eq!(y["batches"], ROWS);
}

/// To the console: every row printed once, with its name; the YAML and TOML conversions too.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_job() {
    person("st_console").await;
    let dir = scratch_dir("st_console");
    write_and_convert(&dir, &console(&incident("st_console", "unused")));
    let toml = etl(&dir, &["convert", "job.conf", "-o", "job.toml"], "warn");
    assert_eq!(toml.code, 0, "{}", toml.stderr);
    for spec in ["job.conf", "job.yaml", "job.toml"] {
        let (s, out) = run(&dir, spec, "warn");
        assert_eq!(s["written"], ROWS);
        let mut ids = std::collections::BTreeSet::new();
        for line in out.stdout.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = row["ID"].as_u64().unwrap();
            assert_eq!(row["NAME"], format!("name-{id}"));
            ids.insert(id);
        }
        assert_eq!(ids.len() as u64, ROWS, "{spec}");
        assert_eq!(out.stdout.lines().count() as u64, ROWS, "{spec}");
    }
}

/// A connector etlhost does not have is refused before anything runs, naming file, line and key.
#[test]
fn an_unsupported_connector_is_an_error() {
    let dir = scratch_dir("st_unsupported");
    let text = console(&incident("st_unsupported", "unused")).replace("  Jdbc {", "  Kafka {");
    std::fs::write(dir.join("job.conf"), text).unwrap();
    for cmd in ["validate", "run"] {
        let out = etl(&dir, &[cmd, "job.conf"], "warn");
        assert_eq!(out.code, 2);
        assert_eq!(
            out.stderr,
            "error: job.conf:8: source.Kafka: source connector `Kafka` is not supported: etlhost \
             reads MySQL and MariaDB with `Jdbc` (url = \"jdbc:mysql://host:3306/db\"); its own \
             sources are listed by `etlhost plugins`\n"
        );
    }
    let out = etl(&dir, &["convert", "job.conf", "-o", "job.yaml"], "warn");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("job.conf:8: source.Kafka:"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("job.yaml").exists());
}

/// An option a plugin refuses is reported at the SeaTunnel key and line it came from.
#[test]
fn plugin_option_errors_point_into_the_conf_file() {
    let dir = scratch_dir("st_plugin_error");
    let text = incident("st_plugin_error", "unused")
        .replace("uri = \"bolt://127.0.0.1", "uri = \"http://127.0.0.1");
    std::fs::write(dir.join("job.conf"), text).unwrap();
    let out = etl(&dir, &["validate", "job.conf"], "warn");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.ends_with(
            "error: job.conf:25: sink.MysqlToNeo4j.uri: unknown scheme `http://`: use bolt://, \
             bolt+s://, bolt+ssc://, neo4j://, neo4j+s:// or neo4j+ssc://\n"
        ),
        "{}",
        out.stderr
    );
}
