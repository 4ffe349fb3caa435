//! The job spec: one serde model, read from YAML or TOML by file extension.
//!
//! Loading goes file -> JSON tree (format-specific parser) -> `${ENV}` expansion -> one flow or
//! several ([`flows`]) -> typed [`JobSpec`]. Every error names the file, the line and the key path
//! as written in the file, including errors found later by the host or by a plugin about its own
//! options ([`Spec::error`], [`FlowRef::error`]).
//!
//! The spec is the bottom of the host: it imports nothing of it. A format it does not parse itself
//! (SeaTunnel's HOCON `.conf`, mapped onto this model by `crate::seatunnel`) is read by a
//! [`Reader`] its caller hands in ([`Spec::load_with`]).

mod duration;
mod endpoints;
pub mod env;
mod flows;
mod locate;
mod mode;
mod stream;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use etlhost_plugin_sdk::options::from_value;
use serde::Deserialize;

pub use duration::Span;
pub use endpoints::{EndpointsSpec, PlacementSpec};
pub use locate::Locator;
pub use stream::{OnFailedChange, StreamSpec};
pub use verify::VerifySpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// The format a file's extension names: `.yaml`/`.yml` or `.toml`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("toml") => Some(Format::Toml),
            _ => None,
        }
    }
}

/// What a run reads and writes, as a stable hash (FNV-1a, in hex) recorded in checkpoints and in
/// the plan kept in the target, to notice a changed spec.
///
/// It is taken of the spec's tree *after* `${VAR}` expansion, so that the same file run with other
/// values from the environment (another table, another output) is a changed spec too; comments and
/// layout do not count. Secrets do not count either: a rotated password (or short-lived credentials
/// issued per run) must not orphan a run's progress, and a hash of a short secret kept beside the
/// data could be reversed by trying candidates. So values under secret-looking keys are left out and
/// passwords inside URLs are masked before hashing; no secret is ever written.
fn identity(tree: &serde_json::Value) -> String {
    let mut masked = tree.clone();
    mask_secrets(&mut masked, false);
    hash(masked.to_string().as_bytes())
}

fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Keys whose values are credentials, by the words their names are made of.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private_key",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|w| key.contains(w))
}

fn mask_secrets(v: &mut serde_json::Value, secret: bool) {
    use serde_json::Value as J;
    match v {
        J::String(s) if secret => *s = "***".into(),
        J::String(s) => *s = etlhost_plugin_sdk::redact::redact_urls(s),
        J::Array(items) => items.iter_mut().for_each(|i| mask_secrets(i, secret)),
        J::Object(map) => map
            .iter_mut()
            .for_each(|(k, i)| mask_secrets(i, secret || is_secret_key(k))),
        _ if secret => *v = J::String("***".into()),
        _ => {}
    }
}

/// A job: one or more flows, each reading from one source, optionally transforming, and writing
/// to one sink. A file with `source` and `sink` at the top is a job of one flow named after the job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Names the job in logs, statistics, checkpoints and the dead-letter file.
    pub name: String,
    /// In the order they run: a flow runs after the flows named in its `after`.
    pub flows: Vec<FlowSpec>,
    /// Where failed rows are appended as JSON Lines; default `<name>.dead-letter.jsonl`.
    pub dead_letter: Option<PathBuf>,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Where compiled WASM transforms are cached, keyed by the component's bytes.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// How often the progress block is printed when stderr is not a terminal.
    #[serde(default = "default_progress_interval")]
    pub progress_interval: Span,
    /// How many processes share the job (`--shard I/N`, or Kubernetes' `JOB_COMPLETION_INDEX`
    /// with this count or `ETLHOST_SHARDS`).
    pub shards: Option<u32>,
    /// How streaming flows treat large transactions and refused changes ([`JobSpec::stream`]).
    #[serde(rename = "stream")]
    pub stream_block: Option<StreamSpec>,
}

impl JobSpec {
    /// The `stream:` block, or its defaults.
    pub fn stream(&self) -> StreamSpec {
        self.stream_block.clone().unwrap_or_default()
    }
}

