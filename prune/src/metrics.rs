//! `--metrics-file`: the run as node_exporter textfile metrics (Prometheus text format 0.0.4),
//! rendered from the run's [`Report`] and what the state directory remembers, written
//! atomically (a temporary file in the same directory, then a rename).
//!
//! What survives restarts lives in `<state_dir>/metrics.json` ([`MetricsState`]): the counters
//! (runs by outcome, removals by kind and reason with their bytes, failures, incidents), each
//! gate's last decision and since when it has been closed, and the last cache listing (a run
//! below the threshold does not contact the daemon: the file then carries the cache as last
//! seen, with its time). Without a state directory the counters start at zero each run, as an
//! exporter's counters do at a restart.
//!
//! Sits beside [`crate::report`]: it reads the report and the settings, nothing below them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gates::Gate;
use crate::plan::ImageReason;
use crate::report::{CacheReport, Outcome, Report};

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "metrics.json";

/// Every metric's name starts with this.
pub const PREFIX: &str = "ci_docker_prune_";

/// Errors reading or writing the metrics' files (never fatal to a prune: the CLI logs them).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot write metrics file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read metrics state {path}: {cause}")]
    ReadState {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid metrics state {path}: {cause}")]
    ParseState {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

/// One gate as last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    pub open: bool,
    /// When it was last decided (unix seconds).
    pub checked: i64,
    /// When the run that first found it closed (in the current closed streak) ended.
    pub closed_since: Option<i64>,
}

/// Removals of one kind and reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

/// What the metrics remember between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsState {
    /// Runs by outcome (`skipped`, `pruned`, `dry-run`, `error`).
    pub runs: BTreeMap<String, u64>,
    /// Removals by `kind/reason` (see [`KINDS`]).
    pub removed: BTreeMap<String, Tally>,
    pub failures: u64,
    pub incidents: u64,
    /// By gate name.
    pub gates: BTreeMap<String, GateState>,
    /// The cache as last listed, and when.
    pub cache: Option<CacheReport>,
    pub cache_observed: Option<i64>,
    /// The eviction queue as last planned, and when.
    pub evict_queue: Option<u64>,
    pub evict_queue_observed: Option<i64>,
}

/// Every `kind/reason` a removal counter has (all are written, zero included, so a rate
/// over them is defined from the first run on).
pub const KINDS: [(&str, &str); 6] = [
    ("containers", "stopped"),
    ("images", "build_leftover"),
    ("images", "superseded_pull"),
    ("images", "superseded"),
    ("images", "least_recently_used"),
    ("build_cache", "older_than_until"),
];

/// The counter label of an image's reason.
pub fn reason_label(r: &ImageReason) -> &'static str {
    match r {
        ImageReason::BuildLeftover => "build_leftover",
        ImageReason::SupersededPull { .. } => "superseded_pull",
        ImageReason::Superseded { .. } => "superseded",
        ImageReason::LeastRecentlyUsed { .. } => "least_recently_used",
    }
}

/// The outcome as the report spells it.
pub fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Skipped => "skipped",
        Outcome::Pruned => "pruned",
        Outcome::DryRun => "dry-run",
        Outcome::Error => "error",
    }
}

/// The gates, in the order they are checked.
const GATES: [Gate; 3] = [Gate::Disk, Gate::Runs, Gate::Converge];

const OUTCOMES: [Outcome; 4] = [
    Outcome::Skipped,
    Outcome::Pruned,
    Outcome::DryRun,
    Outcome::Error,
];

/// The run's settings and times the metrics carry besides the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunInfo {
    /// When the run ended (unix seconds).
    pub end: i64,
    pub duration_secs: f64,
    pub threshold: u8,
    pub evict_low_watermark: u8,
}

