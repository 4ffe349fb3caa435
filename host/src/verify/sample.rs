//! `--sample N`: N random keys per flow, each looked up on both sides, for a quick answer on a big
//! table: in the source as a split `[key, key + 1)`, in the graph with the block's `lookup` query
//! for all drawn keys at once (`$keys`), or without one with `query` narrowed to `[key, key + 1)`
//! per key (which a graph that answers ranges by scanning the label answers slowly).
//!
//! Keys are drawn uniformly between the first key column's smallest and largest value, so the
//! column must be an integer, a date or a datetime; a drawn value that neither side holds is
//! drawn again (up to 20 draws per key asked for).

use std::sync::Arc;

use etlhost_plugin_sdk::{Batch, KeyRange, QueryRequest, Split, Value};

use super::canonical::Mapping;
use super::compare::{self, Side, Stream};
use super::{
    bounds, compare_range, compared, graph_rows, source_rows, Options, Range, Tally, VerifyError,
};
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
    // With `lookup`: every drawn key's source rows, then one graph query for all of them.
    let mut drawn = Vec::new();
    let mut source_batches = Vec::new();
    for _ in 0..n.saturating_mul(20) {
        if found as usize >= n || seen.len() as u128 >= span {
            break;
        }
        let k = (lo as i128 + (rng.next() as u128 % span) as i128) as i64;
        if !seen.insert(k) {
            continue;
        }
        let split = key_split(column, &b.min, k);
        if v.lookup.is_some() {
            drawn.push(mapping.source(like(&b.min, k)).param());
            let mut read = source_rows(flow, source, transforms, &split)?;
            let mut any = false;
            while let Some(batch) = read().map_err(VerifyError::Failed)? {
                any |= !batch.is_empty();
                source_batches.push(batch);
            }
            found += u64::from(any);
            continue;
        }
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
    if let Some(lookup) = &v.lookup {
        // Keys only the graph holds were checked too.
        found += compare_lookup(
            job,
            flow,
            lookup,
            drawn,
            source_batches,
            mapping,
            opts,
            tally,
        )?;
    }
    tally.sampled = Some(found);
    Ok(true)
}

/// The source side of one drawn key: `[key, key + 1)` of the first key column.
fn key_split(column: &str, template: &Value, k: i64) -> Split {
    Split {
        id: 0,
        range: Some(KeyRange {
            column: column.to_string(),
            start: Some(like(template, k)),
            end: Some(like(template, k + 1)),
            nulls: false,
            after: None,
            columns: Vec::new(),
        }),
        cursor: None,
        stream: None,
    }
}

/// With `lookup`: the graph rows of every drawn key in one query, compared with their source
/// rows; returns how many keys only the graph holds.
#[allow(clippy::too_many_arguments)]
fn compare_lookup(
    job: &Job,
    flow: FlowRef<'_>,
    lookup: &str,
    drawn: Vec<Value>,
    source_batches: Vec<Batch>,
    mapping: Mapping,
    opts: &Options,
    tally: &mut Tally,
) -> Result<u64, VerifyError> {
    let v = flow.flow.verify.as_ref().expect("verifiable");
    let request = QueryRequest {
        query: lookup.to_string(),
        params: vec![("keys".into(), Value::List(drawn))],
        fetch_size: opts.chunk_rows,
    };
    let graph: Vec<Batch> = graph_rows(job, flow, request)?
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(VerifyError::Failed)?;
    let graph_columns: Vec<String> = graph
        .iter()
        .find(|b| !b.is_empty())
        .map(|b| b.schema.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let columns = compared(v, &graph_columns);
    let (mut g, mut s) = (graph.into_iter(), source_batches.into_iter());
    let mut graph_side = Stream::new(Side::Graph, &v.key, &columns, move || Ok(g.next()));
    let mut source_side = Stream::new(
        Side::Source(mapping),
        &v.key,
        &columns,
        move || Ok(s.next()),
    );
    compare::split(
        &mut source_side,
        &mut graph_side,
        usize::MAX,
        &columns,
        false,
        tally,
    )
    .map_err(VerifyError::Failed)?;
    tally.source_rows += source_side.count;
    tally.graph_rows += graph_side.count;
    Ok(tally.extra.count)
}
