//! SQL text the source's queries share: quoted identifiers, typed literals (COPY takes no bind
//! parameters, so bounds are inlined), and key comparisons.

use etlhost_plugin_sdk::Value;

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
        Value::Int(i) => return format!("{i}::{ty}"),
        Value::UInt(u) => return format!("{u}::{ty}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(string_lit("it's"), "'it''s'");
        assert_eq!(literal(&Value::Int(5), "bigint"), "5::bigint");
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

    #[test]
    fn composite_keys_compare_as_rows() {
        let cols = ["a".to_string(), "b".to_string()];
        let types = ["integer".to_string(), "text".to_string()];
        let v = Value::List(vec![Value::Int(5), Value::String("k".into())]);
        assert_eq!(
            tuple_cmp(&cols, &types, &v, ">="),
            "(\"a\", \"b\") >= (5::integer, 'k'::text)"
        );
        assert_eq!(
            tuple_cmp(&cols[..1], &types[..1], &Value::Int(1), "<"),
            "\"a\" < 1::integer"
        );
    }
}
