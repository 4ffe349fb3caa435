//! The bolt sink's stream capability ([`etlhost_plugin_sdk::SinkStream`]): a streaming job's lease,
//! position and writers' records kept in the graph, as nodes of two labels of their own:
//!
//! - `(:EtlhostStream {job, holder, epoch, expires, resume, snapshot_done, error, updated})`, one
//!   per job (a uniqueness constraint on `job`, so two processes starting at once cannot make two);
//! - `(:EtlhostStreamWriter {job, flow, writers, slot, epoch, seq, last, resume, updated})`, one per
//!   writer of each streaming flow.
//!
//! Positions and change ids are JSON text of the SDK's types; times are ms since the Unix epoch.
//! A write of changes moves its writer's record in its own transaction, only if the record holds
//! this process's epoch and sequence. A takeover writes the new epoch on every writer record in the
//! claim's transaction, so a write of the process it replaces, running at the same moment, either
//! commits before the claim (and the new holder reads it) or fails on the changed record.

use etlhost_plugin_sdk::{
    ChangeBatch, Error, Lease, Marked, OpenError, SinkStream, StreamRecord, StreamStateRequest,
    WriterMark, WriterRecord, WriterSlot,
};

use crate::options::BoltOptions;
use crate::progress::{map, now_ms, Param};
use crate::sink::{needs_new_session, BoltSink};
use etlhost_bolt_client::packstream::{self as ps, Ps};
use etlhost_bolt_client::{BoltError, Connection};

/// A marked write's last statement: the writer's record moves only from where this process left it
/// (its epoch and sequence); otherwise the division by zero fails the statement, and with it the
/// whole transaction, so the changes before it are not committed either. Failing the transaction
/// from inside keeps the write one round trip (the changes, this, COMMIT, pipelined), where
/// checking first would wait for the check's answer before sending the changes.
pub(crate) const MOVE_WRITER: &str =
    "OPTIONAL MATCH (p:EtlhostStreamWriter {job: $job, flow: $flow, writers: $writers, slot: $slot}) \
     WHERE p.epoch = $epoch AND p.seq = $seq \
     SET p.seq = $next, p.last = coalesce($last, p.last), p.resume = $resume, p.updated = $updated \
     WITH count(p) AS moved RETURN 1 / moved";

/// How the server reports [`MOVE_WRITER`]'s refusal: ArcadeDB's `ArithmeticErrorException` and
/// Neo4j's `Neo.ClientError.Statement.ArithmeticError` both say `/ by zero`.
pub(crate) fn writer_refused(e: &BoltError) -> bool {
    matches!(e, BoltError::Server { message, .. } if message.contains("/ by zero"))
}

const UNIQUE_JOB: &str =
    "CREATE CONSTRAINT etlhost_stream_job IF NOT EXISTS FOR (s:EtlhostStream) REQUIRE s.job IS UNIQUE";

const CLAIM: &str = "MERGE (s:EtlhostStream {job: $job}) \
     ON CREATE SET s.epoch = 0, s.expires = 0, s.snapshot_done = false \
     WITH s WHERE s.holder IS NULL OR s.holder = $holder OR s.expires < $now \
     SET s.epoch = s.epoch + 1, s.holder = $holder, s.expires = $now + $lease, s.updated = $now, \
     s.resume = coalesce(s.resume, $start), s.parts = $parts \
     RETURN s.epoch";

const MAKE_WRITERS: &str = "UNWIND $slots AS w \
     MERGE (p:EtlhostStreamWriter {job: $job, flow: w.flow, writers: w.writers, slot: w.slot}) \
     ON CREATE SET p.seq = 0, p.epoch = 0";

/// Every writer record of the job takes the new epoch: a write under the old one now fails.
const FENCE_WRITERS: &str = "MATCH (s:EtlhostStream {job: $job}) \
     MATCH (p:EtlhostStreamWriter {job: $job}) SET p.epoch = s.epoch";

