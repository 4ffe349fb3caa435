//! Misbehaves on the rows whose `id` is configured: `trap_on` panics, `spin_on` loops forever,
//! `hog_on` allocates without end, `error_on` answers a row error, `expand_on` makes two rows of
//! one, `drop_on` drops it. Every other row is kept. `hold` keeps the last row back until finish.

use etlhost_transform::{column_index, Batch, Outcome, Output, Transform, Value};
use serde_json::Value as Json;

struct Faulty {
    config: Json,
}

fn id(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Uint(u) => Some(*u as i64),
        _ => None,
    }
}

impl Faulty {
    fn on(&self, key: &str, id: Option<i64>) -> bool {
        match (&self.config[key], id) {
            (Json::Array(a), Some(id)) => a.iter().any(|v| v.as_i64() == Some(id)),
            (v, Some(id)) => v.as_i64() == Some(id),
            _ => false,
        }
    }
}

impl Transform for Faulty {
    fn new(config: &str) -> Result<Self, String> {
        let config: Json = serde_json::from_str(config).map_err(|e| e.to_string())?;
        if config.get("refuse").is_some() {
            return Err("told to refuse".into());
        }
        Ok(Faulty { config })
    }

    fn process(&mut self, input: Batch) -> Result<Output, String> {
        let i = column_index(&input.columns, "id")?;
        let mut outcomes = Vec::with_capacity(input.rows.len());
        for row in &input.rows {
            let id = id(&row[i]);
            if self.on("trap_on", id) {
                panic!("boom at id {}", id.unwrap_or_default());
            }
            if self.on("spin_on", id) {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            if self.on("hog_on", id) {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            outcomes.push(if self.on("error_on", id) {
                Outcome::Error(format!("id {} is not welcome", id.unwrap_or_default()))
            } else if self.on("expand_on", id) {
                Outcome::Expand(vec![row.clone(), row.clone()])
            } else if self.on("drop_on", id) {
                Outcome::Drop
            } else {
                Outcome::Keep
            });
        }
        Ok(Output {
            columns: input.columns,
            outcomes,
        })
    }
}

etlhost_transform::transform!(Faulty);
