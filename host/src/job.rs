//! A job ready to run: its spec, with both plugins loaded and their options validated.

use std::sync::Arc;

use crate::plugin::{self, Kind, Plugin, PluginError};
use crate::spec::{Spec, SpecError};

pub struct Job {
    pub spec: Spec,
    pub source: Arc<Plugin>,
    pub sink: Arc<Plugin>,
}

impl Job {
    /// Loads the plugins and has each validate its options; every error points into the spec.
    pub fn prepare(spec: Spec) -> Result<Job, SpecError> {
        let j = &spec.job;
        let source = load(
            &spec,
            "source",
            &j.source.plugin,
            Kind::Source,
            &j.source.options,
        )?;
        let sink = load(&spec, "sink", &j.sink.plugin, Kind::Sink, &j.sink.options)?;
        Ok(Job { spec, source, sink })
    }
}

fn load(
    spec: &Spec,
    role: &str,
    name: &str,
    kind: Kind,
    options: &serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<Plugin>, SpecError> {
    let key = format!("{role}.plugin");
    let path = plugin::resolve(name, spec.dir()).map_err(|e| spec.error(&key, e.0))?;
    let p = plugin::load(&path).map_err(|e| spec.error(&key, e.0))?;
    if p.kind != kind {
        return Err(spec.error(
            &key,
            format!(
                "plugin '{}' ({}) is a {}, but {role} needs a {kind}",
                p.name,
                path.display(),
                p.kind
            ),
        ));
    }
    p.validate(options).map_err(|e| match e {
        PluginError::Config { error, .. } if error.key.is_empty() => {
            spec.error(&format!("{role}.options"), error.message)
        }
        PluginError::Config { error, .. } => {
            spec.error(&format!("{role}.options.{}", error.key), error.message)
        }
        other => spec.error(&format!("{role}.options"), other.to_string()),
    })?;
    Ok(p)
}
