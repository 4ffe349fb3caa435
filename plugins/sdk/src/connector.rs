//! The safe traits a connector implements. The export macros turn them into the C ABI.

use crate::change::{ChangeBatch, StreamHead};
use crate::error::{ConfigError, Error, OpenError};
use crate::options::Options;
use crate::split::{Catalog, CursorRange, KeyBounds, KeySample, Split};
use crate::value::Batch;

/// A source reads splits. One instance serves every reader of a job, from several threads at once,
/// so per-split state belongs in the [`SplitReader`].
pub trait Source: Send + Sync + Sized + 'static {
    type Options: Options;
    type Reader: SplitReader;

    /// Connects (or prepares to). Options have already passed [`Options::check`].
    fn open(options: Self::Options) -> Result<Self, OpenError>;

    /// Starts reading one split.
    fn open_split(&self, split: &Split) -> Result<Self::Reader, Error>;

    /// Whether the source honours [`Split::cursor`] and the `cursor` of [`Source::key_bounds`]:
    /// set it to `true` only then. The SDK refuses incremental reads for sources that leave it
    /// `false`, so a cursor is never silently ignored.
    const INCREMENTAL: bool = false;

    /// Smallest and largest value of `column` and the row count, for planning splits; over the rows
    /// in `cursor` when set (only asked when [`Source::INCREMENTAL`]).
    fn key_bounds(&self, column: &str, cursor: Option<&CursorRange>) -> Result<KeyBounds, Error> {
        let _ = (column, cursor);
        Err(Error::permanent("this source cannot be split by key"))
    }

    /// About `count` keys of `columns` (one value, or a list for several columns), spread over
    /// the rows, in ascending order, for planning splits of equal row counts (see
    /// [`crate::PlanRequest::KeySample`]).
    fn key_sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        let _ = (columns, cursor, count);
        Err(Error::permanent("this source cannot sample its keys"))
    }

    /// The tables the source can read, with keys and foreign keys, for `etlhost init`.
    fn describe(&self) -> Result<Catalog, Error> {
        Err(Error::permanent("this source cannot describe its tables"))
    }

    /// Whether the source can stream changes: answers [`Source::stream_head`] and reads a split
    /// whose `stream` is set by returning [`ChangeBatch`]es (as [`ChangeBatch::into_batch`]) from
    /// `next_batch`. The SDK refuses stream splits for sources that leave it `false`.
    const STREAMS: bool = false;

    /// Checks that the server can stream changes and says where its change log is now.
    fn stream_head(&self) -> Result<StreamHead, Error> {
        Err(Error::permanent("this source cannot stream changes"))
    }

    /// Once before a stream's snapshot: checks, makes what following `tables` needs, and says
    /// where to start (see [`crate::PlanRequest::StreamStart`]); the default is
    /// [`Source::stream_head`].
    fn stream_start(&self, tables: &[String]) -> Result<StreamHead, Error> {
        let _ = tables;
        self.stream_head()
    }

    /// Every change up to `position` is durable in the target (see
    /// [`crate::PlanRequest::StreamAck`]); the default has nothing to confirm.
    fn stream_ack(&self, position: &crate::change::Position) -> Result<(), Error> {
        let _ = position;
        Ok(())
    }
}

/// Reads the rows of one split in batches.
pub trait SplitReader: Send + 'static {
    /// The next rows, or `None` when the split is exhausted. Batches need not be of equal size; the
    /// host re-batches for the sink.
    fn next_batch(&mut self) -> Result<Option<Batch>, Error>;

    /// The next rows in the format of [`crate::codec`], which is how they cross the boundary; the
    /// default encodes [`SplitReader::next_batch`]'s. A reader that makes its rows on a thread of
    /// its own can encode them there, so that they are freed on the thread that allocated them.
    fn next_encoded(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.next_batch()?.map(|b| crate::codec::encode(&b)))
    }
}

/// A sink writes batches. The host opens one instance per writer and owns batching, so a sink never
/// buffers rows between calls: when `write_batch` returns `Ok`, the batch is durable.
pub trait Sink: Send + Sized + 'static {
    type Options: Options;

    fn open(options: Self::Options) -> Result<Self, OpenError>;

    /// Whether [`Sink::check`] checks anything; leave it `false` unless it does, so that
    /// `etlhost validate` does not claim a check that never happened.
    const CHECKS: bool = false;

    /// For `etlhost validate`: connects and checks that writing would work (the target accepts
    /// the query, the credentials are right) without writing anything. Errors as from `open`; a
    /// mistake in an option is a [`crate::ConfigError`] on its key.
    fn check(options: Self::Options) -> Result<(), OpenError> {
        let _ = options;
        Ok(())
    }

    /// Writes one batch, all or nothing where the target allows it.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error>;

    /// Writes one batch as it crossed the boundary, in the format of [`crate::codec`]. The default
    /// decodes it and calls [`Sink::write_batch`]; a sink that needs no values (a counter) can
    /// skip decoding them, e.g. with [`crate::codec::row_count`].
    fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let batch = crate::codec::decode(bytes).map_err(|e| Error::permanent(e.to_string()))?;
        self.write_batch(&batch)
    }

    /// Called once after the last batch of a successful job.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Whether the sink writes change batches ([`Sink::write_changes`]); leave it `false` unless
    /// it does, and streaming flows refuse the sink.
    const CHANGES: bool = false;

    /// Whether these options can write every kind of change (each kind has its query, say), as a
    /// [`ConfigError`] on the key to set; run by `etlhost validate` and before a stream starts.
    fn check_changes(options: &Self::Options) -> Result<(), ConfigError> {
        let _ = options;
        Ok(())
    }

    /// Writes one table's changes in their order, all or nothing where the target allows it.
    fn write_changes(&mut self, changes: &ChangeBatch) -> Result<(), Error> {
        let _ = changes;
        Err(Error::permanent("this sink cannot write changes"))
    }

    /// Writes one table's changes as they crossed the boundary, in the format of
    /// [`ChangeBatch::encode`]. The default decodes them and calls [`Sink::write_changes`]; a
    /// sink that writes its own format can read them in place with
    /// [`crate::ChangeBatchView::read`] and build no value.
    fn write_changes_encoded(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let changes = ChangeBatch::decode(bytes).map_err(Error::permanent)?;
        self.write_changes(&changes)
    }
}
