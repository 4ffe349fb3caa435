//! Progress in the target: every batch is written with its split's progress in one transaction,
//! so a batch whose commit landed is never written again (exactly-once even for `CREATE`).
//!
//! That needs three things the plain batcher does not give:
//! - a batch holds rows of **one split**, consecutive in read order, and ends where the key
//!   changes, so "every row with a key up to the batch's last one is written" is true when it
//!   commits;
//! - the batches of a split are written **in order**: each split is given to one writer, and a
//!   writer writes its batches one after the other;
//! - a batch whose answer was lost is not written again if its commit landed: a retry is written
//!   only if the split's record still stands where the batch began (`rows` before it), checked in
//!   the retry's own transaction, so an attempt that commits late cannot slip in between.
//!
//! The last batch of a split also says the split is done (or, when it is already sent, a batch
//! with no rows does). A split without a key (no `partition_column`) can only be recorded when it
//! is done: its batches in between carry no progress.
//!
//! The ordered mode's batcher is [`run`], and a writer writes its batches with [`write`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Progress, Value};

use super::encoded;
use crate::pipeline::seams::SinkSide;
use crate::pipeline::settings::ProgressSettings;
use crate::pipeline::shared::Shared;
use crate::pipeline::sinkcheck::SinkCheck;
use crate::pipeline::work::{Chunk, Limits, Work};
use crate::pipeline::write::{fail_rows, with_retries, write_with_retries, written};
use crate::plugin::PluginError;
use crate::transform::Origin;

/// A batch may end after row `i - 1` when the key changes there (and is not NULL: NULL keys are
/// read first, and "after NULL" names no rows).
fn cut_after(keys: &[Value], i: usize) -> bool {
    i > 0 && i < keys.len() && !keys[i - 1].is_null() && keys[i - 1] != keys[i]
}

/// The largest cut at or below `max` rows, else the first above it.
fn cut(keys: &[Value], max: usize) -> Option<usize> {
    let max = max.min(keys.len());
    (1..=max)
        .rev()
        .find(|&i| cut_after(keys, i))
        .or_else(|| (max + 1..keys.len()).find(|&i| cut_after(keys, i)))
}

/// One split's rows not yet sent.
struct Pending {
    work: Work,
    keys: Vec<Value>,
    /// False once a chunk came without keys: the split's batches then carry no progress.
    keyed: bool,
    writer: usize,
    /// Rows sent so far, earlier runs included.
    rows: u64,
    /// `rows` as the target's record will stand once the batches sent are written: where the next
    /// batch with progress begins.
    recorded: u64,
    after: Option<Value>,
    since: Instant,
}

impl Pending {
    fn new(chunk: &Chunk, s: &ProgressSettings, writer: usize) -> Self {
        let (rows, after) = s.base.get(&chunk.split).cloned().unwrap_or_default();
        Pending {
            work: Work::empty(chunk.batch.schema.clone()),
            keys: Vec::new(),
            keyed: true,
            writer,
            rows,
            recorded: rows,
            after,
            since: Instant::now(),
        }
    }

    /// A chunk's rows (and keys) join the split's rows not yet sent.
    fn add(&mut self, chunk: Chunk) {
        if self.work.len() == 0 {
            self.work.batch.schema = chunk.batch.schema.clone();
            self.since = Instant::now();
        }
        let first = chunk.first;
        match chunk.keys {
            Some(k) if self.keyed => self.keys.extend(k),
            _ => self.keyed = false,
        }
        let origins = chunk.origins.as_deref();
        if let Some(rows) = chunk.encoded {
            // From the pass-through path: as the source made them, or as transforms of the
            // encoded world did (then with their origins).
            let n = rows.rows();
            match &mut self.work.encoded {
                Some(mine) if !mine.is_empty() => mine.extend(&rows, 0..n),
                _ => self.work.encoded = Some(rows),
            }
            let seqs = (0..n).map(|i| (chunk.split, Origin::of(origins, first, i)));
            self.work.origin.extend(seqs);
        }
        for (i, row) in chunk.batch.rows.into_iter().enumerate() {
            self.work.batch.rows.push(row);
            self.work
                .origin
                .push((chunk.split, Origin::of(origins, first, i)));
        }
    }

