//! Every mapped PostgreSQL type decoded from the server's own binary form (the form of COPY
//! BINARY: tokio-postgres asks for binary results), against the real server `cargo xtask
//! services` starts (127.0.0.1:5432, etl/etl, database etl with PostGIS and cube). Where the
//! mapping is a text, it is compared with the server's `::text` of the same value, so the byte
//! layouts and the text forms are the server's, not guesses.

use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{ColumnType, Point, Value};
use etlhost_postgres::types::{self, ColumnPlan, Typing};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "etlhost_types_test";

/// A column's bytes as the server sent them.
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn connect() -> Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=etl password=etl dbname=etl",
        NoTls,
    )
    .await
    .unwrap_or_else(|e| {
        panic!("no PostgreSQL on 127.0.0.1:5432 ({e}): run `cargo xtask services`")
    });
    tokio::spawn(conn);
    client
}

/// `expr` selected as the source selects a column (its type learned by preparing, then
/// `select_expr`'s cast), decoded by its plan.
async fn decoded(
    client: &Client,
    expr: &str,
    typing: &Typing,
) -> (ColumnPlan, Result<Value, String>) {
    let stmt = client
        .prepare(&format!("SELECT {expr} AS x"))
        .await
        .unwrap();
    let ty = stmt.columns()[0].type_().clone();
    let plan = types::plan("x", &ty, typing);
    let sel = types::select_expr("x", &ty);
    let row = client
        .query_one(&format!("SELECT {sel} FROM (SELECT {expr} AS x) s"), &[])
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    let raw: Raw = row.get(0);
    let v = plan.decode.decode(raw.0.as_deref());
    (plan, v)
}

async fn value(client: &Client, expr: &str) -> Value {
    decoded(client, expr, &Typing::default())
        .await
        .1
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// The value's text as the server's output function writes it (a text-format result; a cast
/// to text can differ: `'1.2.3.4'::inet::text` is `1.2.3.4/32`).
async fn server_text(client: &Client, expr: &str) -> String {
    let messages = client
        .simple_query(&format!("SELECT {expr}"))
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return row.get(0).expect("not NULL").to_string();
        }
    }
    panic!("{expr}: no row")
}

/// The value is the string the server prints for `text_expr`.
async fn same_text(client: &Client, expr: &str, text_expr: &str) {
    let want = server_text(client, text_expr).await;
    assert_eq!(value(client, expr).await, Value::String(want), "{expr}");
}

fn micros(y: i64, mo: u32, d: u32, secs: i64) -> i64 {
    (days_from_civil(y, mo, d) * 86_400 + secs) * 1_000_000
}

#[tokio::test]
async fn numbers_text_and_bytes() {
    let c = connect().await;
    assert_eq!(value(&c, "(-123)::int2").await, Value::Int(-123));
    assert_eq!(
        value(&c, "2147483647::int4").await,
        Value::Int(2_147_483_647)
    );
    assert_eq!(
        value(&c, "(-9223372036854775808)::int8").await,
        Value::Int(i64::MIN)
    );
    assert_eq!(value(&c, "0.1::float4").await, Value::Float(0.1));
    assert_eq!(value(&c, "1.5::float8").await, Value::Float(1.5));
    assert_eq!(
        value(&c, "'-Infinity'::float4").await,
        Value::Float(f64::NEG_INFINITY)
    );
    let Value::Float(nan) = value(&c, "'NaN'::float8").await else {
        panic!()
    };
    assert!(nan.is_nan());
    for n in [
        "12345.678",
        "-0.0012",
        "0.00",
        "100000000",
        "0.000001",
        "-123456789012345678901234567890.123456789",
        "1e-20",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        let expr = format!("'{n}'::numeric");
        let want = server_text(&c, &expr).await;
        assert_eq!(value(&c, &expr).await, Value::Decimal(want), "{expr}");
    }
    assert_eq!(
        value(&c, "12.5::numeric(10,3)").await,
        Value::Decimal("12.500".into())
    );
    for m in ["'12.35'::money", "'-1234567.05'::money", "'0'::money"] {
        let want = server_text(&c, &format!("{m}::numeric")).await;
        assert_eq!(value(&c, m).await, Value::Decimal(want), "{m}");
    }
    assert_eq!(
        value(&c, "'é中😀'::text").await,
        Value::String("é中😀".into())
    );
    assert_eq!(
        value(&c, "'ab'::varchar(5)").await,
        Value::String("ab".into())
    );
    assert_eq!(
        value(&c, "'ab'::char(4)").await,
        Value::String("ab  ".into())
    );
    assert_eq!(
        value(&c, "'pg_class'::name").await,
        Value::String("pg_class".into())
    );
    assert_eq!(value(&c, "'x'::\"char\"").await, Value::String("x".into()));
    assert_eq!(
        value(&c, "'\\x00ff'::bytea").await,
        Value::Bytes(vec![0, 255])
    );
    assert_eq!(value(&c, "true").await, Value::Bool(true));
    assert_eq!(value(&c, "NULL::int4").await, Value::Null);
    same_text(
        &c,
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    )
    .await;
}

