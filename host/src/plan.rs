//! Planning: which splits a job reads. The host owns this, so every source plugin gets splitting for
//! free and only has to read the key range it is handed.
//!
//! With `partition_column`, the key is cut into `partition_num` contiguous ranges. For a number or
//! date key these are equal ranges over `[lower, upper]` (queried from the source when not given)
//! as long as the rows are spread evenly over them; where a sample of the keys shows them bunched
//! (a few ids near 1 and most near 10^12, say), and always for text keys, the cuts are the
//! sample's quantiles, so each split holds about the same number of rows and the estimates follow
//! the data. A key of several columns (`[region, id]`) is always cut at sampled tuples. The first
//! split is unbounded below and also takes the NULL keys; the last is unbounded above. So every row
//! lands in exactly one split whatever the bounds say: rows outside the bounds go to the first or
//! last split, never nowhere.

use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{ColumnType, CursorRange, KeyBounds, KeyRange, KeySample, Split, Value};

use crate::plugin::SourceHandle;
use crate::spec::{FlowRef, SpecError};

/// A split with the planner's estimate of its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSplit {
    pub split: Split,
    pub estimated_rows: u64,
}

/// A point on the key's number line. Integers (and dates, datetimes) are exact; decimals and floats
/// only need boundaries in the right order, which `f64` gives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Int(i128),
    Float(f64),
}

fn key_of(v: &Value) -> Option<Key> {
    Some(match v {
        Value::Int(i) => Key::Int(*i as i128),
        Value::UInt(u) => Key::Int(*u as i128),
        Value::Date(d) => Key::Int(*d as i128),
        Value::DateTime(us) | Value::Timestamp(us) => Key::Int(*us as i128),
        Value::Float(f) => Key::Float(*f),
        Value::Decimal(s) => Key::Float(s.parse().ok()?),
        _ => return None,
    })
}

/// A key back as a value of the column's type.
fn value_of(k: Key, ty: ColumnType) -> Value {
    match (k, ty) {
        (Key::Int(i), ColumnType::UInt) => Value::UInt(i as u64),
        (Key::Int(i), ColumnType::Date) => Value::Date(i as i32),
        (Key::Int(i), ColumnType::DateTime) => Value::DateTime(i as i64),
        (Key::Int(i), ColumnType::Timestamp) => Value::Timestamp(i as i64),
        (Key::Int(i), _) => Value::Int(i as i64),
        (Key::Float(f), ColumnType::Decimal) => Value::Decimal(format!("{f}")),
        (Key::Float(f), _) => Value::Float(f),
    }
}

/// The column's type as planning sees it: from the bounds' values (a source may declare `Any`).
fn splittable_type(b: &KeyBounds) -> Option<ColumnType> {
    let ty = |v: &Value| match v {
        Value::Int(_) => Some(ColumnType::Int),
        Value::UInt(_) => Some(ColumnType::UInt),
        Value::Date(_) => Some(ColumnType::Date),
        Value::DateTime(_) => Some(ColumnType::DateTime),
        Value::Timestamp(_) => Some(ColumnType::Timestamp),
        Value::Decimal(_) => Some(ColumnType::Decimal),
        Value::Float(_) => Some(ColumnType::Float),
        _ => None,
    };
    ty(&b.min).or_else(|| ty(&b.max))
}

/// A bound from the spec (a number, or a date/datetime text) as a key of the column's type.
fn bound_key(v: &serde_json::Value, ty: ColumnType) -> Result<Key, String> {
    use serde_json::Value as J;
    match (v, ty) {
        (J::Number(n), ColumnType::Int | ColumnType::UInt) => n
            .as_i64()
            .map(|i| Key::Int(i as i128))
            .or_else(|| n.as_u64().map(|u| Key::Int(u as i128)))
            .ok_or_else(|| format!("{n} is not an integer")),
        (J::Number(n), ColumnType::Decimal | ColumnType::Float) => n
            .as_f64()
            .map(Key::Float)
            .ok_or_else(|| format!("{n} is not a number")),
        (J::String(s), ColumnType::Decimal | ColumnType::Float) => s
            .parse()
            .map(Key::Float)
            .map_err(|_| format!("{s:?} is not a number")),
        (J::String(s), ColumnType::Date) => parse_date(s)
            .map(|d| Key::Int(d as i128))
            .ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)")),
        // A TIMESTAMP bound is in UTC, with or without the `Z`.
        (J::String(s), ColumnType::Timestamp) => parse_datetime(s.trim().trim_end_matches('Z'))
            .map(|us| Key::Int(us as i128))
            .ok_or_else(|| format!("{s:?} is not a timestamp (YYYY-MM-DD HH:MM:SS, UTC)")),
        (J::String(s), ColumnType::DateTime) => parse_datetime(s)
            .map(|us| Key::Int(us as i128))
            .ok_or_else(|| format!("{s:?} is not a datetime (YYYY-MM-DD HH:MM:SS)")),
        (other, ty) => Err(format!("{other} does not fit a {ty:?} column")),
    }
}

fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let days = parse_date(date)?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut it = hms.splitn(3, ':');
    let h: i64 = it.next()?.parse().ok()?;
    let mi: i64 = it.next().unwrap_or("0").parse().ok()?;
    let sec: i64 = it.next().unwrap_or("0").parse().ok()?;
    let us: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")[..6].parse().ok()?
    };
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + us)
}

/// Cuts `[lo, hi]` into at most `n` contiguous ranges; returns the n-1 inner boundaries.
fn boundaries(lo: Key, hi: Key, n: usize) -> Vec<Key> {
    match (lo, hi) {
        (Key::Int(lo), Key::Int(hi)) => {
            let span = hi - lo + 1;
            let n = (n as i128).min(span.max(1));
            // Equal widths, the remainder spread over the first splits.
            let (width, extra) = (span / n, span % n);
            let mut b = Vec::new();
            let mut at = lo;
            for i in 0..n - 1 {
                at += width + if i < extra { 1 } else { 0 };
                b.push(Key::Int(at));
            }
            b
        }
        (lo, hi) => {
            let (lo, hi) = (as_f64(lo), as_f64(hi));
            let step = (hi - lo) / n as f64;
            let mut b: Vec<Key> = (1..n).map(|i| Key::Float(lo + step * i as f64)).collect();
            b.dedup();
            b.retain(|k| as_f64(*k) > lo && as_f64(*k) <= hi);
            b
        }
    }
}

fn as_f64(k: Key) -> f64 {
    match k {
        Key::Int(i) => i as f64,
        Key::Float(f) => f,
    }
}

/// Keys sampled to cut splits of equal row counts: enough that each of eight splits is estimated
/// within about 1% (a share of 6,250 sampled keys), few enough to plan a table of millions of rows
/// in well under a second.
const SAMPLE_KEYS: u64 = 50_000;

/// Equal key ranges are kept while the sample says none holds more than this many times its
/// share: round bounds read better in `plan` and logs than sampled keys.
const EVEN_ENOUGH: f64 = 1.25;

/// How a flow's key is cut.
enum KeyKind {
    /// Numbers and dates: equal ranges from the bounds, or sampled keys where rows bunch up.
    Numeric(ColumnType),
    /// Text and bytes, in the source's collation: only sampled keys can cut them.
    Ordered,
}

/// The inner boundaries of a flow's splits and each split's estimated rows (one more than there
/// are boundaries).
struct Cuts {
    at: Vec<Value>,
    estimated: Vec<u64>,
}

