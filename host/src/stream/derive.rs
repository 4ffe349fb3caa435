//! Applying one chunk of the log with the changes the source made without logging them.
//!
//! A chunk of table P is cut after each run of changes that trigger a cascade (a delete of a
//! referenced row, a change of referenced columns, a key change), before a trigger that looks for
//! values an earlier trigger of the run gives child rows, and around each `TRUNCATE`.
//! A run is written with every flow of P; then the rows it changes are found in the graph, level
//! by level (children, grandchildren, a self-reference's own rows; a row is changed once, so a
//! cycle ends), all before any of them is written, and written as ordinary changes of their
//! tables: first every delete, deepest level first, then every update, top level first.
//!
//! Why that order ends exact after a kill: the recorded position never moves past a chunk whose
//! derived changes are not all written, so a restart reads the run again and looks again (the run's
//! own changes already written are skipped; the chunk's later changes of the keys the second look
//! changes are written again, since the graph now holds what they wrote). The rows are found by their own columns
//! (the foreign key's values are properties of the child's node), which the parent's write does
//! not touch; deleting deepest first means every row not yet deleted can still be reached from
//! the top, so the second look finds exactly what is left.

use std::collections::{HashMap, HashSet};

use etlhost_plugin_sdk::split::FkRule;
use etlhost_plugin_sdk::{Change, ChangeBatch, ChangeKind, Position, Row, Schema, Value};

use super::cascade::{Cascades, Deferred, Fk, Trigger, PAGE};

/// Writes a batch with every flow of its table; `Some(i)`: changes `i..` of the chunk read from
/// the log, `None`: changes the stream derived (which never move the recorded position).
pub(super) type Write<'a> = dyn FnMut(&ChangeBatch, Option<usize>) -> Result<(), String> + 'a;

/// How deep a cascade may go before the stream stops (a chain longer than any schema has).
const MAX_DEPTH: usize = 100;

/// What a cascade does to one row.
#[derive(Debug, Clone)]
enum Effect {
    Delete(Row),
    Update { old: Row, row: Row },
}

/// The rows one table's cascade changes, keyed by primary key, with their level.
struct Found {
    schema: Schema,
    key: Vec<usize>,
    rows: HashMap<String, (usize, Effect)>,
}

/// Writes a chunk, with what it changes without logging it; `write` writes a batch with every
/// flow of its table.
pub(super) fn apply(
    b: &ChangeBatch,
    cx: &mut Cascades,
    write: &mut Write<'_>,
) -> Result<(), String> {
    let may_trigger = b.changes.iter().any(|c| {
        matches!(
            c.kind,
            ChangeKind::Delete | ChangeKind::Update | ChangeKind::Truncate
        ) || c.old.is_some()
    });
    cx.maybe_refresh(&b.table, &b.schema, may_trigger)?;
    if let Some(d) = cx.deferred.take() {
        let key_change = d.table == b.table
            && b.changes
                .first()
                .is_some_and(|c| c.kind == ChangeKind::Insert && c.old.as_ref() == Some(&d.row));
        if !key_change {
            let found = resolve(d.triggers, cx)?;
            // The deferred delete's transaction goes on in this batch.
            let at = b
                .changes
                .first()
                .map(|c| c.commit.clone())
                .unwrap_or_default();
            write_found(found, &at, cx, write)?;
        }
    }
    if b.changes.iter().all(|c| c.kind == ChangeKind::Mark) {
        return Ok(());
    }
    let truncates = b.changes.iter().any(|c| c.kind == ChangeKind::Truncate);
    if !truncates && (!may_trigger || !cx.is_parent(&b.table)) {
        return write(b, Some(0));
    }
    let mut start = 0;
    let mut pending: Vec<Trigger> = Vec::new();
    // The new values that the pending ON UPDATE triggers give child rows: a later trigger that
    // looks for one of them must see those updates written first.
    let mut news: HashSet<(usize, String)> = HashSet::new();
    for i in 0..b.changes.len() {
        let c = &b.changes[i];
        if c.kind == ChangeKind::Truncate {
            run(b, start..i, &pending, cx, write)?;
            pending.clear();
            news.clear();
            truncate(b, i, cx, write)?;
            start = i + 1;
            continue;
        }
        let found = triggers(b, i, cx);
        let part_of_key_change = c.kind == ChangeKind::Delete && is_key_change_delete(b, i);
        // A part of a larger transaction ends in `last` with a position inside it (`skip`).
        let goes_on = !c.last || c.commit.skip > 0;
        if i + 1 == b.changes.len() && c.kind == ChangeKind::Delete && goes_on && !found.is_empty()
        {
            // The transaction goes on in the next part: this delete may be the first half of a
            // key change, which only the next change tells. Its cascade waits for it, and the
            // recorded position stays before it meanwhile (the dispatch loop holds it).
            cx.deferred = Some(Deferred {
                table: b.table.clone(),
                row: c.row.clone(),
                triggers: found,
            });
            continue;
        }
        let after_updates = found.iter().any(|t| news.contains(&(t.fk, json(&t.old))));
        if (after_updates || (found.is_empty() && !part_of_key_change)) && !pending.is_empty() {
            run(b, start..i, &pending, cx, write)?;
            pending.clear();
            news.clear();
            start = i;
        }
        news.extend(
            found
                .iter()
                .filter_map(|t| Some((t.fk, json(t.new.as_ref()?)))),
        );
        pending.extend(found);
    }
    run(b, start..b.changes.len(), &pending, cx, write)
}

