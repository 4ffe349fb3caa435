//! A MySQL/MariaDB client for one job: executing a prepared statement and reading its binary rows
//! fast, each row a slice of a reused buffer and each cell handed over in place, usable without
//! the etlhost plugin around it.
//!
//! Why not mysql_async for this: it hands each row over as a `Row` of owned values (a vector and
//! an allocation per text cell), which a reader then copies and frees. Here a row allocates
//! nothing. The packets (handshake, authentication, statements, column definitions, errors) are
//! mysql_common's, the same code mysql_async parses them with, and every cell that is not text is
//! decoded by mysql_common's own binary-value parser, so a value reads the same either way.
//!
//! Only what a bulk read needs is spoken: TCP without TLS or compression, and authentication by
//! `mysql_native_password` or the fast path of `caching_sha2_password`; anything else is
//! [`Error::Unsupported`], for the caller to fall back to a full client.
//!
//! ```no_run
//! use std::time::Duration;
//! use etlhost_mysql_wire::{Cell, Config, Conn, Value};
//!
//! let config = Config {
//!     host: "127.0.0.1".into(),
//!     port: 3306,
//!     user: Some("etl".into()),
//!     password: "etl".into(),
//!     database: Some("test".into()),
//!     init: vec!["SET time_zone = '+00:00'".into()],
//!     timeout: Duration::from_secs(10),
//! };
//! let mut rows = Conn::connect(&config)?.execute("SELECT id, name FROM t WHERE id > ?", &[Value::Int(10)])?;
//! while let Some(row) = rows.next_row()? {
//!     for cell in row {
//!         match cell? {
//!             Cell::Null => print!("NULL "),
//!             Cell::Bytes(b) => print!("{} ", String::from_utf8_lossy(b)),
//!             Cell::Value(v) => print!("{v:?} "),
//!         }
//!     }
//!     println!();
//! }
//! rows.close();
//! # Ok::<(), etlhost_mysql_wire::Error>(())
//! ```

mod conn;
mod rows;

use std::time::Duration;

pub use conn::Conn;
pub use mysql_common::packets::Column;
pub use mysql_common::value::Value;
pub use rows::{Cell, Row, Rows};

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: String,
    /// The default database; `None` (or empty) for none.
    pub database: Option<String>,
    /// Statements run after login, before anything else (session settings).
    pub init: Vec<String>,
    /// Bounds connecting and logging in, not statements.
    pub timeout: Duration,
}

/// Why a connection or a read failed.
#[derive(Debug)]
pub enum Error {
    /// The server's error packet.
    Server {
        code: u16,
        state: String,
        message: String,
    },
    /// The network, or a packet that does not parse as what was due (a broken stream).
    Io(std::io::Error),
    /// Something this client does not speak: the caller may read through a full client instead.
    Unsupported(String),
}

impl Error {
    /// The connection broke; a new one may succeed.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // As mysql_async words them, so a failure reads the same through either client.
            Error::Server {
                code,
                state,
                message,
            } => write!(f, "ERROR {code} ({state}): {message}"),
            Error::Io(e) => write!(f, "Input/output error: {e}"),
            Error::Unsupported(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}
