//! Writing one chunk of changes with one flow's writers: split by key over the writers, each
//! retried while the failure is transient. A permanent failure stops the stream, or, with
//! `stream: {on_failed_change: dead_letter}`, is bisected down to the changes the sink refuses,
//! which go to the dead-letter file ([`super::dead_letter`]) while the others are written.

use std::sync::Arc;
use std::time::Duration;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{
    ChangeBatch, ChangeId, ChangeKind, Marked, Position, WriterMark, WriterSlot,
};

use super::dead_letter::Failures;
use super::replay::{id_of, key_text, writer_of, Replay};
use super::store::Lease;
use crate::pipeline::Control;
use crate::plugin::{PluginError, SinkHandle};
use crate::retry::Policy;
use crate::stats::Counters;

/// One streaming flow: the table it follows and one sink instance per writer.
pub(super) struct Target {
    pub(super) name: String,
    pub(super) table: String,
    pub(super) sinks: Vec<SinkHandle>,
    pub(super) retry_backoff: Duration,
    /// The job's failed changes, shared by every flow.
    pub(super) failures: Arc<Failures>,
    /// With the position in the target: the job's lease, and each writer's record as this process
    /// last left it.
    pub(super) marks: Option<(Arc<Lease>, Vec<Record>)>,
    /// What the writers' records said was written when the stream started.
    pub(super) replay: Replay,
}

/// A writer's record as this process last left it: the sequence its next write starts from, and
/// the last change of the log written (which never moves back, even when a change is written
/// again).
#[derive(Debug, Clone, Default)]
pub(super) struct Record {
    pub(super) seq: u64,
    pub(super) last: Option<ChangeId>,
}

/// What a write of one chunk carries besides its changes.
pub(super) struct Chunk<'a> {
    /// The id of each of the batch's changes read from the log (none: derived by the stream).
    pub(super) ids: &'a [Option<u64>],
    /// Where the whole stream may resume as the chunk is written.
    pub(super) resume: &'a Position,
    /// Keys whose changes are written even when a writer's record says they were: a TRUNCATE or
    /// cascade derived again on a chunk read again changed them.
    pub(super) rederived: &'a std::collections::HashSet<String>,
    /// The batch as the source encoded it, row for change (none: derived by the stream).
    pub(super) encoded: Option<&'a Encoded>,
}

/// Writes a chunk with one flow: all of it on one writer, or each writer the changes of the keys
/// that hash to it, in order, at the same time. Answers the indices (into `b.changes`) of the
/// changes that failed and went to the dead-letter file, in order.
pub(super) fn write(
    t: &mut Target,
    b: &ChangeBatch,
    chunk: &Chunk<'_>,
    counters: &Counters,
    control: &Control,
) -> Result<Vec<usize>, String> {
    let n = t.sinks.len();
    let lease = t.marks.as_ref().map(|(l, _)| l.clone());
    let w = Writer {
        flow: &t.name,
        backoff: t.retry_backoff,
        counters,
        control,
        failures: &t.failures,
        lease: lease.as_deref(),
        chunk,
        writers: n,
    };
    // A change read again after a restart that its writer's record says is written is not
    // written twice (it counts as written).
    let replaying = t.replay.covers(b, chunk.ids);
    let all: Vec<usize> = (0..b.changes.len())
        .filter(|&i| b.changes[i].kind != ChangeKind::Mark)
        .collect();
    let whole = !replaying;
    let rows: Vec<usize> = all
        .into_iter()
        .filter(|&i| {
            let Some(index) = chunk.ids[i].filter(|_| replaying) else {
                return true;
            };
            let c = &b.changes[i];
            !t.replay.written(&b.key_of(c), &id_of(b, i, index))
                || chunk.rederived.contains(&key_text(b, c))
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut no_records = vec![Record::default(); n];
    let records = match &mut t.marks {
        Some((_, records)) => records,
        None => &mut no_records,
    };
    let outcome = if n == 1 {
        let mut failed = Vec::new();
        let mut slot = Slot {
            index: 0,
            record: &mut records[0],
        };
        w.settle(&mut t.sinks[0], &mut slot, b, &rows, whole, &mut failed)
            .map(|()| failed)
    } else {
        let mut idx: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in rows {
            idx[writer_of(&b.key_of(&b.changes[i]), n)].push(i);
        }
        let w = &w;
        std::thread::scope(|scope| {
            let handles: Vec<_> = t
                .sinks
                .iter_mut()
                .zip(records.iter_mut())
                .zip(&idx)
                .enumerate()
                .filter(|(_, (_, idx))| !idx.is_empty())
                .map(|(index, ((sink, record), idx))| {
                    let slot = Slot { index, record };
                    scope.spawn(move || w.settle_part(sink, slot, b, idx))
                })
                .collect();
            let mut failed = Vec::new();
            for h in handles {
                failed.extend(
                    h.join()
                        .unwrap_or_else(|_| Err("a writer panicked".into()))?,
                );
            }
            failed.sort_unstable();
            Ok(failed)
        })
    };
    // Before the recorded position can move past a dead-lettered change, whatever else happened.
    t.failures.store()?;
    outcome
}

/// Why a write did not pass.
enum Failure {
    /// The sink refused it for good.
    Refused(PluginError),
    /// The stream is stopping (another writer failed, or another process took the job over):
    /// the message to end with.
    Stopped(String),
}

/// What one flow's writers share while writing a chunk.
struct Writer<'a> {
    flow: &'a str,
    backoff: Duration,
    counters: &'a Counters,
    control: &'a Control,
    failures: &'a Failures,
    lease: Option<&'a Lease>,
    chunk: &'a Chunk<'a>,
    writers: usize,
}

/// One writer: its place among the flow's writers and its record.
struct Slot<'a> {
    index: usize,
    record: &'a mut Record,
}

