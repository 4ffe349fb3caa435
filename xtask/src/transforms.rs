//! The WASM transforms, built from source into `target/transforms/<name>.wasm`:
//!
//! - Rust (`plugins/transforms`, and the tests' misbehaving `tests/transforms/faulty`) with cargo
//!   for `wasm32-wasip2`;
//! - Python (`plugins/transforms/python`) with componentize-py, from PyPI into
//!   `target/tools/python`, as `py-<name>.wasm`;
//! - JavaScript (`plugins/transforms/js`) with componentize-js, from npm into that folder's
//!   `node_modules`, as `js-<name>.wasm`.
//!
//! The Python and JS components embed a whole interpreter (12-18 MB), so they are rebuilt only
//! when a file they are built from is newer than the component.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::{cargo, root, run};

/// Rust transforms: crate `etlhost-transform-<name>` -> `<name>.wasm`.
const RUST: &[&str] = &["identity", "field-map", "filter", "pii-mask", "faulty"];
/// Python transforms: module `<name>.py` -> component `<component>.wasm`, built for a world of
/// `wit/transform.wit` (the SDK runs in either; `py-full-name-values` keeps the values world, the
/// one of components built before the encoded one, under test; `py-roundtrip` is the tests').
const PYTHON: &[(&str, &str, &str)] = &[
    ("identity", "py-identity", "encoded-transform"),
    ("full_name", "py-full-name", "encoded-transform"),
    ("full_name", "py-full-name-values", "transform"),
    ("roundtrip", "py-roundtrip", "encoded-transform"),
];
/// JavaScript transforms: `<name>.js` -> `js-<name>.wasm`.
const JS: &[&str] = &["identity", "email-domain", "roundtrip", "roundtrip-values"];

pub fn out_dir() -> PathBuf {
    root().join("target/transforms")
}

pub fn build() -> Result<()> {
    std::fs::create_dir_all(out_dir())?;
    build_rust()?;
    build_python()?;
    build_js()
}

fn build_rust() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    let wasm_dir = root().join("target/wasm");
    for dir in ["plugins/transforms", "tests/transforms/faulty"] {
        run(Command::new(cargo())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&wasm_dir)
            .current_dir(root().join(dir)))?;
    }
    let built = wasm_dir.join("wasm32-wasip2/release");
    let copy = |name: &str, to: &str| {
        let file = format!("etlhost_transform_{}.wasm", name.replace('-', "_"));
        std::fs::copy(built.join(&file), out_dir().join(format!("{to}.wasm")))
            .with_context(|| format!("copy {file}"))
    };
    for name in RUST {
        copy(name, name)?;
    }
    // The same misbehaviour for the encoded-transform world, so the tests meet both of the host's
    // paths; built after the copy above, since it makes a file of the same name.
    run(Command::new(cargo())
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["--features", "encoded", "--target-dir"])
        .arg(&wasm_dir)
        .current_dir(root().join("tests/transforms/faulty")))?;
    copy("faulty", "faulty-encoded")?;
    Ok(())
}

fn build_python() -> Result<()> {
    let src = root().join("plugins/transforms/python");
    let wit = root().join("wit");
    let requirements = src.join("requirements.txt");
    let venv = root().join("target/tools/python");
    let tool = venv.join("bin/componentize-py");
    // The venv is remade when requirements.txt changes, so a version bump takes effect.
    if is_stale(&tool, std::slice::from_ref(&requirements))? {
        eprintln!("xtask: installing componentize-py into {}", venv.display());
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements))
        .context("pip install of componentize-py failed")?;
    }
    for (name, component, world) in PYTHON {
        let out = out_dir().join(format!("{component}.wasm"));
        let inputs = [
            src.join(format!("{name}.py")),
            src.join("etlhost_transform.py"),
            wit.join("transform.wit"),
            tool.clone(),
        ];
        if !is_stale(&out, &inputs)? {
            continue;
        }
        run(Command::new(&tool)
            .arg("--wit-path")
            .arg(&wit)
            .args(["--world", world, "componentize", "--python-path"])
            .arg(&src)
            .arg(name)
            .arg("--output")
            .arg(&out)
            // componentize-py imports the modules it bundles; nothing to cache in the sources.
            .env("PYTHONDONTWRITEBYTECODE", "1"))
        .with_context(|| format!("componentize-py failed for {name}.py"))?;
    }
    Ok(())
}

fn build_js() -> Result<()> {
    let src = root().join("plugins/transforms/js");
    let installed = src.join("node_modules/.package-lock.json");
    if is_stale(&installed, &[src.join("package-lock.json")])? {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&src))
        .context("npm ci of componentize-js failed")?;
    }
    // Every script of the folder: a transform may import another (roundtrip-values.js does).
    let mut inputs = vec![root().join("wit/transform.wit"), installed.clone()];
    for entry in std::fs::read_dir(&src)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
            inputs.push(path);
        }
    }
    let mut stale = Vec::new();
    for name in JS {
        if is_stale(&out_dir().join(format!("js-{name}.wasm")), &inputs)? {
            stale.push(*name);
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    run(Command::new("node")
        .arg("build.mjs")
        .arg(root().join("wit"))
        .arg(out_dir())
        .args(&stale)
        .current_dir(&src))
    .context("componentize-js failed")
}

/// Whether `out` is missing or older than any of `inputs` (which must exist).
fn is_stale(out: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let modified = |p: &Path| -> Result<SystemTime> {
        Ok(std::fs::metadata(p)
            .with_context(|| format!("{}", p.display()))?
            .modified()?)
    };
    let Ok(built) = modified(out) else {
        return Ok(true);
    };
    for input in inputs {
        if modified(input)? > built {
            return Ok(true);
        }
    }
    Ok(false)
}
