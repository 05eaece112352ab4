//! `ci-docker-prune --metrics-file` against the real sandbox daemon (issue 21, item 1): after a
//! run the node_exporter textfile parses as Prometheus' text format (the `prometheus-parse`
//! crate, and Prometheus' own `promtool check metrics`), and every value says what the run's
//! `--json` object says; the counters survive into the next run through the state directory;
//! a run below the threshold (which contacts no daemon) still updates what it knows.

mod prune_common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use prune_common::*;
use serde_json::Value;

/// The samples of a textfile, by `name{label="value",...}` (labels sorted).
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn read(path: &Path) -> Metrics {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("metrics file {}: {e}", path.display()));
        promtool_check_metrics(&text);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("parse metrics: {e}\n{text}"));
        // the parser skips what it cannot read: every sample line must have become a sample
        let sample_lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(
            scrape.samples.len(),
            sample_lines,
            "unparsed lines:\n{text}"
        );
        let mut out = HashMap::new();
        for s in scrape.samples {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{}: unexpected value {other:?}", s.metric),
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let key = if labels.is_empty() {
                s.metric.clone()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}}", s.metric, l.join(","))
            };
            assert!(out.insert(key.clone(), v).is_none(), "{key} twice");
        }
        Metrics(out)
    }

    /// `get("removed_total", &[("kind","images"),("reason","build_leftover")])`; labels sorted
    /// by name by the caller.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = if labels.is_empty() {
            format!("ci_docker_prune_{name}")
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("ci_docker_prune_{name}{{{}}}", l.join(","))
        };
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", self.0.keys()))
    }

    fn has(&self, prefix: &str) -> bool {
        self.0
            .keys()
            .any(|k| k.starts_with(&format!("ci_docker_prune_{prefix}")))
    }
}

/// Prometheus' own linter over the file (Debian's `prometheus` package, installed by
/// `.ci/deps`): exit 0 means the exposition is valid and follows its naming rules.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool (Debian package prometheus, see .ci/deps): {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every value of the run's JSON the textfile carries for that run.
fn assert_says_what_the_json_says(m: &Metrics, j: &Value) {
    for o in ["skipped", "pruned", "dry-run", "error"] {
        let want = f64::from(u8::from(j["outcome"] == o));
        assert_eq!(m.get("last_run_outcome", &[("outcome", o)]), want, "{o}");
    }
    assert_eq!(
        m.get("last_run_reclaimed_bytes", &[]),
        n(&j["reclaimed_bytes"])
    );
    assert_eq!(
        m.get("last_run_failures", &[]),
        j["failures"].as_array().map_or(0, Vec::len) as f64
    );
    assert_eq!(
        m.get("last_run_incidents", &[]),
        j["incidents"].as_array().map_or(0, Vec::len) as f64
    );
    let disks = j["disks"].as_array().expect("disks in the JSON");
    assert!(!disks.is_empty());
    for d in disks {
        let path = d["path"].as_str().unwrap();
        assert_eq!(
            m.get("disk_usage_percent", &[("path", path)]),
            n(&d["percent"])
        );
        assert_eq!(
            m.get("disk_used_bytes", &[("path", path)]),
            n(&d["used_bytes"])
        );
        assert_eq!(
            m.get("disk_avail_bytes", &[("path", path)]),
            n(&d["avail_bytes"])
        );
    }
    let max = disks.iter().map(|d| n(&d["percent"])).fold(0.0, f64::max);
    assert_eq!(
        m.get("disk_over_threshold", &[]),
        f64::from(u8::from(max >= 80.0))
    );
    for g in j["gates"].as_array().unwrap() {
        let gate = g["gate"].as_str().unwrap();
        let open = f64::from(u8::from(g["pass"] == true));
        assert_eq!(m.get("gate_open", &[("gate", gate)]), open, "{gate}");
        assert_eq!(
            m.get("gate_checked_timestamp_seconds", &[("gate", gate)]),
            m.get("last_run_timestamp_seconds", &[])
        );
    }
}

