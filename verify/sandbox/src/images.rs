//! A docker-archive (`docker save` format) image builder.
//!
//! No base image can be pulled on these machines, so every image the sandbox and the tests need is
//! written here from scratch: layers are tar archives built with the `tar` crate, their
//! `diff_id`s are sha256 digests of those tars, and the image config carries a chosen `created`
//! time, `history`, `Cmd`/`Entrypoint`, `Env` and `ExposedPorts`. The archive is loaded through
//! the Docker API (`POST /images/load`, bollard `import_image`).
//!
//! Everything is deterministic: the same [`ImageSpec`] always gives the same image id, so a recipe
//! can be cached by id. Use [`Layer::unique`] to make a layer (and so an image) that shares
//! nothing with any other image.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::ImportImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};

/// One entry of a layer.
#[derive(Clone, Debug)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// A layer: a set of paths (absolute inside the image) and what they hold.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
    created_by: Option<String>,
}

fn norm(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(SandboxError::Image(format!(
            "invalid path in layer: {path:?}"
        )));
    }
    Ok(trimmed.to_string())
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `history[].created_by` text of this layer.
    pub fn created_by(mut self, text: &str) -> Self {
        self.created_by = Some(text.to_string());
        self
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Result<Self> {
        self.entries.insert(norm(path)?, Entry::Dir { mode });
        Ok(self)
    }

    /// A regular file with the given bytes.
    pub fn file(mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Result<Self> {
        self.entries.insert(
            norm(path)?,
            Entry::File {
                mode,
                data: data.into(),
            },
        );
        Ok(self)
    }

    /// A symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Result<Self> {
        self.entries.insert(
            norm(path)?,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        Ok(self)
    }

    /// A copy of a host file (symlinks followed), keeping its permission bits.
    pub fn host_file(self, path: &str, src: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(src)
            .map_err(|e| SandboxError::Image(format!("cannot read {}: {e}", src.display())))?;
        let mode = std::fs::metadata(src)
            .map_err(|e| SandboxError::Image(format!("cannot stat {}: {e}", src.display())))?
            .permissions()
            .mode()
            & 0o7777;
        self.file(path, mode, data)
    }

    /// A file whose content is derived from `seed`, so that this layer differs from every layer
    /// built with another seed (see [`unique_seed`]).
    pub fn unique(self, seed: &str) -> Result<Self> {
        let digest = hex::encode(Sha256::digest(seed.as_bytes()));
        self.file(
            &format!("/ccci-unique/{}", &digest[..16]),
            0o644,
            format!("{seed}\n").into_bytes(),
        )
    }

    /// Number of entries (parents that are added implicitly not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the layer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The layer as an uncompressed tar (deterministic: mtime 0, owner root).
    pub fn tar(&self) -> Result<Vec<u8>> {
        // Add missing parent directories so the layer stands alone.
        let mut all = self.entries.clone();
        for path in self.entries.keys() {
            let mut p = Path::new(path).parent();
            while let Some(parent) = p {
                let s = parent.to_string_lossy().to_string();
                if s.is_empty() {
                    break;
                }
                all.entry(s).or_insert(Entry::Dir { mode: 0o755 });
                p = parent.parent();
            }
        }
        let mut b = tar::Builder::new(Vec::new());
        for (path, entry) in &all {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            let io = |e: std::io::Error| SandboxError::Image(format!("tar {path}: {e}"));
            match entry {
                Entry::Dir { mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                Entry::File { mode, data } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice()).map_err(io)?;
                }
                Entry::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).map_err(io)?;
                }
            }
        }
        b.into_inner()
            .map_err(|e| SandboxError::Image(format!("finishing layer tar: {e}")))
    }
}

