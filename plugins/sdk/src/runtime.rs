//! One tokio runtime per plugin library, for connectors built on async client crates.
//!
//! The host's own runtime cannot be shared: a plugin carries its own copy of tokio, whose
//! thread-local context knows nothing of the host's. The ABI is blocking; async plugins
//! `block_on` this runtime inside each call.

use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etlhost-plugin")
            .enable_all()
            .build()
            .expect("cannot start the plugin's tokio runtime")
    })
}

/// Runs a future to completion on the plugin runtime, from a host thread.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Runs `read` (one split's reading) on a thread of its own named `name`, e.g.
/// `postgres-split-3`. A reader hands its batches over a channel whose closing means the split
/// ended, so a panic must not pass for that end: it is caught and handed to `failed` as the
/// split's error, to be sent on that channel.
pub fn spawn_split_thread(
    name: String,
    read: impl FnOnce() + Send + 'static,
    failed: impl FnOnce(crate::Error) + Send + 'static,
) -> Result<(), crate::Error> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).is_err() {
                failed(crate::Error::permanent(
                    "reading failed: the reading thread panicked",
                ));
            }
        })
        .map(drop)
        .map_err(|e| {
            crate::Error::retryable(format!("cannot start a thread to read the split: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_split_thread_reports_its_failure() {
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_split_thread(
            "test-split-1".into(),
            || panic!("boom"),
            move |e| tx.send(e.message).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            "reading failed: the reading thread panicked"
        );
    }
}