const RENEW: &str = "MATCH (s:EtlhostStream {job: $job}) \
     WHERE s.holder = $holder AND s.epoch = $epoch \
     SET s.expires = $now + $lease, s.resume = $resume, s.snapshot_done = $snapshot_done, \
     s.error = null, s.updated = $now RETURN s.epoch";

const RELEASE: &str = "MATCH (s:EtlhostStream {job: $job}) \
     WHERE s.holder = $holder AND s.epoch = $epoch \
     SET s.expires = 0, s.resume = $resume, s.error = $error, s.updated = $now RETURN s.epoch";

const READ_JOB: &str = "MATCH (s:EtlhostStream {job: $job}) \
     RETURN s.holder, s.epoch, s.expires, s.resume, s.snapshot_done, s.error, s.updated, s.parts";

const READ_WRITERS: &str = "MATCH (p:EtlhostStreamWriter {job: $job}) \
     RETURN p.flow, p.writers, p.slot, p.epoch, p.seq, p.last, p.resume, p.updated";

/// The job's record stays, with its epoch: a process still writing under an earlier epoch must
/// never find it again after the next claim.
const FORGET_JOB: &str = "MATCH (s:EtlhostStream {job: $job}) \
     SET s.holder = null, s.expires = 0, s.resume = null, s.snapshot_done = false, s.error = null";
const FORGET_WRITERS: &str = "MATCH (p:EtlhostStreamWriter {job: $job}) DELETE p";

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("positions serialise")
}

/// The parameters of [`MOVE_WRITER`].
pub(crate) fn mark_params(m: &mut Vec<u8>, mark: &WriterMark) {
    let last = mark.last.as_ref().map(json);
    let resume = json(&mark.resume);
    map(
        m,
        &[
            ("job", Param::Text(&mark.job)),
            ("flow", Param::Text(&mark.slot.flow)),
            ("writers", Param::Int(mark.slot.writers.into())),
            ("slot", Param::Int(mark.slot.slot.into())),
            ("epoch", Param::Int(mark.epoch as i64)),
            ("seq", Param::Int(mark.seq as i64)),
            ("next", Param::Int(mark.seq as i64 + 1)),
            ("last", last.as_deref().map_or(Param::Null, Param::Text)),
            ("resume", Param::Text(&resume)),
            ("updated", Param::Int(now_ms())),
        ],
    )
}

impl SinkStream for BoltSink {
    fn write_marked(&mut self, batch: &ChangeBatch, mark: &WriterMark) -> Result<Marked, Error> {
        let refused = self.write_values(batch, Some(mark))?;
        self.marked(refused, mark)
    }

    fn write_marked_encoded(&mut self, bytes: &[u8], mark: &WriterMark) -> Result<Marked, Error> {
        let refused = self.write_bytes(bytes, Some(mark))?;
        self.marked(refused, mark)
    }

    fn stream_state(
        mut options: BoltOptions,
        request: &StreamStateRequest,
    ) -> Result<StreamRecord, OpenError> {
        options.check_query = false;
        let mut sink = BoltSink::start(options, false)?;
        let mut conn = sink.conn.take().expect("start connects");
        let db = sink.options.database.clone();
        let db = db.as_deref();
        let answer = match answer(&mut conn, db, request) {
            Err(e) if needs_new_session(&e) => {
                conn = sink.connect().map_err(OpenError::Other)?;
                answer(&mut conn, db, request)
            }
            other => other,
        };
        answer.map_err(|e| OpenError::Other(sink.error("the stream's records", e)))
    }
}

impl BoltSink {
    /// After a write of changes that moves the writer's record as `mark` says, in one
    /// transaction: `refused`, the error of a transaction the record refused, if it did.
    fn marked(&mut self, refused: Option<Error>, mark: &WriterMark) -> Result<Marked, Error> {
        let Some(refused) = refused else {
            return Ok(Marked::Written);
        };
        // The record did not stand where this process left it (its own commit whose answer was
        // lost, or another process's), or a statement of the user's failed alike (a division by
        // zero in `query`): the record tells which.
        let mut conn = self.connect()?;
        let db = self.options.database.clone();
        let record = read(&mut conn, db.as_deref(), &mark.job)
            .map_err(|e| self.error("reading the stream's records failed", e))?;
        self.conn = Some(conn);
        let mine = record.writers.iter().find(|w| w.slot == mark.slot);
        match mine {
            Some(w) if w.epoch == mark.epoch && w.seq == mark.seq => Err(refused),
            Some(w)
                if w.epoch == mark.epoch
                    && w.seq == mark.seq + 1
                    && (mark.last.is_none() || w.last == mark.last) =>
            {
                Ok(Marked::AlreadyWritten)
            }
            _ => Ok(Marked::Fenced(fenced(&record, mark))),
        }
    }
}

