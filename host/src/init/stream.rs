//! `etlhost init --mode stream`: the generated flows made stream-ready. Node flows keep their
//! `MERGE` for inserts and updates and get a `DETACH DELETE` for deletes; a foreign key's flow
//! follows the table itself and moves its relationship when the key column changes (removing it
//! when the key becomes NULL or the row goes); a join table's rows create and delete their
//! relationship. A child of [`super`] so it shares the naming helpers.

use serde_json::{json, Value};

use super::{ident, key_map, label, relationship_type, target_keys, Plan};
use etlhost_plugin_sdk::{ForeignKey, TableInfo};

/// The delete query of a node flow; a table without a primary key cannot stream (no key to find
/// a deleted row's node by) and stays a batch flow.
pub(super) fn node(plan: &mut Plan<'_>, flow: &mut Value, t: &TableInfo) {
    if t.primary_key.is_empty() {
        plan.notes.push(format!(
            "table `{}` has no primary key: its flow stays `mode: batch` (a change cannot be matched to its node)",
            t.name
        ));
        flow["mode"] = json!("batch");
        return;
    }
    let delete = format!(
        "UNWIND $batch AS row\nMATCH (n:{} {})\nDETACH DELETE n",
        ident(&label(&t.name)),
        key_map(&t.primary_key, &t.primary_key)
    );
    flow["sink"]["options"]["delete_query"] = json!(delete);
    flow["rows_query"] = json!(rows_query(t));
}

/// The Cypher that finds a node table's rows by any of their columns (`$batch`: maps of column
/// values; an empty map matches every row), for `TRUNCATE` and foreign-key cascades. Dynamic
/// property access keeps it one query for any set of columns; it scans the label, which is what
/// a cascade by a column without an index costs anyway.
pub(super) fn rows_query(t: &TableInfo) -> String {
    let ret: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("n.{} AS {}", ident(&c.name), ident(&c.name)))
        .collect();
    format!(
        "UNWIND $batch AS row\nMATCH (n:{})\nWHERE all(k IN keys(row) WHERE n[k] = row[k])\nRETURN {}",
        ident(&label(&t.name)),
        ret.join(", ")
    )
}

/// A foreign key's relationship, kept equal to the column: every insert or update replaces the
/// row's relationship of this type, a delete removes it.
pub(super) fn foreign_key(flow: &mut Value, t: &TableInfo, fk: &ForeignKey) {
    let rel = ident(&relationship_type(fk));
    let a = format!(
        "(a:{} {})",
        ident(&label(&t.name)),
        key_map(&t.primary_key, &t.primary_key)
    );
    let not_null: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("{} IS NOT NULL", super::row_field(c)))
        .collect();
    let query = format!(
        "UNWIND $batch AS row\nMATCH {a}\nOPTIONAL MATCH (a)-[old:{rel}]->()\nDELETE old\nWITH DISTINCT a, row\nWHERE {}\nMATCH (b:{} {})\nMERGE (a)-[:{rel}]->(b)",
        not_null.join(" AND "),
        ident(&label(&fk.table)),
        key_map(target_keys(fk), &fk.columns),
    );
    let delete = format!("UNWIND $batch AS row\nMATCH {a}-[old:{rel}]->()\nDELETE old");
    // A stream follows the table itself; rows whose key is NULL remove the relationship.
    flow["source"]["options"] = json!({ "table": t.name });
    flow["sink"]["options"]["query"] = json!(query);
    flow["sink"]["options"]["delete_query"] = json!(delete);
}

/// A join table's row is its relationship: a delete removes it.
pub(super) fn join(flow: &mut Value, t: &TableInfo, a: &ForeignKey, b: &ForeignKey) {
    let delete = format!(
        "UNWIND $batch AS row\nMATCH (a:{} {})-[r:{}]->(b:{} {})\nDELETE r",
        ident(&label(&a.table)),
        key_map(target_keys(a), &a.columns),
        ident(&super::upper_snake(&t.name)),
        ident(&label(&b.table)),
        key_map(target_keys(b), &b.columns),
    );
    flow["sink"]["options"]["delete_query"] = json!(delete);
    flow["rows_query"] = json!(join_rows_query(t, a, b));
}

/// A join table's rows read back from its relationships: its key columns from the two ends, the
/// others from the relationship. A row whose end node is gone is gone with it (`DETACH DELETE`),
/// which is what a cascade from either side does.
fn join_rows_query(t: &TableInfo, a: &ForeignKey, b: &ForeignKey) -> String {
    let mut fields: Vec<String> = Vec::new();
    for c in &t.columns {
        let end = [("a", a), ("b", b)].into_iter().find_map(|(v, f)| {
            let i = f.columns.iter().position(|x| x == &c.name)?;
            Some(format!("{v}.{}", ident(&target_keys(f)[i])))
        });
        let expr = end.unwrap_or_else(|| format!("r.{}", ident(&c.name)));
        fields.push(format!("{}: {expr}", ident(&c.name)));
    }
    let ret: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("m.{} AS {}", ident(&c.name), ident(&c.name)))
        .collect();
    format!(
        "UNWIND $batch AS row\nMATCH (a:{})-[r:{}]->(b:{})\nWITH row, {{{}}} AS m\nWHERE all(k IN keys(row) WHERE m[k] = row[k])\nRETURN {}",
        ident(&label(&a.table)),
        ident(&super::upper_snake(&t.name)),
        ident(&label(&b.table)),
        fields.join(", "),
        ret.join(", ")
    )
}