/// The splits of a flow, read in this order by whichever reader is free. With `cursor` (an
/// incremental read), every split reads only the rows in it.
pub fn plan(
    spec: FlowRef<'_>,
    source: &SourceHandle,
    cursor: Option<&CursorRange>,
) -> Result<Vec<PlannedSplit>, SpecError> {
    let src = &spec.flow.source;
    let whole = |estimated_rows| {
        Ok(vec![PlannedSplit {
            split: Split {
                id: 0,
                range: None,
                cursor: cursor.cloned(),
                stream: None,
            },
            estimated_rows,
        }])
    };
    let Some(key) = &src.partition_column else {
        return whole(0);
    };
    let n = src.partition_num.unwrap_or(spec.flow.parallelism).max(1);
    let columns = key.columns();
    let column = &columns[0];
    if columns.len() > 1 {
        let cuts = composite_cuts(spec, source, cursor, columns, n)?;
        return Ok(splits(columns, cuts, cursor));
    }
    let bounds = source.key_bounds(column, cursor).map_err(|e| {
        spec.error(
            "source.partition_column",
            format!("cannot query the bounds of {column}: {e}"),
        )
    })?;
    let declared = match bounds.column_type {
        ColumnType::Any => splittable_type(&bounds),
        t => Some(t),
    };
    let kind = match declared {
        Some(
            t @ (ColumnType::Int
            | ColumnType::UInt
            | ColumnType::Decimal
            | ColumnType::Float
            | ColumnType::Date
            | ColumnType::DateTime
            | ColumnType::Timestamp),
        ) => KeyKind::Numeric(t),
        Some(ColumnType::String | ColumnType::Bytes) => KeyKind::Ordered,
        // Only NULL keys or no rows, and nothing declared: one split reads them all.
        None if bounds.min.is_null() && bounds.max.is_null() => return whole(bounds.rows),
        _ => {
            return Err(spec.error(
                "source.partition_column",
                format!(
                    "column `{column}` has type {}, which cannot be split into ranges; \
                     partition on a number, date, datetime or text column",
                    bounds.declared_type
                ),
            ))
        }
    };
    let sample = |count| {
        source
            .key_sample(columns, cursor, count)
            .map_err(|e| e.to_string())
    };
    let cuts = match kind {
        KeyKind::Numeric(ty) => match numeric_cuts(spec, &bounds, ty, n, sample)? {
            Some(c) => c,
            None => return whole(bounds.rows),
        },
        KeyKind::Ordered => {
            refuse_bounds(spec, &format!("`{column}` is a text key"))?;
            let s = if n > 1 {
                sample(SAMPLE_KEYS).map_err(|e| {
                    spec.error(
                        "source.partition_column",
                        format!(
                            "cannot sample the keys of text column `{column}` to split it: {e}"
                        ),
                    )
                })?
            } else {
                KeySample {
                    keys: Vec::new(),
                    rows: 0,
                }
            };
            sampled_cuts(&s, n, bounds.rows)
        }
    };
    Ok(splits(columns, cuts, cursor))
}

/// Bounds in the spec are for keys of one number or date column: refused for `what`.
fn refuse_bounds(spec: FlowRef<'_>, what: &str) -> Result<(), SpecError> {
    let src = &spec.flow.source;
    for (key, given) in [
        ("partition_lower_bound", &src.partition_lower_bound),
        ("partition_upper_bound", &src.partition_upper_bound),
    ] {
        if given.is_some() {
            return Err(spec.error(
                &format!("source.{key}"),
                format!(
                    "{what}, split by a sample of its values; bounds apply to a key of one \
                     number or date column only"
                ),
            ));
        }
    }
    Ok(())
}

/// Cuts for a key of several columns (a composite primary key): always at sampled tuples.
fn composite_cuts(
    spec: FlowRef<'_>,
    source: &SourceHandle,
    cursor: Option<&CursorRange>,
    columns: &[String],
    n: usize,
) -> Result<Cuts, SpecError> {
    let names = format!("({})", columns.join(", "));
    refuse_bounds(spec, &format!("{names} is a key of several columns"))?;
    let bounds = source.key_bounds(&columns[0], cursor).map_err(|e| {
        spec.error(
            "source.partition_column",
            format!("cannot query the bounds of {}: {e}", columns[0]),
        )
    })?;
    // With n = 1 the sample is empty but still counts the keyed rows, for the check below.
    let count = if n > 1 { SAMPLE_KEYS } else { 0 };
    let s = source.key_sample(columns, cursor, count).map_err(|e| {
        spec.error(
            "source.partition_column",
            format!("cannot sample the keys {names} to split them: {e}"),
        )
    })?;
    // A tuple with a NULL in it compares as neither below nor above any other, so such a row
    // would belong to no split.
    if s.rows < bounds.rows {
        return Err(spec.error(
            "source.partition_column",
            format!(
                "{} rows have a NULL in {names}; a key of several columns must have no NULLs \
                 (partition on a primary key)",
                bounds.rows - s.rows
            ),
        ));
    }
    Ok(sampled_cuts(&s, n, bounds.rows))
}

/// The splits between `cuts`, in key order.
fn splits(columns: &[String], cuts: Cuts, cursor: Option<&CursorRange>) -> Vec<PlannedSplit> {
    let count = cuts.at.len() + 1;
    (0..count)
        .map(|i| PlannedSplit {
            split: Split {
                id: i as u32,
                range: Some(KeyRange {
                    column: columns[0].clone(),
                    start: (i > 0).then(|| cuts.at[i - 1].clone()),
                    end: cuts.at.get(i).cloned(),
                    nulls: i == 0,
                    after: None,
                    columns: if columns.len() > 1 {
                        columns.to_vec()
                    } else {
                        Vec::new()
                    },
                }),
                cursor: cursor.cloned(),
                stream: None,
            },
            estimated_rows: cuts.estimated[i],
        })
        .collect()
}

