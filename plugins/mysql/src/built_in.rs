//! A split read through the built-in client ([`etlhost_mysql_wire`]): one plain TCP connection of
//! the split's own, one prepared statement, and each cell of its binary rows pushed straight into
//! the batch format (docs/decisions/0001-built-in-mysql-client.md: mysql_async's owned rows cost
//! 2,170 of the source path's 3,736 instructions per row).
//!
//! For a connection the client does not speak (a URL asking for TLS, a socket or compression,
//! another authentication plugin, a server that wants `caching_sha2_password`'s full exchange) and
//! for any failure before the first row, [`open`] gives up and the split is read through
//! mysql_async as before, whose errors the user knows.

use std::time::Duration;

use etlhost_mysql_wire::{Cell, Column, Config, Conn, Error as WireError, Rows};
use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{codec, Error, Schema};
use tokio::sync::mpsc;

use crate::types::{self, Conv};

/// Why a read stopped: the server or the connection failed, or a value its column cannot take
/// (as [`types::push`] words it).
enum Stop {
    Wire(WireError),
    Value(String),
}

impl Stop {
    fn into_error(self, secrets: &[&str]) -> Error {
        match self {
            Stop::Value(e) => Error::permanent(e),
            Stop::Wire(e) => Error {
                retryable: e.is_io(),
                message: redact_secrets(&format!("reading failed: {e}"), secrets),
            },
        }
    }
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Wire(e)
    }
}

/// The client's settings from the source's, or why it cannot connect the way they ask.
fn config(opts: &mysql_async::Opts, timeout: Duration) -> Result<Config, WireError> {
    if opts.ssl_opts().is_some() || opts.socket().is_some() || opts.compression().is_some() {
        return Err(WireError::Unsupported(
            "TLS, a socket or compression".into(),
        ));
    }
    if !opts.init().is_empty() {
        return Err(WireError::Unsupported("init statements".into()));
    }
    Ok(Config {
        host: opts.ip_or_hostname().to_string(),
        port: opts.tcp_port(),
        user: opts.user().map(String::from),
        password: opts.pass().unwrap_or_default().to_string(),
        database: opts.db_name().map(String::from),
        init: vec![crate::sql::SESSION_SETUP.to_string()],
        timeout,
    })
}

/// A split's statement executed over its own connection, at its first row.
pub struct Started {
    rows: Rows,
}

/// Connects and executes `sql` with `params`; `None` (and why, at info level: the old path is
/// slower, and a user should be able to tell why a job took it) when the split is better read
/// through mysql_async, which also reports any error there was.
pub fn open(
    opts: &mysql_async::Opts,
    timeout: Duration,
    sql: &str,
    params: &[mysql_async::Value],
) -> Option<Started> {
    let start = || Conn::connect(&config(opts, timeout)?)?.execute(sql, params);
    match start() {
        Ok(rows) => Some(Started { rows }),
        Err(e) => {
            tracing::info!(
                "the built-in MySQL client cannot read this split ({e}): reading it through mysql_async"
            );
            None
        }
    }
}

/// Where the batches go, and where their buffers come back once the reader has copied them.
pub struct Out<'a> {
    pub tx: &'a mpsc::Sender<Result<Vec<u8>, Error>>,
    pub spare: &'a std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Out<'_> {
    fn builder(&self, schema: &Schema) -> codec::Builder {
        codec::Builder::reusing(schema, self.spare.try_recv().unwrap_or_default())
    }
}

impl Started {
    pub fn columns(&self) -> &[Column] {
        self.rows.columns()
    }

    /// Streams the rows into `tx` in batches of `fetch_size`, as the mysql_async path does, or
    /// the error that stopped them.
    pub fn stream(
        mut self,
        schema: &Schema,
        convs: &[Conv],
        fetch_size: usize,
        out: Out<'_>,
        secrets: &[&str],
    ) {
        match self.rows(schema, convs, fetch_size, &out) {
            Ok(()) => self.rows.close(),
            Err(e) => {
                let _ = out.tx.blocking_send(Err(e.into_error(secrets)));
            }
        }
    }

    fn rows(
        &mut self,
        schema: &Schema,
        convs: &[Conv],
        fetch_size: usize,
        out: &Out<'_>,
    ) -> Result<(), Stop> {
        let mut batch = out.builder(schema);
        while let Some(row) = self.rows.next_row()? {
            for (i, cell) in row.enumerate() {
                // Text straight from the packet; anything else as mysql_async would have made it.
                let pushed = match cell? {
                    Cell::Null => {
                        batch.push_null();
                        Ok(())
                    }
                    Cell::Bytes(b) => types::push_bytes(&mut batch, b, convs[i]),
                    Cell::Value(v) => types::push(&mut batch, &v, convs[i]),
                };
                if let Err(e) = pushed {
                    return Err(Stop::Value(format!("column `{}`: {e}", schema[i].name)));
                }
            }
            batch.end_row();
            if batch.rows() == fetch_size {
                let full = std::mem::replace(&mut batch, out.builder(schema));
                if out.tx.blocking_send(Ok(full.finish())).is_err() {
                    return Ok(()); // the host stopped reading this split
                }
            }
        }
        if !batch.is_empty() {
            let _ = out.tx.blocking_send(Ok(batch.finish()));
        }
        Ok(())
    }
}
