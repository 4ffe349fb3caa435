//! A writer: owns one sink instance and writes the batches it receives, one call per batch, as
//! the flow's delivery mode says (see `delivery`).
//!
//! A sink that fails whatever it is given (a read-only database, a full disk, a user without
//! write permission) fails the job as a sink error (see `sinkcheck`), and the rows not written are
//! given back ([`Shared::give_back`]), not failed.

use crossbeam_channel::Receiver;

use super::control::StopReason;
use super::delivery::{encoded, grouped, ordered, plain};
use super::mode::Mode;
use super::seams::SinkSide;
use super::shared::Shared;
use super::work::Work;

pub fn run(mut sink: Box<dyn SinkSide>, batches: Receiver<Work>, shared: &Shared) {
    let sink = &mut *sink;
    // The loop ends only when the batcher has sent its last (partial) batch and hung up.
    for mut work in batches {
        if shared.sink_failed() {
            // Writing to a sink known to fail would only fail again, and, for a batch carrying
            // progress, could record progress past rows given back before it.
            shared.give_back(work.origin.iter().copied());
        } else {
            match shared.mode {
                Mode::Plain => plain::write(sink, &work, shared),
                Mode::Encoded => encoded::write(sink, &mut work, shared),
                Mode::Grouped => grouped::write(sink, &work, shared),
                Mode::Ordered { .. } => ordered::write(sink, &mut work, shared),
            }
        }
        shared.recycle(work);
    }
    if shared.control.reason() != StopReason::Error && !shared.sink_failed() {
        if let Err(e) = sink.finish() {
            shared.fail(format!("finishing the sink failed: {e}"));
        }
    }
}
