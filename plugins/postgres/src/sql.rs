//! SQL text the source's queries share: quoted identifiers, typed literals (COPY takes no bind
//! parameters, so bounds are inlined), and key comparisons.

use etlhost_plugin_sdk::{CursorRange, KeyRange, Split, Value};

/// Quotes one identifier: `a"b` -> `"a""b"`.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal, quotes doubled. Connections run with `standard_conforming_strings = on`,
/// so a backslash is an ordinary character.
pub(crate) fn string_lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Splits a table name (`name`, `schema.name`; a part in double quotes may hold dots and
/// doubled quotes) into its parts, each with whether it was quoted.
pub(crate) fn parse_name(name: &str) -> Result<Vec<(String, bool)>, String> {
    let mut parts = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        let mut part = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("`{name}`: a double quote is not closed")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(format!("`{name}`: an empty name part"));
        }
        parts.push((part, quoted));
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => {
                return Err(format!(
                    "`{name}`: `{c}` after a quoted part (expected `.`)"
                ))
            }
        }
    }
    if parts.len() > 2 {
        return Err(format!(
            "`{name}`: give `table` or `schema.table` (quote a part that holds a dot)"
        ));
    }
    Ok(parts)
}

/// A key value as a literal of the key column's type `ty` (as `format_type` names it).
pub(crate) fn literal(v: &Value, ty: &str) -> String {
    let text = match v {
        Value::Null => return "NULL".to_string(),
        Value::Bool(b) => return b.to_string(),
        // In parentheses: `::` binds tighter than unary minus, so `-32768::smallint` would cast
        // 32768 first and fail for the type's smallest value.
        Value::Int(i) => return format!("({i})::{ty}"),
        Value::UInt(u) => return format!("({u})::{ty}"),
        Value::Float(x) if x.is_nan() => "NaN".to_string(),
        Value::Float(x) if x.is_infinite() => {
            if *x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        }
        // Rust prints the shortest text that reads back as the same float.
        Value::Float(x) => format!("{x:?}"),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + 2 * b.len());
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        other => other.to_string(),
    };
    format!("{}::{ty}", string_lit(&text))
}

/// `(c1, c2, ...) <op> (v1, v2, ...)`, compared column by column; `op` is `>=`, `>` or `<`.
/// Written as a row comparison, which PostgreSQL evaluates in lexicographic order and turns
/// into an index range on a composite key. `types` are the key columns' types.
pub(crate) fn tuple_cmp(columns: &[String], types: &[String], values: &Value, op: &str) -> String {
    let values: &[Value] = match values {
        Value::List(v) if columns.len() > 1 => v,
        one => std::slice::from_ref(one),
    };
    let n = columns.len().min(values.len());
    let lits: Vec<String> = (0..n).map(|i| literal(&values[i], &types[i])).collect();
    if n == 1 {
        return format!("{} {op} {}", ident(&columns[0]), lits[0]);
    }
    let cols: Vec<String> = columns[..n].iter().map(|c| ident(c)).collect();
    format!("({}) {op} ({})", cols.join(", "), lits.join(", "))
}

/// The column that splits a table without a usable key by its blocks.
pub(crate) const CTID: &str = "ctid";

/// The condition that keeps the rows of an incremental read; `ty` is the column's type.
pub(crate) fn cursor_sql(c: &CursorRange, ty: &str) -> String {
    let col = ident(&c.column);
    let mut conds = vec![format!("{col} IS NOT NULL")];
    if let Some(f) = &c.from {
        conds.push(format!("{col} >= {}", literal(f, ty)));
    }
    if let Some(t) = &c.to {
        conds.push(format!("{col} <= {}", literal(t, ty)));
    }
    format!("({})", conds.join(" AND "))
}

