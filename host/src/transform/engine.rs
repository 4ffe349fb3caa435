//! The wasmtime side of transforms: one engine per job with epoch interruption, each component
//! compiled once (and kept on disk, keyed by its bytes and the engine's settings, so the next run
//! skips compiling), pre-linked against a WASI that grants nothing by default.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The bindings of `wit/transform.wit`. Borrowing: a batch is lowered into the guest straight from
/// the host's rows (`BatchParam<'a>` holds `&str`s into them), not from an owned copy of every
/// value made per call; what comes back is owned (`*Result` types).
pub mod wit {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../wit",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
    pub use self::etlhost::transform::types::*;
}

/// The bindings of the `encoded-transform` world: rows cross as one buffer in the batch format.
pub mod wit_encoded {
    wasmtime::component::bindgen!({
        world: "encoded-transform",
        path: "../wit",
    });
    pub use self::etlhost::transform::encoded::*;
}

/// A component linked for the world it exports.
pub(super) enum Pre {
    Values(wit::TransformPre<State>),
    Encoded(wit_encoded::EncodedTransformPre<State>),
}

/// How much of a guest's stderr is kept per instance.
const STDERR_CAPACITY: usize = 1 << 20;

/// How often the deadline clock ticks: a call overruns its deadline by at most this.
pub const TICK: Duration = Duration::from_millis(10);

/// An error about transform `index` of a flow's `transforms` list, for the spec's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    pub index: usize,
    pub key: String,
    pub message: String,
}

/// What a transform may reach outside its sandbox.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Environment variables passed in, by name (with the host's values).
    pub env: Vec<String>,
    /// Host directories the guest may read, as (host path, guest path).
    pub read_dirs: Vec<(PathBuf, String)>,
    /// Outbound network (TCP, UDP and name lookups).
    pub network: bool,
}

/// One transform of a flow, compiled and ready to instantiate.
pub struct Compiled {
    pub name: String,
    pub config: String,
    pub deadline: Duration,
    pub memory: usize,
    pub grants: Grants,
    pub(super) pre: Pre,
}

impl Compiled {
    /// Whether the component exports the `encoded-transform` world.
    pub fn encoded(&self) -> bool {
        matches!(self.pre, Pre::Encoded(_))
    }
}

/// A flow's transforms, in chain order, and the clock that enforces their deadlines.
pub struct Transforms {
    pub list: Vec<Compiled>,
    pub(super) engine: Engine,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// What a store holds for its instance.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    /// The guest's stderr, to explain a trap (a Rust guest prints its panic message there).
    pub(super) stderr: MemoryOutputPipe,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A transform as the spec gives it, resolved.
pub struct Request {
    pub name: String,
    pub component: PathBuf,
    pub config: String,
    pub deadline: Duration,
    pub memory: usize,
    pub grants: Grants,
}

impl Transforms {
    /// Compiles (or loads from `cache_dir`) every component and links it.
    pub fn load(requests: Vec<Request>, cache_dir: &Path) -> Result<Transforms, TransformError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| TransformError {
            index: 0,
            key: String::new(),
            message: format!("cannot start the WASM engine: {e}"),
        })?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
        let mut list = Vec::new();
        for (index, r) in requests.into_iter().enumerate() {
            let fail = |key: &str, message: String| TransformError {
                index,
                key: key.into(),
                message,
            };
            let started = Instant::now();
            let (component, cached) =
                compile(&engine, &r.component, cache_dir).map_err(|m| fail("component", m))?;
            tracing::info!(
                transform = %r.name,
                cached,
                "component {} ready in {:.0?}",
                r.component.display(),
                started.elapsed()
            );
            let instance = linker.instantiate_pre(&component).map_err(|e| {
                fail(
                    "component",
                    format!("{} cannot be linked: {e:#}", r.component.display()),
                )
            })?;
            // A component exports one world: the encoded one if it has its functions.
            let pre = match wit_encoded::EncodedTransformPre::new(instance.clone()) {
                Ok(p) => Pre::Encoded(p),
                Err(_) => Pre::Values(wit::TransformPre::new(instance).map_err(|e| {
                    fail(
                        "component",
                        format!(
                            "{} fits neither the transform nor the encoded-transform world of etlhost:transform (wit/transform.wit): {e:#}",
                            r.component.display()
                        ),
                    )
                })?),
            };
            list.push(Compiled {
                name: r.name,
                config: r.config,
                deadline: r.deadline,
                memory: r.memory,
                grants: r.grants,
                pre,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasm-deadlines".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .expect("cannot spawn the deadline clock")
        };
        Ok(Transforms {
            list,
            engine,
            ticker: Some(ticker),
            stop,
        })
    }

    /// Whether every transform exports the encoded world, so rows can stay encoded through them.
    pub fn encoded(&self) -> bool {
        self.list.iter().all(Compiled::encoded)
    }

    /// A fresh store for transform `i`, with its limits and grants.
    pub(super) fn store(&self, i: usize) -> Store<State> {
        let t = &self.list[i];
        let mut wasi = WasiCtxBuilder::new();
        for name in &t.grants.env {
            if let Ok(v) = std::env::var(name) {
                wasi.env(name, v);
            }
        }
        for (host, guest) in &t.grants.read_dirs {
            if let Err(e) = wasi.preopened_dir(host, guest, FsPerms::ReadOnly) {
                tracing::warn!(transform = %t.name, "cannot grant {}: {e}", host.display());
            }
        }
        if t.grants.network {
            wasi.inherit_network()
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        wasi.stderr(stderr.clone());
        let state = State {
            stderr,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(t.memory)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store
    }
}

impl Drop for Transforms {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The component at `path`, from the cache when its bytes were compiled before by an engine with
/// the same settings. Returns whether it came from the cache.
fn compile(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<(Component, bool), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    let cached = cache_dir.join(format!("{:016x}.cwasm", h.finish()));
    if cached.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // settings (the key includes them); deserialisation checks the header and refuses others.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok((c, true)),
            Err(e) => tracing::warn!("ignoring cached {}: {e}", cached.display()),
        }
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{} is not a WASM component: {e:#}", path.display()))?;
    if let Err(e) = std::fs::create_dir_all(cache_dir)
        .and_then(|()| crate::state_file::write_atomic(&cached, &compiled))
    {
        tracing::warn!(
            "cannot cache the compiled component in {}: {e}",
            cached.display()
        );
    }
    // SAFETY: the bytes were produced by `precompile_component` of this engine just now.
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| format!("{}: {e:#}", path.display()))?;
    Ok((component, false))
}
