//! A flow's `verify:` block: how `etlhost verify` finds the graph's side of the flow.

use serde::Deserialize;

use super::FlowRef;
use super::SpecError;

/// The graph's side of a flow, for `etlhost verify`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// A read-only query (Cypher for the bolt sink) returning one row per entity the flow wrote,
    /// with columns named like the source's, ordered by `key`. `$lo` and `$hi` bound the first
    /// key column to `[lo, hi)`; either is NULL when that side is unbounded.
    pub query: String,
    /// The columns that identify a row on both sides, in order; the first one orders the rows
    /// (and must be the source's `partition_column` when it has one).
    pub key: Vec<String>,
    /// The columns compared beside the key; default: every other column the query returns.
    pub compare: Option<Vec<String>>,
    /// For `--sample`: the same rows as `query`, for the first key column's values in the list
    /// `$keys` (a query the graph answers from an index). Without it, `--sample` runs `query`
    /// once per key.
    pub lookup: Option<String>,
}

/// Rules serde cannot express, reported at the block's keys.
pub(super) fn check(flow: &FlowRef<'_>, v: &VerifySpec) -> Result<(), SpecError> {
    if v.query.trim().is_empty() {
        return Err(flow.error("verify.query", "must not be empty"));
    }
    if v.lookup.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(flow.error("verify.lookup", "must not be empty"));
    }
    if v.key.is_empty() {
        return Err(flow.error("verify.key", "must name at least one column"));
    }
    for (i, k) in v.key.iter().enumerate() {
        if k.trim().is_empty() {
            return Err(flow.error(&format!("verify.key[{i}]"), "must not be empty"));
        }
        if v.key[..i].contains(k) {
            return Err(flow.error(
                &format!("verify.key[{i}]"),
                format!("`{k}` is already in the key"),
            ));
        }
    }
    for (i, c) in v.compare.iter().flatten().enumerate() {
        if v.key.contains(c) {
            return Err(flow.error(
                &format!("verify.compare[{i}]"),
                format!("`{c}` is a key column: keys are always compared"),
            ));
        }
    }
    if let Some(p) = &flow.flow.source.partition_column {
        let p = &p.columns()[0];
        if p != &v.key[0] {
            return Err(flow.error(
                "verify.key[0]",
                format!(
                    "`{}` must be the source's partition_column `{p}`: splits are compared by key range",
                    v.key[0]
                ),
            ));
        }
    }
    Ok(())
}
