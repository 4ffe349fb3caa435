//! Planning: which splits a job reads. The host owns this, so every source plugin gets splitting for
//! free and only has to read the key range it is handed.
//!
//! With `partition_column`, the key range `[lower, upper]` (queried from the source when not given)
//! is cut into `partition_num` contiguous ranges. The first split is unbounded below and also takes
//! the NULL keys; the last is unbounded above. So every row lands in exactly one split whatever the
//! bounds say: rows outside the bounds go to the first or last split, never nowhere.

use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{ColumnType, CursorRange, KeyBounds, KeyRange, Split, Value};

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
    let Some(column) = &src.partition_column else {
        return whole(0);
    };
    let n = src.partition_num.unwrap_or(spec.flow.parallelism);
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
    let ty = match declared {
        Some(
            t @ (ColumnType::Int | ColumnType::UInt | ColumnType::Decimal | ColumnType::Float),
        ) => t,
        Some(t @ (ColumnType::Date | ColumnType::DateTime | ColumnType::Timestamp)) => t,
        // Only NULL keys or no rows, and nothing declared: one split reads them all.
        None if bounds.min.is_null() && bounds.max.is_null() => return whole(bounds.rows),
        _ => {
            return Err(spec.error(
                "source.partition_column",
                format!(
                    "column `{column}` has type {}, which cannot be split into ranges; \
                     partition on an integer, decimal, date or datetime column",
                    bounds.declared_type
                ),
            ))
        }
    };
    let lo = match &src.partition_lower_bound {
        Some(v) => bound_key(v, ty).map_err(|m| spec.error("source.partition_lower_bound", m))?,
        None => match key_of(&bounds.min) {
            Some(k) => k,
            // Only NULL keys: one split reads them all.
            None => return whole(bounds.rows),
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
    let cuts = boundaries(lo, hi, n.max(1));
    let count = cuts.len() + 1;
    let mut splits = Vec::with_capacity(count);
    for i in 0..count {
        let start = (i > 0).then(|| value_of(cuts[i - 1], ty));
        let end = cuts.get(i).map(|k| value_of(*k, ty));
        splits.push(PlannedSplit {
            split: Split {
                id: i as u32,
                range: Some(KeyRange {
                    column: column.clone(),
                    start,
                    end,
                    nulls: i == 0,
                    after: None,
                }),
                cursor: cursor.cloned(),
                stream: None,
            },
            // Uniform over the range: the best guess without a histogram.
            estimated_rows: bounds.rows / count as u64
                + u64::from((i as u64) < bounds.rows % count as u64),
        });
    }
    Ok(splits)
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
