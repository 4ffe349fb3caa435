//! `etlhost init`: a ready-to-run job spec from a relational source's catalog, for a Cypher sink.
//!
//! The mapping is the one Neo4j's own ETL tool uses:
//! - a table becomes a node label (`order_item` -> `OrderItem`), one flow per table that `MERGE`s on
//!   the primary key (with a uniqueness constraint created first) and sets the other columns;
//! - a foreign key becomes a relationship from the row's node to the referenced node, named after
//!   the key's column (`company_id` -> `COMPANY`), in a flow that runs after both node flows;
//! - a join table (a primary key made of exactly two foreign keys) becomes relationships between the
//!   two referenced nodes, named after the table and carrying its other columns as properties.
//!
//! Primary keys become `partition_column` (a number, date or text key, or every column of a
//! composite one), so big tables are read in parallel. Foreign key
//! columns are not copied onto nodes: the relationship carries them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use etlhost_plugin_sdk::{Catalog, ColumnType, ForeignKey, TableInfo};
use serde_json::{json, Map, Value};

use crate::spec::Format;
use crate::state_file::file_stem;

pub mod diagram;
mod stream;
mod verify;

/// What the user asked for, with option values as they should appear in the spec (`${VAR}`
/// references left unexpanded).
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub source_plugin: String,
    pub source_options: Map<String, Value>,
    pub sink_plugin: String,
    pub sink_options: Map<String, Value>,
    pub parallelism: usize,
    /// Only these tables (all when empty).
    pub tables: Vec<String>,
    pub exclude: Vec<String>,
    pub format: Format,
    /// Where the catalog came from, for the file's header.
    pub origin: String,
    /// `--mode stream`: flows that snapshot and then follow the binlog.
    pub stream: bool,
    /// How the source's SQL quotes names, for the queries of the relationship flows.
    pub dialect: Dialect,
}

/// The SQL of the source, as far as the generated queries need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Backticks (MySQL, MariaDB).
    MySql,
    /// Double quotes; a table is `name` or `schema.name`, a part in double quotes kept as written
    /// (the postgres source's `table` option).
    Postgres,
}

impl Dialect {
    /// From the source plugin's own name.
    pub fn of_plugin(name: &str) -> Self {
        match name {
            "postgres" => Dialect::Postgres,
            _ => Dialect::MySql,
        }
    }

    fn ident(self, name: &str) -> String {
        match self {
            Dialect::MySql => format!("`{}`", name.replace('`', "``")),
            Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// A table as the catalog names it, in a `FROM`.
    fn relation(self, table: &str) -> String {
        match self {
            Dialect::MySql => self.ident(table),
            Dialect::Postgres => pg_parts(table)
                .iter()
                .map(|p| self.ident(p))
                .collect::<Vec<_>>()
                .join("."),
        }
    }
}

/// A generated spec: its text and what it holds.
#[derive(Debug)]
pub struct Generated {
    pub text: String,
    pub nodes: usize,
    pub relationships: usize,
    pub join_tables: usize,
    pub notes: Vec<String>,
    /// The graph model as a Markdown file with a Mermaid diagram ([`diagram`]).
    pub diagram: String,
}

/// The actual names in a postgres catalog name: `name` or `schema.name`, each part as it is
/// unless written in double quotes (which may hold dots, a quote doubled), as the postgres
/// source's `table` option reads it.
fn pg_parts(table: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = table.chars().peekable();
    while let Some(c) = chars.next() {
        let last = parts.last_mut().expect("one part at least");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                last.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            _ => last.push(c),
        }
    }
    parts
}

/// `order_item` -> `OrderItem`; letters of any script are kept (`größe` -> `Größe`), other
/// characters separate words.
pub fn label(table: &str) -> String {
    table
        .split(|c: char| !c.is_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            let first = c.next().expect("non-empty");
            first.to_uppercase().chain(c).collect::<String>()
        })
        .collect()
}

/// The relationship type of a foreign key: its column without an `_id` suffix, in upper snake
/// case (`company_id` -> `COMPANY`, `managerId` -> `MANAGER`); the referenced table's name for a
/// key of several columns.
pub fn relationship_type(fk: &ForeignKey) -> String {
    let base = match fk.columns.as_slice() {
        [one] => {
            let lower = one.to_ascii_lowercase();
            let cut = ["_id", "id"]
                .iter()
                .find_map(|s| lower.strip_suffix(s))
                .map_or(one.len(), str::len);
            one[..cut].trim_end_matches('_').to_string()
        }
        _ => fk.table.clone(),
    };
    upper_snake(if base.is_empty() { &fk.table } else { &base })
}

