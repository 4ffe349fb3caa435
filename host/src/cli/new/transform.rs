//! `etlhost new transform --lang LANG NAME`: a transform project in Rust, Python or JavaScript
//! that builds into a WASM component and runs in a MySQL -> console job as written.
//!
//! What the component needs from this repository is embedded from the very files the repository
//! builds its own transforms from (the WIT, the Python and JS SDKs, the tool versions), so a
//! project written by this binary matches the host that reads its component. The Rust SDK is a
//! crate, not a file: the project depends on it by path, in the source tree this binary was built
//! from. The build commands live here only, and the README shows them, so the end-to-end test
//! that runs the README's commands tests what a user reads (`tests/e2e/transform_recipes.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::flags::Lang;

const WIT: &str = include_str!("../../../../wit/transform.wit");
const PY_SDK: &str = include_str!("../../../../plugins/transforms/python/etlhost_transform.py");
const PY_REQUIREMENTS: &str =
    include_str!("../../../../plugins/transforms/python/requirements.txt");
const JS_SDK: &str = include_str!("../../../../plugins/transforms/js/etlhost-transform.js");
const JS_PACKAGE: &str = include_str!("../../../../plugins/transforms/js/package.json");
const JS_LOCK: &str = include_str!("../../../../plugins/transforms/js/package-lock.json");

const README: &str = include_str!("templates/transform/README.md");
const JOB: &str = include_str!("templates/transform/job.yaml");
const RUST_CARGO: &str = include_str!("templates/transform/rust/Cargo.toml.tmpl");
const RUST_LIB: &str = include_str!("templates/transform/rust/lib.rs");
const RUST_ABOUT: &str = include_str!("templates/transform/rust/about.md");
const RUST_IGNORE: &str = include_str!("templates/transform/rust/gitignore");
const PY_TRANSFORM: &str = include_str!("templates/transform/python/transform.py");
const PY_ABOUT: &str = include_str!("templates/transform/python/about.md");
const PY_IGNORE: &str = include_str!("templates/transform/python/gitignore");
const JS_TRANSFORM: &str = include_str!("templates/transform/js/transform.js");
const JS_BUILD: &str = include_str!("templates/transform/js/build.mjs");
const JS_ABOUT: &str = include_str!("templates/transform/js/about.md");
const JS_IGNORE: &str = include_str!("templates/transform/js/gitignore");

/// The command that runs the project's job, from its folder.
pub const RUN: &str = "etlhost run job.yaml";

/// Names a transform must not have in any language: they are the SDKs' own (a Python module
/// `etlhost` + `_transform`, a crate or JS file `etlhost-transform`, would shadow the SDK).
const RESERVED: &[&str] = &["etlhost", "etlhost-transform", "etlhost_transform"];

/// A crate of this name cannot be compiled (a keyword), clashes with one every crate sees, or
/// with a dependency of the project.
const RUST_RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "serde_json",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

const MAX_NAME: usize = 64;

pub fn run(lang: Lang, name: &str, dir: Option<&Path>) -> ExitCode {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let project = match Project::new(lang, name, &sdk_dir()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Err(e) = project.write(&dir) {
        return fail(&e);
    }
    println!(
        "wrote the {} transform `{name}` into {} (its README.md says more):\n",
        language(lang),
        dir.display()
    );
    println!("  cd {}", dir.display());
    for line in project.install.iter().chain(&project.build) {
        println!("  {line}");
    }
    println!("  {RUN}");
    if lang == Lang::Rust && !sdk_dir().is_dir() {
        eprintln!(
            "warning: the transform SDK is not at {} (this etlhost was built from a source tree \
             that is no longer there): point `etlhost-transform` in {} at the \
             plugins/transforms/sdk folder of an etlhost checkout",
            sdk_dir().display(),
            dir.join("Cargo.toml").display()
        );
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(super::super::EXIT_CONFIG)
}

/// The Rust transform SDK in the source tree this binary was built from.
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in a workspace folder")
        .join("plugins/transforms/sdk")
}

fn language(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// A transform name: it names the job, the transform in the spec, the crate, the npm package
/// and the files, so it takes the characters all of them allow.
pub fn check_name(lang: Lang, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a transform name must not be empty".into());
    }
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "`{name}`: a transform name starts with a lower-case letter and holds only lower-case \
             letters, digits, `-` and `_` (it names the job, a crate or npm package, and files)"
        ));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "`{name}`: a transform name has at most {MAX_NAME} characters"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is the name of etlhost's transform SDK, which the project uses: choose \
             another name"
        ));
    }
    if lang == Lang::Rust && RUST_RESERVED.contains(&snake(name).as_str()) {
        return Err(format!(
            "`{name}` cannot name a Rust crate here (a Rust keyword, a built-in crate or a \
             dependency of the project): choose another name"
        ));
    }
    Ok(())
}

