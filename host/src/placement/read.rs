//! `sink.endpoints.placement`: before a grouped relationship flow, ask the target where it stores
//! the nodes, so that the flow's rows are grouped by the nodes' places (ArcadeDB buckets) instead
//! of their keys' hashes (see `pipeline::delivery::grouped`).

use std::sync::Arc;

use etlhost_plugin_sdk::query::QueryRequest;
use etlhost_plugin_sdk::Value;

use super::{Placement, Places, PlacesBuilder, MAX_PLACES};
use crate::error::RunError;
use crate::job::Job;
use crate::plugin::{PluginError, QueryHandle};
use crate::spec::{FlowRef, PlacementSpec};

/// Rows per fetch: a placement row is a key and a short string.
const FETCH: usize = 10_000;

/// The flow's placement, read from the target; `None` when the flow has none, has one writer
/// (nothing is grouped) or the target's answer cannot separate anything (grouped by hash then).
pub fn read(job: &Job, flow: FlowRef<'_>) -> Result<Option<Placement>, RunError> {
    let f = flow.flow;
    let Some(endpoints) = &f.sink.endpoints else {
        return Ok(None);
    };
    let Some(spec) = &endpoints.placement else {
        return Ok(None);
    };
    if f.sink.parallelism <= 1 {
        return Ok(None);
    }
    let sink = &job.plugins[flow.index].sink;
    let key = |k: &str| format!("sink.endpoints.{k}");
    if !sink.can_query() {
        return Err(RunError::Config(flow.error(
            &key(spec.queries()[0].0),
            format!(
                "the sink plugin cannot read (plugin '{}' exports no `{}`)",
                sink.name,
                etlhost_plugin_sdk::query::SINK_QUERY_SYMBOL
            ),
        )));
    }
    let groups = 2 * f.sink.parallelism + 1;
    let started = std::time::Instant::now();
    let places = match spec {
        PlacementSpec::Both(q) => {
            // The spec checked that both ends have keys of one width.
            let p = places(job, flow, "placement", q, endpoints.start.len())?;
            p.map(|p| (p.clone(), p))
        }
        PlacementSpec::Each(e) => {
            let start = places(
                job,
                flow,
                "placement.start",
                &e.start,
                endpoints.start.len(),
            )?;
            let end = places(job, flow, "placement.end", &e.end, endpoints.end.len())?;
            start.zip(end)
        }
    };
    let Some((start, end)) = places else {
        return Ok(None);
    };
    let fewest = start.places().min(end.places());
    if fewest <= 1 {
        tracing::warn!(
            "sink.endpoints.placement: the target stores the nodes in {fewest} place(s), which separates nothing: the rows are grouped by their keys' hashes (on ArcadeDB, create the node type with {groups} buckets before loading it: `CREATE VERTEX TYPE <label> BUCKETS {groups}`)"
        );
        return Ok(None);
    }
    if fewest < groups {
        tracing::warn!(
            "sink.endpoints.placement: the nodes are in {fewest} places, fewer than the {groups} groups of {} writers: at most {} batches are written at once (on ArcadeDB, create the node type with {groups} buckets)",
            f.sink.parallelism,
            fewest / 2
        );
    }
    tracing::info!(
        "sink.endpoints.placement: {} start and {} end nodes in {} and {} places, read in {:.1} s",
        start.len(),
        end.len(),
        start.places(),
        end.places(),
        started.elapsed().as_secs_f64()
    );
    Ok(Some(Placement { start, end }))
}

/// Runs one placement query: each row's `key` (a list for a composite key of `width` columns)
/// and the `place` it is stored at. `None` when the query names more places than a placement can
/// use (one per node).
fn places(
    job: &Job,
    flow: FlowRef<'_>,
    key: &str,
    query: &str,
    width: usize,
) -> Result<Option<Arc<Places>>, RunError> {
    let full = format!("sink.endpoints.{key}");
    let fail = |message: String| RunError::Config(flow.error(&full, message));
    let request = QueryRequest {
        query: query.to_string(),
        params: Vec::new(),
        fetch_size: FETCH,
    };
    let plugin = job.plugins[flow.index].sink.clone();
    let mut rows = QueryHandle::open(plugin, &flow.flow.sink.options, &request)
        .expect("checked: the sink can read")
        .map_err(|e| query_failed(&fail, e))?;
    let mut builder = PlacesBuilder::default();
    let mut columns = None;
    while let Some(batch) = rows.next_batch().map_err(|e| query_failed(&fail, e))? {
        let (k, p) = match columns {
            Some(c) => c,
            None => {
                let find = |name: &str| batch.schema.iter().position(|c| c.name == name);
                let c = match (find("key"), find("place")) {
                    (Some(k), Some(p)) => (k, p),
                    (k, _) => {
                        let have: Vec<&str> =
                            batch.schema.iter().map(|c| c.name.as_str()).collect();
                        return Err(fail(format!(
                            "the query returns no `{}` column (it returns {}); return each node's key and place, e.g. `RETURN n.id AS key, elementId(n) AS place`",
                            if k.is_none() { "key" } else { "place" },
                            if have.is_empty() { "nothing".to_string() } else { have.join(", ") }
                        )));
                    }
                };
                columns = Some(c);
                c
            }
        };
        for row in &batch.rows {
            let values: &[Value] = match &row[k] {
                Value::Null => continue,
                Value::List(l) => l,
                one => std::slice::from_ref(one),
            };
            if values.len() != width {
                return Err(fail(format!(
                    "the query's `key` holds {} value(s) but the endpoint names {width} column(s); return a composite key as a list in the columns' order, e.g. `[n.tenant, n.id] AS key`",
                    values.len()
                )));
            }
            if builder.add(values, &row[p]).is_err() {
                tracing::warn!(
                    "{full}: the query returns more than {MAX_PLACES} distinct places (a place per node?): the rows are grouped by their keys' hashes; return the bucket, e.g. ArcadeDB's `elementId(n)`"
                );
                return Ok(None);
            }
        }
    }
    Ok(Some(Arc::new(builder.finish())))
}

fn query_failed(fail: &impl Fn(String) -> RunError, e: PluginError) -> RunError {
    fail(format!("the query failed: {e}"))
}
