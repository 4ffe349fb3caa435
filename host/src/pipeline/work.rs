//! What flows between the stages: a reader's [`Chunk`] of one split's rows, and the [`Work`] of
//! one sink call the batchers make of them, with where each row came from so that the writers can
//! acknowledge it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Progress, Schema, Value};

use crate::transform::Origin;

/// Rows of one split, as read: row numbers `first..first + batch.len()` of the split, or, after
/// transforms, the origins in `origins` (one per row; repeated for an expanded row).
pub struct Chunk {
    pub split: u32,
    pub first: u64,
    /// The rows, or, on the pass-through path, their schema alone (the rows are in `encoded`).
    pub batch: Batch,
    /// On the pass-through path: the rows as the source encoded them (or as transforms of the
    /// encoded world made them).
    pub encoded: Option<Encoded>,
    pub origins: Option<Vec<Origin>>,
    /// With progress in the target: each row's key (its input row's, after transforms), so that
    /// batches end where the key changes.
    pub keys: Option<Vec<Value>>,
    /// With progress in the target: the split is read to its end (a chunk with no rows).
    pub end: bool,
}

impl Chunk {
    pub fn rows(split: u32, first: u64, batch: Batch, origins: Option<Vec<Origin>>) -> Self {
        Chunk {
            split,
            first,
            batch,
            encoded: None,
            origins,
            keys: None,
            end: false,
        }
    }

    pub fn encoded(split: u32, first: u64, rows: Encoded) -> Self {
        let schema_only = Batch::new(rows.schema().clone());
        Chunk {
            encoded: Some(rows),
            ..Chunk::rows(split, first, schema_only, None)
        }
    }

    pub fn len(&self) -> usize {
        match &self.encoded {
            Some(e) => e.rows(),
            None => self.batch.len(),
        }
    }
}

/// Rows for one sink call, with where each row came from: (split, row of the split).
pub struct Work {
    /// The rows, or, on the pass-through path, their schema alone (the rows are in `encoded`).
    pub batch: Batch,
    /// On the pass-through path: the rows as the source encoded them.
    pub encoded: Option<Encoded>,
    pub origin: Vec<(u32, Origin)>,
    /// Set for the batches of a flow grouped by its endpoints (see `delivery::grouped`).
    pub lane: Option<Lane>,
    /// With progress in the target: the split's progress once this batch is written (see
    /// `delivery::ordered`), and each row's key.
    pub progress: Option<Progress>,
    pub keys: Vec<Value>,
}

impl Work {
    pub fn empty(schema: Schema) -> Self {
        Work {
            batch: Batch {
                schema,
                rows: Vec::new(),
            },
            encoded: None,
            origin: Vec::new(),
            lane: None,
            progress: None,
            keys: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.encoded {
            Some(e) => e.rows(),
            None => self.batch.len(),
        }
    }

    /// The rows decoded, if they were still encoded.
    pub fn decoded(&mut self) -> &Batch {
        if let Some(e) = self.encoded.take() {
            self.batch = e.decode();
        }
        &self.batch
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rows: usize,
    pub bytes: Option<usize>,
    pub timeout: Option<Duration>,
}

/// What a batch of a grouped flow carries to its writer: the groups of its rows' endpoints, whose
/// locks the writer holds while it writes the batch.
pub struct Lane {
    locks: Arc<[Mutex<()>]>,
    groups: (usize, usize),
}

/// The locks of a batch's groups, released when dropped.
pub struct Held<'a> {
    _lower: MutexGuard<'a, ()>,
    _upper: Option<MutexGuard<'a, ()>>,
}

impl Lane {
    /// A batch of the pair of groups `groups`, of the flow's `locks` (one per group).
    pub fn new(locks: Arc<[Mutex<()>]>, groups: (usize, usize)) -> Self {
        Lane { locks, groups }
    }

    /// Waits until no other writer holds one of this batch's groups, and holds them until dropped.
    pub fn hold(&self) -> Held<'_> {
        // The locks guard no data: a writer that panicked holding one leaves nothing inconsistent.
        let lock = |g: usize| self.locks[g].lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = self.groups;
        Held {
            _lower: lock(a.min(b)),
            _upper: (a != b).then(|| lock(a.max(b))),
        }
    }
}
