//! What a chain of transforms made of the rows it was given: the rows it hands on, each with the
//! input row it came from, and the input rows that did not come out as rows.

use etlhost_plugin_sdk::Batch;

/// Which input row of its split an output row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Row `n` of the split, counted from 0.
    Row(u64),
    /// Emitted by a transform's `finish`: from no input row, so part of no split's progress.
    Finish,
}

impl Origin {
    /// Where row `i` of some rows came from: `origins[i]` when transforms gave them origins, else
    /// row `first + i` of the split (rows as read). A function of the parts, since the pipeline's
    /// stages move the rows out of what carries them first.
    pub fn of(origins: Option<&[Origin]>, first: u64, i: usize) -> Origin {
        match origins {
            Some(o) => o[i],
            None => Origin::Row(first + i as u64),
        }
    }
}

/// Rows of an input batch that did not come out as rows.
#[derive(Debug)]
pub enum Outcome {
    /// Dropped on purpose (counted as filtered).
    Dropped { origin: Origin },
    /// Failed in `transform`: the row as that transform saw it, and why.
    Failed {
        origin: Origin,
        transform: String,
        row: Batch,
        reason: String,
    },
}

/// The rows a chain hands on, with the input row each came from.
pub struct Applied {
    pub batch: Batch,
    pub origins: Vec<Origin>,
    pub outcomes: Vec<Outcome>,
}
