//! The checkpointer thread: records acknowledged progress on an interval and whenever a split
//! completes, until told to stop.

use std::time::SystemTime;

use super::settings::CheckpointSettings;
use super::shared::{Shared, Tick};
use crate::checkpoint;

/// It only reads the acknowledgement tracker's state, so a slow sink makes checkpoints less
/// informative, never late or fatal.
pub fn run(cfg: &CheckpointSettings, ticks: crossbeam_channel::Receiver<Tick>, shared: &Shared) {
    loop {
        let stop = matches!(
            ticks.recv_timeout(cfg.interval),
            Ok(Tick::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        let snap = shared.acks.snapshot();
        let mut cp = cfg.base.clone();
        cp.done.extend(snap.done);
        cp.watermarks.extend(snap.watermarks);
        let done = cp.done.clone();
        cp.watermarks.retain(|id, _| !done.contains(id));
        cp.updated = crate::stats::iso(SystemTime::now());
        if let Err(e) = checkpoint::save(&cfg.path, &cp) {
            // Losing a checkpoint costs re-reading on resume, never rows: the job goes on.
            tracing::warn!("cannot write checkpoint {}: {e}", cfg.path.display());
        }
        if stop {
            return;
        }
    }
}
