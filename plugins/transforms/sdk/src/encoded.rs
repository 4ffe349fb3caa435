//! The faster interface: world `encoded-transform` of `wit/transform.wit`.
//!
//! A batch arrives as one buffer in the plugin SDK's batch format and is decoded only as far as the
//! transform reads it: nothing for a transform that keeps every row, one column for a filter on
//! that column. Values are the plugin SDK's own ([`Value`]), so lists and maps arrive as
//! themselves, not as JSON text. Implement [`Transform`] and export it with
//! [`encoded_transform!`](crate::encoded_transform):
//!
//! ```ignore
//! use etlhost_transform::encoded::{Output, Rows, Transform, Value};
//!
//! struct Adults;
//! impl Transform for Adults {
//!     fn new(_config: &str) -> Result<Self, String> { Ok(Adults) }
//!     fn process(&mut self, rows: &Rows) -> Result<Output, String> {
//!         let mut out = Output::new(rows.columns());
//!         for age in rows.column("age")? {
//!             match age {
//!                 Value::Int(a) if a >= 18 => out.keep(),
//!                 _ => out.filter_out(),
//!             }
//!         }
//!         Ok(out)
//!     }
//! }
//! etlhost_transform::encoded_transform!(Adults);
//! ```

use std::cell::OnceCell;

pub use etlhost_plugin_sdk::codec::Encoded;
pub use etlhost_plugin_sdk::{Batch, Column, ColumnType, Point, Row, Schema, Value};

use etlhost_plugin_sdk::codec::{self, Builder};

pub use crate::cells::{Cells, Row as CellRow};
use crate::encoded_bindings::etlhost::transform::encoded::{Output as WitOutput, Verdict};

/// A transform of the encoded world. One instance per host worker; `new` runs once per instance
/// with the spec's `config` (JSON text).
pub trait Transform: Sized + 'static {
    fn new(config: &str) -> Result<Self, String>;

    /// What became of each row of `rows`, in order. `Err` fails the call: the host retries its
    /// rows apart to find the ones that cause it, so prefer [`Output::error`] for a single bad row.
    fn process(&mut self, rows: &Rows) -> Result<Output, String>;

    /// End of stream: rows held back (for stateful transforms).
    fn finish(&mut self) -> Result<Option<Batch>, String> {
        Ok(None)
    }
}

/// The index of column `name` among `columns`, or an error naming the columns there are.
pub fn column_index(columns: &[Column], name: &str) -> Result<usize, String> {
    crate::index_of(columns.iter().map(|c| c.name.as_str()), name)
}

/// The rows of one call, decoded only as far as they are read.
pub struct Rows {
    schema: Schema,
    len: usize,
    /// The buffer as the host sent it (the host checked it).
    bytes: Vec<u8>,
    checked: OnceCell<Encoded>,
}

impl Rows {
    #[doc(hidden)]
    pub fn new(bytes: Vec<u8>) -> Result<Rows, String> {
        let (schema, len) = codec::schema_and_rows(&bytes).map_err(|e| e.to_string())?;
        Ok(Rows {
            schema,
            len,
            bytes,
            checked: OnceCell::new(),
        })
    }

    pub fn columns(&self) -> &Schema {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of column `name`, or an error naming the columns there are.
    pub fn column_index(&self, name: &str) -> Result<usize, String> {
        crate::index_of(self.schema.iter().map(|c| c.name.as_str()), name)
    }

    /// Column `name` of every row, decoded; the other columns are not.
    pub fn column(&self, name: &str) -> Result<Vec<Value>, String> {
        Ok(self.encoded().column(self.column_index(name)?))
    }

    /// Every row as a [`Row`](crate::cells::Row) whose values are read only when asked for, and
    /// can be passed on as their bytes ([`RowWriter::copy`]).
    pub fn cells(&self) -> Cells<'_> {
        // Found in the buffer as sent: checking it again first would read it twice.
        Cells::of(&self.bytes, self.schema.len(), self.len)
    }

