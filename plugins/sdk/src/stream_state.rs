//! The optional stream capability of a sink: a streaming job's position, and the lease that makes
//! one process of the job the writer, kept in the target beside the data.
//!
//! - Every write of changes carries its writer's [`WriterMark`], and the changes and the writer's
//!   record commit in **one transaction**, only if the record still holds what this process last
//!   wrote there ([`WriterMark::seq`]) under its lease ([`WriterMark::epoch`]). A restart skips
//!   the changes the records say are written, so an insert-only table written with `CREATE` gets
//!   each row once however often the process dies; a second process, or one paused past its
//!   lease, can never apply a change twice or move a record backwards ([`STATUS_FENCED`]).
//! - [`SinkStream::stream_state`] keeps the job's lease (holder, epoch, expiry), where its stream
//!   resumes, and whether its snapshot is done, and reads it all back for a start, a standby and
//!   `etlhost status`.
//!
//! A sink library exports it as one more optional symbol, [`SINK_STREAM_SYMBOL`], returning a
//! [`SinkStreamVTable`]; [`export_sink_stream!`](crate::export_sink_stream) writes it. Sinks built
//! without it keep the host's local stream file, with no lease.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::abi::{Instance, OwnedBuf, StrRef};
use crate::change::{ChangeBatch, Position};
use crate::connector::Sink;
use crate::error::{Error, OpenError};

/// The optional symbol: an `extern "C" fn() -> *const SinkStreamVTable` ([`SinkStreamFn`]).
pub const SINK_STREAM_SYMBOL: &str = "etlhost_sink_stream";

/// The version of [`SinkStreamVTable`]'s layout.
pub const STREAM_STATE_VERSION: u32 = 1;

/// `write`: the writer's record is at [`WriterMark::seq`] + 1 under the same epoch: these changes
/// were committed before (the answer was lost); nothing was written.
pub use crate::progress::STATUS_ALREADY_WRITTEN;

/// `write`: the writer's record holds another epoch (another process took the job over) or another
/// sequence: nothing was written, and this process must stop writing. `err` says who holds it.
pub const STATUS_FENCED: u32 = 6;

pub type SinkStreamFn = unsafe extern "C" fn() -> *const SinkStreamVTable;

#[repr(C)]
pub struct SinkStreamVTable {
    /// Must equal the host's [`STREAM_STATE_VERSION`]; read first.
    pub version: u32,
    /// `size_of::<SinkStreamVTable>()` as the plugin was compiled.
    pub size: u32,
    /// `write(sink, batch, mark, err)`: the change batch (codec format, as
    /// [`ChangeBatch::into_batch`]; it may have no rows) and the mark (JSON, a [`WriterMark`]) in
    /// one transaction, with the status codes of [`crate::abi::SinkVTable::write_batch`], plus
    /// [`STATUS_ALREADY_WRITTEN`] and [`STATUS_FENCED`].
    pub write: unsafe extern "C" fn(
        sink: Instance,
        batch: StrRef,
        mark: StrRef,
        err: *mut OwnedBuf,
    ) -> u32,
    /// `state(options, request, out, err)`: connects with the sink's options (JSON) and answers
    /// `request` (JSON, a [`StreamStateRequest`]) with a [`StreamRecord`] (JSON) in `out`.
    pub state: unsafe extern "C" fn(
        options: StrRef,
        request: StrRef,
        out: *mut OwnedBuf,
        err: *mut OwnedBuf,
    ) -> u32,
}

// SAFETY: vtables are immutable statics of function pointers.
unsafe impl Sync for SinkStreamVTable {}

/// Where one change is in the source's log: its transaction's `commit` (a [`crate::Change`]'s) and
/// its place among that transaction's changes of its table. The same change read again has the
/// same id; ids order as the log does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeId {
    pub commit: Position,
    pub index: u64,
}

impl Ord for ChangeId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.commit
            .log_cmp(&other.commit)
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for ChangeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One writer of one flow: the flow's `writers` writers each take the keys that hash to their
/// `slot`. A record per (job, flow, writers, slot), so a change of parallelism starts new records
/// and the old ones still say what was written under the old layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSlot {
    pub flow: String,
    pub writers: u32,
    pub slot: u32,
}