impl MetricsState {
    /// `<dir>/metrics.json`, or an empty state when there is none yet.
    pub fn load(dir: &Path) -> Result<Self, MetricsError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|cause| MetricsError::ParseState {
                path: path.clone(),
                cause,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(cause) => Err(MetricsError::ReadState { path, cause }),
        }
    }

    /// Save as `<dir>/metrics.json`, atomically.
    pub fn save(&self, dir: &Path) -> Result<(), MetricsError> {
        let text = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        write_atomic(&dir.join(STATE_FILE), &text)
    }

    /// Add what a run did. A dry run removes nothing: only its outcome and what it learnt
    /// (gates, cache, queue) count.
    pub fn update(&mut self, r: &Report, info: &RunInfo) {
        *self
            .runs
            .entry(outcome_label(r.outcome).to_string())
            .or_default() += 1;
        for d in &r.gates {
            let prev = self.gates.get(d.gate.as_str());
            let closed_since = match (d.pass, prev) {
                (true, _) => None,
                (
                    false,
                    Some(GateState {
                        open: false,
                        closed_since: Some(t),
                        ..
                    }),
                ) => Some(*t),
                (false, _) => Some(info.end),
            };
            self.gates.insert(
                d.gate.as_str().to_string(),
                GateState {
                    open: d.pass,
                    checked: info.end,
                    closed_since,
                },
            );
        }
        if let Some(c) = &r.cache {
            self.cache = Some(c.clone());
            self.cache_observed = Some(info.end);
        }
        if let Some(q) = r.evict_queue {
            self.evict_queue = Some(q);
            self.evict_queue_observed = Some(info.end);
        }
        self.failures += r.failures.len() as u64;
        self.incidents += r.incidents.len() as u64;
        if r.outcome == Outcome::DryRun {
            return;
        }
        for (key, t) in removals(r) {
            let e = self.removed.entry(key).or_default();
            e.count += t.count;
            e.bytes += t.bytes;
        }
    }
}

/// What a report lists as removed, by `kind/reason`: containers (0 bytes: their size is not
/// counted), images by reason with their bytes, and the build cache with the bytes the run
/// reclaimed besides its images.
pub fn removals(r: &Report) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    let mut add = |kind: &str, reason: &str, count: u64, bytes: u64| {
        let e = out.entry(format!("{kind}/{reason}")).or_default();
        e.count += count;
        e.bytes += bytes;
    };
    add(
        "containers",
        "stopped",
        r.removed.containers.len() as u64,
        0,
    );
    let mut image_bytes = 0;
    for i in &r.image_reasons {
        add("images", reason_label(&i.reason), 1, i.bytes);
        image_bytes += i.bytes;
    }
    add(
        "build_cache",
        "older_than_until",
        r.removed.build_cache.len() as u64,
        r.reclaimed_bytes.saturating_sub(image_bytes),
    );
    out
}

