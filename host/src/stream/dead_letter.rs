//! Changes the sink refuses for good, with `stream: {on_failed_change: dead_letter}`: each goes to
//! the job's dead-letter file (JSON Lines) and the stream goes on.
//!
//! A refused change's key is then *held*: the later changes of that key in the same flow are not
//! written but dead-lettered too, in order, because applying them could leave a half row (an
//! update after a refused insert) or reorder the key's changes (a later change landing before an
//! earlier one that an operator replays from the file). A delete of a held key is still tried:
//! when the sink accepts it, the graph and the source agree again (no row) and the key is
//! released. The held keys are kept in `<checkpoint.dir>/<job>.stream.held-keys.json`, written
//! before the recorded position can move past the change that held them, so a restart (which
//! reads on after that position) keeps holding them; keys held by changes after the recorded
//! position are dropped at start, since those changes are read again and decide afresh.
//! `--fresh` (a new snapshot copies every row again) releases them all.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use etlhost_plugin_sdk::{Change, ChangeBatch, ChangeKind, Position};
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::spec::{OnFailedChange, Spec};
use crate::state_file;
use crate::stats::iso_micros;

/// The job's failed changes: the dead-letter file, the held keys, the count against
/// `max_failed_changes`. One per job, shared by every flow's writers.
pub(super) struct Failures {
    mode: OnFailedChange,
    max: Option<u64>,
    job: String,
    run: String,
    dead_letter: PathBuf,
    held_path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Changes dead-lettered since the stream started.
    failed: u64,
    /// (flow, key as a JSON array of its values) -> why it is held.
    held: HashMap<(String, String), Held>,
    /// `held` changed since it was last stored.
    dirty: bool,
    file: Option<File>,
}

/// One held key, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    flow: String,
    table: String,
    /// The key's values in key order (its identity).
    values: Vec<serde_json::Value>,
    /// Column -> value, for people reading the file.
    key: serde_json::Map<String, serde_json::Value>,
    /// The kind and position of the change that was refused first.
    kind: String,
    since: Position,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HeldFile {
    keys: Vec<Held>,
}

impl Failures {
    /// The job's settings and its held keys from earlier runs (none with `fresh`); `start` is where
    /// this run reads the log from.
    /// `start`: where the stream resumes, when a change read again there decides afresh whether
    /// its key is held (the local file); `None` with the position in the target, where a refused
    /// change read again is usually skipped as written (a later change of its writer moved the
    /// record past it), so every hold is kept until a delete of its key releases it.
    pub(super) fn open(
        job: &Job,
        start: Option<&Position>,
        fresh: bool,
    ) -> Result<Failures, String> {
        let spec = &job.spec;
        let stream = spec.job.stream();
        let held_path = held_path(spec);
        let mut inner = Inner::default();
        if fresh {
            forget(spec)?;
        } else {
            inner.held = load(&held_path, start)?;
        }
        Ok(Failures {
            mode: stream.on_failed_change,
            max: stream.max_failed_changes,
            job: spec.job.name.clone(),
            run: iso_micros(SystemTime::now()),
            dead_letter: spec.dead_letter_path(),
            held_path,
            inner: Mutex::new(inner),
        })
    }

    /// Whether a refused change goes to the dead-letter file (else it stops the stream).
    pub(super) fn dead_letters(&self) -> bool {
        self.mode == OnFailedChange::DeadLetter
    }

    /// Keeps the changes `idx` of `b` that may be written, in order; the others (later changes of
    /// held keys) are dead-lettered and added to `failed`. A delete of a held key is kept, and the
    /// key counts as released for the changes after it (for real once the write succeeds).
    pub(super) fn screen(
        &self,
        flow: &str,
        b: &ChangeBatch,
        idx: &[usize],
        failed: &mut Vec<usize>,
    ) -> Result<Vec<usize>, String> {
        let mut inner = self.lock();
        if inner.held.is_empty() {
            return Ok(idx.to_vec());
        }
        let mut released = Vec::new();
        let mut keep = Vec::with_capacity(idx.len());
        for &i in idx {
            let c = &b.changes[i];
            let Some(id) = key_id(b, c) else {
                keep.push(i);
                continue;
            };
            let k = (flow.to_string(), id);
            let (kind, since) = match inner.held.get(&k) {
                Some(h) if !released.contains(&k) => (h.kind.clone(), h.since.clone()),
                _ => {
                    keep.push(i);
                    continue;
                }
            };
            if c.kind == ChangeKind::Delete {
                released.push(k);
                keep.push(i);
                continue;
            }
            let error = format!(
                "not written, to keep the changes of this key in order: an earlier change of it ({} at {}) was refused and is in this file; a delete of the key that the sink accepts, or a run with --fresh, releases it",
                kind, since
            );
            self.record(&mut inner, flow, b, i, &error)?;
            failed.push(i);
        }
        Ok(keep)
    }

