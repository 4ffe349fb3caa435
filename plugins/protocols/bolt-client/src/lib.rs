//! A Bolt client for writing to Neo4j-compatible graph databases (Neo4j, ArcadeDB, Memgraph),
//! usable without the etlhost plugin around it.
//!
//! - [`Target::parse`] reads a `bolt://` / `neo4j://` URI (with `+s` / `+ssc` for TLS) into an
//!   address, its trust and its routing context;
//! - [`client_config`] turns that trust into a rustls configuration;
//! - [`Connection::connect`] negotiates Bolt 5.4-5.0 or 4.4-4.0 and logs in;
//!   [`Connection::run_in_transaction`] sends BEGIN, RUN, PULL and COMMIT in one write;
//!   [`Connection::run_read`] and [`Connection::pull`] read a result;
//!   [`Connection::route`] asks for a routing table;
//! - [`packstream`] encodes parameters straight into the message buffer and decodes answers
//!   into [`Ps`].
//!
//! ```no_run
//! use std::time::Duration;
//! use etlhost_bolt_client::{Auth, Connection, Settings};
//!
//! let settings = Settings {
//!     auth: Auth::Basic { user: "root", password: "secret" },
//!     tls: None,
//!     routing: None,
//!     timeout: Duration::from_secs(5),
//! };
//! let mut conn = Connection::connect("127.0.0.1:7687", &settings)?;
//! let fields = conn.run_read(Some("test"), "RETURN 1 AS one", |m| {
//!     etlhost_bolt_client::packstream::map_header(m, 0)
//! })?;
//! let (records, _more) = conn.pull(-1)?;
//! assert_eq!(fields, ["one"]);
//! # Ok::<(), etlhost_bolt_client::BoltError>(())
//! ```

mod connection;
pub mod packstream;
mod tls;
mod uri;

pub use connection::{
    Auth, BoltError, Connection, RoutingTable, Settings, WriteParams, EXPLAIN_PREFIX,
};
pub use packstream::{DecodeError, Ps};
pub use tls::client_config;
pub use uri::{host_of, with_default_port, Target, Trust, UriError};
