//! `mode: stream`: keep the graph equal to the source by following its change log (MySQL's binlog).
//!
//! ```text
//! head position (checked settings) -> stored -> snapshot (today's flows and splits)
//!   -> one change reader per job -> dispatch per table -> each flow's writers (by key) -> acked position
//! ```
//!
//! The position is captured *before* the snapshot and stored first, so nothing committed during
//! the snapshot is missed; the changes the snapshot already saw are applied again, which
//! idempotent Cypher (`MERGE`, `DETACH DELETE`) makes harmless. The stream is read in chunks (one table's
//! changes); a chunk is written by every flow of its table before the next chunk is, flows in
//! file order, so a node flow's writes land before the relationship flow's of the same change.
//! Within a flow, `sink.parallelism` writers each take the changes of the keys that hash to them,
//! in order. The recorded position is the commit of the last transaction whose every change has
//! been written (inside one only when it is applied in parts, `stream.max_transaction_changes`).
//! Where it is recorded, and whether one process holds the job, is `store`'s: with the position
//! in the target, each write records its writer's position in its own transaction and a restart
//! skips what is written (`replay`), so nothing is replayed twice.

mod cascade;
mod dead_letter;
mod derive;
mod follow;
mod metrics;
mod read;
mod replay;
mod state;
mod store;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use etlhost_plugin_sdk::Position;
use metrics::{Progress, Role};

use crate::error::RunError;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::Control;
use crate::plugin::SourceHandle;
use crate::spec::{FlowRef, Mode, Spec};
use crate::stats::{Counters, Status, Summary};

pub use metrics::{exported_names as exported_metric_names, serve as serve_metrics};
pub use state::path as stream_file;

/// Whether any flow of the job streams.
pub fn is_streaming(spec: &Spec) -> bool {
    spec.job.flows.iter().any(|f| f.mode == Mode::Stream)
}

/// Runs a job with streaming flows: snapshot (unless done or skipped), then follow until stopped.
/// With the position in the target, it first waits as the standby while another process holds
/// the job's lease.
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
    let store = store::Store::choose(job, &streams)?;
    let source = SourceHandle::open(
        job.plugins[first.index].source.clone(),
        &first.flow.source.options,
    )
    .map_err(|e| RunError::Start(format!("cannot start source: {e}")))?;
    let (head, cascades) = start_source(job, &streams, &source)?;
    // No position until the store says where the stream is (a standby only reports the active
    // one's, as recorded).
    let progress = Arc::new(Mutex::new(Progress::new(Position::default())));
    if let Some(addr) = opts.metrics_addr {
        serve_metrics(addr, progress.clone())
            .map_err(|e| RunError::Start(format!("cannot serve metrics on {addr}: {e}")))?;
    }
    let started = match &store {
        store::Store::Local(path) => {
            progress.lock().expect("progress").role = Role::Active;
            follow::Started {
                state: start_state(spec, path, head, opts.fresh)?,
                writers: Vec::new(),
            }
        }
        store::Store::Target(lease) => {
            lease.report_to(progress.clone());
            match start_in_target(job, lease, head, &streams, &control, &progress, opts.fresh)? {
                Some(s) => s,
                None => {
                    return Err(interrupted(
                        spec,
                        Vec::new(),
                        start,
                        "while waiting as the standby",
                    ))
                }
            }
        }
    };
    progress.lock().expect("progress").acked = started.state.position.clone();
    let snapshot_done = AtomicBool::new(started.state.snapshot_done);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let store::Store::Target(lease) = &store {
            let (p, s, c, d) = (&progress, &snapshot_done, &*control, &done);
            scope.spawn(move || store::keep(lease, p, s, c, d));
        }
        let ran = snapshot_and_follow(
            job,
            &streams,
            source,
            cascades,
            started,
            &store,
            &progress,
            &snapshot_done,
            control.clone(),
            opts,
            start,
        );
        done.store(true, Ordering::SeqCst);
        if let store::Store::Target(lease) = &store {
            let resume = progress.lock().expect("progress").acked.clone();
            let error = match &ran {
                Err(RunError::Failed(s)) if s.status == Status::Failed => s.error.clone(),
                Err(e @ (RunError::Start(_) | RunError::Config(_))) => Some(e.to_string()),
                _ => None,
            };
            lease.release(&resume, error);
            if let Some(why) = lease.fenced() {
                return Err(fenced(ran, why, &spec.job.name, start));
            }
        }
        ran
    })
}