/// The name as an identifier (crate, Python module).
fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// The Python module of transform `name`. Never the name alone: componentize-py imports the
/// module by name, and a name the component already has (the bindings package `wit_world`, a
/// standard-library module such as `json` or `types`) gives it that module instead of the
/// transform, failing the build. Nothing a component holds ends in `_transform` but the SDK,
/// `etlhost_transform`, and `etlhost` is refused as a name.
pub fn python_module(name: &str) -> String {
    format!("{}_transform", snake(name))
}

/// Where a project's build writes its component, relative to the project folder.
pub fn component(lang: Lang, name: &str) -> String {
    match lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{}.wasm", snake(name)),
        Lang::Python | Lang::Js => format!("{name}.wasm"),
    }
}

/// `{{key}}` in `template` replaced by each value.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    debug_assert!(!out.contains("{{"), "a placeholder left in:\n{out}");
    out
}

/// The version of `componentize-py` etlhost's own Python transforms are built with.
fn componentize_py_version() -> &'static str {
    PY_REQUIREMENTS
        .lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .expect("plugins/transforms/python/requirements.txt pins componentize-py")
}

/// etlhost's JS package.json, parsed.
fn js_package() -> serde_json::Value {
    serde_json::from_str(JS_PACKAGE).expect("plugins/transforms/js/package.json is JSON")
}

fn componentize_js_version() -> String {
    js_package()["dependencies"]["@bytecodealliance/componentize-js"]
        .as_str()
        .expect("package.json depends on componentize-js")
        .to_string()
}

/// The project's package.json: etlhost's own dependencies, so both build with the same tools.
fn package_json(name: &str) -> String {
    let package = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "scripts": {"build": "node build.mjs"},
        "dependencies": js_package()["dependencies"],
    });
    serde_json::to_string_pretty(&package).unwrap() + "\n"
}

/// etlhost's package-lock.json with the project as its root package: the same tool versions,
/// resolved without asking the registry.
fn package_lock(name: &str) -> String {
    let mut lock: serde_json::Value =
        serde_json::from_str(JS_LOCK).expect("plugins/transforms/js/package-lock.json is JSON");
    lock["name"] = name.into();
    lock["packages"][""] = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "dependencies": js_package()["dependencies"],
    });
    serde_json::to_string_pretty(&lock).unwrap() + "\n"
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A transform project: its files and the commands that build it.
pub struct Project {
    /// Paths relative to the project folder, and their contents.
    pub files: Vec<(String, String)>,
    /// Run once, to install the build tools.
    pub install: Vec<String>,
    /// Build the component.
    pub build: Vec<String>,
}

/// What a language's project needs: the commands that install its tools and build it, what to
/// have first, the paragraph about it, and what its first run costs.
type Recipe = (Vec<String>, Vec<String>, String, &'static str, &'static str);

fn recipe(lang: Lang, module: &str, component: &str, py_version: &str, js_version: &str) -> Recipe {
    match lang {
        Lang::Rust => (
            vec!["rustup target add wasm32-wasip2".to_string()],
            vec!["cargo build --release --target wasm32-wasip2".to_string()],
            "Rust through rustup, and its target for WASM components, `wasm32-wasip2`:".to_string(),
            RUST_ABOUT,
            "under a second for a Rust component",
        ),
        Lang::Python => (
            vec![
                "python3 -m venv .venv".to_string(),
                ".venv/bin/pip install -r requirements.txt".to_string(),
            ],
            vec![format!(
                ".venv/bin/componentize-py --wit-path wit --world transform componentize \
                 --python-path src {module} -o {component}"
            )],
            format!(
                "Python 3 with `venv`, and componentize-py {py_version} from PyPI, into `.venv`:"
            ),
            PY_ABOUT,
            "a Python component holds a whole CPython: 10 to 30 s, and about 400 MiB of \
             memory at the peak",
        ),
        Lang::Js => (
            vec!["npm install".to_string()],
            vec!["npm run build".to_string()],
            format!(
                "Node.js 20 or later with npm, and componentize-js {js_version} from npm, into \
                 `node_modules`:"
            ),
            JS_ABOUT,
            "a JavaScript component holds a whole SpiderMonkey: 10 to 40 s, and about 400 MiB \
             of memory at the peak",
        ),
    }
}

