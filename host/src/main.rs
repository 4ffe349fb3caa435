use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use etlhost::job::Job;
use etlhost::pipeline::{describe_split, Control, RunError, StopReason};
use etlhost::plan;
use etlhost::plugin::{self, SourceHandle};
use etlhost::report;
use etlhost::run::{self, RunOptions};
use etlhost::spec::Spec;

/// Declarative data movement: source and sink plugins, wired by a job spec.
#[derive(Parser)]
#[command(name = "etlhost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job spec (.yaml, .yml or .toml).
    Run {
        spec: PathBuf,
        /// Also write the final statistics to this file as JSON.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Start over: discard the job's checkpoint instead of resuming from it.
        #[arg(long)]
        fresh: bool,
        /// Incremental flows read every row instead of starting at their stored cursor (which is
        /// then stored anew).
        #[arg(long)]
        full: bool,
        /// No progress bars or progress blocks (logs still follow RUST_LOG).
        #[arg(long)]
        quiet: bool,
    },
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
}

#[derive(clap::Args)]
struct InitArgs {
    /// The spec to write; .yaml, .yml or .toml decides the format.
    output: PathBuf,
    /// The source database, e.g. mysql://127.0.0.1:3306/shop.
    #[arg(long)]
    source_url: String,
    #[arg(long)]
    source_user: Option<String>,
    #[arg(long)]
    source_password: Option<String>,
    #[arg(long, default_value = "mysql")]
    source_plugin: String,
    /// The graph database, e.g. bolt://127.0.0.1:7687.
    #[arg(long)]
    sink_uri: String,
    #[arg(long)]
    sink_user: Option<String>,
    #[arg(long)]
    sink_password: Option<String>,
    /// The graph database's name (Bolt `db`).
    #[arg(long)]
    sink_database: Option<String>,
    #[arg(long, default_value = "bolt")]
    sink_plugin: String,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Leave out these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// The job's name; default: the output file's name without extension.
    #[arg(long)]
    name: Option<String>,
    /// Readers per flow (and splits of a table with a numeric primary key).
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// Exit codes, documented in README.
const EXIT_CONFIG: u8 = 2;
const EXIT_RUN: u8 = 3;
const EXIT_FAILED_ROWS: u8 = 4;
const EXIT_INTERRUPTED: u8 = 130;
const EXIT_INTERNAL: u8 = 70;

/// Loads a spec and its plugins; a failure is reported and becomes the config-error exit code.
fn load_job(spec: &Path) -> Result<Job, ExitCode> {
    Spec::load(spec).and_then(Job::prepare).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// `validate` without `--offline`: each sink connects and checks its options online.
fn check_sinks(job: &Job) -> Result<(), ExitCode> {
    use etlhost::check::CheckError;
    match etlhost::check::check_sinks(job) {
        Ok(unchecked) => {
            for flow in unchecked {
                tracing::info!(flow = %flow, "the sink plugin has no online check: validated offline only");
            }
            Ok(())
        }
        Err(CheckError::Config(e)) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
        Err(CheckError::Failed(m)) => {
            eprintln!("error: {m}");
            Err(ExitCode::from(EXIT_RUN))
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(report::LogWriter::new)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { spec, offline } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            if !offline {
                if let Err(code) = check_sinks(&job) {
                    return code;
                }
            }
            let flows: Vec<String> = job
                .spec
                .flows_in_order()
                .map(|f| {
                    let p = &job.plugins[f.index];
                    let route = format!(
                        "{} {} -> {} {}",
                        p.source.name, p.source.version, p.sink.name, p.sink.version
                    );
                    if job.spec.multi_flow {
                        format!("flow '{}': {route}", f.flow.name)
                    } else {
                        route
                    }
                })
                .collect();
            println!(
                "{}: ok (job '{}': {})",
                spec.display(),
                job.spec.job.name,
                flows.join("; ")
            );
            ExitCode::SUCCESS
        }
        Command::Run {
            spec,
            summary_json,
            fresh,
            full,
            quiet,
        } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let report_mode = if quiet {
                report::Mode::Quiet
            } else if std::io::stderr().is_terminal() {
                report::Mode::Bars
            } else {
                report::Mode::Text(job.spec.job.progress_interval.0)
            };
            let control = Arc::new(Control::default());
            let on_signal = control.clone();
            // The first Ctrl-C (or SIGTERM) stops reading and lets every row already read be
            // written; a second one exits at once.
            let _ = ctrlc::set_handler(move || {
                if on_signal.reason() == StopReason::Interrupted {
                    eprintln!("interrupted again: exiting without waiting");
                    std::process::exit(EXIT_INTERRUPTED as i32);
                }
                eprintln!("interrupted: finishing the rows already read (Ctrl-C again to abort)");
                on_signal.stop(StopReason::Interrupted);
            });
            let opts = RunOptions {
                fresh,
                full,
                report: report_mode,
            };
            let (summary, code) = match run::run(&job, control.clone(), &opts) {
                Ok(s) => (Some(s), ExitCode::SUCCESS),
                Err(RunError::Config(e)) => {
                    eprintln!("error: {e}");
                    (None, ExitCode::from(EXIT_CONFIG))
                }
                Err(RunError::Start(m)) => {
                    eprintln!("error: {m}");
                    (None, ExitCode::from(EXIT_RUN))
                }
                Err(RunError::Failed(s)) => {
                    let code = match control.reason() {
                        StopReason::Interrupted => EXIT_INTERRUPTED,
                        StopReason::TooManyFailedRows => EXIT_FAILED_ROWS,
                        _ => EXIT_RUN,
                    };
                    eprintln!(
                        "error: job {}: {}",
                        s.status,
                        s.error.as_deref().unwrap_or("unknown error")
                    );
                    (Some(*s), ExitCode::from(code))
                }
                Err(e @ RunError::Internal(_)) => {
                    eprintln!("error: {e}");
                    let RunError::Internal(s) = e else {
                        unreachable!()
                    };
                    (Some(*s), ExitCode::from(EXIT_INTERNAL))
                }
            };
            if let Some(s) = &summary {
                eprintln!("{s}");
                if let Some(path) = summary_json {
                    let json = serde_json::to_string_pretty(s).expect("summaries serialise");
                    if let Err(e) = std::fs::write(&path, json + "\n") {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        return ExitCode::from(EXIT_RUN);
                    }
                }
            }
            code
        }
        Command::Plan { spec } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            for flow in job.spec.flows_in_order() {
                if job.spec.multi_flow {
                    println!("flow {}:", flow.flow.name);
                }
                let plugin = job.plugins[flow.index].source.clone();
                let source = match SourceHandle::open(plugin, &flow.flow.source.options) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: cannot start source: {e}");
                        return ExitCode::from(EXIT_RUN);
                    }
                };
                let planned = run::cursor_range(flow, &source, false).and_then(|cursor| {
                    plan::plan(flow, &source, cursor.as_ref()).map_err(RunError::Config)
                });
                match planned {
                    Ok(splits) => {
                        println!("{:>5}  {:>14}  RANGE", "SPLIT", "EST. ROWS");
                        for p in splits {
                            println!(
                                "{:>5}  {:>14}  {}",
                                p.split.id,
                                p.estimated_rows,
                                describe_split(&p.split)
                            );
                        }
                    }
                    Err(e @ RunError::Config(_)) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_RUN);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Init(args) => match init(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, message)) => {
                eprintln!("error: {message}");
                ExitCode::from(code)
            }
        },
        Command::Plugins => {
            println!(
                "{:<12} {:<7} {:<9} {:<4} PATH",
                "NAME", "KIND", "VERSION", "ABI"
            );
            for p in plugin::discover() {
                match p {
                    Ok(p) => println!(
                        "{:<12} {:<7} {:<9} {:<4} {}",
                        p.name,
                        p.kind.to_string(),
                        p.version,
                        etlhost_plugin_sdk::abi::ABI_VERSION,
                        p.path.display()
                    ),
                    Err(e) => println!("error: {e}"),
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// `etlhost init`: reads the source's catalog through its plugin and writes a spec for it.
fn init(a: Box<InitArgs>) -> Result<(), (u8, String)> {
    use serde_json::{Map, Value};
    let config = |m: String| (EXIT_CONFIG, m);
    let out = a.output.display().to_string();
    let format = match a.output.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => etlhost::spec::Format::Yaml,
        Some("toml") => etlhost::spec::Format::Toml,
        _ => {
            return Err(config(format!(
                "{out}: the file name must end in .yaml, .yml or .toml"
            )))
        }
    };
    if a.output.exists() && !a.force {
        return Err(config(format!("{out} exists; use --force to replace it")));
    }
    let options = |pairs: &[(&str, &Option<String>)]| {
        let mut m = Map::new();
        for (k, v) in pairs {
            if let Some(v) = v {
                m.insert(k.to_string(), Value::String(v.clone()));
            }
        }
        m
    };
    let source_options = options(&[
        ("url", &Some(a.source_url.clone())),
        ("user", &a.source_user),
        ("password", &a.source_password),
    ]);
    let sink_options = options(&[
        ("uri", &Some(a.sink_uri.clone())),
        ("user", &a.sink_user),
        ("password", &a.sink_password),
        ("database", &a.sink_database),
    ]);
    // Connect with `${VAR}` expanded; the spec keeps the references.
    let mut connect = Map::new();
    for (k, v) in &source_options {
        let text = v.as_str().unwrap_or_default();
        let expanded = etlhost::spec::env::expand(text, &|n| std::env::var(n).ok())
            .map_err(|e| config(format!("--source-{k}: {e}")))?;
        connect.insert(k.clone(), Value::String(expanded));
    }
    // A source instance needs something to read; the catalog is read beside it.
    connect.insert("query".into(), Value::String("SELECT 1".into()));
    let path = plugin::resolve(&a.source_plugin, Path::new("."))
        .map_err(|e| config(format!("--source-plugin: {}", e.0)))?;
    let p = plugin::load(&path).map_err(|e| config(format!("--source-plugin: {}", e.0)))?;
    if p.kind != plugin::Kind::Source {
        return Err(config(format!(
            "--source-plugin: plugin '{}' ({}) is a {}, not a source",
            p.name,
            path.display(),
            p.kind
        )));
    }
    let source = SourceHandle::open(p.clone(), &connect)
        .map_err(|e| (EXIT_RUN, format!("cannot start source: {e}")))?;
    let catalog = source
        .describe()
        .map_err(|e| (EXIT_RUN, format!("cannot read the source's tables: {e}")))?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into())
    });
    let req = etlhost::init::Request {
        name,
        source_plugin: a.source_plugin.clone(),
        source_options,
        sink_plugin: a.sink_plugin.clone(),
        sink_options,
        parallelism: a.parallelism.max(1),
        tables: a.tables.clone(),
        exclude: a.exclude.clone(),
        format,
        origin: format!(
            "{} source {}",
            p.name,
            etlhost_plugin_sdk::redact::redact_secrets(&a.source_url, &[])
        ),
    };
    let g = etlhost::init::generate(&catalog, &req).map_err(config)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| (EXIT_RUN, format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&a.output, &g.text)
        .map_err(|e| (EXIT_RUN, format!("cannot write {out}: {e}")))?;
    for n in &g.notes {
        eprintln!("note: {n}");
    }
    // What was written must load: a generator bug is reported here, not at the first run.
    Spec::load(&a.output).and_then(Job::prepare).map_err(|e| {
        (
            EXIT_INTERNAL,
            format!("the generated spec does not load: {e}"),
        )
    })?;
    println!(
        "wrote {out}: {} node flows, {} relationship flows from foreign keys, {} from join tables",
        g.nodes, g.relationships, g.join_tables
    );
    Ok(())
}
