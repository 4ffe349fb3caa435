//! Which rows are safely behind us: per split, the prefix of rows (in read order) that the sink
//! has acknowledged, as written or as failed into the dead-letter file.
//!
//! Readers number the rows of a split 0, 1, 2, ... and, for each chunk, note the highest key such
//! that every row with that key or a lower one is in this chunk or an earlier one (the *safe key*).
//! Writers acknowledge ranges of row numbers in any order. When the acknowledged prefix passes the
//! end of a chunk, that chunk's safe key becomes the split's watermark: a resumed run reads the split
//! from `key > watermark` and misses nothing. Recording never waits for anything in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use etlhost_plugin_sdk::Value;

#[derive(Debug, Default)]
struct SplitState {
    /// The lowest row number not yet acknowledged.
    next: u64,
    /// Acknowledged ranges beyond `next`: start -> end (exclusive).
    acked: BTreeMap<u64, u64>,
    /// Chunk ends (exclusive row number) -> the chunk's safe key.
    marks: BTreeMap<u64, Option<Value>>,
    watermark: Option<Value>,
    /// Set when the reader has read the whole split.
    total: Option<u64>,
}

/// What a checkpoint records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub done: BTreeSet<u32>,
    pub watermarks: BTreeMap<u32, Value>,
}

#[derive(Debug, Default)]
pub struct Acks {
    splits: Mutex<BTreeMap<u32, SplitState>>,
}

impl Acks {
    /// Rows up to `end` (exclusive) of `split` have been read; `safe_key` as in the module docs.
    pub fn chunk_read(&self, split: u32, end: u64, safe_key: Option<Value>) {
        let mut all = self.splits.lock().expect("progress poisoned");
        all.entry(split).or_default().marks.insert(end, safe_key);
    }

    /// The reader has read all `total` rows of `split`. Returns whether the split is now complete.
    pub fn split_read(&self, split: u32, total: u64) -> bool {
        let mut all = self.splits.lock().expect("progress poisoned");
        let s = all.entry(split).or_default();
        s.total = Some(total);
        s.next == total
    }

    /// Rows `[start, end)` of `split` are written or failed. Returns whether the split is now
    /// complete (read to the end and every row acknowledged).
    pub fn ack(&self, split: u32, start: u64, end: u64) -> bool {
        let mut all = self.splits.lock().expect("progress poisoned");
        let s = all.entry(split).or_default();
        s.acked.insert(start, end);
        while let Some(end) = s.acked.remove(&s.next) {
            s.next = end;
        }
        let passed: Vec<u64> = s.marks.range(..=s.next).map(|(k, _)| *k).collect();
        for k in passed {
            if let Some(Some(key)) = s.marks.remove(&k) {
                s.watermark = Some(key);
            }
        }
        s.total == Some(s.next)
    }

    pub fn snapshot(&self) -> Snapshot {
        let all = self.splits.lock().expect("progress poisoned");
        let mut snap = Snapshot::default();
        for (id, s) in all.iter() {
            if s.total == Some(s.next) {
                snap.done.insert(*id);
            } else if let Some(w) = &s.watermark {
                snap.watermarks.insert(*id, w.clone());
            }
        }
        snap
    }
}

/// The safe key of a chunk whose rows have keys `keys` (in read order, ascending): the last key
/// that differs from the chunk's final key, since rows with the final key may continue in the next
/// chunk. `None` when every row has the final key, or a key is NULL.
pub fn safe_key<'a>(mut keys: impl DoubleEndedIterator<Item = &'a Value>) -> Option<Value> {
    let last = keys.next_back()?;
    if last.is_null() {
        return None;
    }
    keys.rev()
        .find(|k| *k != last)
        .filter(|k| !k.is_null())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_follows_the_acknowledged_prefix() {
        let p = Acks::default();
        p.chunk_read(0, 3, Some(Value::Int(30)));
        p.chunk_read(0, 6, Some(Value::Int(60)));
        assert!(!p.ack(0, 3, 6));
        assert_eq!(
            p.snapshot(),
            Snapshot::default(),
            "rows 0..3 are not acknowledged yet"
        );
        assert!(!p.ack(0, 0, 3));
        assert_eq!(p.snapshot().watermarks[&0], Value::Int(60));
        assert!(p.split_read(0, 6));
        assert_eq!(p.snapshot().done.into_iter().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn safe_keys_never_cut_through_equal_keys() {
        let keys = [1, 2, 2, 3, 3].map(Value::Int);
        assert_eq!(safe_key(keys.iter()), Some(Value::Int(2)));
        let same = [4, 4].map(Value::Int);
        assert_eq!(safe_key(same.iter()), None);
        assert_eq!(safe_key([Value::Null, Value::Int(1)].iter()), None);
    }
}
