//! One reader's chain of transform instances, one store each, and what happens to rows that make a
//! call fail.
//!
//! A call that traps (a panic, the memory limit, the deadline) or returns `err` is retried with
//! each half of its rows on a fresh instance, down to single rows: exactly the rows that fail it
//! are reported, with the reason, and every other row goes on. A trapped instance is never called
//! again; its replacement is initialised with the same config (a stateful transform loses what it
//! held, which is why `finish` should only flush, never be needed for correctness of other rows).

use std::sync::Arc;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Column, Row, Schema};
use wasmtime::Store;

use super::engine::{wit, wit_encoded, Pre, State, Transforms, TICK};
use super::outcome::{Applied, Origin, Outcome};
use super::values::{column_from_wit, column_to_wit, nested_texts, row_from_wit, to_wit};

pub(super) struct Live {
    pub(super) store: Store<State>,
    pub(super) bindings: Bindings,
}

/// An instance's exports, of the world its component was built for.
pub(super) enum Bindings {
    Values(wit::Transform),
    Encoded(wit_encoded::EncodedTransform),
}

pub struct Chain {
    pub(super) transforms: Arc<Transforms>,
    pub(super) live: Vec<Option<Live>>,
}

impl Chain {
    pub fn new(transforms: Arc<Transforms>) -> Chain {
        let n = transforms.list.len();
        Chain {
            transforms,
            live: (0..n).map(|_| None).collect(),
        }
    }

    /// Runs `batch` (rows numbered by `origins`) through every transform in order.
    pub fn apply(&mut self, batch: Batch, origins: Vec<Origin>) -> Applied {
        self.apply_from(0, batch, origins)
    }

    fn apply_from(&mut self, first: usize, batch: Batch, origins: Vec<Origin>) -> Applied {
        let mut cur = Applied {
            batch,
            origins,
            outcomes: Vec::new(),
        };
        for i in first..self.live.len() {
            if cur.batch.rows.is_empty() {
                break;
            }
            let mut next = if self.transforms.list[i].encoded() {
                self.stage_via_encoded(i, cur.batch, cur.origins)
            } else {
                self.stage(i, cur.batch, cur.origins)
            };
            cur.outcomes.append(&mut next.outcomes);
            cur.batch = next.batch;
            cur.origins = next.origins;
        }
        cur
    }

    /// End of input: what each transform still holds, through the transforms after it.
    pub fn finish(&mut self) -> Vec<Applied> {
        let mut out = Vec::new();
        for i in 0..self.live.len() {
            let name = self.transforms.list[i].name.clone();
            let Some(live) = self.live[i].as_mut() else {
                continue;
            };
            live.store.set_epoch_deadline(ticks(&self.transforms, i));
            let held = match &live.bindings {
                Bindings::Values(b) => b.call_finish(&mut live.store).map(|r| r.map(Held::Values)),
                Bindings::Encoded(b) => {
                    b.call_finish(&mut live.store).map(|r| r.map(Held::Encoded))
                }
            };
            let held = match held {
                Ok(Ok(b)) => b,
                Ok(Err(msg)) => {
                    tracing::warn!(transform = %name, "finish returned an error: {msg}");
                    continue;
                }
                Err(e) => {
                    let reason = describe(&e, &self.transforms, i, live);
                    tracing::warn!(transform = %name, "finish failed: {reason}");
                    self.live[i] = None;
                    continue;
                }
            };
            let Some(Batch { schema, rows }) = held.rows(&name) else {
                continue;
            };
            let origins = vec![Origin::Finish; rows.len()];
            out.push(self.apply_from(i + 1, Batch { schema, rows }, origins));
        }
        out
    }

    /// Transform `i` over a batch: outputs in input order.
    fn stage(&mut self, i: usize, mut batch: Batch, origins: Vec<Origin>) -> Applied {
        let mut acc = Acc {
            schema: None,
            rows: Vec::new(),
            origins: Vec::new(),
            outcomes: Vec::new(),
            kept: Vec::new(),
        };
        let all: Vec<usize> = (0..batch.rows.len()).collect();
        let columns: Vec<wit::ColumnParam<'_>> = batch.schema.iter().map(column_to_wit).collect();
        let input = Input {
            batch: &batch,
            columns: &columns,
            origins: &origins,
        };
        self.call_rows(i, &input, &all, &mut acc);
        // Each input row has one outcome, so each is kept at most once.
        for (at, r) in acc.kept.drain(..) {
            acc.rows[at] = std::mem::take(&mut batch.rows[r]);
        }
        let schema = acc.schema.unwrap_or_else(|| batch.schema.clone());
        Applied {
            batch: Batch {
                schema,
                rows: acc.rows,
            },
            origins: acc.origins,
            outcomes: acc.outcomes,
        }
    }