fn upper_snake(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_lowercase() || c.is_numeric();
        out.extend(c.to_uppercase());
    }
    out.trim_end_matches('_').to_string()
}

/// Cypher identifiers are quoted when they are not plain.
fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// `row.x` for a column; `row.`x y`` when quoting is needed.
fn row_field(column: &str) -> String {
    format!("row.{}", ident(column))
}

/// Whether the host can cut `column` into key ranges (numbers and dates) or at sampled keys (text).
fn splittable(t: &TableInfo, column: &str) -> bool {
    t.columns.iter().any(|c| {
        c.name == column
            && matches!(
                c.column_type,
                ColumnType::Int
                    | ColumnType::UInt
                    | ColumnType::Decimal
                    | ColumnType::Date
                    | ColumnType::DateTime
                    | ColumnType::Timestamp
                    | ColumnType::String
            )
    })
}

/// `{a: row.a, b: row.b}` matching a node by its key columns, read from `columns` of the row.
fn key_map(keys: &[String], columns: &[String]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .zip(columns)
        .map(|(k, c)| format!("{}: {}", ident(k), row_field(c)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn set_clause(var: &str, columns: &[&str]) -> Option<String> {
    (!columns.is_empty()).then(|| {
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{var}.{} = {}", ident(c), row_field(c)))
            .collect();
        format!("SET {}", sets.join(", "))
    })
}

/// A join table's two foreign keys, in primary key order, when it is one.
fn join_keys<'a>(
    t: &'a TableInfo,
    selected: &BTreeSet<&str>,
) -> Option<(&'a ForeignKey, &'a ForeignKey)> {
    if t.primary_key.len() < 2 {
        return None;
    }
    let pk: BTreeSet<&str> = t.primary_key.iter().map(String::as_str).collect();
    let inside: Vec<&ForeignKey> = t
        .foreign_keys
        .iter()
        .filter(|f| f.columns.iter().all(|c| pk.contains(c.as_str())))
        .collect();
    let [a, b] = inside.as_slice() else {
        return None;
    };
    let covered: BTreeSet<&str> = a
        .columns
        .iter()
        .chain(&b.columns)
        .map(String::as_str)
        .collect();
    let disjoint = a.columns.len() + b.columns.len() == covered.len();
    let both_nodes = selected.contains(a.table.as_str()) && selected.contains(b.table.as_str());
    if covered != pk || !disjoint || !both_nodes {
        return None;
    }
    let first = |f: &ForeignKey| t.primary_key.iter().position(|c| f.columns.contains(c));
    if first(a) <= first(b) {
        Some((a, b))
    } else {
        Some((b, a))
    }
}

/// The referenced table's key for a foreign key (the primary key it points at, in its order).
fn target_keys(fk: &ForeignKey) -> &[String] {
    &fk.references
}

/// The tables being generated and the names given so far, shared by the three kinds of flow.
struct Plan<'a> {
    selected: BTreeSet<&'a str>,
    /// Tables that become nodes (all selected tables but join tables).
    node_tables: BTreeSet<&'a str>,
    /// The flow name of each node table.
    node_flow: BTreeMap<&'a str, String>,
    used: BTreeSet<String>,
    notes: Vec<String>,
    dialect: Dialect,
    /// What the flows write, for the diagram.
    model: diagram::Model,
}

impl<'a> Plan<'a> {
    /// A flow name from `base`; flow names are also file names: other characters become `_`, and
    /// a clash gets a number.
    fn unique(&mut self, base: &str) -> String {
        let safe = file_stem(base);
        let mut name = safe.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            name = format!("{safe}_{n}");
            n += 1;
        }
        name
    }

    /// The node flows a relationship between `a` and `b` waits for.
    fn after(&self, a: &str, b: &str) -> Vec<String> {
        let mut after = vec![self.node_flow[a].clone()];
        if b != a {
            after.push(self.node_flow[b].clone());
        }
        after
    }
}

