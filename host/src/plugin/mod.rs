//! Loading connector plugins (shared libraries) and calling them through the C ABI.
//!
//! Libraries are never unloaded: `dlclose` of a Rust library with thread-local destructors can
//! crash the process, and a plugin's threads may outlive its last handle. Each is leaked once.

mod handles;
mod progress;
mod query;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use etlhost_plugin_sdk::abi::{self, OwnedBuf, PluginDescriptor, StrRef};

pub use handles::{PluginError, ReaderHandle, SinkHandle, SourceHandle};
pub use query::QueryHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Source,
    Sink,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Source => "source",
            Kind::Sink => "sink",
        })
    }
}

/// A loaded plugin library.
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub sdk_version: String,
    pub kind: Kind,
    pub path: PathBuf,
    desc: &'static PluginDescriptor,
    /// A sink's optional online check ([`abi::SINK_CHECK_SYMBOL`]).
    check: Option<abi::SinkCheckFn>,
    /// A sink's optional read capability (`etlhost verify`), see [`query`].
    query: Option<&'static etlhost_plugin_sdk::query::SinkQueryVTable>,
    /// A sink's optional progress capability (progress in the target, shards), see [`progress`].
    progress: Option<&'static etlhost_plugin_sdk::progress::SinkProgressVTable>,
    /// A sink's optional stream capability (a stream's position and lease in the target), see
    /// [`stream`].
    stream: Option<&'static etlhost_plugin_sdk::stream_state::SinkStreamVTable>,
    /// A sink's optional change writing ([`abi::SINK_CHECK_CHANGES_SYMBOL`], `mode: stream`).
    pub(crate) changes: Option<(abi::SinkCheckFn, abi::SinkWriteChangesFn)>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .finish()
    }
}

impl Plugin {
    /// Checks options without connecting anywhere.
    pub fn validate(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), PluginError> {
        let json = handles::options_json(options);
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: the descriptor passed the ABI check; the buffers are valid for the call.
        let status = unsafe { (self.desc.validate)(StrRef::new(&json), &mut err) };
        self.status(status, err)
    }

