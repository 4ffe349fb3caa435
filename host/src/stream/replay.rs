//! Exactly once after a restart: every change read from the log gets an id that is the same when
//! it is read again ([`Ids`]), and the writers' records in the target say up to which id each
//! writer has written ([`Replay`]), so the changes read again between the stream's recorded
//! position and a writer's record are not written twice.

use std::collections::HashMap;

use etlhost_plugin_sdk::{ChangeBatch, ChangeId, Position, Value, WriterRecord};

/// Numbers the changes of the log as they are read: a change's id is its transaction's commit (or
/// its part's, in a large transaction) and its place among that transaction's changes of its
/// table. Counting per table keeps the ids of one table's changes whatever the job streams
/// besides.
#[derive(Default)]
pub(super) struct Ids {
    at: HashMap<String, (Position, u64)>,
}

impl Ids {
    /// The ids of a chunk's changes, in order; marks and truncates have none: they write nothing
    /// themselves, and what they lead to is derived again from the graph when their chunk is read
    /// again (the chunk's later changes of the keys that touches are then written again, see
    /// `write::Chunk::rederived`).
    pub(super) fn of(&mut self, b: &ChangeBatch) -> Vec<Option<u64>> {
        // The id is the change's own `commit` and this index: only the index is kept per change
        // (an id of its own would copy the position once per change).
        let mut at = self.at.remove(&b.table);
        let ids = b
            .changes
            .iter()
            .map(|c| {
                if !c.kind.has_row() {
                    return None;
                }
                match &mut at {
                    Some((commit, next)) if commit.log_cmp(&c.commit).is_eq() => {
                        *next += 1;
                        Some(*next - 1)
                    }
                    slot => {
                        *slot = Some((c.commit.clone(), 1));
                        Some(0)
                    }
                }
            })
            .collect();
        if let Some(at) = at {
            self.at.insert(b.table.clone(), at);
        }
        ids
    }
}

/// The id of change `i` of `b`, numbered `index` by [`Ids::of`].
pub(super) fn id_of(b: &ChangeBatch, i: usize, index: u64) -> ChangeId {
    ChangeId {
        commit: b.changes[i].commit.clone(),
        index,
    }
}

/// A fixed writer per key, so one key's changes are written in order by one connection. The
/// writers' records in the target say which changes each wrote, so this must give the same writer
/// in every build: FNV-1a (64 bits) over each value's JSON form (stable for every value type),
/// not std's hasher, whose algorithm may change between Rust releases.
pub(super) fn writer_of(key: &[&Value], writers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in key {
        for byte in v.to_json().to_string().bytes().chain([0]) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h % writers as u64) as usize
}

/// A change's key as text, as `write::Chunk::rederived` holds it.
pub(super) fn key_text(b: &ChangeBatch, c: &etlhost_plugin_sdk::Change) -> String {
    let key: Vec<serde_json::Value> = b.key_of(c).iter().map(|v| v.to_json()).collect();
    serde_json::Value::Array(key).to_string()
}

/// One flow's writers' records as the stream started: which changes its writers had written.
/// Each record holds under its own layout (how many writers the flow had), so a change of
/// `sink.parallelism` between runs still skips exactly what was written.
#[derive(Debug, Default, Clone)]
pub(super) struct Replay {
    records: Vec<(u32, u32, ChangeId)>,
    /// The highest id of any record: past it, nothing is skipped and nothing is looked up.
    until: Option<ChangeId>,
}

