//! The result of a run: the `--json` object of the contract, and every log line the run
//! writes (gate decisions, what a dry run would remove, what each removal did, the summary).
//! The wording lives here and nowhere else: journald users and tests grep these lines.

use serde::Serialize;

use crate::gates::{Gate, GateDecision};
use crate::plan::{ImageReason, Plan};
use crate::steps::{Done, Item, Kept, Step};

/// Contract version of the JSON object.
pub const REPORT_VERSION: u32 = 1;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A gate was closed (at the start or before a removal step).
    #[serde(rename = "skipped")]
    Skipped,
    /// Every gate passed and the removal steps ran.
    #[serde(rename = "pruned")]
    Pruned,
    /// Every gate passed; nothing was removed, `removed` lists what would be.
    #[serde(rename = "dry-run")]
    DryRun,
    /// Exit 1 or 2: `error` says why; `removed` lists what was removed before or despite it
    /// (`failures`, `incidents`).
    #[serde(rename = "error")]
    Error,
}

/// One item the daemon failed to remove; the run went on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub step: Step,
    /// The container or image id (empty for the build cache prune).
    pub id: String,
    pub error: String,
}

/// An image the daemon untagged while deleting it: it was tagged between its last check and
/// its delete (a re-tag race). It is gone; the run reports it and exits 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub image: String,
    /// The references the daemon reported `Untagged`.
    pub untagged: Vec<String>,
}

/// Ids removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub build_cache: Vec<String>,
}

