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

use std::cell::{Cell, OnceCell};

pub use etlhost_plugin_sdk::codec::Encoded;
pub use etlhost_plugin_sdk::{Batch, Column, ColumnType, Point, Row, Schema, Value};

use etlhost_plugin_sdk::codec::{self, Builder};

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

/// The rows of one call, decoded only as far as they are read.
pub struct Rows {
    schema: Schema,
    len: usize,
    /// The buffer until something reads past the header; then it moves into `checked`.
    bytes: Cell<Vec<u8>>,
    checked: OnceCell<Encoded>,
}

impl Rows {
    #[doc(hidden)]
    pub fn new(bytes: Vec<u8>) -> Result<Rows, String> {
        let (schema, len) = codec::schema_and_rows(&bytes).map_err(|e| e.to_string())?;
        Ok(Rows {
            schema,
            len,
            bytes: Cell::new(bytes),
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

    /// Every row, decoded.
    pub fn decode(&self) -> Batch {
        self.encoded().decode()
    }

    /// The rows with their offsets, checked once on first use.
    pub fn encoded(&self) -> &Encoded {
        self.checked.get_or_init(|| {
            // The host sends only buffers it checked itself, so this cannot fail.
            Encoded::check(self.bytes.take()).expect("the host sent a malformed batch")
        })
    }
}

/// What became of each input row, in order: one call of [`Output::keep`], [`Output::filter_out`],
/// [`Output::error`], [`Output::replace`] or [`Output::expand`] per row.
pub struct Output {
    /// `None`: every row kept, without a verdict each.
    verdicts: Option<Vec<Verdict>>,
    columns: Schema,
    rows: Option<Builder>,
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
        let columns = &self.columns;
        let b = self.rows.get_or_insert_with(|| Builder::new(columns, 4096));
        for r in rows {
            b.push_row(r.as_ref());
        }
        self.verdict(Verdict::Emit(rows.len() as u32));
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> WitOutput {
        // Every row kept: said as such, so the host passes the input's bytes on as they are.
        let all_kept = |v: &Vec<Verdict>| v.iter().all(|v| matches!(v, Verdict::Keep));
        WitOutput {
            verdicts: self.verdicts.filter(|v| !all_kept(v)),
            rows: self.rows.map(Builder::finish).unwrap_or_default(),
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