    /// Every row, decoded.
    pub fn decode(&self) -> Batch {
        self.encoded().decode()
    }

    /// The rows with their offsets, checked once on first use.
    pub fn encoded(&self) -> &Encoded {
        self.checked.get_or_init(|| {
            // The host sends only buffers it checked itself, so this cannot fail.
            Encoded::check(self.bytes.clone()).expect("the host sent a malformed batch")
        })
    }
}

/// What became of each input row, in order: one call of [`Output::keep`], [`Output::filter_out`],
/// [`Output::error`], [`Output::replace`] or [`Output::expand`] per row.
pub struct Output {
    /// `None`: every row kept, without a verdict each.
    verdicts: Option<Vec<Verdict>>,
    columns: Schema,
    rows: Option<Emitted>,
}

/// The rows emitted so far, in the batch format: the header (with the row count still to be
/// written) and the values, row after row.
struct Emitted {
    buf: Vec<u8>,
    count_at: usize,
    rows: u32,
    /// A buffer a row of values is encoded into (see [`Output::expand`]), kept for the next.
    scratch: Vec<u8>,
}

impl Emitted {
    fn new(columns: &[Column]) -> Emitted {
        let buf = Builder::new(columns, 4096).finish();
        Emitted {
            count_at: buf.len() - 4,
            buf,
            rows: 0,
            scratch: Vec::new(),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let at = self.count_at;
        self.buf[at..at + 4].copy_from_slice(&self.rows.to_le_bytes());
        self.buf
    }
}

/// One row being emitted ([`Output::emit`]): a value per output column, in order, each copied from
/// an input row ([`RowWriter::copy`]) or given ([`RowWriter::text`], [`RowWriter::value`]).
pub struct RowWriter<'a> {
    out: &'a mut Emitted,
}

impl RowWriter<'_> {
    /// The next value is `row`'s value of column `col`, copied as its bytes (not decoded).
    #[inline]
    pub fn copy(&mut self, row: &CellRow<'_>, col: usize) -> &mut Self {
        self.out.buf.extend_from_slice(row.raw(col));
        self
    }

    /// The next value is the text `s`.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.text_bytes(s.as_bytes())
    }

    /// The next value is the text whose UTF-8 bytes are `s` (e.g. pieces of texts read with
    /// [`CellRow::text_bytes`]). The host checks every buffer it gets back: bytes that are not
    /// UTF-8 fail the call, as a trap does.
    #[inline]
    pub fn text_bytes(&mut self, s: &[u8]) -> &mut Self {
        // Tag 6 (String) and its length, as the batch format has them.
        self.out.buf.push(6);
        self.out
            .buf
            .extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.buf.extend_from_slice(s);
        self
    }

    /// The next value is `v`.
    pub fn value(&mut self, v: &Value) -> &mut Self {
        let scratch = std::mem::take(&mut self.out.scratch);
        let mut b = Builder::reusing(&[], scratch);
        b.push_value(v);
        let bytes = b.finish();
        // A buffer of no columns: magic, column count and row count, then the value.
        self.out.buf.extend_from_slice(&bytes[12..]);
        self.out.scratch = bytes;
        self
    }
}

impl Output {
    /// Every row kept as it is: nothing but the call crosses back.
    pub fn all_kept() -> Output {
        Output {
            verdicts: None,
            columns: Vec::new().into(),
            rows: None,
        }
    }

    /// An output whose replaced and expanded rows have `columns` (the input's, to change values
    /// only; a kept row needs the output columns to be the input's).
    pub fn new(columns: &[Column]) -> Output {
        Output {
            verdicts: Some(Vec::new()),
            columns: columns.into(),
            rows: None,
        }
    }

    /// Room for about `bytes` more bytes of emitted rows, so that emitting them copies none of the
    /// earlier ones (e.g. the input's size and a little more per row).
    pub fn reserve(&mut self, bytes: usize) {
        let columns = &self.columns;
        let out = self.rows.get_or_insert_with(|| Emitted::new(columns));
        out.buf.reserve(bytes);
    }

