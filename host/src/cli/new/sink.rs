//! `etlhost new sink NAME`: a sink plugin crate (a CSV writer that keeps the sink contract), a job
//! spec that runs it from MySQL and a README with the commands, in a folder of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::super::EXIT_CONFIG;

const CARGO_TOML: &str = include_str!("templates/sink/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("templates/sink/lib.rs.tmpl");
const JOB_YAML: &str = include_str!("templates/sink/job.yaml.tmpl");
const README: &str = include_str!("templates/sink/README.md.tmpl");
const GITIGNORE: &str = include_str!("templates/sink/gitignore.tmpl");

/// The SDK of the source tree this binary was built from: the SDK is not on crates.io.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");

pub fn run(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> ExitCode {
    match create(name, dir, sdk) {
        Ok(dir) => {
            let dir = dir.display();
            println!(
                "wrote sink plugin `{name}` in {dir}; to build and run it (see its README.md):"
            );
            println!(
                "  cd {dir}\n  cargo build --release\n  etlhost run job.yaml\n  cat {name}.csv"
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn create(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<PathBuf, String> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    check_free(&dir)?;
    let sdk = sdk_dir(sdk)?;
    let files = files(name, &sdk)?;
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, text) in files {
        let path = dir.join(file);
        // `create_new`: a file that appeared since the check is not overwritten either.
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(dir)
}

/// The name is the plugin's (`sink.plugin: NAME`, `libetlhost_NAME.so` on the search path) and
/// the crate's (`etlhost-NAME`), so it must be valid as both.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with(['-', '_'])
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid sink name: use lowercase ASCII letters, digits, `-` and `_`, \
             starting with a letter and not ending in `-` or `_`, at most 64 characters \
             (it names the plugin in job specs and the crate etlhost-NAME)"
        ))
    }
}

/// Refuses a folder that holds anything, and a path that is not a folder.
fn check_free(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "{shown} exists and is not empty; choose another folder with --dir, or remove it"
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => {
            Err(format!("{shown} exists and is not a folder"))
        }
        Err(e) => Err(format!("cannot read {shown}: {e}")),
    }
}

/// `--sdk`, or the SDK of the tree this binary was built from; canonical, since the project
/// names it by absolute path wherever it is put.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    let (path, hint) = match given {
        Some(p) => (p.to_path_buf(), "--sdk"),
        None => (
            PathBuf::from(BUILT_FROM_SDK),
            "this etlhost was built from it; pass --sdk PATH, PATH being plugins/sdk in a copy of \
             the etlhost source tree of this version",
        ),
    };
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"etlhost-plugin-sdk\"") {
        return Err(format!(
            "the plugin SDK (crate etlhost-plugin-sdk) is not at {} ({hint})",
            path.display()
        ));
    }
    path.canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// The project's files, by path below its folder.