    /// The sink refused change `i` of `b` for good: dead-letter it and hold its key, or stop the
    /// stream when that is one more than `max_failed_changes`.
    pub(super) fn refused(
        &self,
        flow: &str,
        b: &ChangeBatch,
        i: usize,
        error: &str,
    ) -> Result<(), String> {
        let mut inner = self.lock();
        self.record(&mut inner, flow, b, i, error)?;
        let c = &b.changes[i];
        if let Some(id) = key_id(b, c) {
            let (values, key) = key_values(b, c);
            inner
                .held
                .entry((flow.to_string(), id))
                .or_insert_with(|| Held {
                    flow: flow.to_string(),
                    table: b.table.clone(),
                    values,
                    key,
                    kind: c.kind.name().to_string(),
                    since: c.commit.clone(),
                });
            inner.dirty = true;
        }
        Ok(())
    }

    /// Changes `idx` of `b` are written: a delete (or a truncate) releases what it removed.
    pub(super) fn written(&self, flow: &str, b: &ChangeBatch, idx: &[usize]) {
        let mut inner = self.lock();
        if inner.held.is_empty() {
            return;
        }
        for &i in idx {
            let c = &b.changes[i];
            match c.kind {
                ChangeKind::Delete => {
                    if let Some(id) = key_id(b, c) {
                        if inner.held.remove(&(flow.to_string(), id)).is_some() {
                            inner.dirty = true;
                        }
                    }
                }
                ChangeKind::Truncate => {
                    let before = inner.held.len();
                    inner.held.retain(|(f, _), _| f != flow);
                    inner.dirty |= inner.held.len() != before;
                }
                _ => {}
            }
        }
    }

    /// Stores the held keys if they changed: called before the position may move past the
    /// changes that held them.
    pub(super) fn store(&self) -> Result<(), String> {
        let mut inner = self.lock();
        if !inner.dirty {
            return Ok(());
        }
        let mut keys: Vec<Held> = inner.held.values().cloned().collect();
        keys.sort_by(|a, b| {
            (&a.flow, &a.since.file, a.since.pos).cmp(&(&b.flow, &b.since.file, b.since.pos))
        });
        state_file::save_json(&self.held_path, &HeldFile { keys }).map_err(|e| {
            format!(
                "cannot write the held keys file {}: {e}; the stream stops so that a restart cannot write later changes of a dead-lettered key",
                self.held_path.display()
            )
        })?;
        inner.dirty = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("failed changes poisoned")
    }

