//! How a batch flow's run ended, with the earlier runs it went on from: their failed rows count
//! against `max_failed_rows`, and a run that failed is recorded where the flow keeps its progress,
//! so that a rerun with nothing left to read reports that failure instead of success.

use std::path::PathBuf;
use std::time::SystemTime;

use etlhost_plugin_sdk::Failure;

use crate::checkpoint::Checkpoint;
use crate::error::RunError;
use crate::options::RunOptions;
use crate::pipeline::{Control, Settings, StopReason};
use crate::progress::{Start, Store};
use crate::spec::FlowRef;
use crate::stats::{Counters, Status, Summary};

/// The failure of an earlier run this one goes on from (it still has splits to read): its failed
/// rows still count against `max_failed_rows`. None once accepted (`--accept-failures`).
pub(super) fn going_on_from(
    flow: FlowRef<'_>,
    previous: Option<&Checkpoint>,
    stored: Option<&Start>,
    opts: &RunOptions,
) -> Option<Failure> {
    let earlier = previous
        .and_then(|cp| cp.failed.clone())
        .or_else(|| stored.and_then(|s| s.plan.failure.clone()))
        .filter(|_| !opts.accept_failures)?;
    let rows = match earlier.failed_rows {
        0 => String::new(),
        n => format!(
            ", its {n} failed rows in {} still count",
            earlier.dead_letter
        ),
    };
    tracing::warn!(
        flow = %flow.flow.name,
        "the earlier run failed at {} ({}); going on from it{rows}",
        earlier.at,
        earlier.error,
    );
    Some(earlier)
}

/// What decides whether a run that ended failed, with the earlier runs it went on from, and
/// records the failure where the flow keeps its progress.
pub(super) struct Settle<'a> {
    pub earlier: Option<&'a Failure>,
    pub dead_letter: PathBuf,
    pub max_failed_rows: u64,
    pub store: &'a Store,
}

impl Settle<'_> {
    pub(super) fn settle(
        &self,
        flow: FlowRef<'_>,
        mut summary: Summary,
        control: &Control,
    ) -> Summary {
        let (earlier, max) = (
            self.earlier.map_or(0, |f| f.failed_rows),
            self.max_failed_rows,
        );
        let dead_letter = self.dead_letter.display();
        if summary.status == Status::Succeeded && earlier + summary.failed > max {
            summary.status = Status::Failed;
            summary.error = Some(format!(
                "{} rows failed in this run and {earlier} in the earlier runs it went on from, more than max_failed_rows ({max}); they are in {dead_letter}",
                summary.failed,
            ));
            control.stop(StopReason::TooManyFailedRows);
        }
        if summary.status != Status::Failed {
            return summary;
        }
        let failure = Failure {
            at: summary.end.clone(),
            error: summary.error.clone().unwrap_or_default(),
            failed_rows: earlier + summary.failed,
            dead_letter: dead_letter.to_string(),
            too_many_failed_rows: control.reason() == StopReason::TooManyFailedRows,
        };
        self.store.record_failure(flow, failure);
        summary
    }
}

/// A flow whose progress says an earlier run read every split: skipped, unless that run failed.
pub(super) fn done_earlier(
    flow: FlowRef<'_>,
    failure: Option<Failure>,
    settings: &Settings,
    counters: &Counters,
    control: &Control,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    match failure {
        Some(f) => earlier_failure(flow, &f, settings, counters, control, opts),
        None => Ok(skipped(settings, counters)),
    }
}

/// The earlier run failed after reading every split: a rerun would read nothing and report
/// success over that failure, so it reports the failure again, unless told to accept it.
fn earlier_failure(
    flow: FlowRef<'_>,
    f: &Failure,
    settings: &Settings,
    counters: &Counters,
    control: &Control,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    if opts.accept_failures {
        tracing::warn!(
            flow = %flow.flow.name,
            "--accept-failures: accepted the failure of the earlier run at {} ({}); its {} failed rows stay in {}",
            f.at,
            f.error,
            f.failed_rows,
            f.dead_letter
        );
        return Ok(skipped(settings, counters));
    }
    control.stop(if f.too_many_failed_rows {
        StopReason::TooManyFailedRows
    } else {
        StopReason::Error
    });
    let error = format!(
        "the earlier run of job '{}' failed at {}: {}; it read every split, so nothing is left to read: run with --fresh to run the job again, or with --accept-failures to accept that failure (its {} failed rows stay in {})",
        flow.label(),
        f.at,
        f.error,
        f.failed_rows,
        f.dead_letter
    );
    let now = SystemTime::now();
    let (job, name) = (&settings.job, settings.flow.as_deref());
    let summary = Summary::new(job, name, Status::Failed, counters, now, now, Some(error));
    Err(RunError::Failed(Box::new(summary)))
}

/// A flow whose checkpoint (or records in the target) say it completed in an earlier run.
fn skipped(settings: &Settings, counters: &Counters) -> Summary {
    let now = SystemTime::now();
    let (job, name) = (&settings.job, settings.flow.as_deref());
    Summary::new(job, name, Status::Succeeded, counters, now, now, None)
}