/// A label value, escaped as the text format wants it (`\\`, `\"`, `\n`).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// The text file: `state` already updated with the run (see [`MetricsState::update`]).
pub fn render(r: &Report, state: &MetricsState, info: &RunInfo) -> String {
    let mut o = Out(String::new());
    o.one(
        "last_run_timestamp_seconds",
        "gauge",
        "When the last run ended (unix seconds).",
        info.end,
    );
    o.one(
        "last_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        format!("{:.3}", info.duration_secs),
    );
    o.family(
        "last_run_outcome",
        "gauge",
        "The last run's outcome: 1 for the one it had (skipped, pruned, dry-run, error).",
    );
    for out in OUTCOMES {
        o.sample(
            "last_run_outcome",
            &[("outcome", outcome_label(out))],
            flag(r.outcome == out),
        );
    }
    o.one(
        "last_run_reclaimed_bytes",
        "gauge",
        "Bytes the last run reclaimed (a dry run: would reclaim).",
        r.reclaimed_bytes,
    );
    o.one(
        "last_run_failures",
        "gauge",
        "Items the daemon failed to remove in the last run.",
        r.failures.len(),
    );
    o.one(
        "last_run_incidents",
        "gauge",
        "Images the daemon untagged while the last run deleted them (tagged after their check).",
        r.incidents.len(),
    );
    o.family("runs_total", "counter", "Runs by outcome.");
    for out in OUTCOMES {
        let l = outcome_label(out);
        o.sample(
            "runs_total",
            &[("outcome", l)],
            state.runs.get(l).copied().unwrap_or(0),
        );
    }
    o.one(
        "failures_total",
        "counter",
        "Items the daemon failed to remove.",
        state.failures,
    );
    o.one(
        "incidents_total",
        "counter",
        "Images the daemon untagged while deleting them.",
        state.incidents,
    );
    o.family(
        "removed_total",
        "counter",
        "Items removed, by kind and reason.",
    );
    for (kind, reason) in KINDS {
        let t = state
            .removed
            .get(&format!("{kind}/{reason}"))
            .copied()
            .unwrap_or_default();
        o.sample(
            "removed_total",
            &[("kind", kind), ("reason", reason)],
            t.count,
        );
    }
    o.family(
        "removed_bytes_total",
        "counter",
        "Bytes reclaimed, by kind and reason (images: the daemon's Size; containers: not counted).",
    );
    for (kind, reason) in KINDS {
        let t = state
            .removed
            .get(&format!("{kind}/{reason}"))
            .copied()
            .unwrap_or_default();
        o.sample(
            "removed_bytes_total",
            &[("kind", kind), ("reason", reason)],
            t.bytes,
        );
    }
    o.one(
        "threshold_percent",
        "gauge",
        "The disk gate's threshold.",
        info.threshold,
    );
    o.one(
        "evict_low_watermark_percent",
        "gauge",
        "The eviction tier's low watermark.",
        info.evict_low_watermark,
    );
    if !r.disks.is_empty() {
        // one gauge family per fact of each measured filesystem
        type Of = fn(&crate::report::DiskReport) -> u64;
        let families: [(&str, &str, Of); 3] = [
            (
                "disk_usage_percent",
                "Usage of each measured filesystem at the end of the last run, as the disk gate compares it.",
                |d| u64::from(d.percent),
            ),
            (
                "disk_used_bytes",
                "Bytes used on each measured filesystem at the end of the last run.",
                |d| d.used_bytes,
            ),
            (
                "disk_avail_bytes",
                "Bytes available on each measured filesystem at the end of the last run.",
                |d| d.avail_bytes,
            ),
        ];
        for (name, help, of) in families {
            o.family(name, "gauge", help);
            for d in &r.disks {
                o.sample(name, &[("path", &d.path)], of(d));
            }
        }
        let max = r.disks.iter().map(|d| d.percent).max().unwrap_or(0);
        o.one(
            "disk_over_threshold",
            "gauge",
            "1 when the highest usage is at or above the threshold at the end of the last run.",
            flag(max >= info.threshold),
        );
        o.one(
            "evict_low_watermark_reached",
            "gauge",
            "1 when the highest usage is at or below the low watermark at the end of the last run.",
            flag(max <= info.evict_low_watermark),
        );
    }
    if !state.gates.is_empty() {
        o.family(
            "gate_open",
            "gauge",
            "Each gate as last decided: 1 open, 0 closed.",
        );
        for g in GATES {
            if let Some(s) = state.gates.get(g.as_str()) {
                o.sample("gate_open", &[("gate", g.as_str())], flag(s.open));
            }
        }
        o.family(
            "gate_checked_timestamp_seconds",
            "gauge",
            "When each gate was last decided (a gate after a closed one is not decided).",
        );
        for g in GATES {
            if let Some(s) = state.gates.get(g.as_str()) {
                o.sample(
                    "gate_checked_timestamp_seconds",
                    &[("gate", g.as_str())],
                    s.checked,
                );
            }
        }
        if state.gates.values().any(|s| s.closed_since.is_some()) {
            o.family(
                "gate_closed_since_timestamp_seconds",
                "gauge",
                "For each closed gate: when the first run that found it closed ended.",
            );
            for g in GATES {
                if let Some(t) = state.gates.get(g.as_str()).and_then(|s| s.closed_since) {
                    o.sample(
                        "gate_closed_since_timestamp_seconds",
                        &[("gate", g.as_str())],
                        t,
                    );
                }
            }
        }
    }
    if let (Some(c), Some(t)) = (&state.cache, state.cache_observed) {
        o.one(
            "cache_images",
            "gauge",
            "Images kept as the cache (a tag or a repo digest), as last listed.",
            c.images,
        );
        o.one(
            "cache_bytes",
            "gauge",
            "The cache's images' Size added up (shared layers once per image), as last listed.",
            c.bytes,
        );
        o.one(
            "cache_observed_timestamp_seconds",
            "gauge",
            "When the cache was last listed (a run below the threshold does not contact the daemon).",
            t,
        );
    }
    if let (Some(q), Some(t)) = (state.evict_queue, state.evict_queue_observed) {
        o.one(
            "evict_queue_length",
            "gauge",
            "Cached pulls the eviction tier may evict, as last planned.",
            q,
        );
        o.one(
            "evict_queue_observed_timestamp_seconds",
            "gauge",
            "When the eviction queue was last planned.",
            t,
        );
    }
    o.0
}