impl Removed {
    /// The list a step's removals go into.
    pub fn of_step(&mut self, step: Step) -> &mut Vec<String> {
        match step {
            Step::Containers => &mut self.containers,
            Step::BuildCache => &mut self.build_cache,
            Step::Images | Step::Evict => &mut self.images,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.images.is_empty() && self.build_cache.is_empty()
    }

    /// `2 containers, 3 images, 0 build cache records`
    pub fn summary(&self) -> String {
        format!(
            "{} container{}, {} image{}, {} build cache record{}",
            self.containers.len(),
            plural(self.containers.len()),
            self.images.len(),
            plural(self.images.len()),
            self.build_cache.len(),
            plural(self.build_cache.len()),
        )
    }
}

impl From<&Plan> for Removed {
    fn from(p: &Plan) -> Self {
        Removed {
            containers: p.containers.iter().map(|c| c.id.clone()).collect(),
            images: p.images.iter().map(|i| i.id.clone()).collect(),
            build_cache: p.build_cache.iter().map(|b| b.id.clone()).collect(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The `--json` object: `{"version":1,"outcome":...,"skipped_by":...,"gates":[...],"removed":{...},
/// "reclaimed_bytes":N,"error":null,"failures":[],"incidents":[]}` (the last three additive
/// to v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub version: u32,
    pub outcome: Outcome,
    pub skipped_by: Option<Gate>,
    /// The latest evaluation of the gates, in order, up to the first closed one.
    pub gates: Vec<GateDecision>,
    pub removed: Removed,
    pub reclaimed_bytes: u64,
    /// With outcome `error`: why (the run-level error, or a count of failures and incidents).
    pub error: Option<String>,
    /// Items the daemon failed to remove (the run went on).
    pub failures: Vec<Failure>,
    /// Images the daemon untagged while deleting them.
    pub incidents: Vec<Incident>,
    /// Why each image of `removed.images` went (or, in a dry run, would go): `build_leftover`,
    /// `superseded_pull` (the opt-in), `superseded` and `least_recently_used` (the eviction
    /// tier). Additive to v1; absent when no image is listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_reasons: Vec<RemovedImage>,
    /// The disk has been over the threshold with `runs` or `converge` closed for at least
    /// `gate_stall_warn_after` ([`crate::stall`]). Additive to v1; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Stalled>,
    /// Every measured filesystem at the end of the run (the `--path`s and the daemon's
    /// remembered roots). Additive to v1; absent when nothing could be measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskReport>,
    /// The image store's cache at the end of the run: images that carry a tag or a repo
    /// digest. Additive to v1; absent when the run did not contact the daemon (below the
    /// threshold) or could not list the images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// The eviction tier's queue length when the plan was made (cached pulls it may evict).
    /// Additive to v1; absent when no plan was made or the tier is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evict_queue: Option<u64>,
    /// A run that pruned and found the disk below the threshold before its next step: the
    /// step after which it did, and the `disk` gate's detail then. The run stops there with
    /// outcome `pruned` (its removals relieved the pressure; `gates` keeps the evaluation that
    /// let it prune), the steps after it and the eviction tier idle. Additive to v1; absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_threshold_after: Option<BelowThreshold>,
}

/// The disk found below the threshold after a step of a run that pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BelowThreshold {
    /// The last step that ran.
    pub step: Step,
    /// The `disk` gate's detail when it was checked again (`/ at 62% (< 80%)`).
    pub detail: String,
}

/// The line of a run that pruned its way below the threshold: the steps after `b.step` stop,
/// and the eviction tier (`queued`: its queue, `None` when it is off) stays idle.
pub fn below_threshold_line(b: &BelowThreshold, queued: Option<u64>) -> String {
    let step = match b.step {
        Step::Containers => "stopped containers",
        Step::Images => "build leftovers",
        Step::BuildCache => "build cache",
        Step::Evict => "evictions",
    };
    let tier = match queued {
        Some(n) => format!("; eviction tier idle, {n} cached pull(s) kept"),
        None => String::new(),
    };
    format!(
        "ci-docker-prune: {} after removing the {step} — below the threshold now, nothing more to do{tier}",
        b.detail
    )
}

/// A gate that kept the prune from acting under disk pressure for too long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stalled {
    /// The gate that closed at this run.
    pub gate: Gate,
    /// Unix seconds of the first run over the threshold it stopped.
    pub since: i64,
    /// How long ago that was.
    pub seconds: u64,
    /// Consecutive runs over the threshold stopped by a gate, this one included.
    pub runs: u64,
}

/// The warning of a [`Stalled`] run.
pub fn stalled_line(s: &Stalled, detail: &str) -> String {
    format!(
        "ci-docker-prune: WARNING: the disk has been over the threshold for {} ({} run(s) since {}) while gate {} kept the prune from acting: {detail}",
        humantime::format_duration(std::time::Duration::from_secs(s.seconds)),
        s.runs,
        when(s.since),
        s.gate
    )
}

/// One image of `removed.images` and why it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedImage {
    pub id: String,
    pub reason: ImageReason,
    /// Bytes it reclaimed (or would): the daemon's `Size` of the image the plan chose; 0 for
    /// the untagged parents that went with it (its `Size` counts their layers).
    pub bytes: u64,
}

/// One measured filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskReport {
    pub path: String,
    pub used_bytes: u64,
    pub avail_bytes: u64,
    /// As the disk gate compares it with the threshold (rounded up, as `df`).
    pub percent: u8,
}

impl From<&crate::gates::DiskUsage> for DiskReport {
    fn from(u: &crate::gates::DiskUsage) -> Self {
        DiskReport {
            path: u.path.display().to_string(),
            used_bytes: u.used,
            avail_bytes: u.avail,
            percent: u.percent(),
        }
    }
}

/// The images the store keeps as the cache: every image with a tag or a repo digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CacheReport {
    pub images: u64,
    /// The sum of the daemon's `Size` of each (layers shared between images count once per
    /// image: an upper bound of the disk they take).
    pub bytes: u64,
}

impl CacheReport {
    /// The cache among the images the daemon lists.
    pub fn of(images: &[crate::answers::ImageInfo]) -> Self {
        let cached = images.iter().filter(|i| {
            !crate::plan::is_untagged(&i.repo_tags) || !crate::plan::has_no_digest(&i.repo_digests)
        });
        cached.fold(CacheReport::default(), |c, i| CacheReport {
            images: c.images + 1,
            bytes: c.bytes + i.size.max(0) as u64,
        })
    }
}

impl Report {
    pub fn new(outcome: Outcome, gates: Vec<GateDecision>) -> Self {
        Report {
            version: REPORT_VERSION,
            outcome,
            skipped_by: None,
            gates,
            removed: Removed::default(),
            reclaimed_bytes: 0,
            error: None,
            failures: Vec::new(),
            incidents: Vec::new(),
            image_reasons: Vec::new(),
            stalled: None,
            disks: Vec::new(),
            cache: None,
            evict_queue: None,
            below_threshold_after: None,
        }
    }

