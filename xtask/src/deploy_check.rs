//! `cargo xtask deploy-check`: the Kubernetes manifests in `deploy/kubernetes/` (the batch Job) and
//! `deploy/kubernetes/stream/` (a streaming job's Deployment) checked offline.
//!
//! - every manifest against the Kubernetes schemas of [`KUBERNETES`] in strict mode (unknown fields
//!   are errors), with `kubernetes-validate` from PyPI in a venv under `target/tools/` (made once,
//!   again when `deploy/requirements.txt` changes);
//! - each folder's `kustomization.yaml` lists files that exist, and every manifest but a Secret;
//! - the Job's wiring: Indexed, `ETLHOST_SHARDS` equal to `completions`, the spec it runs is a key of
//!   the ConfigMap mounted there;
//! - the Deployment's wiring: 2 replicas, `--metrics-addr` served on a declared container port that
//!   the liveness (`/healthz`) and readiness (`/readyz`) probes, the Service and the scrape
//!   annotation name, `ETLHOST_HOLDER` from the pod's name, a streaming spec from the mounted
//!   ConfigMap, a PodDisruptionBudget that selects its pods;
//! - every spec in a ConfigMap passes `etlhost validate --offline`, with its pod's environment
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

/// Each folder's manifests, parsed: (file, document).
type Docs = Vec<(PathBuf, Value)>;

pub fn run() -> Result<()> {
    let batch = root().join("deploy/kubernetes");
    let stream = batch.join("stream");
    let (batch_files, stream_files) = (manifests(&batch)?, manifests(&stream)?);
    let validator = validator()?;
    check_schemas(
        &validator,
        &[batch_files.clone(), stream_files.clone()].concat(),
    )?;
    let batch_docs = parse(&batch, &batch_files)?;
    let jobs = of_kind(&batch_docs, "Job");
    ensure!(!jobs.is_empty(), "no Job in {}", batch.display());
    for job in jobs {
        check_job(job, &batch_docs)?;
    }
    let stream_docs = parse(&stream, &stream_files)?;
    let deployments = of_kind(&stream_docs, "Deployment");
    ensure!(
        !deployments.is_empty(),
        "no Deployment in {}",
        stream.display()
    );
    for d in deployments {
        check_stream(d, &stream_docs)?;
    }
    println!(
        "deploy-check: ok ({} manifests)",
        batch_files.len() + stream_files.len()
    );
    Ok(())
}

/// Every document of `files`; the folder's kustomization must list them.
fn parse(dir: &Path, files: &[PathBuf]) -> Result<Docs> {
    let mut docs = Docs::new();
    for f in files {
        docs.extend(documents(f)?.into_iter().map(|d| (f.clone(), d)));
    }
    check_kustomization(dir, &docs)?;
    Ok(docs)
}

fn of_kind<'a>(docs: &'a Docs, k: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| kind(d) == k)
        .collect()
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
fn check_kustomization(dir: &Path, docs: &Docs) -> Result<()> {
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
fn check_job(job: &Value, docs: &Docs) -> Result<()> {
    let spec = &job["spec"];
    let what = format!("Job {}", name(job));
    ensure!(
        spec["completionMode"].as_str() == Some("Indexed"),
        "{what}: completionMode must be Indexed (the completion index is the shard)"
    );
    let pod = &spec["template"]["spec"];
    let container = first_container(&what, pod)?;
    let env = env(container);
    let shards = env
        .iter()
        .find(|(n, _)| n == "ETLHOST_SHARDS")
        .and_then(|(_, v)| v.clone());
    let completions = spec["completions"].as_u64().map(|c| c.to_string());
    ensure!(
        shards.is_some() && shards == completions,
        "{what}: ETLHOST_SHARDS ({shards:?}) must equal completions ({completions:?})"
    );
    let mounted = mounted_spec(&what, pod, container, docs)?;
    mounted.validate(&env)?;
    Ok(())
}

fn first_container<'a>(what: &str, pod: &'a Value) -> Result<&'a Value> {
    pod["containers"]
        .as_sequence()
        .and_then(|c| c.first())
        .with_context(|| format!("{what}: no container"))
}

