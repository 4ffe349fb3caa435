//! The command line: every command and its arguments (clap), parsed in `main` and handed to the
//! command's module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Declarative data movement: source and sink plugins, wired by a job spec.
#[derive(Parser)]
#[command(name = "etlhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a job spec (.yaml, .yml, .toml, or a SeaTunnel job file: .conf).
    Run(RunArgs),
    /// Check a spec and its plugins' options, and have each sink connect and check that it could
    /// write (the bolt sink has the server compile its Cypher), without moving data.
    Validate {
        spec: PathBuf,
        /// Check the spec only: connect nowhere.
        #[arg(long)]
        offline: bool,
    },
    /// Print the splits a job would read (range and estimated rows) without moving data.
    Plan { spec: PathBuf },
    /// List the plugins found on the plugin search path.
    Plugins,
    /// Write a job spec for a database's tables: a node flow per table (MERGE on the primary
    /// key), relationships from foreign keys and join tables. Option values are written as given,
    /// so `'${MYSQL_PASSWORD}'` keeps a password out of the file (it is expanded to connect).
    Init(Box<InitArgs>),
    /// Write the etlhost spec (.yaml or .toml) of a SeaTunnel job file (.conf), with a comment
    /// on every key whose meaning changed.
    Convert(ConvertArgs),
    /// Compare, flow by flow, what the source holds with what the graph holds: rows in the
    /// source, entities in the graph, missing, extra and different ones with their keys. Exit
    /// code 0 only when every flow matches.
    Verify(VerifyArgs),
    /// Write a new plugin or transform project that builds and runs as it is.
    #[command(subcommand)]
    New(NewArgs),
    /// Show where each flow of a job stands, read from where its progress is kept (the target, or
    /// the local checkpoint files): a batch flow's plan, splits and rows, and its failure; a
    /// stream's lease, position, writers and lag behind the source.
    Status(StatusArgs),
}

#[derive(Subcommand)]
pub enum NewArgs {
    /// A sink plugin crate (a shared library against the plugin SDK).
    Sink {
        /// The plugin's name, as a job spec's `sink.plugin` names it.
        name: String,
        /// Where to write the project (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin SDK to build against (default: plugins/sdk of the source tree this etlhost
        /// was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// A WASM transform component in Rust, Python or JavaScript.
    Transform {
        #[arg(long, value_enum)]
        lang: Lang,
        /// The transform's name.
        name: String,
        /// Where to write the project (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    pub spec: PathBuf,
    /// Check this many random keys per flow instead of every row.
    #[arg(long)]
    pub sample: Option<usize>,
    /// Seeds the choice of `--sample` keys (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Source rows per checksum chunk.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_rows: usize,
    /// Also write the result to this file as JSON.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    pub spec: PathBuf,
    /// Print one JSON document (its keys are listed in docs/running.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// The run whose progress to show, as `etlhost run --run` named it (default: the ETLHOST_RUN
    /// environment variable, else the default run).
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    pub spec: PathBuf,
    /// Also write the final statistics to this file as JSON.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Start over: discard the job's checkpoint instead of resuming from it.
    #[arg(long)]
    pub fresh: bool,
    /// The earlier run failed and left nothing to read: accept its failure (its rows stay in the
    /// dead-letter file), end the run as succeeded and forget its progress.
    #[arg(long)]
    pub accept_failures: bool,
    /// Incremental flows read every row instead of starting at their stored cursor (which is
    /// then stored anew).
    #[arg(long)]
    pub full: bool,
    /// No progress bars or progress blocks (logs still follow RUST_LOG).
    #[arg(long)]
    pub quiet: bool,
    /// `mode: stream`: serve Prometheus metrics (lag, changes, position) on this address, e.g.
    /// 127.0.0.1:9464.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Run only shard I of N (zero-based, e.g. 2/4): every N-th split of every flow. Without it,
    /// Kubernetes' JOB_COMPLETION_INDEX with the spec's `shards` (or ETLHOST_SHARDS) selects it.
    #[arg(long, value_parser = crate::shard::Shard::parse)]
    pub shard: Option<crate::shard::Shard>,
    /// The run every shard of it shares, for its plan and progress in the target (default: the
    /// ETLHOST_RUN environment variable, else none).
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// The spec to write; .yaml, .yml or .toml decides the format.
    pub output: PathBuf,
    /// The source database, e.g. mysql://127.0.0.1:3306/shop or postgres://127.0.0.1:5432/shop.
    #[arg(long)]
    pub source_url: String,
    #[arg(long)]
    pub source_user: Option<String>,
    #[arg(long)]
    pub source_password: Option<String>,
    /// The source plugin; default: `postgres` for a postgres:// or postgresql:// URL, else `mysql`.
    #[arg(long)]
    pub source_plugin: Option<String>,
    /// The graph database, e.g. bolt://127.0.0.1:7687.
    #[arg(long)]
    pub sink_uri: String,
    #[arg(long)]
    pub sink_user: Option<String>,
    #[arg(long)]
    pub sink_password: Option<String>,
    /// The graph database's name (Bolt `db`).
    #[arg(long)]
    pub sink_database: Option<String>,
    #[arg(long, default_value = "bolt")]
    pub sink_plugin: String,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Leave out these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// The job's name; default: the output file's name without extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Readers per flow (and splits of a table with a numeric primary key).
    #[arg(long, default_value_t = 2)]
    pub parallelism: usize,
    /// Replace the output file and its `.graph.md` diagram if they exist.
    #[arg(long)]
    pub force: bool,
    /// `stream`: flows that snapshot and then follow the binlog (delete queries included).
    #[arg(long, default_value = "batch", value_parser = ["batch", "stream"])]
    pub mode: String,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The SeaTunnel job file (.conf).
    pub input: PathBuf,
    /// The spec to write; .yaml, .yml or .toml decides the format.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}
