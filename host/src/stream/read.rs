//! The change reader: one thread that reads change batches from the source and hands them to the
//! dispatch loop, reconnecting with backoff from the last transaction it handed on (or the last
//! part of one too large to hand on whole: a position with `skip`, which the source resumes
//! inside).

use std::sync::Arc;
use std::time::Duration;

use etlhost_plugin_sdk::{ChangeBatch, Position, Split, StreamRequest};

use crate::pipeline::Control;
use crate::plugin::SourceHandle;
use crate::retry::{Backoff, Policy};

/// The first wait before reading the change log again; it grows as [`crate::retry`] says.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Reads change batches; on a lost connection it waits (doubling with jitter, at most 30 s:
/// [`crate::retry`]) and reads again from the position of the last change marked `last` it
/// handed on: a transaction's commit, or the end of a part of a large one.
pub(super) fn read(
    source: Arc<SourceHandle>,
    tables: Vec<String>,
    from: Position,
    max_transaction_changes: u64,
    tx: crossbeam_channel::Sender<Result<ChangeBatch, String>>,
    control: Arc<Control>,
) {
    let mut at = from;
    let mut backoff = Policy::forever(RECONNECT_BACKOFF).start();
    let wait = |what: &str, e: &dyn std::fmt::Display, at: &Position, backoff: &mut Backoff| {
        let wait = backoff.next_wait().expect("retries without limit");
        tracing::warn!("{what}: {e}; reading again from {at} in {wait:?}");
        std::thread::sleep(wait);
    };
    'connect: while !control.stopping() {
        let split = Split {
            id: 0,
            range: None,
            cursor: None,
            stream: Some(StreamRequest {
                from: at.clone(),
                tables: tables.clone(),
                max_transaction_changes,
            }),
        };
        let mut reader = match source.open_split(&split) {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                wait("cannot start reading the change log", &e, &at, &mut backoff);
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        while !control.stopping() {
            match reader.next_batch() {
                Ok(Some(b)) => {
                    let b = match ChangeBatch::from_batch(b) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(format!("malformed change batch: {e}")));
                            return;
                        }
                    };
                    if let Some(c) = b.changes.iter().rev().find(|c| c.last) {
                        at = c.commit.clone();
                    }
                    backoff.reset();
                    if tx.send(Ok(b)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    wait(
                        "the change log ended",
                        &"connection closed",
                        &at,
                        &mut backoff,
                    );
                    continue 'connect;
                }
                Err(e) if e.is_retryable() => {
                    wait("reading the change log failed", &e, &at, &mut backoff);
                    continue 'connect;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    }
}