impl Replay {
    pub(super) fn new<'a>(flow: &str, records: impl IntoIterator<Item = &'a WriterRecord>) -> Self {
        let records: Vec<(u32, u32, ChangeId)> = records
            .into_iter()
            .filter(|r| r.slot.flow == flow && r.slot.writers > 0)
            .filter_map(|r| Some((r.slot.writers, r.slot.slot, r.last.clone()?)))
            .collect();
        let until = records.iter().map(|(_, _, id)| id.clone()).max();
        Replay { records, until }
    }

    /// Whether the change with `key` and `id` was written by the writer its key went to.
    pub(super) fn written(&self, key: &[&Value], id: &ChangeId) -> bool {
        if self.until.as_ref().is_none_or(|u| id > u) {
            return false;
        }
        self.records
            .iter()
            .any(|(n, slot, last)| id <= last && writer_of(key, *n as usize) == *slot as usize)
    }

    /// Whether a chunk with these ids may hold changes written before. Ids only grow, so once a
    /// chunk is past every record, the replay is over for good.
    pub(super) fn covers(&mut self, b: &ChangeBatch, ids: &[Option<u64>]) -> bool {
        let Some(until) = &self.until else {
            return false;
        };
        let mut ids = ids
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.map(|x| (i, x)))
            .peekable();
        if ids.peek().is_none() {
            return false;
        }
        if ids.any(|(i, x)| &id_of(b, i, x) <= until) {
            return true;
        }
        self.until = None;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::{Change, ChangeKind, ColumnType, WriterSlot};

    fn change(pos: u64, id: i64) -> Change {
        Change {
            kind: ChangeKind::Insert,
            row: vec![Value::Int(id)],
            old: None,
            commit: Position {
                file: "binlog.000001".into(),
                pos,
                gtid: None,
                skip: 0,
            },
            last: false,
            timestamp: 0,
            no_fk_actions: false,
        }
    }

    fn batch(table: &str, changes: Vec<Change>) -> ChangeBatch {
        ChangeBatch {
            table: table.into(),
            schema: vec![etlhost_plugin_sdk::Column {
                name: "id".into(),
                ty: ColumnType::Int,
            }]
            .into(),
            key: vec![0],
            changes,
        }
    }

    /// A transaction's changes are numbered per table across chunks, and again from 0 in the next
    /// transaction; reading the same log again gives the same ids.
    #[test]
    fn ids_are_the_same_when_the_log_is_read_again() {
        let read = || {
            let mut ids = Ids::default();
            let chunks = [
                batch("a", vec![change(100, 1), change(100, 2)]),
                batch("b", vec![change(100, 3)]),
                batch("a", vec![change(100, 4), change(200, 5)]),
            ];
            let mut all = Vec::new();
            for b in &chunks {
                for (i, x) in ids.of(b).into_iter().enumerate() {
                    let id = id_of(b, i, x.unwrap());
                    all.push((id.commit.pos, id.index));
                }
            }
            all
        };
        assert_eq!(read(), [(100, 0), (100, 1), (100, 0), (100, 2), (200, 0)]);
        assert_eq!(read(), read());
    }

    /// The writer of a key is the same in every build (the records depend on it).
    #[test]
    fn a_key_s_writer_is_pinned() {
        let keys = [Value::Int(1), Value::Int(2), Value::String("eu".into())];
        let of = |v: &Value| (writer_of(&[v], 2), writer_of(&[v], 3), writer_of(&[v], 16));
        let got: Vec<_> = keys.iter().map(of).collect();
        assert_eq!(got, [(0, 1, 4), (1, 1, 15), (1, 2, 5)]);
    }

    /// A change is skipped only when the writer its key went to, under the layout of that record,
    /// had written up to it.
    #[test]
    fn a_change_is_skipped_only_when_its_own_writer_wrote_it() {
        let id = |pos, index| ChangeId {
            commit: change(pos, 0).commit,
            index,
        };
        let record = |writers, slot, last| WriterRecord {
            slot: WriterSlot {
                flow: "f".into(),
                writers,
                slot,
            },
            epoch: 1,
            seq: 3,
            last: Some(last),
            resume: None,
            updated_ms: 0,
        };
        let key = Value::Int(7);
        let mine = writer_of(&[&key], 2) as u32;
        let records = [record(2, mine, id(100, 5)), record(2, 1 - mine, id(300, 0))];
        let replay = Replay::new("f", &records);
        assert!(replay.written(&[&key], &id(100, 5)));
        assert!(replay.written(&[&key], &id(100, 4)));
        assert!(!replay.written(&[&key], &id(100, 6)));
        assert!(!replay.written(&[&key], &id(200, 0)));
        let at = |pos| batch("t", vec![change(pos, 7), change(pos, 8)]);
        assert!(!Replay::new("other", &records).covers(&at(100), &[Some(0), None]));
        let mut r = Replay::new("f", &records);
        assert!(r.covers(&at(300), &[Some(0), None]));
        assert!(!r.covers(&at(300), &[None, Some(1)]));
        assert!(
            !r.covers(&at(100), &[Some(0), None]),
            "over for good once passed"
        );
    }
}
