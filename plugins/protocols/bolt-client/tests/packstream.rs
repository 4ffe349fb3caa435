//! PackStream round trips: whatever is encoded decodes to the same value, at every size marker.

use std::collections::BTreeMap;

use etlhost_bolt_client::packstream::{self as ps, decode, encode, Ps};
use proptest::prelude::*;

/// Equality with floats compared by their bits, so that a NaN (and -0.0) must survive unchanged.
fn same(a: &Ps, b: &Ps) -> bool {
    match (a, b) {
        (Ps::Float(x), Ps::Float(y)) => x.to_bits() == y.to_bits(),
        (Ps::List(x), Ps::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Ps::Map(x), Ps::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        (Ps::Struct(ta, x), Ps::Struct(tb, y)) => {
            ta == tb && x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

fn round_trip(v: &Ps) -> Ps {
    let mut out = Vec::new();
    encode(&mut out, v);
    decode(&out).unwrap_or_else(|e| panic!("{v:?} does not decode: {e}"))
}

/// The lengths where the header changes: tiny (< 16), 8, 16 and 32-bit sizes.
const LENGTHS: [usize; 9] = [0, 15, 16, 255, 256, 65_535, 65_536, 70_000, 1];

/// Integers at each width's edges: tiny, 8, 16, 32 and 64-bit.
const EDGES: [i64; 18] = [
    -16,
    -17,
    127,
    128,
    -128,
    -129,
    i16::MAX as i64,
    i16::MAX as i64 + 1,
    i16::MIN as i64,
    i16::MIN as i64 - 1,
    i32::MAX as i64,
    i32::MAX as i64 + 1,
    i32::MIN as i64,
    i32::MIN as i64 - 1,
    i64::MAX,
    i64::MIN,
    0,
    -1,
];

fn leaf() -> impl Strategy<Value = Ps> {
    prop_oneof![
        Just(Ps::Null),
        any::<bool>().prop_map(Ps::Bool),
        any::<i64>().prop_map(Ps::Int),
        proptest::sample::select(EDGES.to_vec()).prop_map(Ps::Int),
        any::<f64>().prop_map(Ps::Float),
        Just(Ps::Float(f64::NAN)),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Ps::Bytes),
        any::<String>().prop_map(Ps::String),
        proptest::sample::select(LENGTHS.to_vec()).prop_map(|n| Ps::String("é".repeat(n / 2))),
    ]
}

fn value() -> impl Strategy<Value = Ps> {
    leaf().prop_recursive(4, 64, 20, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(Ps::List),
            proptest::collection::btree_map(any::<String>(), inner.clone(), 0..20)
                .prop_map(Ps::Map),
            (any::<u8>(), proptest::collection::vec(inner, 0..=15))
                .prop_map(|(tag, fields)| Ps::Struct(tag, fields)),
        ]
    })
}

proptest! {
    #[test]
    fn any_value_round_trips(v in value()) {
        let back = round_trip(&v);
        prop_assert!(same(&v, &back), "{:?} came back as {:?}", v, back);
    }

    #[test]
    fn any_integer_round_trips(i in any::<i64>()) {
        prop_assert_eq!(round_trip(&Ps::Int(i)), Ps::Int(i));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic(v in value(), cut in any::<prop::sample::Index>()) {
        let mut out = Vec::new();
        encode(&mut out, &v);
        let cut = cut.index(out.len());
        prop_assert!(decode(&out[..cut]).is_err());
    }
}

#[test]
fn integers_use_the_smallest_width() {
    let width = |i: i64| {
        let mut out = Vec::new();
        ps::int(&mut out, i);
        out.len()
    };
    for (i, n) in [
        (-16, 1),
        (127, 1),
        (-17, 2),
        (-128, 2),
        (128, 3),
        (-129, 3),
        (i16::MAX as i64 + 1, 5),
        (i16::MIN as i64 - 1, 5),
        (i32::MAX as i64 + 1, 9),
        (i64::MIN, 9),
    ] {
        assert_eq!(width(i), n, "{i}");
        assert_eq!(round_trip(&Ps::Int(i)), Ps::Int(i));
    }
}

#[test]
fn containers_round_trip_at_every_size_marker() {
    for n in LENGTHS {
        let s = Ps::String("x".repeat(n));
        assert_eq!(round_trip(&s), s);
        let b = Ps::Bytes(vec![7; n]);
        assert_eq!(round_trip(&b), b);
        let list = Ps::List((0..n as i64).map(Ps::Int).collect());
        assert_eq!(round_trip(&list), list);
        let map = Ps::Map(
            (0..n)
                .map(|i| (i.to_string(), Ps::Null))
                .collect::<BTreeMap<_, _>>(),
        );
        assert_eq!(round_trip(&map), map);
    }
    let nested = Ps::List(vec![Ps::Map(BTreeMap::from([(
        "k".to_string(),
        Ps::Struct(
            0x4E,
            vec![Ps::Int(1), Ps::List(vec![]), Ps::Map(BTreeMap::new())],
        ),
    )]))]);
    assert_eq!(round_trip(&nested), nested);
}

#[test]
fn trailing_bytes_and_unknown_markers_are_errors() {
    assert!(decode(&[0x01, 0x02]).is_err());
    assert!(decode(&[0xE0]).is_err());
    // A map whose key is not a string.
    assert!(decode(&[0xA1, 0x01, 0x01]).is_err());
}