/// Cuts for a number or date key: equal ranges over the bounds (the spec's or the data's), unless
/// a sample shows rows bunched in some of them; `None` when there are only NULL keys.
fn numeric_cuts(
    spec: FlowRef<'_>,
    bounds: &KeyBounds,
    ty: ColumnType,
    n: usize,
    sample: impl Fn(u64) -> Result<KeySample, String>,
) -> Result<Option<Cuts>, SpecError> {
    let src = &spec.flow.source;
    let lo = match &src.partition_lower_bound {
        Some(v) => bound_key(v, ty).map_err(|m| spec.error("source.partition_lower_bound", m))?,
        None => match key_of(&bounds.min) {
            Some(k) => k,
            None => return Ok(None),
        },
    };
    let hi = match &src.partition_upper_bound {
        Some(v) => bound_key(v, ty).map_err(|m| spec.error("source.partition_upper_bound", m))?,
        None => key_of(&bounds.max).unwrap_or(lo),
    };
    if as_f64(hi) < as_f64(lo) {
        return Err(spec.error(
            "source.partition_upper_bound",
            format!(
                "upper bound {} is below the lower bound {}",
                value_of(hi, ty),
                value_of(lo, ty)
            ),
        ));
    }
    let even: Vec<Key> = boundaries(lo, hi, n);
    // Bounds the user wrote are kept as written: they say how the table is to be cut.
    let given = src.partition_lower_bound.is_some() || src.partition_upper_bound.is_some();
    if !even.is_empty() && !given && !dense(lo, hi, bounds) {
        match sample(SAMPLE_KEYS) {
            Ok(s) if !s.keys.is_empty() => {
                let positions: Vec<usize> = even
                    .iter()
                    .map(|cut| {
                        s.keys.partition_point(|k| {
                            key_of(k).is_some_and(|k| as_f64(k) < as_f64(*cut))
                        })
                    })
                    .collect();
                let per_split = s.keys.len() as f64 / (even.len() + 1) as f64;
                let widest = shares(&positions, s.keys.len()).max().unwrap_or(0);
                if widest as f64 <= per_split * EVEN_ENOUGH {
                    let at = even.iter().map(|k| value_of(*k, ty)).collect();
                    return Ok(Some(Cuts {
                        at,
                        estimated: estimates(&positions, &s, bounds.rows),
                    }));
                }
                return Ok(Some(sampled_cuts(&s, n, bounds.rows)));
            }
            Ok(_) => {}
            // A source without samples (built before them) still gets equal ranges.
            Err(e) => tracing::debug!("no key sample, equal key ranges: {e}"),
        }
    }
    let count = even.len() as u64 + 1;
    Ok(Some(Cuts {
        at: even.iter().map(|k| value_of(*k, ty)).collect(),
        // Uniform over the range: the best guess without a sample.
        estimated: (0..count)
            .map(|i| bounds.rows / count + u64::from(i < bounds.rows % count))
            .collect(),
    }))
}

/// Whether there are as many rows as integers in `[lo, hi]` (ids without gaps, the common case):
/// then equal ranges hold equal rows, exactly, and no sample is needed.
fn dense(lo: Key, hi: Key, bounds: &KeyBounds) -> bool {
    matches!((lo, hi), (Key::Int(lo), Key::Int(hi)) if hi - lo + 1 == bounds.rows as i128)
}

/// At most `n - 1` cuts at the sample's quantiles, so that each split holds about the same number
/// of rows; a key repeated across a quantile stays in one split.
fn sampled_cuts(s: &KeySample, n: usize, rows: u64) -> Cuts {
    let len = s.keys.len();
    let mut positions: Vec<usize> = Vec::new();
    for i in 1..n {
        let mut at = i * len / n;
        if at == 0 || at >= len || at <= positions.last().copied().unwrap_or(0) {
            continue;
        }
        // A split starts where its first key does: at the first of equal keys, or after the
        // last of them when that would leave the split before it empty.
        let last = positions.last().copied().unwrap_or(0);
        let mut back = at;
        while back > 0 && s.keys[back - 1] == s.keys[at] {
            back -= 1;
        }
        if back > last {
            positions.push(back);
            continue;
        }
        while at < len && s.keys[at] == s.keys[back] {
            at += 1;
        }
        if at < len {
            positions.push(at);
        }
    }
    Cuts {
        at: positions.iter().map(|&p| s.keys[p].clone()).collect(),
        estimated: estimates(&positions, s, rows),
    }
}