/// One source -> transforms -> sink pipeline of a job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub name: String,
    /// Flows that must have completed before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Concurrent readers, each with its own source connection.
    #[serde(default = "one")]
    pub parallelism: usize,
    pub source: SourceSpec,
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
    pub sink: SinkSpec,
    /// How many rows of this flow may fail (dead-lettered) before the job counts as failed.
    #[serde(default)]
    pub max_failed_rows: u64,
    /// How `etlhost verify` finds the graph's side of the flow.
    pub verify: Option<VerifySpec>,
    /// `batch` copies once; `stream` snapshots, then follows the source's change log.
    #[serde(default)]
    pub mode: Mode,
    /// `mode: stream` only: `false` skips the snapshot and starts at the log's head.
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// `mode: stream` only: Cypher that returns the rows of the flow's table the graph holds (one
    /// column per source column, named like it) whose columns equal those of a map in `$batch`;
    /// an empty map matches every row. The stream finds through it the rows that the source's
    /// `TRUNCATE` and foreign-key cascades change without writing them to its log.
    pub rows_query: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Batch,
    Stream,
}

fn yes() -> bool {
    true
}

fn default_progress_interval() -> Span {
    Span(std::time::Duration::from_secs(30))
}

/// Where and how often progress is recorded, for resuming a killed job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    #[serde(default = "default_checkpoint_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_checkpoint_interval")]
    pub interval: Span,
    /// Where progress is kept: in the target, in each batch's transaction (`target`), in local
    /// files (`local`), or in the target when the sink can (`auto`).
    #[serde(default)]
    pub store: Store,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    #[default]
    Auto,
    Target,
    Local,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            dir: default_checkpoint_dir(),
            interval: default_checkpoint_interval(),
            store: Store::Auto,
        }
    }
}

fn default_checkpoint_dir() -> PathBuf {
    PathBuf::from(".etlhost/checkpoints")
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(".etlhost/cache")
}

fn default_checkpoint_interval() -> Span {
    Span(std::time::Duration::from_secs(10))
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A plugin name (`mysql`, found on the plugin path) or a path to a shared library.
    pub plugin: String,
    /// Split the source into key ranges on this column (number, date, datetime or text), or on
    /// the tuple of a list of columns (a composite primary key).
    pub partition_column: Option<PartitionKey>,
    /// The first split starts below this (and takes NULL keys); default: the column's minimum.
    pub partition_lower_bound: Option<serde_json::Value>,
    /// The last split ends above this; default: the column's maximum.
    pub partition_upper_bound: Option<serde_json::Value>,
    /// How many splits; default: the job's `parallelism`.
    pub partition_num: Option<usize>,
    /// Read incrementally: only rows whose value in this column (an increasing id or an
    /// `updated_at`) is at or past the highest value the last successful run read.
    pub cursor_column: Option<String>,
    /// The plugin's own options, validated by the plugin.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// `partition_column: id` or `partition_column: [region, id]`.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionKey {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_json::Value as J;
        let fail = || serde::de::Error::custom("expected a column name or a list of column names");
        match J::deserialize(d)? {
            J::String(c) => Ok(PartitionKey::One(c)),
            J::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    J::String(c) => Ok(c),
                    _ => Err(fail()),
                })
                .collect::<Result<_, _>>()
                .map(PartitionKey::Many),
            _ => Err(fail()),
        }
    }
}