/// What a write of changes stores over its writer's record, in the same transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterMark {
    pub job: String,
    #[serde(flatten)]
    pub slot: WriterSlot,
    /// The lease's epoch this process holds: the write is refused under any other.
    pub epoch: u64,
    /// The record's sequence before this write; the write moves it to `seq + 1`, only if it still
    /// stands at `seq`.
    pub seq: u64,
    /// The last change of the source's log in this write (none: only changes the host derived).
    pub last: Option<ChangeId>,
    /// Where the whole stream may resume: every change before it is written by every writer.
    pub resume: Position,
}

/// The job's lease: who writes, under which epoch, until when (ms since 1970, by the holder's
/// clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub epoch: u64,
    pub expires_ms: u64,
}

/// A writer's record, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterRecord {
    #[serde(flatten)]
    pub slot: WriterSlot,
    pub epoch: u64,
    pub seq: u64,
    #[serde(default)]
    pub last: Option<ChangeId>,
    #[serde(default)]
    pub resume: Option<Position>,
    #[serde(default)]
    pub updated_ms: u64,
}

/// A streaming job as the target keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Where the stream resumes (the job's record; the writers' may be further on).
    #[serde(default)]
    pub resume: Option<Position>,
    #[serde(default)]
    pub snapshot_done: bool,
    /// The last run's error, until a run writes again.
    #[serde(default)]
    pub error: Option<String>,
    /// `stream.max_transaction_changes` of the process that last claimed the job: a transaction
    /// applied in parts is numbered by its parts, so a resume inside one needs the same.
    #[serde(default)]
    pub parts: Option<u64>,
    #[serde(default)]
    pub updated_ms: u64,
    #[serde(default)]
    pub writers: Vec<WriterRecord>,
    /// `Claim`, `Renew`, `Release`: whether the asking process holds the lease after it.
    #[serde(default)]
    pub held: bool,
}

/// What the host asks of [`SinkStream::stream_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StreamStateRequest {
    /// The job's record and its writers' records.
    Read { job: String },
    /// Takes the lease when nobody holds it, it has expired (`expires_ms < now_ms`) or `holder`
    /// holds it already: the epoch grows by one, the job's record is made (resuming at `start`)
    /// when there is none, a record is made for each of `slots` that has none, and every writer
    /// record of the job takes the new epoch, all in one transaction. The answer is the record,
    /// `held` telling whether the lease was taken.
    Claim {
        job: String,
        holder: String,
        lease_ms: u64,
        now_ms: u64,
        start: Position,
        slots: Vec<WriterSlot>,
        /// Stored as the record's `parts`.
        #[serde(default)]
        parts: u64,
    },
    /// Extends the lease to `now_ms + lease_ms` and stores where the stream resumes, only while
    /// `holder` holds it at `epoch`.
    Renew {
        job: String,
        holder: String,
        epoch: u64,
        lease_ms: u64,
        now_ms: u64,
        resume: Position,
        snapshot_done: bool,
    },
    /// Ends the lease at once (a standby takes over), storing where the stream resumes and how the
    /// run ended, only while `holder` holds it at `epoch`.
    Release {
        job: String,
        holder: String,
        epoch: u64,
        resume: Position,
        error: Option<String>,
    },
    /// Forgets the job's position, holder and writers' records (`--fresh`), keeping its epoch, so
    /// that a process still writing under the old one is fenced.
    Forget { job: String },
}

/// How a [`SinkStream::write_marked`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    Written,
    /// Committed before; nothing written now.
    AlreadyWritten,
    /// Another process holds the job: what the record holds.
    Fenced(String),
}

/// A sink that keeps a stream's position and lease in the target: implement it and add
/// `etlhost_plugin_sdk::export_sink_stream!(MySink);` beside `export_sink!`.
pub trait SinkStream: Sink {
    /// Writes `batch` and moves the writer's record as `mark` says, in one transaction, only if
    /// the record stands at `mark.seq` under `mark.epoch`.
    fn write_marked(&mut self, batch: &ChangeBatch, mark: &WriterMark) -> Result<Marked, Error>;

    /// [`SinkStream::write_marked`] of a batch as it crossed the boundary (the format of
    /// [`ChangeBatch::encode`]). The default decodes it; a sink that writes its own format can
    /// read it in place with [`crate::ChangeBatchView::read`].
    fn write_marked_encoded(&mut self, bytes: &[u8], mark: &WriterMark) -> Result<Marked, Error> {
        let batch = ChangeBatch::decode(bytes)
            .map_err(|e| Error::permanent(format!("malformed change batch from host: {e}")))?;
        self.write_marked(&batch, mark)
    }

    /// Connects with `options` and answers `request`.
    fn stream_state(
        options: Self::Options,
        request: &StreamStateRequest,
    ) -> Result<StreamRecord, OpenError>;
}