    /// A sink's online check (connects, writes nothing): `Ok(false)` when the plugin has none.
    pub fn check_sink(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, PluginError> {
        self.run_check(self.check, options)
    }

    /// Whether a sink can write changes with these options: `Ok(false)` when it cannot at all.
    pub fn check_changes(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, PluginError> {
        self.run_check(self.changes.map(|(check, _)| check), options)
    }

    /// Runs one of a sink's optional checks: `Ok(false)` when the plugin has none or it checked
    /// nothing.
    fn run_check(
        &self,
        check: Option<abi::SinkCheckFn>,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, PluginError> {
        let Some(check) = check.filter(|_| self.kind == Kind::Sink) else {
            return Ok(false);
        };
        let json = handles::options_json(options);
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: the symbol has the SinkCheckFn type; the buffers are valid for the call.
        let status = unsafe { check(StrRef::new(&json), &mut err) };
        if status == abi::STATUS_NOT_CHECKED {
            drop(self.take(err));
            return Ok(false);
        }
        self.status(status, err).map(|()| true)
    }

    /// Frees a buffer the plugin filled without reading it.
    fn free(&self, buf: OwnedBuf) {
        // SAFETY: the plugin filled `buf` in the call that just returned; it is freed once, here.
        unsafe { (self.desc.free_buf)(buf) }
    }

    /// Copies out and releases a buffer the plugin filled.
    fn take(&self, buf: OwnedBuf) -> Vec<u8> {
        // SAFETY: the plugin filled `buf` in the call that just returned; it is freed once, here.
        unsafe {
            let bytes = buf.as_bytes().to_vec();
            (self.desc.free_buf)(buf);
            bytes
        }
    }

    /// Maps a call's status and error buffer to a result.
    fn status(&self, status: u32, err: OwnedBuf) -> Result<(), PluginError> {
        self.output(status, err).map(drop)
    }

    /// A call's output buffer on success; otherwise the buffer is the error text.
    fn output(&self, status: u32, buf: OwnedBuf) -> Result<Vec<u8>, PluginError> {
        let bytes = self.take(buf);
        if status == abi::STATUS_OK {
            return Ok(bytes);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Err(PluginError::from_status(&self.name, status, text))
    }

    /// The plugin answered with something the host cannot read: a bug on one side, never retried.
    fn malformed(&self, message: String) -> PluginError {
        PluginError::Failed {
            plugin: self.name.clone(),
            retryable: false,
            message,
        }
    }
}

/// An optional table of functions that starts with its layout's version and size (`u32` each): the
/// table, when both are the ones the host was built with.
///
/// # Safety
/// `table` is null or points at a static table of type `T` in some version, which starts with
/// the two `u32`s.
unsafe fn versioned_table<T>(
    table: *const T,
    version: u32,
    file: &str,
    what: &str,
) -> Option<&'static T> {
    if table.is_null() {
        return None;
    }
    // Only version and size may be read before they are known to match.
    // SAFETY: every version of the table starts with these two u32 fields.
    let (found, size) = unsafe {
        let head = table as *const u32;
        (head.read(), head.add(1).read())
    };
    if found != version || size as usize != std::mem::size_of::<T>() {
        tracing::warn!(
            "{file}: the plugin's {what} is version {found} ({size} bytes); the host reads version {version}: it is not used"
        );
        return None;
    }
    // SAFETY: version and size match: the table has this layout and is a static.
    Some(unsafe { &*table })
}

/// Why a plugin could not be loaded. Every message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Where plugins named without a path are looked for: `ETLHOST_PLUGIN_PATH` (colon-separated), then
/// the directory of the etlhost executable and its `plugins/` subdirectory.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("ETLHOST_PLUGIN_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
        dirs.push(exe_dir);
    }
    dirs
}

/// The file names a plugin called `name` may have.
fn file_names(name: &str) -> Vec<String> {
    let under = name.replace('-', "_");
    let ext = std::env::consts::DLL_EXTENSION;
    vec![
        format!("libetlhost_{under}.{ext}"),
        format!("lib{under}.{ext}"),
    ]
}

/// Finds a plugin by name on the search path, or by path (relative to `base`) when it contains a
/// path separator or ends in the platform's library extension.
pub fn resolve(plugin: &str, base: &Path) -> Result<PathBuf, LoadError> {
    let is_path =
        plugin.contains('/') || plugin.ends_with(&format!(".{}", std::env::consts::DLL_EXTENSION));
    if is_path {
        let p = base.join(plugin);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LoadError(format!("plugin file {} not found", p.display())))
        };
    }
    let dirs = search_path();
    for d in &dirs {
        for f in file_names(plugin) {
            let p = d.join(&f);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(LoadError(format!(
        "plugin '{plugin}' not found: no {} in {} (set ETLHOST_PLUGIN_PATH or give a path)",
        file_names(plugin).join(" or "),
        looked.join(", ")
    )))
}

/// Loads (once per process) the library at `path` and checks its descriptor.
/// Resolves plugin `name` (as [`resolve`] does, from `base`), loads it and checks that it is a
/// `kind`, which `role` ("source", "sink") needs. `Err` is the message.
pub fn load_as(name: &str, base: &Path, kind: Kind, role: &str) -> Result<Arc<Plugin>, String> {
    let path = resolve(name, base).map_err(|e| e.0)?;
    let p = load(&path).map_err(|e| e.0)?;
    if p.kind != kind {
        return Err(format!(
            "plugin '{}' ({}) is a {}, but {role} needs a {kind}",
            p.name,
            path.display(),
            p.kind
        ));
    }
    Ok(p)
}

pub fn load(path: &Path) -> Result<Arc<Plugin>, LoadError> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> = OnceLock::new();
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .expect("plugin table poisoned");
    if let Some(p) = loaded.get(&canonical) {
        return Ok(p.clone());
    }
    let plugin = Arc::new(load_uncached(path)?);
    loaded.insert(canonical, plugin.clone());
    Ok(plugin)
}

