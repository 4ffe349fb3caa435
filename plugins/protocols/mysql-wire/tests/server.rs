//! Against the real MariaDB `cargo xtask services` starts (127.0.0.1:3306, user `etl`): each test
//! creates and drops a database of its own.

use std::time::Duration;

use etlhost_mysql_wire::{Cell, Config, Conn, Error, Value};

fn config(database: Option<&str>) -> Config {
    Config {
        host: "127.0.0.1".into(),
        port: 3306,
        user: Some("etl".into()),
        password: "etl".into(),
        database: database.map(String::from),
        init: vec!["SET time_zone = '+00:00'".into()],
        timeout: Duration::from_secs(10),
    }
}

fn connect(database: Option<&str>) -> Conn {
    Conn::connect(&config(database)).unwrap_or_else(|e| {
        panic!("no MariaDB at 127.0.0.1:3306 ({e}): start it with `cargo xtask services`")
    })
}

/// A fresh database with `setup` run in it; dropped again by the returned guard.
struct Database(&'static str);

impl Database {
    fn new(name: &'static str, setup: &[&str]) -> Database {
        let mut admin = connect(None);
        admin
            .query(&format!("DROP DATABASE IF EXISTS `{name}`"))
            .unwrap();
        admin
            .query(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .unwrap();
        admin.quit();
        let mut c = connect(Some(name));
        for sql in setup {
            c.query(sql).unwrap();
        }
        c.quit();
        Database(name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = Conn::connect(&config(None)) {
            let _ = c.query(&format!("DROP DATABASE IF EXISTS `{}`", self.0));
        }
    }
}

/// Every row's cells, owned.
fn read_all(c: Conn, sql: &str, params: &[Value]) -> Vec<Vec<Option<Value>>> {
    let mut rows = c.execute(sql, params).unwrap();
    let mut all = Vec::new();
    while let Some(row) = rows.next_row().unwrap() {
        let cells = row.map(|cell| match cell.unwrap() {
            Cell::Null => None,
            Cell::Bytes(b) => Some(Value::Bytes(b.to_vec())),
            Cell::Value(v) => Some(v),
        });
        all.push(cells.collect());
    }
    assert!(rows.next_row().unwrap().is_none(), "the end stays the end");
    rows.close();
    all
}

#[test]
fn prepared_select_reads_typed_rows() {
    let db = Database::new(
        "etlhost_mysql_wire_rows",
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, big BIGINT UNSIGNED, name VARCHAR(50), \
             price DECIMAL(10,2), at DATETIME(6), ratio DOUBLE, note TEXT)",
            "INSERT INTO t VALUES \
             (1, 18446744073709551615, 'ä€😀', 12.50, '2024-02-29 23:59:58.123456', 0.25, NULL), \
             (2, NULL, '', -0.01, NULL, -1e300, 'x'), \
             (3, 0, 'three', 3.00, '1970-01-01 00:00:00', 0, NULL)",
        ],
    );
    let c = connect(Some(db.0));
    let rows = read_all(
        c,
        "SELECT * FROM t WHERE id >= ? ORDER BY id",
        &[Value::Int(1)],
    );
    let bytes = |s: &str| Some(Value::Bytes(s.as_bytes().to_vec()));
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        [
            Some(Value::Int(1)),
            Some(Value::UInt(u64::MAX)),
            bytes("ä€😀"),
            bytes("12.50"),
            Some(Value::Date(2024, 2, 29, 23, 59, 58, 123_456)),
            Some(Value::Double(0.25)),
            None,
        ]
    );
    assert_eq!(rows[1][1], None);
    assert_eq!(rows[1][2], bytes(""));
    assert_eq!(rows[1][5], Some(Value::Double(-1e300)));
    assert_eq!(rows[1][6], bytes("x"));
    assert_eq!(rows[2][4], Some(Value::Date(1970, 1, 1, 0, 0, 0, 0)));
}

#[test]
fn many_rows_and_wide_nulls() {
    // More than 8 columns: the NULL bitmap spans bytes.
    let db = Database::new(
        "etlhost_mysql_wire_many",
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, c1 INT, c2 INT, c3 INT, c4 INT, c5 INT, c6 INT, \
             c7 INT, c8 INT, c9 VARCHAR(10))",
            "INSERT INTO t (id, c9) SELECT seq, IF(seq % 2 = 0, NULL, 'odd') FROM seq_1_to_20000",
        ],
    );
    let c = connect(Some(db.0));
    let columns = c
        .execute("SELECT * FROM t ORDER BY id", &[])
        .map(|rows| {
            let n = rows.columns().len();
            rows.close();
            n
        })
        .unwrap();
    assert_eq!(columns, 10);
    let rows = read_all(connect(Some(db.0)), "SELECT * FROM t ORDER BY id", &[]);
    assert_eq!(rows.len(), 20_000);
    for (i, row) in rows.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(row[0], Some(Value::Int(id)));
        assert!(row[1..9].iter().all(Option::is_none));
        let odd = (id % 2 == 1).then(|| Value::Bytes(b"odd".to_vec()));
        assert_eq!(row[9], odd);
    }
}

#[test]
fn server_errors_are_reported() {
    let db = Database::new("etlhost_mysql_wire_errors", &[]);
    let err = connect(Some(db.0))
        .execute("SELECT * FROM missing", &[])
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Server { code: 1146, state, .. } if state == "42S02"),
        "{err}"
    );
    assert!(err.to_string().starts_with("ERROR 1146 (42S02): "), "{err}");

    let mut wrong = config(None);
    wrong.password = "not-the-password".into();
    let err = Conn::connect(&wrong).err().unwrap();
    assert!(matches!(err, Error::Server { code: 1045, .. }), "{err}");

    let err = connect(None).execute("DO 1", &[]).err().unwrap();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}
