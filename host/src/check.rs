//! `etlhost validate` beyond the spec: each flow's sink connects and checks that it could write
//! (the bolt sink has the server compile the Cypher), without writing anything. Run start does the
//! same check inside the sink's `open`; [`sink_open_error`] reports it the same way.

use crate::error::RunError;
use crate::job::Job;
use crate::plugin::PluginError;
use crate::spec::{FlowRef, SpecError};

/// Why a check failed.
pub enum CheckError {
    /// The sink refuses an option (e.g. a query the server rejects): exit code 2.
    Config(SpecError),
    /// The sink could not check (connection refused, bad credentials): exit code 3.
    Failed(String),
}

/// Checks every flow's sink online, in run order. Returns the names of flows whose sink has no
/// online check (validated offline only).
pub fn check_sinks(job: &Job) -> Result<Vec<String>, CheckError> {
    let mut unchecked = Vec::new();
    for flow in job.spec.flows_in_order() {
        let sink = &job.plugins[flow.index].sink;
        match sink.check_sink(&flow.flow.sink.options) {
            Ok(true) => {}
            Ok(false) => unchecked.push(flow.flow.name.clone()),
            Err(PluginError::Config { error, .. }) => {
                return Err(CheckError::Config(config_error(flow, &error)))
            }
            Err(e) => {
                let what = if job.spec.multi_flow {
                    format!("flow '{}': ", flow.flow.name)
                } else {
                    String::new()
                };
                return Err(CheckError::Failed(format!("{what}sink check failed: {e}")));
            }
        }
    }
    Ok(unchecked)
}

fn config_error(flow: FlowRef<'_>, error: &etlhost_plugin_sdk::ConfigError) -> SpecError {
    crate::job::option_error(flow, "sink", error)
}

/// A sink that fails to open: an option it refuses (its query) is a spec error at the option's
/// line, anything else a start failure.
pub fn sink_open_error(flow: FlowRef<'_>, e: PluginError) -> RunError {
    match e {
        PluginError::Config { error, .. } => RunError::Config(config_error(flow, &error)),
        e => RunError::Start(format!("cannot start sink: {e}")),
    }
}
