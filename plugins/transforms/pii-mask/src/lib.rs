//! `pii-mask`: replaces the values of chosen columns with the hex SHA-256 of a salt and the value,
//! so equal inputs still match (joins keep working) but the original cannot be read back.
//!
//! ```yaml
//! config: {columns: [email], salt: "${PII_SALT}"}
//! ```

use etlhost_transform::{column_index, Batch, ColumnType, Outcome, Output, Transform, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

struct Mask {
    columns: Vec<String>,
    salt: String,
}

impl Transform for Mask {
    fn new(config: &str) -> Result<Self, String> {
        let c: Json = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let columns = c["columns"]
            .as_array()
            .ok_or("columns: expected a list of names")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("columns: expected names")
            })
            .collect::<Result<_, _>>()?;
        let salt = c
            .get("salt")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        Ok(Mask { columns, salt })
    }

    fn process(&mut self, input: Batch) -> Result<Output, String> {
        let idx: Vec<usize> = self
            .columns
            .iter()
            .map(|c| column_index(&input.columns, c))
            .collect::<Result<_, _>>()?;
        let mut columns = input.columns;
        for &i in &idx {
            columns[i].ty = ColumnType::Text;
        }
        let outcomes = input
            .rows
            .into_iter()
            .map(|mut row| {
                for &i in &idx {
                    let plain = match &row[i] {
                        Value::Null => continue,
                        Value::Text(s) | Value::Decimal(s) => s.clone().into_bytes(),
                        Value::Bytes(b) => b.clone(),
                        Value::Int(n) => n.to_string().into_bytes(),
                        Value::Uint(n) => n.to_string().into_bytes(),
                        _ => {
                            return Outcome::Error(format!(
                                "column {}: cannot mask this type",
                                columns[i].name
                            ))
                        }
                    };
                    let mut h = Sha256::new();
                    h.update(self.salt.as_bytes());
                    h.update(&plain);
                    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                    row[i] = Value::Text(hex);
                }
                Outcome::Replace(row)
            })
            .collect();
        Ok(Output { columns, outcomes })
    }
}

etlhost_transform::transform!(Mask);