/// Why a write was refused: who holds the job now.
fn fenced(record: &StreamRecord, mark: &WriterMark) -> String {
    let holder = record.lease.as_ref().map_or("nobody".to_string(), |l| {
        format!("`{}` (epoch {})", l.holder, l.epoch)
    });
    let at = record
        .writers
        .iter()
        .find(|w| w.slot == mark.slot)
        .map_or("no record".to_string(), |w| {
            format!("epoch {}, sequence {}", w.epoch, w.seq)
        });
    format!(
        "the job is held by {holder}; writer {} of flow `{}` is at {at}, this process wrote it at epoch {}, sequence {}",
        mark.slot.slot, mark.slot.flow, mark.epoch, mark.seq
    )
}

fn answer(
    conn: &mut Connection,
    db: Option<&str>,
    request: &StreamStateRequest,
) -> Result<StreamRecord, BoltError> {
    let job = match request {
        StreamStateRequest::Read { job } => return read(conn, db, job),
        StreamStateRequest::Forget { job } => {
            let p = |m: &mut Vec<u8>| map(m, &[("job", Param::Text(job))]);
            conn.run_all_in_transaction(db, &[(FORGET_JOB, &p), (FORGET_WRITERS, &p)])?;
            return Ok(StreamRecord::default());
        }
        StreamStateRequest::Claim { job, .. }
        | StreamStateRequest::Renew { job, .. }
        | StreamStateRequest::Release { job, .. } => job,
    };
    let held = match request {
        StreamStateRequest::Claim {
            job,
            holder,
            lease_ms,
            now_ms,
            start,
            slots,
            parts,
        } => {
            // Once, when the job's record is first made (a standby claims every second).
            if rows(conn, db, READ_JOB, job)?.is_empty() {
                conn.run_autocommit(db, UNIQUE_JOB)?;
            }
            let start = json(start);
            let p = |m: &mut Vec<u8>| {
                map(
                    m,
                    &[
                        ("job", Param::Text(job)),
                        ("holder", Param::Text(holder)),
                        ("now", Param::Int(*now_ms as i64)),
                        ("lease", Param::Int(*lease_ms as i64)),
                        ("start", Param::Text(&start)),
                        ("parts", Param::Int(*parts as i64)),
                    ],
                )
            };
            let w = |m: &mut Vec<u8>| writer_slots(m, job, slots);
            let j = |m: &mut Vec<u8>| map(m, &[("job", Param::Text(job))]);
            conn.run_all_if(db, (CLAIM, &p), &[(MAKE_WRITERS, &w), (FENCE_WRITERS, &j)])?
        }
        StreamStateRequest::Renew {
            job,
            holder,
            epoch,
            lease_ms,
            now_ms,
            resume,
            snapshot_done,
        } => {
            let resume = json(resume);
            let more = [
                ("now", Param::Int(*now_ms as i64)),
                ("lease", Param::Int(*lease_ms as i64)),
                ("resume", Param::Text(&resume)),
                ("snapshot_done", Param::Bool(*snapshot_done)),
            ];
            while_held(conn, db, RENEW, (job, holder, *epoch), &more)?
        }
        StreamStateRequest::Release {
            job,
            holder,
            epoch,
            resume,
            error,
        } => {
            let resume = json(resume);
            let more = [
                ("now", Param::Int(now_ms())),
                ("resume", Param::Text(&resume)),
                ("error", error.as_deref().map_or(Param::Null, Param::Text)),
            ];
            while_held(conn, db, RELEASE, (job, holder, *epoch), &more)?
        }
        StreamStateRequest::Read { .. } | StreamStateRequest::Forget { .. } => unreachable!(),
    };
    let mut record = read(conn, db, job)?;
    record.held = held;
    Ok(record)
}

