//! End-to-end tests: real MariaDB, a real Bolt server, the real binary and plugins.
//! Run them with `cargo xtask test`, which starts the services and builds everything first.

mod delivery;
mod flows;
mod incremental;
mod init;
mod parallel_rels;
mod plugins;
mod progress;
mod reruns;
mod resume;
mod scaffold;
mod seatunnel;
mod shards;
mod sink_failure;
mod spec_errors;
mod splits;
mod status;
mod stream;
mod stream_cascade;
mod stream_chunks;
mod stream_poison;
mod stream_schema;
mod stream_service;
mod support;
mod tls;
mod transfer;
mod transform_recipes;
mod transforms;
mod types;
mod verify;