    fn call_rows(&mut self, i: usize, input: &Input<'_>, idx: &[usize], acc: &mut Acc) {
        let name = self.transforms.list[i].name.clone();
        let mut texts = Vec::new();
        let crossing = crossing(input, idx, &name, &mut texts, acc);
        if crossing.is_empty() {
            return;
        }
        let idx = &crossing[..];
        let (values, ends) = wit_values(input.batch, idx, &texts);
        let mut start = 0;
        let rows: Vec<&[wit::ValueParam<'_>]> = ends
            .iter()
            .map(|&end| {
                let row = &values[start..end];
                start = end;
                row
            })
            .collect();
        let sub = wit::BatchParam {
            columns: input.columns,
            rows: &rows,
        };
        match self.call(i, sub) {
            Ok(out) if out.outcomes.len() == idx.len() => {
                take_outcomes(out, input, idx, &name, acc)
            }
            Ok(out) => self.split_or_fail(
                i,
                input,
                idx,
                acc,
                format!(
                    "returned {} outcomes for {} rows",
                    out.outcomes.len(),
                    idx.len()
                ),
            ),
            Err(reason) => self.split_or_fail(i, input, idx, acc, reason),
        }
    }

    fn split_or_fail(
        &mut self,
        i: usize,
        input: &Input<'_>,
        idx: &[usize],
        acc: &mut Acc,
        reason: String,
    ) {
        if idx.len() > 1 {
            tracing::debug!(
                transform = %self.transforms.list[i].name,
                rows = idx.len(),
                "call failed ({reason}); retrying in halves"
            );
            let (left, right) = idx.split_at(idx.len() / 2);
            self.call_rows(i, input, left, acc);
            self.call_rows(i, input, right, acc);
        } else {
            let r = idx[0];
            acc.outcomes.push(Outcome::Failed {
                origin: input.origins[r],
                transform: self.transforms.list[i].name.clone(),
                row: one_row(input.batch, r),
                reason,
            });
        }
    }

    /// One `process` call on transform `i`'s instance, made (and initialised) if there is none.
    fn call(&mut self, i: usize, input: wit::BatchParam<'_>) -> Result<wit::Output, String> {
        let live = self.live(i)?;
        let Bindings::Values(b) = &live.bindings else {
            unreachable!("called with values: a transform of the values world")
        };
        let result = b.call_process(&mut live.store, input);
        self.settle(i, result)
    }

    /// Transform `i`'s instance, made (and initialised) if there is none, with a fresh deadline.
    pub(super) fn live(&mut self, i: usize) -> Result<&mut Live, String> {
        if self.live[i].is_none() {
            self.live[i] = Some(instantiate(&self.transforms, i)?);
        }
        let live = self.live[i].as_mut().expect("just made");
        live.store.set_epoch_deadline(ticks(&self.transforms, i));
        Ok(live)
    }

    /// What a call on transform `i` returned, or why it did not; a trapped instance is dropped.
    pub(super) fn settle<T>(
        &mut self,
        i: usize,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, String> {
        let live = self.live[i].as_ref().expect("called on a live instance");
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(msg)) => Err(format!("returned an error: {msg}")),
            Err(e) => {
                let reason = describe(&e, &self.transforms, i, live);
                // A trapped instance may be in any state: never call it again.
                self.live[i] = None;
                Err(reason)
            }
        }
    }
}

/// What a transform still held at the end, as its world returns it.
enum Held {
    Values(wit::BatchResult),
    Encoded(Vec<u8>),
}

