//! Statements in the binlog that change a table's rows without row events.

/// What such a statement does to its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rowless {
    /// `TRUNCATE`: streamed as a change of its own.
    Empties,
    /// `DROP TABLE`: stops the stream.
    Drops,
    /// `RENAME TABLE`, `ALTER TABLE ... RENAME`: stops the stream.
    Renames,
}

impl Rowless {
    pub(super) fn verb(self) -> &'static str {
        match self {
            Rowless::Empties => "empties",
            Rowless::Drops => "drops",
            Rowless::Renames => "renames",
        }
    }
}

/// The tables a statement empties, drops or renames without row events, with what it does to
/// them: `TRUNCATE [TABLE] t`, `DROP [TEMPORARY] TABLE [IF EXISTS] a, b`, `RENAME TABLE a TO b,
/// ...` and `ALTER TABLE a RENAME ...`. Names may be quoted and qualified by their database.
pub(super) fn rowless_tables(sql: &str) -> Option<(Rowless, Vec<Named>)> {
    let words = sql_words(sql);
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let kw = |i: usize, k: &str| upper.get(i).is_some_and(|w| w == k);
    let mut names = Vec::new();
    let what = match upper.first().map(String::as_str) {
        Some("TRUNCATE") => {
            let at = if kw(1, "TABLE") { 2 } else { 1 };
            names.extend(words.get(at).cloned());
            Rowless::Empties
        }
        // `DROP TEMPORARY TABLE` touches no logged table.
        Some("DROP") if kw(1, "TABLE") => {
            let mut at = 2;
            if kw(at, "IF") && kw(at + 1, "EXISTS") {
                at += 2;
            }
            // `a , b , c` up to the end or a trailing `RESTRICT`/`CASCADE` or comment.
            while let Some(w) = words.get(at) {
                if w == "," {
                    at += 1;
                    continue;
                }
                if matches!(upper[at].as_str(), "RESTRICT" | "CASCADE") {
                    break;
                }
                names.push(w.clone());
                at += 1;
            }
            Rowless::Drops
        }
        Some("RENAME") if kw(1, "TABLE") => {
            // `a TO b , c TO d`: the names before each `TO`.
            for (i, w) in upper.iter().enumerate() {
                if w == "TO" && i > 0 {
                    names.push(words[i - 1].clone());
                }
            }
            Rowless::Renames
        }
        Some("ALTER") if kw(1, "TABLE") => {
            // `ALTER TABLE t RENAME [TO|AS] u`, but not `RENAME COLUMN`/`RENAME INDEX`/`KEY`.
            let at = upper.iter().position(|w| w == "RENAME")?;
            if matches!(
                upper.get(at + 1).map(String::as_str),
                Some("COLUMN" | "INDEX" | "KEY")
            ) {
                return None;
            }
            names.extend(words.get(2).cloned());
            Rowless::Renames
        }
        _ => return None,
    };
    let tables: Vec<_> = names.iter().map(|n| split_name(n)).collect();
    (!tables.is_empty()).then_some((what, tables))
}

/// A statement's words: backquoted names whole (with their database, `db`.`t` or db.t), commas on
/// their own, comments left out.
fn sql_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                word.push('`');
                for q in chars.by_ref() {
                    word.push(q);
                    if q == '`' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                end_word(&mut word, &mut words);
                let mut last = ' ';
                for q in chars.by_ref() {
                    if last == '*' && q == '/' {
                        break;
                    }
                    last = q;
                }
            }
            ',' | ';' => {
                end_word(&mut word, &mut words);
                if c == ',' {
                    words.push(",".into());
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut words);
    words
}

/// Where a statement stands in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Boundary {
    /// `BEGIN`, `XA START`: a transaction starts (MySQL; MariaDB's GTID event says it).
    Begin,
    /// `COMMIT`: it ends.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO`): it ends, undone.
    Rollback,
    /// `SAVEPOINT`, `ROLLBACK TO`, `RELEASE SAVEPOINT`, `XA END`: inside a transaction, ending
    /// nothing (an XA's end is its PREPARE event or a later `XA COMMIT`).
    Inside,
    /// Anything else: DDL commits by itself outside a transaction.
    Other,
}

pub(super) fn boundary(sql: &str) -> Boundary {
    let words = sql_words(sql);
    let up = |i: usize| words.get(i).map(|w| w.to_ascii_uppercase());
    match (up(0).as_deref(), up(1).as_deref()) {
        (Some("BEGIN"), None) => Boundary::Begin,
        (Some("XA"), Some("START" | "BEGIN")) => Boundary::Begin,
        (Some("COMMIT"), None) => Boundary::Commit,
        (Some("ROLLBACK"), None) => Boundary::Rollback,
        (Some("SAVEPOINT" | "RELEASE"), _) | (Some("ROLLBACK"), Some("TO")) => Boundary::Inside,
        (Some("XA"), Some("END")) => Boundary::Inside,
        _ => Boundary::Other,
    }
}

/// The names a data-changing statement logged as a statement (not as rows) may change: every
/// word of an `INSERT`, `UPDATE`, `DELETE`, `REPLACE` or `LOAD` that could be a table's name.
/// Wider than the statement's real targets (a column may share a table's name), which can only
/// stop a stream that is already wrong to follow: a row change logged as a statement.
pub(super) fn dml_tables(sql: &str) -> Vec<Named> {
    let words = sql_words(sql);
    let first = words.first().map(|w| w.to_ascii_uppercase());
    if !matches!(
        first.as_deref(),
        Some("INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD")
    ) {
        return Vec::new();
    }
    words
        .iter()
        .skip(1)
        .filter(|w| !w.starts_with('\'') && w.as_str() != ",")
        .map(|w| split_name(w.split('(').next().unwrap_or(w)))
        .collect()
}

