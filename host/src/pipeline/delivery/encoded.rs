//! The pass-through mode: rows go from source to sink as the source encoded them, since nothing
//! on the way needs their values; they are decoded only when their batch fails.

use crate::pipeline::seams::SinkSide;
use crate::pipeline::shared::Shared;
use crate::pipeline::sinkcheck::SinkCheck;
use crate::pipeline::work::Work;
use crate::pipeline::write::{with_retries, written};

use super::plain;

/// The pass-through path: the batch as the source encoded it. Its rows are decoded only if it
/// fails: to bisect it, or to keep them in the dead-letter file.
pub fn write(sink: &mut dyn SinkSide, work: &mut Work, shared: &Shared) {
    let Some(rows) = work.encoded.as_ref() else {
        // A batch nothing was encoded into (an ordered flow's, of no rows) is a decoded one.
        return plain::write(sink, work, shared);
    };
    let result = with_retries(shared, || sink.write_encoded(rows));
    let all: Vec<usize> = (0..rows.rows()).collect();
    match result {
        Ok(()) => written(work, &all, shared),
        Err(e) => {
            work.decoded();
            let mut check = SinkCheck::default();
            plain::failed(sink, work, &all, e, &mut check, shared);
            check.settle(work, shared);
        }
    }
}
