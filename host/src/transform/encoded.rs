//! Transforms of the `encoded-transform` world: rows go in as the source's buffer and come back as
//! verdicts plus a buffer of the rows emitted, so a row kept is never decoded or copied on the
//! host, and a batch every transform keeps whole goes on as the very buffer the source made.
//!
//! Failures are isolated as for the values world (see `worker`): a call that traps or returns
//! `err` is retried on each half of its rows, down to the single rows that fail it.

use std::ops::Range;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::Batch;

use super::engine::wit_encoded::{Output, Verdict};
use super::outcome::{Applied, Origin, Outcome};
use super::worker::{Bindings, Chain};

/// What a chain made of an encoded batch.
pub struct AppliedEncoded {
    pub rows: Encoded,
    /// The input row each output row came from; `None` when every row was kept as it was, so the
    /// output's rows are the input's, in order.
    pub origins: Option<Vec<Origin>>,
    pub outcomes: Vec<Outcome>,
}

impl Chain {
    /// Runs rows `first..` of a split, as the source encoded them, through every transform (all of
    /// the encoded world, see [`super::Transforms::encoded`]).
    pub fn apply_encoded(&mut self, rows: Encoded, first: u64) -> AppliedEncoded {
        let mut cur = AppliedEncoded {
            rows,
            origins: None,
            outcomes: Vec::new(),
        };
        for i in 0..self.live.len() {
            if cur.rows.is_empty() {
                break;
            }
            let mut next = self.stage_encoded(i, cur.rows, cur.origins, first);
            cur.outcomes.append(&mut next.outcomes);
            cur.rows = next.rows;
            cur.origins = next.origins;
        }
        cur
    }

    /// An encoded-world transform among values (a chain that mixes worlds, or a flow whose rows
    /// the host needs decoded anyway): the batch is encoded for it and its output decoded.
    pub(super) fn stage_via_encoded(
        &mut self,
        i: usize,
        batch: Batch,
        origins: Vec<Origin>,
    ) -> Applied {
        let out = self.stage_encoded(i, Encoded::of(&batch), Some(origins), 0);
        Applied {
            batch: out.rows.decode(),
            origins: out.origins.expect("origins in, origins out"),
            outcomes: out.outcomes,
        }
    }

    /// Transform `i` over `rows`, whose row `r` came from `origins[r]` (or, without them, from row
    /// `first + r` of the split).
    fn stage_encoded(
        &mut self,
        i: usize,
        rows: Encoded,
        origins: Option<Vec<Origin>>,
        first: u64,
    ) -> AppliedEncoded {
        let result = self.call_encoded(i, rows.as_bytes());
        if matches!(&result, Ok(Output { verdicts: None, rows: emitted }) if emitted.is_empty()) {
            // The common case of a filter that passes everything: the buffer goes on as it is.
            return AppliedEncoded {
                rows,
                origins,
                outcomes: Vec::new(),
            };
        }
        let origin_of = |r: usize| Origin::of(origins.as_deref(), first, r);
        let mut acc = Acc {
            rows: None,
            origins: Vec::new(),
            outcomes: Vec::new(),
        };
        let input = Input {
            rows: &rows,
            origin_of: &origin_of,
        };
        self.take(i, &input, 0..rows.rows(), result, &mut acc);
        AppliedEncoded {
            rows: acc
                .rows
                .unwrap_or_else(|| Encoded::empty(rows.schema().clone(), 0)),
            origins: Some(acc.origins),
            outcomes: acc.outcomes,
        }
    }

    /// Applies what the call on rows `range` of the input returned, or retries them in halves.
    fn take(
        &mut self,
        i: usize,
        input: &Input<'_>,
        range: Range<usize>,
        result: Result<Output, String>,
        acc: &mut Acc,
    ) {
        let out = match result.and_then(|out| checked(out, range.len())) {
            Ok(out) => out,
            Err(reason) => return self.split_encoded_or_fail(i, input, range, reason, acc),
        };
        let Some(verdicts) = out.verdicts else {
            return self.keep(i, input, range, acc);
        };
        // Rows kept one after another are handed on together: one copy of their bytes.
        let mut kept = range.start..range.start;
        let mut next = 0;
        for (r, verdict) in range.zip(verdicts) {
            if !matches!(verdict, Verdict::Keep) {
                // Outputs stay in input order: the kept rows before this one go first.
                self.keep(i, input, std::mem::replace(&mut kept, r + 1..r + 1), acc);
            }
            let origin = (input.origin_of)(r);
            let problem = match verdict {
                Verdict::Keep => {
                    kept.end = r + 1;
                    continue;
                }
                Verdict::Drop | Verdict::Emit(0) => {
                    acc.outcomes.push(Outcome::Dropped { origin });
                    None
                }
                Verdict::Emit(n) => {
                    let emitted = out.rows.as_ref().expect("checked: rows were emitted");
                    let at = next..next + n as usize;
                    next = at.end;
                    let problem =
                        acc.append(emitted, at.clone(), std::iter::repeat_n(origin, at.len()));
                    problem.then(|| {
                        "returned rows whose columns differ from the rows before them".into()
                    })
                }
                Verdict::Error(reason) => Some(reason),
            };
            if let Some(reason) = problem {
                acc.outcomes.push(self.failed(i, input, r, reason));
            }
        }
        self.keep(i, input, kept, acc);
    }

