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
        None
    }
}