    /// A run that could not start: a usage or config error (exit 2) or a runtime error before
    /// any gate (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        let mut r = Report::new(Outcome::Error, Vec::new());
        r.error = Some(message.into());
        r
    }

    /// The outcome becomes `error` when there is an error, a failed item or an incident; the
    /// error then says what went wrong.
    pub fn settle(mut self) -> Self {
        if self.error.is_none() && (!self.failures.is_empty() || !self.incidents.is_empty()) {
            let mut parts = Vec::new();
            if !self.failures.is_empty() {
                parts.push(format!(
                    "{} removal{} failed",
                    self.failures.len(),
                    plural(self.failures.len())
                ));
            }
            if !self.incidents.is_empty() {
                parts.push(format!(
                    "{} image{} untagged by its delete (tagged after it was checked)",
                    self.incidents.len(),
                    plural(self.incidents.len())
                ));
            }
            self.error = Some(parts.join("; "));
        }
        if self.error.is_some() {
            self.outcome = Outcome::Error;
        }
        self
    }

    /// Exit code of a run that produced this report: 1 when its outcome is `error` (a usage
    /// error is the CLI's to map to 2), else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.outcome == Outcome::Error)
    }

    /// One-object JSON, as printed by `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Serializing plain strings and numbers cannot fail; keep a valid object anyway.
            format!("{{\"version\":1,\"error\":\"{e}\"}}")
        })
    }

    /// The final summary line.
    pub fn summary_line(&self) -> String {
        let mb = human_bytes(self.reclaimed_bytes);
        match self.outcome {
            Outcome::Skipped => {
                let gate = self.skipped_by.map(Gate::as_str).unwrap_or("?");
                if self.removed.is_empty() {
                    format!("ci-docker-prune: skipped by gate {gate}, nothing removed")
                } else {
                    format!(
                        "ci-docker-prune: stopped by gate {gate} after removing {}; reclaimed {mb}",
                        self.removed.summary()
                    )
                }
            }
            Outcome::Pruned => format!(
                "ci-docker-prune: pruned {}; reclaimed {mb}",
                self.removed.summary()
            ),
            Outcome::DryRun => format!(
                "ci-docker-prune: dry run, would remove {}; would reclaim {mb}",
                self.removed.summary()
            ),
            Outcome::Error => format!(
                "ci-docker-prune: finished with errors after removing {}; reclaimed {mb}: {}",
                self.removed.summary(),
                self.error.as_deref().unwrap_or("error")
            ),
        }
    }
}

/// The eviction tier's own lines (its items' lines are [`would_remove_lines`] and
/// [`done_lines`], with the tier's reasons).
pub mod evict_lines {
    use crate::gates::{DiskUsage, GateDecision};

    /// Below the threshold once the steps before went: nothing to evict.
    pub fn idle(after: &GateDecision, queued: usize) -> String {
        format!(
            "ci-docker-prune: image data: {} after the leftovers — eviction tier idle, {queued} cached pull(s) kept",
            after.detail
        )
    }

    /// Still at or above the threshold: the tier starts.
    pub fn start(after: &GateDecision, queued: usize, low: u8) -> String {
        format!(
            "ci-docker-prune: image data: {} after the leftovers — eviction tier: {queued} unreferenced cached pull(s) may go, least recently used first, down to {low}%",
            after.detail
        )
    }

    /// The low watermark is reached on `at` (the fullest filesystem of the image data).
    pub fn reached(at: &DiskUsage, low: u8) -> String {
        format!(
            "ci-docker-prune: {} at {}% (≤ {low}%) — eviction done",
            at.path.display(),
            at.percent()
        )
    }

    /// The queue ran out above the low watermark.
    pub fn exhausted(at: &DiskUsage, low: u8) -> String {
        format!(
            "ci-docker-prune: {} at {}% (> {low}%) — nothing more may be evicted: the rest is referenced by a service, used by a container, tagged, or the newest image of a recently deployed repository",
            at.path.display(),
            at.percent()
        )
    }

