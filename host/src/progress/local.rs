//! Progress in a local checkpoint file (see [`crate::checkpoint`]): the store of a flow whose
//! sink cannot keep it, or that is told to keep it locally, and the run's own record of a flow
//! whose rows are grouped by their endpoints (see [`super::Store::Grouped`]).
//!
//! While a flow runs, the pipeline's checkpointer (`pipeline::checkpointer`) writes the file; what
//! is here reads it before and records on it after.

use etlhost_plugin_sdk::{Failure, Split};

use crate::checkpoint::{flow_path, load, remaining, save, Checkpoint};
use crate::error::RunError;
use crate::spec::{FlowRef, Spec};

/// The checkpoint a flow resumes from: none when there is none or with `--fresh` (which discards
/// it); refused when the spec changed since it was written.
pub fn previous(flow: FlowRef<'_>, fresh: bool) -> Result<Option<Checkpoint>, RunError> {
    let path = flow_path(flow);
    if fresh {
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| {
                RunError::Start(format!("cannot remove checkpoint {}: {e}", path.display()))
            })?;
            tracing::info!("--fresh: discarded checkpoint {}", path.display());
        }
        return Ok(None);
    }
    let Some(cp) = load(&path).map_err(RunError::Start)? else {
        return Ok(None);
    };
    if cp.spec_hash != flow.spec.hash {
        return Err(RunError::Config(flow.spec.error(
            "",
            format!(
                "the spec changed since job '{}' was checkpointed in {}; run with --fresh to start over",
                flow.spec.job.name,
                path.display()
            ),
        )));
    }
    Ok(Some(cp))
}

/// Records in the flow's checkpoint how its run failed (the checkpointer has written its last
/// state by then).
pub fn record_failure(flow: FlowRef<'_>, failure: Failure) -> Result<(), String> {
    let path = flow_path(flow);
    let Some(mut cp) = load(&path)? else {
        return Ok(());
    };
    cp.failed = Some(failure);
    save(&path, &cp).map_err(|e| format!("cannot write checkpoint {}: {e}", path.display()))
}

/// The whole job succeeded: every flow's checkpoint goes, so the next run starts fresh.
pub fn forget(spec: &Spec) {
    for i in 0..spec.job.flows.len() {
        let path = flow_path(spec.flow(i));
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove checkpoint {}: {e}", path.display());
            }
        }
    }
}

/// Where a resumed flow starts: its checkpoint, and the splits still to read.
pub fn resume(flow: FlowRef<'_>, cp: Checkpoint) -> (Checkpoint, Vec<Split>) {
    let splits = remaining(&cp);
    tracing::info!(
        job = %flow.label(),
        done = cp.done.len(),
        splits = cp.splits.len(),
        in_progress = cp.watermarks.len(),
        "resuming from checkpoint {}",
        flow_path(flow).display()
    );
    (cp, splits)
}
