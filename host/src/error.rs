//! Why a job did not run to the end, as the commands turn it into an exit code.

use crate::spec::SpecError;
use crate::stats::Summary;

#[derive(Debug)]
pub enum RunError {
    /// The spec asks for something the source cannot do (found while planning).
    Config(SpecError),
    /// A plugin could not start (connection refused, bad credentials...), or state files could not
    /// be read.
    Start(String),
    /// The job ran and stopped early or with failed rows; the summary says how far it got.
    Failed(Box<Summary>),
    /// The books do not balance: a bug in etlhost, never to be reported as success.
    Internal(Box<Summary>),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Start(m) => f.write_str(m),
            RunError::Failed(s) => write!(
                f,
                "job {} {}: {}",
                s.job,
                s.status,
                s.error.as_deref().unwrap_or("")
            ),
            RunError::Internal(s) => write!(
                f,
                "internal error: rows read ({}) + added ({}) != written ({}) + failed ({}) + filtered ({})",
                s.read, s.added, s.written, s.failed, s.filtered
            ),
        }
    }
}

impl std::error::Error for RunError {}