/// A delete immediately followed by the insert of the same row's new key.
fn is_key_change_delete(b: &ChangeBatch, i: usize) -> bool {
    let c = &b.changes[i];
    b.changes
        .get(i + 1)
        .is_some_and(|n| n.kind == ChangeKind::Insert && n.old.as_ref() == Some(&c.row))
}

fn values(row: &Row, schema: &Schema, columns: &[String]) -> Option<Vec<Value>> {
    columns
        .iter()
        .map(|c| {
            let i = schema.iter().position(|s| &s.name == c)?;
            Some(row[i].clone())
        })
        .collect()
}

/// The cascades change `i` of `b` starts.
fn triggers(b: &ChangeBatch, i: usize, cx: &Cascades) -> Vec<Trigger> {
    let c = &b.changes[i];
    let mut out = Vec::new();
    if c.no_fk_actions {
        // MySQL ran it with foreign_key_checks = 0: the child rows stayed as they were.
        return out;
    }
    for (n, fk) in cx
        .fks
        .iter()
        .enumerate()
        .filter(|(_, f)| f.parent == b.table)
    {
        let Some(t) = trigger_of(b, i, c, fk) else {
            continue;
        };
        let rule = if t.0.is_some() {
            fk.on_update
        } else {
            fk.on_delete
        };
        if rule.changes_rows() && !t.1.contains(&Value::Null) {
            out.push(Trigger {
                fk: n,
                old: t.1,
                new: t.0,
            });
        }
    }
    out
}

/// `(new values, old values)` of `fk`'s referenced columns when change `c` changes them.
type Referenced = (Option<Vec<Value>>, Vec<Value>);

fn trigger_of(b: &ChangeBatch, i: usize, c: &Change, fk: &Fk) -> Option<Referenced> {
    let refs = &fk.references;
    match (c.kind, &c.old) {
        (ChangeKind::Delete, _) if !is_key_change_delete(b, i) => {
            Some((None, values(&c.row, &b.schema, refs)?))
        }
        (ChangeKind::Insert | ChangeKind::Update, Some(old)) => {
            let before = values(old, &b.schema, refs)?;
            let after = values(&c.row, &b.schema, refs)?;
            (before != after).then_some((Some(after), before))
        }
        _ => None,
    }
}

