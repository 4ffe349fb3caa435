//! `{{name}}`: upper-cases a text column and adds its length in characters as a new column
//! `<column>_length`. A NULL stays NULL (its length too); a value that is not text sends its row
//! to the dead-letter file.
//!
//! ```yaml
//! config: {column: name}     # the default
//! ```
//!
//! Built on the SDK's `encoded` world: the batch crosses into the component as one buffer and is
//! decoded here. A transform that only filters or keeps rows can decode a single column
//! (`rows.column("age")`) and answer `out.keep()` / `out.filter_out()` per row.

use etlhost_transform::encoded::{Column, ColumnType, Output, Rows, Transform, Value};
use serde_json::Value as Json;

struct Upper {
    column: String,
    length: String,
}

impl Transform for Upper {
    fn new(config: &str) -> Result<Self, String> {
        let config: serde_json::Map<String, Json> =
            serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if let Some(key) = config.keys().find(|k| k.as_str() != "column") {
            return Err(format!("unknown config key `{key}` (known: column)"));
        }
        let column = match config.get("column") {
            None => "name".to_string(),
            Some(Json::String(c)) => c.clone(),
            Some(other) => return Err(format!("column: expected text, got {other}")),
        };
        Ok(Upper {
            length: format!("{column}_length"),
            column,
        })
    }

    fn process(&mut self, rows: &Rows) -> Result<Output, String> {
        let at = rows.column_index(&self.column)?;
        let mut columns = rows.columns().to_vec();
        columns.push(Column {
            name: self.length.clone(),
            ty: ColumnType::Int,
        });
        // Every row gets a new column, so every row is replaced; a transform that changes
        // nothing for a row would answer `out.keep()` only when the columns stay the same.
        let mut out = Output::new(&columns);
        for mut row in rows.decode().rows {
            match &row[at] {
                Value::String(s) => {
                    let length = s.chars().count() as i64;
                    row[at] = Value::String(s.to_uppercase());
                    row.push(Value::Int(length));
                    out.replace(&row);
                }
                Value::Null => {
                    row.push(Value::Null);
                    out.replace(&row);
                }
                other => out.error(format!("{} is not text: {other:?}", self.column)),
            }
        }
        Ok(out)
    }
}

etlhost_transform::encoded_transform!(Upper);
