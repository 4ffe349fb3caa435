//! The optional progress capability of a sink: the host's own state kept in the target, beside the
//! data, so that a job resumes where its last committed batch ended from any machine, and several
//! processes (shards) share one plan.
//!
//! - Every batch is written together with its split's [`Progress`] in **one transaction**
//!   ([`SinkProgress::write_with_progress`]). A batch whose commit landed is therefore never
//!   written again: the host reads the progress back before retrying a batch whose answer was
//!   lost, and a resumed run starts after the recorded key. `CREATE` jobs become exactly-once.
//! - [`SinkProgress::state`] reads and writes the rest: the plan of a run (so that shards started
//!   minutes apart read the same splits), every split's progress, and forgetting a finished run.
//!
//! A sink library exports it as one more optional symbol, [`SINK_PROGRESS_SYMBOL`], returning a
//! [`SinkProgressVTable`]; [`export_sink_progress!`](crate::export_sink_progress) writes it. The
//! host looks it up by name, so plugins built without it load unchanged and keep the host's local
//! checkpoint files. The table starts with its own version and size, like the read capability's.

use serde::{Deserialize, Serialize};

use crate::abi::{Instance, OwnedBuf, StrRef};
use crate::connector::Sink;
use crate::error::{Error, OpenError};
use crate::split::Split;
use crate::value::{Batch, Value};

/// The optional symbol: an `extern "C" fn() -> *const SinkProgressVTable` ([`SinkProgressFn`]).
pub const SINK_PROGRESS_SYMBOL: &str = "etlhost_sink_progress";

/// The version of [`SinkProgressVTable`]'s layout.
pub const PROGRESS_VERSION: u32 = 1;

/// `write` with [`Progress::check`] only: the split's record does not stand at
/// [`Progress::from`] rows (the batch was committed before, its answer lost): nothing was written.
pub const STATUS_ALREADY_WRITTEN: u32 = 5;

pub type SinkProgressFn = unsafe extern "C" fn() -> *const SinkProgressVTable;

#[repr(C)]
pub struct SinkProgressVTable {
    /// Must equal the host's [`PROGRESS_VERSION`]; read first.
    pub version: u32,
    /// `size_of::<SinkProgressVTable>()` as the plugin was compiled.
    pub size: u32,
    /// `write(sink, batch, progress, err)`: the batch (codec format; it may have no rows) and the
    /// progress (JSON, a [`Progress`]) in one transaction, with the status codes of
    /// [`crate::abi::SinkVTable::write_batch`], plus [`STATUS_ALREADY_WRITTEN`].
    pub write: unsafe extern "C" fn(
        sink: Instance,
        batch: StrRef,
        progress: StrRef,
        err: *mut OwnedBuf,
    ) -> u32,
    /// `state(options, request, out, err)`: connects with the sink's options (JSON) and answers
    /// `request` (JSON, a [`StateRequest`]) with a [`State`] (JSON) in `out`. Errors as `open`.
    pub state: unsafe extern "C" fn(
        options: StrRef,
        request: StrRef,
        out: *mut OwnedBuf,
        err: *mut OwnedBuf,
    ) -> u32,
}

// SAFETY: vtables are immutable statics of function pointers.
unsafe impl Sync for SinkProgressVTable {}

/// How far one split of one flow of one run has been written. One record per (job, flow, run,
/// split); the batches of a split are written in order by one writer, so it only moves forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub job: String,
    /// The flow's name (the job's name for a job of one flow).
    pub flow: String,
    /// All the shards of one run share its id (Kubernetes: the Job's uid); empty by default.
    pub run: String,
    pub split: u32,
    /// Every row of the split whose key is this one or lower is written (or kept as failed): a
    /// resumed read starts after it. `None`: nothing yet.
    #[serde(default)]
    pub after: Option<Value>,
    /// Rows of the split written or failed so far, across runs: it grows with every batch, which
    /// is how a batch whose answer was lost is told from one that was never committed.
    #[serde(default)]
    pub rows: u64,
    /// Writing: the record's `rows` before this batch.
    #[serde(default)]
    pub from: u64,
    /// Writing: write only if the record still stands at `from` (a retry: the attempt before may
    /// have committed with its answer lost). The check and the write are one transaction.
    #[serde(default)]
    pub check: bool,
    /// The whole split is written.
    #[serde(default)]
    pub done: bool,
    /// The shard that wrote it last (0 when not sharded).
    #[serde(default)]
    pub shard: u32,
}

/// The plan of one flow in one run: written once, by the shard that planned it (shard 0), and
/// read by every other shard of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub job: String,
    pub flow: String,
    pub run: String,
    /// The spec's hash: a shard running another spec is refused.
    pub spec_hash: String,
    /// How many shards share the run (1 when not sharded).
    pub shards: u32,
    pub splits: Vec<Split>,
    /// When it was planned (RFC 3339, UTC).
    #[serde(default)]
    pub planned_at: String,
    /// How the run failed, if a process of it did ([`StateRequest::Fail`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// How a run of a flow failed, kept with its progress: a rerun that finds nothing left to read