fn load_uncached(path: &Path) -> Result<Plugin, LoadError> {
    let file = path.display();
    if !path.is_file() {
        return Err(LoadError(format!("plugin file {file} not found")));
    }
    // SAFETY: loading a library runs its initialisers; that is the trust a user gives a plugin by
    // naming it in a spec.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError(format!("{file} is not a loadable shared library: {e}")))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    type Entry = unsafe extern "C" fn() -> *const PluginDescriptor;
    // SAFETY: the symbol's type is the one the ABI defines for it.
    let entry = unsafe { lib.get::<Entry>(abi::ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
        LoadError(format!(
            "{file} is not an etlhost plugin: it exports no `{}` symbol",
            abi::ENTRY_SYMBOL
        ))
    })?;
    // SAFETY: calling the entry point the ABI defines; it returns a pointer to a static.
    let desc = unsafe { entry() };
    if desc.is_null() {
        return Err(LoadError(format!(
            "{file}: the plugin's entry point returned no descriptor"
        )));
    }
    // Only the first two fields may be read before the version and size are known to match.
    // SAFETY: every ABI version starts with these two u32 fields.
    let (version, size) = unsafe {
        let head = desc as *const u32;
        (head.read(), head.add(1).read())
    };
    if version != abi::ABI_VERSION {
        return Err(LoadError(format!(
            "{file}: plugin ABI version {version} does not match the host's ABI version {}; rebuild the plugin \
             against an etlhost-plugin-sdk with ABI version {}",
            abi::ABI_VERSION,
            abi::ABI_VERSION
        )));
    }
    if size as usize != std::mem::size_of::<PluginDescriptor>() {
        return Err(LoadError(format!(
            "{file}: plugin descriptor is {size} bytes, the host expects {} for ABI version {version}",
            std::mem::size_of::<PluginDescriptor>()
        )));
    }
    // SAFETY: version and size match: the descriptor has this layout and is a static.
    let desc: &'static PluginDescriptor = unsafe { &*desc };
    // SAFETY: the descriptor's strings point at the plugin's statics.
    let text = |s: StrRef| String::from_utf8_lossy(unsafe { s.as_bytes() }).into_owned();
    let kind = match desc.kind {
        abi::KIND_SOURCE if !desc.source.is_null() => Kind::Source,
        abi::KIND_SINK if !desc.sink.is_null() => Kind::Sink,
        k => {
            return Err(LoadError(format!(
                "{file}: unknown plugin kind {k} or missing vtable"
            )))
        }
    };
    // SAFETY: the optional symbol's type is the one the ABI defines for it.
    let check = unsafe { lib.get::<abi::SinkCheckFn>(abi::SINK_CHECK_SYMBOL.as_bytes()) }
        .ok()
        .map(|f| *f);
    let query = query::lookup(lib, &file.to_string());
    let progress = progress::lookup(lib, &file.to_string());
    let stream = stream::lookup(lib, &file.to_string());
    // SAFETY: the optional symbols' types are the ones the ABI defines for them.
    let changes = unsafe {
        let check = lib.get::<abi::SinkCheckFn>(abi::SINK_CHECK_CHANGES_SYMBOL.as_bytes());
        let write = lib.get::<abi::SinkWriteChangesFn>(abi::SINK_WRITE_CHANGES_SYMBOL.as_bytes());
        check.ok().map(|c| *c).zip(write.ok().map(|w| *w))
    };
    // SAFETY: `host_log` has the LogFn signature and lives as long as the process.
    unsafe { (desc.set_log)(host_log, max_log_level()) };
    Ok(Plugin {
        name: text(desc.name),
        version: text(desc.version),
        sdk_version: text(desc.sdk_version),
        kind,
        path: path.to_path_buf(),
        desc,
        check,
        query,
        progress,
        stream,
        changes,
    })
}

fn max_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => abi::LOG_ERROR,
        LevelFilter::WARN => abi::LOG_WARN,
        LevelFilter::INFO => abi::LOG_INFO,
        LevelFilter::DEBUG => abi::LOG_DEBUG,
        _ => abi::LOG_TRACE,
    }
}

/// Log lines from plugins, re-emitted through the host's tracing under target `plugin`, with the
/// plugin's name (the SDK passes it as the target).
unsafe extern "C" fn host_log(level: u32, target: StrRef, message: StrRef) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the plugin passes strings valid for this call.
        let (target, message) = unsafe { (target.as_bytes(), message.as_bytes()) };
        let plugin = String::from_utf8_lossy(target);
        let message = etlhost_plugin_sdk::redact::redact_urls(&String::from_utf8_lossy(message));
        match level {
            abi::LOG_ERROR => tracing::error!(target: "plugin", %plugin, "{message}"),
            abi::LOG_WARN => tracing::warn!(target: "plugin", %plugin, "{message}"),
            abi::LOG_INFO => tracing::info!(target: "plugin", %plugin, "{message}"),
            abi::LOG_DEBUG => tracing::debug!(target: "plugin", %plugin, "{message}"),
            _ => tracing::trace!(target: "plugin", %plugin, "{message}"),
        }
    });
}

/// Every plugin on the search path, with the errors of files that failed to load.
pub fn discover() -> Vec<Result<Arc<Plugin>, LoadError>> {
    let ext = format!(".{}", std::env::consts::DLL_EXTENSION);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for dir in search_path() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libetlhost_") && n.ends_with(&ext))
            })
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().map(|n| n.to_owned());
            if seen.insert(name) {
                out.push(load(&f));
            }
        }
    }
    out
}
