//! `etlhost status SPEC [--json] [--run ID]`: where each flow of a job stands, read from where its
//! progress is kept, so that an operator or a probe can see it from any machine, while the job runs
//! or after it stopped. Nothing is written.
//!
//! - A batch flow with progress in the target: its plan (splits, shards, when), how many splits are
//!   done, in progress and not started, the rows written, and how its run failed, if it did.
//! - The streaming flows with their position in the target: the lease (who is active, under which
//!   epoch, until when), where the stream resumes, whether its snapshot is done, the last error,
//!   each writer's record, and the lag: the source's log head against the resume position.
//! - A flow that keeps its progress in a local file: that file, and what it says if it exists.
//!
//! Exit codes: 0 read; 2 a bad spec; 3 a target (or local file) that cannot be read, named on
//! stderr with the sink's error. A source whose head cannot be read only leaves the lag unknown:
//! the status is the target's, and the lag an extra.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use etlhost_plugin_sdk::stream_state::{ChangeId, StreamRecord, StreamStateRequest};
use etlhost_plugin_sdk::{Failure, Position, State, StateRequest};
use serde::{Deserialize, Serialize};

use super::flags::StatusArgs;
use super::EXIT_RUN;
use crate::checkpoint;
use crate::job::Job;
use crate::options::RunOptions;
use crate::plugin::SourceHandle;
use crate::progress::{self, run_label};
use crate::shard::Shard;
use crate::spec::{FlowRef, Mode};

/// The whole answer; `--json` prints it as it is (docs/running.md lists its keys).
#[derive(Serialize)]
struct Report {
    job: String,
    run: String,
    flows: Vec<FlowStatus>,
    stream: Option<StreamStatus>,
}

/// One flow. A streaming flow's state is the job's stream ([`Report::stream`]): its entry here
/// says only where that is kept.
#[derive(Serialize, Default)]
struct FlowStatus {
    flow: String,
    /// `batch` or `stream`.
    mode: &'static str,
    /// `target` or `local`.
    store: &'static str,
    /// The local file the flow's progress is in (`store: local`).
    file: Option<PathBuf>,
    /// Whether any progress is recorded: a plan in the target, or the local file.
    recorded: bool,
    plan: Option<PlanStatus>,
    splits: Option<SplitCounts>,
    /// Rows written (or kept as failed), as the target records them; local files do not count them.
    rows: Option<u64>,
    failure: Option<Failure>,
    /// Why the progress could not be read (exit code 3).
    read_error: Option<String>,
}

#[derive(Serialize)]
struct PlanStatus {
    splits: usize,
    shards: Option<u32>,
    planned_at: Option<String>,
    /// When a local checkpoint was last written.
    updated: Option<String>,
}

#[derive(Serialize)]
struct SplitCounts {
    total: usize,
    done: usize,
    in_progress: usize,
    not_started: usize,
}

/// The job's stream: every streaming flow follows one change log.
#[derive(Serialize, Default)]
struct StreamStatus {
    flows: Vec<String>,
    store: &'static str,
    /// The local stream file (`store: local`).
    file: Option<PathBuf>,
    recorded: bool,
    lease: Option<LeaseStatus>,
    resume: Option<Position>,
    snapshot_done: bool,
    /// The last run's error, as the target keeps it until a run writes again.
    last_error: Option<String>,
    updated_ms: Option<u64>,
    writers: Vec<WriterStatus>,
    lag: Option<Lag>,
    /// Why the source's head could not be read (the lag is then unknown).
    source_error: Option<String>,
    read_error: Option<String>,
}

#[derive(Serialize)]
struct LeaseStatus {
    holder: String,
    epoch: u64,
    expires_ms: u64,
    /// Seconds until the lease expires (by this machine's clock); negative once expired.
    expires_in_s: i64,
    /// `active` (a live lease: its holder writes), `expired`, or `released` (its holder stopped).
    state: &'static str,
}

#[derive(Serialize)]
struct WriterStatus {
    flow: String,
    writers: u32,
    slot: u32,
    epoch: u64,
    seq: u64,
    last: Option<ChangeId>,
    resume: Option<Position>,
    updated_ms: u64,
    updated_s_ago: Option<u64>,
}

