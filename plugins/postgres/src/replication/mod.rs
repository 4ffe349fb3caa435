//! `mode: stream`: changes from a logical replication slot (pgoutput). OWNED BY HELPER E; this
//! is helper A's stub so the crate builds.

use etlhost_plugin_sdk::{Error, StreamHead, StreamRequest};

use crate::source::PgSource;

/// Checks that the server can stream changes and says where its WAL is now.
pub(crate) fn stream_head(source: &PgSource) -> Result<StreamHead, Error> {
    let _ = source;
    Err(Error::permanent(
        "the postgres source cannot stream changes yet",
    ))
}

/// A stream split's reader: starts following the slot from `req`.
pub(crate) fn open_stream(
    source: &PgSource,
    split: u32,
    req: &StreamRequest,
) -> Result<crate::reader::PgReader, Error> {
    let _ = (source, split, req);
    Err(Error::permanent(
        "the postgres source cannot stream changes yet",
    ))
}