    /// Removals stopped lowering usage of the image data's filesystems.
    pub fn no_relief(usage: &[DiskUsage], n: usize) -> String {
        let at: Vec<String> = usage
            .iter()
            .map(|u| format!("{} at {}%", u.path.display(), u.percent()))
            .collect();
        format!(
            "ci-docker-prune: {} — eviction stopped: the last {n} removals freed less than 1 MiB each there; the space is held by something else",
            at.join(", ")
        )
    }

    /// The filesystem (`f_type`) has not counted everything the removals freed yet: the tier
    /// went by `shown`, `seen` is what it measured.
    pub fn pending(seen: &DiskUsage, shown: &DiskUsage, f_type: i64) -> String {
        let fs = match f_type {
            crate::settle::BTRFS_MAGIC => "btrfs",
            crate::settle::ZFS_MAGIC => "zfs",
            _ => "the filesystem",
        };
        format!(
            "ci-docker-prune: {} measured at {}%, {}% counting the {:.1} MiB the removals freed that {fs} has not counted yet (it frees later)",
            seen.path.display(),
            seen.percent(),
            shown.percent(),
            seen.used.saturating_sub(shown.used) as f64 / f64::from(1u32 << 20)
        )
    }

    /// The references cannot be listed again before a removal.
    pub fn unverifiable() -> String {
        "ci-docker-prune: eviction stopped: the swarm's services cannot be listed again, so what the next removal would delete cannot be checked".to_string()
    }

    /// The queue is empty.
    pub fn nothing_queued() -> String {
        "ci-docker-prune: eviction tier: no cached pull may go".to_string()
    }

    /// Where the image data lives cannot be measured from here.
    pub fn unmeasurable(why: &str, queued: usize) -> String {
        format!(
            "ci-docker-prune: eviction tier: cannot measure the filesystem of the daemon's image data ({why}) — evicting nothing, {queued} cached pull(s) kept"
        )
    }

    /// A dry run's estimate stops before the end of the queue.
    pub fn rest(more: usize) -> String {
        format!(
            "ci-docker-prune: {more} more cached pull(s) in the eviction queue, evicted only if the disk is still above the low watermark"
        )
    }
}

/// The line for one gate decision.
pub fn gate_line(d: &GateDecision) -> String {
    let tail = match (d.gate, d.pass) {
        (Gate::Disk, false) => " — keeping local image cache, nothing to do",
        (Gate::Disk, true) => " — disk under pressure",
        (Gate::Runs, false) => " — never prune during a CI run, nothing to do",
        (Gate::Converge, false) => " — a deploy may be pulling, nothing to do",
        (Gate::Runs | Gate::Converge, true) => "",
    };
    format!("ci-docker-prune: {}{}", d.detail, tail)
}

/// The dry run's lines for one item (the build cache prune: one per record it would remove).
pub fn would_remove_lines(item: &Item) -> Vec<String> {
    match item {
        Item::Container(c) => vec![format!(
            "ci-docker-prune: would remove stopped container {} ({}, {})",
            short(&c.id),
            c.name,
            c.state
        )],
        Item::Image(i) => vec![format!(
            "ci-docker-prune: would remove image {} ({}, {})",
            short(&i.id),
            reason_text(&i.reason),
            human_bytes(i.size.max(0) as u64)
        )],
        Item::BuildCache { predicted, .. } => predicted
            .iter()
            .map(|b| {
                format!(
                    "ci-docker-prune: would remove build cache {} ({}, {})",
                    b.id,
                    b.kind,
                    human_bytes(b.size.max(0) as u64)
                )
            })
            .collect(),
    }
}

