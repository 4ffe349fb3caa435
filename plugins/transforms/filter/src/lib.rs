//! `filter`: keeps the rows whose column compares true with a value; drops the others (counted as
//! filtered). A row whose value cannot be compared fails with the reason.
//!
//! On the encoded world: only the compared column is decoded, and a batch whose rows are all kept
//! goes on as the source's bytes.
//!
//! ```yaml
//! config: {column: age, op: ">=", value: 18}     # op: == != < <= > >=
//! ```

use std::cmp::Ordering;

use etlhost_transform::encoded::{Output, Rows, Transform, Value};
use serde_json::Value as Json;

struct Filter {
    column: String,
    op: String,
    value: Json,
}

fn compare(v: &Value, with: &Json) -> Result<Option<Ordering>, String> {
    let num = |x: f64| {
        with.as_f64()
            .map(|w| x.partial_cmp(&w))
            .ok_or("the config's value is not a number")
    };
    Ok(match v {
        Value::Null => None,
        Value::Int(i) => num(*i as f64)?,
        Value::UInt(u) => num(*u as f64)?,
        Value::Float(f) => num(*f)?,
        Value::Decimal(s) => num(s.parse().map_err(|_| format!("bad decimal {s}"))?)?,
        Value::String(s) => match with {
            Json::String(w) => Some(s.as_str().cmp(w.as_str())),
            _ => return Err(format!("holds text {s:?}, not a number")),
        },
        Value::Bool(b) => match with {
            Json::Bool(w) => Some(b.cmp(w)),
            _ => return Err("holds a boolean".into()),
        },
        _ => return Err("holds a value that cannot be compared".into()),
    })
}

impl Transform for Filter {
    fn new(config: &str) -> Result<Self, String> {
        let c: Json = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let column = c["column"].as_str().ok_or("column: missing")?.to_string();
        let op = c
            .get("op")
            .and_then(Json::as_str)
            .unwrap_or("==")
            .to_string();
        if !["==", "!=", "<", "<=", ">", ">="].contains(&op.as_str()) {
            return Err(format!("op: {op:?} is not one of == != < <= > >="));
        }
        let value = c.get("value").cloned().ok_or("value: missing")?;
        Ok(Filter { column, op, value })
    }

    fn process(&mut self, rows: &Rows) -> Result<Output, String> {
        let mut out = Output::new(rows.columns());
        for v in rows.column(&self.column)? {
            match compare(&v, &self.value) {
                Err(e) => out.error(format!("column {}: {e}", self.column)),
                Ok(None) => out.filter_out(),
                Ok(Some(o)) => {
                    let keep = match self.op.as_str() {
                        "==" => o.is_eq(),
                        "!=" => o.is_ne(),
                        "<" => o.is_lt(),
                        "<=" => o.is_le(),
                        ">" => o.is_gt(),
                        _ => o.is_ge(),
                    };
                    if keep {
                        out.keep()
                    } else {
                        out.filter_out()
                    }
                }
            }
        }
        Ok(out)
    }
}

etlhost_transform::encoded_transform!(Filter);