/// The removals of one run's JSON by `(kind, reason)`: (count, bytes).
fn removals(j: &Value) -> HashMap<(String, String), (f64, f64)> {
    let mut out: HashMap<(String, String), (f64, f64)> = HashMap::new();
    let len = |k: &str| j["removed"][k].as_array().map_or(0, Vec::len) as f64;
    out.insert(
        ("containers".into(), "stopped".into()),
        (len("containers"), 0.0),
    );
    let mut image_bytes = 0.0;
    for i in j["image_reasons"].as_array().into_iter().flatten() {
        let e = out
            .entry((
                "images".into(),
                i["reason"]["kind"].as_str().unwrap().into(),
            ))
            .or_default();
        e.0 += 1.0;
        e.1 += n(&i["bytes"]);
        image_bytes += n(&i["bytes"]);
    }
    assert_eq!(
        j["image_reasons"].as_array().map_or(0, Vec::len) as f64,
        len("images"),
        "every removed image has its reason"
    );
    out.insert(
        ("build_cache".into(), "older_than_until".into()),
        (len("build_cache"), n(&j["reclaimed_bytes"]) - image_bytes),
    );
    out
}

/// Images the daemon lists with a tag or a repo digest (the cache), and their `Size` summed:
/// a reference model of "kept as cache", from the daemon itself.
fn cache_from_daemon() -> (f64, f64) {
    let images = ccci_tests::block_on(async {
        let d = sb().docker_negotiated().await.unwrap();
        d.list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .unwrap()
    });
    let cached: Vec<_> = images
        .iter()
        .filter(|i| {
            i.repo_tags.iter().any(|t| t != "<none>:<none>")
                || i.repo_digests.iter().any(|d| d != "<none>@<none>")
        })
        .collect();
    (
        cached.len() as f64,
        cached.iter().map(|i| i.size.max(0) as f64).sum(),
    )
}

const KINDS: [(&str, &str); 6] = [
    ("containers", "stopped"),
    ("images", "build_leftover"),
    ("images", "superseded_pull"),
    ("images", "superseded"),
    ("images", "least_recently_used"),
    ("build_cache", "older_than_until"),
];