impl Held {
    /// The rows, if there are any that can be read; the others are logged.
    fn rows(self, name: &str) -> Option<Batch> {
        let batch = match self {
            Held::Values(held) => {
                let schema: Schema = held.columns.into_iter().map(column_from_wit).collect();
                let rows: Vec<Row> = held
                    .rows
                    .into_iter()
                    .filter_map(|r| {
                        row_from_wit(r)
                            .map_err(|e| tracing::warn!(transform = %name, "finish: a row {e}"))
                            .ok()
                    })
                    .collect();
                Batch { schema, rows }
            }
            Held::Encoded(bytes) if bytes.is_empty() => return None,
            Held::Encoded(bytes) => match Encoded::check(bytes) {
                Ok(rows) => rows.decode(),
                Err(e) => {
                    tracing::warn!(transform = %name, "finish returned rows that cannot be read: {e}");
                    return None;
                }
            },
        };
        (!batch.rows.is_empty()).then_some(batch)
    }
}

/// A stage's input: the rows, their columns as the guest sees them, and their origins.
#[derive(Clone, Copy)]
struct Input<'a> {
    batch: &'a Batch,
    columns: &'a [wit::ColumnParam<'a>],
    origins: &'a [Origin],
}

struct Acc {
    schema: Option<Schema>,
    rows: Vec<Row>,
    origins: Vec<Origin>,
    outcomes: Vec<Outcome>,
    /// Rows kept as they are: (place in `rows`, input row), moved in once the call is over
    /// instead of copied (the input is still borrowed while outcomes are read).
    kept: Vec<(usize, usize)>,
}

/// The rows of `idx` the guest can be given unchanged, with the text of their nested values in
/// `texts`; a row holding a value it cannot be given fails here, without a call.
fn crossing(
    input: &Input<'_>,
    idx: &[usize],
    name: &str,
    texts: &mut Vec<String>,
    acc: &mut Acc,
) -> Vec<usize> {
    let mut crossing = Vec::with_capacity(idx.len());
    for &r in idx {
        let before = texts.len();
        match nested_texts(&input.batch.rows[r], texts) {
            Ok(()) => crossing.push(r),
            Err(reason) => {
                texts.truncate(before);
                acc.outcomes.push(Outcome::Failed {
                    origin: input.origins[r],
                    transform: name.to_string(),
                    row: one_row(input.batch, r),
                    reason,
                })
            }
        }
    }
    crossing
}

/// All values of the call in one vector, borrowed from the rows, and where each row ends in it:
/// two allocations per call instead of a vector and a copied string per row and value.
fn wit_values<'a>(
    batch: &'a Batch,
    idx: &[usize],
    texts: &'a [String],
) -> (Vec<wit::ValueParam<'a>>, Vec<usize>) {
    let mut nested = texts.iter();
    let mut values = Vec::with_capacity(idx.len() * batch.schema.len());
    let mut ends = Vec::with_capacity(idx.len());
    for &r in idx {
        values.extend(batch.rows[r].iter().map(|v| to_wit(v, &mut nested)));
        ends.push(values.len());
    }
    (values, ends)
}

/// A call's outcomes, one per row of `idx`, into `acc`; a row whose outcome is unusable fails
/// as a whole.
fn take_outcomes(out: wit::Output, input: &Input<'_>, idx: &[usize], name: &str, acc: &mut Acc) {
    let batch = input.batch;
    let out_schema: Schema = if out.columns.is_empty() {
        batch.schema.clone()
    } else {
        out.columns.into_iter().map(column_from_wit).collect()
    };
    let schema = acc.schema.get_or_insert_with(|| out_schema.clone()).clone();
    for (k, outcome) in out.outcomes.into_iter().enumerate() {
        let r = idx[k];
        let origin = input.origins[r];
        if let Some(reason) = take_outcome(outcome, r, origin, &schema, batch, acc) {
            // Rows this input already produced are taken back: it failed as a whole.
            while acc.origins.last() == Some(&origin) && origin != Origin::Finish {
                acc.origins.pop();
                acc.rows.pop();
            }
            while acc.kept.last().is_some_and(|(at, _)| *at >= acc.rows.len()) {
                acc.kept.pop();
            }
            acc.outcomes.push(Outcome::Failed {
                origin,
                transform: name.to_string(),
                row: one_row(batch, r),
                reason,
            });
        }
    }
}

