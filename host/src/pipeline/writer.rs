//! A writer: owns one sink instance and writes the batches it receives, one call per batch.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use etlhost_plugin_sdk::Batch;

use super::Shared;
use crate::plugin::SinkHandle;
use crate::stats::Counters;

pub fn run(mut sink: SinkHandle, batches: Receiver<Batch>, shared: Arc<Shared>) {
    // The loop ends only when the batcher has sent its last (partial) batch and hung up.
    for batch in batches {
        let n = batch.len();
        if shared.stopping() {
            // The job has failed elsewhere; keep draining so upstream stages can finish, and count
            // these rows as not written.
            Counters::add(&shared.counters.abandoned, n);
            continue;
        }
        match sink.write_batch(&batch) {
            Ok(()) => {
                Counters::add(&shared.counters.written, n);
                Counters::add(&shared.counters.batches, 1);
            }
            Err(e) => {
                Counters::add(&shared.counters.failed, n);
                shared.fail(format!("writing a batch of {n} rows failed: {e}"));
            }
        }
    }
    if !shared.stopping() {
        if let Err(e) = sink.finish() {
            shared.fail(format!("finishing the sink failed: {e}"));
        }
    }
}