#[derive(Serialize)]
struct Lag {
    /// Where the source's log is now.
    head: Position,
    /// Bytes of the log between the resume position and the head, when both are in one file;
    /// `null` when the head is a file or more further on.
    bytes_behind: Option<u64>,
}

/// The stream's local file, as `stream::state` writes it.
#[derive(Deserialize)]
struct StreamFile {
    position: Position,
    snapshot_done: bool,
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let job = match super::load_job(&args.spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let run = args
        .run
        .clone()
        .or_else(|| std::env::var("ETLHOST_RUN").ok())
        .unwrap_or_default();
    let report = read(&job, &run, now_ms());
    if args.json {
        let text = serde_json::to_string_pretty(&report).expect("the report serialises");
        println!("{text}");
    } else {
        print!("{}", text(&report));
    }
    let mut failed = false;
    for f in &report.flows {
        if let Some(e) = &f.read_error {
            eprintln!("error: flow `{}`: {e}", f.flow);
            failed = true;
        }
    }
    if let Some(s) = &report.stream {
        if let Some(e) = &s.read_error {
            eprintln!("error: flow `{}`: {e}", s.flows[0]);
            failed = true;
        }
    }
    match failed {
        true => ExitCode::from(EXIT_RUN),
        false => ExitCode::SUCCESS,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads every flow's progress (a streaming flow's is its snapshot's), and the stream's once.
fn read(job: &Job, run: &str, now: u64) -> Report {
    let spec = &job.spec;
    // As the run decides where each flow keeps its progress (`progress::Store::choose`).
    let opts = RunOptions {
        fresh: false,
        accept_failures: false,
        full: false,
        report: crate::report::Mode::Quiet,
        metrics_addr: None,
        shard: Shard::ALL,
        run: run.to_string(),
    };
    // The state of one target holds every flow of the run: read once, not once per flow.
    let mut states: Vec<(String, Result<State, String>)> = Vec::new();
    let flows = spec
        .flows_in_order()
        .map(|flow| flow_status(job, flow, &opts, &mut states))
        .collect();
    let streams: Vec<FlowRef<'_>> = spec
        .flows_in_order()
        .filter(|f| f.flow.mode == Mode::Stream)
        .collect();
    let stream = (!streams.is_empty()).then(|| stream_status(job, &streams, now));
    Report {
        job: spec.job.name.clone(),
        run: run.to_string(),
        flows,
        stream,
    }
}

fn flow_status(
    job: &Job,
    flow: FlowRef<'_>,
    opts: &RunOptions,
    states: &mut Vec<(String, Result<State, String>)>,
) -> FlowStatus {
    let mut status = FlowStatus {
        flow: flow.flow.name.clone(),
        mode: match flow.flow.mode {
            Mode::Batch => "batch",
            Mode::Stream => "stream",
        },
        ..FlowStatus::default()
    };
    let in_target = match progress::Store::choose(job, flow, opts) {
        Ok(store) => store.target().is_some(),
        Err(e) => {
            status.read_error = Some(e.to_string());
            return status;
        }
    };
    if !in_target {
        status.store = "local";
        local_checkpoint(flow, &mut status);
        return status;
    }
    status.store = "target";
    let sink = &job.plugins[flow.index].sink;
    let key = format!(
        "{}\u{0}{}",
        sink.name,
        serde_json::Value::Object(flow.flow.sink.options.clone())
    );
    let state = match states.iter().find(|(k, _)| *k == key) {
        Some((_, s)) => s.clone(),
        None => {
            let request = StateRequest::Read {
                job: flow.spec.job.name.clone(),
                run: opts.run.clone(),
            };
            let s = sink
                .state(&flow.flow.sink.options, &request)
                .map_err(|e| format!("cannot read its progress in the target: {e}"));
            states.push((key, s.clone()));
            s
        }
    };
    match state {
        Ok(state) => target_progress(flow, &state, &mut status),
        Err(e) => status.read_error = Some(e),
    }
    status
}

/// The flow's plan and progress records, counted.
fn target_progress(flow: FlowRef<'_>, state: &State, status: &mut FlowStatus) {
    let name = &flow.flow.name;
    let Some(plan) = state.plans.iter().find(|p| &p.flow == name) else {
        return;
    };
    let progress: Vec<_> = state.progress.iter().filter(|p| &p.flow == name).collect();
    let (mut done, mut going) = (0, 0);
    for split in &plan.splits {
        match progress.iter().find(|p| p.split == split.id) {
            Some(p) if p.done => done += 1,
            // As a resumed run counts them: a split with rows recorded, not done.
            Some(p) if p.rows > 0 => going += 1,
            _ => {}
        }
    }
    let total = plan.splits.len();
    status.recorded = true;
    status.plan = Some(PlanStatus {
        splits: total,
        shards: Some(plan.shards),
        planned_at: Some(plan.planned_at.clone()),
        updated: None,
    });
    status.splits = Some(SplitCounts {
        total,
        done,
        in_progress: going,
        not_started: total - done - going,
    });
    status.rows = Some(progress.iter().map(|p| p.rows).sum());
    status.failure = plan.failure.clone();
}

/// The flow's local checkpoint file, and what it says.
fn local_checkpoint(flow: FlowRef<'_>, status: &mut FlowStatus) {
    let path = checkpoint::flow_path(flow);
    match checkpoint::load(&path) {
        Ok(Some(cp)) => {
            let total = cp.splits.len();
            let done = cp.done.len();
            let going = cp
                .watermarks
                .keys()
                .filter(|s| !cp.done.contains(s))
                .count();
            status.recorded = true;
            status.plan = Some(PlanStatus {
                splits: total,
                shards: None,
                planned_at: None,
                updated: Some(cp.updated.clone()),
            });
            status.splits = Some(SplitCounts {
                total,
                done,
                in_progress: going,
                not_started: total.saturating_sub(done + going),
            });
            status.failure = cp.failed;
        }
        Ok(None) => {}
        Err(e) => status.read_error = Some(e),
    }
    status.file = Some(path);
}

/// `<checkpoint.dir>/<job>.stream.json`, where a stream without the target's records keeps its
/// position (the path `stream::state` writes).
fn stream_status(job: &Job, streams: &[FlowRef<'_>], now: u64) -> StreamStatus {
    let mut status = StreamStatus {
        flows: streams.iter().map(|f| f.flow.name.clone()).collect(),
        ..StreamStatus::default()
    };
    if crate::job::streams_in_target(job) {
        status.store = "target";
        let first = streams[0];
        let request = StreamStateRequest::Read {
            job: job.spec.job.name.clone(),
        };
        match job.plugins[first.index]
            .sink
            .stream_state(&first.flow.sink.options, &request)
        {
            Ok(record) => stream_record(record, now, &mut status),
            Err(e) => {
                status.read_error = Some(format!(
                    "cannot read the stream's position and lease in the target: {e}"
                ));
                return status;
            }
        }
    } else {
        status.store = "local";
        let path = crate::stream::stream_file(&job.spec);
        match read_stream_file(&path) {
            Ok(Some(f)) => {
                status.recorded = true;
                status.resume = Some(f.position);
                status.snapshot_done = f.snapshot_done;
            }
            Ok(None) => {}
            Err(e) => status.read_error = Some(e),
        }
        status.file = Some(path);
    }
    if let Some(resume) = status.resume.clone() {
        match head(job, streams[0]) {
            Ok(head) => status.lag = Some(lag(&resume, head)),
            Err(e) => status.source_error = Some(e),
        }
    }
    status
}

fn read_stream_file(path: &Path) -> Result<Option<StreamFile>, String> {
    crate::state_file::load_json(
        path,
        "stream checkpoint",
        "remove it or run with --fresh to start over with a new snapshot",
    )
}

fn stream_record(record: StreamRecord, now: u64, status: &mut StreamStatus) {
    let since = |ms: u64| (ms > 0).then(|| now.saturating_sub(ms) / 1000);
    status.recorded = record.lease.is_some() || record.resume.is_some();
    status.lease = record.lease.map(|l| {
        let state = match l.expires_ms {
            0 => "released",
            e if e > now => "active",
            _ => "expired",
        };
        LeaseStatus {
            expires_in_s: (l.expires_ms as i64 - now as i64).div_euclid(1000),
            holder: l.holder,
            epoch: l.epoch,
            expires_ms: l.expires_ms,
            state,
        }
    });
    status.resume = record.resume;
    status.snapshot_done = record.snapshot_done;
    status.last_error = record.error;
    status.updated_ms = (record.updated_ms > 0).then_some(record.updated_ms);
    status.writers = record
        .writers
        .into_iter()
        .map(|w| WriterStatus {
            updated_s_ago: since(w.updated_ms),
            flow: w.slot.flow,
            writers: w.slot.writers,
            slot: w.slot.slot,
            epoch: w.epoch,
            seq: w.seq,
            last: w.last,
            resume: w.resume,
            updated_ms: w.updated_ms,
        })
        .collect();
    // The target's order is its own: by flow, layout and slot reads the same every time.
    status
        .writers
        .sort_by(|a, b| (&a.flow, a.writers, a.slot).cmp(&(&b.flow, b.writers, b.slot)));
}

/// Where the source's change log is now, through the first streaming flow's source.
fn head(job: &Job, first: FlowRef<'_>) -> Result<Position, String> {
    let source = SourceHandle::open(
        job.plugins[first.index].source.clone(),
        &first.flow.source.options,
    )
    .map_err(|e| format!("cannot open the source: {e}"))?;
    source
        .stream_head()
        .map(|h| h.position)
        .map_err(|e| format!("cannot read the source's log head: {e}"))
}

/// Bytes behind when the head is in the resume position's file (offsets of two files do not
/// subtract: the files' sizes in between are not known here).
fn lag(resume: &Position, head: Position) -> Lag {
    let bytes_behind = (head.file == resume.file).then(|| head.pos.saturating_sub(resume.pos));
    Lag { head, bytes_behind }
}

/// The report as text, a block per flow and one for the stream.
fn text(r: &Report) -> String {
    let mut out = format!("job `{}`, {}\n", r.job, run_label(&r.run));
    for f in r.flows.iter().filter(|f| f.mode == "batch") {
        out.push('\n');
        batch_text(f, &mut out);
    }
    if let Some(s) = &r.stream {
        out.push('\n');
        stream_text(s, &r.flows, &mut out);
    }
    out
}

fn batch_text(f: &FlowStatus, out: &mut String) {
    match &f.file {
        Some(p) => out.push_str(&format!(
            "flow `{}`: batch, progress in the local checkpoint {}\n",
            f.flow,
            p.display()
        )),
        None => out.push_str(&format!(
            "flow `{}`: batch, progress in the target\n",
            f.flow
        )),
    }
    if let Some(e) = &f.read_error {
        line(out, "error", e.clone());
        return;
    }
    if !f.recorded {
        let why = match f.store {
            "local" => "no checkpoint: the flow has not run here, or its job finished (which removes it)",
            _ => "no plan recorded: the flow has not started in this run, or it finished in one process (which removes its records)",
        };
        out.push_str(&format!("  {why}\n"));
        return;
    }
    if let Some(p) = &f.plan {
        let mut text = format!("{} splits", p.splits);
        if let Some(n) = p.shards {
            text.push_str(&format!(" for {n} shard(s)"));
        }
        if let Some(at) = p.planned_at.as_ref().filter(|a| !a.is_empty()) {
            text.push_str(&format!(", planned at {at}"));
        }
        if let Some(at) = &p.updated {
            text.push_str(&format!(", checkpoint written at {at}"));
        }
        line(out, "plan", text);
    }
    if let Some(s) = &f.splits {
        line(
            out,
            "splits",
            format!(
                "{} done, {} in progress, {} not started, of {}",
                s.done, s.in_progress, s.not_started, s.total
            ),
        );
    }
    if let Some(rows) = f.rows {
        line(out, "rows", format!("{rows} written"));
    }
    match &f.failure {
        None => line(out, "failure", "none".into()),
        Some(x) => {
            line(out, "failure", format!("at {}: {}", x.at, x.error));
            if x.failed_rows > 0 {
                line(
                    out,
                    "failed rows",
                    format!("{} in {}", x.failed_rows, x.dead_letter),
                );
            }
        }
    }
}

fn stream_text(s: &StreamStatus, flows: &[FlowStatus], out: &mut String) {
    let names: Vec<String> = s.flows.iter().map(|f| format!("`{f}`")).collect();
    let kept = match &s.file {
        Some(p) => format!("position in the local file {} (no lease)", p.display()),
        None => "position and lease in the target".to_string(),
    };
    out.push_str(&format!("stream of flow(s) {}: {kept}\n", names.join(", ")));
    if let Some(e) = &s.read_error {
        line(out, "error", e.clone());
        return;
    }
    if !s.recorded {
        out.push_str("  nothing recorded: the stream has not started\n");
        return;
    }
    if let Some(l) = &s.lease {
        lease_text(l, out);
    }
    let resume = s.resume.as_ref().map_or("none".into(), |p| p.to_string());
    line(out, "resume", resume);
    let snapshot = if s.snapshot_done { "done" } else { "not done" };
    line(out, "snapshot", snapshot.into());
    if !s.snapshot_done {
        for f in flows.iter().filter(|f| f.mode == "stream") {
            snapshot_text(f, out);
        }
    }
    if s.file.is_none() {
        let error = s.last_error.clone().unwrap_or("none".into());
        line(out, "last error", error);
    }
    lag_text(s, out);
    for w in &s.writers {
        writer_text(w, out);
    }
}

fn lease_text(l: &LeaseStatus, out: &mut String) {
    let text = match l.state {
        "active" => format!(
            "active in {}, epoch {}, expires in {} s",
            l.holder, l.epoch, l.expires_in_s
        ),
        "released" => format!(
            "released by {} (epoch {}): no process is active",
            l.holder, l.epoch
        ),
        _ => format!(
            "expired {} s ago (held by {}, epoch {}): no process is active",
            -l.expires_in_s, l.holder, l.epoch
        ),
    };
    line(out, "lease", text);
}

/// A streaming flow's snapshot in progress: its splits and rows, as a batch flow's.
fn snapshot_text(f: &FlowStatus, out: &mut String) {
    let text = match (&f.read_error, &f.splits) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => {
            let mut t = format!(
                "{} of {} splits done, {} in progress",
                s.done, s.total, s.in_progress
            );
            if let Some(rows) = f.rows {
                t.push_str(&format!(", {rows} rows written"));
            }
            t
        }
        (None, None) => return,
    };
    out.push_str(&format!("    snapshot of `{}`: {text}\n", f.flow));
}

fn lag_text(s: &StreamStatus, out: &mut String) {
    let text = match (&s.lag, &s.source_error) {
        (
            Some(Lag {
                head,
                bytes_behind: Some(b),
            }),
            _,
        ) => {
            format!("{b} bytes behind the source's head {head}")
        }
        (
            Some(Lag {
                head,
                bytes_behind: None,
            }),
            _,
        ) => {
            format!("a binlog file or more behind the source's head {head}")
        }
        (None, Some(e)) => format!("unknown: {e}"),
        (None, None) => return,
    };
    line(out, "lag", text);
}

fn writer_text(w: &WriterStatus, out: &mut String) {
    let last = match &w.last {
        Some(id) => format!(
            "last change #{} of the transaction at {}",
            id.index, id.commit
        ),
        None => "no change written yet".to_string(),
    };
    let updated = match w.updated_s_ago {
        Some(s) => format!("updated {s} s ago"),
        None => "never updated".to_string(),
    };
    out.push_str(&format!(
        "  writer `{}` {} of {}: {last}, epoch {}, {updated}\n",
        w.flow, w.slot, w.writers, w.epoch
    ));
}

/// One field of a block: `  name:` padded, so that the values line up.
fn line(out: &mut String, name: &str, text: String) {
    out.push_str(&format!("  {:<12} {text}\n", format!("{name}:")));
}