/// Writes changes `range` of `b`, then what `triggers` (found in them) change.
fn run(
    b: &ChangeBatch,
    range: std::ops::Range<usize>,
    triggers: &[Trigger],
    cx: &mut Cascades,
    write: &mut Write<'_>,
) -> Result<(), String> {
    if range.is_empty() {
        return Ok(());
    }
    let range_start = range.start;
    let part = ChangeBatch {
        table: b.table.clone(),
        schema: b.schema.clone(),
        key: b.key.clone(),
        changes: b.changes[range].to_vec(),
    };
    write(&part, Some(range_start))?;
    if triggers.is_empty() {
        return Ok(());
    }
    let found = resolve(triggers.to_vec(), cx)?;
    // Derived changes carry their trigger's transaction, for the dead-letter file and held keys.
    let at = part
        .changes
        .last()
        .map(|c| c.commit.clone())
        .unwrap_or_default();
    write_found(found, &at, cx, write)
}

/// Follows the triggers through the graph, level by level, before anything is written.
fn resolve(first: Vec<Trigger>, cx: &Cascades) -> Result<HashMap<String, Found>, String> {
    let mut found: HashMap<String, Found> = HashMap::new();
    let mut level = first;
    let mut depth = 0;
    while !level.is_empty() {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(format!(
                "a cascade went deeper than {MAX_DEPTH} levels (foreign key `{}`): the graph is left as it is before it; check the foreign keys for a cycle",
                cx.fks[level[0].fk].name
            ));
        }
        let mut next = Vec::new();
        let mut by_fk: HashMap<usize, Vec<Trigger>> = HashMap::new();
        for t in level {
            by_fk.entry(t.fk).or_default().push(t);
        }
        for (n, ts) in by_fk {
            next.extend(follow_fk(&cx.fks[n].clone(), &ts, depth, cx, &mut found)?);
        }
        level = next;
    }
    Ok(found)
}

/// The rows of `fk`'s child that `ts` change, recorded in `found`; the triggers their changes
/// start in turn.
fn follow_fk(
    fk: &Fk,
    ts: &[Trigger],
    depth: usize,
    cx: &Cascades,
    found: &mut HashMap<String, Found>,
) -> Result<Vec<Trigger>, String> {
    let maps: Vec<Vec<(String, Value)>> = ts
        .iter()
        .map(|t| {
            fk.columns
                .iter()
                .cloned()
                .zip(t.old.iter().cloned())
                .collect()
        })
        .collect();
    let (schema, rows) = cx.find(&fk.child, &maps, usize::MAX)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = cx.key_in(&fk.child, &schema)?;
    let by_old: HashMap<String, &Trigger> = ts.iter().map(|t| (json(&t.old), t)).collect();
    let entry = found.entry(fk.child.clone()).or_insert_with(|| Found {
        schema: schema.clone(),
        key: key.clone(),
        rows: HashMap::new(),
    });
    let mut next = Vec::new();
    for row in rows {
        let Some(t) = trigger_for(fk, ts, &by_old, values(&row, &schema, &fk.columns)) else {
            return Err(format!(
                "foreign key `{}`: a row of `{}` that rows_query found matches none of the changed rows of `{}` once read back, so its new values for ON UPDATE CASCADE are unknown: check that rows_query returns the key's columns as the source has them",
                fk.name, fk.child, fk.parent
            ));
        };
        let k = json(&key.iter().map(|&i| row[i].clone()).collect::<Vec<_>>());
        let current = match entry.rows.get(&k) {
            Some((_, Effect::Delete(_))) => continue,
            Some((_, Effect::Update { row, .. })) => row.clone(),
            None => row.clone(),
        };
        let rule = if t.new.is_some() {
            fk.on_update
        } else {
            fk.on_delete
        };
        let effect = match rule {
            FkRule::Cascade if t.new.is_none() => Effect::Delete(row.clone()),
            FkRule::Cascade | FkRule::SetNull => {
                let mut new = current.clone();
                for (j, c) in fk.columns.iter().enumerate() {
                    if let Some(i) = schema.iter().position(|s| &s.name == c) {
                        new[i] = match (&t.new, rule) {
                            (Some(v), FkRule::Cascade) => v[j].clone(),
                            _ => Value::Null,
                        };
                    }
                }
                if new == current {
                    continue;
                }
                Effect::Update {
                    old: row.clone(),
                    row: new,
                }
            }
            _ => continue,
        };
        let child = ChangeBatch {
            table: fk.child.clone(),
            schema: schema.clone(),
            key: key.clone(),
            changes: vec![change(&effect, &current)],
        };
        for i in 0..child.changes.len() {
            next.extend(triggers(&child, i, cx));
        }
        entry.rows.insert(k, (depth, effect));
    }
    Ok(next)
}

