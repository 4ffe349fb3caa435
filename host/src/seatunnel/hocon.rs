//! The HOCON subset SeaTunnel job files are written in, parsed with the line of every key, so that
//! an error can name the line a user wrote. No crate on crates.io gives key positions, keeps two
//! blocks of one plugin apart or keeps a substitution's text (`hocon` 0.9, `hocon-parser` 1.14 and
//! `hocon-rs` 0.2 were checked: docs/decisions/0007-hocon-parser.md).
//!
//! Supported: `{ }` blocks with or without a root brace, `=` / `:` / no separator before `{`,
//! quoted and unquoted keys, dotted keys (`a.b = 1` is `a { b = 1 }`), arrays (of objects too),
//! `,` or new lines between entries, `#` and `//` comments, quoted, triple-quoted and unquoted
//! strings, numbers, booleans, `null`, value concatenation (`"a"${X}"b"`) and `${VAR}` / `${?VAR}`
//! substitutions from the environment. Not supported (an error saying so): `include`, `+=`,
//! substitutions of other keys of the file.
//!
//! Entries are kept as written, duplicates included: [`Object::merged`] gives HOCON's merged view
//! (objects merged key by key, otherwise the last value wins), and SeaTunnel's plugin lists
//! (`source { Jdbc {...} Jdbc {...} }`) read the raw entries, where two blocks of the same plugin
//! are two plugins.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Object(Object),
    Array(Vec<Node>),
    /// A string, resolved. `template` is the same text in etlhost's `${VAR}` syntax when it came
    /// from substitutions, so a converted spec can keep referring to the environment.
    Str {
        text: String,
        template: Option<String>,
        quoted: bool,
    },
    /// The number's text as written.
    Num(String),
    Bool(bool),
    Null,
    /// `${?VAR}` with VAR unset: the key keeps its earlier value, or has none.
    Unset(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The line of the key.
    pub line: usize,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoconError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for HoconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Object {
    /// HOCON's view of the object: one entry per key, at its first position, with the line of its
    /// last assignment; objects merged, other values replaced, `Unset` entries skipped.
    pub fn merged(&self) -> Object {
        let mut out: Vec<Entry> = Vec::new();
        for e in &self.entries {
            let pos = out.iter().position(|o| o.key == e.key);
            match (pos, &e.value.value) {
                // `key = "dev"` then `key = ${?VAR}`: the earlier value, as `${VAR:-dev}` so
                // that a converted spec still reads VAR when it is set.
                (Some(i), Value::Unset(name)) => with_default(&mut out[i].value.value, name),
                (None, Value::Unset(_)) => {}
                (
                    Some(i),
                    Value::Str {
                        template: Some(t), ..
                    },
                ) if t.starts_with("${") && t.ends_with('}') && !t[2..].contains(['$', ':']) => {
                    let name = t[2..t.len() - 1].to_string();
                    let mut prior = out[i].value.value.clone();
                    with_default(&mut prior, &name);
                    let mut e = e.clone();
                    if let (
                        Value::Str {
                            template: Some(p), ..
                        },
                        Value::Str { template, .. },
                    ) = (&prior, &mut e.value.value)
                    {
                        if p.contains(":-") {
                            *template = Some(p.clone());
                        }
                    }
                    out[i] = e;
                }
                (Some(i), Value::Object(new)) => {
                    if let Value::Object(old) = &mut out[i].value.value {
                        old.entries.extend(new.entries.iter().cloned());
                        *old = old.merged();
                        out[i].line = e.line;
                    } else {
                        out[i] = Entry {
                            value: Node {
                                line: e.value.line,
                                value: Value::Object(new.merged()),
                            },
                            ..e.clone()
                        };
                    }
                }
                (Some(i), _) => out[i] = e.clone(),
                (None, Value::Object(o)) => out.push(Entry {
                    value: Node {
                        line: e.value.line,
                        value: Value::Object(o.merged()),
                    },
                    ..e.clone()
                }),
                (None, _) => out.push(e.clone()),
            }
        }
        Object { entries: out }
    }

    /// The entry for `key` in an already merged object.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// Parses a whole file; `env` resolves substitutions.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Object, HoconError> {
    let mut p = Parser {
        chars: text.trim_start_matches('\u{feff}').chars().collect(),
        pos: 0,
        line: 1,
        env,
    };
    p.skip_space(true);
    let root = if p.peek() == Some('{') {
        p.bump();
        let o = p.fields(Some('}'))?;
        p.skip_space(true);
        if p.peek().is_some() {
            return Err(p.error("unexpected text after the closing `}` of the file"));
        }
        o
    } else {
        p.fields(None)?
    };
    Ok(root)
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Characters that end an unquoted key or string.
const FORBIDDEN: &str = "$\"{}[]:=,+#`^?!@*&\\";

enum Piece {
    Text(String),
    Quoted(String),
    Space(String),
    Env { name: String, optional: bool },
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> HoconError {
        HoconError {
            line: self.line,
            message: message.into(),
        }
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some('#') || self.starts_with("//")
    }

    /// Skips blanks and comments, and new lines too when `newlines`.
    fn skip_space(&mut self, newlines: bool) {
        loop {
            match self.peek() {
                Some('\n') if newlines => {
                    self.bump();
                }
                Some(c) if c != '\n' && c.is_whitespace() => {
                    self.bump();
                }
                Some(_) if self.at_comment() => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// Entries up to `end` (consumed) or the end of the file.
    fn fields(&mut self, end: Option<char>) -> Result<Object, HoconError> {
        let mut obj = Object::default();
        loop {
            self.skip_space(true);
            while self.peek() == Some(',') {
                self.bump();
                self.skip_space(true);
            }
            match (self.peek(), end) {
                (None, None) => return Ok(obj),
                (None, Some(c)) => return Err(self.error(format!("missing `{c}`"))),
                (Some(c), Some(e)) if c == e => {
                    self.bump();
                    return Ok(obj);
                }
                _ => {}
            }
            let line = self.line;
            let path = self.key()?;
            self.skip_space(false);
            if path == ["include"] && !matches!(self.peek(), Some('=' | ':' | '{')) {
                return Err(self.error("`include` is not supported: put everything in one file"));
            }
            let value = match self.peek() {
                Some('{') => self.value()?,
                Some('=' | ':') => {
                    self.bump();
                    self.skip_space(false);
                    self.value()?
                }
                Some('+') if self.peek_at(1) == Some('=') => {
                    return Err(self.error(format!(
                        "`+=` is not supported (key `{}`): write the whole list",
                        path.join(".")
                    )))
                }
                _ => {
                    return Err(self.error(format!(
                        "expected `=`, `:` or `{{` after the key `{}`",
                        path.join(".")
                    )))
                }
            };
            // `a.b.c = v` is `a { b { c = v } }`, each level on the key's line.
            let mut node = value;
            for k in path[1..].iter().rev() {
                node = Node {
                    line,
                    value: Value::Object(Object {
                        entries: vec![Entry {
                            key: k.clone(),
                            line,
                            value: node,
                        }],
                    }),
                };
            }
            obj.entries.push(Entry {
                key: path[0].clone(),
                line,
                value: node,
            });
            self.skip_space(false);
            match self.peek() {
                None | Some('\n' | ',') => {}
                Some(c) if Some(c) == end => {}
                Some(c) => {
                    return Err(self.error(format!(
                        "unexpected `{c}` after the value of `{}` (expected a new line or `,`)",
                        path.join(".")
                    )))
                }
            }
        }
    }

    /// A key path: segments, quoted or not, separated by `.`.
    fn key(&mut self) -> Result<Vec<String>, HoconError> {
        let mut path = Vec::new();
        loop {
            let seg = if self.peek() == Some('"') {
                self.quoted()?
            } else {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || c == '.' || FORBIDDEN.contains(c) || self.at_comment() {
                        break;
                    }
                    s.push(c);
                    self.bump();
                }
                if s.is_empty() {
                    return Err(match self.peek() {
                        Some(c) => self.error(format!("expected a key, found `{c}`")),
                        None => self.error("expected a key"),
                    });
                }
                s
            };
            path.push(seg);
            if self.peek() == Some('.') {
                self.bump();
            } else {
                return Ok(path);
            }
        }
    }

    fn quoted(&mut self) -> Result<String, HoconError> {
        let start = self.line;
        if self.starts_with("\"\"\"") {
            self.pos += 3;
            let mut s = String::new();
            loop {
                if self.starts_with("\"\"\"") && self.peek_at(3) != Some('"') {
                    self.pos += 3;
                    return Ok(s);
                }
                match self.bump() {
                    Some(c) => s.push(c),
                    None => {
                        return Err(HoconError {
                            line: start,
                            message: "unterminated `\"\"\"` string".into(),
                        })
                    }
                }
            }
        }
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(s),
                Some('\\') => {
                    let c = self
                        .bump()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    s.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        '"' | '\\' | '/' => c,
                        'u' => {
                            let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                            u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error(format!("bad escape `\\u{hex}`")))?
                        }
                        other => return Err(self.error(format!("bad escape `\\{other}`"))),
                    });
                }
                Some('\n') | None => {
                    return Err(HoconError {
                        line: start,
                        message: "unterminated string".into(),
                    })
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn value(&mut self) -> Result<Node, HoconError> {
        let line = self.line;
        match self.peek() {
            Some('{') => {
                self.bump();
                let o = self.fields(Some('}'))?;
                Ok(Node {
                    line,
                    value: Value::Object(o),
                })
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_space(true);
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            break;
                        }
                        Some(',') => {
                            self.bump();
                        }
                        None => return Err(self.error("missing `]`")),
                        _ => {
                            let v = self.value()?;
                            if !matches!(v.value, Value::Unset(_)) {
                                items.push(v);
                            }
                        }
                    }
                }
                Ok(Node {
                    line,
                    value: Value::Array(items),
                })
            }
            _ => self.simple(line),
        }
    }

    /// A string, number, boolean, null or concatenation, up to the end of the value.
    fn simple(&mut self, line: usize) -> Result<Node, HoconError> {
        let pieces = self.pieces()?;
        let value = match pieces.as_slice() {
            [] => return Err(self.error("missing value")),
            [Piece::Text(t)] => literal(t),
            [Piece::Env { name, optional }] => match (self.env)(name) {
                Some(v) => Value::Str {
                    text: v,
                    template: Some(format!("${{{name}}}")),
                    quoted: false,
                },
                None if *optional => Value::Unset(name.clone()),
                None => return Err(unset(line, name)),
            },
            // A lone quoted string is a string, never a number.
            [Piece::Quoted(t)] => Value::Str {
                text: t.clone(),
                template: None,
                quoted: true,
            },
            _ => self.concatenation(&pieces, line)?,
        };
        Ok(Node { line, value })
    }

    /// The pieces of a value up to its end, without the blanks around it.
    fn pieces(&mut self) -> Result<Vec<Piece>, HoconError> {
        let mut pieces = Vec::new();
        loop {
            match self.peek() {
                None | Some('\n' | ',' | '}' | ']') => break,
                Some(_) if self.at_comment() => break,
                Some('"') => pieces.push(Piece::Quoted(self.quoted()?)),
                Some('$') if self.peek_at(1) == Some('{') => pieces.push(self.substitution()?),
                Some('{' | '[') => {
                    return Err(self.error("concatenating objects or lists is not supported"))
                }
                Some(c) if c.is_whitespace() => {
                    let mut s = String::new();
                    while let Some(c) = self.peek().filter(|c| *c != '\n' && c.is_whitespace()) {
                        s.push(c);
                        self.bump();
                    }
                    pieces.push(Piece::Space(s));
                }
                Some(c) if FORBIDDEN.contains(c) && c != '$' => {
                    return Err(self.error(format!("unexpected `{c}` in a value (quote the text)")))
                }
                Some(_) => pieces.push(Piece::Text(self.unquoted())),
            }
        }
        while matches!(pieces.last(), Some(Piece::Space(_))) {
            pieces.pop();
        }
        while matches!(pieces.first(), Some(Piece::Space(_))) {
            pieces.remove(0);
        }
        Ok(pieces)
    }

    /// `${NAME}` or `${?NAME}`, from its `$`.
    fn substitution(&mut self) -> Result<Piece, HoconError> {
        self.pos += 2;
        let optional = self.peek() == Some('?');
        if optional {
            self.bump();
        }
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '}' || c == '\n' {
                break;
            }
            name.push(c);
            self.bump();
        }
        if self.bump() != Some('}') {
            return Err(self.error("unterminated `${`"));
        }
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(self.error("empty substitution `${}`"));
        }
        Ok(Piece::Env { name, optional })
    }

    /// Unquoted text up to a blank, a character HOCON reserves or a comment.
    fn unquoted(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || FORBIDDEN.contains(c) || self.at_comment() {
                break;
            }
            s.push(c);
            self.bump();
        }
        if s.is_empty() {
            // A lone `$` not starting a substitution.
            s.push('$');
            self.bump();
        }
        s
    }

    /// Several pieces -> one string, and its template in etlhost's `${VAR}` syntax when a
    /// substitution is part of it.
    fn concatenation(&self, pieces: &[Piece], line: usize) -> Result<Value, HoconError> {
        let mut text = String::new();
        let mut template = String::new();
        let mut substituted = false;
        let mut quoted = false;
        for p in pieces {
            match p {
                Piece::Text(t) | Piece::Space(t) => {
                    text.push_str(t);
                    template.push_str(&escape(t));
                }
                Piece::Quoted(t) => {
                    quoted = true;
                    text.push_str(t);
                    template.push_str(&escape(t));
                }
                Piece::Env { name, optional } => {
                    substituted = true;
                    match ((self.env)(name), optional) {
                        (Some(v), _) => {
                            text.push_str(&v);
                            template.push_str(&format!("${{{name}}}"));
                        }
                        (None, true) => template.push_str(&format!("${{{name}:-}}")),
                        (None, false) => return Err(unset(line, name)),
                    }
                }
            }
        }
        Ok(Value::Str {
            text,
            template: substituted.then_some(template),
            quoted,
        })
    }
}

