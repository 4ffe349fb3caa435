//! The graph model `etlhost init` generated, as a Mermaid class diagram in a Markdown file
//! (`<spec stem>.graph.md`), so that a user sees the labels and relationship types before loading
//! anything. It is drawn from what the generator wrote into the flows, not from the source's
//! tables, so it is the same for every source.
//!
//! A class diagram rather than `erDiagram` because its arrows show a relationship's direction and
//! its multiplicities show how many nodes each end has; members show each property with its type.
//!
//! Escaping, from Mermaid's class diagram grammar: a class name in backticks may hold anything but
//! a backtick (labels never do); a member line may not hold `{`, `}` or `"`, and `(` would make it
//! a method, a leading `+-#~` a visibility, a trailing `$*` a classifier; a relationship label
//! ends at `:` or `;`. Mermaid decodes `#NN;` entity codes in every diagram kind before parsing,
//! so every other character of a source's name is written as one and shown as itself.

use std::fmt::Write as _;

use etlhost_plugin_sdk::ColumnType;

/// A property of a node or relationship and the type its values have.
#[derive(Debug, Clone, PartialEq)]
pub struct Prop {
    pub name: String,
    pub ty: ColumnType,
}

/// A node label: the properties its nodes are found by (empty for a table without a primary
/// key, whose rows are CREATEd) and the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub label: String,
    pub key: Vec<Prop>,
    pub props: Vec<Prop>,
}

/// Where a relationship type comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A foreign key of `table`: its `columns` reference `references` of `target`; `optional`
    /// when a column may be NULL (a row without the relationship).
    ForeignKey {
        table: String,
        columns: Vec<String>,
        target: String,
        references: Vec<String>,
        optional: bool,
    },
    /// A join table's rows, each a relationship carrying `props`.
    JoinTable { table: String, props: Vec<Prop> },
}

/// A relationship type from `start`'s nodes to `end`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Rel {
    pub ty: String,
    pub start: String,
    pub end: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub nodes: Vec<Node>,
    pub rels: Vec<Rel>,
}

/// `orders.yaml` -> `orders.graph.md`, beside the spec.
pub fn path_for(spec: &std::path::Path) -> std::path::PathBuf {
    let stem = spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    spec.with_file_name(format!("{stem}.graph.md"))
}

/// A character Mermaid shows as itself in names, labels and members alike.
fn plain(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ' ' || c == '.'
}

/// A source's name as diagram text: other characters as `#NN;` entity codes.
fn text(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if plain(c) {
            out.push(c);
        } else {
            let _ = write!(out, "#{};", u32::from(c));
        }
    }
    out
}

fn list(names: &[String]) -> String {
    let parts: Vec<String> = names.iter().map(|n| text(n)).collect();
    match parts.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    }
}

fn type_name(ty: ColumnType) -> String {
    format!("{ty:?}")
}

/// A class: `«key»` on the key's properties, `<<no key>>` for a label whose nodes are CREATEd.
fn class(out: &mut String, n: &Node) {
    let _ = writeln!(out, "    class `{}` {{", n.label);
    if n.key.is_empty() {
        let _ = writeln!(out, "        <<no key>>");
    }
    for p in &n.key {
        let _ = writeln!(out, "        {} : {} «key»", text(&p.name), type_name(p.ty));
    }
    for p in &n.props {
        let _ = writeln!(out, "        {} : {}", text(&p.name), type_name(p.ty));
    }
    let _ = writeln!(out, "    }}");
}