/// The lines for what removing one item did: none for an image that already went with a
/// child; an incident gets a line of its own.
pub fn done_lines(item: &Item, done: &Done) -> Vec<String> {
    let line = match (item, done) {
        (_, Done::WentWithChild) => return Vec::new(),
        (Item::Container(c), Done::Removed { .. }) => format!(
            "ci-docker-prune: removed stopped container {} ({}, {})",
            short(&c.id),
            c.name,
            c.state
        ),
        (Item::Container(c), Done::Kept(Kept::InUse(msg))) => format!(
            "ci-docker-prune: kept container {} ({}): {msg}",
            short(&c.id),
            c.name
        ),
        // Containers are not re-inspected: only an image can be kept for its references.
        (Item::Container(_), Done::Kept(Kept::Referenced(_) | Kept::ReferencedNow(_))) => {
            return Vec::new()
        }
        (Item::Container(c), Done::Gone) => {
            format!("ci-docker-prune: container {} already gone", short(&c.id))
        }
        (Item::Container(c), Done::Failed(e)) => format!(
            "ci-docker-prune: failed to remove stopped container {} ({}): {e} — going on with the next item",
            short(&c.id),
            c.name
        ),
        (Item::Image(i), Done::Removed { ids, untagged, .. }) => {
            let parents = ids.len().saturating_sub(1);
            let removed = format!(
                "ci-docker-prune: removed image {} ({}, {}){}",
                short(&i.id),
                reason_text(&i.reason),
                human_bytes(i.size.max(0) as u64),
                if parents == 0 {
                    String::new()
                } else {
                    format!(" with {parents} untagged parent image(s)")
                }
            );
            if untagged.is_empty() {
                removed
            } else {
                return vec![
                    removed,
                    format!(
                        "ci-docker-prune: INCIDENT: image {} was tagged {} after its last check; \
                         the daemon untagged and deleted it",
                        short(&i.id),
                        untagged.join(", ")
                    ),
                ];
            }
        }
        (Item::Image(i), Done::Kept(k)) => {
            format!("ci-docker-prune: kept image {}: {}", short(&i.id), kept_text(k))
        }
        (Item::Image(i), Done::Gone) => {
            format!("ci-docker-prune: image {} already gone", short(&i.id))
        }
        (Item::Image(i), Done::Failed(e)) => format!(
            "ci-docker-prune: failed to remove image {}: {e} — going on with the next item",
            short(&i.id)
        ),
        (Item::BuildCache { until, .. }, Done::Removed { ids, bytes, .. }) => format!(
            "ci-docker-prune: removed {} build cache record(s) older than {} ({})",
            ids.len(),
            humantime::format_duration(*until),
            human_bytes(*bytes)
        ),
        (Item::BuildCache { .. }, Done::Failed(e)) => {
            format!("ci-docker-prune: failed to prune build cache: {e}")
        }
        // The build cache prune is one request that removes what it removes: it neither
        // conflicts nor finds its target gone.
        (Item::BuildCache { .. }, Done::Kept(_) | Done::Gone) => return Vec::new(),
    };
    vec![line]
}

fn kept_text(k: &Kept) -> String {
    match k {
        Kept::InUse(msg) => format!("in use now ({msg})"),
        Kept::Referenced(refs) => format!(
            "tagged or pulled since it was listed ({}), never deleted",
            refs.join(", ")
        ),
        Kept::ReferencedNow(who) => format!("referenced since the plan was made by {who}"),
    }
}

/// An id as the log shows it: 12 hex digits, no `sha256:`.
pub fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

fn reason_text(r: &ImageReason) -> String {
    match r {
        ImageReason::BuildLeftover => "untagged build leftover, no repo digest".into(),
        ImageReason::SupersededPull { repo } => {
            format!("superseded cached pull of {repo}, opt-in")
        }
        ImageReason::Superseded { repo, last_used } => format!(
            "eviction tier: superseded cached pull of {repo}, last used {}",
            when(*last_used)
        ),
        ImageReason::LeastRecentlyUsed { repo, last_used } => format!(
            "eviction tier: least recently used cached pull of {repo}, last used {}",
            when(*last_used)
        ),
    }
}

