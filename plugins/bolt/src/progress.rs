//! The bolt sink's progress capability ([`etlhost_plugin_sdk::SinkProgress`]): the host's plan
//! and per-split progress kept in the graph, as nodes of two labels of their own:
//!
//! - `(:EtlhostPlan {job, flow, run, spec_hash, shards, splits, planned_at, failure})`, `splits` the
//!   plan's splits and `failure` (set when a run failed) as JSON text;
//! - `(:EtlhostProgress {job, flow, run, split, after, rows, done, shard, updated})`, `after` the
//!   key as JSON text of the SDK's value (`{"Int":41}`), so any key type round-trips, and
//!   `updated` milliseconds since the Unix epoch.
//!
//! A batch's `UNWIND` and its split's `MERGE (:EtlhostProgress ...)` run in one explicit
//! transaction: the progress moves exactly when the rows land.

use etlhost_plugin_sdk::{
    Batch, Error, OpenError, Plan, Progress, SinkProgress, State, StateRequest, Value,
};

use crate::encoding::Encoding;
use crate::options::BoltOptions;
use crate::params;
use crate::sink::{needs_new_session, BoltSink};
use etlhost_bolt_client::packstream::{self as ps, Ps};
use etlhost_bolt_client::{BoltError, Connection, WriteParams};

const WRITE_PROGRESS: &str =
    "MERGE (p:EtlhostProgress {job: $job, flow: $flow, run: $run, split: $split}) \
     SET p.after = $after, p.rows = $rows, p.done = $done, p.shard = $shard, p.updated = $updated";

/// A retry's progress: only when the record still stands where the batch began.
const CHECK_AND_WRITE_PROGRESS: &str =
    "MATCH (p:EtlhostProgress {job: $job, flow: $flow, run: $run, split: $split}) \
     WHERE p.rows = $from \
     SET p.after = $after, p.rows = $rows, p.done = $done, p.shard = $shard, p.updated = $updated \
     RETURN p.rows";

const READ_PLANS: &str = "MATCH (p:EtlhostPlan {job: $job, run: $run}) \
     RETURN p.flow, p.spec_hash, p.shards, p.splits, p.planned_at, p.failure";

const READ_PROGRESS: &str = "MATCH (p:EtlhostProgress {job: $job, run: $run}) \
     RETURN p.flow, p.split, p.after, p.rows, p.done, p.shard";

const CREATE_PLAN: &str = "CREATE (:EtlhostPlan {job: $job, flow: $flow, run: $run, \
     spec_hash: $spec_hash, shards: $shards, splits: $splits, planned_at: $planned_at})";

const CREATE_PROGRESS: &str = "UNWIND $splits AS s \
     MERGE (p:EtlhostProgress {job: $job, flow: $flow, run: $run, split: s}) \
     SET p.after = null, p.rows = 0, p.done = false, p.shard = 0";

const FAIL_PLAN: &str =
    "MATCH (p:EtlhostPlan {job: $job, flow: $flow, run: $run}) SET p.failure = $failure";

const FORGET_PLANS: &str = "MATCH (p:EtlhostPlan {job: $job, flow: $flow, run: $run}) DELETE p";
const FORGET_PROGRESS: &str =
    "MATCH (p:EtlhostProgress {job: $job, flow: $flow, run: $run}) DELETE p";