/// Asks the source where the stream of the flows' tables starts (it makes what it needs, e.g. a
/// PostgreSQL slot) and reads the foreign keys the host must follow itself.
fn start_source(
    job: &Job,
    streams: &[FlowRef<'_>],
    source: &Arc<SourceHandle>,
) -> Result<(Position, cascade::Cascades), RunError> {
    let mut tables: Vec<String> = streams.iter().map(cascade::table_of).collect();
    tables.sort();
    tables.dedup();
    let head = source
        .stream_start(&tables)
        .map_err(|e| RunError::Start(format!("cannot stream from the source: {e}")))?;
    if let Some(snapshot) = &head.snapshot {
        // The source's own readers take it (PostgreSQL: every split of this database imports the
        // slot's exported snapshot until the stream starts), so the copy ends exactly at `head`.
        tracing::info!(snapshot = %snapshot, position = %head.position, "the snapshot is read at the stream's start");
    }
    // Before anything is written (a record in the target, a copy): a foreign key the stream
    // could not follow refuses the start.
    let cascades = cascade::Cascades::start(job, streams, source.clone(), head.logs_cascades)
        .map_err(|e| RunError::Start(format!("cannot stream: {e}")))?;
    Ok((head.position, cascades))
}

/// The snapshot (unless done), then the change stream until stopped.
#[allow(clippy::too_many_arguments)]
fn snapshot_and_follow(
    job: &Job,
    streams: &[FlowRef<'_>],
    source: Arc<SourceHandle>,
    cascades: cascade::Cascades,
    mut started: follow::Started,
    store: &store::Store,
    progress: &Arc<Mutex<Progress>>,
    snapshot_done: &AtomicBool,
    control: Arc<Control>,
    opts: &RunOptions,
    start: SystemTime,
) -> Result<Summary, RunError> {
    let spec = &job.spec;
    let mut snapshots = Vec::new();
    if !started.state.snapshot_done {
        for flow in spec.flows_in_order() {
            if flow.flow.mode == Mode::Stream && !flow.flow.snapshot {
                continue;
            }
            if control.stopping() {
                break;
            }
            snapshots.push(crate::batch::run(job, flow, control.clone(), opts)?);
        }
        if control.stopping() {
            return Err(interrupted(spec, snapshots, start, "during the snapshot"));
        }
        crate::progress::local::forget(spec);
        started.state.snapshot_done = true;
        snapshot_done.store(true, Ordering::SeqCst);
        match store {
            store::Store::Local(path) => state::save(path, &started.state),
            store::Store::Target(lease) => lease.snapshot_done(&started.state.position, &control),
        }
        .map_err(RunError::Start)?;
        tracing::info!(position = %started.state.position, "snapshot done; following the change log");
    }
    let counters = Arc::new(Counters::new(1));
    let (status, error, stream_json) = follow::follow(
        job,
        streams,
        source,
        cascades,
        started,
        store,
        progress.clone(),
        control,
        &counters,
        opts,
    );
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

/// Where a stream with these records resumes: the furthest of the job's position and its
/// writers' (each a position every change before which every writer had written).
fn resume_of(
    record: &etlhost_plugin_sdk::StreamRecord,
    head: etlhost_plugin_sdk::Position,
) -> etlhost_plugin_sdk::Position {
    let recorded = record.resume.clone().unwrap_or(head);
    record
        .writers
        .iter()
        .filter_map(|w| w.resume.clone())
        .chain([recorded])
        .max_by(|a, b| a.log_cmp(b))
        .expect("one position at least")
}

/// A stream that resumes inside a transaction applied in parts needs the parts it was numbered
/// by: another `stream.max_transaction_changes` would number that transaction's changes
/// otherwise, and what the writers' records say is written would no longer match.
fn same_parts(
    before: &etlhost_plugin_sdk::StreamRecord,
    lease: &store::Lease,
    head: &etlhost_plugin_sdk::Position,
) -> Result<(), RunError> {
    let at = resume_of(before, head.clone());
    match before.parts {
        Some(was) if at.skip > 0 && was != lease.parts => Err(RunError::Start(format!(
            "stream.max_transaction_changes is {}, but the stream resumes inside a transaction applied in parts of {was} (at {at}): set it to {was} until the stream has passed that transaction, or run with --fresh",
            lease.parts
        ))),
        _ => Ok(()),
    }
}

/// A run that another process took over ends failed, saying so, whatever it was doing then.
fn fenced(ran: Result<Summary, RunError>, why: String, job: &str, start: SystemTime) -> RunError {
    let error = Some(format!("fenced: {why}"));
    let mut s = match ran {
        Ok(s) => s,
        Err(RunError::Failed(s)) => *s,
        // Stopped before it had a summary (at the end of its snapshot, say).
        Err(_) => Summary::total(job, Vec::new(), Status::Failed, start, None),
    };
    s.status = Status::Failed;
    s.error = error;
    RunError::Failed(Box::new(s))
}

fn interrupted(spec: &Spec, snapshots: Vec<Summary>, start: SystemTime, when: &str) -> RunError {
    let s = Summary::total(
        &spec.job.name,
        snapshots,
        Status::Interrupted,
        start,
        Some(format!("interrupted {when}")),
    );
    RunError::Failed(Box::new(s))
}

/// With the position in the target: `--fresh` forgets it, then this process takes the job's lease
/// (waiting as the standby while another holds it) and starts from the records: the job's
/// position, the writers' (which may be further on), and whether the snapshot is done.
#[allow(clippy::too_many_arguments)]
fn start_in_target(
    job: &Job,
    lease: &store::Lease,
    head: etlhost_plugin_sdk::Position,
    streams: &[FlowRef<'_>],
    control: &Control,
    progress: &Mutex<Progress>,
    fresh: bool,
) -> Result<Option<follow::Started>, RunError> {
    let spec = &job.spec;
    // A graph that cannot be reached yet is waited for (not ready meanwhile), as a standby would.
    let Some(before) = lease.read_waiting(control, progress)? else {
        return Ok(None);
    };
    if !fresh {
        same_parts(&before, lease, &head)?;
    }
    if fresh {
        lease.forget().map_err(|e| {
            RunError::Start(format!(
                "--fresh: cannot forget the stream's position in the target: {e}"
            ))
        })?;
        tracing::info!("--fresh: discarded the stream's position and lease in the target");
    }
    if fresh || before.lease.is_none() {
        // A new stream: keys held by an earlier one belong to a position this one never passes.
        dead_letter::forget(spec).map_err(RunError::Start)?;
    }
    let slots = streams
        .iter()
        .flat_map(|f| {
            let n = f.flow.sink.parallelism.max(1);
            (0..n).map(move |i| follow::slot_of(&f.flow.name, n, i))
        })
        .collect();
    let Some(record) = lease.take_over(&head, slots, control, progress)? else {
        return Ok(None);
    };
    let position = resume_of(&record, head);
    let how = match before.lease {
        Some(_) if !fresh => "resuming the stream from its records in the target",
        _ => "starting the stream, its records in the target,",
    };
    tracing::info!(
        snapshot_done = record.snapshot_done,
        epoch = lease.epoch(),
        "{how} at {position}"
    );
    Ok(Some(follow::Started {
        state: state::StreamState {
            position,
            snapshot_done: record.snapshot_done,
        },
        writers: record.writers,
    }))
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