    #[inline]
    fn verdict(&mut self, v: Verdict) {
        self.verdicts
            .as_mut()
            .expect("Output::all_kept takes no verdicts; make it with Output::new")
            .push(v);
    }

    /// Passes the row on unchanged.
    pub fn keep(&mut self) {
        self.verdict(Verdict::Keep);
    }

    /// Filters the row out on purpose (counted as filtered, not failed).
    pub fn filter_out(&mut self) {
        self.verdict(Verdict::Drop);
    }

    /// Sends the row to the dead-letter file with `reason`.
    pub fn error(&mut self, reason: impl Into<String>) {
        self.verdict(Verdict::Error(reason.into()));
    }

    /// Passes `row` (a value per output column) on instead.
    pub fn replace(&mut self, row: &[Value]) {
        self.expand(std::slice::from_ref(&row));
    }

    /// Passes `rows` on instead (none: the same as [`Output::filter_out`]).
    pub fn expand<R: AsRef<[Value]>>(&mut self, rows: &[R]) {
        for r in rows {
            self.write_row(|w| {
                for v in r.as_ref() {
                    w.value(v);
                }
            });
        }
        self.verdict(Verdict::Emit(rows.len() as u32));
    }

    /// Passes one row on instead, written by `write` a value per output column (copied from an
    /// input row, or new): the values not read are never decoded.
    ///
    /// ```ignore
    /// let cells = rows.cells();
    /// for row in cells.rows() {
    ///     let label = format!("{} <{}>", row.text(1).unwrap_or(""), row.text(2).unwrap_or(""));
    ///     out.emit(|w| { w.copy(&row, 0).copy(&row, 1).text(&label); });
    /// }
    /// ```
    #[inline]
    pub fn emit(&mut self, write: impl FnOnce(&mut RowWriter<'_>)) {
        self.write_row(write);
        self.verdict(Verdict::Emit(1));
    }

    #[inline]
    fn write_row(&mut self, write: impl FnOnce(&mut RowWriter<'_>)) {
        let columns = &self.columns;
        let out = self.rows.get_or_insert_with(|| Emitted::new(columns));
        write(&mut RowWriter { out });
        out.rows += 1;
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> WitOutput {
        // Every row kept: said as such, so the host passes the input's bytes on as they are.
        let all_kept = |v: &Vec<Verdict>| v.iter().all(|v| matches!(v, Verdict::Keep));
        WitOutput {
            verdicts: self.verdicts.filter(|v| !all_kept(v)),
            rows: self.rows.map(Emitted::finish).unwrap_or_default(),
        }
    }
}

#[doc(hidden)]
pub fn finish_to_wit(held: Option<Batch>) -> Vec<u8> {
    match held {
        Some(b) if !b.rows.is_empty() => codec::encode(&b),
        _ => Vec::new(),
    }
}

/// Exports an [`encoded::Transform`](Transform) as the component's `encoded-transform` world.
#[macro_export]
macro_rules! encoded_transform {
    ($t:ty) => {
        struct __EtlhostEncodedTransform;

        $crate::__instance!($t);

        impl $crate::encoded_bindings::Guest for __EtlhostEncodedTransform {
            fn init(config: String) -> Result<(), String> {
                __etlhost_init(<$t as $crate::encoded::Transform>::new(&config)?);
                Ok(())
            }
            fn process(
                rows: Vec<u8>,
            ) -> Result<$crate::encoded_bindings::etlhost::transform::encoded::Output, String>
            {
                let rows = $crate::encoded::Rows::new(rows)?;
                __etlhost_with(|t| $crate::encoded::Transform::process(t, &rows))
                    .map($crate::encoded::Output::into_wit)
            }
            fn finish() -> Result<Vec<u8>, String> {
                __etlhost_with(|t| $crate::encoded::Transform::finish(t))
                    .map($crate::encoded::finish_to_wit)
            }
        }

        $crate::encoded_bindings::export!(
            __EtlhostEncodedTransform with_types_in $crate::encoded_bindings
        );
    };
}