    /// Takes the first `n` rows as a batch, with the progress they reach (`None`: the cut is not
    /// at a key change, so no progress can be recorded).
    fn take(&mut self, n: usize, split: u32, done: bool, s: &ProgressSettings) -> Work {
        let (rows, encoded) = match &mut self.work.encoded {
            Some(e) => (Vec::new(), Some(e.split_off(n))),
            None => (self.work.batch.rows.split_off(n), None),
        };
        let mut rest = Work::empty(self.work.batch.schema.clone());
        rest.batch.rows = rows;
        rest.encoded = encoded;
        rest.origin = self.work.origin.split_off(n);
        let rest_keys = if self.keyed {
            self.keys.split_off(n)
        } else {
            Vec::new()
        };
        let mut work = std::mem::replace(&mut self.work, rest);
        let keys = std::mem::replace(&mut self.keys, rest_keys);
        self.rows += n as u64;
        let at_key_change =
            self.keyed && !self.keys.is_empty() && keys.last().is_some_and(|k| !k.is_null());
        let safe = done || (at_key_change && keys.last() != self.keys.first());
        if let Some(k) = keys.last().filter(|k| safe && self.keyed && !k.is_null()) {
            self.after = Some(k.clone());
        }
        work.progress = safe.then(|| Progress {
            job: s.job.clone(),
            flow: s.flow.clone(),
            run: s.run.clone(),
            split,
            after: self.after.clone(),
            rows: self.rows,
            from: std::mem::replace(&mut self.recorded, self.rows),
            check: false,
            done,
            shard: s.shard,
        });
        work.keys = keys;
        self.since = Instant::now();
        work
    }
}