/// The container's environment: each variable's name, and its value when written as one.
fn env(container: &Value) -> Vec<(String, Option<String>)> {
    container["env"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|e| {
                    let n = e["name"].as_str().unwrap_or("").to_string();
                    (n, e["value"].as_str().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_sequence()
        .map(|a| a.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default()
}

/// The spec a container runs (`run SPEC ...`), as a key of the ConfigMap mounted at its folder.
struct MountedSpec {
    key: String,
    text: String,
    map_name: String,
    file: PathBuf,
}

/// `run SPEC`: the volume mounted at the spec's folder, the ConfigMap behind it and its key.
fn mounted_spec(what: &str, pod: &Value, container: &Value, docs: &Docs) -> Result<MountedSpec> {
    let args = args(container);
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
        .with_context(|| format!("{what}: no ConfigMap {map_name} beside it"))?;
    let key = spec_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let text = map["data"][key].as_str().with_context(|| {
        format!(
            "{what}: ConfigMap {map_name} ({}) has no key {key}",
            file.display()
        )
    })?;
    Ok(MountedSpec {
        key: key.to_string(),
        text: text.to_string(),
        map_name: map_name.to_string(),
        file: file.clone(),
    })
}

impl MountedSpec {
    /// `etlhost validate --offline`, with the line of the manifest its errors' lines start at.
    fn validate(&self, env: &[(String, Option<String>)]) -> Result<()> {
        // etlhost names lines of the extracted file; say where they are in the manifest.
        let source = std::fs::read_to_string(&self.file)?;
        let block = source
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{}: |", self.key)))
            .map(|i| i + 1)
            .unwrap_or(0);
        validate_spec(&self.key, &self.text, env).with_context(|| {
            format!(
                "the spec {} of ConfigMap {}: its line N is line {block} + N of {}",
                self.key,
                self.map_name,
                self.file.display()
            )
        })
    }
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

/// A streaming job's Deployment: the active process and a standby, probed on the port its
/// `--metrics-addr` serves, each with its own name in the lease, a streaming spec from the mounted
/// ConfigMap, and a PodDisruptionBudget and a Service over its pods.
fn check_stream(deployment: &Value, docs: &Docs) -> Result<()> {
    let what = format!("Deployment {}", name(deployment));
    let spec = &deployment["spec"];
    ensure!(
        spec["replicas"].as_u64() == Some(2),
        "{what}: replicas must be 2 (the active process and a standby), not {:?}",
        spec["replicas"]
    );
    let template = &spec["template"];
    let labels = &template["metadata"]["labels"];
    ensure!(
        selects(&spec["selector"], labels),
        "{what}: its selector does not select its pod template's labels"
    );
    let pod = &template["spec"];
    let container = first_container(&what, pod)?;
    let port = metrics_port(&what, container)?;
    check_probe(&what, container, "livenessProbe", "/healthz", port)?;
    check_probe(&what, container, "readinessProbe", "/readyz", port)?;
    let holder = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some("ETLHOST_HOLDER"));
    ensure!(
        holder.is_some_and(|e| e["valueFrom"]["fieldRef"]["fieldPath"].as_str() == Some("metadata.name")),
        "{what}: ETLHOST_HOLDER must come from the pod's name (valueFrom.fieldRef.fieldPath: metadata.name), so each replica has a name of its own in the lease"
    );
    check_scrape_port(&what, &template["metadata"], port)?;
    check_disruption_budget(&what, labels, docs)?;
    check_metrics_service(&what, labels, container, port, docs)?;
    let mounted = mounted_spec(&what, pod, container, docs)?;
    ensure!(
        is_stream(&mounted.text),
        "{what}: the spec {} of ConfigMap {} has no `mode: stream` (at the top or in a flow)",
        mounted.key,
        mounted.map_name
    );
    mounted.validate(&env(container))
}

/// The port of `--metrics-addr HOST:PORT` (or `--metrics-addr=HOST:PORT`) in the container's
/// args, which must be one of its declared ports.
fn metrics_port(what: &str, container: &Value) -> Result<u64> {
    let args = args(container);
    let addr = args
        .iter()
        .position(|a| *a == "--metrics-addr")
        .and_then(|i| args.get(i + 1).copied())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--metrics-addr=")))
        .with_context(|| {
            format!("{what}: no --metrics-addr in args {args:?}: the probes need it")
        })?;
    let port: u64 = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("{what}: --metrics-addr {addr} has no port"))?;
    ensure!(
        !addr.starts_with("127.") && !addr.starts_with("localhost") && !addr.starts_with("[::1]"),
        "{what}: --metrics-addr {addr} is the loopback address: the kubelet's probes and Prometheus could not reach it (0.0.0.0:{port})"
    );
    ensure!(
        container_port(container, &Value::from(port)).is_some(),
        "{what}: --metrics-addr's port {port} is not among the container's ports"
    );
    Ok(port)
}

/// The container port a probe or Service names, by number or by name.
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    let ports = container["ports"].as_sequence()?;
    match port {
        Value::Number(n) => ports
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .find(|p| Some(*p) == n.as_u64()),
        Value::String(s) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(s))
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    }
}

fn check_probe(what: &str, container: &Value, probe: &str, path: &str, port: u64) -> Result<()> {
    let get = &container[probe]["httpGet"];
    ensure!(
        get["path"].as_str() == Some(path),
        "{what}: {probe} must be an httpGet of {path}, not {:?}",
        get["path"]
    );
    ensure!(
        container_port(container, &get["port"]) == Some(port),
        "{what}: {probe} asks port {:?}, not the metrics port {port} that --metrics-addr serves",
        get["port"]
    );
    Ok(())
}

/// A `prometheus.io/port` annotation, where there is one, names the metrics port.
fn check_scrape_port(what: &str, metadata: &Value, port: u64) -> Result<()> {
    let annotated = &metadata["annotations"]["prometheus.io/port"];
    ensure!(
        annotated.is_null() || annotated.as_str() == Some(&port.to_string()),
        "{what}: prometheus.io/port is {annotated:?}, not the metrics port {port}"
    );
    Ok(())
}

/// A PodDisruptionBudget selects the pods and lets one of the two go at a time.
fn check_disruption_budget(what: &str, labels: &Value, docs: &Docs) -> Result<()> {
    let pdb = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| kind(d) == "PodDisruptionBudget" && selects(&d["spec"]["selector"], labels))
        .with_context(|| format!("{what}: no PodDisruptionBudget selects its pods"))?;
    let spec = &pdb["spec"];
    ensure!(
        spec["minAvailable"].as_u64() == Some(1) || spec["maxUnavailable"].as_u64() == Some(1),
        "PodDisruptionBudget {}: minAvailable (or maxUnavailable) must be 1 for 2 replicas",
        name(pdb)
    );
    Ok(())
}