#[test]
#[serial_test::file_serial(sandbox)]
fn the_textfile_after_a_run_is_valid_and_says_what_the_json_says() {
    let s = seed("metrics");
    let mut clean = Cleanup::default();
    let leftover = load_image(&format!("{s}-a"), 2 * DAY, None);
    clean.images.push(leftover.clone());
    let leftover_size = image_sizes()[&leftover] as f64;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("ci-docker-prune.prom");
    let file_arg = path_str(&file);

    // 1. under pressure: the run prunes
    let ballast = Ballast::fill_to(85);
    let run = prune_with_state_dir(
        &[
            "--path",
            &data_root(),
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
            "--metrics-file",
            &file_arg,
        ],
        state.path(),
    );
    let cache = cache_from_daemon();
    drop(ballast);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "pruned", "{j}");
    assert!(run.removed("images").contains(&leftover), "{j}");
    let m = Metrics::read(&file);
    assert_says_what_the_json_says(&m, &j);
    assert_eq!(m.get("runs_total", &[("outcome", "pruned")]), 1.0);
    // a fresh state: the counters are this run's removals
    let want = removals(&j);
    for (kind, reason) in KINDS {
        let (count, bytes) = want
            .get(&(kind.to_string(), reason.to_string()))
            .copied()
            .unwrap_or_default();
        let l = [("kind", kind), ("reason", reason)];
        assert_eq!(m.get("removed_total", &l), count, "{kind}/{reason}");
        assert_eq!(m.get("removed_bytes_total", &l), bytes, "{kind}/{reason}");
    }
    // the leftover this test loaded is among them, with the size the daemon listed
    assert!(
        m.get(
            "removed_bytes_total",
            &[("kind", "images"), ("reason", "build_leftover")]
        ) >= leftover_size
    );
    // the cache: as the JSON says, and as the daemon lists it after the run
    assert_eq!(m.get("cache_images", &[]), n(&j["cache"]["images"]));
    assert_eq!(m.get("cache_bytes", &[]), n(&j["cache"]["bytes"]));
    assert_eq!(
        (m.get("cache_images", &[]), m.get("cache_bytes", &[])),
        cache
    );
    assert!(cache.0 > 0.0, "the sandbox keeps a cache (its fixture)");
    assert_eq!(m.get("evict_queue_length", &[]), n(&j["evict_queue"]));
    assert_eq!(m.get("threshold_percent", &[]), 80.0);
    assert!(!m.has("gate_closed_since"), "no gate closed");
    let t1 = m.get("last_run_timestamp_seconds", &[]);

    // 2. below the threshold: no request to the daemon, the file still updated
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = prune_with_state_dir(
        &[
            "--path",
            &data_root(),
            "--json",
            "--metrics-file",
            &file_arg,
        ],
        state.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.requests.is_empty(), "{:?}", run.requests);
    let j2 = run.json();
    assert_eq!(j2["outcome"], "skipped");
    let m2 = Metrics::read(&file);
    assert_says_what_the_json_says(&m2, &j2);
    let t2 = m2.get("last_run_timestamp_seconds", &[]);
    assert!(t2 > t1, "{t2} after {t1}");
    assert_eq!(m2.get("gate_open", &[("gate", "disk")]), 0.0);
    assert_eq!(
        m2.get("gate_closed_since_timestamp_seconds", &[("gate", "disk")]),
        t2
    );
    // runs and converge were not decided: their last decision stays, with its time
    assert_eq!(m2.get("gate_open", &[("gate", "runs")]), 1.0);
    assert_eq!(
        m2.get("gate_checked_timestamp_seconds", &[("gate", "runs")]),
        t1
    );
    // the counters survived; the cache is the one last listed, and says when
    assert_eq!(m2.get("runs_total", &[("outcome", "pruned")]), 1.0);
    assert_eq!(m2.get("runs_total", &[("outcome", "skipped")]), 1.0);
    for (kind, reason) in KINDS {
        let l = [("kind", kind), ("reason", reason)];
        assert_eq!(m2.get("removed_total", &l), m.get("removed_total", &l));
        assert_eq!(
            m2.get("removed_bytes_total", &l),
            m.get("removed_bytes_total", &l)
        );
    }
    assert_eq!(m2.get("cache_images", &[]), cache.0);
    assert_eq!(m2.get("cache_observed_timestamp_seconds", &[]), t1);
    assert!(j2.get("cache").is_none(), "{j2}");

    // 3. a second run below the threshold: the disk gate's closed-since stays where it began
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = prune_with_state_dir(
        &["--path", &data_root(), "--metrics-file", &file_arg],
        state.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m3 = Metrics::read(&file);
    assert!(m3.get("last_run_timestamp_seconds", &[]) > t2);
    assert_eq!(
        m3.get("gate_closed_since_timestamp_seconds", &[("gate", "disk")]),
        t2
    );
    assert_eq!(m3.get("runs_total", &[("outcome", "skipped")]), 2.0);
}

/// A metrics file the run cannot write is said in the log; the run's exit code is the
/// prune's, and no temporary file is left behind.
#[test]
fn an_unwritable_metrics_file_is_logged_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing-dir").join("x.prom");
    let bin = ccci_tests::prune_bin().unwrap();
    let out = Command::new(bin)
        .args(["--threshold", "100", "--path", "/", "--metrics-file"])
        .arg(&file)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cannot write metrics file") && stdout.contains("missing-dir/x.prom"),
        "{stdout}"
    );
}