/// The batcher of a flow with progress in the target: per split, batches of consecutive rows cut
/// where the key changes, each to the split's writer.
pub fn run(input: Receiver<Chunk>, writers: Vec<Sender<Work>>, limits: Limits, shared: &Shared) {
    let s = shared
        .settings
        .progress
        .as_ref()
        .expect("ordered flows record progress");
    let mut splits: HashMap<u32, Pending> = HashMap::new();
    let mut next_writer = 0;
    let send = |p: &Pending, w: Work| {
        writers[p.writer]
            .send(w)
            .expect("writers outlive the batcher")
    };
    loop {
        let oldest = splits
            .values()
            .filter(|p| p.work.len() > 0)
            .map(|p| p.since)
            .min();
        let next = match (limits.timeout, oldest) {
            (Some(t), Some(since)) => match input.recv_timeout(t.saturating_sub(since.elapsed())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    for (id, p) in splits.iter_mut() {
                        if let Some(n) = cut(&p.keys, p.keys.len()).filter(|_| p.keyed) {
                            let w = p.take(n, *id, false, s);
                            send(p, w);
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
            _ => input.recv().ok(),
        };
        let Some(chunk) = next else { break };
        let p = splits.entry(chunk.split).or_insert_with(|| {
            next_writer += 1;
            Pending::new(&chunk, s, (next_writer - 1) % writers.len())
        });
        if chunk.end {
            let n = p.work.len();
            let w = p.take(n, chunk.split, true, s);
            send(p, w);
            splits.remove(&chunk.split);
            continue;
        }
        let split = chunk.split;
        p.add(chunk);
        // One row more than a batch is kept before cutting, so that a full batch can end at its
        // last row when the next one's key differs.
        while p.work.len() > limits.rows || (!p.keyed && p.work.len() == limits.rows) {
            let n = if p.keyed {
                match cut(&p.keys, limits.rows) {
                    Some(n) => n,
                    None => break,
                }
            } else {
                limits.rows
            };
            let w = p.take(n, split, false, s);
            send(p, w);
        }
    }
    stopped(splits, send, s, shared);
}

/// Reading stopped before these splits ended. Rows up to the last key change are written with
/// their progress; the rest are given back (a resumed run reads them), since their key's rows
/// may go on in rows not read.
fn stopped(
    splits: HashMap<u32, Pending>,
    send: impl Fn(&Pending, Work),
    s: &ProgressSettings,
    shared: &Shared,
) {
    for (id, mut p) in splits {
        let n = if p.keyed {
            cut(&p.keys, p.keys.len()).unwrap_or(0)
        } else {
            p.work.len()
        };
        if n > 0 {
            let w = p.take(n, id, false, s);
            send(&p, w);
        }
        let left = p.work.len();
        if left == 0 {
            continue;
        }
        if shared.transforms.is_none() {
            shared
                .counters
                .read
                .fetch_sub(left as u64, Ordering::Relaxed);
        } else {
            // Transformed rows cannot be given back (they are outputs, not the rows read).
            let rest = Work::empty(p.work.batch.schema.clone());
            let w = std::mem::replace(&mut p.work, rest);
            send(&p, w);
        }
    }
}

/// Writes a batch of an ordered flow: with its split's progress if it carries it, else as the
/// other modes do.
pub fn write(sink: &mut dyn SinkSide, work: &mut Work, shared: &Shared) {
    if work.progress.is_none() {
        // Cut where no progress can be recorded: its rows are only written.
        return encoded::write(sink, work, shared);
    }
    deliver(sink, work, shared);
}

/// Writes a batch that carries its split's progress; see the module docs. Encoded rows are
/// decoded only if the batch fails: to bisect it, or to keep them in the dead-letter file.
fn deliver(sink: &mut dyn SinkSide, work: &mut Work, shared: &Shared) {
    let step = work.progress.as_ref().expect("checked by the writer");
    let n = work.len();
    let all: Vec<usize> = (0..n).collect();
    let Err(e) = write_with_progress(sink, Rows::of(work), step, shared) else {
        return written(work, &all, shared);
    };
    let step = &step.clone();
    work.decoded();
    let work = &*work;
    match e {
        e if n > 1 && !e.is_retryable() => {
            tracing::warn!(
                rows = n,
                split = step.split,
                "a batch failed ({e}); writing it in halves to isolate the failing rows"
            );
            let mut from = step.from;
            let mut check = SinkCheck::default();
            let recorded = bisect(sink, work, 0, n, &mut from, &mut check, shared);
            check.settle(work, shared);
            // Rows given back because the sink is failing must be read again: no progress past
            // them is recorded.
            if !recorded && !shared.sink_failed() {
                record_only(
                    sink,
                    &Progress {
                        from,
                        ..step.clone()
                    },
                    shared,
                );
            }
        }
        e => {
            fail_rows(work, &all, &e, shared);
            record_only(sink, step, shared);
        }
    }
}

/// Writes rows `[a, b)` of the batch in halves until the failing ones are isolated; each part
/// that ends at a key change records the progress it reaches (`from`: where the record stands).
/// Returns whether the batch's own progress (its end) was recorded. Failed rows go through
/// `check`, which tells a failing sink from failing rows (see [`SinkCheck`]).
fn bisect(
    sink: &mut dyn SinkSide,
    work: &Work,
    a: usize,
    b: usize,
    from: &mut u64,
    check: &mut SinkCheck,
    shared: &Shared,
) -> bool {
    let step = work.progress.as_ref().expect("checked by the writer");
    let n = work.batch.len();
    let rows: Vec<usize> = (a..b).collect();
    if shared.sink_failed() {
        shared.give_back(rows.iter().map(|&i| work.origin[i]));
        return false;
    }
    let part = Batch {
        schema: work.batch.schema.clone(),
        rows: work.batch.rows[a..b].to_vec(),
    };
    let at_end = b == n;
    // Rows held by the check are not failed (kept in the dead-letter file) yet: progress
    // recorded past them now would skip them if the job died before they are. This part's
    // progress is then recorded by a later part, or by `record_only`.
    let progress = if check.holding() {
        None
    } else if at_end {
        Some(Progress {
            from: *from,
            ..step.clone()
        })
    } else if cut_after(&work.keys, b) {
        Some(Progress {
            after: Some(work.keys[b - 1].clone()),
            rows: step.rows - (n - b) as u64,
            from: *from,
            done: false,
            ..step.clone()
        })
    } else {
        None
    };
    let result = match &progress {
        Some(p) => write_with_progress(sink, Rows::Decoded(&part), p, shared),
        None => write_with_retries(sink, &part, shared),
    };
    match result {
        Ok(()) => {
            if let Some(p) = &progress {
                *from = p.rows;
            }
            check.written(work, shared);
            written(work, &rows, shared);
            at_end && progress.is_some()
        }
        Err(e) if b - a > 1 && !e.is_retryable() => {
            let mid = a + (b - a) / 2;
            bisect(sink, work, a, mid, from, check, shared);
            bisect(sink, work, mid, b, from, check, shared)
        }
        Err(e) => {
            check.failed(work, &rows, e, shared);
            false
        }
    }
}

/// The batch's rows are written or failed, but its progress is not recorded yet: record it alone,
/// so a resumed run does not read them again. Failing that, the job fails.
fn record_only(sink: &mut dyn SinkSide, step: &Progress, shared: &Shared) {
    let empty = Batch::new(Vec::new().into());
    if let Err(e) = write_with_progress(sink, Rows::Decoded(&empty), step, shared) {
        shared.fail(format!(
            "cannot record the progress of split {} in the target: {e}",
            step.split
        ));
    }
}

/// One batch and its progress, with retries; a retry is written only if the split's record still
/// stands where the batch began, in the same transaction, so an attempt that committed with its
/// answer lost is not written twice.
fn write_with_progress(
    sink: &mut dyn SinkSide,
    rows: Rows<'_>,
    step: &Progress,
    shared: &Shared,
) -> Result<(), PluginError> {
    let mut step = std::borrow::Cow::Borrowed(step);
    let mut first = true;
    // The retries' warnings name the split: several writers may retry at once.
    let _split = tracing::warn_span!("split", split = step.split).entered();
    let wrote = with_retries(shared, || {
        // A retry checks the split's record first: the failed attempt may have committed.
        if !std::mem::take(&mut first) {
            step.to_mut().check = true;
        }
        match rows {
            Rows::Decoded(batch) => sink.write_with_progress(batch, &step),
            Rows::Encoded(batch) => sink.write_encoded_with_progress(batch, &step),
        }
    })?;
    if !wrote {
        tracing::warn!(
            split = step.split,
            rows = step.rows,
            "the failed attempt had committed (the split's progress says so): not written again"
        );
    }
    Ok(())
}

/// A batch's rows as a writer holds them.
#[derive(Clone, Copy)]
enum Rows<'a> {
    Decoded(&'a Batch),
    Encoded(&'a Encoded),
}

impl<'a> Rows<'a> {
    fn of(work: &'a Work) -> Self {
        match &work.encoded {
            Some(e) => Rows::Encoded(e),
            None => Rows::Decoded(&work.batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_end_where_the_key_changes() {
        let keys = [1, 2, 2, 2, 3, 4].map(Value::Int);
        assert_eq!(cut(&keys, 3), Some(1), "rows 2, 2, 2 stay together");
        assert_eq!(cut(&keys, 4), Some(4));
        assert_eq!(
            cut(&keys, 6),
            Some(5),
            "the last row may go on in the next chunk"
        );
        let same = [7, 7, 7].map(Value::Int);
        assert_eq!(cut(&same, 2), None);
        let nulls = [Value::Null, Value::Null, Value::Int(1)];
        assert_eq!(cut(&nulls, 3), None, "no batch ends after a NULL key");
    }
}
