//! `field-map`: renames, drops and computes columns.
//!
//! ```yaml
//! config:
//!   rename: {name: full_name}            # old -> new
//!   drop: [internal_note]
//!   compute: {label: "{full_name} ({id})"}  # new text column from a template of columns
//! ```

use etlhost_transform::{
    column_index, Batch, Column, ColumnType, Outcome, Output, Transform, Value,
};
use serde_json::Value as Json;

struct FieldMap {
    rename: Vec<(String, String)>,
    drop: Vec<String>,
    compute: Vec<(String, String)>,
}

enum Piece {
    Text(String),
    Column(usize),
}

fn strings(v: Option<&Json>, key: &str) -> Result<Vec<(String, String)>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("{key}.{k}: expected text")),
            })
            .collect(),
        Some(_) => Err(format!("{key}: expected a map")),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Boolean(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(s) | Value::Text(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Date(d) => d.to_string(),
        Value::Datetime(t) | Value::Time(t) | Value::Timestamp(t) => t.to_string(),
        Value::Point(p) => format!("POINT({} {})", p.x, p.y),
        Value::Nested(json) => json.clone(),
    }
}

/// `"{a} and {b}"` against the output columns.
fn template(t: &str, columns: &[Column]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {t:?}"))?;
        out.push(Piece::Text(rest[..open].to_string()));
        out.push(Piece::Column(column_index(
            columns,
            &rest[open + 1..open + close],
        )?));
        rest = &rest[open + close + 1..];
    }
    out.push(Piece::Text(rest.to_string()));
    Ok(out)
}

impl Transform for FieldMap {
    fn new(config: &str) -> Result<Self, String> {
        let c: Json = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let drop = match c.get("drop") {
            None => Vec::new(),
            Some(Json::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or("drop: expected names"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("drop: expected a list".into()),
        };
        Ok(FieldMap {
            rename: strings(c.get("rename"), "rename")?,
            drop,
            compute: strings(c.get("compute"), "compute")?,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Output, String> {
        for (old, _) in &self.rename {
            column_index(&input.columns, old)?;
        }
        // Every input column under its new name: what templates refer to.
        let renamed: Vec<Column> = input
            .columns
            .iter()
            .map(|c| {
                let name = self
                    .rename
                    .iter()
                    .find(|(old, _)| *old == c.name)
                    .map_or(c.name.clone(), |(_, new)| new.clone());
                Column { name, ty: c.ty }
            })
            .collect();
        // Output: the columns not dropped, then the computed ones.
        let kept: Vec<usize> = (0..input.columns.len())
            .filter(|i| !self.drop.contains(&input.columns[*i].name))
            .collect();
        let mut columns: Vec<Column> = kept.iter().map(|&i| renamed[i].clone()).collect();
        let mut computed = Vec::new();
        for (name, t) in &self.compute {
            computed.push(template(t, &renamed)?);
            columns.push(Column {
                name: name.clone(),
                ty: ColumnType::Text,
            });
        }
        let outcomes = input
            .rows
            .into_iter()
            .map(|row| {
                let mut out: Vec<Value> = kept.iter().map(|&i| row[i].clone()).collect();
                for pieces in &computed {
                    let s: String = pieces
                        .iter()
                        .map(|p| match p {
                            Piece::Text(t) => t.clone(),
                            Piece::Column(i) => text(&row[*i]),
                        })
                        .collect();
                    out.push(Value::Text(s));
                }
                Outcome::Replace(out)
            })
            .collect();
        Ok(Output { columns, outcomes })
    }
}

etlhost_transform::transform!(FieldMap);