/// A Service selects the pods and targets the metrics port.
fn check_metrics_service(
    what: &str,
    labels: &Value,
    container: &Value,
    port: u64,
    docs: &Docs,
) -> Result<()> {
    let services: Vec<&Value> = of_kind(docs, "Service")
        .into_iter()
        .filter(|s| selects(&s["spec"], labels))
        .collect();
    ensure!(
        !services.is_empty(),
        "{what}: no Service selects its pods for the metrics"
    );
    for s in services {
        let targets = s["spec"]["ports"].as_sequence().into_iter().flatten();
        ensure!(
            targets
                .map(|p| if p["targetPort"].is_null() {
                    &p["port"]
                } else {
                    &p["targetPort"]
                })
                .any(|t| container_port(container, t) == Some(port)),
            "Service {}: no port targets the metrics port {port}",
            name(s)
        );
        check_scrape_port(&format!("Service {}", name(s)), &s["metadata"], port)?;
    }
    Ok(())
}

/// Whether `selector`, a LabelSelector (its `matchLabels`) or a Service's spec (its `selector`),
/// selects `labels`. `matchExpressions` are not evaluated here: a selector with them counts as not
/// selecting, and so does an empty one.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = match (&selector["matchLabels"], &selector["selector"]) {
        (Value::Mapping(m), _) | (Value::Null, Value::Mapping(m)) => m,
        _ => return false,
    };
    selector["matchExpressions"].is_null()
        && !wanted.is_empty()
        && wanted
            .iter()
            .all(|(k, v)| labels[k.as_str().unwrap_or("")] == *v)
}

/// `mode: stream` for the job, or for one of its flows.
fn is_stream(spec: &str) -> bool {
    let Ok(v) = serde_yaml_ng::from_str::<Value>(spec) else {
        return false;
    };
    let stream = |v: &Value| v["mode"].as_str() == Some("stream");
    stream(&v)
        || v["flows"]
            .as_sequence()
            .is_some_and(|f| f.iter().any(stream))
}