/// A unique seed: time, pid and a process-wide counter.
pub fn unique_seed(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An RFC 3339 timestamp `secs` seconds before now (for `created`).
pub fn created_secs_ago(secs: u64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A whole image: layers, config and tags.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image's `created` (RFC 3339).
    pub created: String,
    /// Tags (`repo:tag`); empty makes an untagged (dangling) image.
    pub tags: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `ExposedPorts` keys such as `6379/tcp`.
    pub exposed_ports: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
}

impl ImageSpec {
    /// An image with the given layers, created at `created`, and no tags.
    pub fn new(layers: Vec<Layer>, created: &str) -> Self {
        ImageSpec {
            layers,
            created: created.to_string(),
            tags: Vec::new(),
            cmd: Vec::new(),
            entrypoint: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            exposed_ports: Vec::new(),
            working_dir: None,
            labels: BTreeMap::new(),
            stop_signal: None,
        }
    }

    /// A small test image: `n_layers` layers, each unique to `seed`, created `age_secs` ago.
    pub fn unique_test_image(seed: &str, n_layers: usize, age_secs: u64) -> Result<Self> {
        let mut layers = Vec::new();
        for i in 0..n_layers.max(1) {
            layers.push(
                Layer::new()
                    .unique(&format!("{seed}/layer{i}"))?
                    .created_by(&format!("ccci test layer {i}")),
            );
        }
        let mut spec = ImageSpec::new(layers, &created_secs_ago(age_secs));
        spec.cmd = vec!["/ccci-none".into()];
        spec.labels
            .insert("io.ccci.test-image".into(), seed.to_string());
        Ok(spec)
    }

    /// Add a tag.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.to_string());
        self
    }

    fn config_json(&self, diff_ids: &[String], history: Vec<Value>) -> Value {
        let ports: serde_json::Map<String, Value> = self
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        let mut cfg = serde_json::Map::new();
        cfg.insert("Env".into(), json!(self.env));
        if !self.cmd.is_empty() {
            cfg.insert("Cmd".into(), json!(self.cmd));
        }
        if !self.entrypoint.is_empty() {
            cfg.insert("Entrypoint".into(), json!(self.entrypoint));
        }
        if !ports.is_empty() {
            cfg.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if let Some(w) = &self.working_dir {
            cfg.insert("WorkingDir".into(), json!(w));
        }
        if !self.labels.is_empty() {
            cfg.insert("Labels".into(), json!(self.labels));
        }
        if let Some(s) = &self.stop_signal {
            cfg.insert("StopSignal".into(), json!(s));
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": Value::Object(cfg),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        config
    }

    /// Each layer's tar with its hex digest, the config's `diff_ids` and `history` entries
    /// (`default_created_by` for a layer that names no creator).
    #[allow(clippy::type_complexity)]
    fn layer_parts(
        &self,
        default_created_by: &str,
    ) -> Result<(Vec<String>, Vec<Value>, Vec<(String, Vec<u8>)>)> {
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        let mut tars = Vec::new();
        for layer in &self.layers {
            let t = layer.tar()?;
            let d = hex::encode(Sha256::digest(&t));
            diff_ids.push(format!("sha256:{d}"));
            history.push(json!({
                "created": self.created,
                "created_by": layer.created_by.clone().unwrap_or_else(|| default_created_by.into()),
            }));
            tars.push((d, t));
        }
        Ok((diff_ids, history, tars))
    }

    /// Build the archive. Returns it with the image id (`sha256:<config digest>`).
    pub fn build(&self) -> Result<BuiltImage> {
        let (diff_ids, history, layer_tars) = self.layer_parts("ccci-sandbox image builder")?;
        let config = self.config_json(&diff_ids, history);
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| SandboxError::Image(format!("serialising config: {e}")))?;
        let config_digest = hex::encode(Sha256::digest(&config_bytes));
        let manifest = json!([{
            "Config": format!("{config_digest}.json"),
            "RepoTags": if self.tags.is_empty() { Value::Null } else { json!(self.tags) },
            "Layers": layer_tars.iter().map(|(d, _)| format!("{d}/layer.tar")).collect::<Vec<_>>(),
        }]);
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| SandboxError::Image(format!("serialising manifest: {e}")))?;

        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| -> Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data)
                .map_err(|e| SandboxError::Image(format!("archive {name}: {e}")))
        };
        let mut seen = std::collections::HashSet::new();
        for (d, t) in &layer_tars {
            if seen.insert(d.clone()) {
                add(&format!("{d}/layer.tar"), t)?;
            }
        }
        add(&format!("{config_digest}.json"), &config_bytes)?;
        add("manifest.json", &manifest_bytes)?;
        let archive = b
            .into_inner()
            .map_err(|e| SandboxError::Image(format!("finishing archive: {e}")))?;
        Ok(BuiltImage {
            id: format!("sha256:{config_digest}"),
            diff_ids: layer_tars
                .iter()
                .map(|(d, _)| format!("sha256:{d}"))
                .collect(),
            archive,
        })
    }
}

/// A built docker-archive.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// Image id (`sha256:` + digest of the config JSON), as the daemon will report it.
    pub id: String,
    /// Layer diff ids, bottom first.
    pub diff_ids: Vec<String>,
    /// The archive bytes (`docker save` format).
    pub archive: Vec<u8>,
}