impl Writer<'_> {
    /// One writer's share of a chunk (changes `idx` of `b`), as a batch of its own; the failed
    /// changes' indices into `b`.
    fn settle_part(
        &self,
        sink: &mut SinkHandle,
        mut slot: Slot<'_>,
        b: &ChangeBatch,
        idx: &[usize],
    ) -> Result<Vec<usize>, String> {
        let mut failed = Vec::new();
        self.settle(sink, &mut slot, b, idx, false, &mut failed)?;
        Ok(failed)
    }

    /// Writes changes `idx` of `b` (`whole`: they are all of `b`'s rows, so `b` itself is
    /// written). A refusal is bisected: each write is one transaction, all or nothing, and the
    /// halves go in order, so every key's changes keep their order, down to the single changes the
    /// sink refuses.
    fn settle(
        &self,
        sink: &mut SinkHandle,
        slot: &mut Slot<'_>,
        b: &ChangeBatch,
        idx: &[usize],
        whole: bool,
        failed: &mut Vec<usize>,
    ) -> Result<(), String> {
        let dead_letters = self.failures.dead_letters();
        let keep = if dead_letters {
            self.failures.screen(self.flow, b, idx, failed)?
        } else {
            idx.to_vec()
        };
        if keep.is_empty() {
            return Ok(());
        }
        // Ids grow along a chunk: the last one read from the log is the greatest.
        let last = keep
            .iter()
            .rev()
            .find_map(|&i| self.chunk.ids[i].map(|x| id_of(b, i, x)));
        let (part, encoded);
        let bytes = match (self.chunk.encoded, whole && keep.len() == idx.len()) {
            (Some(e), true) => e.as_bytes(),
            (Some(e), false) => {
                part = rows_of(e, &keep);
                part.as_bytes()
            }
            (None, true) => {
                encoded = b.encode();
                &encoded
            }
            (None, false) => {
                encoded = subset(b, &keep).encode();
                &encoded
            }
        };
        let result = self.write_retrying(sink, slot, bytes, last);
        match result {
            Ok(()) => {
                if dead_letters {
                    self.failures.written(self.flow, b, &keep);
                }
                Ok(())
            }
            Err(Failure::Refused(e)) if dead_letters => {
                if let [i] = keep[..] {
                    self.failures.refused(self.flow, b, i, &e.to_string())?;
                    // Stored before the next write: with the position in the target, that write
                    // moves its writer's record past this change.
                    self.failures.store()?;
                    failed.push(i);
                    return Ok(());
                }
                let (left, right) = keep.split_at(keep.len() / 2);
                self.settle(sink, slot, b, left, false, failed)?;
                self.settle(sink, slot, b, right, false, failed)
            }
            Err(Failure::Refused(e)) => {
                Err(format!("flow `{}`: writing changes failed: {e}", self.flow))
            }
            Err(Failure::Stopped(e)) => Err(e),
        }
    }

    /// Retries transient failures (a Bolt server restart) until they pass, waiting longer each
    /// time; a permanent failure is the caller's to settle.
    fn write_retrying(
        &self,
        sink: &mut SinkHandle,
        slot: &mut Slot<'_>,
        changes: &[u8],
        last: Option<ChangeId>,
    ) -> Result<(), Failure> {
        let flow = self.flow;
        let mut backoff = Policy::forever(self.backoff).start();
        loop {
            match self.write_once(sink, slot, changes, &last) {
                Ok(()) => return Ok(()),
                Err(
                    e @ PluginError::Failed {
                        retryable: true, ..
                    },
                ) => {
                    use crate::pipeline::StopReason;
                    if matches!(
                        self.control.reason(),
                        StopReason::Error | StopReason::Fenced
                    ) {
                        return Err(Failure::Stopped(format!("flow `{flow}`: {e}")));
                    }
                    let wait = backoff.next_wait().expect("retries without limit");
                    Counters::add(&self.counters.retries, 1);
                    tracing::warn!(flow, "writing changes failed: {e}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(PluginError::Failed { message, .. }) if message.starts_with(FENCED) => {
                    return Err(Failure::Stopped(message))
                }
                Err(e) => return Err(Failure::Refused(e)),
            }
        }
    }

    /// One attempt: the changes alone, or with the writer's record in their transaction. A
    /// record already moved by this very write (its answer was lost) counts as written; one moved
    /// by another process fences this one.
    fn write_once(
        &self,
        sink: &mut SinkHandle,
        slot: &mut Slot<'_>,
        changes: &[u8],
        last: &Option<ChangeId>,
    ) -> Result<(), PluginError> {
        let Some(lease) = self.lease else {
            return sink.write_changes(changes);
        };
        if let Some(why) = lease.fenced() {
            return Err(fenced_error(why));
        }
        let mark = WriterMark {
            job: lease.job.clone(),
            slot: WriterSlot {
                flow: self.flow.to_string(),
                writers: self.writers as u32,
                slot: slot.index as u32,
            },
            epoch: lease.epoch(),
            seq: slot.record.seq,
            last: last.clone().max(slot.record.last.clone()),
            resume: self.chunk.resume.clone(),
        };
        match sink.write_changes_marked(changes, &mark)? {
            Marked::Written | Marked::AlreadyWritten => {
                slot.record.seq += 1;
                slot.record.last = mark.last;
                Ok(())
            }
            Marked::Fenced(why) => {
                let why = format!("flow `{}`: {why}", self.flow);
                lease.fence(why.clone(), self.control);
                Err(fenced_error(why))
            }
        }
    }
}

/// How a fenced write reads as an error: never retried, never bisected.
const FENCED: &str = "fenced: ";

fn fenced_error(why: String) -> PluginError {
    PluginError::Failed {
        plugin: String::new(),
        retryable: false,
        message: format!("{FENCED}{why}"),
    }
}

/// Rows `idx` of `e` (in order) as a buffer of their own, their bytes copied as they are.
fn rows_of(e: &Encoded, idx: &[usize]) -> Encoded {
    let mut out = Encoded::empty(e.schema().clone(), 0);
    let mut rest = idx;
    while let Some(&first) = rest.first() {
        // A run of consecutive rows is one copy.
        let n = rest
            .iter()
            .enumerate()
            .take_while(|&(k, &i)| i == first + k)
            .count();
        out.extend(e, first..first + n);
        rest = &rest[n..];
    }
    out
}

/// Changes `idx` of `b` as a batch of their own, in order.
fn subset(b: &ChangeBatch, idx: &[usize]) -> ChangeBatch {
    ChangeBatch {
        table: b.table.clone(),
        schema: b.schema.clone(),
        key: b.key.clone(),
        changes: idx.iter().map(|&i| b.changes[i].clone()).collect(),
    }
}