/// `` `A` "*" --> "0..1" `B` : TYPE by a_id → b(id) ``: the arrow is the relationship's direction.
fn relationship(out: &mut String, r: &Rel) {
    let (start_many, end_many, how) = match &r.origin {
        Origin::ForeignKey {
            table,
            columns,
            target,
            references,
            optional,
        } => (
            "*",
            if *optional { "0..1" } else { "1" },
            format!(
                "by {}.{} → {}.{}",
                text(table),
                list(columns),
                text(target),
                list(references)
            ),
        ),
        Origin::JoinTable { table, props } => {
            let mut how = format!("by join table {}", text(table));
            let props: Vec<String> = props
                .iter()
                .map(|p| format!("{} {}", text(&p.name), type_name(p.ty)))
                .collect();
            if !props.is_empty() {
                let _ = write!(how, " with {}", props.join(", "));
            }
            ("*", "*", how)
        }
    };
    let _ = writeln!(
        out,
        "    `{}` \"{start_many}\" --> \"{end_many}\" `{}` : {} {how}",
        r.start,
        r.end,
        text(&r.ty)
    );
}

/// The Markdown file: a title, what the diagram shows, and the diagram.
pub fn render(model: &Model, job: &str, origin: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Graph model of `{job}`\n");
    let _ = writeln!(
        out,
        "Generated by `etlhost init` from {origin}: {} labels, {} relationship types. \
         A class is a node label, `«key»` marking the properties its nodes are merged on; \
         an arrow is a relationship type, from the node holding the foreign key (or the join \
         table's first key) to the node it references, with the key's columns or the join table \
         it comes from.\n",
        model.nodes.len(),
        model.rels.len()
    );
    let _ = writeln!(out, "```mermaid\nclassDiagram");
    for n in &model.nodes {
        class(&mut out, n);
    }
    for r in &model.rels {
        relationship(&mut out, r);
    }
    let _ = writeln!(out, "```");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{generate, Dialect, Request};
    use crate::spec::Format;
    use etlhost_plugin_sdk::{Catalog, ColumnInfo, ForeignKey, TableInfo};

    fn col(name: &str, ty: ColumnType, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            declared_type: String::new(),
            column_type: ty,
            nullable,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn fk(columns: &[&str], table: &str, references: &[&str]) -> ForeignKey {
        ForeignKey {
            name: format!("fk_{}", columns.join("_")),
            columns: strings(columns),
            table: table.into(),
            references: strings(references),
            on_delete: Default::default(),
            on_update: Default::default(),
        }
    }

    fn table(name: &str, columns: Vec<ColumnInfo>, pk: &[&str], fks: Vec<ForeignKey>) -> TableInfo {
        TableInfo {
            name: name.into(),
            columns,
            primary_key: strings(pk),
            foreign_keys: fks,
            estimated_rows: 0,
        }
    }

    /// A self-reference, a composite foreign key, a join table with properties, a table without a
    /// key and a column name Mermaid cannot take.
    fn catalog() -> Catalog {
        use ColumnType::*;
        Catalog {
            tables: vec![
                table(
                    "employee",
                    vec![
                        col("id", Int, false),
                        col("name", String, true),
                        col("manager_id", Int, true),
                    ],
                    &["id"],
                    vec![fk(&["manager_id"], "employee", &["id"])],
                ),
                table(
                    "orders",
                    vec![
                        col("tenant", Int, false),
                        col("no", Int, false),
                        col("total (eur)", Decimal, true),
                    ],
                    &["tenant", "no"],
                    vec![],
                ),
                table(
                    "order_line",
                    vec![
                        col("id", Int, false),
                        col("tenant", Int, false),
                        col("order_no", Int, false),
                        col("qty", Int, false),
                    ],
                    &["id"],
                    vec![fk(&["tenant", "order_no"], "orders", &["tenant", "no"])],
                ),
                table(
                    "works_on",
                    vec![
                        col("employee_id", Int, false),
                        col("tenant", Int, false),
                        col("order_no", Int, false),
                        col("hours", Int, true),
                    ],
                    &["employee_id", "tenant", "order_no"],
                    vec![
                        fk(&["employee_id"], "employee", &["id"]),
                        fk(&["tenant", "order_no"], "orders", &["tenant", "no"]),
                    ],
                ),
                table("audit_log", vec![col("at", DateTime, true)], &[], vec![]),
            ],
        }
    }

    fn request(stream: bool) -> Request {
        Request {
            name: "shop".into(),
            source_plugin: "postgres".into(),
            source_options: Default::default(),
            sink_plugin: "bolt".into(),
            sink_options: Default::default(),
            parallelism: 1,
            tables: vec![],
            exclude: vec![],
            format: Format::Yaml,
            origin: "postgres source postgres://db/shop".into(),
            stream,
            dialect: Dialect::Postgres,
        }
    }

    const BATCH: &str = r#"# Graph model of `shop`

Generated by `etlhost init` from postgres source postgres://db/shop: 4 labels, 3 relationship types. A class is a node label, `«key»` marking the properties its nodes are merged on; an arrow is a relationship type, from the node holding the foreign key (or the join table's first key) to the node it references, with the key's columns or the join table it comes from.

```mermaid
classDiagram
    class `Employee` {
        id : Int «key»
        name : String
    }
    class `Orders` {
        tenant : Int «key»
        no : Int «key»
        total #40;eur#41; : Decimal
    }
    class `OrderLine` {
        id : Int «key»
        qty : Int
    }
    class `AuditLog` {
        <<no key>>
        at : DateTime
    }
    `Employee` "*" --> "0..1" `Employee` : MANAGER by employee.manager_id → employee.id
    `OrderLine` "*" --> "1" `Orders` : ORDERS by order_line.(tenant, order_no) → orders.(tenant, no)
    `Employee` "*" --> "*" `Orders` : WORKS_ON by join table works_on with hours Int
```
"#;

    #[test]
    fn the_diagram_shows_labels_keys_properties_and_where_each_relationship_comes_from() {
        let g = generate(&catalog(), &request(false)).unwrap();
        assert_eq!(g.diagram, BATCH);
    }

    #[test]
    fn a_stream_keeps_foreign_key_columns_on_its_nodes_and_the_diagram_says_so() {
        let g = generate(&catalog(), &request(true)).unwrap();
        let expected = BATCH
            .replace(
                "        name : String\n",
                "        name : String\n        manager_id : Int\n",
            )
            .replace(
                "        qty : Int\n",
                "        tenant : Int\n        order_no : Int\n        qty : Int\n",
            );
        assert_eq!(g.diagram, expected);
    }

    #[test]
    fn postgres_names_are_double_quoted_in_the_relationship_queries() {
        let g = generate(&catalog(), &request(false)).unwrap();
        assert!(
            g.text.contains(
                r#"SELECT "id", "tenant", "order_no" FROM "order_line" WHERE "tenant" IS NOT NULL AND "order_no" IS NOT NULL"#
            ),
            "{}",
            g.text
        );
        assert_eq!(
            Dialect::Postgres.relation("sales.order"),
            r#""sales"."order""#
        );
        assert_eq!(
            Dialect::Postgres.relation("Sales.Order"),
            r#""Sales"."Order""#
        );
        assert_eq!(
            Dialect::Postgres.relation(r#"sales."a.b""c""#),
            r#""sales"."a.b""c""#
        );
        assert_eq!(Dialect::MySql.relation("a`b"), "`a``b`");
    }

    #[test]
    fn names_mermaid_cannot_take_are_entity_codes() {
        assert_eq!(text("first name"), "first name");
        assert_eq!(text("größe"), "größe");
        assert_eq!(text("a(b)"), "a#40;b#41;");
        assert_eq!(text("x{y}\"z"), "x#123;y#125;#34;z");
        assert_eq!(text("-minus:"), "#45;minus#58;");
        assert_eq!(text("semi;colon#"), "semi#59;colon#35;");
        assert_eq!(
            path_for(std::path::Path::new("/t/jobs/shop.yaml")),
            std::path::PathBuf::from("/t/jobs/shop.graph.md")
        );
    }
}
