//! `cargo xtask deploy-check`: the Kubernetes manifests in `deploy/kubernetes/` checked offline.
//!
//! - every manifest against the Kubernetes schemas of [`KUBERNETES`] in strict mode (unknown fields
//!   are errors), with `kubernetes-validate` from PyPI in a venv under `target/tools/` (made once,
//!   again when `deploy/requirements.txt` changes);
//! - `kustomization.yaml` lists files that exist, and every manifest but a Secret;
//! - the Job's wiring: Indexed, `ETLHOST_SHARDS` equal to `completions`, the spec it runs is a key of
//!   the ConfigMap mounted there;
//! - every spec in a ConfigMap passes `etlhost validate --offline`, with the Job's environment
//!   (Secret values as placeholders), using the etlhost and plugins of `cargo xtask build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

use xtask::root;

/// The oldest Kubernetes the Job needs (`backoffLimitPerIndex` is GA in 1.33) and the newest the
/// validator knows.
const KUBERNETES: &[&str] = &["1.33.0", "1.37.0"];

pub fn run() -> Result<()> {
    let dir = root().join("deploy/kubernetes");
    let manifests = manifests(&dir)?;
    let validator = validator()?;
    check_schemas(&validator, &manifests)?;
    let docs: Vec<(PathBuf, Value)> = manifests
        .iter()
        .map(|m| Ok(documents(m)?.into_iter().map(|d| (m.clone(), d))))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    check_kustomization(&dir, &docs)?;
    let jobs: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| kind(d) == "Job")
        .collect();
    ensure!(!jobs.is_empty(), "no Job in {}", dir.display());
    for job in jobs {
        check_job(job, &docs)?;
    }
    println!("deploy-check: ok ({} manifests)", manifests.len());
    Ok(())
}

/// The Kubernetes manifests: every `.yaml`/`.yml` file but `kustomization.yaml`, sorted.
fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .map(|e| Ok(e?.path()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no manifests in {}", dir.display());
    Ok(files)
}

/// `kubernetes-validate`, installed into its venv when missing or older than the requirements.
fn validator() -> Result<PathBuf> {
    let requirements = root().join("deploy/requirements.txt");
    let venv = root().join("target/tools/kubernetes-validate");
    let tool = venv.join("bin/kubernetes-validate");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let fresh = match (modified(&tool), modified(&requirements)) {
        (Ok(t), Ok(r)) => t >= r,
        (_, Err(e)) => bail!("{}: {e}", requirements.display()),
        _ => false,
    };
    if !fresh {
        eprintln!(
            "xtask: installing kubernetes-validate into {}",
            venv.display()
        );
        xtask::run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )?;
        xtask::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
        )
        .context("pip install of kubernetes-validate failed")?;
    }
    Ok(tool)
}