/// Runs `query`, which changes the job's record only while `holder` holds its lease at `epoch`
/// (its parameters those three and `more`); whether it did.
fn while_held(
    conn: &mut Connection,
    db: Option<&str>,
    query: &str,
    (job, holder, epoch): (&str, &str, u64),
    more: &[(&str, Param<'_>)],
) -> Result<bool, BoltError> {
    let entries: Vec<(&str, Param<'_>)> = [
        ("job", Param::Text(job)),
        ("holder", Param::Text(holder)),
        ("epoch", Param::Int(epoch as i64)),
    ]
    .into_iter()
    .chain(more.iter().copied())
    .collect();
    let p = |m: &mut Vec<u8>| map(m, &entries);
    conn.run_all_if(db, (query, &p), &[])
}

/// `{job, slots: [{flow, writers, slot}, ...]}`.
fn writer_slots(m: &mut Vec<u8>, job: &str, slots: &[WriterSlot]) {
    ps::map_header(m, 2);
    ps::string(m, "job");
    ps::string(m, job);
    ps::string(m, "slots");
    ps::list_header(m, slots.len());
    for s in slots {
        map(
            m,
            &[
                ("flow", Param::Text(&s.flow)),
                ("writers", Param::Int(s.writers.into())),
                ("slot", Param::Int(s.slot.into())),
            ],
        );
    }
}

fn rows(
    conn: &mut Connection,
    db: Option<&str>,
    query: &str,
    job: &str,
) -> Result<Vec<Vec<Ps>>, BoltError> {
    conn.run_read(db, query, |m| map(m, &[("job", Param::Text(job))]))?;
    Ok(conn.pull(-1)?.0)
}

fn int(p: &Ps) -> u64 {
    match p {
        Ps::Int(i) => (*i).max(0) as u64,
        _ => 0,
    }
}

/// A JSON text property as the SDK type it holds; `None` when null.
fn parsed<T: serde::de::DeserializeOwned>(p: &Ps, what: &str) -> Result<Option<T>, BoltError> {
    match p.as_str() {
        Some(j) => serde_json::from_str(j)
            .map(Some)
            .map_err(|e| BoltError::Protocol(format!("a stored {what} is not etlhost's: {e}"))),
        None => Ok(None),
    }
}

fn read(conn: &mut Connection, db: Option<&str>, job: &str) -> Result<StreamRecord, BoltError> {
    let mut record = StreamRecord::default();
    if let Some(r) = rows(conn, db, READ_JOB, job)?.first() {
        let [holder, epoch, expires, resume, snapshot_done, error, updated, parts] = &r[..] else {
            return Err(BoltError::Protocol(
                "a stored stream record is not etlhost's".into(),
            ));
        };
        record.lease = holder.as_str().map(|h| Lease {
            holder: h.to_string(),
            epoch: int(epoch),
            expires_ms: int(expires),
        });
        record.resume = parsed(resume, "stream position")?;
        record.snapshot_done = matches!(snapshot_done, Ps::Bool(true));
        record.error = error.as_str().map(str::to_string);
        record.updated_ms = int(updated);
        record.parts = matches!(parts, Ps::Int(_)).then(|| int(parts));
    }
    for r in rows(conn, db, READ_WRITERS, job)? {
        let [flow, writers, slot, epoch, seq, last, resume, updated] = &r[..] else {
            continue;
        };
        record.writers.push(WriterRecord {
            slot: WriterSlot {
                flow: flow.as_str().unwrap_or_default().to_string(),
                writers: int(writers) as u32,
                slot: int(slot) as u32,
            },
            epoch: int(epoch),
            seq: int(seq),
            last: parsed(last, "change id")?,
            resume: parsed(resume, "stream position")?,
            updated_ms: int(updated),
        });
    }
    Ok(record)
}