/// The sampled keys in each split, given the sample positions where splits start.
fn shares(positions: &[usize], len: usize) -> impl Iterator<Item = usize> + '_ {
    let ends = positions.iter().copied().chain([len]);
    let starts = [0].into_iter().chain(positions.iter().copied());
    starts.zip(ends).map(|(a, b)| b - a)
}

/// Rows per split in proportion to its share of the sample, summing to `rows`; the NULL keys
/// (`rows` beyond the sampled population) are in the first split.
fn estimates(positions: &[usize], s: &KeySample, rows: u64) -> Vec<u64> {
    let len = s.keys.len().max(1) as u128;
    let keyed = s.rows.min(rows) as u128;
    let mut below = 0u64;
    let mut out: Vec<u64> = positions
        .iter()
        .copied()
        .chain([s.keys.len()])
        .map(|p| {
            // Rounded cumulative counts, so the parts add up exactly.
            let upto = ((keyed * p as u128 + len / 2) / len) as u64;
            let part = upto - below;
            below = upto;
            part
        })
        .collect();
    out[0] += rows - keyed as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(b: &[Key]) -> Vec<i128> {
        b.iter()
            .map(|k| match k {
                Key::Int(i) => *i,
                Key::Float(_) => panic!("float"),
            })
            .collect()
    }

    #[test]
    fn integer_boundaries_are_even_and_cover_the_range() {
        assert_eq!(ints(&boundaries(Key::Int(1), Key::Int(10), 3)), [5, 8]);
        assert_eq!(
            ints(&boundaries(Key::Int(1), Key::Int(1), 10)),
            Vec::<i128>::new()
        );
        assert_eq!(ints(&boundaries(Key::Int(1), Key::Int(3), 10)), [2, 3]);
        let lo = i64::MIN as i128;
        let hi = u64::MAX as i128;
        let b = ints(&boundaries(Key::Int(lo), Key::Int(hi), 4));
        assert_eq!(b.len(), 3);
        assert!(b.windows(2).all(|w| w[0] < w[1]) && b[0] > lo && b[2] <= hi);
    }

    fn sample(keys: &[i64], rows: u64) -> KeySample {
        KeySample {
            keys: keys.iter().map(|k| Value::Int(*k)).collect(),
            rows,
        }
    }

    #[test]
    fn sampled_cuts_hold_equal_shares_and_estimates_add_up() {
        let keys: Vec<i64> = (1..=100).collect();
        let c = sampled_cuts(&sample(&keys, 1000), 4, 1005);
        assert_eq!(c.at, [Value::Int(26), Value::Int(51), Value::Int(76)]);
        // 1,000 keyed rows in four equal shares; the 5 NULL keys are in the first split.
        assert_eq!(c.estimated, [255, 250, 250, 250]);
    }

    #[test]
    fn a_repeated_key_stays_in_one_split() {
        let c = sampled_cuts(&sample(&[1, 1, 1, 1, 2, 3], 6), 2, 6);
        assert_eq!(c.at, [Value::Int(2)]);
        assert_eq!(c.estimated, [4, 2]);
        let c = sampled_cuts(&sample(&[1, 2, 2, 2, 2, 3], 6), 3, 6);
        assert_eq!(c.at, [Value::Int(2), Value::Int(3)]);
        assert_eq!(c.estimated, [1, 4, 1]);
        let c = sampled_cuts(&sample(&[7, 7, 7], 3), 3, 3);
        assert!(c.at.is_empty());
        assert_eq!(c.estimated, [3]);
    }

    #[test]
    fn spec_bounds_parse_by_column_type() {
        assert_eq!(
            bound_key(&serde_json::json!(-5), ColumnType::Int),
            Ok(Key::Int(-5))
        );
        assert_eq!(
            bound_key(&serde_json::json!("1970-01-02"), ColumnType::Date),
            Ok(Key::Int(1))
        );
        assert_eq!(
            bound_key(
                &serde_json::json!("1970-01-01 00:00:01.5"),
                ColumnType::DateTime
            ),
            Ok(Key::Int(1_500_000))
        );
        assert!(bound_key(&serde_json::json!("soon"), ColumnType::Date).is_err());
    }
}
