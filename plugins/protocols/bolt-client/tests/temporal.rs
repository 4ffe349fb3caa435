//! What ArcadeDB keeps of Bolt's Duration and zoned Time structures (the PostgreSQL source's
//! `interval` and `timetz`): each written as a node property and read back.

use std::collections::BTreeMap;
use std::time::Duration;

use etlhost_bolt_client::packstream::{self as ps, encode, Ps};
use etlhost_bolt_client::{Auth, Connection, Settings};

const ADDRESS: &str = "127.0.0.1:7687";
const DATABASE: Option<&str> = Some("test");

fn connect() -> Connection {
    let settings = Settings {
        auth: Auth::Basic {
            user: "root",
            password: "etlhost-pass",
        },
        tls: None,
        routing: None,
        timeout: Duration::from_secs(10),
    };
    Connection::connect(ADDRESS, &settings).unwrap_or_else(|e| {
        panic!("no Bolt server at {ADDRESS} ({e}): start it with `cargo xtask services`")
    })
}

/// Writes `v` as property `v` of a fresh node labelled `label` and returns what a read gives back.
fn round_trip(label: &str, v: Ps) -> (Ps, Ps) {
    let mut conn = connect();
    let none = |m: &mut Vec<u8>| ps::map_header(m, 0);
    conn.run_in_transaction(DATABASE, &format!("MATCH (n:{label}) DELETE n"), none)
        .unwrap();
    let params = Ps::Map(BTreeMap::from([("v".to_string(), v)]));
    conn.run_in_transaction(DATABASE, &format!("CREATE (:{label} {{v: $v}})"), |m| {
        encode(m, &params)
    })
    .unwrap();
    let echo = {
        conn.run_read(DATABASE, "RETURN $v AS v", |m| encode(m, &params))
            .unwrap();
        let (mut records, _) = conn.pull(-1).unwrap();
        records.remove(0).remove(0)
    };
    conn.run_read(
        DATABASE,
        &format!("MATCH (n:{label}) RETURN n.v AS v"),
        none,
    )
    .unwrap();
    let (mut records, _) = conn.pull(-1).unwrap();
    conn.run_in_transaction(DATABASE, &format!("MATCH (n:{label}) DELETE n"), none)
        .unwrap();
    (echo, records.remove(0).remove(0))
}

/// The bolt sink writes a PostgreSQL interval as a Duration (months, days, seconds,
/// nanoseconds 0..1e9) and a `timetz` as a Time (nanoseconds of the local day, offset east of UTC
/// in seconds); ArcadeDB keeps every field as written, signs included and nothing normalised
/// (months are not turned into days, nor days into seconds), so what the graph returns compares
/// equal to the source.
#[test]
fn durations_and_zoned_times_are_kept_as_written() {
    let duration =
        |m, d, s, n| Ps::Struct(b'E', vec![Ps::Int(m), Ps::Int(d), Ps::Int(s), Ps::Int(n)]);
    let time = |n, o| Ps::Struct(b'T', vec![Ps::Int(n), Ps::Int(o)]);
    let cases = [
        duration(14, 3, 3723, 456_000),
        duration(0, 3, -3724, 544_000_000),
        duration(-14, -3, 0, 0),
        duration(0, 0, 90_000, 1_000),
        duration(0, 0, 0, 0),
        time(3_723_000_456_000, 19_800),
        time(0, -18_000),
        time(86_399_999_999_000, 0),
        time(43_200_000_000_000, -(3 * 3600 + 61)),
    ];
    for (i, v) in cases.into_iter().enumerate() {
        let (echo, stored) = round_trip(&format!("TemporalProbe{i}"), v.clone());
        assert_eq!(echo, v, "RETURN $v");
        assert_eq!(stored, v, "a node property");
    }
}

/// PostgreSQL arrays become lists: ArcadeDB keeps a NULL element, nested lists (a
/// multi-dimensional array), an empty list and a list of durations as node properties.
#[test]
fn lists_with_nulls_and_nested_lists_are_kept() {
    let cases = [
        Ps::List(vec![Ps::Int(1), Ps::Null, Ps::Int(3)]),
        Ps::List(vec![
            Ps::List(vec![Ps::Int(1), Ps::Null]),
            Ps::List(vec![Ps::Int(3), Ps::Int(4)]),
        ]),
        Ps::List(vec![]),
        Ps::List(vec![Ps::Struct(
            b'E',
            vec![Ps::Int(1), Ps::Int(2), Ps::Int(3), Ps::Int(4)],
        )]),
        Ps::List(vec![Ps::String("a".into()), Ps::Int(1)]),
    ];
    for (i, v) in cases.into_iter().enumerate() {
        let (echo, stored) = round_trip(&format!("ListProbe{i}"), v.clone());
        assert_eq!(echo, v, "RETURN $v");
        assert_eq!(stored, v, "a node property");
    }
}
