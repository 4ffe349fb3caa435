//! The one delivery model of a flow: how its rows go from the readers to the sink, chosen once
//! when the flow starts ([`Mode::of`]) from its settings. The batcher stage and the writers each
//! take the mode's path (see `delivery`); nothing downstream guesses it from a batch's contents.

use super::settings::Settings;
use crate::transform::Transforms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decoded rows (a transform of the decoded world needs their values), cut into batches by
    /// rows, bytes and time.
    Plain,
    /// Pass-through: the rows as the source encoded them, batched as `Plain` ones and decoded
    /// only when a batch fails.
    Encoded,
    /// A relationship flow with several writers: rows grouped by their endpoints so that batches
    /// written at the same time never touch the same node.
    Grouped,
    /// Progress in the target: a split's batches in order to one writer, each with the split's
    /// progress in its transaction; rows still `encoded` as in the pass-through mode, or not.
    Ordered { encoded: bool },
}

impl Mode {
    /// The mode of a flow with these settings and transforms, written by `writers` writers.
    pub fn of(settings: &Settings, transforms: Option<&Transforms>, writers: usize) -> Mode {
        // Rows stay encoded when nothing on the way needs their values: no transform but of the
        // encoded world, no endpoint grouping (progress needs only the key column, decoded
        // alone).
        let encoded = transforms.is_none_or(|t| t.encoded()) && settings.endpoints.is_none();
        if settings.progress.is_some() {
            Mode::Ordered { encoded }
        } else if settings.endpoints.is_some() && writers > 1 {
            Mode::Grouped
        } else if encoded {
            Mode::Encoded
        } else {
            // A relationship flow with one writer: nothing can conflict.
            Mode::Plain
        }
    }

    /// Whether readers hand rows on as the source encoded them.
    pub fn encoded(self) -> bool {
        matches!(self, Mode::Encoded | Mode::Ordered { encoded: true })
    }

    /// Whether batches carry their split's progress, and so readers each row's key.
    pub fn ordered(self) -> bool {
        matches!(self, Mode::Ordered { .. })
    }
}