/// # Safety
/// ABI contract: `sink` is a live instance of `K`; `batch` and `mark` readable; `err` writable.
pub unsafe extern "C" fn stream_write<K: SinkStream>(
    sink: Instance,
    batch: StrRef,
    mark: StrRef,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        crate::export::guard(err, || {
            let sink = &mut *(sink as *mut K);
            let mark: WriterMark = serde_json::from_slice(mark.as_bytes())
                .map_err(|e| Error::permanent(format!("malformed writer mark from host: {e}")))?;
            match sink.write_marked_encoded(batch.as_bytes(), &mark)? {
                Marked::Written => Ok(crate::abi::STATUS_OK),
                Marked::AlreadyWritten => Ok(STATUS_ALREADY_WRITTEN),
                Marked::Fenced(why) => {
                    err.write(OwnedBuf::from_vec(why.into_bytes()));
                    Ok(STATUS_FENCED)
                }
            }
        })
    }
}

/// # Safety
/// ABI contract: `opts` and `request` readable; `out` and `err` writable.
pub unsafe extern "C" fn stream_state<K: SinkStream>(
    opts: StrRef,
    request: StrRef,
    out: *mut OwnedBuf,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        crate::export::guard(err, || {
            let options = crate::options::parse::<K::Options>(opts.as_bytes())?;
            let request: StreamStateRequest =
                serde_json::from_slice(request.as_bytes()).map_err(|e| {
                    Error::permanent(format!("malformed stream state request from host: {e}"))
                })?;
            let record = K::stream_state(options, &request)?;
            let json = serde_json::to_vec(&record).expect("records serialise");
            out.write(OwnedBuf::from_vec(json));
            Ok(crate::abi::STATUS_OK)
        })
    }
}

/// The stream table of a sink type.
pub const fn stream_vtable<K: SinkStream>() -> SinkStreamVTable {
    SinkStreamVTable {
        version: STREAM_STATE_VERSION,
        size: std::mem::size_of::<SinkStreamVTable>() as u32,
        write: stream_write::<K>,
        state: stream_state::<K>,
    }
}

/// Exports a [`SinkStream`] sink's stream capability (use beside `export_sink!`):
/// `etlhost_plugin_sdk::export_sink_stream!(MySink);`
#[macro_export]
macro_rules! export_sink_stream {
    ($ty:ty) => {
        /// The optional stream capability (position and lease in the target), looked up by name.
        #[unsafe(no_mangle)]
        pub extern "C" fn etlhost_sink_stream() -> *const $crate::stream_state::SinkStreamVTable {
            static VTABLE: $crate::stream_state::SinkStreamVTable =
                $crate::stream_state::stream_vtable::<$ty>();
            &VTABLE
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, pos: u64, skip: u64) -> Position {
        Position {
            file: file.into(),
            pos,
            gtid: None,
            skip,
        }
    }

    /// Ids order as the log: file, offset, how far into a large transaction, then the change's
    /// place in it.
    #[test]
    fn change_ids_order_as_the_log() {
        let id = |p, i| ChangeId {
            commit: p,
            index: i,
        };
        let mut ids = [
            id(at("binlog.000002", 4, 0), 0),
            id(at("binlog.000001", 900, 0), 1),
            id(at("binlog.000001", 500, 2000), 7),
            id(at("binlog.000001", 900, 0), 0),
            id(at("binlog.000001", 500, 4000), 0),
        ];
        ids.sort();
        let keys: Vec<(u64, u64, u64)> = ids
            .iter()
            .map(|i| (i.commit.pos, i.commit.skip, i.index))
            .collect();
        assert_eq!(
            keys,
            [
                (500, 2000, 7),
                (500, 4000, 0),
                (900, 0, 0),
                (900, 0, 1),
                (4, 0, 0)
            ]
        );
    }

    #[test]
    fn marks_and_requests_round_trip_as_json() {
        let m = WriterMark {
            job: "j".into(),
            slot: WriterSlot {
                flow: "f".into(),
                writers: 2,
                slot: 1,
            },
            epoch: 3,
            seq: 41,
            last: Some(ChangeId {
                commit: at("binlog.000001", 900, 0),
                index: 4,
            }),
            resume: at("binlog.000001", 500, 0),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<WriterMark>(&json).unwrap(), m);
        let r = StreamStateRequest::Forget { job: "j".into() };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"op":"forget","job":"j"}"#);
    }
}
