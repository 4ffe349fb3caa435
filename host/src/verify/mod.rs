//! `etlhost verify`: compares, flow by flow, what the source holds with what the graph holds.
//!
//! - [`canonical`]: the one form values of both sides are hashed and compared in;
//! - [`compare`]: one split, both sides streamed in key order, checksums per chunk of keys, row
//!   by row only inside chunks that differ;
//! - [`sample`]: `--sample N`, N random keys looked up on both sides;
//! - [`report`]: the table per flow and its JSON.
//!
//! The source is read with its plugin in the splits the job's plan makes; the graph through the
//! sink plugin's optional read capability (`etlhost_plugin_sdk::query`), with the flow's
//! `verify:` query once per split, `$lo`/`$hi` set to the split's key range.

pub mod canonical;
pub mod compare;
pub mod report;
pub mod sample;

use std::sync::Arc;

use etlhost_plugin_sdk::{Batch, KeyRange, QueryRequest, Split, Value};

use crate::job::Job;
use crate::plan;
use crate::plugin::{QueryHandle, SourceHandle};
use crate::spec::{FlowRef, SpecError, VerifySpec};
use crate::transform::{Chain, Origin, Transforms};
use canonical::Mapping;
use compare::{Side, Stream};
pub use report::{FlowReport, Outcome, Tally};

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// Look up this many random keys per flow instead of comparing everything.
    pub sample: Option<usize>,
    /// Source rows per chunk (one checksum each side).
    pub chunk_rows: usize,
    /// Seeds `--sample`'s choice of keys.
    pub seed: u64,
}

/// Why verification could not finish.
#[derive(Debug)]
pub enum VerifyError {
    /// A mistake in the spec, found while planning or reading.
    Config(SpecError),
    /// A side could not be read.
    Failed(String),
}

/// Verifies every flow of the job, in the order they run.
pub fn verify(job: &Job, opts: &Options) -> Result<Vec<FlowReport>, VerifyError> {
    job.spec
        .flows_in_order()
        .map(|flow| {
            let _span = flow
                .spec
                .multi_flow
                .then(|| tracing::info_span!("flow", name = %flow.flow.name).entered());
            let outcome = match not_verifiable(job, flow) {
                Some(reason) => Outcome::NotVerifiable(reason),
                None => Outcome::Compared(flow_tally(job, flow, opts)?),
            };
            Ok(FlowReport {
                flow: flow.flow.name.clone(),
                outcome,
            })
        })
        .collect()
}

/// Why a flow cannot be verified, if it cannot.
fn not_verifiable(job: &Job, flow: FlowRef<'_>) -> Option<String> {
    let f = flow.flow;
    if f.verify.is_none() {
        return Some(
            "the flow has no `verify:` block naming the graph's side (its query and key)".into(),
        );
    }
    let sink = &job.plugins[flow.index].sink;
    if !sink.can_query() {
        return Some(format!(
            "the sink plugin cannot read (plugin '{}' exports no `{}`)",
            sink.name,
            etlhost_plugin_sdk::query::SINK_QUERY_SYMBOL
        ));
    }
    None
}

/// The columns compared beside the key.
fn compared(v: &VerifySpec, graph_columns: &[String]) -> Vec<String> {
    match &v.compare {
        Some(c) => c.clone(),
        None => graph_columns
            .iter()
            .filter(|c| !v.key.contains(c))
            .cloned()
            .collect(),
    }
}

