//! A job ready to run: its spec, with every flow's plugins loaded and their options validated.

use std::sync::Arc;

use etlhost_plugin_sdk::ConfigError;

use crate::plugin::{self, Kind, Plugin, PluginError};
use crate::spec::{FlowRef, Mode, Spec, SpecError, Store};

pub struct Job {
    pub spec: Spec,
    /// The plugins of `spec.job.flows[i]`, at index `i`.
    pub plugins: Vec<FlowPlugins>,
}

pub struct FlowPlugins {
    pub source: Arc<Plugin>,
    pub sink: Arc<Plugin>,
}

impl Job {
    /// Loads the plugins and has each validate its options; every error points into the spec.
    pub fn prepare(spec: Spec) -> Result<Job, SpecError> {
        let plugins = (0..spec.job.flows.len())
            .map(|i| {
                let flow = spec.flow(i);
                let f = flow.flow;
                Ok(FlowPlugins {
                    source: load(
                        flow,
                        "source",
                        &f.source.plugin,
                        Kind::Source,
                        &f.source.options,
                    )?,
                    sink: check_sink(
                        flow,
                        load(flow, "sink", &f.sink.plugin, Kind::Sink, &f.sink.options)?,
                    )?,
                })
            })
            .collect::<Result<_, SpecError>>()?;
        Ok(Job { spec, plugins })
    }
}

fn load(
    flow: FlowRef<'_>,
    role: &str,
    name: &str,
    kind: Kind,
    options: &serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<Plugin>, SpecError> {
    let p = plugin::load_as(name, flow.spec.dir(), kind, role)
        .map_err(|m| flow.error(&format!("{role}.plugin"), m))?;
    p.validate(options).map_err(|e| match e {
        PluginError::Config { error, .. } => option_error(flow, role, &error),
        other => flow.error(&format!("{role}.options"), other.to_string()),
    })?;
    Ok(p)
}

/// What the spec asks of its sink beyond its options: changes to write (`mode: stream`), or
/// progress to keep (`checkpoint.store: target`, `shards`). Checked here, for `etlhost validate`
/// and every run alike.
fn check_sink(flow: FlowRef<'_>, sink: Arc<Plugin>) -> Result<Arc<Plugin>, SpecError> {
    if flow.flow.mode == Mode::Stream {
        writes_changes(flow, &sink)?;
    }
    check_progress(flow, &sink, false)?;
    Ok(sink)
}

/// A streaming flow's sink must write changes, with a query for every kind.
fn writes_changes(flow: FlowRef<'_>, sink: &Plugin) -> Result<(), SpecError> {
    match sink.check_changes(&flow.flow.sink.options) {
        Ok(true) => Ok(()),
        Ok(false) => Err(flow.error(
            "sink.plugin",
            format!(
                "plugin {} cannot write changes (inserts, updates, deletes), which mode: stream needs",
                sink.name
            ),
        )),
        Err(PluginError::Config { error, .. }) => Err(option_error(flow, "sink", &error)),
        Err(e) => Err(flow.error("sink.options", e.to_string())),
    }
}

/// Every check of where a flow can keep its progress, in one place: made when the job loads, with
/// what the spec asks (`checkpoint.store`, `shards`), and again when a run chooses the flow's
/// progress store (`progress::Store::choose`), with what its command line adds (`run_sharded`:
/// `--shard` or its environment).
pub fn check_progress(
    flow: FlowRef<'_>,
    sink: &Plugin,
    run_sharded: bool,
) -> Result<(), SpecError> {
    if flow.flow.mode == Mode::Stream {
        if run_sharded {
            return Err(flow.error(
                "mode",
                "a streaming flow cannot be sharded: one process follows the change log",
            ));
        }
        if flow.spec.job.checkpoint.store == Store::Target && !keeps_streams(sink) {
            return Err(flow.spec.error(
                "checkpoint.store",
                format!(
                    "is `target`, but the sink plugin `{}` of streaming flow `{}` cannot keep a stream's position and lease in the target",
                    sink.name, flow.flow.name
                ),
            ));
        }
        return Ok(());
    }
    keeps_progress(flow, sink)?;
    if !run_sharded {
        return Ok(());
    }
    if flow.spec.job.checkpoint.store == Store::Local {
        return Err(flow.spec.error(
            "checkpoint.store",
            "is `local`, but shards share their plan and progress through the target: use `target` or `auto`",
        ));
    }
    if !sink.records_progress() {
        return Err(flow.error(
            "sink.plugin",
            format!(
                "the sink plugin `{}` cannot keep progress in the target, which shards need",
                sink.name
            ),
        ));
    }
    Ok(())
}

/// A sink that can keep a stream in the target: its position and lease, and its snapshot's
/// progress.
fn keeps_streams(sink: &Plugin) -> bool {
    sink.records_stream() && sink.records_progress()
}

/// Whether a job's stream keeps its position, lease and snapshot progress in the target: asked
/// (`target`), or `auto` with every streaming flow's sink able to and all of them writing to one
/// target (asked, that is checked when the stream starts, by `stream::store`).
pub fn streams_in_target(job: &Job) -> bool {
    let spec = &job.spec;
    let streams: Vec<FlowRef<'_>> = spec
        .flows_in_order()
        .filter(|f| f.flow.mode == Mode::Stream)
        .collect();
    match spec.job.checkpoint.store {
        Store::Local => false,
        Store::Target => true,
        Store::Auto => {
            streams
                .iter()
                .all(|f| keeps_streams(&job.plugins[f.index].sink))
                && streams
                    .iter()
                    .all(|f| stream_target(job, *f) == stream_target(job, streams[0]))
        }
    }
}

/// Where a streaming flow writes, as far as its stream's records go: the sink library, its
/// address and database.
pub fn stream_target(
    job: &Job,
    flow: FlowRef<'_>,
) -> (
    std::path::PathBuf,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
) {
    let o = &flow.flow.sink.options;
    let address = o.get("uri").or_else(|| o.get("url")).cloned();
    let plugin = &job.plugins[flow.index].sink;
    (plugin.path.clone(), address, o.get("database").cloned())
}

/// A spec that asks for progress in the target (`checkpoint.store: target`, or `shards`) names a
/// sink that can keep it.
fn keeps_progress(flow: FlowRef<'_>, sink: &Plugin) -> Result<(), SpecError> {
    let job = &flow.spec.job;
    if sink.records_progress() {
        return Ok(());
    }
    let (key, what) = match (job.checkpoint.store, job.shards) {
        (Store::Target, _) => ("checkpoint.store", "is `target`"),
        (_, Some(n)) if n > 1 => (
            "shards",
            "splits the job into shards, which share their plan and progress through the target",
        ),
        _ => return Ok(()),
    };
    Err(flow.spec.error(
        key,
        format!(
            "{what}, but the sink plugin `{}` of flow `{}` cannot keep progress in the target",
            sink.name, flow.flow.name
        ),
    ))
}

/// A plugin's refusal of one of its options, at the option's line: `sink.options.query`.
pub fn option_error(flow: FlowRef<'_>, role: &str, error: &ConfigError) -> SpecError {
    if error.key.is_empty() {
        flow.error(&format!("{role}.options"), error.message.clone())
    } else {
        flow.error(
            &format!("{role}.options.{}", error.key),
            error.message.clone(),
        )
    }
}