    /// Hands on input rows `rows` as they are, or fails them if they do not fit the rows before.
    fn keep(&self, i: usize, input: &Input<'_>, rows: Range<usize>, acc: &mut Acc) {
        if rows.is_empty()
            || !acc.append(input.rows, rows.clone(), rows.clone().map(input.origin_of))
        {
            return;
        }
        for r in rows {
            let reason = "kept a row, but its output columns differ from the input's".into();
            acc.outcomes.push(self.failed(i, input, r, reason));
        }
    }

    fn split_encoded_or_fail(
        &mut self,
        i: usize,
        input: &Input<'_>,
        range: Range<usize>,
        reason: String,
        acc: &mut Acc,
    ) {
        if range.len() == 1 {
            let failed = self.failed(i, input, range.start, reason);
            acc.outcomes.push(failed);
            return;
        }
        tracing::debug!(
            transform = %self.transforms.list[i].name,
            rows = range.len(),
            "call failed ({reason}); retrying in halves"
        );
        let mid = range.start + range.len() / 2;
        for half in [range.start..mid, mid..range.end] {
            let rows = input.rows.slice(half.clone());
            let result = self.call_encoded(i, rows.as_bytes());
            self.take(i, input, half, result, acc);
        }
    }

    fn failed(&self, i: usize, input: &Input<'_>, r: usize, reason: String) -> Outcome {
        Outcome::Failed {
            origin: (input.origin_of)(r),
            transform: self.transforms.list[i].name.clone(),
            row: input.rows.slice(r..r + 1).decode(),
            reason,
        }
    }

    /// One `process` call on transform `i` with `rows` (a checked buffer).
    fn call_encoded(&mut self, i: usize, rows: &[u8]) -> Result<Output, String> {
        let live = self.live(i)?;
        let Bindings::Encoded(b) = &live.bindings else {
            unreachable!("called with a buffer: a transform of the encoded world")
        };
        let result = b.call_process(&mut live.store, rows);
        self.settle(i, result)
    }
}

/// What a call returned, with its emitted rows checked, or why it cannot be used.
struct Checked {
    verdicts: Option<Vec<Verdict>>,
    rows: Option<Encoded>,
}

fn checked(out: Output, inputs: usize) -> Result<Checked, String> {
    let emitted = match &out.verdicts {
        None => 0,
        Some(v) if v.len() != inputs => {
            return Err(format!("returned {} verdicts for {inputs} rows", v.len()))
        }
        Some(v) => v
            .iter()
            .map(|v| match v {
                Verdict::Emit(n) => *n as usize,
                _ => 0,
            })
            .sum(),
    };
    let rows = match out.rows {
        r if r.is_empty() => None,
        r => {
            Some(Encoded::check(r).map_err(|e| format!("returned rows that cannot be read: {e}"))?)
        }
    };
    let returned = rows.as_ref().map_or(0, Encoded::rows);
    if returned != emitted {
        return Err(format!(
            "returned {returned} rows where its verdicts emit {emitted}"
        ));
    }
    Ok(Checked {
        verdicts: out.verdicts,
        rows,
    })
}

/// A stage's input: the rows and where each came from.
struct Input<'a> {
    rows: &'a Encoded,
    origin_of: &'a dyn Fn(usize) -> Origin,
}

struct Acc {
    /// The rows handed on; their columns are those of the first row put in.
    rows: Option<Encoded>,
    origins: Vec<Origin>,
    outcomes: Vec<Outcome>,
}

impl Acc {
    /// Appends `rows` of `from`, one origin each, unless their columns differ from those already
    /// here (then `true`, and nothing is appended).
    fn append(
        &mut self,
        from: &Encoded,
        rows: Range<usize>,
        origins: impl Iterator<Item = Origin>,
    ) -> bool {
        let out = self
            .rows
            .get_or_insert_with(|| Encoded::empty(from.schema().clone(), from.as_bytes().len()));
        if out.schema() != from.schema() {
            return true;
        }
        self.origins.extend(origins);
        out.extend(from, rows);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::codec;
    use etlhost_plugin_sdk::{Column, ColumnType, Value};

    fn rows(n: i64) -> Vec<u8> {
        let schema = [Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }];
        let mut b = codec::Builder::new(&schema, 0);
        for i in 0..n {
            b.push_row(&[Value::Int(i)]);
        }
        b.finish()
    }

    fn output(verdicts: Option<Vec<Verdict>>, rows: Vec<u8>) -> Output {
        Output { verdicts, rows }
    }

    #[test]
    fn a_call_whose_verdicts_and_rows_disagree_is_refused_with_the_reason() {
        let err = |out, n| checked(out, n).err().unwrap();
        assert_eq!(
            err(output(Some(vec![Verdict::Keep]), Vec::new()), 2),
            "returned 1 verdicts for 2 rows"
        );
        assert_eq!(
            err(
                output(Some(vec![Verdict::Emit(2), Verdict::Drop]), rows(1)),
                2
            ),
            "returned 1 rows where its verdicts emit 2"
        );
        assert_eq!(
            err(output(None, rows(1)), 3),
            "returned 1 rows where its verdicts emit 0"
        );
        assert!(err(output(Some(vec![Verdict::Emit(1)]), vec![1, 2, 3]), 1)
            .starts_with("returned rows that cannot be read: malformed batch buffer: "));
    }

    #[test]
    fn emitted_rows_are_checked_and_counted() {
        let out = output(
            Some(vec![Verdict::Emit(2), Verdict::Keep, Verdict::Emit(0)]),
            rows(2),
        );
        let c = checked(out, 3).unwrap();
        assert_eq!(c.rows.unwrap().rows(), 2);
        assert!(checked(output(None, Vec::new()), 3).unwrap().rows.is_none());
    }
}
