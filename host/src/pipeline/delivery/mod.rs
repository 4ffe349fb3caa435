//! The delivery modes (see [`super::mode::Mode`]), one file each: how the batcher stage makes
//! batches of the readers' chunks, and how a writer writes one.
//!
//! - `plain`: decoded rows, batched by rows, bytes and time ([`super::batcher`]); a batch that
//!   fails is bisected until its failing rows are isolated;
//! - `encoded`: the pass-through mode, batched the same way; rows are decoded only when their
//!   batch fails, and then written as `plain` does;
//! - `grouped`: a relationship flow's rows grouped by their endpoints, so that batches written at
//!   the same time never touch the same node; each written as `plain` does;
//! - `ordered`: progress in the target, each batch with its split's progress in one transaction.

pub mod encoded;
pub mod grouped;
pub mod ordered;
pub mod plain;