/// Write `text` to `path` atomically: a temporary file beside it (so node_exporter never reads
/// half a file), flushed, then renamed over it; mode 0644.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), MetricsError> {
    let err = |cause| MetricsError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // node_exporter reads `*.prom` only: the temporary name does not end in it.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// After a run: update the state in `state_dir` (if any) with the report, render, and write
/// `path`. Errors are returned for the CLI to log; the run's exit code does not change.
pub fn write_after_run(
    path: &Path,
    state_dir: Option<&Path>,
    r: &Report,
    info: &RunInfo,
) -> Result<(), MetricsError> {
    let mut state = match state_dir {
        Some(d) => MetricsState::load(d).unwrap_or_default(),
        None => MetricsState::default(),
    };
    state.update(r, info);
    let saved = match state_dir {
        Some(d) => std::fs::create_dir_all(d)
            .map_err(|cause| MetricsError::Write {
                path: d.join(STATE_FILE),
                cause,
            })
            .and_then(|()| state.save(d)),
        None => Ok(()),
    };
    write_atomic(path, &render(r, &state, info))?;
    saved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::GateDecision;
    use crate::report::{DiskReport, Failure, RemovedImage};
    use crate::steps::Step;

    fn gate(g: Gate, pass: bool) -> GateDecision {
        GateDecision {
            gate: g,
            pass,
            detail: String::new(),
        }
    }

    fn info(end: i64) -> RunInfo {
        RunInfo {
            end,
            duration_secs: 1.25,
            threshold: 80,
            evict_low_watermark: 70,
        }
    }

    fn pruned() -> Report {
        let mut r = Report::new(
            Outcome::Pruned,
            vec![
                gate(Gate::Disk, true),
                gate(Gate::Runs, true),
                gate(Gate::Converge, true),
            ],
        );
        r.removed.containers = vec!["c1".into(), "c2".into()];
        r.removed.images = vec!["sha256:a".into(), "sha256:p".into(), "sha256:b".into()];
        r.removed.build_cache = vec!["r1".into()];
        r.image_reasons = vec![
            RemovedImage {
                id: "sha256:a".into(),
                reason: ImageReason::BuildLeftover,
                bytes: 1000,
            },
            RemovedImage {
                id: "sha256:p".into(),
                reason: ImageReason::BuildLeftover,
                bytes: 0,
            },
            RemovedImage {
                id: "sha256:b".into(),
                reason: ImageReason::LeastRecentlyUsed {
                    repo: "library/redis".into(),
                    last_used: 1,
                },
                bytes: 500,
            },
        ];
        // 1000 + 500 images, 250 build cache
        r.reclaimed_bytes = 1750;
        r.disks = vec![DiskReport {
            path: "/var/lib/do\"cker".into(),
            used_bytes: 75,
            avail_bytes: 25,
            percent: 75,
        }];
        r.cache = Some(CacheReport {
            images: 4,
            bytes: 4096,
        });
        r.evict_queue = Some(3);
        r
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_pruned_run_renders_every_family() {
        let r = pruned();
        let mut s = MetricsState::default();
        s.update(&r, &info(1000));
        let text = render(&r, &s, &info(1000));
        let l = lines(&text);
        // hand-derived from the report above
        for want in [
            "ci_docker_prune_last_run_timestamp_seconds 1000",
            "ci_docker_prune_last_run_duration_seconds 1.250",
            "ci_docker_prune_last_run_outcome{outcome=\"pruned\"} 1",
            "ci_docker_prune_last_run_outcome{outcome=\"skipped\"} 0",
            "ci_docker_prune_runs_total{outcome=\"pruned\"} 1",
            "ci_docker_prune_runs_total{outcome=\"error\"} 0",
            "ci_docker_prune_removed_total{kind=\"containers\",reason=\"stopped\"} 2",
            "ci_docker_prune_removed_total{kind=\"images\",reason=\"build_leftover\"} 2",
            "ci_docker_prune_removed_total{kind=\"images\",reason=\"least_recently_used\"} 1",
            "ci_docker_prune_removed_total{kind=\"images\",reason=\"superseded\"} 0",
            "ci_docker_prune_removed_total{kind=\"build_cache\",reason=\"older_than_until\"} 1",
            "ci_docker_prune_removed_bytes_total{kind=\"images\",reason=\"build_leftover\"} 1000",
            "ci_docker_prune_removed_bytes_total{kind=\"images\",reason=\"least_recently_used\"} 500",
            "ci_docker_prune_removed_bytes_total{kind=\"build_cache\",reason=\"older_than_until\"} 250",
            "ci_docker_prune_removed_bytes_total{kind=\"containers\",reason=\"stopped\"} 0",
            "ci_docker_prune_disk_usage_percent{path=\"/var/lib/do\\\"cker\"} 75",
            "ci_docker_prune_disk_over_threshold 0",
            "ci_docker_prune_evict_low_watermark_reached 0",
            "ci_docker_prune_gate_open{gate=\"runs\"} 1",
            "ci_docker_prune_cache_images 4",
            "ci_docker_prune_cache_bytes 4096",
            "ci_docker_prune_evict_queue_length 3",
            "ci_docker_prune_last_run_reclaimed_bytes 1750",
        ] {
            assert!(l.contains(&want), "missing {want}:\n{text}");
        }
        // no gate is closed: no closed-since series
        assert!(!text.contains("gate_closed_since"), "{text}");
        // every sample's family has a TYPE line before it
        for line in &l {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE"
            );
        }
    }

    #[test]
    fn counters_add_up_across_runs_and_a_closed_gate_keeps_its_start() {
        let mut s = MetricsState::default();
        s.update(&pruned(), &info(1000));
        // a dry run lists what it would remove: no removal counts
        let mut dry = pruned();
        dry.outcome = Outcome::DryRun;
        s.update(&dry, &info(1500));
        // closed by runs at 2000 and 3000; a run below the threshold at 4000 decides disk only
        let mut closed = |t| {
            let mut r = Report::new(
                Outcome::Skipped,
                vec![gate(Gate::Disk, true), gate(Gate::Runs, false)],
            );
            r.skipped_by = Some(Gate::Runs);
            s.update(&r, &info(t));
        };
        closed(2000);
        closed(3000);
        let mut below = Report::new(Outcome::Skipped, vec![gate(Gate::Disk, false)]);
        below.failures.push(Failure {
            step: Step::Images,
            id: "x".into(),
            error: "e".into(),
        });
        s.update(&below, &info(4000));
        assert_eq!(s.runs.get("pruned"), Some(&1));
        assert_eq!(s.runs.get("dry-run"), Some(&1));
        assert_eq!(s.runs.get("skipped"), Some(&3));
        assert_eq!(
            s.removed.get("containers/stopped"),
            Some(&Tally { count: 2, bytes: 0 })
        );
        assert_eq!(s.failures, 1);
        let g = |n: &str| s.gates.get(n).cloned();
        assert_eq!(
            g("runs"),
            Some(GateState {
                open: false,
                checked: 3000,
                closed_since: Some(2000)
            })
        );
        assert_eq!(
            g("disk"),
            Some(GateState {
                open: false,
                checked: 4000,
                closed_since: Some(4000)
            })
        );
        // the cache as last listed (the run below the threshold listed none)
        assert_eq!(s.cache_observed, Some(1500));
        let text = render(&below, &s, &info(4000));
        assert!(text
            .contains("ci_docker_prune_gate_closed_since_timestamp_seconds{gate=\"runs\"} 2000\n"));
        assert!(text.contains("ci_docker_prune_cache_observed_timestamp_seconds 1500\n"));
        // runs opens again: its closed-since goes
        let open = Report::new(
            Outcome::Pruned,
            vec![gate(Gate::Disk, true), gate(Gate::Runs, true)],
        );
        s.update(&open, &info(5000));
        assert_eq!(s.gates.get("runs").and_then(|g| g.closed_since), None);
    }

    #[test]
    fn state_and_file_are_written_atomically_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out").join("ci-docker-prune.prom");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        write_after_run(&file, Some(dir.path()), &pruned(), &info(1000)).unwrap();
        write_after_run(&file, Some(dir.path()), &pruned(), &info(2000)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("ci_docker_prune_runs_total{outcome=\"pruned\"} 2\n"));
        assert!(text
            .contains("ci_docker_prune_removed_total{kind=\"containers\",reason=\"stopped\"} 4\n"));
        // nothing but the file is left in its directory
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ci-docker-prune.prom"]);
        // a file in a directory that does not exist is an error, named
        let e = write_after_run(
            &dir.path().join("no/such/x.prom"),
            None,
            &pruned(),
            &info(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no/such/x.prom"), "{e}");
    }
}