/// Milliseconds since the Unix epoch, for `updated`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes a parameter map of text, integer, boolean and null entries.
pub(crate) fn map(m: &mut Vec<u8>, entries: &[(&str, Param<'_>)]) {
    ps::map_header(m, entries.len());
    for (k, v) in entries {
        ps::string(m, k);
        match v {
            Param::Text(s) => ps::string(m, s),
            Param::Int(i) => ps::int(m, *i),
            Param::Bool(b) => ps::bool(m, *b),
            Param::Null => ps::null(m),
            Param::Ints(l) => {
                ps::list_header(m, l.len());
                for i in *l {
                    ps::int(m, *i);
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Null,
    Ints(&'a [i64]),
}

fn key_json(after: &Option<Value>) -> Option<String> {
    after
        .as_ref()
        .map(|v| serde_json::to_string(v).expect("values serialise"))
}

impl BoltSink {
    fn try_with_progress(
        &mut self,
        batch: &Batch,
        progress: &Progress,
    ) -> Result<bool, (Error, Option<BoltError>)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|e| (e, None))?,
        };
        let o = &self.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let after = key_json(&progress.after);
        let updated = now_ms();
        let write_rows = |m: &mut Vec<u8>| params::encode(m, batch, o, &enc);
        let write_progress = |m: &mut Vec<u8>| {
            map(
                m,
                &[
                    ("job", Param::Text(&progress.job)),
                    ("flow", Param::Text(&progress.flow)),
                    ("run", Param::Text(&progress.run)),
                    ("split", Param::Int(progress.split.into())),
                    ("after", after.as_deref().map_or(Param::Null, Param::Text)),
                    ("rows", Param::Int(progress.rows as i64)),
                    ("from", Param::Int(progress.from as i64)),
                    ("done", Param::Bool(progress.done)),
                    ("shard", Param::Int(progress.shard.into())),
                    ("updated", Param::Int(updated)),
                ],
            )
        };
        let mut statements: Vec<(&str, WriteParams<'_>)> = Vec::with_capacity(2);
        if !batch.is_empty() {
            statements.push((&o.query, &write_rows));
        }
        let db = o.database.as_deref();
        let result = if progress.check {
            conn.run_all_if(db, (CHECK_AND_WRITE_PROGRESS, &write_progress), &statements)
        } else {
            statements.push((WRITE_PROGRESS, &write_progress));
            conn.run_all_in_transaction(db, &statements).map(|()| true)
        };
        drop(statements);
        let mut written = true;
        let result = result.map(|w| written = w);
        self.settle(conn, result).map(|()| written)
    }
}

impl SinkProgress for BoltSink {
    fn write_with_progress(&mut self, batch: &Batch, progress: &Progress) -> Result<bool, Error> {
        params::fits(&self.options, batch)?;
        match self.try_with_progress(batch, progress) {
            Ok(written) => Ok(written),
            Err((e, Some(cause))) if needs_new_session(&cause) => {
                tracing::warn!("{e}; logging in again on a new connection and retrying once");
                self.try_with_progress(batch, progress).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn state(mut options: BoltOptions, request: &StateRequest) -> Result<State, OpenError> {
        // The user's write query is not run here: no EXPLAIN of it, no setup statements.
        options.check_query = false;
        let mut sink = BoltSink::start(options, false)?;
        let mut conn = sink.conn.take().expect("start connects");
        let db = sink.options.database.clone();
        let db = db.as_deref();
        let fail = |sink: &BoltSink, what: &str, e| OpenError::Other(sink.error(what, e));
        match request {
            StateRequest::Read { job, run } => {
                read(&mut conn, db, job, run).map_err(|e| fail(&sink, "reading progress failed", e))
            }
            StateRequest::Plan { plan } => {
                let state = read(&mut conn, db, &plan.job, &plan.run)
                    .map_err(|e| fail(&sink, "reading progress failed", e))?;
                if let Some(stored) = state.plans.iter().find(|p| p.flow == plan.flow) {
                    return Ok(State {
                        plans: vec![stored.clone()],
                        progress: Vec::new(),
                    });
                }
                create_plan(&mut conn, db, plan)
                    .map_err(|e| fail(&sink, "storing the plan failed", e))?;
                Ok(State {
                    plans: vec![plan.clone()],
                    progress: Vec::new(),
                })
            }
            StateRequest::Fail {
                job,
                flow,
                run,
                failure,
            } => {
                let failure = serde_json::to_string(failure).expect("failures serialise");
                let p = |m: &mut Vec<u8>| {
                    map(
                        m,
                        &[
                            ("job", Param::Text(job)),
                            ("flow", Param::Text(flow)),
                            ("run", Param::Text(run)),
                            ("failure", Param::Text(&failure)),
                        ],
                    )
                };
                conn.run_all_in_transaction(db, &[(FAIL_PLAN, &p)])
                    .map_err(|e| fail(&sink, "recording the failure failed", e))?;
                Ok(State::default())
            }
            StateRequest::Forget { job, flow, run } => {
                let p = |m: &mut Vec<u8>| {
                    map(
                        m,
                        &[
                            ("job", Param::Text(job)),
                            ("flow", Param::Text(flow)),
                            ("run", Param::Text(run)),
                        ],
                    )
                };
                conn.run_all_in_transaction(db, &[(FORGET_PLANS, &p), (FORGET_PROGRESS, &p)])
                    .map_err(|e| fail(&sink, "forgetting progress failed", e))?;
                Ok(State::default())
            }
        }
    }
}

fn create_plan(conn: &mut Connection, db: Option<&str>, plan: &Plan) -> Result<(), BoltError> {
    let splits = serde_json::to_string(&plan.splits).expect("splits serialise");
    let ids: Vec<i64> = plan.splits.iter().map(|s| s.id.into()).collect();
    let plan_params = |m: &mut Vec<u8>| {
        map(
            m,
            &[
                ("job", Param::Text(&plan.job)),
                ("flow", Param::Text(&plan.flow)),
                ("run", Param::Text(&plan.run)),
                ("spec_hash", Param::Text(&plan.spec_hash)),
                ("shards", Param::Int(plan.shards.into())),
                ("splits", Param::Text(&splits)),
                ("planned_at", Param::Text(&plan.planned_at)),
            ],
        )
    };
    let progress_params = |m: &mut Vec<u8>| {
        map(
            m,
            &[
                ("job", Param::Text(&plan.job)),
                ("flow", Param::Text(&plan.flow)),
                ("run", Param::Text(&plan.run)),
                ("splits", Param::Ints(&ids)),
            ],
        )
    };
    conn.run_all_in_transaction(
        db,
        &[
            (CREATE_PLAN, &plan_params),
            (CREATE_PROGRESS, &progress_params),
        ],
    )
}

fn rows_of(
    conn: &mut Connection,
    db: Option<&str>,
    query: &str,
    job: &str,
    run: &str,
) -> Result<Vec<Vec<Ps>>, BoltError> {
    conn.run_read(db, query, |m| {
        map(m, &[("job", Param::Text(job)), ("run", Param::Text(run))])
    })?;
    Ok(conn.pull(-1)?.0)
}

fn read(conn: &mut Connection, db: Option<&str>, job: &str, run: &str) -> Result<State, BoltError> {
    let text = |p: &Ps| p.as_str().unwrap_or_default().to_string();
    let int = |p: &Ps| match p {
        Ps::Int(i) => *i,
        _ => 0,
    };
    let bad = |what: &str, e: serde_json::Error| {
        BoltError::Protocol(format!("a stored {what} is not etlhost's: {e}"))
    };
    let mut state = State::default();
    for r in rows_of(conn, db, READ_PLANS, job, run)? {
        let [flow, hash, shards, splits, at, failure] = &r[..] else {
            continue;
        };
        let failure = match failure.as_str() {
            Some(j) => Some(serde_json::from_str(j).map_err(|e| bad("failure", e))?),
            None => None,
        };
        state.plans.push(Plan {
            job: job.into(),
            flow: text(flow),
            run: run.into(),
            spec_hash: text(hash),
            shards: int(shards) as u32,
            splits: serde_json::from_str(splits.as_str().unwrap_or("[]"))
                .map_err(|e| bad("plan", e))?,
            planned_at: text(at),
            failure,
        });
    }
    for r in rows_of(conn, db, READ_PROGRESS, job, run)? {
        let [flow, split, after, rows, done, shard] = &r[..] else {
            continue;
        };
        let after = match after.as_str() {
            Some(j) => Some(serde_json::from_str(j).map_err(|e| bad("progress key", e))?),
            None => None,
        };
        state.progress.push(Progress {
            job: job.into(),
            flow: text(flow),
            run: run.into(),
            split: int(split) as u32,
            after,
            rows: int(rows) as u64,
            from: 0,
            check: false,
            done: matches!(done, Ps::Bool(true)),
            shard: int(shard) as u32,
        });
    }
    Ok(state)
}