/// Strict schema validation against every version in [`KUBERNETES`]. The validator only warns, and
/// exits 0, for a kind or apiVersion it has no schema for (a typo there): that fails here too.
fn check_schemas(validator: &Path, manifests: &[PathBuf]) -> Result<()> {
    let mut cmd = Command::new(validator);
    cmd.arg("--strict");
    for v in KUBERNETES {
        cmd.args(["-k", v]);
    }
    let out = cmd
        .args(
            manifests
                .iter()
                .map(|m| m.strip_prefix(root()).unwrap_or(m)),
        )
        .current_dir(root())
        .output()
        .with_context(|| format!("cannot run {}", validator.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let warned = text.lines().any(|l| l.starts_with("WARN"));
    if !out.status.success() || warned {
        bail!(
            "kubernetes-validate --strict failed for deploy/kubernetes/ ({}{})",
            out.status,
            if warned { ", with warnings" } else { "" }
        );
    }
    Ok(())
}

fn documents(file: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).with_context(|| file.display().to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// Its resources exist, and every manifest is one of them except Secrets, which are left out on
/// purpose (`kubectl apply -k` would overwrite the real Secret with the example's placeholders).
fn check_kustomization(dir: &Path, docs: &[(PathBuf, Value)]) -> Result<()> {
    let file = dir.join("kustomization.yaml");
    let k = documents(&file)?.into_iter().next().unwrap_or(Value::Null);
    ensure!(
        kind(&k) == "Kustomization",
        "{}: not a Kustomization",
        file.display()
    );
    let listed: Vec<PathBuf> = k["resources"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|r| r.as_str())
                .map(|r| dir.join(r))
                .collect()
        })
        .unwrap_or_default();
    for r in &listed {
        ensure!(
            r.is_file(),
            "{}: resource {} does not exist",
            file.display(),
            r.display()
        );
    }
    for (m, d) in docs {
        if !listed.contains(m) && kind(d) != "Secret" {
            bail!("{}: does not list {}", file.display(), m.display());
        }
    }
    Ok(())
}

/// The Job's shard count, and the spec it runs validated by etlhost.
fn check_job(job: &Value, docs: &[(PathBuf, Value)]) -> Result<()> {
    let spec = &job["spec"];
    let what = format!("Job {}", name(job));
    ensure!(
        spec["completionMode"].as_str() == Some("Indexed"),
        "{what}: completionMode must be Indexed (the completion index is the shard)"
    );
    let pod = &spec["template"]["spec"];
    let container = pod["containers"]
        .as_sequence()
        .and_then(|c| c.first())
        .with_context(|| format!("{what}: no container"))?;
    let env: Vec<(String, Option<String>)> = container["env"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|e| {
                    let n = e["name"].as_str().unwrap_or("").to_string();
                    (n, e["value"].as_str().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default();
    let shards = env
        .iter()
        .find(|(n, _)| n == "ETLHOST_SHARDS")
        .and_then(|(_, v)| v.clone());
    let completions = spec["completions"].as_u64().map(|c| c.to_string());
    ensure!(
        shards.is_some() && shards == completions,
        "{what}: ETLHOST_SHARDS ({shards:?}) must equal completions ({completions:?})"
    );
    // `run SPEC`: find the volume mounted at the spec's folder, and the ConfigMap behind it.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .map(|a| a.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    ensure!(
        args.first() == Some(&"run"),
        "{what}: args must be `run SPEC`, not {args:?}"
    );
    let spec_path = Path::new(
        args.get(1)
            .with_context(|| format!("{what}: no SPEC in args"))?,
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().map(Path::new) == spec_path.parent())
        .with_context(|| format!("{what}: nothing is mounted at {}", spec_path.display()))?;
    let volume = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .with_context(|| format!("{what}: no volume {:?}", mount["name"]))?;
    let map_name = volume["configMap"]["name"]
        .as_str()
        .with_context(|| format!("{what}: the spec's volume is not a ConfigMap"))?;
    let (file, map) = docs
        .iter()
        .find(|(_, d)| kind(d) == "ConfigMap" && name(d) == map_name)
        .with_context(|| format!("{what}: no ConfigMap {map_name} in deploy/kubernetes/"))?;
    let key = spec_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let text = map["data"][key].as_str().with_context(|| {
        format!(
            "{what}: ConfigMap {map_name} ({}) has no key {key}",
            file.display()
        )
    })?;
    // etlhost names lines of the extracted file; say where they are in the manifest.
    let source = std::fs::read_to_string(file)?;
    let block = source
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}: |")))
        .map(|i| i + 1)
        .unwrap_or(0);
    validate_spec(key, text, &env).with_context(|| {
        format!(
            "the spec {key} of ConfigMap {map_name}: its line N is line {block} + N of {}",
            file.display()
        )
    })
}

/// `etlhost validate --offline` on the spec, in a scratch folder, with the Job's environment: plain
/// values as written, values from the Secret or the downward API as placeholders.
fn validate_spec(key: &str, text: &str, env: &[(String, Option<String>)]) -> Result<()> {
    let etlhost = root().join("target/debug/etlhost");
    ensure!(
        etlhost.is_file(),
        "{} not found: run `cargo xtask build` first",
        etlhost.display()
    );
    let scratch = root().join("target/deploy-check");
    std::fs::create_dir_all(&scratch)?;
    let spec = scratch.join(key);
    std::fs::write(&spec, text)?;
    let mut cmd = Command::new(&etlhost);
    cmd.arg("validate")
        .arg("--offline")
        .arg(&spec)
        .current_dir(&scratch);
    for (n, v) in env {
        cmd.env(n, v.as_deref().unwrap_or("placeholder"));
    }
    xtask::run(&mut cmd)
}