/// A flow's `source`: the plugin's `options`, and `partition_column` when `column` is numeric.
fn source(t: &TableInfo, key: &[String], options: Value) -> Map<String, Value> {
    let mut source = Map::new();
    match key {
        [] => {}
        [one] if splittable(t, one) => {
            source.insert("partition_column".into(), json!(one));
        }
        [_] => {}
        // The columns of a primary key are NOT NULL, so its tuples can be split.
        many => {
            source.insert("partition_column".into(), json!(many));
        }
    }
    source.insert("options".into(), options);
    source
}

pub fn generate(catalog: &Catalog, req: &Request) -> Result<Generated, String> {
    let selected = selected(catalog, req)?;
    let tables: Vec<&TableInfo> = catalog
        .tables
        .iter()
        .filter(|t| selected.contains(t.name.as_str()))
        .collect();
    let node_tables: BTreeSet<&str> = tables
        .iter()
        .filter(|t| join_keys(t, &selected).is_none())
        .map(|t| t.name.as_str())
        .collect();
    let mut plan = Plan {
        selected,
        node_tables,
        node_flow: BTreeMap::new(),
        used: BTreeSet::new(),
        notes: Vec::new(),
        dialect: req.dialect,
        model: diagram::Model::default(),
    };
    for t in plan.node_tables.clone() {
        let name = plan.unique(t);
        plan.node_flow.insert(t, name);
    }
    let (flows, counts) = flows(&mut plan, &tables, req.stream);
    let mut spec = json!({
        "name": req.name,
        "parallelism": req.parallelism,
        "source": { "plugin": req.source_plugin, "options": req.source_options },
        "sink": { "plugin": req.sink_plugin, "options": req.sink_options },
        "flows": flows,
    });
    if req.stream {
        spec["mode"] = json!("stream");
    }
    let text = render(&spec, req, counts, &plan.notes)?;
    let (nodes, relationships, join_tables) = counts;
    Ok(Generated {
        text,
        nodes,
        relationships,
        join_tables,
        diagram: diagram::render(&plan.model, &req.name, &req.origin),
        notes: plan.notes,
    })
}

/// The tables asked for (all by default) less the excluded ones; a table the source does not
/// have is an error.
fn selected<'a>(catalog: &'a Catalog, req: &Request) -> Result<BTreeSet<&'a str>, String> {
    let known: BTreeSet<&str> = catalog.tables.iter().map(|t| t.name.as_str()).collect();
    let list = || known.iter().copied().collect::<Vec<_>>().join(", ");
    for t in req.tables.iter().chain(&req.exclude) {
        if !known.contains(t.as_str()) {
            return Err(format!(
                "table `{t}` is not in the source (its tables: {})",
                list()
            ));
        }
    }
    let selected: BTreeSet<&str> = catalog
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| req.tables.is_empty() || req.tables.iter().any(|t| t == n))
        .filter(|n| !req.exclude.iter().any(|t| t == n))
        .collect();
    if selected.is_empty() {
        return Err("no table left to generate flows for".into());
    }
    Ok(selected)
}

/// Node flows, then relationship flows from foreign keys, then from join tables; with how many
/// of each.
fn flows(
    plan: &mut Plan<'_>,
    tables: &[&TableInfo],
    stream: bool,
) -> (Vec<Value>, (usize, usize, usize)) {
    let node_tables: Vec<&TableInfo> = tables
        .iter()
        .copied()
        .filter(|t| plan.node_tables.contains(t.name.as_str()))
        .collect();
    let mut flows: Vec<Value> = node_tables
        .iter()
        .map(|t| {
            let mut flow = node_flow(plan, t, stream);
            if stream {
                stream::node(plan, &mut flow, t);
            }
            flow
        })
        .collect();
    let nodes = flows.len();
    for t in &node_tables {
        foreign_key_flows(plan, t, &mut flows, stream);
    }
    let rels = flows.len() - nodes;
    for t in tables {
        if let Some((a, b)) = join_keys(t, &plan.selected) {
            let mut flow = join_flow(plan, t, a, b);
            if stream {
                stream::join(&mut flow, t, a, b);
            }
            flows.push(flow);
        }
    }
    let joins = flows.len() - nodes - rels;
    (flows, (nodes, rels, joins))
}