/// The filter and order of a split's rows: ` WHERE ...` (or nothing) and ` ORDER BY ...` (or
/// nothing). `keys` are the types of the range's key columns, `cursor` of the cursor column.
pub(crate) fn split_filter(
    split: &Split,
    keys: &[String],
    cursor: Option<&str>,
) -> Result<(String, String), String> {
    let mut filters = Vec::new();
    let mut order = String::new();
    if let Some(r) = &split.range {
        if r.column == CTID && r.columns.is_empty() {
            filters.push(ctid_range(r)?);
        } else {
            filters.push(key_range(r, keys));
            // Key order (NULLs first) lets the host record how far the split got. Only the split
            // that holds the NULLs says so: `NULLS FIRST` is not the order of a default index,
            // and would make PostgreSQL sort the other splits instead of scanning the index.
            let nulls = if r.nulls { " NULLS FIRST" } else { "" };
            let cols: Vec<String> = r
                .key_columns()
                .iter()
                .map(|c| format!("{}{nulls}", ident(c)))
                .collect();
            order = format!(" ORDER BY {}", cols.join(", "));
        }
    }
    if let (Some(c), Some(ty)) = (&split.cursor, cursor) {
        filters.push(cursor_sql(c, ty));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    Ok((filter, order))
}

fn key_range(r: &KeyRange, keys: &[String]) -> String {
    let cols = r.key_columns();
    let mut conds = Vec::new();
    if let Some(s) = &r.start {
        conds.push(tuple_cmp(cols, keys, s, ">="));
    }
    if let Some(a) = &r.after {
        conds.push(tuple_cmp(cols, keys, a, ">"));
    }
    if let Some(e) = &r.end {
        conds.push(tuple_cmp(cols, keys, e, "<"));
    }
    let col = ident(&r.column);
    let range = if conds.is_empty() {
        format!("{col} IS NOT NULL")
    } else {
        conds.join(" AND ")
    };
    if r.nulls {
        format!("(({range}) OR {col} IS NULL)")
    } else {
        format!("({range})")
    }
}

/// Blocks `[start, end)` of the table: PostgreSQL 14 and later scan just those blocks (a TID
/// range scan), in their physical order, which is the order of `ctid`.
fn ctid_range(r: &KeyRange) -> Result<String, String> {
    let block = |v: &Value| match v {
        Value::Int(i) if *i >= 0 && *i <= u32::MAX as i64 => Ok(*i),
        Value::UInt(u) if *u <= u32::MAX as u64 => Ok(*u as i64),
        other => Err(format!(
            "a ctid split's bound must be a block number, not {other}"
        )),
    };
    if r.after.is_some() {
        return Err("a ctid split cannot resume after a row (ctid is not in its rows)".into());
    }
    let mut conds = Vec::new();
    if let Some(s) = &r.start {
        conds.push(format!("ctid >= '({},0)'::tid", block(s)?));
    }
    if let Some(e) = &r.end {
        conds.push(format!("ctid < '({},0)'::tid", block(e)?));
    }
    Ok(if conds.is_empty() {
        "true".to_string()
    } else {
        format!("({})", conds.join(" AND "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(string_lit("it's"), "'it''s'");
        assert_eq!(literal(&Value::Int(5), "bigint"), "(5)::bigint");
        assert_eq!(
            literal(&Value::Int(i64::MIN), "bigint"),
            "(-9223372036854775808)::bigint"
        );
        assert_eq!(
            literal(&Value::String("o'k\\".into()), "text"),
            "'o''k\\'::text"
        );
        assert_eq!(
            literal(&Value::Bytes(vec![0, 255]), "bytea"),
            "'\\x00ff'::bytea"
        );
        assert_eq!(
            literal(&Value::Float(0.1), "double precision"),
            "'0.1'::double precision"
        );
        assert_eq!(literal(&Value::Date(0), "date"), "'1970-01-01'::date");
    }

    #[test]
    fn table_names_split_into_schema_and_name() {
        assert_eq!(parse_name("t").unwrap(), vec![("t".to_string(), false)]);
        assert_eq!(
            parse_name("s.\"My.T\"\"x\"").unwrap(),
            vec![("s".to_string(), false), ("My.T\"x".to_string(), true)]
        );
        assert_eq!(
            parse_name("Größe").unwrap(),
            vec![("Größe".to_string(), false)]
        );
        assert!(parse_name("a.b.c").is_err());
        assert!(parse_name("\"a").is_err());
        assert!(parse_name("a.").is_err());
    }

    fn split(range: KeyRange) -> Split {
        Split {
            id: 0,
            range: Some(range),
            cursor: None,
            stream: None,
        }
    }

    #[test]
    fn a_split_reads_its_range_in_key_order() {
        let mut r = KeyRange {
            column: "id".into(),
            start: None,
            end: Some(Value::Int(10)),
            nulls: true,
            after: None,
            columns: Vec::new(),
        };
        let (f, o) = split_filter(&split(r.clone()), &["bigint".into()], None).unwrap();
        assert_eq!(f, " WHERE ((\"id\" < (10)::bigint) OR \"id\" IS NULL)");
        assert_eq!(o, " ORDER BY \"id\" NULLS FIRST");
        r.start = Some(Value::Int(3));
        r.after = Some(Value::Int(5));
        r.nulls = false;
        let mut s = split(r);
        s.cursor = Some(CursorRange {
            column: "at".into(),
            from: Some(Value::Date(1)),
            to: None,
        });
        let (f, _) = split_filter(&s, &["bigint".into()], Some("date")).unwrap();
        assert_eq!(
            f,
            " WHERE (\"id\" >= (3)::bigint AND \"id\" > (5)::bigint AND \"id\" < (10)::bigint) AND \
             (\"at\" IS NOT NULL AND \"at\" >= '1970-01-02'::date)"
        );
    }

    #[test]
    fn a_ctid_split_reads_blocks() {
        let r = KeyRange {
            column: "ctid".into(),
            start: Some(Value::Int(100)),
            end: Some(Value::Int(200)),
            nulls: false,
            after: None,
            columns: Vec::new(),
        };
        let (f, o) = split_filter(&split(r.clone()), &[], None).unwrap();
        assert_eq!(
            f,
            " WHERE (ctid >= '(100,0)'::tid AND ctid < '(200,0)'::tid)"
        );
        assert_eq!(o, "");
        let mut first = r;
        first.start = None;
        first.nulls = true;
        let (f, _) = split_filter(&split(first), &[], None).unwrap();
        assert_eq!(f, " WHERE (ctid < '(200,0)'::tid)");
    }

    #[test]
    fn composite_keys_compare_as_rows() {
        let cols = ["a".to_string(), "b".to_string()];
        let types = ["integer".to_string(), "text".to_string()];
        let v = Value::List(vec![Value::Int(5), Value::String("k".into())]);
        assert_eq!(
            tuple_cmp(&cols, &types, &v, ">="),
            "(\"a\", \"b\") >= ((5)::integer, 'k'::text)"
        );
        assert_eq!(
            tuple_cmp(&cols[..1], &types[..1], &Value::Int(1), "<"),
            "\"a\" < (1)::integer"
        );
    }
}
