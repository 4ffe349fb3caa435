//! Writing one chunk of changes with one flow's writers: split by key over the writers, each
//! retried while the failure is transient.

use std::time::Duration;

use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Value};

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
}

/// Writes a chunk with one flow: all of it on one writer, or each writer the changes of the keys
/// that hash to it, in order, at the same time.
pub(super) fn write(
    t: &mut Target,
    b: &ChangeBatch,
    counters: &Counters,
    control: &Control,
) -> Result<(), String> {
    let n = t.sinks.len();
    let name = t.name.clone();
    let backoff = t.retry_backoff;
    if n == 1 {
        return write_retrying(&mut t.sinks[0], b, &name, backoff, counters, control);
    }
    let mut parts: Vec<ChangeBatch> = (0..n)
        .map(|_| ChangeBatch {
            table: b.table.clone(),
            schema: b.schema.clone(),
            key: b.key.clone(),
            changes: Vec::new(),
        })
        .collect();
    for c in &b.changes {
        if c.kind == ChangeKind::Mark {
            continue;
        }
        parts[writer_of(&b.key_of(c), n)].changes.push(c.clone());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = t
            .sinks
            .iter_mut()
            .zip(&parts)
            .filter(|(_, p)| !p.changes.is_empty())
            .map(|(sink, part)| {
                let name = &name;
                scope.spawn(move || write_retrying(sink, part, name, backoff, counters, control))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect::<Result<Vec<()>, String>>()
            .map(drop)
    })
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

/// Retries transient failures (a Bolt server restart) until they pass, waiting longer each
/// time; a permanent failure stops the stream at the last recorded position.
fn write_retrying(
    sink: &mut SinkHandle,
    b: &ChangeBatch,
    flow: &str,
    first_backoff: Duration,
    counters: &Counters,
    control: &Control,
) -> Result<(), String> {
    let mut backoff = Policy::forever(first_backoff).start();
    loop {
        match sink.write_changes(b) {
            Ok(()) => return Ok(()),
            Err(
                e @ PluginError::Failed {
                    retryable: true, ..
                },
            ) => {
                if control.reason() == crate::pipeline::StopReason::Error {
                    return Err(format!("flow `{flow}`: {e}"));
                }
                let wait = backoff.next_wait().expect("retries without limit");
                Counters::add(&counters.retries, 1);
                tracing::warn!(flow, "writing changes failed: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
            }
            Err(e) => return Err(format!("flow `{flow}`: writing changes failed: {e}")),
        }
    }
}