    /// Counts change `i` as failed (or stops past the limit) and appends its record.
    fn record(
        &self,
        inner: &mut Inner,
        flow: &str,
        b: &ChangeBatch,
        i: usize,
        error: &str,
    ) -> Result<(), String> {
        let c = &b.changes[i];
        if let Some(max) = self.max.filter(|m| inner.failed >= *m) {
            let (_, key) = key_values(b, c);
            return Err(format!(
                "flow `{flow}`: {} changes failed for good, more than stream.max_failed_changes ({max}) allows: the {} of {} {} in the transaction ending at {} was refused: {error}; the earlier ones are in {}. Fix the cause and run again (the stream resumes before this change), or raise stream.max_failed_changes",
                inner.failed + 1,
                c.kind.name(),
                b.table,
                serde_json::Value::Object(key),
                c.commit,
                self.dead_letter.display()
            ));
        }
        let line = self.line(flow, b, c, error);
        if inner.file.is_none() {
            inner.file = Some(open_append(&self.dead_letter).map_err(|e| {
                format!(
                    "cannot open the dead-letter file {}: {e}",
                    self.dead_letter.display()
                )
            })?);
        }
        let f = inner.file.as_mut().expect("just opened");
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| {
                format!(
                    "cannot write the dead-letter file {}: {e}",
                    self.dead_letter.display()
                )
            })?;
        inner.failed += 1;
        tracing::warn!(
            flow,
            table = %b.table,
            kind = c.kind.name(),
            position = %c.commit,
            "a change failed for good and went to {}: {error}",
            self.dead_letter.display()
        );
        Ok(())
    }

    /// One JSON line: where the change is from, what it is, and why it failed.
    fn line(&self, flow: &str, b: &ChangeBatch, c: &Change, error: &str) -> String {
        let (_, key) = key_values(b, c);
        let rows = b.rows(std::slice::from_ref(c));
        let mut v = serde_json::json!({
            "time": iso_micros(SystemTime::now()),
            "job": self.job,
            "run": self.run,
            "stage": "stream",
            "flow": flow,
            "table": b.table,
            "kind": c.kind.name(),
            "key": key,
            "position": c.commit,
            "error": error,
        });
        if c.kind.has_row() {
            v["row"] = rows.row_json(&c.row);
        }
        if let Some(old) = &c.old {
            v["old"] = rows.row_json(old);
        }
        let mut s = v.to_string();
        s.push('\n');
        s
    }
}

/// Where the held keys are kept: beside the stream's checkpoint.
fn held_path(spec: &Spec) -> PathBuf {
    spec.job.checkpoint.dir.join(format!(
        "{}.stream.held-keys.json",
        state_file::file_stem(&spec.job.name)
    ))
}

/// The keys held when the stream resumes at `start`: a key held by a change after it is not, since
/// that change is read and tried again (`None`: every key held stays held).
fn load(path: &Path, start: Option<&Position>) -> Result<HashMap<(String, String), Held>, String> {
    let file = state_file::load_json::<HeldFile>(
        path,
        "held keys file",
        "remove it (the keys it holds are then written again) or run with --fresh",
    )?;
    Ok(file
        .map_or_else(Vec::new, |f| f.keys)
        .into_iter()
        .filter(|h| start.is_none_or(|start| !after(&h.since, start)))
        .map(|h| {
            let id = serde_json::Value::Array(h.values.clone()).to_string();
            ((h.flow.clone(), id), h)
        })
        .collect())
}

