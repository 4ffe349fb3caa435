//! `ALTER TABLE` clauses that change the stored values of every existing row without a single row
//! event: `DROP COLUMN`, a rename (`CHANGE a b`, `RENAME COLUMN`), a column added with a value
//! (`NOT NULL`, a `DEFAULT` other than NULL, generated, `AUTO_INCREMENT`) and `MODIFY`/`CHANGE` to
//! another kind of type. Nodes written before would keep the old values (a dropped property, the
//! old name, no value, the old type) until their row changes again, so the stream stops at such a
//! statement of a streamed table, as it does at `DROP TABLE`. Adding a nullable column without a
//! default, and changing a type within its kind (`INT` to `BIGINT`), are followed.

use std::collections::{HashMap, HashSet};

use etlhost_plugin_sdk::Error;
use mysql_async::Column;

use super::layout::{declared_family, probed_family, Family};
use super::shape::{last_probed, TableShape};

type Key = (String, String);

/// At a statement in the binlog (at `file:end`, run in database `default_db`): an error when it
/// is an `ALTER TABLE` of a streamed table (`tables`; empty: every table) that rewrites its rows.
/// `shapes` are the tables' columns as last read, to tell a `MODIFY` of another kind of type.
pub(super) fn check(
    default_db: &str,
    sql: &str,
    tables: &HashSet<Key>,
    shapes: &HashMap<Key, TableShape>,
    file: &str,
    end: u64,
) -> Result<(), Error> {
    let Some((db, table, clauses)) = parse(sql) else {
        return Ok(());
    };
    let key = (db.unwrap_or_else(|| default_db.to_string()), table);
    if !tables.is_empty() && !tables.contains(&key) {
        return Ok(());
    }
    let columns = match shapes.get(&key) {
        Some(s) => Some(s.probed.clone()),
        None => last_probed(&key),
    };
    let Some(what) = clauses.iter().find_map(|c| rewrite(c, columns.as_deref())) else {
        return Ok(());
    };
    let statement = super::statements::quote(sql);
    Err(Error::permanent(format!(
        "the binlog at {file}:{end} has `{statement}`, which {what} of the streamed table {}.{} without row events (nodes written before would keep the old values): the stream stops here rather than let the target drift from MySQL; run the flow again with --fresh for a new snapshot",
        key.0, key.1
    )))
}

/// What a clause (its words) does to every row, if anything.
fn rewrite(clause: &[String], columns: Option<&[Column]>) -> Option<String> {
    let up: Vec<String> = clause.iter().map(|w| w.to_ascii_uppercase()).collect();
    let mut at = 1;
    let skip = |at: &mut usize, words: &[&str]| {
        while up.get(*at).is_some_and(|w| words.contains(&w.as_str())) {
            *at += 1;
        }
    };
    let name = |i: usize| clause.get(i).map(|w| unquote(w));
    // Partitions hold rows: dropping, emptying or exchanging one moves them with no row event.
    let partition = up.get(1).is_some_and(|w| w == "PARTITION");
    match up.first()?.as_str() {
        "DROP" if partition => Some(format!("drops partition `{}` with its rows", name(2)?)),
        "TRUNCATE" if partition => Some(format!("empties partition `{}`", name(2)?)),
        "EXCHANGE" if partition => Some(format!(
            "exchanges the rows of partition `{}` with those of table `{}`",
            name(2)?,
            name(5)?
        )),
        "DROP" => {
            skip(&mut at, &["COLUMN", "IF", "EXISTS"]);
            let not_a_column = [
                "INDEX",
                "KEY",
                "PRIMARY",
                "FOREIGN",
                "CONSTRAINT",
                "CHECK",
                "PARTITION",
                "SYSTEM",
                "PERIOD",
                "UNIQUE",
                "FULLTEXT",
                "SPATIAL",
            ];
            if not_a_column.contains(&up.get(at)?.as_str()) {
                return None;
            }
            Some(format!("drops column `{}` from every row", name(at)?))
        }
        "RENAME" if up.get(1).is_some_and(|w| w == "COLUMN") => Some(format!(
            "renames column `{}` to `{}` in every row",
            name(2)?,
            name(4)?
        )),
        "CHANGE" => {
            skip(&mut at, &["COLUMN", "IF", "EXISTS"]);
            let (old, new) = (name(at)?, name(at + 1)?);
            if !old.eq_ignore_ascii_case(&new) {
                return Some(format!("renames column `{old}` to `{new}` in every row"));
            }
            converts(&new, clause.get(at + 2)?, columns)
        }
        "MODIFY" => {
            skip(&mut at, &["COLUMN", "IF", "EXISTS"]);
            converts(&name(at)?, clause.get(at + 1)?, columns)
        }
        "ADD" => {
            skip(&mut at, &["COLUMN", "IF", "NOT", "EXISTS"]);
            let not_a_column = [
                "INDEX",
                "KEY",
                "PRIMARY",
                "FOREIGN",
                "CONSTRAINT",
                "CHECK",
                "PARTITION",
                "SYSTEM",
                "PERIOD",
                "UNIQUE",
                "FULLTEXT",
                "SPATIAL",
                "(",
            ];
            if not_a_column.contains(&up.get(at)?.as_str()) {
                return None;
            }
            let column = name(at)?;
            fills(&up[at..]).then(|| format!("fills the new column `{column}` of every row"))
        }
        _ => None,
    }
}

