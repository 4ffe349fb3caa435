//! `etlhost init` on a schema with foreign keys and a join table, then `etlhost run` on the spec it
//! wrote: nodes, relationships and their properties must be in the graph.

use std::path::{Path, PathBuf};

use crate::support::{etlhost_command, etlhost_init, exec, graph, mysql, one, read_summary};

async fn company_schema(db: &str) {
    let pool = mysql(db).await;
    for sql in [
        "CREATE TABLE company (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, founded DATE)",
        "CREATE TABLE employee (id BIGINT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), \
         company_id INT, manager_id BIGINT, salary DECIMAL(10,2), \
         FOREIGN KEY (company_id) REFERENCES company(id), \
         FOREIGN KEY (manager_id) REFERENCES employee(id))",
        "CREATE TABLE project (code VARCHAR(20) PRIMARY KEY, title VARCHAR(100))",
        "CREATE TABLE employee_project (employee_id BIGINT, project_code VARCHAR(20), \
         role VARCHAR(50), hours INT, PRIMARY KEY (employee_id, project_code), \
         FOREIGN KEY (employee_id) REFERENCES employee(id), \
         FOREIGN KEY (project_code) REFERENCES project(code))",
        "INSERT INTO company VALUES (1, 'Acme', '1990-01-02'), (2, 'Globex', NULL)",
        "INSERT INTO employee VALUES (10, 'Ann', 'ann@acme.test', 1, NULL, 5000.50), \
         (11, 'Bob', 'bob@acme.test', 1, 10, 4000), (12, 'Cy', NULL, 2, NULL, NULL), \
         (13, 'Dee', 'dee@x.test', NULL, NULL, 1)",
        "INSERT INTO project VALUES ('P1', 'Rocket'), ('P2', 'Anvil')",
        "INSERT INTO employee_project VALUES (10, 'P1', 'lead', 30), (11, 'P1', 'dev', 40), \
         (11, 'P2', 'dev', 10)",
    ] {
        exec(&pool, sql).await;
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("init");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(spec: &Path) -> serde_json::Value {
    let summary = spec.with_extension("summary.json");
    let out = etlhost_command()
        .arg("run")
        .arg(spec)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--quiet")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_summary(&summary)
}

/// Checks the graph the company schema must give.
async fn check_graph(g: &neo4rs::Graph) {
    let count = |c: &'static str| async move { one::<i64>(g, c).await };
    assert_eq!(count("MATCH (n:Company) RETURN count(n) AS n").await, 2);
    assert_eq!(count("MATCH (n:Employee) RETURN count(n) AS n").await, 4);
    assert_eq!(count("MATCH (n:Project) RETURN count(n) AS n").await, 2);
    assert_eq!(count("MATCH ()-[r]->() RETURN count(r) AS n").await, 7);
    let name: String = one(g, "MATCH (n:Company {id: 1}) RETURN n.name AS n").await;
    assert_eq!(name, "Acme");
    let title: String = one(g, "MATCH (n:Project {code: 'P2'}) RETURN n.title AS n").await;
    assert_eq!(title, "Anvil");
    let email: String = one(g, "MATCH (n:Employee {id: 11}) RETURN n.email AS n").await;
    assert_eq!(email, "bob@acme.test");
    // Foreign key columns become relationships, not properties.
    assert_eq!(
        count("MATCH (n:Employee) WHERE n.company_id IS NOT NULL RETURN count(n) AS n").await,
        0
    );
    // Relationships from foreign keys, NULL keys giving none.
    let works: String = one(
        g,
        "MATCH (e:Employee)-[:COMPANY]->(c:Company) WITH e.name + '>' + c.name AS p \
         ORDER BY p RETURN reduce(s = '', x IN collect(p) | s + x + ';') AS n",
    )
    .await;
    assert_eq!(works, "Ann>Acme;Bob>Acme;Cy>Globex;");
    let boss: String = one(
        g,
        "MATCH (:Employee {id: 11})-[:MANAGER]->(m:Employee) RETURN m.name AS n",
    )
    .await;
    assert_eq!(boss, "Ann");
    // The join table: relationships between its two ends, with its other columns on them.
    let joins: String = one(
        g,
        "MATCH (e:Employee)-[r:EMPLOYEE_PROJECT]->(p:Project) \
         WITH e.name + '>' + p.code + ':' + r.role + ':' + toString(r.hours) AS x ORDER BY x \
         RETURN reduce(s = '', x IN collect(x) | s + x + ';') AS n",
    )
    .await;
    assert_eq!(joins, "Ann>P1:lead:30;Bob>P1:dev:40;Bob>P2:dev:10;");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_spec_that_builds_nodes_relationships_and_join_tables() {
    company_schema("e2e_init").await;
    let g = graph("e2e_init").await;
    let spec = scratch("company.yaml");
    let out = etlhost_init("e2e_init", "e2e_init", &spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "wrote {}: 3 node flows, 2 relationship flows from foreign keys, 1 from join tables\n\
             wrote {}: the graph model as a Mermaid diagram",
            spec.display(),
            spec.with_extension("graph.md").display()
        )
    );
    let text = std::fs::read_to_string(&spec).unwrap();
    for line in [
        "password: ${ETLHOST_MYSQL_PASSWORD:-etl}",
        "- CREATE CONSTRAINT company_id IF NOT EXISTS FOR (n:Company) REQUIRE n.id IS UNIQUE",
        "MERGE (n:Employee {id: row.id})",
        "SET n.name = row.name, n.email = row.email, n.salary = row.salary",
        "query: SELECT `id`, `company_id` FROM `employee` WHERE `company_id` IS NOT NULL",
        "MERGE (a)-[r:EMPLOYEE_PROJECT]->(b)",
        // A join table's composite primary key is split as a whole.
        "partition_column:\n    - employee_id\n    - project_code\n",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }

    let summary = run(&spec);
    let flows: Vec<(String, u64)> = summary["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["flow"].as_str().unwrap().to_string(),
                f["written"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("company", 2),
        ("employee", 4),
        ("project", 2),
        ("employee_company", 3),
        ("employee_manager", 1),
        ("employee_project", 3),
    ];
    assert_eq!(
        flows,
        expect.map(|(f, n)| (f.to_string(), n)).to_vec(),
        "per-flow statistics in run order"
    );
    assert_eq!(summary["read"], 15);
    assert_eq!(summary["written"], 15);
    assert_eq!(summary["status"], "succeeded");
    check_graph(&g).await;

    // MERGE everywhere: a second run changes nothing.
    run(&spec);
    check_graph(&g).await;

    // The same from a TOML spec, into a graph of its own.
    let g2 = graph("e2e_init_toml").await;
    let toml = scratch("company.toml");
    let out = etlhost_init("e2e_init", "e2e_init_toml", &toml, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read_to_string(&toml)
        .unwrap()
        .contains("[[flows]]"));
    run(&toml);
    check_graph(&g2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_selects_tables() {
    company_schema("e2e_init_select").await;
    let spec = scratch("select.yaml");

    // Without `project`, the join table is a table of its own with a relationship to employee.
    let out = etlhost_init("e2e_init_select", "x", &spec, &["--exclude", "project"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .contains("3 node flows, 3 relationship flows from foreign keys, 0 from join tables"));
    assert!(out.stderr.contains(
        "note: foreign key `employee_project_ibfk_2` of `employee_project` points at `project`, which is not generated: no relationship"
    ), "{}", out.stderr);

    let out = etlhost_init(
        "e2e_init_select",
        "x",
        &spec,
        &["--tables", "company,employee"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .contains("2 node flows, 2 relationship flows from foreign keys, 0 from join tables"));

    let out = etlhost_init("e2e_init_select", "x", &spec, &["--tables", "company,nope"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: table `nope` is not in the source (its tables: company, employee, employee_project, project)"
    );
}