/// A unix time as the log shows it (UTC, to the second).
pub fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `1.5 MB` style (decimal units, as docker prints them).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(g: Gate, pass: bool, detail: &str) -> GateDecision {
        GateDecision {
            gate: g,
            pass,
            detail: detail.into(),
        }
    }

    #[test]
    fn json_shape_skipped_by_disk() {
        let mut r = Report::new(
            Outcome::Skipped,
            vec![gate(Gate::Disk, false, "/ at 31% (< 80%)")],
        );
        r.skipped_by = Some(Gate::Disk);
        insta::assert_snapshot!(r.to_json(), @r#"{"version":1,"outcome":"skipped","skipped_by":"disk","gates":[{"gate":"disk","pass":false,"detail":"/ at 31% (< 80%)"}],"removed":{"containers":[],"images":[],"build_cache":[]},"reclaimed_bytes":0,"error":null,"failures":[],"incidents":[]}"#);
        assert_eq!(
            r.summary_line(),
            "ci-docker-prune: skipped by gate disk, nothing removed"
        );
    }

    #[test]
    fn json_shape_pruned_and_dry_run() {
        let gates = vec![
            gate(Gate::Disk, true, "/ at 85% (≥ 80%)"),
            gate(
                Gate::Runs,
                true,
                "no live run stack (0 of 1 services match ^x)",
            ),
            gate(Gate::Converge, true, "all 1 services converged"),
        ];
        let mut r = Report::new(Outcome::Pruned, gates);
        r.removed.containers.push("c1".into());
        r.removed.images.push("sha256:i1".into());
        r.reclaimed_bytes = 1_500_000;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        insta::assert_json_snapshot!(v, @r#"
        {
          "error": null,
          "failures": [],
          "gates": [
            {
              "detail": "/ at 85% (≥ 80%)",
              "gate": "disk",
              "pass": true
            },
            {
              "detail": "no live run stack (0 of 1 services match ^x)",
              "gate": "runs",
              "pass": true
            },
            {
              "detail": "all 1 services converged",
              "gate": "converge",
              "pass": true
            }
          ],
          "incidents": [],
          "outcome": "pruned",
          "reclaimed_bytes": 1500000,
          "removed": {
            "build_cache": [],
            "containers": [
              "c1"
            ],
            "images": [
              "sha256:i1"
            ]
          },
          "skipped_by": null,
          "version": 1
        }
        "#);
        assert_eq!(
            r.summary_line(),
            "ci-docker-prune: pruned 1 container, 1 image, 0 build cache records; reclaimed 1.5 MB"
        );
        r.outcome = Outcome::DryRun;
        assert!(r.to_json().contains("\"outcome\":\"dry-run\""));
        assert!(r
            .summary_line()
            .starts_with("ci-docker-prune: dry run, would remove"));
    }

    #[test]
    fn item_lines_keep_their_wording() {
        use crate::plan::{BuildCacheCandidate, ContainerCandidate, ImageCandidate};
        use std::time::Duration;
        let c = ContainerCandidate {
            id: "3f2a9c1b7d4e0123".into(),
            name: "old-job".into(),
            state: "exited".into(),
            created: 0,
        };
        let i = ImageCandidate {
            id: "sha256:6ad63ac098b1ffff".into(),
            size: 12_300_000,
            created: 0,
            reason: ImageReason::BuildLeftover,
        };
        let pull = ImageCandidate {
            reason: ImageReason::SupersededPull {
                repo: "redis".into(),
            },
            ..i.clone()
        };
        let b = [BuildCacheCandidate {
            id: "rec1".into(),
            kind: "regular".into(),
            size: 10_300,
        }];
        let (c, i, pull) = (Item::Container(&c), Item::Image(&i), Item::Image(&pull));
        let bc = Item::BuildCache {
            until: Duration::from_secs(86_400),
            predicted: &b,
        };
        assert_eq!(
            would_remove_lines(&c),
            ["ci-docker-prune: would remove stopped container 3f2a9c1b7d4e (old-job, exited)"]
        );
        assert_eq!(
            would_remove_lines(&i),
            ["ci-docker-prune: would remove image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB)"]
        );
        assert_eq!(
            would_remove_lines(&pull),
            ["ci-docker-prune: would remove image 6ad63ac098b1 (superseded cached pull of redis, opt-in, 12.3 MB)"]
        );
        assert_eq!(
            would_remove_lines(&bc),
            ["ci-docker-prune: would remove build cache rec1 (regular, 10.3 kB)"]
        );
        let removed = |ids: &[&str], untagged: &[&str]| Done::Removed {
            ids: ids.iter().map(|p| p.to_string()).collect(),
            bytes: 10_300,
            untagged: untagged.iter().map(|p| p.to_string()).collect(),
        };
        let kept = Done::Kept(Kept::InUse("conflict: image is being used".into()));
        let line = |item: &Item, done: &Done| done_lines(item, done).join("\n");
        assert_eq!(
            line(&c, &removed(&["x"], &[])),
            "ci-docker-prune: removed stopped container 3f2a9c1b7d4e (old-job, exited)"
        );
        assert_eq!(
            line(&c, &kept),
            "ci-docker-prune: kept container 3f2a9c1b7d4e (old-job): conflict: image is being used"
        );
        assert_eq!(
            line(&c, &Done::Gone),
            "ci-docker-prune: container 3f2a9c1b7d4e already gone"
        );
        assert_eq!(
            line(&c, &Done::Failed("Docker API error during remove container: driver failed".into())),
            "ci-docker-prune: failed to remove stopped container 3f2a9c1b7d4e (old-job): Docker API error during remove container: driver failed — going on with the next item"
        );
        assert_eq!(
            line(&i, &removed(&["x"], &[])),
            "ci-docker-prune: removed image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB)"
        );
        assert_eq!(
            line(&i, &removed(&["x", "sha256:p1", "sha256:p2"], &[])),
            "ci-docker-prune: removed image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB) with 2 untagged parent image(s)"
        );
        assert_eq!(
            done_lines(&i, &removed(&["x"], &["app:1"])),
            [
                "ci-docker-prune: removed image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB)",
                "ci-docker-prune: INCIDENT: image 6ad63ac098b1 was tagged app:1 after its last check; the daemon untagged and deleted it"
            ]
        );
        assert_eq!(
            line(&i, &kept),
            "ci-docker-prune: kept image 6ad63ac098b1: in use now (conflict: image is being used)"
        );
        assert_eq!(
            line(&i, &Done::Kept(Kept::Referenced(vec!["app:1".into()]))),
            "ci-docker-prune: kept image 6ad63ac098b1: tagged or pulled since it was listed (app:1), never deleted"
        );
        assert_eq!(
            line(&i, &Done::Gone),
            "ci-docker-prune: image 6ad63ac098b1 already gone"
        );
        assert_eq!(
            line(&i, &Done::Failed("boom".into())),
            "ci-docker-prune: failed to remove image 6ad63ac098b1: boom — going on with the next item"
        );
        assert!(done_lines(&i, &Done::WentWithChild).is_empty());
        assert_eq!(
            line(&bc, &removed(&["a", "b", "c", "d"], &[])),
            "ci-docker-prune: removed 4 build cache record(s) older than 1day (10.3 kB)"
        );
        assert_eq!(
            line(&bc, &Done::Failed("boom".into())),
            "ci-docker-prune: failed to prune build cache: boom"
        );
    }

    #[test]
    fn json_shape_error_is_additive() {
        let mut r = Report::new(
            Outcome::Pruned,
            vec![gate(Gate::Disk, true, "/ at 85% (≥ 80%)")],
        );
        r.removed.containers.push("c2".into());
        r.failures.push(Failure {
            step: Step::Containers,
            id: "c1".into(),
            error: "Docker API error during remove container: boom".into(),
        });
        r.incidents.push(Incident {
            image: "sha256:i1".into(),
            untagged: vec!["app:1".into()],
        });
        let r = r.settle();
        assert_eq!(r.outcome, Outcome::Error);
        assert_eq!(r.exit_code(), 1);
        insta::assert_snapshot!(r.to_json(), @r#"{"version":1,"outcome":"error","skipped_by":null,"gates":[{"gate":"disk","pass":true,"detail":"/ at 85% (≥ 80%)"}],"removed":{"containers":["c2"],"images":[],"build_cache":[]},"reclaimed_bytes":0,"error":"1 removal failed; 1 image untagged by its delete (tagged after it was checked)","failures":[{"step":"containers","id":"c1","error":"Docker API error during remove container: boom"}],"incidents":[{"image":"sha256:i1","untagged":["app:1"]}]}"#);
        assert_eq!(
            r.summary_line(),
            "ci-docker-prune: finished with errors after removing 1 container, 0 images, 0 build cache records; reclaimed 0 B: 1 removal failed; 1 image untagged by its delete (tagged after it was checked)"
        );
        let f =
            Report::failed("invalid threshold '101': expected a whole percentage from 0 to 100");
        assert_eq!(f.exit_code(), 1);
        insta::assert_snapshot!(f.to_json(), @r#"{"version":1,"outcome":"error","skipped_by":null,"gates":[],"removed":{"containers":[],"images":[],"build_cache":[]},"reclaimed_bytes":0,"error":"invalid threshold '101': expected a whole percentage from 0 to 100","failures":[],"incidents":[]}"#);
        // a clean run stays what it was
        let ok = Report::new(Outcome::Pruned, Vec::new()).settle();
        assert_eq!(
            (ok.outcome, ok.exit_code(), ok.error),
            (Outcome::Pruned, 0, None)
        );
    }

    #[test]
    fn eviction_reasons_and_lines() {
        let i = crate::plan::ImageCandidate {
            id: "sha256:0cb13ed57b03ffff".into(),
            size: 189_000_000,
            created: 0,
            reason: ImageReason::Superseded {
                repo: "coop-cloud/app".into(),
                last_used: 1_796_066_800,
            },
        };
        assert_eq!(
            would_remove_lines(&Item::Image(&i)),
            ["ci-docker-prune: would remove image 0cb13ed57b03 (eviction tier: superseded cached pull of coop-cloud/app, last used 2026-11-30 19:26:40 UTC, 189.0 MB)"]
        );
        let mut r = Report::new(Outcome::Pruned, Vec::new());
        assert!(!r.to_json().contains("image_reasons"));
        r.removed.images.push(i.id.clone());
        r.image_reasons.push(RemovedImage {
            id: i.id.clone(),
            reason: ImageReason::LeastRecentlyUsed {
                repo: "library/postgres".into(),
                last_used: 5,
            },
            bytes: 189_000_000,
        });
        assert!(r.to_json().contains(r#""image_reasons":[{"id":"sha256:0cb13ed57b03ffff","reason":{"kind":"least_recently_used","repo":"library/postgres","last_used":5},"bytes":189000000}]"#), "{}", r.to_json());
        let d = GateDecision {
            gate: Gate::Disk,
            pass: true,
            detail: "/var/lib/docker at 84% (≥ 80%)".into(),
        };
        assert_eq!(
            evict_lines::start(&d, 12, 70),
            "ci-docker-prune: image data: /var/lib/docker at 84% (≥ 80%) after the leftovers — eviction tier: 12 unreferenced cached pull(s) may go, least recently used first, down to 70%"
        );
        let at = |used: u64| crate::gates::DiskUsage {
            path: "/var/lib/docker".into(),
            used,
            avail: 100 - used,
        };
        assert_eq!(
            evict_lines::reached(&at(70), 70),
            "ci-docker-prune: /var/lib/docker at 70% (≤ 70%) — eviction done"
        );
        assert_eq!(
            evict_lines::no_relief(&[at(90)], 3),
            "ci-docker-prune: /var/lib/docker at 90% — eviction stopped: the last 3 removals freed less than 1 MiB each there; the space is held by something else"
        );
    }

    #[test]
    fn a_run_below_the_threshold_after_a_step_says_so() {
        let b = BelowThreshold {
            step: Step::Images,
            detail: "/var/lib/docker at 77% (< 80%)".into(),
        };
        assert_eq!(
            below_threshold_line(&b, Some(3)),
            "ci-docker-prune: /var/lib/docker at 77% (< 80%) after removing the build leftovers — below the threshold now, nothing more to do; eviction tier idle, 3 cached pull(s) kept"
        );
        assert_eq!(
            below_threshold_line(&b, None),
            "ci-docker-prune: /var/lib/docker at 77% (< 80%) after removing the build leftovers — below the threshold now, nothing more to do"
        );
        let mut r = Report::new(Outcome::Pruned, Vec::new());
        r.below_threshold_after = Some(b);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v["below_threshold_after"],
            serde_json::json!({"step": "images", "detail": "/var/lib/docker at 77% (< 80%)"})
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_300_000), "12.3 MB");
    }
}
