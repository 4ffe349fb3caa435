//! `describe`: the tables for `etlhost init`, from pg_catalog. Every table of every schema the
//! user can read, less the system's; a partitioned table is listed once (its partitions left
//! out, their rows counted in its estimate). A table of the current schema (the first of the
//! search path, usually `public`) is named `name`, others `schema.name`; a part holding a dot
//! or a double quote is written quoted (`"a.b"`), as the `table` option reads it.

use etlhost_plugin_sdk::split::FkRule;
use etlhost_plugin_sdk::{Catalog, ColumnInfo, ColumnType, Error, ForeignKey, TableInfo};
use tokio_postgres::types::{Kind, Type};

use crate::source::PgSource;
use crate::types;

/// The tables: oid, schema, name, whether in the current schema, estimated rows.
const TABLES: &str = "SELECT c.oid, n.nspname, c.relname, n.nspname = current_schema(), \
     CASE WHEN c.relkind = 'p' THEN \
       (SELECT coalesce(sum(greatest(p.reltuples, 0)), 0)::bigint \
        FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid WHERE t.isleaf) \
     ELSE greatest(c.reltuples, 0)::bigint END \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
       AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
       AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') \
     ORDER BY n.nspname, c.relname";

/// The columns: table, name, declared type, nullable, and the type to map (a domain's base
/// type), with its kind (`e` enum) and its schema and name, and an array's element type.
const COLUMNS: &str = "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), \
     NOT a.attnotnull, b.oid, b.typtype::text, bn.nspname, b.typname, b.typelem \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
     JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     JOIN pg_namespace bn ON bn.oid = b.typnamespace \
     WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attrelid, a.attnum";

/// Primary and foreign keys, their columns in key order; a partition's copies of its parent's
/// constraints left out.
const KEYS: &str = "SELECT c.conrelid, c.conname, c.contype::text, c.confrelid, \
     ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) \
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), \
     ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i) \
           JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i), \
     c.confdeltype::text, c.confupdtype::text \
     FROM pg_constraint c WHERE c.conrelid = ANY($1) AND c.contype IN ('p', 'f') \
       AND c.conparentid = 0 ORDER BY c.conrelid, c.conname";

/// A name part as the `table` option reads it: quoted when it holds a dot or a double quote.
fn part(name: &str) -> String {
    if name.contains('.') || name.contains('"') {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// A table's name in the catalog: `name` in the current schema, else `schema.name`; when a
/// part needs quotes both have them, because `etlhost init` then writes the name as SQL as it
/// is, and an unquoted part beside a quoted one would be folded to lower case.
fn full_name(schema: &str, name: &str, current: bool) -> String {
    if current {
        return part(name);
    }
    let (s, n) = (part(schema), part(name));
    if s.starts_with('"') || n.starts_with('"') {
        let quote = |p: &str| format!("\"{}\"", p.replace('"', "\"\""));
        format!("{}.{}", quote(schema), quote(name))
    } else {
        format!("{s}.{n}")
    }
}

/// pg_constraint's `confdeltype` / `confupdtype` letter.
fn rule(letter: &str) -> FkRule {
    match letter {
        "a" => FkRule::NoAction,
        "r" => FkRule::Restrict,
        "c" => FkRule::Cascade,
        "n" => FkRule::SetNull,
        "d" => FkRule::SetDefault,
        _ => FkRule::Unknown,
    }
}

impl PgSource {
    pub(crate) async fn catalog(&self) -> Result<Catalog, Error> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| self.conn.error("cannot read pg_catalog", &e);
        let tables = client.query(TABLES, &[]).await.map_err(fail)?;
        let oids: Vec<u32> = tables.iter().map(|r| r.get(0)).collect();
        let mut catalog = Catalog::default();
        let mut names = std::collections::HashMap::new();
        for r in &tables {
            let (oid, schema, name, current): (u32, String, String, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let full = full_name(&schema, &name, current);
            names.insert(oid, full.clone());
            catalog.tables.push(TableInfo {
                name: full,
                columns: Vec::new(),
                primary_key: Vec::new(),
                foreign_keys: Vec::new(),
                estimated_rows: r.get::<_, i64>(4) as u64,
            });
        }
        let index = |oid: u32| oids.iter().position(|o| *o == oid);
        for r in client.query(COLUMNS, &[&oids]).await.map_err(fail)? {
            let Some(t) = index(r.get(0)) else { continue };
            let name: String = r.get(1);
            let column_type = self.column_type(&name, &r);
            catalog.tables[t].columns.push(ColumnInfo {
                name,
                declared_type: r.get(2),
                column_type,
                nullable: r.get(3),
            });
        }
        for r in client.query(KEYS, &[&oids]).await.map_err(fail)? {
            let Some(t) = index(r.get(0)) else { continue };
            let (name, kind, columns): (String, String, Vec<String>) =
                (r.get(1), r.get(2), r.get(4));
            if kind == "p" {
                catalog.tables[t].primary_key = columns;
                continue;
            }
            // A key into a table the user cannot read is left out: its table is not listed.
            let Some(target) = names.get(&r.get::<_, u32>(3)) else {
                continue;
            };
            catalog.tables[t].foreign_keys.push(ForeignKey {
                name,
                columns,
                table: target.clone(),
                references: r.get(5),
                on_delete: rule(&r.get::<_, String>(6)),
                on_update: rule(&r.get::<_, String>(7)),
            });
        }
        Ok(catalog)
    }

    /// The SDK type a column's values have, as `types` maps them: a domain as its base type, an
    /// enum as its labels' text, an array as a list.
    fn column_type(&self, column: &str, r: &tokio_postgres::Row) -> ColumnType {
        let (oid, kind, schema, name, elem): (u32, String, String, String, u32) =
            (r.get(4), r.get(5), r.get(6), r.get(7), r.get(8));
        let ty = Type::from_oid(oid).unwrap_or_else(|| {
            let kind = match kind.as_str() {
                "e" => Kind::Enum(Vec::new()),
                _ if elem != 0 => {
                    let inner = Type::from_oid(elem).unwrap_or(Type::TEXT);
                    Kind::Array(inner)
                }
                _ => Kind::Simple,
            };
            Type::new(name, oid, kind, schema)
        });
        types::plan(column, &ty, &self.typing).column.ty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_as_the_table_option_reads_them() {
        assert_eq!(part("orders"), "orders");
        assert_eq!(part("Größe"), "Größe");
        assert_eq!(part("a.b"), "\"a.b\"");
        assert_eq!(part("say \"hi\""), "\"say \"\"hi\"\"\"");
        for name in ["a.b", "say \"hi\"", "Größe"] {
            let parsed = crate::sql::parse_name(&part(name)).unwrap();
            assert_eq!(parsed[0].0, name);
        }
    }

    #[test]
    fn a_quoted_part_quotes_its_schema_too() {
        assert_eq!(full_name("Sales", "a.b", false), "\"Sales\".\"a.b\"");
        assert_eq!(full_name("Sales", "Orders", false), "Sales.Orders");
        assert_eq!(full_name("public", "a.b", true), "\"a.b\"");
    }

    #[test]
    fn referential_actions_are_read_from_their_letters() {
        let rules: Vec<FkRule> = ["a", "r", "c", "n", "d", "?"].map(rule).into();
        assert_eq!(
            rules,
            [
                FkRule::NoAction,
                FkRule::Restrict,
                FkRule::Cascade,
                FkRule::SetNull,
                FkRule::SetDefault,
                FkRule::Unknown
            ]
        );
    }
}