impl PartitionKey {
    pub fn columns(&self) -> &[String] {
        match self {
            PartitionKey::One(c) => std::slice::from_ref(c),
            PartitionKey::Many(cs) => cs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub plugin: String,
    /// Rows per write. The last batch of a job may be smaller and is always written.
    #[serde(default = "default_batch_size")]
    pub max_batch_size: usize,
    /// Write a partial batch once its first row has waited this long (default: only when full or
    /// at the end of the input).
    pub batch_timeout: Option<Span>,
    /// Also close a batch when its rows reach about this many bytes.
    pub max_batch_bytes: Option<usize>,
    /// `batch` (default) or `one_by_one` (one sink call, one transaction, per row).
    #[serde(default)]
    pub write_mode: WriteMode,
    /// Concurrent writers, each with its own sink instance (connection).
    #[serde(default = "one")]
    pub parallelism: usize,
    /// Tries after a transient failure (connection lost, deadlock) before a batch's rows fail.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one, at most 30 s.
    #[serde(default = "default_backoff")]
    pub retry_backoff: Span,
    /// A relationship flow's endpoint columns: concurrent writers then never touch one node.
    pub endpoints: Option<EndpointsSpec>,
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    Batch,
    OneByOne,
}

fn default_batch_size() -> usize {
    1000
}

fn default_retries() -> u32 {
    5
}

fn default_backoff() -> Span {
    Span(std::time::Duration::from_millis(200))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    pub name: String,
    /// Path to a WASM component (relative to the spec's folder).
    pub component: String,
    /// Handed to the transform's `init` as JSON text.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The longest one call may take before it is stopped and its rows retried apart.
    #[serde(default = "default_deadline")]
    pub deadline: Span,
    /// Linear memory per instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// What the transform may reach outside its sandbox; nothing by default.
    #[serde(default)]
    pub allow: AllowSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    /// Environment variables passed in by name.
    #[serde(default)]
    pub env: Vec<String>,
    /// Host directories the transform may read, seen under the same path.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
    /// Outbound network access.
    #[serde(default)]
    pub network: bool,
}

fn default_deadline() -> Span {
    Span(std::time::Duration::from_secs(5))
}

fn default_memory_mib() -> usize {
    64
}

/// An error in a spec, located as precisely as the host can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SpecError {}

/// A loaded spec with what is needed to report errors against its file.
#[derive(Debug)]
pub struct Spec {
    pub job: JobSpec,
    pub path: PathBuf,
    /// What the run reads and writes ([`identity`]), recorded in checkpoints.
    pub hash: String,
    /// The file has `flows:` (rather than one flow's keys at the top).
    pub multi_flow: bool,
    /// Indexes into `job.flows` in the order they run.
    pub order: Vec<usize>,
    locator: Locator,
    /// Where keys of the flows came from in the file (see [`flows::Origins`]).
    origins: flows::Origins,
}

/// Reads a spec file in a format this module does not parse (a SeaTunnel `.conf`): its text as a
/// tree of this model's keys, and where each key is in the file.
pub type Reader = fn(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(serde_json::Value, Locator), SpecError>;

impl Spec {
    /// A YAML or TOML spec, `${VAR}`s from the process's environment.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        Self::load_with_env(path, &|name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Spec, SpecError> {
        Self::load_with(path, env, None)
    }

    /// A spec in any format: YAML and TOML parsed here, a `.conf` (SeaTunnel) by `conf`.
    pub fn load_with(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        conf: Option<Reader>,
    ) -> Result<Spec, SpecError> {
        let file = path.display().to_string();
        let fail = |line, key: &str, message: String| SpecError {
            file: file.clone(),
            line,
            key: key.to_string(),
            message,
        };
        // `None`: a SeaTunnel job file (HOCON), mapped onto the same model.
        let format = Format::from_path(path);
        if format.is_none() && path.extension().and_then(|e| e.to_str()) != Some("conf") {
            return Err(fail(
                None,
                "",
                "unknown spec format: the file name must end in .yaml, .yml, .toml or .conf (SeaTunnel)".into(),
            ));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(None, "", format!("cannot read: {e}")))?;
        let (mut tree, locator) = match format {
            None => match conf {
                Some(read) => read(path, &text, env)?,
                None => {
                    return Err(fail(
                        None,
                        "",
                        "a SeaTunnel job file (.conf) is read by the etlhost commands, or converted to YAML or TOML with `etlhost convert`".into(),
                    ))
                }
            },
            Some(format) => (
                Self::parse(&text, format, &fail)?,
                Locator::new(&text, format),
            ),
        };
        if !tree.is_object() {
            return Err(fail(
                Some(1),
                "",
                "a job spec must be a mapping of keys".into(),
            ));
        }
        env::expand_tree(&mut tree, "", env)
            .map_err(|(key, msg)| fail(locator.line(&key), &locator.name(&key), msg))?;
        let identity = identity(&tree);
        let multi_flow = tree.get("flows").is_some();
        let origins = flows::normalise(&mut tree);
        let job: JobSpec = from_value(tree).map_err(|e| {
            let key = origins.file_key(&e.key);
            fail(locator.line(&key), &locator.name(&key), e.message)
        })?;
        let mut spec = Spec {
            job,
            path: path.to_path_buf(),
            hash: identity,
            multi_flow,
            order: Vec::new(),
            locator,
            origins,
        };
        spec.check()?;
        spec.order =
            flows::order(&spec.job.flows).map_err(|(i, key, msg)| spec.flow(i).error(&key, msg))?;
        Ok(spec)
    }

    /// A YAML or TOML file's tree.
    fn parse(
        text: &str,
        format: Format,
        fail: &dyn Fn(Option<usize>, &str, String) -> SpecError,
    ) -> Result<serde_json::Value, SpecError> {
        Ok(match format {
            Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                let msg = e.to_string();
                // The location is already in front; drop serde_yaml's own " at line N column M".
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                fail(line, "", msg)
            })?,
            Format::Toml => toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                fail(line, "", e.message().trim().to_string())
            })?,
        })
    }

    /// An error about `key` (a path in the job's model such as `flows[0].sink.options.uri`),
    /// reported under the key and line it has in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        let key = self.origins.file_key(key);
        SpecError {
            file: self.path.display().to_string(),
            line: self.locator.line(&key),
            key: self.locator.name(&key),
            message: message.into(),
        }
    }

    /// Flow `index` of `job.flows`.
    pub fn flow(&self, index: usize) -> FlowRef<'_> {
        FlowRef {
            spec: self,
            index,
            flow: &self.job.flows[index],
        }
    }

    /// The flows in the order they run.
    pub fn flows_in_order(&self) -> impl Iterator<Item = FlowRef<'_>> {
        self.order.iter().map(|i| self.flow(*i))
    }

    /// The dead-letter file: `dead_letter`, or `<name>.dead-letter.jsonl` in the working directory.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.job
            .dead_letter
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.dead-letter.jsonl", self.job.name)))
    }

    /// The directory relative paths in the spec are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Rules of the host's own keys that serde cannot express.
    fn check(&self) -> Result<(), SpecError> {
        let j = &self.job;
        if j.name.trim().is_empty() {
            return Err(self.error("name", "must not be empty"));
        }
        if j.progress_interval.0.is_zero() {
            return Err(self.error("progress_interval", "must be longer than 0"));
        }
        if j.checkpoint.interval.0.is_zero() {
            return Err(self.error("checkpoint.interval", "must be longer than 0"));
        }
        if j.shards == Some(0) {
            return Err(self.error("shards", "must be at least 1"));
        }
        if j.flows.is_empty() {
            return Err(self.error("flows", "a job needs at least one flow"));
        }
        if j.stream_block.is_some() && !j.flows.iter().any(|f| f.mode == Mode::Stream) {
            return Err(self.error("stream", "has no effect without a flow of mode: stream"));
        }
        let stream = j.stream();
        if stream.max_transaction_changes == 0 {
            return Err(self.error("stream.max_transaction_changes", "must be at least 1"));
        }
        if stream.max_failed_changes.is_some()
            && stream.on_failed_change != OnFailedChange::DeadLetter
        {
            return Err(self.error(
                "stream.max_failed_changes",
                "has no effect without on_failed_change: dead_letter",
            ));
        }
        for i in 0..j.flows.len() {
            self.flow(i).check()?;
        }
        Ok(())
    }
}

