//! Stopping a running job: only ever stops *reading*; what was read is still written.

use std::sync::atomic::{AtomicU8, Ordering};

/// Why reading stopped early; the first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    None = 0,
    /// A split could not be read, or the sink could not finish.
    Error = 1,
    /// More rows failed than `max_failed_rows` allows.
    TooManyFailedRows = 2,
    /// Ctrl-C or SIGTERM.
    Interrupted = 3,
    /// Another process took the streaming job over: this one must not write again.
    Fenced = 4,
}

/// Lets a signal handler (or a stage) ask a running job to stop reading.
#[derive(Debug, Default)]
pub struct Control {
    reason: AtomicU8,
}

impl Control {
    pub fn stop(&self, why: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, why as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::SeqCst) {
            0 => StopReason::None,
            1 => StopReason::Error,
            2 => StopReason::TooManyFailedRows,
            3 => StopReason::Interrupted,
            _ => StopReason::Fenced,
        }
    }

    pub fn stopping(&self) -> bool {
        self.reason() != StopReason::None
    }
}
