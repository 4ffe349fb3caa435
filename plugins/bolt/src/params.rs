//! How a batch's rows become the query's parameters. By default the rows are `$batch`, a list of
//! maps keyed by column name. Two options, for jobs coming from SeaTunnel's Neo4j sink:
//!
//! - `params_by_position: {ID: 0, NAME: 1}` (SeaTunnel's `queryParamPosition`): the parameters are
//!   named here and taken from the row's fields by position, not by column name;
//! - `row_parameters: true`: the query has no `$batch`; one row's fields are its top-level
//!   parameters (`CREATE (:P {id: $ID})`). It runs once per row, so it needs the host's
//!   `write_mode: one_by_one`; a batch of several rows is refused.

use std::collections::BTreeMap;

use etlhost_plugin_sdk::{Batch, Column, Error, Row, RowRef, Value};

use crate::encoding::{encode_rows, encode_value, Encoding};
use crate::options::BoltOptions;
use etlhost_bolt_client::packstream as ps;

/// Refuses a batch the options cannot encode: several rows for a per-row query, or a position
/// beyond the row's fields. Permanent: the same batch never gets better.
pub fn fits(o: &BoltOptions, batch: &Batch) -> Result<(), Error> {
    if o.row_parameters && batch.rows.len() > 1 {
        return Err(Error::permanent(format!(
            "row_parameters: true runs the query once per row and needs sink.write_mode: one_by_one \
             (got a batch of {} rows)",
            batch.rows.len()
        )));
    }
    if let Some((name, pos)) = o
        .params_by_position
        .iter()
        .flatten()
        .find(|(_, p)| **p >= batch.schema.len())
    {
        return Err(Error::permanent(format!(
            "params_by_position.{name}: position {pos}, but the rows have {} fields (positions start at 0)",
            batch.schema.len()
        )));
    }
    Ok(())
}

/// The parameter map for a batch that passed [`fits`].
pub(crate) fn encode(m: &mut Vec<u8>, batch: &Batch, o: &BoltOptions, enc: &Encoding) {
    encode_rows_of(m, &batch.schema, &batch.rows, o, enc)
}

/// [`encode`] of `rows` (of `schema`'s columns) held anywhere: a change batch's rows are encoded
/// where they are, not copied into a batch.
pub(crate) fn encode_rows_of<R: AsRef<[Value]>>(
    m: &mut Vec<u8>,
    schema: &[Column],
    rows: &[R],
    o: &BoltOptions,
    enc: &Encoding,
) {
    if !o.row_parameters && o.params_by_position.is_none() {
        return encode_rows(m, schema, rows, enc);
    }
    let fields = named_fields(schema, o.params_by_position.as_ref());
    if o.row_parameters {
        // Every parameter is sent, NULL included: Cypher fails on a missing parameter.
        let row = rows.first().map(|r| r.as_ref());
        ps::map_header(m, fields.len());
        for (name, i) in &fields {
            ps::string(m, name);
            match row.map(|r| &r[*i]) {
                Some(v) => encode_value(m, v, enc),
                None => ps::null(m),
            }
        }
        return;
    }
    ps::map_header(m, 1);
    ps::string(m, "batch");
    ps::list_header(m, rows.len());
    for row in rows {
        let row = row.as_ref();
        let present = |i: &usize| !row[*i].is_null();
        // A NULL field is left out of its row's map, as for columns.
        ps::map_header(m, fields.iter().filter(|(_, i)| present(i)).count());
        for (name, i) in fields.iter().filter(|(_, i)| present(i)) {
            ps::string(m, name);
            encode_value(m, &row[*i], enc);
        }
    }
}

