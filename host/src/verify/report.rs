//! What `etlhost verify` found per flow, as a table for people and as JSON.

use std::fmt;

use serde_json::{json, Value as J};

use super::canonical::Canon;

/// How many keys of each kind of difference are kept and shown.
pub const FIRST: usize = 5;

/// Rows of one kind of difference: how many, and the first few keys (with the columns that
/// differ, for `different`).
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub count: u64,
    pub first: Vec<(Vec<Canon>, Option<Vec<String>>)>,
}

/// The comparison of one flow.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub key: Vec<String>,
    pub source_rows: u64,
    pub graph_rows: u64,
    pub missing: Found,
    pub extra: Found,
    pub different: Found,
    pub duplicate_source_keys: u64,
    pub source_null_keys: u64,
    pub graph_null_keys: u64,
    pub chunks: u64,
    pub chunks_differing: u64,
    /// `--sample`: how many keys were looked up.
    pub sampled: Option<u64>,
}

impl Found {
    fn append(&mut self, other: Found) {
        self.count += other.count;
        let room = FIRST.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }
}

impl Tally {
    /// Adds the tally of a later split.
    pub fn add(&mut self, part: Tally) {
        self.source_rows += part.source_rows;
        self.graph_rows += part.graph_rows;
        self.missing.append(part.missing);
        self.extra.append(part.extra);
        self.different.append(part.different);
        self.duplicate_source_keys += part.duplicate_source_keys;
        self.source_null_keys += part.source_null_keys;
        self.graph_null_keys += part.graph_null_keys;
        self.chunks += part.chunks;
        self.chunks_differing += part.chunks_differing;
    }

    pub fn matches(&self) -> bool {
        self.missing.count == 0
            && self.extra.count == 0
            && self.different.count == 0
            && self.duplicate_source_keys == 0
    }

    fn key_text(&self, key: &[Canon]) -> String {
        let parts: Vec<String> = self
            .key
            .iter()
            .zip(key)
            .map(|(name, v)| format!("{name}={}", v.show()))
            .collect();
        match parts.len() {
            1 => parts.into_iter().next().expect("one"),
            _ => format!("({})", parts.join(", ")),
        }
    }

    fn keys_text(&self, found: &Found) -> String {
        let mut shown: Vec<String> = found
            .first
            .iter()
            .map(|(k, cols)| match cols {
                Some(c) => format!("{} [{}]", self.key_text(k), c.join(", ")),
                None => self.key_text(k),
            })
            .collect();
        if found.count > found.first.len() as u64 {
            shown.push("...".into());
        }
        shown.join(", ")
    }
}

pub enum Outcome {
    Compared(Tally),
    NotVerifiable(String),
}

pub struct FlowReport {
    pub flow: String,
    pub outcome: Outcome,
}

impl FlowReport {
    pub fn status(&self) -> &'static str {
        match &self.outcome {
            Outcome::Compared(t) if t.matches() => "match",
            Outcome::Compared(_) => "DIFFERENT",
            Outcome::NotVerifiable(_) => "not verifiable",
        }
    }

    pub fn to_json(&self) -> J {
        match &self.outcome {
            Outcome::NotVerifiable(reason) => {
                json!({"flow": self.flow, "status": "not_verifiable", "reason": reason})
            }
            Outcome::Compared(t) => {
                let keys = |f: &Found| -> J {
                    f.first
                        .iter()
                        .map(|(k, cols)| {
                            let key: serde_json::Map<String, J> = t
                                .key
                                .iter()
                                .zip(k)
                                .map(|(n, v)| (n.clone(), J::String(v.show())))
                                .collect();
                            match cols {
                                Some(c) => json!({"key": key, "columns": c}),
                                None => json!({"key": key}),
                            }
                        })
                        .collect()
                };
                json!({
                    "flow": self.flow,
                    "status": if t.matches() { "match" } else { "different" },
                    "sampled_keys": t.sampled,
                    "source_rows": t.source_rows,
                    "graph_entities": t.graph_rows,
                    "missing": t.missing.count,
                    "extra": t.extra.count,
                    "different": t.different.count,
                    "duplicate_source_keys": t.duplicate_source_keys,
                    "source_null_keys": t.source_null_keys,
                    "graph_null_keys": t.graph_null_keys,
                    "first_missing": keys(&t.missing),
                    "first_extra": keys(&t.extra),
                    "first_different": keys(&t.different),
                    "chunks": t.chunks,
                    "chunks_differing": t.chunks_differing,
                })
            }
        }
    }
}

impl fmt::Display for FlowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match &self.outcome {
            Outcome::NotVerifiable(reason) => {
                return writeln!(f, "flow {}: not verifiable: {reason}", self.flow)
            }
            Outcome::Compared(t) => t,
        };
        match t.sampled {
            Some(n) => writeln!(
                f,
                "flow {}: {} (sample of {n} keys)",
                self.flow,
                self.status()
            )?,
            None => writeln!(f, "flow {}: {}", self.flow, self.status())?,
        }
        let row = |f: &mut fmt::Formatter<'_>, label: &str, n: u64, keys: String| {
            if keys.is_empty() {
                writeln!(f, "  {label:<18} {n}")
            } else {
                writeln!(f, "  {label:<18} {n}  {keys}")
            }
        };
        row(f, "rows in source", t.source_rows, String::new())?;
        row(f, "entities in graph", t.graph_rows, String::new())?;
        row(f, "missing", t.missing.count, t.keys_text(&t.missing))?;
        row(f, "extra", t.extra.count, t.keys_text(&t.extra))?;
        row(f, "different", t.different.count, t.keys_text(&t.different))?;
        if t.duplicate_source_keys > 0 {
            row(
                f,
                "duplicate keys",
                t.duplicate_source_keys,
                "(in the source: the key does not identify a row)".into(),
            )?;
        }
        Ok(())
    }
}