/// must not report success over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// When the run ended (RFC 3339, UTC).
    pub at: String,
    /// The run's error, as it reported it.
    pub error: String,
    /// Rows of the flow kept in the dead-letter file by the runs so far.
    pub failed_rows: u64,
    /// The dead-letter file they are in.
    pub dead_letter: String,
    /// It failed because more rows failed than `max_failed_rows` allows (rather than a sink or
    /// source error).
    #[serde(default)]
    pub too_many_failed_rows: bool,
}

/// What the host asks of [`SinkProgress::state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateRequest {
    /// Every plan and progress record of `job` in `run`.
    Read { job: String, run: String },
    /// Stores `plan` and a progress record with nothing written for each of its splits, unless a
    /// plan of that job, flow and run exists: the answer holds the plan that is stored.
    Plan { plan: Plan },
    /// Records on the plan of one flow of `job` in `run` how that run failed. A sink that does not
    /// know this request may refuse it: the host then only warns.
    Fail {
        job: String,
        flow: String,
        run: String,
        failure: Failure,
    },
    /// Removes the plan and progress records of one flow of `job` in `run` (a finished run, or
    /// `--fresh`).
    Forget {
        job: String,
        flow: String,
        run: String,
    },
}

/// The answer to a [`StateRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub progress: Vec<Progress>,
}

/// A sink that keeps the host's progress in the target: implement it and add
/// `etlhost_plugin_sdk::export_sink_progress!(MySink);` beside `export_sink!`.
pub trait SinkProgress: Sink {
    /// Writes `batch` (which may have no rows) and stores `progress` over the split's record, in
    /// one transaction: both land or neither does. With [`Progress::check`], only if the record
    /// stands at [`Progress::from`] rows; `Ok(false)` when it does not (nothing written).
    fn write_with_progress(&mut self, batch: &Batch, progress: &Progress) -> Result<bool, Error>;

    /// Connects with `options` and answers `request`.
    fn state(options: Self::Options, request: &StateRequest) -> Result<State, OpenError>;
}

/// # Safety
/// ABI contract: `sink` is a live instance of `K`; `batch` and `progress` readable; `err` writable.
pub unsafe extern "C" fn progress_write<K: SinkProgress>(
    sink: Instance,
    batch: StrRef,
    progress: StrRef,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        crate::export::guard(err, || {
            let sink = &mut *(sink as *mut K);
            let batch = crate::codec::decode(batch.as_bytes())
                .map_err(|e| Error::permanent(format!("malformed batch from host: {e}")))?;
            let progress: Progress = serde_json::from_slice(progress.as_bytes())
                .map_err(|e| Error::permanent(format!("malformed progress from host: {e}")))?;
            Ok(match sink.write_with_progress(&batch, &progress)? {
                true => crate::abi::STATUS_OK,
                false => STATUS_ALREADY_WRITTEN,
            })
        })
    }
}

/// # Safety
/// ABI contract: `opts` and `request` readable; `out` and `err` writable.
pub unsafe extern "C" fn progress_state<K: SinkProgress>(
    opts: StrRef,
    request: StrRef,
    out: *mut OwnedBuf,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        crate::export::guard(err, || {
            let options = crate::options::parse::<K::Options>(opts.as_bytes())?;
            let request: StateRequest = serde_json::from_slice(request.as_bytes())
                .map_err(|e| Error::permanent(format!("malformed state request from host: {e}")))?;
            let state = K::state(options, &request)?;
            let json = serde_json::to_vec(&state).expect("state serialises");
            out.write(OwnedBuf::from_vec(json));
            Ok(crate::abi::STATUS_OK)
        })
    }
}

/// The progress table of a sink type.
pub const fn progress_vtable<K: SinkProgress>() -> SinkProgressVTable {
    SinkProgressVTable {
        version: PROGRESS_VERSION,
        size: std::mem::size_of::<SinkProgressVTable>() as u32,
        write: progress_write::<K>,
        state: progress_state::<K>,
    }
}

/// Exports a [`SinkProgress`] sink's progress capability (use beside `export_sink!`):
/// `etlhost_plugin_sdk::export_sink_progress!(MySink);`
#[macro_export]
macro_rules! export_sink_progress {
    ($ty:ty) => {
        /// The optional progress capability (progress in the target, shards), looked up by name.
        #[unsafe(no_mangle)]
        pub extern "C" fn etlhost_sink_progress() -> *const $crate::progress::SinkProgressVTable {
            static VTABLE: $crate::progress::SinkProgressVTable =
                $crate::progress::progress_vtable::<$ty>();
            &VTABLE
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_records_round_trip_as_json() {
        let p = Progress {
            job: "j".into(),
            flow: "f".into(),
            run: String::new(),
            split: 3,
            after: Some(Value::List(vec![Value::String("eu".into()), Value::Int(7)])),
            rows: 1000,
            from: 500,
            check: true,
            done: false,
            shard: 2,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
        let r = StateRequest::Read {
            job: "j".into(),
            run: "r".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"op":"read","job":"j","run":"r"}"#);
        assert_eq!(serde_json::from_str::<StateRequest>(&json).unwrap(), r);
    }
}