/// The trigger that found a row: by its values; when they read back from the graph in another
/// form, any trigger of the group serves for deletes and SET NULL (the effect is the same), but
/// not for ON UPDATE CASCADE, whose new values differ.
fn trigger_for<'a>(
    fk: &Fk,
    ts: &'a [Trigger],
    by_old: &HashMap<String, &'a Trigger>,
    found: Option<Vec<Value>>,
) -> Option<&'a Trigger> {
    if let Some(t) = found.and_then(|v| by_old.get(&json(&v)).copied()) {
        return Some(t);
    }
    let same = |t: &Trigger| t.new.is_none() || fk.on_update == FkRule::SetNull;
    (ts.len() == 1 || ts.iter().all(same)).then(|| &ts[0])
}

fn json(v: &[Value]) -> String {
    let j: Vec<serde_json::Value> = v.iter().map(Value::to_json).collect();
    serde_json::Value::Array(j).to_string()
}

/// The change an effect is as seen from a row that was `current` (for the triggers it starts).
fn change(effect: &Effect, current: &Row) -> Change {
    let (kind, row, old) = match effect {
        Effect::Delete(r) => (ChangeKind::Delete, r.clone(), None),
        Effect::Update { row, .. } => (ChangeKind::Update, row.clone(), Some(current.clone())),
    };
    Change {
        kind,
        row,
        old,
        commit: Position::default(),
        last: false,
        timestamp: 0,
        no_fk_actions: false,
    }
}

/// Writes what a cascade found: deletes deepest level first, then updates top level first (a
/// key change as a delete and an insert, as the source sends one).
fn write_found(
    found: HashMap<String, Found>,
    at: &Position,
    cx: &mut Cascades,
    write: &mut Write<'_>,
) -> Result<(), String> {
    let depth = found
        .values()
        .flat_map(|f| f.rows.values().map(|(d, _)| *d))
        .max()
        .unwrap_or(0);
    let mut tables: Vec<&String> = found.keys().collect();
    tables.sort();
    for pass in 0..2 {
        for d in 0..depth {
            let d = if pass == 0 { depth - d } else { d + 1 };
            for table in &tables {
                let f = &found[*table];
                let mut changes = Vec::new();
                for (dd, e) in f.rows.values() {
                    if *dd != d {
                        continue;
                    }
                    match (pass, e) {
                        (0, Effect::Delete(r)) => changes.push(plain(ChangeKind::Delete, r, None)),
                        (1, Effect::Update { old, row }) => {
                            let key_changed = f.key.iter().any(|&i| old[i] != row[i]);
                            if key_changed {
                                changes.push(plain(ChangeKind::Delete, old, None));
                                changes.push(plain(ChangeKind::Insert, row, Some(old)));
                            } else {
                                changes.push(plain(ChangeKind::Update, row, Some(old)));
                            }
                        }
                        _ => {}
                    }
                }
                if changes.is_empty() {
                    continue;
                }
                for c in &mut changes {
                    c.commit = at.clone();
                }
                cx.cascaded += changes.len() as u64;
                write(
                    &ChangeBatch {
                        table: (*table).clone(),
                        schema: f.schema.clone(),
                        key: f.key.clone(),
                        changes,
                    },
                    None,
                )?;
            }
        }
    }
    Ok(())
}

fn plain(kind: ChangeKind, row: &Row, old: Option<&Row>) -> Change {
    Change {
        kind,
        row: row.clone(),
        old: old.cloned(),
        commit: Position::default(),
        last: false,
        timestamp: 0,
        no_fk_actions: false,
    }
}

