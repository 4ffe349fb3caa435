//! User transforms: WASM components (interface in `wit/transform.wit`) run between the readers and
//! the batcher, sandboxed by wasmtime.
//!
//! - [`engine`]: one wasmtime engine per job, components compiled once and cached on disk.
//! - [`worker`]: a chain of instances owned by one reader thread (one store each), with deadlines,
//!   memory limits, and isolation of the rows that make a call fail.
//! - [`values`]: rows across the boundary of the `transform` world, value by value.
//! - [`encoded`]: the `encoded-transform` world, whose rows cross as one buffer and stay encoded
//!   on the host when a transform keeps them.
//!
//! Sandbox: an instance gets no files, network or environment variables unless the spec grants
//! them (`allow`), at most `memory` bytes of linear memory, and `deadline` per call (enforced with
//! wasmtime's epoch interruption, so a guest in an endless loop is stopped).
//!
//! The engine is the largest part of a build (wasmtime and cranelift), so it sits behind the cargo
//! feature `transforms` (on by default); `cargo xtask demo` builds without it, and such a binary
//! refuses a flow with transforms before any row moves.

#[cfg(feature = "transforms")]
pub mod encoded;
#[cfg(feature = "transforms")]
pub mod engine;
mod outcome;
#[cfg(feature = "transforms")]
pub mod values;
#[cfg(feature = "transforms")]
pub mod worker;

#[cfg(feature = "transforms")]
pub use encoded::AppliedEncoded;
#[cfg(feature = "transforms")]
pub use engine::Transforms;
pub use outcome::{Applied, Origin, Outcome};
#[cfg(feature = "transforms")]
pub use worker::Chain;

use std::sync::Arc;

use crate::error::RunError;
use crate::spec::FlowRef;

/// Stand-ins for a build without the engine: no flow can have transforms, so none is ever made.
#[cfg(not(feature = "transforms"))]
mod absent {
    use super::{Applied, Origin};
    use etlhost_plugin_sdk::codec::Encoded;
    use etlhost_plugin_sdk::Batch;
    use std::sync::Arc;

    pub enum Transforms {}

    impl Transforms {
        pub fn encoded(&self) -> bool {
            match *self {}
        }
    }

    pub enum Chain {}

    pub struct AppliedEncoded {
        pub rows: Encoded,
        pub origins: Option<Vec<Origin>>,
        pub outcomes: Vec<super::Outcome>,
    }

    impl Chain {
        pub fn apply_encoded(&mut self, _: Encoded, _: u64) -> AppliedEncoded {
            match *self {}
        }
        pub fn new(t: Arc<Transforms>) -> Chain {
            match *t {}
        }
        pub fn apply(&mut self, _: Batch, _: Vec<Origin>) -> Applied {
            match *self {}
        }
        pub fn finish(&mut self) -> Vec<Applied> {
            match *self {}
        }
    }
}
#[cfg(not(feature = "transforms"))]
pub use absent::{AppliedEncoded, Chain, Transforms};

#[cfg(not(feature = "transforms"))]
pub fn load(flow: FlowRef<'_>) -> Result<Option<Arc<Transforms>>, RunError> {
    if flow.flow.transforms.is_empty() {
        return Ok(None);
    }
    Err(RunError::Config(flow.error(
        "transforms",
        "this etlhost was built without WASM transforms (cargo feature `transforms`); build it with `cargo xtask build --release`",
    )))
}

/// Compiles (or loads from `cache_dir`) the flow's transforms and checks that each accepts its
/// config, before any row moves. `None` for a flow without transforms.
#[cfg(feature = "transforms")]
pub fn load(flow: FlowRef<'_>) -> Result<Option<Arc<Transforms>>, RunError> {
    let f = flow.flow;
    if f.transforms.is_empty() {
        return Ok(None);
    }
    use engine::{Grants, Request};
    let requests = f
        .transforms
        .iter()
        .map(|t| Request {
            name: t.name.clone(),
            component: flow.spec.dir().join(&t.component),
            config: serde_json::Value::Object(t.config.clone()).to_string(),
            deadline: t.deadline.0,
            memory: t.memory_mib << 20,
            grants: Grants {
                env: t.allow.env.clone(),
                read_dirs: t
                    .allow
                    .read_dirs
                    .iter()
                    .map(|d| (d.clone(), d.display().to_string()))
                    .collect(),
                network: t.allow.network,
            },
        })
        .collect();
    let t = Transforms::load(requests, &flow.spec.job.cache_dir).map_err(|e| {
        RunError::Config(flow.error(&format!("transforms[{}].{}", e.index, e.key), e.message))
    })?;
    worker::check(&t).map_err(|(i, m)| {
        RunError::Config(flow.error(
            &format!("transforms[{i}].config"),
            format!("transform `{}` {m}", f.transforms[i].name),
        ))
    })?;
    Ok(Some(Arc::new(t)))
}