impl BuiltImage {
    /// Write the archive to a file.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let mut f = std::fs::File::create(path).map_err(|e| SandboxError::io("image", path, e))?;
        f.write_all(&self.archive)
            .map_err(|e| SandboxError::io("image", path, e))
    }
}

/// Load a docker-archive into a daemon through the API (`POST /images/load`).
pub async fn load_archive(docker: &Docker, archive: Vec<u8>) -> Result<()> {
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image(opts, bollard::body_full(archive.into()), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| SandboxError::docker("load image", e))?;
    }
    Ok(())
}

/// Build `spec` and load it; returns the image id as the daemon lists it. On the legacy store
/// that is the config digest the builder computed; the containerd store lists an image by the
/// digest of its manifest, which it writes at load and reports in the load stream
/// (`Loaded image ID: sha256:…`, or `Loaded image: NAME` for a tagged one, looked up).
pub async fn load(docker: &Docker, spec: &ImageSpec) -> Result<String> {
    let built = spec.build()?;
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image(opts, bollard::body_full(built.archive.into()), None);
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| SandboxError::docker("load image", e))?;
        lines.extend(item.stream);
    }
    for line in &lines {
        if let Some(id) = line.trim().strip_prefix("Loaded image ID: ") {
            return Ok(id.to_string());
        }
    }
    for line in &lines {
        if let Some(name) = line.trim().strip_prefix("Loaded image: ") {
            let img = docker
                .inspect_image(name)
                .await
                .map_err(|e| SandboxError::docker("load image", e))?;
            if let Some(id) = img.id {
                return Ok(id);
            }
        }
    }
    Ok(built.id)
}

/// Load a docker-archive file by streaming it from disk.
pub async fn load_archive_file(docker: &Docker, path: &Path) -> Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| SandboxError::io("load image", path, e))?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes_of(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut s = docker.import_image(opts, bollard::body_try_stream(stream), None);
    while let Some(item) = s.next().await {
        item.map_err(|e| SandboxError::docker("load image", e))?;
    }
    Ok(())
}

fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}

/// Write a one-extra-layer archive for `spec` whose (large) last layer is already a tar file on
/// disk with the given diff id; `spec.layers` come first. Streams the layer, never holds it in
/// memory.
pub fn write_archive_with_layer_file(
    spec: &ImageSpec,
    layer_file: &Path,
    diff_id: &str,
    out: &Path,
) -> Result<()> {
    let (mut diff_ids, mut history, small) = spec.layer_parts("")?;
    diff_ids.push(diff_id.to_string());
    history.push(json!({"created": spec.created, "created_by": "ccci-sandbox rootfs layer"}));
    let config = spec.config_json(&diff_ids, history);
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|e| SandboxError::Image(format!("serialising config: {e}")))?;
    let config_digest = hex::encode(Sha256::digest(&config_bytes));
    let big = diff_id.trim_start_matches("sha256:").to_string();
    let mut layer_names: Vec<String> = small
        .iter()
        .map(|(d, _)| format!("{d}/layer.tar"))
        .collect();
    layer_names.push(format!("{big}/layer.tar"));
    let manifest = json!([{
        "Config": format!("{config_digest}.json"),
        "RepoTags": if spec.tags.is_empty() { Value::Null } else { json!(spec.tags) },
        "Layers": layer_names,
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| SandboxError::Image(format!("serialising manifest: {e}")))?;
    let f = std::fs::File::create(out).map_err(|e| SandboxError::io("image", out, e))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    let add = |b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>,
               name: &str,
               data: &[u8]|
     -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data)
            .map_err(|e| SandboxError::Image(format!("archive {name}: {e}")))
    };
    for (d, t) in &small {
        add(&mut b, &format!("{d}/layer.tar"), t)?;
    }
    let mut lf =
        std::fs::File::open(layer_file).map_err(|e| SandboxError::io("image", layer_file, e))?;
    b.append_file(format!("{big}/layer.tar"), &mut lf)
        .map_err(|e| SandboxError::io("image", layer_file, e))?;
    add(&mut b, &format!("{config_digest}.json"), &config_bytes)?;
    add(&mut b, "manifest.json", &manifest_bytes)?;
    let mut w = b
        .into_inner()
        .map_err(|e| SandboxError::io("image", out, e))?;
    w.flush().map_err(|e| SandboxError::io("image", out, e))?;
    Ok(())
}