/// `TRUNCATE` of the chunk's table at change `i`: every row the graph holds is deleted, a page at
/// a time, with all the table's flows. InnoDB refuses to truncate a table other tables refer to
/// (and does not cascade when told to skip the check), so nothing cascades from it.
fn truncate(
    b: &ChangeBatch,
    i: usize,
    cx: &mut Cascades,
    write: &mut Write<'_>,
) -> Result<(), String> {
    let at = &b.changes[i].commit;
    if cx.finder_flow(&b.table).is_none() {
        return Err(format!(
            "the change log has `TRUNCATE TABLE {t}` in the transaction that ends at {at}, and no flow of table `{t}` has a `rows_query` to find the nodes it removes: add `rows_query` to its node flow (`etlhost init --mode stream` writes one), then run again (the recorded position is before the statement), or run with --fresh for a new snapshot",
            t = b.table
        ));
    }
    let mut last: Option<Vec<Row>> = None;
    loop {
        let (schema, rows) = cx.find(&b.table, &[Vec::new()], PAGE)?;
        if rows.is_empty() {
            return Ok(());
        }
        if last.as_ref() == Some(&rows) {
            return Err(format!(
                "TRUNCATE TABLE {t} (transaction ending at {at}): the rows flow `{f}`'s rows_query finds are still there after their deletes were written: check that it returns what the flows' delete_query matches",
                t = b.table,
                f = cx.finder_flow(&b.table).unwrap_or("?")
            ));
        }
        let key = cx.key_in(&b.table, &schema)?;
        let changes = rows
            .iter()
            .map(|r| Change {
                commit: at.clone(),
                ..plain(ChangeKind::Delete, r, None)
            })
            .collect();
        cx.cascaded += rows.len() as u64;
        write(
            &ChangeBatch {
                table: b.table.clone(),
                schema,
                key,
                changes,
            },
            None,
        )?;
        last = Some(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::{Column, ColumnType};

    fn batch(changes: Vec<Change>) -> ChangeBatch {
        let col = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Any,
        };
        ChangeBatch {
            table: "team".into(),
            schema: vec![col("id"), col("name")].into(),
            key: vec![0],
            changes,
        }
    }

    fn fk() -> Fk {
        Fk {
            name: "member_team".into(),
            child: "member".into(),
            columns: vec!["team_id".into()],
            parent: "team".into(),
            references: vec!["id".into()],
            on_delete: FkRule::Cascade,
            on_update: FkRule::Cascade,
        }
    }

    fn row(id: i64) -> Row {
        vec![Value::Int(id), Value::String("t".into())]
    }

    #[test]
    fn a_key_change_is_an_update_of_the_referenced_values_not_a_delete() {
        let b = batch(vec![
            plain(ChangeKind::Delete, &row(1), None),
            plain(ChangeKind::Insert, &row(10), Some(&row(1))),
            plain(ChangeKind::Delete, &row(2), None),
        ]);
        assert!(is_key_change_delete(&b, 0));
        assert!(!is_key_change_delete(&b, 2));
        assert!(trigger_of(&b, 0, &b.changes[0], &fk()).is_none());
        let (new, old) = trigger_of(&b, 1, &b.changes[1], &fk()).unwrap();
        assert_eq!(
            (new, old),
            (Some(vec![Value::Int(10)]), vec![Value::Int(1)])
        );
        let (new, old) = trigger_of(&b, 2, &b.changes[2], &fk()).unwrap();
        assert_eq!((new, old), (None, vec![Value::Int(2)]));
    }

    #[test]
    fn an_update_that_keeps_the_referenced_values_triggers_nothing() {
        let mut renamed = row(1);
        renamed[1] = Value::String("u".into());
        let b = batch(vec![plain(ChangeKind::Update, &renamed, Some(&row(1)))]);
        assert!(trigger_of(&b, 0, &b.changes[0], &fk()).is_none());
    }
}
