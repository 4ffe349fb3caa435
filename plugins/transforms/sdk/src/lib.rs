//! # etlhost transform SDK (Rust guests)
//!
//! A transform reshapes rows between an etlhost source and sink, compiled to a WASM component for
//! `wasm32-wasip2`. Implement [`Transform`] and export it:
//!
//! ```ignore
//! struct Upper;
//! impl etlhost_transform::Transform for Upper {
//!     fn new(_config: &str) -> Result<Self, String> { Ok(Upper) }
//!     fn process(&mut self, input: Batch) -> Result<Output, String> {
//!         let outcomes = input.rows.into_iter().map(|row| Outcome::Replace(
//!             row.into_iter().map(|v| match v { Value::Text(s) => Value::Text(s.to_uppercase()), v => v }).collect()
//!         )).collect();
//!         Ok(Output { columns: input.columns, outcomes })
//!     }
//! }
//! etlhost_transform::transform!(Upper);
//! ```
//!
//! The interface is `wit/transform.wit` (`etlhost:transform@0.2.0`): whole batches in, one
//! [`Outcome`] per input row out, `finish` at the end of the stream. Lists and maps arrive as
//! `Value::Nested`, JSON text (WIT types cannot nest): parse it with the JSON crate you like.
//!
//! That interface hands every value across one by one, which costs more than most transforms do.
//! [`encoded`] is the faster one: the batch crosses as one buffer and is decoded in the guest only
//! as far as the transform reads it (a transform keeping every row decodes nothing). Prefer it
//! for new transforms.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transform",
        path: "../../../wit",
        pub_export_macro: true,
        default_bindings_module: "etlhost_transform::bindings",
    });
}

/// The bindings of the `encoded-transform` world, for [`encoded`] and its export macro.
#[doc(hidden)]
pub mod encoded_bindings {
    wit_bindgen::generate!({
        world: "encoded-transform",
        path: "../../../wit",
        pub_export_macro: true,
        default_bindings_module: "etlhost_transform::encoded_bindings",
    });
}

pub mod cells;
pub mod encoded;

pub use bindings::etlhost::transform::types::{
    Batch, Column, ColumnType, Outcome, Output, Point, Value,
};
#[doc(hidden)]
pub use bindings::{export, Guest};

/// One row: a value per column.
pub type Row = Vec<Value>;

/// A transform. One instance per host worker; `new` runs once per instance with the spec's
/// `config` (JSON text).
pub trait Transform: Sized + 'static {
    fn new(config: &str) -> Result<Self, String>;

    /// One outcome per input row, in order. `Err` fails the call: the host retries its rows apart
    /// to find the ones that cause it, so prefer `Outcome::Error` for a single bad row.
    fn process(&mut self, input: Batch) -> Result<Output, String>;

    /// End of stream: rows held back (for stateful transforms).
    fn finish(&mut self) -> Result<Batch, String> {
        Ok(Batch {
            columns: Vec::new(),
            rows: Vec::new(),
        })
    }
}

/// The index of column `name`, or an error naming the columns there are.
pub fn column_index(columns: &[Column], name: &str) -> Result<usize, String> {
    index_of(columns.iter().map(|c| c.name.as_str()), name)
}

/// The index of `name` among the column names `names`, or an error naming them all (for the
/// columns of either world).
pub(crate) fn index_of<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
    name: &str,
) -> Result<usize, String> {
    names.clone().position(|n| n == name).ok_or_else(|| {
        let names: Vec<&str> = names.collect();
        format!("no column `{name}` (columns: {})", names.join(", "))
    })
}

/// Exports a [`Transform`] as the component's `etlhost:transform` world.
#[macro_export]
macro_rules! transform {
    ($t:ty) => {
        struct __EtlhostTransform;

        $crate::__instance!($t);

        impl $crate::Guest for __EtlhostTransform {
            fn init(config: String) -> Result<(), String> {
                __etlhost_init(<$t as $crate::Transform>::new(&config)?);
                Ok(())
            }
            fn process(input: $crate::Batch) -> Result<$crate::Output, String> {
                __etlhost_with(|t| $crate::Transform::process(t, input))
            }
            fn finish() -> Result<$crate::Batch, String> {
                __etlhost_with(|t| $crate::Transform::finish(t))
            }
        }

        $crate::export!(__EtlhostTransform with_types_in $crate::bindings);
    };
}

/// The one instance of a transform a component holds, made by `init` and used by the other
/// exports: for the export macros of both worlds.
#[doc(hidden)]
#[macro_export]
macro_rules! __instance {
    ($t:ty) => {
        thread_local! {
            static __ETLHOST_STATE: ::std::cell::RefCell<Option<$t>> =
                const { ::std::cell::RefCell::new(None) };
        }

        fn __etlhost_with<R>(f: impl FnOnce(&mut $t) -> Result<R, String>) -> Result<R, String> {
            __ETLHOST_STATE.with(|s| match s.borrow_mut().as_mut() {
                Some(t) => f(t),
                None => Err("called before init".to_string()),
            })
        }

        fn __etlhost_init(t: $t) {
            __ETLHOST_STATE.with(|s| *s.borrow_mut() = Some(t));
        }
    };
}