/// A column added with a value for the rows already there.
fn fills(up: &[String]) -> bool {
    let has = |w: &str| up.iter().any(|u| u == w);
    let not_null = up.windows(2).any(|p| p[0] == "NOT" && p[1] == "NULL");
    let default_value = up.windows(2).any(|p| p[0] == "DEFAULT" && p[1] != "NULL");
    not_null || default_value || has("AS") || has("GENERATED") || has("AUTO_INCREMENT")
}

/// `MODIFY`/`CHANGE` of `column` to `ty`: a rewrite when its kind of type changes. Unknown
/// without the table's columns as they were before (not probed yet in this process): rows
/// logged before it are still checked one by one (`layout`).
fn converts(column: &str, ty: &str, columns: Option<&[Column]>) -> Option<String> {
    let old = columns?.iter().find(|c| c.name_str() == column)?;
    let new = declared_family(ty)?;
    let old = match probed_family(old) {
        Family::Json => Family::Text,
        f => f,
    };
    (old != new).then(|| {
        let ty = ty.split('(').next().unwrap_or(ty).to_lowercase();
        format!("converts column `{column}` of every row to {ty}")
    })
}

fn unquote(w: &str) -> String {
    w.strip_prefix('`')
        .and_then(|w| w.strip_suffix('`'))
        .map_or_else(|| w.to_string(), |w| w.replace("``", "`"))
}

/// `ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] [db.]t clause, clause, ...`: the table and its
/// clauses as words (commas inside parentheses belong to their clause).
fn parse(sql: &str) -> Option<(Option<String>, String, Vec<Vec<String>>)> {
    let words = words(sql);
    let up: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    if up.first().map(String::as_str) != Some("ALTER") {
        return None;
    }
    let mut at = 1;
    while up
        .get(at)
        .is_some_and(|w| w == "ONLINE" || w == "IGNORE" || w == "OFFLINE")
    {
        at += 1;
    }
    if up.get(at).map(String::as_str) != Some("TABLE") {
        return None;
    }
    at += 1;
    if up.get(at).is_some_and(|w| w == "IF") && up.get(at + 1).is_some_and(|w| w == "EXISTS") {
        at += 2;
    }
    let name = words.get(at)?;
    let (db, table) = match split_dot(name) {
        Some((d, t)) => (Some(unquote(d)), unquote(t)),
        None => (None, unquote(name)),
    };
    let mut clauses = vec![Vec::new()];
    let mut depth = 0usize;
    for w in &words[at + 1..] {
        match w.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                clauses.push(Vec::new());
                continue;
            }
            _ => {}
        }
        clauses.last_mut().expect("one at least").push(w.clone());
    }
    Some((db, table, clauses))
}