/// The spec file: a header saying what was generated and why, then the spec.
fn render(
    spec: &Value,
    req: &Request,
    (nodes, rels, joins): (usize, usize, usize),
    notes: &[String],
) -> Result<String, String> {
    let body = match req.format {
        Format::Yaml => serde_yaml_ng::to_string(spec).map_err(|e| e.to_string())?,
        Format::Toml => toml::to_string_pretty(spec).map_err(|e| e.to_string())?,
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Generated by `etlhost init` from {}: {nodes} node flows, {rels} relationship flows from foreign keys, {joins} from join tables.",
        req.origin
    );
    let _ = writeln!(
        text,
        "# Flows run in order, relationships after the nodes they join; every flow MERGEs, so running the job again is safe."
    );
    let _ = writeln!(
        text,
        "# `source` and `sink` at the top are defaults every flow inherits (maps merged key by key)."
    );
    for n in notes {
        let _ = writeln!(text, "# Note: {n}");
    }
    text.push_str(&body);
    Ok(text)
}

/// A node table's flow: a constraint (or index) on the key, `MERGE` on it and `SET` the other
/// columns; `CREATE` for a table without a primary key.
fn node_flow(plan: &mut Plan<'_>, t: &TableInfo, stream: bool) -> Value {
    let lbl = label(&t.name);
    // Foreign key columns become relationships, unless they are part of the node's key. A
    // stream keeps them as properties too: a cascade finds the rows it changes by them, even
    // once the referenced node (and so the relationship) is gone.
    let fk_columns: BTreeSet<&str> = t
        .foreign_keys
        .iter()
        .filter(|f| !stream && plan.node_tables.contains(f.table.as_str()))
        .flat_map(|f| f.columns.iter().map(String::as_str))
        .filter(|c| !t.primary_key.iter().any(|k| k == c))
        .collect();
    let props: Vec<&str> = t
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !t.primary_key.iter().any(|k| k == c) && !fk_columns.contains(c))
        .collect();
    let mut sink = Map::new();
    plan.model
        .nodes
        .push(model_node(t, &lbl, &props, &fk_columns));
    let query = if t.primary_key.is_empty() {
        plan.notes.push(format!(
            "table `{}` has no primary key: its rows are CREATEd, so running the job again duplicates them",
            t.name
        ));
        let all: Vec<String> = t
            .columns
            .iter()
            .filter(|c| !fk_columns.contains(c.name.as_str()))
            .map(|c| format!("{}: {}", ident(&c.name), row_field(&c.name)))
            .collect();
        format!(
            "UNWIND $batch AS row\nCREATE (n:{} {{{}}})",
            ident(&lbl),
            all.join(", ")
        )
    } else {
        let keys = &t.primary_key;
        let props_key: Vec<String> = keys.iter().map(|k| format!("n.{}", ident(k))).collect();
        let setup = if keys.len() == 1 {
            format!(
                "CREATE CONSTRAINT {} IF NOT EXISTS FOR (n:{}) REQUIRE n.{} IS UNIQUE",
                ident(&format!("{}_{}", t.name, keys[0])),
                ident(&lbl),
                ident(&keys[0])
            )
        } else {
            format!(
                "CREATE INDEX {} IF NOT EXISTS FOR (n:{}) ON ({})",
                ident(&format!("{}_key", t.name)),
                ident(&lbl),
                props_key.join(", ")
            )
        };
        sink.insert("setup".into(), json!([setup]));
        let mut q = format!(
            "UNWIND $batch AS row\nMERGE (n:{} {})",
            ident(&lbl),
            key_map(keys, keys)
        );
        if let Some(set) = set_clause("n", &props) {
            let _ = write!(q, "\n{set}");
        }
        q
    };
    sink.insert("query".into(), Value::String(query));
    let mut flow = json!({
        "name": plan.node_flow[t.name.as_str()],
        "source": source(t, &t.primary_key, json!({ "table": t.name })),
        "sink": { "options": sink },
    });
    if !t.primary_key.is_empty() {
        flow["verify"] = verify::node(&lbl, &t.primary_key, &props);
    }
    flow
}

