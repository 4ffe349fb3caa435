//! `etlhost init OUTPUT`: reads the source's catalog through its plugin and writes a spec for it
//! (the mapping itself is [`crate::init`]), then checks that the written spec loads.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::flags::InitArgs;
use super::{EXIT_CONFIG, EXIT_INTERNAL, EXIT_RUN};
use crate::job::Job;
use crate::plugin::{self, Kind, SourceHandle};
use crate::spec::{Format, Spec};

pub fn run(args: Box<InitArgs>) -> ExitCode {
    match init(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Options from the command line's `(key, value)` pairs, the absent ones left out.
fn options(pairs: &[(&str, Option<&String>)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::String((*v)?.clone()))))
        .collect()
}

fn init(a: &InitArgs) -> Result<(), (u8, String)> {
    let config = |m: String| (EXIT_CONFIG, m);
    let out = a.output.display().to_string();
    let format = Format::from_path(&a.output).ok_or_else(|| {
        config(format!(
            "{out}: the file name must end in .yaml, .yml or .toml"
        ))
    })?;
    let diagram = crate::init::diagram::path_for(&a.output);
    for path in [&a.output, &diagram] {
        if path.exists() && !a.force {
            let p = path.display();
            return Err(config(format!("{p} exists; use --force to replace it")));
        }
    }
    let source_options = options(&[
        ("url", Some(&a.source_url)),
        ("user", a.source_user.as_ref()),
        ("password", a.source_password.as_ref()),
    ]);
    let sink_options = options(&[
        ("uri", Some(&a.sink_uri)),
        ("user", a.sink_user.as_ref()),
        ("password", a.sink_password.as_ref()),
        ("database", a.sink_database.as_ref()),
    ]);
    // Connect with `${VAR}` expanded; the spec keeps the references.
    let mut connect = Map::new();
    for (k, v) in &source_options {
        let text = v.as_str().unwrap_or_default();
        let expanded = crate::spec::env::expand(text, &|n| std::env::var(n).ok())
            .map_err(|e| config(format!("--source-{k}: {e}")))?;
        connect.insert(k.clone(), Value::String(expanded));
    }
    // A source instance needs something to read; the catalog is read beside it.
    connect.insert("query".into(), Value::String("SELECT 1".into()));
    let source_plugin = a
        .source_plugin
        .clone()
        .unwrap_or_else(|| plugin_of_url(&a.source_url).to_owned());
    let p = plugin::load_as(&source_plugin, Path::new("."), Kind::Source, "source")
        .map_err(|m| config(format!("--source-plugin: {m}")))?;
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
    let req = crate::init::Request {
        name,
        source_plugin,
        source_options,
        sink_plugin: a.sink_plugin.clone(),
        sink_options,
        parallelism: a.parallelism.max(1),
        tables: a.tables.clone(),
        exclude: a.exclude.clone(),
        format,
        stream: a.mode == "stream",
        dialect: crate::init::Dialect::of_plugin(&p.name),
        origin: format!(
            "{} source {}",
            p.name,
            etlhost_plugin_sdk::redact::redact_secrets(&a.source_url, &[])
        ),
    };
    let g = crate::init::generate(&catalog, &req).map_err(config)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| (EXIT_RUN, format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&a.output, &g.text)
        .map_err(|e| (EXIT_RUN, format!("cannot write {out}: {e}")))?;
    std::fs::write(&diagram, &g.diagram)
        .map_err(|e| (EXIT_RUN, format!("cannot write {}: {e}", diagram.display())))?;
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
    println!(
        "wrote {}: the graph model as a Mermaid diagram",
        diagram.display()
    );
    Ok(())
}

/// The source plugin a URL's scheme names, so that `init --source-url postgres://...` needs no
/// `--source-plugin`.
fn plugin_of_url(url: &str) -> &'static str {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") {
        "postgres"
    } else {
        "mysql"
    }
}

#[cfg(test)]
mod tests {
    use super::plugin_of_url;

    #[test]
    fn the_url_scheme_chooses_the_source_plugin() {
        assert_eq!(plugin_of_url("postgres://h:5432/db"), "postgres");
        assert_eq!(plugin_of_url("PostgreSQL://h/db"), "postgres");
        assert_eq!(plugin_of_url("mysql://h:3306/db"), "mysql");
        assert_eq!(plugin_of_url("h:3306"), "mysql");
    }
}