#[tokio::test]
async fn dates_times_and_intervals() {
    let c = connect().await;
    assert_eq!(
        value(&c, "'2024-02-29'::date").await,
        Value::Date(days_from_civil(2024, 2, 29) as i32)
    );
    assert_eq!(
        value(&c, "'1900-01-01'::date").await,
        Value::Date(days_from_civil(1900, 1, 1) as i32)
    );
    assert_eq!(
        value(&c, "'01:02:03.000456'::time").await,
        Value::Time(3_723_000_456)
    );
    assert_eq!(
        value(&c, "'01:02:03.000456+05:30'::timetz").await,
        Value::ZonedTime {
            micros: 3_723_000_456,
            offset_seconds: 19_800
        }
    );
    assert_eq!(
        value(&c, "'23:00:00-03'::timetz").await,
        Value::ZonedTime {
            micros: 82_800_000_000,
            offset_seconds: -10_800
        }
    );
    assert_eq!(
        value(&c, "'2024-02-29 01:02:03.5'::timestamp").await,
        Value::DateTime(micros(2024, 2, 29, 3723) + 500_000)
    );
    assert_eq!(
        value(&c, "'1969-12-31 23:59:59'::timestamp").await,
        Value::DateTime(-1_000_000)
    );
    assert_eq!(
        value(&c, "'2024-02-29 01:02:03.5+02'::timestamptz").await,
        Value::Timestamp(micros(2024, 2, 28, 23 * 3600 + 2 * 60 + 3) + 500_000)
    );
    assert_eq!(
        value(&c, "'1 year 2 months 3 days -00:00:01.5'::interval").await,
        Value::Duration {
            months: 14,
            days: 3,
            micros: -1_500_000
        }
    );
    assert_eq!(
        value(&c, "'-1 month 36 hours'::interval").await,
        Value::Duration {
            months: -1,
            days: 0,
            micros: 36 * 3_600_000_000
        }
    );
    for (expr, ty) in [
        ("'infinity'::date", "date"),
        ("'-infinity'::timestamp", "timestamp"),
        ("'infinity'::timestamptz", "timestamptz"),
    ] {
        let e = decoded(&c, expr, &Typing::default()).await.1.unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{ty} 'infinity' or '-infinity' has no counterpart"
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn json_arrays_enums_and_domains() {
    let c = connect().await;
    let doc = r#"'{"b": [1, null], "a": "x", "n": 1.50}'"#;
    same_text(&c, &format!("{doc}::json"), &format!("{doc}::json")).await;
    same_text(&c, &format!("{doc}::jsonb"), &format!("{doc}::jsonb")).await;
    let (plan, v) = decoded(&c, &format!("{doc}::jsonb"), &Typing { json_value: true }).await;
    assert_eq!(plan.column.ty, ColumnType::Any);
    // jsonb orders keys by length, then bytes.
    assert_eq!(
        v.unwrap(),
        Value::Map(vec![
            ("a".into(), Value::String("x".into())),
            ("b".into(), Value::List(vec![Value::Int(1), Value::Null])),
            ("n".into(), Value::Float(1.5)),
        ])
    );
    let int = Value::Int;
    assert_eq!(
        value(&c, "'{{1,NULL},{3,4}}'::int4[]").await,
        Value::List(vec![
            Value::List(vec![int(1), Value::Null]),
            Value::List(vec![int(3), int(4)])
        ])
    );
    assert_eq!(
        value(&c, "'[0:1]={5,6}'::int8[]").await,
        Value::List(vec![int(5), int(6)])
    );
    assert_eq!(value(&c, "'{}'::int4[]").await, Value::List(vec![]));
    assert_eq!(
        value(&c, r#"'{"a,b",NULL,"say \"hi\""}'::text[]"#).await,
        Value::List(vec![
            Value::String("a,b".into()),
            Value::Null,
            Value::String("say \"hi\"".into())
        ])
    );
    assert_eq!(
        value(&c, "ARRAY[1.50, -2]::numeric[]").await,
        Value::List(vec![
            Value::Decimal("1.50".into()),
            Value::Decimal("-2".into())
        ])
    );

    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};
         CREATE TYPE {SCHEMA}.mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN {SCHEMA}.positive AS int8 CHECK (VALUE > 0);
         CREATE DOMAIN {SCHEMA}.code AS varchar(8);"
    ))
    .await
    .unwrap();
    let (plan, v) = decoded(&c, &format!("'happy'::{SCHEMA}.mood"), &Typing::default()).await;
    assert_eq!(
        (plan.column.ty, v.unwrap()),
        (ColumnType::String, Value::String("happy".into()))
    );
    assert_eq!(
        value(&c, &format!("ARRAY['sad', 'happy']::{SCHEMA}.mood[]")).await,
        Value::List(vec![
            Value::String("sad".into()),
            Value::String("happy".into())
        ])
    );
    // A result column of a domain type is described by its base type.
    let (plan, v) = decoded(&c, &format!("5::{SCHEMA}.positive"), &Typing::default()).await;
    assert_eq!(
        (plan.column.ty, v.unwrap()),
        (ColumnType::Int, Value::Int(5))
    );
    assert_eq!(
        value(&c, &format!("'AB-1'::{SCHEMA}.code")).await,
        Value::String("AB-1".into())
    );
    c.batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn network_text_search_ranges_and_unknown_types() {
    let c = connect().await;
    for expr in [
        "'192.168.0.1'::inet",
        "'192.168.0.1/24'::inet",
        "'192.168.0.0/24'::cidr",
        "'10.0.0.0/8'::cidr",
        "'2001:db8::1'::inet",
        "'2001:db8::/32'::cidr",
        "'::1'::inet",
        "'::'::inet",
        "'::1.2.3.4'::inet",
        "'::ffff:1.2.3.4'::inet",
        "'fe80::1:0:0:1/64'::inet",
        "'1:0:0:1:0:0:0:1'::inet",
        "'08:00:2B:01:02:03'::macaddr",
        "'08:00:2b:01:02:03:04:05'::macaddr8",
        "'a:1A,3 it''s fat:2B,4C back\\\\slash'::tsvector",
        "to_tsvector('english', 'The fat rats ate the fat cheese')",
    ] {
        same_text(&c, expr, expr).await;
    }
    for expr in [
        "'[1,10)'::int4range",
        "'empty'::int8range",
        "'[2024-01-01 10:00, infinity)'::tsrange",
        "'(1.5,2]'::numrange",
        "'{[1,3), [5,7)}'::int4multirange",
    ] {
        let (plan, v) = decoded(&c, expr, &Typing::default()).await;
        assert_eq!(plan.warning, None, "{expr}");
        assert_eq!(
            v.unwrap(),
            Value::String(server_text(&c, expr).await),
            "{expr}"
        );
    }
    for (expr, ty) in [
        ("'(1, 2)'::cube", "cube"),
        ("'<a/>'::xml", "xml"),
        ("B'101'", "bit"),
    ] {
        let (plan, v) = decoded(&c, expr, &Typing::default()).await;
        assert_eq!(
            v.unwrap(),
            Value::String(server_text(&c, expr).await),
            "{expr}"
        );
        assert_eq!(
            plan.warning.unwrap(),
            format!(
                "column `x`: type {ty} has no etlhost mapping; it is read as its text \
                 (cast it in a `query:` to choose another form)"
            )
        );
    }
    assert_eq!(
        value(&c, "ARRAY['(1, 2)'::cube, NULL]").await,
        Value::List(vec![Value::String("(1, 2)".into()), Value::Null])
    );
}

#[tokio::test]
async fn postgis_points_and_other_shapes() {
    let c = connect().await;
    let point = |srid, x, y, z| Value::Point(Point { srid, x, y, z });
    assert_eq!(
        value(&c, "'SRID=4326;POINT(13.4 52.5)'::geometry").await,
        point(4326, 13.4, 52.5, None)
    );
    assert_eq!(
        value(&c, "'POINT Z (1 2 3)'::geometry").await,
        point(0, 1.0, 2.0, Some(3.0))
    );
    assert_eq!(
        value(&c, "'SRID=4326;POINT(-0.1 51.5)'::geography").await,
        point(4326, -0.1, 51.5, None)
    );
    // Other shapes: the SRID (four little-endian bytes) then the shape's WKB, as the mysql
    // source gives them.
    for g in [
        "'SRID=3857;LINESTRING(0 0,1 1)'::geometry",
        "'POLYGON((0 0,1 0,1 1,0 0))'::geometry",
        "'SRID=4326;MULTIPOINT((1 2),(3 4))'::geometry",
        "'POINT EMPTY'::geometry",
    ] {
        let row = c
            .query_one(
                &format!("SELECT ST_SRID({g}), ST_AsBinary({g}, 'NDR')"),
                &[],
            )
            .await
            .unwrap();
        let (srid, wkb): (i32, Vec<u8>) = (row.get(0), row.get(1));
        let mut want = (srid as u32).to_le_bytes().to_vec();
        want.extend_from_slice(&wkb);
        assert_eq!(value(&c, g).await, Value::Bytes(want), "{g}");
    }
}