impl Project {
    /// Transform `name` in `lang`; a Rust project depends on the SDK at `sdk`.
    pub fn new(lang: Lang, name: &str, sdk: &Path) -> Result<Project, String> {
        check_name(lang, name)?;
        let component = component(lang, name);
        let snake = snake(name);
        let module = python_module(name);
        let sdk = sdk.display().to_string();
        let py_version = componentize_py_version();
        let js_version = componentize_js_version();
        let (install, build, requirements, about, first_run) =
            recipe(lang, &module, &component, py_version, &js_version);
        let vars = [
            ("name", name),
            ("snake", snake.as_str()),
            ("module", module.as_str()),
            ("sdk", sdk.as_str()),
            ("component", component.as_str()),
            ("lang", lang_flag(lang)),
            ("language", language(lang)),
        ];
        let about = fill(about, &vars);
        let readme = fill(
            README,
            &[
                ("about", about.as_str()),
                ("requirements", requirements.as_str()),
                ("install", install.join("\n").as_str()),
                ("build", build.join("\n").as_str()),
                ("run", RUN),
                ("first_run", first_run),
                ("name", name),
                ("component", component.as_str()),
                ("lang", lang_flag(lang)),
                ("language", language(lang)),
            ],
        );
        let mut files = vec![
            ("README.md".to_string(), readme),
            ("job.yaml".to_string(), fill(JOB, &vars)),
        ];
        match lang {
            Lang::Rust => {
                let cargo = RUST_CARGO.replace("\"{{sdk}}\"", &toml_string(&sdk));
                files.extend([
                    ("Cargo.toml".to_string(), fill(&cargo, &vars)),
                    ("src/lib.rs".to_string(), fill(RUST_LIB, &vars)),
                    (".gitignore".to_string(), RUST_IGNORE.to_string()),
                ]);
            }
            Lang::Python => files.extend([
                (format!("src/{module}.py"), fill(PY_TRANSFORM, &vars)),
                ("src/etlhost_transform.py".to_string(), PY_SDK.to_string()),
                ("wit/transform.wit".to_string(), WIT.to_string()),
                (
                    "requirements.txt".to_string(),
                    format!(
                        "# The tool that builds the component; the version etlhost is tested with.\n\
                         componentize-py=={py_version}\n"
                    ),
                ),
                (".gitignore".to_string(), PY_IGNORE.to_string()),
            ]),
            Lang::Js => files.extend([
                (format!("src/{name}.js"), fill(JS_TRANSFORM, &vars)),
                ("src/etlhost-transform.js".to_string(), JS_SDK.to_string()),
                ("wit/transform.wit".to_string(), WIT.to_string()),
                ("build.mjs".to_string(), fill(JS_BUILD, &vars)),
                ("package.json".to_string(), package_json(name)),
                ("package-lock.json".to_string(), package_lock(name)),
                (".gitignore".to_string(), JS_IGNORE.to_string()),
            ]),
        }
        Ok(Project {
            files,
            install,
            build,
        })
    }