fn flow_tally(job: &Job, flow: FlowRef<'_>, opts: &Options) -> Result<Tally, VerifyError> {
    let f = flow.flow;
    let v = f.verify.as_ref().expect("checked by not_verifiable");
    let source = SourceHandle::open(job.plugins[flow.index].source.clone(), &f.source.options)
        .map_err(|e| VerifyError::Failed(format!("flow {}: cannot start source: {e}", f.name)))?;
    // The flow's transforms run on the source's rows, as in `run`.
    let transforms = crate::transform::load(flow).map_err(|e| match e {
        crate::error::RunError::Config(e) => VerifyError::Config(e),
        other => VerifyError::Failed(other.to_string()),
    })?;
    let transforms = transforms.as_ref();
    let mapping = Mapping::from_sink_options(&f.sink.options);
    let mut tally = Tally {
        key: v.key.clone(),
        ..Tally::default()
    };
    if let Some(n) = opts.sample {
        if sample::run(job, flow, &source, transforms, mapping, n, opts, &mut tally)? {
            return Ok(tally);
        }
        tracing::warn!(
            flow = %f.name,
            "--sample needs an integer, date or datetime first key column (`{}`): comparing every row",
            v.key[0]
        );
        tally = Tally {
            key: v.key.clone(),
            ..Tally::default()
        };
    }
    let splits = splits(flow, &source, &mapping, v)?;
    // The flow's readers compare splits at once, each into a tally of its own, added up in
    // split order so that the first keys shown are the lowest.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let slots: Vec<std::sync::Mutex<Option<Result<Tally, VerifyError>>>> =
        splits.iter().map(|_| Default::default()).collect();
    let workers = f.parallelism.clamp(1, splits.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(split) = splits.get(i) else { break };
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (lo, hi) = bounds(split, &mapping);
                let range = Range {
                    split: split.clone(),
                    lo,
                    hi,
                };
                let mut part = Tally::default();
                let r = compare_range(
                    job, flow, &source, transforms, range, mapping, opts, &mut part,
                );
                let failed = r.is_err();
                *slots[i].lock().expect("not poisoned") = Some(r.map(|()| part));
                if failed {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    for slot in slots {
        match slot.into_inner().expect("not poisoned") {
            Some(part) => tally.add(part?),
            // Not compared: another split failed first, and its error is in its slot.
            None => continue,
        }
    }
    Ok(tally)
}

/// The job's splits, each reading in the order of the key's first column.
fn splits(
    flow: FlowRef<'_>,
    source: &SourceHandle,
    mapping: &Mapping,
    v: &VerifySpec,
) -> Result<Vec<Split>, VerifyError> {
    let planned = plan::plan(flow, source, None).map_err(VerifyError::Config)?;
    let mut splits: Vec<Split> = planned.into_iter().map(|p| p.split).collect();
    // Bounds the graph cannot compare as the source does (DECIMAL keys are text there, text
    // keys compare by code point there but in a collation in MySQL, tuples of a composite key
    // not at all): one split, the whole key range.
    let comparable = splits.iter().all(|s| {
        let composite = s.range.as_ref().is_some_and(|r| r.columns.len() > 1);
        let (lo, hi) = bounds(s, mapping);
        !composite
            && [lo, hi]
                .iter()
                .all(|b| b.is_null() || !matches!(b, Value::String(_)))
    });
    if !comparable {
        splits = vec![Split {
            id: 0,
            range: None,
            cursor: None,
            stream: None,
        }];
    }
    for s in &mut splits {
        if s.range.is_none() {
            // NULL keys are not compared: they identify nothing.
            s.range = Some(KeyRange {
                column: v.key[0].clone(),
                start: None,
                end: None,
                nulls: false,
                after: None,
                columns: Vec::new(),
            });
        }
    }
    Ok(splits)
}

/// A split's key range as the graph query's `$lo` and `$hi`.
fn bounds(split: &Split, mapping: &Mapping) -> (Value, Value) {
    let param = |v: &Option<Value>| match v {
        Some(v) => mapping.source(v.clone()).param(),
        None => Value::Null,
    };
    match &split.range {
        Some(r) => (param(&r.start), param(&r.end)),
        None => (Value::Null, Value::Null),
    }
}

/// Runs a graph query on a thread of its own, so that both sides are read at
/// once; batches arrive through a small channel.
fn graph_rows(
    job: &Job,
    flow: FlowRef<'_>,
    request: QueryRequest,
) -> Result<crossbeam_channel::Receiver<Result<Batch, String>>, VerifyError> {
    let f = flow.flow;
    let plugin = job.plugins[flow.index].sink.clone();
    let mut rows = match QueryHandle::open(plugin, &f.sink.options, &request) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(VerifyError::Failed(format!(
                "flow {}: cannot read the graph: {e}",
                f.name
            )))
        }
        None => unreachable!("checked by not_verifiable"),
    };
    let (tx, rx) = crossbeam_channel::bounded(2);
    let name = f.name.clone();
    std::thread::spawn(move || loop {
        let next = rows
            .next_batch()
            .map_err(|e| format!("flow {name}: reading the graph failed: {e}"));
        let end = !matches!(next, Ok(Some(_)));
        let sent = match next {
            Ok(Some(b)) => tx.send(Ok(b)),
            Ok(None) => break,
            Err(e) => tx.send(Err(e)),
        };
        if sent.is_err() || end {
            break;
        }
    });
    Ok(rx)
}

