//! `field-map`: renames, drops and computes columns.
//!
//! On the encoded world: only the columns a template reads are looked at (text and integers
//! without decoding), and every other value goes on as its bytes.
//!
//! ```yaml
//! config:
//!   rename: {name: full_name}            # old -> new
//!   drop: [internal_note]
//!   compute: {label: "{full_name} ({id})"}  # new text column from a template of columns
//! ```

use etlhost_transform::encoded::{
    column_index, CellRow, Column, ColumnType, Output, Rows, Transform, Value,
};
use serde_json::Value as Json;

struct FieldMap {
    rename: Vec<(String, String)>,
    drop: Vec<String>,
    compute: Vec<(String, String)>,
    /// What `process` derives from the input's columns, kept while they stay the same (a job's
    /// batches all have the same).
    plan: Option<Plan>,
}

/// The output of a batch of given input columns.
struct Plan {
    input: Vec<Column>,
    columns: Vec<Column>,
    kept: Vec<usize>,
    computed: Vec<Vec<Piece>>,
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

/// Appends a value to a template's text as the `transform` world's field-map wrote it (dates and
/// times as their integers, lists and maps as JSON), so the move to the encoded world changes no
/// output.
fn push_text(out: &mut String, v: &Value) {
    use std::fmt::Write;
    match v {
        Value::Null => {}
        Value::Bool(b) => write!(out, "{b}").unwrap(),
        Value::Int(i) => write!(out, "{i}").unwrap(),
        Value::UInt(u) => write!(out, "{u}").unwrap(),
        Value::Float(f) => write!(out, "{f}").unwrap(),
        Value::Decimal(s) | Value::String(s) => out.push_str(s),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::Date(d) => write!(out, "{d}").unwrap(),
        Value::DateTime(t) | Value::Time(t) | Value::Timestamp(t) => write!(out, "{t}").unwrap(),
        Value::Point(p) => write!(out, "POINT({} {})", p.x, p.y).unwrap(),
        Value::List(_) | Value::Map(_) => out.push_str(&v.to_json().to_string()),
        Value::Duration { .. } | Value::ZonedTime { .. } => write!(out, "{v}").unwrap(),
    }
}

/// Appends column `col` of `row` to a template's text (UTF-8 bytes, checked by the host),
/// decoding only what is not text or an integer.
fn push_cell(out: &mut Vec<u8>, row: &CellRow<'_>, col: usize) {
    if let Some(t) = row.text_bytes(col) {
        out.extend_from_slice(t);
    } else if let Some(i) = row.int(col) {
        use std::io::Write;
        write!(out, "{i}").unwrap();
    } else if !row.is_null(col) {
        let mut s = String::new();
        push_text(&mut s, &row.get(col));
        out.extend_from_slice(s.as_bytes());
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

impl FieldMap {
    /// The output columns and what makes them, for a batch of `input` columns.
    fn plan(&self, input: &[Column]) -> Result<Plan, String> {
        for (old, _) in &self.rename {
            column_index(input, old)?;
        }
        // Every input column under its new name: what templates refer to.
        let renamed: Vec<Column> = input
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
        let kept: Vec<usize> = (0..input.len())
            .filter(|i| !self.drop.contains(&input[*i].name))
            .collect();
        let mut columns: Vec<Column> = kept.iter().map(|&i| renamed[i].clone()).collect();
        let mut computed = Vec::new();
        for (name, t) in &self.compute {
            computed.push(template(t, &renamed)?);
            columns.push(Column {
                name: name.clone(),
                ty: ColumnType::String,
            });
        }
        Ok(Plan {
            input: input.to_vec(),
            columns,
            kept,
            computed,
        })
    }
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
            plan: None,
        })
    }

    fn process(&mut self, rows: &Rows) -> Result<Output, String> {
        let input = rows.columns();
        if self.plan.as_ref().is_none_or(|p| *p.input != **input) {
            self.plan = Some(self.plan(input)?);
        }
        let plan = self.plan.as_ref().expect("made above");
        if plan.computed.is_empty() && plan.columns[..] == **input {
            return Ok(Output::all_kept());
        }
        let mut out = Output::new(&plan.columns);
        let cells = rows.cells();
        // The kept values, and about as much again for what the templates make.
        out.reserve(2 * cells.byte_len() + 16 * cells.len());
        let mut text = Vec::new();
        for row in cells.rows() {
            out.emit(|w| {
                for &i in &plan.kept {
                    w.copy(&row, i);
                }
                for pieces in &plan.computed {
                    text.clear();
                    for p in pieces {
                        match p {
                            Piece::Text(t) => text.extend_from_slice(t.as_bytes()),
                            Piece::Column(i) => push_cell(&mut text, &row, *i),
                        }
                    }
                    w.text_bytes(&text);
                }
            });
        }
        Ok(out)
    }
}

etlhost_transform::encoded_transform!(FieldMap);
