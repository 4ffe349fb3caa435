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