/// One flow of a loaded spec, for reading its keys and reporting errors against them.
#[derive(Clone, Copy)]
pub struct FlowRef<'a> {
    pub spec: &'a Spec,
    pub index: usize,
    pub flow: &'a FlowSpec,
}

impl FlowRef<'_> {
    /// An error about `key` below the flow (`source.partition_column`), located in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        let full = if key.is_empty() {
            format!("flows[{}]", self.index)
        } else {
            format!("flows[{}].{key}", self.index)
        };
        self.spec.error(&full, message)
    }

    /// The name statistics, logs and files use: the job's name for a job of one flow.
    pub fn label(&self) -> String {
        if self.spec.multi_flow {
            format!("{}/{}", self.spec.job.name, self.flow.name)
        } else {
            self.spec.job.name.clone()
        }
    }

    /// The stem of the flow's checkpoint and cursor files.
    pub fn state_name(&self) -> String {
        if self.spec.multi_flow {
            format!("{}.{}", self.spec.job.name, self.flow.name)
        } else {
            self.spec.job.name.clone()
        }
    }

    fn check(&self) -> Result<(), SpecError> {
        let f = self.flow;
        if f.name.trim().is_empty() {
            return Err(self.error("name", "must not be empty"));
        }
        if !f
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.error(
                "name",
                format!(
                    "`{}`: a flow name may only hold letters, digits, `_` and `-`",
                    f.name
                ),
            ));
        }
        if f.parallelism == 0 {
            return Err(self.error("parallelism", "must be at least 1"));
        }
        mode::check(self)?;
        if f.source.partition_num == Some(0) {
            return Err(self.error("source.partition_num", "must be at least 1"));
        }
        if let Some(key) = &f.source.partition_column {
            let cols = key.columns();
            if cols.is_empty() {
                return Err(self.error("source.partition_column", "names no column"));
            }
            if let Some(dup) = cols
                .iter()
                .enumerate()
                .find(|(i, c)| cols[..*i].contains(c))
            {
                return Err(self.error(
                    "source.partition_column",
                    format!("names `{}` twice", dup.1),
                ));
            }
        }
        if f.source.partition_column.is_none() {
            let stray = [
                (
                    "partition_lower_bound",
                    f.source.partition_lower_bound.is_some(),
                ),
                (
                    "partition_upper_bound",
                    f.source.partition_upper_bound.is_some(),
                ),
                ("partition_num", f.source.partition_num.is_some()),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(self.error(
                    &format!("source.{key}"),
                    "has no effect without source.partition_column",
                ));
            }
        }
        if f.sink.parallelism == 0 {
            return Err(self.error("sink.parallelism", "must be at least 1"));
        }
        if f.sink.max_batch_size == 0 {
            return Err(self.error("sink.max_batch_size", "must be at least 1"));
        }
        if f.sink.max_batch_bytes == Some(0) {
            return Err(self.error("sink.max_batch_bytes", "must be at least 1"));
        }
        if let Some((key, why)) = f.sink.endpoints.as_ref().and_then(|e| e.problem()) {
            return Err(self.error(&format!("sink.endpoints.{key}"), why));
        }
        if f.sink.batch_timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(self.error("sink.batch_timeout", "must be longer than 0"));
        }
        if let Some(v) = &f.verify {
            verify::check(self, v)?;
        }
        for (i, t) in f.transforms.iter().enumerate() {
            if t.deadline.0.is_zero() {
                return Err(self.error(
                    &format!("transforms[{i}].deadline"),
                    "must be longer than 0",
                ));
            }
            if t.memory_mib == 0 {
                return Err(
                    self.error(&format!("transforms[{i}].memory_mib"), "must be at least 1")
                );
            }
            if f.transforms[..i].iter().any(|u| u.name == t.name) {
                return Err(self.error(
                    &format!("transforms[{i}].name"),
                    format!("transform `{}` is already in this flow", t.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_stable_and_sensitive() {
        assert_eq!(super::hash(b""), "cbf29ce484222325");
        assert_ne!(super::hash(b"name: a"), super::hash(b"name: b"));
    }

    fn identity_of(text: &str, vars: &[(&str, &str)]) -> String {
        let dir = std::env::temp_dir().join(format!("etlhost-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("job.yaml");
        std::fs::write(&path, text).unwrap();
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        let spec = super::Spec::load_with_env(&path, &env).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        spec.hash
    }

    const JOB: &str = "name: job
source:
  plugin: mysql
  options: {url: \"mysql://etl:${PW}@127.0.0.1/test\", password: \"${PW}\", table: \"${TABLE:-person}\"}
sink: {plugin: console, options: {}}
";

    #[test]
    fn the_identity_is_of_the_expanded_spec_without_its_secrets() {
        let base = identity_of(JOB, &[("PW", "a")]);
        // Another value from the environment is another job...
        assert_ne!(base, identity_of(JOB, &[("PW", "a"), ("TABLE", "other")]));
        // ...the same value spelt out in the file is the same one, comments and layout aside...
        let spelt = JOB.replace("${TABLE:-person}", "person") + "# a comment\n";
        assert_eq!(base, identity_of(&spelt, &[("PW", "a")]));
        // ...and a rotated password, in its key or inside the URL, changes nothing.
        assert_eq!(base, identity_of(JOB, &[("PW", "rotated")]));
    }
}