/// Releases every held key of the job: a new snapshot copies their rows again.
pub(super) fn forget(spec: &Spec) -> Result<(), String> {
    let path = held_path(spec);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// A change's key as one string (its values as a JSON array); `None` for a table without a
/// primary key, or a change without a row, which no key can hold.
fn key_id(b: &ChangeBatch, c: &Change) -> Option<String> {
    if b.key.is_empty() || !c.kind.has_row() {
        return None;
    }
    Some(serde_json::Value::Array(key_values(b, c).0).to_string())
}

fn key_values(
    b: &ChangeBatch,
    c: &Change,
) -> (
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut values = Vec::new();
    let mut map = serde_json::Map::new();
    for &i in &b.key {
        let (Some(col), Some(v)) = (b.schema.get(i), c.row.get(i)) else {
            continue;
        };
        values.push(v.to_json());
        map.insert(col.name.clone(), v.to_json());
    }
    (values, map)
}

/// Whether `a` is later in the log than `b`: a change there is read again by a stream that
/// resumes at `b`. Files compare by their numeric suffix (`binlog.000010` after `binlog.000009`).
fn after(a: &Position, b: &Position) -> bool {
    let file = |p: &Position| {
        let (stem, n) = p.file.rsplit_once('.').unwrap_or((&p.file, ""));
        (
            stem.to_string(),
            n.parse::<u64>().unwrap_or(0),
            p.file.clone(),
        )
    };
    (file(a), a.pos, a.skip) > (file(b), b.pos, b.skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, pos: u64, skip: u64) -> Position {
        Position {
            file: file.into(),
            pos,
            gtid: None,
            skip,
        }
    }

    /// A job's failures writing into a temporary folder of its own.
    fn failures(name: &str, max: Option<u64>) -> (Failures, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("etlhost-dead-letter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let f = Failures {
            mode: OnFailedChange::DeadLetter,
            max,
            job: "shop".into(),
            run: "r".into(),
            dead_letter: dir.join("dead.jsonl"),
            held_path: dir.join("held.json"),
            inner: Mutex::new(Inner::default()),
        };
        (f, dir)
    }

    /// Changes of `person (id, name)`, each in a transaction ending at its index.
    fn batch(changes: &[(ChangeKind, i64)]) -> ChangeBatch {
        use etlhost_plugin_sdk::{Column, ColumnType, Value};
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
        };
        ChangeBatch {
            table: "person".into(),
            schema: vec![col("id", ColumnType::Int), col("name", ColumnType::String)].into(),
            key: vec![0],
            changes: changes
                .iter()
                .enumerate()
                .map(|(i, &(kind, id))| Change {
                    kind,
                    row: vec![Value::Int(id), Value::String(format!("n{i}"))],
                    old: None,
                    commit: at("binlog.000001", 100 + i as u64, 0),
                    last: true,
                    timestamp: 0,
                    no_fk_actions: false,
                })
                .collect(),
        }
    }

    #[test]
    fn a_refused_key_holds_its_later_changes_until_a_delete() {
        use ChangeKind::*;
        let (f, dir) = failures("hold", None);
        let b = batch(&[
            (Insert, 1),
            (Update, 1),
            (Update, 2),
            (Delete, 1),
            (Insert, 1),
        ]);
        f.refused("people", &b, 0, "refused").unwrap();
        let mut failed = Vec::new();
        let keep = f.screen("people", &b, &[1, 2, 3, 4], &mut failed).unwrap();
        assert_eq!(
            (keep.as_slice(), failed.as_slice()),
            (&[2, 3, 4][..], &[1][..])
        );
        // Another flow of the table is not held by this one's refusal.
        let mut other = Vec::new();
        assert_eq!(f.screen("rel", &b, &[1], &mut other).unwrap(), [1]);
        f.store().unwrap();
        let held: HeldFile =
            serde_json::from_slice(&std::fs::read(dir.join("held.json")).unwrap()).unwrap();
        assert_eq!(held.keys.len(), 1);
        assert_eq!(held.keys[0].since, at("binlog.000001", 100, 0));
        f.written("people", &b, &keep);
        // A restart at the refused change's transaction holds the key; one before it does not.
        let held = dir.join("held.json");
        assert_eq!(
            load(&held, Some(&at("binlog.000001", 100, 0)))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            load(&held, Some(&at("binlog.000001", 99, 0)))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(load(&held, None).unwrap().len(), 1);
        let mut failed = Vec::new();
        assert_eq!(f.screen("people", &b, &[1], &mut failed).unwrap(), [1]);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("dead.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["error"], "refused");
        assert_eq!(lines[0]["key"], serde_json::json!({"id": 1}));
        assert_eq!(lines[1]["kind"], "update");
        assert_eq!(lines[1]["position"]["pos"], 101);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn one_more_than_max_failed_changes_stops() {
        let (f, dir) = failures("max", Some(1));
        let b = batch(&[(ChangeKind::Insert, 1), (ChangeKind::Insert, 2)]);
        f.refused("people", &b, 0, "no").unwrap();
        let e = f.refused("people", &b, 1, "no").unwrap_err();
        assert_eq!(
            e,
            format!(
                "flow `people`: 2 changes failed for good, more than stream.max_failed_changes (1) allows: the insert of person {{\"id\":2}} in the transaction ending at binlog.000001:101 was refused: no; the earlier ones are in {}. Fix the cause and run again (the stream resumes before this change), or raise stream.max_failed_changes",
                dir.join("dead.jsonl").display()
            )
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn positions_order_as_the_log_does() {
        assert!(after(
            &at("binlog.000010", 4, 0),
            &at("binlog.000009", 900, 0)
        ));
        assert!(after(
            &at("binlog.000002", 500, 0),
            &at("binlog.000002", 400, 3)
        ));
        assert!(after(
            &at("binlog.000002", 400, 4),
            &at("binlog.000002", 400, 3)
        ));
        assert!(!after(
            &at("binlog.000002", 400, 3),
            &at("binlog.000002", 400, 3)
        ));
        assert!(!after(
            &at("binlog.000001", 900, 0),
            &at("binlog.000002", 4, 0)
        ));
    }
}