/// `a.b` at the dot outside backquotes.
fn split_dot(name: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '.' if !quoted => return Some((&name[..i], &name[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Words of a statement: backquoted names (with their dots: `` `db`.`t` ``) and quoted strings
/// whole, parentheses and commas on their own, comments left out.
fn words(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '\'' | '"' => {
                word.push(c);
                while let Some(q) = chars.next() {
                    word.push(q);
                    if q == c && chars.peek() != Some(&c) {
                        break;
                    }
                    if q == c {
                        word.push(chars.next().expect("peeked"));
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for q in chars.by_ref() {
                    if last == '*' && q == '/' {
                        break;
                    }
                    last = q;
                }
            }
            '(' | ')' | ',' | ';' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(sql: &str) -> Option<String> {
        let (_, _, clauses) = parse(sql)?;
        clauses.iter().find_map(|c| rewrite(c, None))
    }

    #[test]
    fn clauses_that_rewrite_every_row() {
        assert_eq!(
            what("ALTER TABLE person DROP COLUMN b").as_deref(),
            Some("drops column `b` from every row")
        );
        assert_eq!(
            what("alter table `shop`.`person` add index i (a), drop `b`").as_deref(),
            Some("drops column `b` from every row")
        );
        assert_eq!(
            what("ALTER TABLE person CHANGE a b VARCHAR(20)").as_deref(),
            Some("renames column `a` to `b` in every row")
        );
        assert_eq!(
            what("ALTER TABLE person RENAME COLUMN a TO b").as_deref(),
            Some("renames column `a` to `b` in every row")
        );
        assert_eq!(
            what("ALTER TABLE person ADD COLUMN d INT NOT NULL DEFAULT 5").as_deref(),
            Some("fills the new column `d` of every row")
        );
        assert_eq!(
            what("ALTER TABLE person ADD d VARCHAR(3) DEFAULT 'x,y'").as_deref(),
            Some("fills the new column `d` of every row")
        );
        assert_eq!(
            what("ALTER TABLE person DROP PARTITION p0").as_deref(),
            Some("drops partition `p0` with its rows")
        );
        assert_eq!(
            what("ALTER TABLE person TRUNCATE PARTITION p1, p2").as_deref(),
            Some("empties partition `p1`")
        );
        assert_eq!(
            what("ALTER TABLE person EXCHANGE PARTITION p0 WITH TABLE old_people").as_deref(),
            Some("exchanges the rows of partition `p0` with those of table `old_people`")
        );
    }

    #[test]
    fn clauses_that_leave_rows_as_they_are() {
        for sql in [
            "ALTER TABLE person ADD COLUMN m INT AFTER a",
            "ALTER TABLE person ADD COLUMN m INT NULL DEFAULT NULL FIRST",
            "ALTER TABLE person ADD INDEX i (a, b), DROP INDEX j",
            "ALTER TABLE person DROP PRIMARY KEY, ADD PRIMARY KEY (id)",
            "ALTER TABLE person DROP FOREIGN KEY fk, ADD CONSTRAINT c CHECK (a > 0)",
            "ALTER TABLE person MODIFY n BIGINT",
            "ALTER TABLE person CHANGE n n BIGINT",
            "ALTER TABLE person ALTER COLUMN n SET DEFAULT 3",
            "ALTER TABLE person ENGINE = InnoDB",
            "ALTER TABLE person ADD PARTITION (PARTITION p9 VALUES LESS THAN (900))",
            "ALTER TABLE person REORGANIZE PARTITION p0 INTO (PARTITION a VALUES LESS THAN (5))",
            "CREATE TABLE t (a INT NOT NULL)",
            "INSERT INTO person VALUES (1)",
        ] {
            assert_eq!(what(sql), None, "{sql}");
        }
    }

    #[test]
    fn the_table_may_be_qualified_and_quoted() {
        let (db, t, _) = parse("ALTER ONLINE TABLE IF EXISTS `my db`.`per``son` DROP x").unwrap();
        assert_eq!((db.as_deref(), t.as_str()), (Some("my db"), "per`son"));
    }
}