/// One row's outcome into `acc`, or why it cannot be used.
fn take_outcome(
    outcome: wit::Outcome,
    r: usize,
    origin: Origin,
    schema: &Schema,
    batch: &Batch,
    acc: &mut Acc,
) -> Option<String> {
    let emit = |row: Row, acc: &mut Acc| {
        if row.len() == schema.len() {
            acc.rows.push(row);
            acc.origins.push(origin);
            None
        } else {
            Some(format!(
                "returned a row of {} values for {} columns",
                row.len(),
                schema.len()
            ))
        }
    };
    match outcome {
        wit::Outcome::Keep if !same_columns(schema, &batch.schema) => {
            Some("kept a row, but its output columns differ from the input's".into())
        }
        wit::Outcome::Keep => {
            // Same columns, so the row fits; moved in after the call.
            acc.kept.push((acc.rows.len(), r));
            acc.rows.push(Row::new());
            acc.origins.push(origin);
            None
        }
        wit::Outcome::Replace(row) => match row_from_wit(row) {
            Ok(row) => emit(row, acc),
            Err(e) => Some(e),
        },
        wit::Outcome::Expand(rows) if rows.is_empty() => {
            acc.outcomes.push(Outcome::Dropped { origin });
            None
        }
        wit::Outcome::Expand(rows) => rows.into_iter().find_map(|row| match row_from_wit(row) {
            Ok(row) => emit(row, acc),
            Err(e) => Some(e),
        }),
        wit::Outcome::Drop => {
            acc.outcomes.push(Outcome::Dropped { origin });
            None
        }
        wit::Outcome::Error(reason) => Some(reason),
    }
}

fn same_columns(a: &[Column], b: &[Column]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name)
}

fn one_row(batch: &Batch, r: usize) -> Batch {
    Batch {
        schema: batch.schema.clone(),
        rows: vec![batch.rows[r].clone()],
    }
}

pub(super) fn ticks(t: &Transforms, i: usize) -> u64 {
    (t.list[i].deadline.as_nanos() / TICK.as_nanos()) as u64 + 1
}

/// Instantiates every transform once with its config, so a config the transform refuses is an
/// error before any row moves. `Err` is `(transform index, message)`.
pub fn check(t: &Transforms) -> Result<(), (usize, String)> {
    for i in 0..t.list.len() {
        instantiate(t, i).map_err(|m| (i, m))?;
    }
    Ok(())
}

/// A fresh instance of transform `i`, initialised with its config.
fn instantiate(t: &Transforms, i: usize) -> Result<Live, String> {
    let c = &t.list[i];
    let mut store = t.store(i);
    store.set_epoch_deadline(ticks(t, i));
    let bindings = match &c.pre {
        Pre::Values(p) => p.instantiate(&mut store).map(Bindings::Values),
        Pre::Encoded(p) => p.instantiate(&mut store).map(Bindings::Encoded),
    }
    .map_err(|e| format!("cannot instantiate: {e:#}"))?;
    let mut live = Live { store, bindings };
    let init = match &live.bindings {
        Bindings::Values(b) => b.call_init(&mut live.store, &c.config),
        Bindings::Encoded(b) => b.call_init(&mut live.store, &c.config),
    };
    match init {
        Ok(Ok(())) => Ok(live),
        Ok(Err(msg)) => Err(format!("refused its config: {msg}")),
        Err(e) => Err(format!("init failed: {}", describe(&e, t, i, &live))),
    }
}

/// Why a call did not return: the deadline, the memory limit, or a trap with the guest's last
/// words on stderr (a Rust guest's panic message).
fn describe(e: &wasmtime::Error, t: &Transforms, i: usize, live: &Live) -> String {
    let c = &t.list[i];
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return format!("ran past its deadline of {:?}", c.deadline);
    }
    let text = format!("{e:#}");
    if text.contains("growing memory") {
        return format!("exceeded its memory limit of {} MiB", c.memory >> 20);
    }
    let stderr = live.store.data().stderr.contents();
    let said = String::from_utf8_lossy(&stderr);
    // A Rust panic prints `thread ... panicked at file:line:`, the message, then a note;
    // componentize-js prints the exception, then `Stack:` and the frames: keep what precedes.
    let said = said.split("\nStack:\n").next().unwrap_or_default();
    let lines: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: "))
        .collect();
    let last = (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(2)..].join(" "));
    let trap = e.downcast_ref::<wasmtime::Trap>().map_or_else(
        || text.lines().next().unwrap_or("").to_string(),
        |t| t.to_string(),
    );
    match last {
        Some(l) => format!("trapped ({trap}): {l}"),
        None => format!("trapped: {trap}"),
    }
}
