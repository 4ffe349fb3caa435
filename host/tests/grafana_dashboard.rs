//! The Grafana dashboard for streaming jobs (`deploy/grafana/etlhost-stream.json`) queries only
//! metrics etlhost exports: a metric renamed in the host, or misspelt in the dashboard, leaves a
//! panel empty without any error in Grafana, so it must fail here instead.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/etlhost-stream.json")
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every panel, those inside a collapsed row included, as (title, panel).
fn panels(dashboard: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        for p in list.as_array().into_iter().flatten() {
            out.push((p["title"].as_str().unwrap_or("").to_string(), p));
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL `expr` of every panel's targets, with its panel's title.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|(title, p)| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_string())))
        })
        .collect()
}

/// The `etlhost_[a-z_]+` identifiers of a query: the metric names it selects.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("etlhost_") {
        // A longer identifier that merely ends in `etlhost_` is not one of ours.
        let inside_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if !inside_word {
            names.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

#[test]
fn every_query_names_an_exported_metric() {
    let exported: BTreeSet<String> = etlhost::stream::exported_metric_names()
        .into_iter()
        .collect();
    let queries = queries(&dashboard());
    assert!(!queries.is_empty(), "no queries in the dashboard");
    for (panel, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "panel {panel:?}: its query names no etlhost metric: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {panel:?}: {name} is not a metric etlhost exports (counters end in _total); exported: {exported:?}; query: {expr}"
            );
        }
    }
}

#[test]
fn the_dashboard_shows_lag_changes_failures_roles_and_the_lease() {
    let queried: BTreeSet<String> = queries(&dashboard())
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    for wanted in [
        "etlhost_stream_lag_seconds",
        "etlhost_stream_bytes_behind",
        "etlhost_stream_changes_by_kind_total",
        "etlhost_stream_failed_changes_total",
        "etlhost_stream_cascaded_changes_total",
        "etlhost_stream_role",
        "etlhost_stream_lease_holder",
        "etlhost_stream_lease_epoch",
        "etlhost_stream_takeovers_total",
    ] {
        assert!(
            queried.contains(wanted),
            "no panel of the dashboard queries {wanted}; queried: {queried:?}"
        );
    }
}

/// Importable anywhere: the Prometheus data source is the `datasource` variable, not the uid of
/// the Grafana it was made on, and every panel and query uses it.
#[test]
fn every_panel_uses_the_datasource_variable() {
    let d = dashboard();
    let variables = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable named `datasource`"
    );
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {} is older than Grafana 10's",
        d["schemaVersion"]
    );
    for (title, p) in panels(&d) {
        if p["type"] == "row" {
            continue;
        }
        let uses = |ds: &Value| ds["uid"] == "${datasource}";
        assert!(
            uses(&p["datasource"]),
            "panel {title:?}: datasource {}",
            p["datasource"]
        );
        for t in p["targets"].as_array().into_iter().flatten() {
            assert!(
                uses(&t["datasource"]),
                "panel {title:?}: a query's datasource {}",
                t["datasource"]
            );
        }
    }
}

#[test]
fn metric_names_are_found_whole() {
    assert_eq!(
        metric_names(
            r#"sum by (kind) (rate(etlhost_stream_changes_by_kind_total{instance=~"$instance"}[5m])) and on(instance) (etlhost_stream_role{role="active"} == 1)"#
        ),
        [
            "etlhost_stream_changes_by_kind_total",
            "etlhost_stream_role"
        ]
    );
    assert!(metric_names("foo_etlhost_bar").is_empty());
}