/// A statement as an error quotes it: at most 200 characters, its string literals masked (an
/// `ALTER TABLE ... CONNECTION='mysql://user:password@host/db'` must not reach a log).
pub(super) fn quote(sql: &str) -> String {
    let mut out = String::new();
    let mut quoted: Option<char> = None;
    for c in sql.chars().take(200) {
        match quoted {
            Some(q) if c == q => {
                quoted = None;
                out.push(c);
            }
            Some(_) => {}
            None if c == '\'' || c == '"' => {
                quoted = Some(c);
                out.push(c);
                out.push_str("...");
            }
            None => out.push(c),
        }
    }
    out
}

/// A table's database (when the statement names it) and its name.
type Named = (Option<String>, String);

/// `db.t`, `` `db`.`t` `` or `t` into its database (if named) and table, unquoted.
fn split_name(name: &str) -> Named {
    let unquote = |s: &str| s.trim_matches('`').replace("``", "`");
    let mut in_quote = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => in_quote = !in_quote,
            '.' if !in_quote => {
                return (Some(unquote(&name[..i])), unquote(&name[i + 1..]));
            }
            _ => {}
        }
    }
    (None, unquote(name))
}

#[cfg(test)]
mod rowless_tests {
    use super::{rowless_tables, Named, Rowless};

    /// What the statement does, as the stream's error says it, and its tables.
    fn tables(sql: &str) -> Option<(&'static str, Vec<Named>)> {
        rowless_tables(sql).map(|(what, names)| (what.verb(), names))
    }

    /// A table as a case names it: its database, if any, and its name.
    type Expected = (Option<&'static str>, &'static str);

    fn named(names: &[Expected]) -> Vec<Named> {
        names
            .iter()
            .map(|(d, t)| (d.map(String::from), t.to_string()))
            .collect()
    }

    #[test]
    fn statements_that_change_rows_without_row_events() {
        let cases: [(&str, &str, &[Expected]); 5] = [
            ("TRUNCATE TABLE big", "empties", &[(None, "big")]),
            ("truncate `s`.`big`", "empties", &[(Some("s"), "big")]),
            (
                "DROP TABLE IF EXISTS `a`,s.b /* generated by server */",
                "drops",
                &[(None, "a"), (Some("s"), "b")],
            ),
            (
                "RENAME TABLE a TO a_old, s.b TO s.b2",
                "renames",
                &[(None, "a"), (Some("s"), "b")],
            ),
            (
                "ALTER TABLE `my table` RENAME TO other",
                "renames",
                &[(None, "my table")],
            ),
        ];
        for (sql, what, names) in cases {
            assert_eq!(tables(sql), Some((what, named(names))), "{sql}");
        }
        // TRUNCATE is the one streamed as a change; the others stop the stream.
        let kind = |sql| rowless_tables(sql).map(|(k, _)| k);
        assert_eq!(kind("TRUNCATE big"), Some(Rowless::Empties));
        assert_eq!(kind("DROP TABLE big"), Some(Rowless::Drops));
        assert_eq!(kind("RENAME TABLE big TO b"), Some(Rowless::Renames));
    }

    #[test]
    fn other_statements_pass() {
        for sql in [
            "ALTER TABLE t ADD COLUMN c INT",
            "ALTER TABLE t RENAME COLUMN a TO b",
            "DROP TEMPORARY TABLE IF EXISTS tmp",
            "DROP INDEX i ON t",
            "CREATE TABLE t (id INT)",
            "INSERT INTO t VALUES (1)",
        ] {
            assert_eq!(tables(sql), None, "{sql}");
        }
    }

    #[test]
    fn transaction_boundaries() {
        use super::{boundary, Boundary::*};
        for (sql, want) in [
            ("BEGIN", Begin),
            ("XA START X'31',X'',1", Begin),
            ("COMMIT", Commit),
            ("ROLLBACK", Rollback),
            ("ROLLBACK TO sp1", Inside),
            ("SAVEPOINT sp1", Inside),
            ("RELEASE SAVEPOINT sp1", Inside),
            ("XA END X'31',X'',1", Inside),
            ("ALTER TABLE t ADD COLUMN c INT", Other),
        ] {
            assert_eq!(boundary(sql), want, "{sql}");
        }
    }

    #[test]
    fn row_changes_logged_as_statements_name_their_tables() {
        use super::dml_tables;
        let has = |sql: &str, t: &str| dml_tables(sql).iter().any(|(_, n)| n == t);
        assert!(has("DELETE FROM `person`", "person"));
        assert!(has("UPDATE shop.person SET a = 1", "person"));
        assert!(has("INSERT INTO person(id) VALUES (1)", "person"));
        assert!(has("LOAD DATA INFILE 'x.csv' INTO TABLE person", "person"));
        assert!(!has("LOAD DATA INFILE 'person' INTO TABLE other", "person"));
        assert!(dml_tables("ALTER TABLE person ADD c INT").is_empty());
    }

    #[test]
    fn quoted_statements_mask_their_literals() {
        assert_eq!(
            super::quote("ALTER TABLE t CONNECTION='mysql://u:secret@h/db', COMMENT \"x\""),
            "ALTER TABLE t CONNECTION='...', COMMENT \"...\""
        );
    }
}
