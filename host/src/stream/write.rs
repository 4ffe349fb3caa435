//! Writing one chunk of changes with one flow's writers: split by key over the writers, each
//! retried while the failure is transient. A permanent failure stops the stream, or, with
//! `stream: {on_failed_change: dead_letter}`, is bisected down to the changes the sink refuses,
//! which go to the dead-letter file ([`super::dead_letter`]) while the others are written.

use std::sync::Arc;
use std::time::Duration;

use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Value};

use super::dead_letter::Failures;
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
}

/// Writes a chunk with one flow: all of it on one writer, or each writer the changes of the keys
/// that hash to it, in order, at the same time. Answers the indices (into `b.changes`) of the
/// changes that failed and went to the dead-letter file, in order.
pub(super) fn write(
    t: &mut Target,
    b: &ChangeBatch,
    counters: &Counters,
    control: &Control,
) -> Result<Vec<usize>, String> {
    let n = t.sinks.len();
    let w = Writer {
        flow: &t.name,
        backoff: t.retry_backoff,
        counters,
        control,
        failures: &t.failures,
    };
    let rows: Vec<usize> = (0..b.changes.len())
        .filter(|&i| b.changes[i].kind != ChangeKind::Mark)
        .collect();
    let outcome = if n == 1 {
        let mut failed = Vec::new();
        w.settle(&mut t.sinks[0], b, &rows, true, &mut failed)
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
                .zip(&idx)
                .filter(|(_, idx)| !idx.is_empty())
                .map(|(sink, idx)| scope.spawn(move || w.settle_part(sink, b, idx)))
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
    // Before the position can move past a dead-lettered change, whatever else happened.
    t.failures.store()?;
    outcome
}

/// A fixed writer per key, so one key's changes are written in order by one connection.
fn writer_of(key: &[&Value], writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in key {
        // The JSON form is stable and hashable for every value type.
        v.to_json().to_string().hash(&mut h);
    }
    (h.finish() % writers as u64) as usize
}

/// Why a write did not pass.
enum Failure {
    /// The sink refused it for good.
    Refused(PluginError),
    /// The stream is stopping (another writer failed): the message to end with.
    Stopped(String),
}

/// What one flow's writers share while writing a chunk.
struct Writer<'a> {
    flow: &'a str,
    backoff: Duration,
    counters: &'a Counters,
    control: &'a Control,
    failures: &'a Failures,
}

impl Writer<'_> {
    /// One writer's share of a chunk (changes `idx` of `b`), as a batch of its own; the failed
    /// changes' indices into `b`.
    fn settle_part(
        &self,
        sink: &mut SinkHandle,
        b: &ChangeBatch,
        idx: &[usize],
    ) -> Result<Vec<usize>, String> {
        let part = subset(b, idx);
        let all: Vec<usize> = (0..idx.len()).collect();
        let mut failed = Vec::new();
        self.settle(sink, &part, &all, true, &mut failed)?;
        Ok(failed.into_iter().map(|i| idx[i]).collect())
    }

    /// Writes changes `idx` of `b` (`whole`: they are all of `b`'s rows, so `b` itself is
    /// written). A refusal is bisected: each write is one transaction, all or nothing, and the
    /// halves go in order, so every key's changes keep their order, down to the single changes the
    /// sink refuses.
    fn settle(
        &self,
        sink: &mut SinkHandle,
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
        let result = if whole && keep.len() == idx.len() {
            self.write_retrying(sink, b)
        } else {
            self.write_retrying(sink, &subset(b, &keep))
        };
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
                    failed.push(i);
                    return Ok(());
                }
                let (left, right) = keep.split_at(keep.len() / 2);
                self.settle(sink, b, left, false, failed)?;
                self.settle(sink, b, right, false, failed)
            }
            Err(Failure::Refused(e)) => {
                Err(format!("flow `{}`: writing changes failed: {e}", self.flow))
            }
            Err(Failure::Stopped(e)) => Err(e),
        }
    }

    /// Retries transient failures (a Bolt server restart) until they pass, waiting longer each
    /// time; a permanent failure is the caller's to settle.
    fn write_retrying(&self, sink: &mut SinkHandle, b: &ChangeBatch) -> Result<(), Failure> {
        let flow = self.flow;
        let mut backoff = Policy::forever(self.backoff).start();
        loop {
            match sink.write_changes(b) {
                Ok(()) => return Ok(()),
                Err(
                    e @ PluginError::Failed {
                        retryable: true, ..
                    },
                ) => {
                    if self.control.reason() == crate::pipeline::StopReason::Error {
                        return Err(Failure::Stopped(format!("flow `{flow}`: {e}")));
                    }
                    let wait = backoff.next_wait().expect("retries without limit");
                    Counters::add(&self.counters.retries, 1);
                    tracing::warn!(flow, "writing changes failed: {e}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(Failure::Refused(e)),
            }
        }
    }
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
