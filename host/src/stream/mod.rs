//! `mode: stream`: keep the graph equal to the source by following its change log (MySQL's binlog).
//!
//! ```text
//! head position (checked settings) -> stored -> snapshot (today's flows and splits)
//!   -> one change reader per job -> dispatch per table -> each flow's writers (by key) -> acked position
//! ```
//!
//! The position is captured *before* the snapshot and stored first, so nothing committed during
//! the snapshot is missed; the changes the snapshot already saw are replayed, which idempotent
//! Cypher (`MERGE`, `DETACH DELETE`) makes harmless. The stream is read in chunks (one table's
//! changes); a chunk is written by every flow of its table before the next chunk is, flows in
//! file order, so a node flow's writes land before the relationship flow's of the same change.
//! Within a flow, `sink.parallelism` writers each take the changes of the keys that hash to them,
//! in order. The recorded position is the commit of the last transaction whose every change has
//! been written: never inside a transaction.

mod cascade;
mod dead_letter;
mod derive;
mod follow;
mod metrics;
mod read;
mod state;
mod write;

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::RunError;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::Control;
use crate::plugin::SourceHandle;
use crate::spec::{FlowRef, Mode, Spec};
use crate::stats::{Counters, Status, Summary};

pub use metrics::{exported_names as exported_metric_names, serve as serve_metrics};

/// Whether any flow of the job streams.
pub fn is_streaming(spec: &Spec) -> bool {
    spec.job.flows.iter().any(|f| f.mode == Mode::Stream)
}

/// Runs a job with streaming flows: snapshot (unless done or skipped), then follow until stopped.
pub fn run(job: &Job, control: Arc<Control>, opts: &RunOptions) -> Result<Summary, RunError> {
    let spec = &job.spec;
    let start = SystemTime::now();
    let streams: Vec<FlowRef<'_>> = spec
        .flows_in_order()
        .filter(|f| f.flow.mode == Mode::Stream)
        .collect();
    let first = streams[0];
    let url = |f: &FlowRef<'_>| {
        let o = &f.flow.source.options;
        (o.get("url").cloned(), o.get("user").cloned())
    };
    if let Some(other) = streams.iter().find(|f| url(f) != url(&first)) {
        return Err(RunError::Config(other.error(
            "source.options.url",
            "the streaming flows of a job share one binlog connection: they must read the same server as the first",
        )));
    }
    let source = SourceHandle::open(
        job.plugins[first.index].source.clone(),
        &first.flow.source.options,
    )
    .map_err(|e| RunError::Start(format!("cannot start source: {e}")))?;
    let head = source
        .stream_head()
        .map_err(|e| RunError::Start(format!("cannot stream from the source: {e}")))?
        .position;
    // Before any copy: a foreign key the stream could not follow refuses the start.
    let cascades = cascade::Cascades::start(job, &streams, source.clone())
        .map_err(|e| RunError::Start(format!("cannot stream: {e}")))?;
    let path = state::path(spec);
    let mut st = start_state(spec, &path, head, opts.fresh)?;
    let mut snapshots = Vec::new();
    if !st.snapshot_done {
        for flow in spec.flows_in_order() {
            if flow.flow.mode == Mode::Stream && !flow.flow.snapshot {
                continue;
            }
            if control.stopping() {
                break;
            }
            match crate::batch::run(job, flow, control.clone(), opts) {
                Ok(s) => snapshots.push(s),
                Err(e) => return Err(e),
            }
        }
        if control.stopping() {
            let s = Summary::total(
                &spec.job.name,
                snapshots,
                Status::Interrupted,
                start,
                Some("interrupted during the snapshot".into()),
            );
            return Err(RunError::Failed(Box::new(s)));
        }
        crate::progress::local::forget(spec);
        st.snapshot_done = true;
        state::save(&path, &st).map_err(RunError::Start)?;
        tracing::info!(position = %st.position, "snapshot done; following the change log");
    }
    let counters = Arc::new(Counters::new(1));
    let outcome = follow::follow(
        job, &streams, source, cascades, st, &path, control, &counters, opts,
    );
    let (status, error, stream_json) = outcome;
    let mut s = Summary::new(
        &spec.job.name,
        None,
        status,
        &counters,
        start,
        SystemTime::now(),
        error,
    );
    s.stream = Some(stream_json);
    s.flows = snapshots;
    match status {
        Status::Succeeded => Ok(s),
        _ => Err(RunError::Failed(Box::new(s))),
    }
}

/// Where the stream starts: the recorded state, or (none, or `fresh`) a new one at the log's head,
/// recorded before anything is copied.
fn start_state(
    spec: &Spec,
    path: &std::path::Path,
    head: etlhost_plugin_sdk::Position,
    fresh: bool,
) -> Result<state::StreamState, RunError> {
    let previous = if fresh {
        None
    } else {
        state::load(path).map_err(RunError::Start)?
    };
    if let Some(st) = previous {
        tracing::info!(position = %st.position, snapshot_done = st.snapshot_done, "resuming the stream from {}", path.display());
        return Ok(st);
    }
    let st = state::StreamState {
        position: head,
        snapshot_done: false,
    };
    state::save(path, &st).map_err(RunError::Start)?;
    // A new stream: keys held by an earlier one (a --fresh run stopped during its snapshot)
    // belong to a position this one never passes.
    dead_letter::forget(spec).map_err(RunError::Start)?;
    Ok(st)
}
