//! A split read that survives a lost source connection (a MySQL restart): on a transient error it
//! waits (as the flow's [`crate::retry::Policy`] says: the sink's `retry_backoff`, doubling with
//! jitter, `max_retries` times per failure) and reads the split again from after its last *safe*
//! key (see [`super::acks::safe_key`]), dropping the rows after that key it had already handed
//! on, so every row is still read once.
//! Exact when the split's key is unique (a primary key); only splits with a key range retry.

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Split, Value};

use super::acks;
use super::control::Control;
use super::seams::{SourceSide, SplitRead};
use crate::plugin::PluginError;
use crate::retry::Policy;

pub struct Resuming<'a> {
    source: &'a dyn SourceSide,
    control: &'a Control,
    split: Split,
    inner: Box<dyn SplitRead>,
    /// The last key all of whose rows were handed on, and how many rows after it were.
    safe: Option<Value>,
    since: u64,
    /// Rows of a reopened read still to drop (they were handed on before the error).
    skip: u64,
    /// The key column of the last piece handed on, when tracking it decoded the column (rows
    /// still encoded): see [`Resuming::take_keys`].
    keys: Option<Vec<Value>>,
    retry: Policy,
}

impl<'a> Resuming<'a> {
    pub fn open(
        source: &'a dyn SourceSide,
        split: &Split,
        retry: Policy,
        control: &'a Control,
    ) -> Result<Self, PluginError> {
        Ok(Resuming {
            inner: source.open_split(split)?,
            source,
            control,
            split: split.clone(),
            safe: None,
            since: 0,
            skip: 0,
            keys: None,
            retry,
        })
    }

    pub fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        self.next(None)
    }

    /// The next rows as the source encoded them (the pass-through path), in `spare`'s memory if
    /// given.
    pub fn next_encoded(&mut self, spare: Option<Encoded>) -> Result<Option<Encoded>, PluginError> {
        self.next(spare)
    }

    fn next<P: Piece>(&mut self, mut spare: Option<Encoded>) -> Result<Option<P>, PluginError> {
        let mut backoff = self.retry.start();
        loop {
            match P::read(&mut *self.inner, &mut spare) {
                Ok(Some(b)) => {
                    let drop = (self.skip as usize).min(b.len());
                    self.skip -= drop as u64;
                    if drop == b.len() {
                        continue;
                    }
                    let b = b.without_first(drop);
                    self.track(&b);
                    return Ok(Some(b));
                }
                Ok(None) => return Ok(None),
                Err(e) if e.is_retryable() && self.split.range.is_some() => loop {
                    let wait = match backoff.next_wait() {
                        Some(wait) if !self.control.stopping() => wait,
                        _ => return Err(e),
                    };
                    tracing::warn!(
                        split = self.split.id,
                        "reading failed: {e}; reading the split again after {} in {wait:?}",
                        self.safe
                            .as_ref()
                            .map_or("its start".to_string(), |k| format!("key {k}"))
                    );
                    std::thread::sleep(wait);
                    let mut again = self.split.clone();
                    if let (Some(r), Some(k)) = (again.range.as_mut(), &self.safe) {
                        r.after = Some(k.clone());
                        r.nulls = false;
                    }
                    match self.source.open_split(&again) {
                        Ok(r) => {
                            self.inner = r;
                            self.skip = self.since;
                            break;
                        }
                        Err(e2) if e2.is_retryable() => continue,
                        Err(e2) => return Err(e2),
                    }
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// The split's keys of the rows [`Resuming::next_encoded`] last returned, if it had to decode
    /// them to track the safe key (a one-column key): the reader needs the same values, and
    /// decoding a column is most of what the pass-through path does per row.
    pub fn take_keys(&mut self) -> Option<Vec<Value>> {
        self.keys.take()
    }

    /// Moves the safe key on: the rows after it are the batch's final key group.
    fn track<P: Piece>(&mut self, b: &P) {
        self.keys = None;
        let Some(range) = self.split.range.as_ref() else {
            return;
        };
        let mut decoded = None;
        let tail = b.tail(&range.column, &mut decoded);
        // Only a one-column key's values are the column's; a composite key is decoded apart.
        if range.key_columns() == std::slice::from_ref(&range.column) {
            self.keys = decoded;
        }
        match tail {
            Some((Some(k), last_group)) => {
                self.since = last_group as u64;
                self.safe = Some(k);
            }
            Some((None, _)) => self.since += b.len() as u64,
            None => {}
        }
    }
}

/// What a split read hands on: rows decoded, or as the source encoded them. Both are read again
/// and tracked the same way.
trait Piece: Sized {
    /// The next piece; `spare` is memory it may take (see [`Encoded::check_into`]).
    fn read(
        from: &mut dyn SplitRead,
        spare: &mut Option<Encoded>,
    ) -> Result<Option<Self>, PluginError>;
    fn len(&self) -> usize;
    fn without_first(self, n: usize) -> Self;
    /// The safe key of `column` (see [`acks::safe_key`]) and how many rows share the last row's
    /// key; `None` when the rows have no such column. Rows that had to be decoded for it leave
    /// the column's values in `decoded`.
    fn tail(
        &self,
        column: &str,
        decoded: &mut Option<Vec<Value>>,
    ) -> Option<(Option<Value>, usize)>;
}

fn tail<'a>(keys: impl DoubleEndedIterator<Item = &'a Value> + Clone) -> (Option<Value>, usize) {
    let safe = acks::safe_key(keys.clone());
    let mut rev = keys.rev();
    let Some(last) = rev.next() else {
        return (safe, 0);
    };
    (safe, 1 + rev.take_while(|k| *k == last).count())
}

impl Piece for Batch {
    fn read(
        from: &mut dyn SplitRead,
        _: &mut Option<Encoded>,
    ) -> Result<Option<Self>, PluginError> {
        from.next_batch()
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn without_first(mut self, n: usize) -> Self {
        self.rows.drain(..n);
        self
    }
    fn tail(&self, column: &str, _: &mut Option<Vec<Value>>) -> Option<(Option<Value>, usize)> {
        let i = self.schema.iter().position(|c| c.name == column)?;
        Some(tail(self.rows.iter().map(|r| &r[i])))
    }
}

impl Piece for Encoded {
    fn read(
        from: &mut dyn SplitRead,
        spare: &mut Option<Encoded>,
    ) -> Result<Option<Self>, PluginError> {
        from.next_encoded(spare.take())
    }
    fn len(&self) -> usize {
        self.rows()
    }
    fn without_first(self, n: usize) -> Self {
        match n {
            0 => self,
            n => self.slice(n..self.rows()),
        }
    }
    fn tail(
        &self,
        column: &str,
        decoded: &mut Option<Vec<Value>>,
    ) -> Option<(Option<Value>, usize)> {
        let i = self.schema().iter().position(|c| c.name == column)?;
        let keys = self.column(i);
        let tail = tail(keys.iter());
        *decoded = Some(keys);
        Some(tail)
    }
}