fn files(name: &str, sdk: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let sdk_text = sdk
        .to_str()
        .ok_or_else(|| format!("the SDK's path {} is not UTF-8", sdk.display()))?;
    let krate = format!("etlhost-{name}");
    let lib = format!(
        "{}{}.{}",
        std::env::consts::DLL_PREFIX,
        krate.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    );
    let fill = |template: &str| {
        template
            .replace("{{sdk}}", &toml_string(sdk_text))
            .replace("{{sdk_text}}", sdk_text)
            .replace("{{crate}}", &krate)
            .replace("{{lib}}", &lib)
            .replace("{{name}}", name)
    };
    Ok(vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("job.yaml", fill(JOB_YAML)),
        ("README.md", fill(README)),
        (".gitignore", fill(GITIGNORE)),
    ])
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("etlhost-new-sink-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_must_serve_as_plugin_and_crate_names() {
        for good in ["csvout", "csv-out", "csv_out2", "a"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "", "CsvOut", "2csv", "-csv", "csv-", "csv_", "csv out", "csv.out", "ß",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert_eq!(
            check_name("Csv").unwrap_err(),
            "`Csv` is not a valid sink name: use lowercase ASCII letters, digits, `-` and `_`, \
             starting with a letter and not ending in `-` or `_`, at most 64 characters \
             (it names the plugin in job specs and the crate etlhost-NAME)"
        );
    }

    #[test]
    fn only_a_missing_or_empty_folder_is_written_to() {
        let dir = scratch("free");
        assert_eq!(check_free(&dir), Ok(()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(check_free(&dir), Ok(()));
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        assert_eq!(
            check_free(&dir).unwrap_err(),
            format!(
                "{} exists and is not empty; choose another folder with --dir, or remove it",
                dir.display()
            )
        );
        let file = dir.join("keep.txt");
        assert_eq!(
            check_free(&file).unwrap_err(),
            format!("{} exists and is not a folder", file.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sdk_is_the_built_from_one_or_the_given_one() {
        let sdk = sdk_dir(None).unwrap();
        assert!(
            sdk.is_absolute() && sdk.ends_with("plugins/sdk"),
            "{}",
            sdk.display()
        );
        assert_eq!(sdk_dir(Some(&sdk)).unwrap(), sdk);
        let elsewhere = scratch("no-sdk");
        assert_eq!(
            sdk_dir(Some(&elsewhere)).unwrap_err(),
            format!(
                "the plugin SDK (crate etlhost-plugin-sdk) is not at {} (--sdk)",
                elsewhere.display()
            )
        );
    }

    #[test]
    fn the_project_names_its_sdk_library_and_plugin_consistently() {
        let sdk = Path::new("/opt/etl \"host\"/plugins/sdk");
        let files = files("csv-out", sdk).unwrap();
        let get = |name: &str| &files.iter().find(|(f, _)| *f == name).unwrap().1;
        for (file, text) in &files {
            assert!(!text.contains("{{"), "{file} keeps a placeholder");
        }
        let manifest: toml::Table = toml::from_str(get("Cargo.toml")).unwrap();
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some("etlhost-csv-out")
        );
        assert_eq!(
            manifest["lib"]["crate-type"].as_array().unwrap()[0].as_str(),
            Some("cdylib")
        );
        assert_eq!(
            manifest["dependencies"]["etlhost-plugin-sdk"]["path"].as_str(),
            Some("/opt/etl \"host\"/plugins/sdk")
        );
        assert!(manifest["workspace"].as_table().unwrap().is_empty());
        assert!(get("src/lib.rs").contains("export_sink!(CsvSink, name = \"csv-out\");"));
        let job: serde_yaml_ng::Value = serde_yaml_ng::from_str(get("job.yaml")).unwrap();
        assert_eq!(
            job["sink"]["plugin"].as_str(),
            Some("./target/release/libetlhost_csv_out.so")
        );
        assert_eq!(job["sink"]["options"]["path"].as_str(), Some("csv-out.csv"));
        assert_eq!(job["source"]["options"]["table"].as_str(), Some("person"));
    }

    #[test]
    fn the_job_spec_loads() {
        let dir = scratch("spec");
        std::fs::create_dir_all(&dir).unwrap();
        let files = files("csvout", Path::new("/sdk")).unwrap();
        let job = &files.iter().find(|(f, _)| *f == "job.yaml").unwrap().1;
        let path = dir.join("job.yaml");
        std::fs::write(&path, job).unwrap();
        let spec = crate::spec::Spec::load_with_env(&path, &|_| None);
        assert!(spec.is_ok(), "{:?}", spec.err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_project_is_never_overwritten() {
        let dir = scratch("twice");
        let sdk = sdk_dir(None).unwrap();
        assert_eq!(create("csvout", Some(&dir), Some(&sdk)), Ok(dir.clone()));
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "// mine").unwrap();
        assert!(create("csvout", Some(&dir), None).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
            "// mine"
        );
        assert!(lib.contains("export_sink!(CsvSink, name = \"csvout\");"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