/// `names` with their columns' types in `t`.
fn typed<'a>(t: &TableInfo, names: impl Iterator<Item = &'a str>) -> Vec<diagram::Prop> {
    names
        .map(|n| diagram::Prop {
            name: n.to_string(),
            ty: t
                .columns
                .iter()
                .find(|c| c.name == n)
                .map_or(ColumnType::Any, |c| c.column_type),
        })
        .collect()
}

/// A node table's label for the diagram: its key, and the properties the flow sets (every column
/// but the relationships' for a table without a key, whose nodes are CREATEd with them).
fn model_node(
    t: &TableInfo,
    lbl: &str,
    props: &[&str],
    fk_columns: &BTreeSet<&str>,
) -> diagram::Node {
    let props = if t.primary_key.is_empty() {
        typed(
            t,
            t.columns
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| !fk_columns.contains(c)),
        )
    } else {
        typed(t, props.iter().copied())
    };
    diagram::Node {
        label: lbl.to_string(),
        key: typed(t, t.primary_key.iter().map(String::as_str)),
        props,
    }
}

/// A relationship flow for each foreign key of node table `t` that points at a generated node.
fn foreign_key_flows(plan: &mut Plan<'_>, t: &TableInfo, flows: &mut Vec<Value>, stream: bool) {
    for fk in &t.foreign_keys {
        if !plan.node_tables.contains(fk.table.as_str()) {
            plan.notes.push(format!(
                "foreign key `{}` of `{}` points at `{}`, which is not generated: no relationship",
                fk.name, t.name, fk.table
            ));
            continue;
        }
        if t.primary_key.is_empty() {
            plan.notes.push(format!(
                "foreign key `{}` of `{}`: the table has no primary key to find its nodes by: no relationship",
                fk.name, t.name
            ));
            continue;
        }
        let rel = relationship_type(fk);
        let mut cols: Vec<&str> = t.primary_key.iter().map(String::as_str).collect();
        for c in &fk.columns {
            if !cols.contains(&c.as_str()) {
                cols.push(c);
            }
        }
        let d = plan.dialect;
        let not_null: Vec<String> = fk
            .columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", d.ident(c)))
            .collect();
        let select: Vec<String> = cols.iter().map(|c| d.ident(c)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            select.join(", "),
            d.relation(&t.name),
            not_null.join(" AND ")
        );
        plan.model.rels.push(diagram::Rel {
            ty: rel.clone(),
            start: label(&t.name),
            end: label(&fk.table),
            origin: diagram::Origin::ForeignKey {
                table: t.name.clone(),
                columns: fk.columns.clone(),
                target: fk.table.clone(),
                references: target_keys(fk).to_vec(),
                optional: fk
                    .columns
                    .iter()
                    .any(|c| t.columns.iter().any(|x| &x.name == c && x.nullable)),
            },
        });
        let query = format!(
            "UNWIND $batch AS row\nMATCH (a:{} {})\nMATCH (b:{} {})\nMERGE (a)-[:{}]->(b)",
            ident(&label(&t.name)),
            key_map(&t.primary_key, &t.primary_key),
            ident(&label(&fk.table)),
            key_map(target_keys(fk), &fk.columns),
            ident(&rel)
        );
        let name = plan.unique(&format!("{}_{}", t.name, rel.to_ascii_lowercase()));
        let mut flow = json!({
            "name": name,
            "after": plan.after(&t.name, &fk.table),
            "source": source(t, &t.primary_key, json!({ "query": sql })),
            "sink": {
                "endpoints": endpoints(
                    (&label(&t.name), &t.primary_key, &t.primary_key),
                    (&label(&fk.table), target_keys(fk), &fk.columns),
                ),
                "options": { "query": query },
            },
            "verify": verify::foreign_key(t, fk, &rel),
        });
        if stream {
            stream::foreign_key(&mut flow, t, fk);
        }
        flows.push(flow);
    }
}

