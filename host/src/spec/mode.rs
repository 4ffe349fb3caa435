//! The spec rules of `mode` and `snapshot`: what a streaming flow can and cannot have.

use super::{FlowRef, Mode, SpecError};

pub(super) fn check(flow: &FlowRef<'_>) -> Result<(), SpecError> {
    let f = flow.flow;
    if f.rows_query.as_deref().is_some_and(|q| q.trim().is_empty()) {
        return Err(flow.error("rows_query", "must not be empty"));
    }
    if f.mode == Mode::Batch {
        if !f.snapshot {
            return Err(flow.error("snapshot", "has no effect without mode: stream"));
        }
        return Ok(());
    }
    if f.source.cursor_column.is_some() {
        return Err(flow.error(
            "source.cursor_column",
            "a streaming flow sees every change: drop cursor_column",
        ));
    }
    if !f.transforms.is_empty() {
        return Err(flow.error(
            "transforms",
            "transforms are not applied to streamed changes yet: use them in batch flows",
        ));
    }
    if !f.source.options.contains_key("table") {
        return Err(flow.error(
            "source.options.table",
            "missing: a streaming flow follows one table's changes (not a `query`)",
        ));
    }
    Ok(())
}
