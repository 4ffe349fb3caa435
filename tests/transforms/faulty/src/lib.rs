//! Misbehaves on the rows whose `id` is configured: `trap_on` panics, `spin_on` loops forever,
//! `hog_on` allocates without end, `error_on` answers a row error, `expand_on` makes two rows of
//! one, `drop_on` drops it, `hold_on` drops it and gives it back at `finish`. Every other row is
//! kept.
//!
//! Built twice: for the `transform` world, and with the cargo feature `encoded` for the
//! `encoded-transform` world, so both of the host's paths meet the same misbehaviour.

use serde_json::Value as Json;

struct Faulty {
    config: Json,
    /// Rows held back until `finish`, with their columns.
    #[cfg(not(feature = "encoded"))]
    held: Option<etlhost_transform::Batch>,
    #[cfg(feature = "encoded")]
    held: Option<etlhost_transform::encoded::Batch>,
}

/// What to make of a row that does not trap, spin or hog.
enum Fate {
    Keep,
    Drop,
    Expand,
    Hold,
    Error(String),
}

impl Faulty {
    fn new(config: &str) -> Result<Self, String> {
        let config: Json = serde_json::from_str(config).map_err(|e| e.to_string())?;
        if config.get("refuse").is_some() {
            return Err("told to refuse".into());
        }
        Ok(Faulty { config, held: None })
    }

    fn on(&self, key: &str, id: Option<i64>) -> bool {
        match (&self.config[key], id) {
            (Json::Array(a), Some(id)) => a.iter().any(|v| v.as_i64() == Some(id)),
            (v, Some(id)) => v.as_i64() == Some(id),
            _ => false,
        }
    }

    /// The row with `id`'s fate, after misbehaving if told to.
    fn fate(&self, id: Option<i64>) -> Fate {
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
        if self.on("error_on", id) {
            Fate::Error(format!("id {} is not welcome", id.unwrap_or_default()))
        } else if self.on("expand_on", id) {
            Fate::Expand
        } else if self.on("drop_on", id) {
            Fate::Drop
        } else if self.on("hold_on", id) {
            Fate::Hold
        } else {
            Fate::Keep
        }
    }
}

#[cfg(not(feature = "encoded"))]
mod values {
    use super::{Fate, Faulty};
    use etlhost_transform::{column_index, Batch, Outcome, Output, Transform, Value};

    fn id(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Uint(u) => Some(*u as i64),
            _ => None,
        }
    }

    impl Transform for Faulty {
        fn new(config: &str) -> Result<Self, String> {
            Faulty::new(config)
        }

        fn process(&mut self, input: Batch) -> Result<Output, String> {
            let i = column_index(&input.columns, "id")?;
            let mut outcomes = Vec::with_capacity(input.rows.len());
            for row in &input.rows {
                outcomes.push(match self.fate(id(&row[i])) {
                    Fate::Keep => Outcome::Keep,
                    Fate::Drop => Outcome::Drop,
                    Fate::Expand => Outcome::Expand(vec![row.clone(), row.clone()]),
                    Fate::Hold => {
                        let held = self.held.get_or_insert_with(|| Batch {
                            columns: input.columns.clone(),
                            rows: Vec::new(),
                        });
                        held.rows.push(row.clone());
                        Outcome::Drop
                    }
                    Fate::Error(reason) => Outcome::Error(reason),
                });
            }
            Ok(Output {
                columns: input.columns,
                outcomes,
            })
        }

        fn finish(&mut self) -> Result<Batch, String> {
            Ok(self.held.take().unwrap_or(Batch {
                columns: Vec::new(),
                rows: Vec::new(),
            }))
        }
    }

    etlhost_transform::transform!(Faulty);
}

#[cfg(feature = "encoded")]
mod encoded {
    use super::{Fate, Faulty};
    use etlhost_transform::encoded::{Batch, Output, Rows, Transform, Value};

    fn id(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => Some(*u as i64),
            _ => None,
        }
    }

    impl Transform for Faulty {
        fn new(config: &str) -> Result<Self, String> {
            Faulty::new(config)
        }

        fn process(&mut self, rows: &Rows) -> Result<Output, String> {
            let ids = rows.column("id")?;
            let mut out = Output::new(rows.columns());
            // Decoded only for the rows that expand.
            let mut all: Option<Vec<Vec<Value>>> = None;
            for (r, v) in ids.iter().enumerate() {
                match self.fate(id(v)) {
                    Fate::Keep => out.keep(),
                    Fate::Drop => out.filter_out(),
                    Fate::Expand => {
                        let row = &all.get_or_insert_with(|| rows.decode().rows)[r];
                        out.expand(&[row, row]);
                    }
                    Fate::Hold => {
                        let row = all.get_or_insert_with(|| rows.decode().rows)[r].clone();
                        let held = self
                            .held
                            .get_or_insert_with(|| Batch::new(rows.columns().clone()));
                        held.rows.push(row);
                        out.filter_out();
                    }
                    Fate::Error(reason) => out.error(reason),
                }
            }
            Ok(out)
        }

        fn finish(&mut self) -> Result<Option<Batch>, String> {
            Ok(self.held.take())
        }
    }

    etlhost_transform::encoded_transform!(Faulty);
}