/// The batches of a source split, through the flow's transforms when it has any (their `finish`
/// rows at the end).
fn source_rows(
    flow: FlowRef<'_>,
    source: &Arc<SourceHandle>,
    transforms: Option<&Arc<Transforms>>,
    split: &Split,
) -> Result<impl FnMut() -> Result<Option<Batch>, String>, VerifyError> {
    let name = flow.flow.name.clone();
    let mut reader = source
        .open_split(split)
        .map_err(|e| VerifyError::Failed(format!("flow {name}: cannot read the source: {e}")))?;
    let mut chain = transforms.map(|t| Chain::new(t.clone()));
    let (mut rows, mut ended, mut held) = (0u64, false, Vec::<Batch>::new());
    Ok(move || loop {
        if let Some(b) = held.pop() {
            return Ok(Some(b));
        }
        if ended {
            return Ok(None);
        }
        let next = reader
            .next_batch()
            .map_err(|e| format!("flow {name}: reading the source failed: {e}"))?;
        match (next, chain.as_mut()) {
            (Some(batch), None) => return Ok(Some(batch)),
            (Some(batch), Some(c)) => {
                let n = batch.len() as u64;
                let origins = (rows..rows + n).map(Origin::Row).collect();
                rows += n;
                return Ok(Some(c.apply(batch, origins).batch));
            }
            (None, c) => {
                ended = true;
                if let Some(c) = c {
                    held = c.finish().into_iter().map(|a| a.batch).rev().collect();
                }
            }
        }
    })
}

/// Where in the `verify:` block a column that one side lacks was named: `verify.key` or
/// `verify.compare`, or (a default `compare` column the source lacks) `verify.query`.
fn block_error(flow: FlowRef<'_>, source: &Stream<'_>, graph: &Stream<'_>) -> Option<&'static str> {
    let v = flow.flow.verify.as_ref()?;
    let column = source
        .missing_column
        .as_ref()
        .or(graph.missing_column.as_ref())?;
    Some(if v.key.contains(column) {
        "verify.key"
    } else if v.compare.is_some() {
        "verify.compare"
    } else {
        "verify.query"
    })
}

/// A source split and the graph's `[lo, hi)` it is compared with.
struct Range {
    split: Split,
    lo: Value,
    hi: Value,
}

/// Compares one [`Range`] of both sides into `tally`.
#[allow(clippy::too_many_arguments)]
fn compare_range(
    job: &Job,
    flow: FlowRef<'_>,
    source: &Arc<SourceHandle>,
    transforms: Option<&Arc<Transforms>>,
    range: Range,
    mapping: Mapping,
    opts: &Options,
    tally: &mut Tally,
) -> Result<(), VerifyError> {
    let Range { split, lo, hi } = range;
    let f = flow.flow;
    let v = f.verify.as_ref().expect("verifiable");
    let request = QueryRequest {
        query: v.query.clone(),
        params: vec![("lo".into(), lo), ("hi".into(), hi)],
        fetch_size: opts.chunk_rows,
    };
    let graph = graph_rows(job, flow, request)?;
    // The graph's first batch names its columns, which `compare` defaults to.
    let first = match graph.recv() {
        Ok(Ok(b)) => Some(b),
        Ok(Err(e)) => return Err(VerifyError::Failed(e)),
        Err(_) => None,
    };
    let graph_columns: Vec<String> = first
        .as_ref()
        .map(|b| b.schema.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let columns = compared(v, &graph_columns);
    let mut first = first;
    let mut graph_side = Stream::new(Side::Graph, &v.key, &columns, move || {
        if let Some(b) = first.take() {
            return Ok(Some(b));
        }
        match graph.recv() {
            Ok(b) => b.map(Some),
            Err(_) => Ok(None),
        }
    });
    // Transforms may reorder rows or change keys: their rows are matched whatever their order.
    let ordered = transforms.is_none();
    let read = source_rows(flow, source, transforms, &split)?;
    let mut source_side = Stream::new(Side::Source(mapping), &v.key, &columns, read);
    let result = compare::split(
        &mut source_side,
        &mut graph_side,
        opts.chunk_rows,
        &columns,
        ordered,
        tally,
    );
    if let Err(message) = result {
        return Err(block_error(flow, &source_side, &graph_side)
            .map_or(VerifyError::Failed(message.clone()), |key| {
                VerifyError::Config(flow.error(key, message))
            }));
    }
    tally.source_rows += source_side.count;
    tally.graph_rows += graph_side.count;
    tally.source_null_keys += source_side.null_keys;
    tally.graph_null_keys += graph_side.null_keys;
    Ok(())
}