/// A join table's flow: a relationship between the nodes its two foreign keys point at, carrying
/// its other columns.
fn join_flow(plan: &mut Plan<'_>, t: &TableInfo, a: &ForeignKey, b: &ForeignKey) -> Value {
    let rel = upper_snake(&t.name);
    let props: Vec<&str> = t
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !t.primary_key.iter().any(|k| k == c))
        .collect();
    let mut query = format!(
        "UNWIND $batch AS row\nMATCH (a:{} {})\nMATCH (b:{} {})\nMERGE (a)-[r:{}]->(b)",
        ident(&label(&a.table)),
        key_map(target_keys(a), &a.columns),
        ident(&label(&b.table)),
        key_map(target_keys(b), &b.columns),
        ident(&rel)
    );
    if let Some(set) = set_clause("r", &props) {
        let _ = write!(query, "\n{set}");
    }
    plan.model.rels.push(diagram::Rel {
        ty: rel.clone(),
        start: label(&a.table),
        end: label(&b.table),
        origin: diagram::Origin::JoinTable {
            table: t.name.clone(),
            props: typed(t, props.iter().copied()),
        },
    });
    json!({
        "name": plan.unique(&t.name),
        "after": plan.after(&a.table, &b.table),
        "source": source(t, &t.primary_key, json!({ "table": t.name })),
        "sink": {
            "endpoints": endpoints(
                (&label(&a.table), target_keys(a), &a.columns),
                (&label(&b.table), target_keys(b), &b.columns),
            ),
            "options": { "query": query },
        },
        "verify": verify::join(a, b, &rel, &props),
    })
}

/// `sink.endpoints` of a relationship flow: the columns that find its two nodes, so that its rows
/// can be written by several writers without two of them touching one node, and the queries that
/// read where the target stores those nodes (`placement`: on ArcadeDB their buckets, which is what
/// keeps concurrent writers off each other's pages; read only when the flow has several writers).
/// Each end is its node's label, key properties and the columns holding them.
fn endpoints(start: (&str, &[String], &[String]), end: (&str, &[String], &[String])) -> Value {
    let cols = |c: &[String]| match c {
        [one] => json!(one),
        many => json!(many),
    };
    let placement = |(label, keys, _): (&str, &[String], &[String])| {
        let props: Vec<String> = keys.iter().map(|k| format!("n.{}", ident(k))).collect();
        let key = match props.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        format!(
            "MATCH (n:{}) RETURN {key} AS key, elementId(n) AS place",
            ident(label)
        )
    };
    let (s, e) = (placement(start), placement(end));
    let placement = if s == e {
        json!(s)
    } else {
        json!({ "start": s, "end": e })
    };
    json!({ "start": cols(start.2), "end": cols(end.2), "placement": placement })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fk(columns: &[&str], table: &str) -> ForeignKey {
        ForeignKey {
            name: format!("fk_{}", columns.join("_")),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            table: table.into(),
            references: vec!["id".into(); columns.len()],
            on_delete: Default::default(),
            on_update: Default::default(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(label("order_item"), "OrderItem");
        assert_eq!(label("person"), "Person");
        assert_eq!(
            relationship_type(&fk(&["company_id"], "company")),
            "COMPANY"
        );
        assert_eq!(
            relationship_type(&fk(&["managerId"], "employee")),
            "MANAGER"
        );
        assert_eq!(relationship_type(&fk(&["owner"], "user")), "OWNER");
        assert_eq!(relationship_type(&fk(&["id"], "user")), "USER");
        assert_eq!(upper_snake("employee_project"), "EMPLOYEE_PROJECT");
        assert_eq!(ident("first name"), "`first name`");
        assert_eq!(ident("name"), "name");
    }

    #[test]
    fn endpoints_name_the_key_columns_and_the_queries_that_place_their_nodes() {
        let v = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let (id, manager) = (v(&["id"]), v(&["manager_id"]));
        // One kind of node at both ends: one query.
        assert_eq!(
            endpoints(("Employee", &id, &id), ("Employee", &id, &manager)),
            json!({
                "start": "id",
                "end": "manager_id",
                "placement": "MATCH (n:Employee) RETURN n.id AS key, elementId(n) AS place",
            })
        );
        // Two kinds, a composite key: a query for each, the key as a list.
        let (keys, cols) = (v(&["tenant", "order no"]), v(&["tenant", "order_no"]));
        assert_eq!(
            endpoints(("OrderItem", &id, &id), ("Order", &keys, &cols)),
            json!({
                "start": "id",
                "end": ["tenant", "order_no"],
                "placement": {
                    "start": "MATCH (n:OrderItem) RETURN n.id AS key, elementId(n) AS place",
                    "end": "MATCH (n:Order) RETURN [n.tenant, n.`order no`] AS key, elementId(n) AS place",
                },
            })
        );
    }
}
