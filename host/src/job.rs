//! A job ready to run: its spec, with every flow's plugins loaded and their options validated.

use std::sync::Arc;

use etlhost_plugin_sdk::ConfigError;

use crate::plugin::{self, Kind, Plugin, PluginError};
use crate::spec::{FlowRef, Spec, SpecError};

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
                    sink: crate::target::check_sink(
                        flow,
                        crate::stream::check_sink(
                            flow,
                            load(flow, "sink", &f.sink.plugin, Kind::Sink, &f.sink.options)?,
                        )?,
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