/// [`encode_rows_of`] of rows read in place from the host's bytes. `params_by_position` (rare in
/// a stream) takes the values' way.
pub(crate) fn encode_row_refs(
    m: &mut Vec<u8>,
    schema: &[Column],
    rows: &[RowRef<'_>],
    o: &BoltOptions,
    enc: &Encoding,
) {
    if o.row_parameters || o.params_by_position.is_some() {
        let rows: Vec<Row> = rows.iter().map(RowRef::to_row).collect();
        return encode_rows_of(m, schema, &rows, o, enc);
    }
    crate::encoding::encode_row_refs(m, schema, rows, enc)
}

/// `(parameter name, field index)`: the named positions, or every column by name.
fn named_fields<'a>(
    schema: &'a [Column],
    by_position: Option<&'a BTreeMap<String, usize>>,
) -> Vec<(&'a str, usize)> {
    match by_position {
        Some(p) => p.iter().map(|(n, i)| (n.as_str(), *i)).collect(),
        None => schema
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::check_params as check;
    use etlhost_plugin_sdk::{Column, ColumnType, Value};

    fn options(extra: serde_json::Value) -> BoltOptions {
        let mut o = serde_json::json!({"uri": "bolt://h", "user": "u", "query": "UNWIND $batch AS row CREATE (:P)"});
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(o).unwrap()
    }

    fn batch(rows: usize) -> Batch {
        let col = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Any,
        };
        Batch {
            schema: vec![col("a"), col("b")].into(),
            rows: (0..rows)
                .map(|i| vec![Value::Int(i as i64), Value::Null])
                .collect(),
        }
    }

    #[test]
    fn a_query_without_batch_needs_row_parameters() {
        let o = options(serde_json::json!({"query": "CREATE (:P {id: $ID})"}));
        assert_eq!(check(&o).unwrap_err().key, "query");
        let o =
            options(serde_json::json!({"query": "CREATE (:P {id: $ID})", "row_parameters": true}));
        assert!(check(&o).is_ok());
        let o = options(serde_json::json!({"row_parameters": true}));
        assert!(check(&o).unwrap_err().message.contains("not sent"));
    }

    #[test]
    fn batches_that_cannot_be_encoded_are_refused() {
        let o =
            options(serde_json::json!({"query": "CREATE (:P {id: $ID})", "row_parameters": true}));
        assert!(fits(&o, &batch(1)).is_ok());
        assert_eq!(
            fits(&o, &batch(2)).unwrap_err().message,
            "row_parameters: true runs the query once per row and needs sink.write_mode: \
             one_by_one (got a batch of 2 rows)"
        );
        let o = options(serde_json::json!({"params_by_position": {"ID": 2}}));
        assert_eq!(
            fits(&o, &batch(1)).unwrap_err().message,
            "params_by_position.ID: position 2, but the rows have 2 fields (positions start at 0)"
        );
    }

    /// One row's parameters under `o`, for Bolt 5.4.
    fn encoded(o: &BoltOptions) -> Vec<u8> {
        let mut m = Vec::new();
        encode(
            &mut m,
            &batch(1),
            o,
            &Encoding::new(o.temporal, o.decimal, (5, 4)),
        );
        m
    }

    #[test]
    fn named_positions_shape_the_parameters() {
        // One row's fields as top-level parameters, NULL included: {ID: 0, X: null}.
        let o = options(serde_json::json!({
            "query": "CREATE (:P {id: $ID})", "row_parameters": true,
            "params_by_position": {"ID": 0, "X": 1}
        }));
        let m = encoded(&o);
        let mut want = Vec::new();
        ps::map_header(&mut want, 2);
        ps::string(&mut want, "ID");
        ps::int(&mut want, 0);
        ps::string(&mut want, "X");
        ps::null(&mut want);
        assert_eq!(m, want);
        // In $batch rows a NULL field is left out: {batch: [{ID: 0}]}.
        let o = options(serde_json::json!({"params_by_position": {"ID": 0, "X": 1}}));
        let m = encoded(&o);
        let mut want = Vec::new();
        ps::map_header(&mut want, 1);
        ps::string(&mut want, "batch");
        ps::list_header(&mut want, 1);
        ps::map_header(&mut want, 1);
        ps::string(&mut want, "ID");
        ps::int(&mut want, 0);
        assert_eq!(m, want);
    }
}
