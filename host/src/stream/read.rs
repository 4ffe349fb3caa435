//! The change reader: one thread that reads change batches from the source and hands them to the
//! dispatch loop, reconnecting with backoff from the last transaction it handed on (or the last
//! part of one too large to hand on whole: a position with `skip`, which the source resumes
//! inside).

use std::sync::Arc;
use std::time::Duration;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{ChangeBatch, Position, Split, StreamRequest};

use crate::pipeline::Control;
use crate::plugin::SourceHandle;
use crate::retry::{Backoff, Policy};

/// A chunk as the source sent it: its changes, and its bytes, which go to the sinks as they are
/// when a write is of the whole chunk (or of some of its changes: their rows' bytes), so that the
/// host never encodes what the source already did.
pub(super) struct Read {
    pub(super) batch: ChangeBatch,
    pub(super) encoded: Encoded,
}

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
    tx: crossbeam_channel::Sender<Result<Read, String>>,
    spent: crossbeam_channel::Receiver<Read>,
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
            // Freed on the thread that allocated them, which costs the allocator less than
            // freeing them where they were written.
            spent.try_iter().for_each(drop);
            match reader.next_encoded(None) {
                Ok(Some(encoded)) => {
                    let batch = match ChangeBatch::decode(encoded.as_bytes()) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(format!("malformed change batch: {e}")));
                            return;
                        }
                    };
                    if let Some(c) = batch.changes.iter().rev().find(|c| c.last) {
                        at = c.commit.clone();
                    }
                    backoff.reset();
                    if tx.send(Ok(Read { batch, encoded })).is_err() {
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
