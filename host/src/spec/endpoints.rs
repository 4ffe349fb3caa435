//! `sink.endpoints`: the columns that find a relationship's start and end nodes, so that the host
//! can group the flow's rows and write them in parallel without two writers touching one node.

use serde::Deserialize;

/// `endpoints: {start: a_id, end: b_id}`; a composite key is a list (`start: [tenant, id]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsSpec {
    #[serde(deserialize_with = "columns")]
    pub start: Vec<String>,
    #[serde(deserialize_with = "columns")]
    pub end: Vec<String>,
    /// Read queries that return where the target stores each node (`key`, `place`): the nodes'
    /// groups are their places instead of their keys' hashes (see `pipeline::delivery::grouped`).
    #[serde(default)]
    pub placement: Option<PlacementSpec>,
}

/// `placement: "<query>"` for both ends, or `placement: {start: "<query>", end: "<query>"}` when
/// start and end nodes are of different kinds whose keys may coincide (bipartite graphs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "a read query returning `key` and `place`, or `{start: <query>, end: <query>}`"
)]
pub enum PlacementSpec {
    Both(String),
    Each(EachPlacement),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EachPlacement {
    pub start: String,
    pub end: String,
}

impl PlacementSpec {
    /// The queries with their keys below `sink.endpoints`: one for both ends, or one for each.
    pub fn queries(&self) -> Vec<(&'static str, &str)> {
        match self {
            PlacementSpec::Both(q) => vec![("placement", q)],
            PlacementSpec::Each(e) => {
                vec![("placement.start", &e.start), ("placement.end", &e.end)]
            }
        }
    }
}

fn columns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(match OneOrMore::deserialize(d)? {
        OneOrMore::One(c) => vec![c],
        OneOrMore::More(cs) => cs,
    })
}

impl EndpointsSpec {
    /// The key (under `sink.endpoints`) and the reason of what is wrong, if anything.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        for (key, cols) in [("start", &self.start), ("end", &self.end)] {
            if cols.is_empty() {
                return Some((key, "must name at least one column"));
            }
            if cols.iter().any(|c| c.trim().is_empty()) {
                return Some((key, "a column name must not be empty"));
            }
        }
        if matches!(self.placement, Some(PlacementSpec::Both(_)))
            && self.start.len() != self.end.len()
        {
            return Some((
                "placement",
                "one query serves both ends only when `start` and `end` name as many columns; give one for each: `placement: {start: ..., end: ...}`",
            ));
        }
        for (key, query) in self.placement.iter().flat_map(|p| p.queries()) {
            if query.trim().is_empty() {
                return Some((key, "must be a read query returning `key` and `place`"));
            }
        }
        None
    }
}