    /// Writes the files into `dir`, which must not exist or be empty.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{} exists and is not a folder", dir.display()));
        }
        if let Ok(mut entries) = std::fs::read_dir(dir) {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty: choose another folder with --dir, or remove it",
                    dir.display()
                ));
            }
        }
        for (path, text) in &self.files {
            let path = dir.join(path);
            let parent = path.parent().expect("a file in the project folder");
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            // Never over a file that appeared since the check above.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn lang_flag(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
        Lang::Js => "js",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    /// A fresh folder under the system's temporary one, named for the test.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "etlhost-new-transform-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn paths(p: &Project) -> Vec<&str> {
        let mut v: Vec<&str> = p.files.iter().map(|(f, _)| f.as_str()).collect();
        v.sort();
        v
    }

    fn file<'a>(p: &'a Project, path: &str) -> &'a str {
        &p.files
            .iter()
            .find(|(f, _)| f == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .1
    }

    #[test]
    fn names() {
        for lang in LANGS {
            for ok in [
                "upper",
                "upper-name",
                "upper_name2",
                "transform",
                "json",
                "a",
            ] {
                assert_eq!(check_name(lang, ok), Ok(()), "{ok}");
            }
            assert_eq!(
                check_name(lang, ""),
                Err("a transform name must not be empty".into())
            );
            for bad in [
                "Upper", "2upper", "-upper", "up per", "up.per", "up/per", "über",
            ] {
                assert_eq!(
                    check_name(lang, bad),
                    Err(format!(
                        "`{bad}`: a transform name starts with a lower-case letter and holds only \
                         lower-case letters, digits, `-` and `_` (it names the job, a crate or npm \
                         package, and files)"
                    ))
                );
            }
            assert!(check_name(lang, &"a".repeat(64)).is_ok());
            assert_eq!(
                check_name(lang, &"a".repeat(65)),
                Err(format!(
                    "`{}`: a transform name has at most 64 characters",
                    "a".repeat(65)
                ))
            );
            assert_eq!(
                check_name(lang, "etlhost-transform"),
                Err("`etlhost-transform` is the name of etlhost's transform SDK, which the project \
                     uses: choose another name"
                    .into())
            );
        }
        for crate_name in ["fn", "self", "std", "test", "serde-json", "proc-macro"] {
            assert_eq!(
                check_name(Lang::Rust, crate_name),
                Err(format!(
                    "`{crate_name}` cannot name a Rust crate here (a Rust keyword, a built-in \
                     crate or a dependency of the project): choose another name"
                ))
            );
            assert_eq!(check_name(Lang::Python, crate_name), Ok(()));
        }
    }

    #[test]
    fn the_python_module_shadows_nothing() {
        assert_eq!(python_module("upper-name"), "upper_name_transform");
        // The world's name, the bindings' package and standard-library modules the SDK imports.
        for name in [
            "transform",
            "wit_world",
            "wit-world",
            "json",
            "types",
            "datetime",
        ] {
            let module = python_module(name);
            assert!(
                ![
                    "transform",
                    "wit_world",
                    "json",
                    "types",
                    "datetime",
                    "etlhost_transform"
                ]
                .contains(&module.as_str()),
                "{name} -> {module}"
            );
        }
    }

    #[test]
    fn the_files_of_each_language() {
        let sdk = Path::new("/src/etlhost/plugins/transforms/sdk");
        let rust = Project::new(Lang::Rust, "upper-name", sdk).unwrap();
        assert_eq!(
            paths(&rust),
            [
                ".gitignore",
                "Cargo.toml",
                "README.md",
                "job.yaml",
                "src/lib.rs"
            ]
        );
        let cargo = file(&rust, "Cargo.toml");
        assert!(cargo.contains("name = \"upper-name\"\n"), "{cargo}");
        assert!(
            cargo.contains(
                "etlhost-transform = { path = \"/src/etlhost/plugins/transforms/sdk\" }\n"
            ),
            "{cargo}"
        );
        assert!(cargo.contains("crate-type = [\"cdylib\"]\n"), "{cargo}");
        assert!(cargo.ends_with("[workspace]\n"), "{cargo}");
        assert_eq!(rust.build, ["cargo build --release --target wasm32-wasip2"]);

        let python = Project::new(Lang::Python, "upper-name", sdk).unwrap();
        assert_eq!(
            paths(&python),
            [
                ".gitignore",
                "README.md",
                "job.yaml",
                "requirements.txt",
                "src/etlhost_transform.py",
                "src/upper_name_transform.py",
                "wit/transform.wit"
            ]
        );
        assert_eq!(file(&python, "wit/transform.wit"), WIT);
        assert_eq!(file(&python, "src/etlhost_transform.py"), PY_SDK);
        assert!(file(&python, "requirements.txt").ends_with(&format!(
            "\ncomponentize-py=={}\n",
            componentize_py_version()
        )));
        assert_eq!(
            python.build,
            [
                ".venv/bin/componentize-py --wit-path wit --world transform componentize \
              --python-path src upper_name_transform -o upper-name.wasm"
            ]
        );

        let js = Project::new(Lang::Js, "upper-name", sdk).unwrap();
        assert_eq!(
            paths(&js),
            [
                ".gitignore",
                "README.md",
                "build.mjs",
                "job.yaml",
                "package-lock.json",
                "package.json",
                "src/etlhost-transform.js",
                "src/upper-name.js",
                "wit/transform.wit"
            ]
        );
        assert_eq!(file(&js, "src/etlhost-transform.js"), JS_SDK);
        assert!(file(&js, "build.mjs").contains("sourcePath: resolve(here, 'src/upper-name.js')"));
        let package: serde_json::Value = serde_json::from_str(file(&js, "package.json")).unwrap();
        let lock: serde_json::Value = serde_json::from_str(file(&js, "package-lock.json")).unwrap();
        assert_eq!(package["name"], "upper-name");
        assert_eq!(package["scripts"]["build"], "node build.mjs");
        assert_eq!(package["dependencies"], js_package()["dependencies"]);
        assert_eq!(lock["name"], "upper-name");
        assert_eq!(
            lock["packages"][""]["dependencies"],
            package["dependencies"]
        );
        let ours: serde_json::Value = serde_json::from_str(JS_LOCK).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/@bytecodealliance/componentize-js"],
            ours["packages"]["node_modules/@bytecodealliance/componentize-js"]
        );

        for p in [&rust, &python, &js] {
            for (path, text) in &p.files {
                assert!(!text.contains("{{"), "a placeholder is left in {path}");
            }
            let readme = file(p, "README.md");
            for line in p.install.iter().chain(&p.build) {
                assert!(readme.contains(&format!("{line}\n")), "{line}");
            }
        }
    }

    /// The job spec is one etlhost reads, naming the component the build writes.
    #[test]
    fn the_job_spec_loads() {
        for lang in LANGS {
            let dir = scratch(&format!("job-{lang:?}"));
            Project::new(lang, "upper-name", &sdk_dir())
                .unwrap()
                .write(&dir)
                .unwrap();
            let spec = crate::spec::Spec::load_with_env(&dir.join("job.yaml"), &|_| None).unwrap();
            let flow = &spec.job.flows[0];
            assert_eq!(flow.source.plugin, "mysql");
            assert_eq!(
                flow.source.options["url"], "mysql://127.0.0.1:3306/test",
                "{lang:?}"
            );
            assert_eq!(flow.source.options["user"], "etl");
            assert_eq!(flow.source.options["password"], "etl");
            assert_eq!(flow.source.options["table"], "person");
            assert_eq!(flow.transforms[0].name, "upper-name");
            assert_eq!(flow.transforms[0].component, component(lang, "upper-name"));
            assert_eq!(flow.transforms[0].config["column"], "name");
            assert_eq!(flow.sink.plugin, "console");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn writes_into_a_new_or_empty_folder_only() {
        let dir = scratch("folders");
        let project = Project::new(Lang::Python, "upper", &sdk_dir()).unwrap();
        project.write(&dir.join("new/deeper")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("new/deeper/src/upper_transform.py")).unwrap(),
            file(&project, "src/upper_transform.py")
        );

        std::fs::create_dir_all(dir.join("empty")).unwrap();
        project.write(&dir.join("empty")).unwrap();
        assert!(dir.join("empty/job.yaml").is_file());

        std::fs::create_dir_all(dir.join("used")).unwrap();
        std::fs::write(dir.join("used/notes.txt"), "mine").unwrap();
        assert_eq!(
            project.write(&dir.join("used")),
            Err(format!(
                "{} exists and is not empty: choose another folder with --dir, or remove it",
                dir.join("used").display()
            ))
        );
        let left: Vec<_> = std::fs::read_dir(dir.join("used")).unwrap().collect();
        assert_eq!(left.len(), 1, "nothing written beside what was there");

        assert_eq!(
            project.write(&dir.join("used/notes.txt")),
            Err(format!(
                "{} exists and is not a folder",
                dir.join("used/notes.txt").display()
            ))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
