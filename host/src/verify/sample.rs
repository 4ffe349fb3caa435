//! `--sample N`: N random keys per flow, each looked up on both sides (the source split and the
//! graph query narrowed to `[key, key + 1)`), for a quick answer on a big table.
//!
//! Keys are drawn uniformly between the first key column's smallest and largest value, so the
//! column must be an integer, a date or a datetime; a drawn value that neither side holds is
//! drawn again (up to 20 draws per key asked for).

use std::sync::Arc;

use etlhost_plugin_sdk::{KeyRange, Split, Value};

use super::canonical::Mapping;
use super::{bounds, compare_range, Options, Range, Tally, VerifyError};
use crate::job::Job;
use crate::plugin::SourceHandle;
use crate::spec::FlowRef;
use crate::transform::Transforms;

/// A key column's value as a number, and back.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Date(d) => Some(*d as i64),
        Value::DateTime(us) | Value::Timestamp(us) => Some(*us),
        _ => None,
    }
}

fn like(template: &Value, n: i64) -> Value {
    match template {
        Value::UInt(_) => Value::UInt(n as u64),
        Value::Date(_) => Value::Date(n as i32),
        Value::DateTime(_) => Value::DateTime(n),
        Value::Timestamp(_) => Value::Timestamp(n),
        _ => Value::Int(n),
    }
}

/// xorshift64*: enough to spread keys, and the same keys for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Samples `n` keys into `tally`; `Ok(false)` when the key cannot be sampled.
#[allow(clippy::too_many_arguments)]
pub fn run(
    job: &Job,
    flow: FlowRef<'_>,
    source: &Arc<SourceHandle>,
    transforms: Option<&Arc<Transforms>>,
    mapping: Mapping,
    n: usize,
    opts: &Options,
    tally: &mut Tally,
) -> Result<bool, VerifyError> {
    let v = flow.flow.verify.as_ref().expect("verifiable");
    let column = &v.key[0];
    let b = source.key_bounds(column, None).map_err(|e| {
        VerifyError::Failed(format!(
            "flow {}: cannot query the bounds of `{column}`: {e}",
            flow.flow.name
        ))
    })?;
    let (Some(lo), Some(hi)) = (number(&b.min), number(&b.max)) else {
        // No rows (both NULL) samples nothing; anything else cannot be sampled.
        let empty = b.min.is_null() && b.max.is_null();
        if empty {
            tally.sampled = Some(0);
        }
        return Ok(empty);
    };
    let span = (hi as i128 - lo as i128 + 1) as u128;
    let mut rng = Rng(opts.seed | 1);
    let mut seen = std::collections::BTreeSet::new();
    let mut found = 0u64;
    for _ in 0..n.saturating_mul(20) {
        if found as usize >= n || seen.len() as u128 >= span {
            break;
        }
        let k = (lo as i128 + (rng.next() as u128 % span) as i128) as i64;
        if !seen.insert(k) {
            continue;
        }
        let split = Split {
            id: 0,
            range: Some(KeyRange {
                column: column.clone(),
                start: Some(like(&b.min, k)),
                end: Some(like(&b.min, k + 1)),
                nulls: false,
                after: None,
            }),
            cursor: None,
        };
        let (glo, ghi) = bounds(&split, &mapping);
        let before = (tally.source_rows, tally.graph_rows);
        let range = Range {
            split,
            lo: glo,
            hi: ghi,
        };
        compare_range(job, flow, source, transforms, range, mapping, opts, tally)?;
        if (tally.source_rows, tally.graph_rows) != before {
            found += 1;
        }
    }
    tally.sampled = Some(found);
    Ok(true)
}