/// An unquoted word: a boolean, null, a number or a string.
fn literal(t: &str) -> Value {
    match t {
        "true" | "yes" | "on" => Value::Bool(true),
        "false" | "no" | "off" => Value::Bool(false),
        "null" => Value::Null,
        t if t.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            && t.parse::<f64>().is_ok() =>
        {
            Value::Num(t.to_string())
        }
        _ => Value::Str {
            text: t.to_string(),
            template: None,
            quoted: false,
        },
    }
}

fn unset(line: usize, name: &str) -> HoconError {
    HoconError {
        line,
        message: format!("environment variable {name} is not set"),
    }
}

/// A literal string becomes `${VAR:-string}` (when etlhost's syntax can hold the string).
fn with_default(v: &mut Value, var: &str) {
    if let Value::Str {
        text,
        template: template @ None,
        ..
    } = v
    {
        if !text.contains(['$', '}']) {
            *template = Some(format!("${{{var}:-{text}}}"));
        }
    }
}

/// Text as a literal in etlhost's `${VAR}` syntax.
pub fn escape(t: &str) -> String {
    t.replace("${", "$${")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn s(text: &str) -> Value {
        Value::Str {
            text: text.into(),
            template: None,
            quoted: true,
        }
    }

    fn get<'a>(o: &'a Object, path: &str) -> &'a Entry {
        let mut cur = o.merged();
        let parts: Vec<&str> = path.split('.').collect();
        for (i, p) in parts.iter().enumerate() {
            let e = cur
                .get(p)
                .unwrap_or_else(|| panic!("{path}: no {p}"))
                .clone();
            if i + 1 == parts.len() {
                return Box::leak(Box::new(e));
            }
            match e.value.value {
                Value::Object(o) => cur = o,
                other => panic!("{path}: {p} is {other:?}"),
            }
        }
        unreachable!()
    }

    #[test]
    fn nested_blocks_and_separators() {
        let o = parse(
            "env {\n  a = 1\n  b: \"x\"\n}\nsink {\n  Neo4j {\n  }\n}\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(get(&o, "env.a").value.value, Value::Num("1".into()));
        assert_eq!(get(&o, "env.b").value.value, s("x"));
        assert_eq!(get(&o, "env.b").line, 3);
        assert_eq!(get(&o, "sink.Neo4j").line, 6);
    }

    #[test]
    fn root_braces_and_commas() {
        let o = parse("{ a = 1, b = [1, 2,\n 3], c { d = true } }", &no_env).unwrap();
        let Value::Array(items) = &get(&o, "b").value.value else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].line, 2);
        assert_eq!(get(&o, "c.d").value.value, Value::Bool(true));
    }

    #[test]
    fn quoted_and_unquoted_keys_and_values() {
        let o = parse(
            "\"merge.test.person\" = BATCH\nmode = STREAMING mode\nn = \"10\"",
            &no_env,
        )
        .unwrap();
        let e = o.merged();
        assert_eq!(e.entries[0].key, "merge.test.person");
        assert_eq!(
            e.entries[0].value.value,
            Value::Str {
                text: "BATCH".into(),
                template: None,
                quoted: false
            }
        );
        assert_eq!(
            get(&o, "mode").value.value,
            Value::Str {
                text: "STREAMING mode".into(),
                template: None,
                quoted: false
            }
        );
        assert_eq!(get(&o, "n").value.value, s("10"));
    }

    #[test]
    fn dotted_keys_merge_into_blocks() {
        let o = parse(
            "env {\n execution.parallelism = 2\n job.mode = \"BATCH\"\n job.name = x\n}\nenv.job.name = y",
            &no_env,
        )
        .unwrap();
        assert_eq!(
            get(&o, "env.execution.parallelism").value.value,
            Value::Num("2".into())
        );
        assert_eq!(get(&o, "env.job.mode").line, 3);
        assert_eq!(get(&o, "env.job.name").line, 6);
        // Two entries as written; one in the merged view.
        assert_eq!(o.entries.len(), 2);
        assert_eq!(o.merged().entries.len(), 1);
    }

    #[test]
    fn lists_of_objects() {
        let text =
            "q = [{\n  tableName = \"t\"\n  pos = { ID = 0, NAME = 1 }\n}, {\n  tableName = u\n}]";
        let o = parse(text, &no_env).unwrap();
        let Value::Array(items) = &get(&o, "q").value.value else {
            panic!()
        };
        let Value::Object(first) = &items[0].value else {
            panic!()
        };
        let first = first.merged();
        assert_eq!(first.get("pos").unwrap().line, 3);
        let Value::Object(pos) = &first.get("pos").unwrap().value.value else {
            panic!()
        };
        assert_eq!(pos.entries[1].key, "NAME");
        assert_eq!(items[1].line, 4);
    }

    #[test]
    fn comments() {
        let text = "# top\na = 1 # after\n// slashes\nb = \"x # not a comment\" // after\nc = a//b";
        let o = parse(text, &no_env).unwrap();
        assert_eq!(get(&o, "a").value.value, Value::Num("1".into()));
        assert_eq!(get(&o, "b").value.value, s("x # not a comment"));
        assert_eq!(get(&o, "b").line, 4);
        // `//` starts a comment in unquoted text, as in HOCON (URLs are quoted anyway: `:`).
        assert_eq!(
            get(&o, "c").value.value,
            Value::Str {
                text: "a".into(),
                template: None,
                quoted: false
            }
        );
    }

    #[test]
    fn substitutions() {
        let env = |n: &str| (n == "PW").then(|| "secret".to_string());
        let o = parse(
            "a = ${PW}\nb = \"x\"\nb = ${?NOPE}\nc = ${?PW}\nd = \"jdbc:\"${PW}\"/db\"\ne = [1, ${?NOPE}]",
            &env,
        )
        .unwrap();
        assert_eq!(
            get(&o, "a").value.value,
            Value::Str {
                text: "secret".into(),
                template: Some("${PW}".into()),
                quoted: false
            }
        );
        // Unset: the earlier value, which a converted spec writes as `${NOPE:-x}`.
        assert_eq!(
            get(&o, "b").value.value,
            Value::Str {
                text: "x".into(),
                template: Some("${NOPE:-x}".into()),
                quoted: true
            }
        );
        assert_eq!(get(&o, "c").line, 4);
        assert_eq!(
            get(&o, "d").value.value,
            Value::Str {
                text: "jdbc:secret/db".into(),
                template: Some("jdbc:${PW}/db".into()),
                quoted: true
            }
        );
        let Value::Array(items) = &get(&o, "e").value.value else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        let err = parse("a = 1\nb = ${MISSING}", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: environment variable MISSING is not set"
        );
    }

    #[test]
    fn triple_quotes_and_escapes() {
        let o = parse(
            "q = \"\"\"unwind $batch\nas row\"\"\"\nr = \"a\\\"b\\n\"",
            &no_env,
        )
        .unwrap();
        assert_eq!(get(&o, "q").value.value, s("unwind $batch\nas row"));
        assert_eq!(get(&o, "r").value.value, s("a\"b\n"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("a {\n b = 1\n", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "line 3: missing `}`");
        let e = parse("a = 1\nb 2", &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: expected `=`, `:` or `{` after the key `b`"
        );
        let e = parse("include \"x.conf\"", &no_env).unwrap_err();
        assert!(e.message.contains("`include` is not supported"));
        let e = parse("a += 1", &no_env).unwrap_err();
        assert!(e.message.contains("`+=`"));
    }
}
