//! A seeded, deterministic trace of CI churn on one host, generated from [`Params`].
//!
//! The model: a catalog of image *versions* (each a list of layers; layers are shared between
//! the versions of one repository and with a base image family) and a time-ordered list of
//! [`Event`]s. Releases and base rebuilds only add versions to the catalog (a registry change);
//! what the host does with them is the events: CI runs deploy the latest version of a recipe's
//! images as swarm services and tear them down, some runs test an upgrade from the previous
//! release, some leave a stopped one-off container; local builds make new untagged leftovers
//! and build cache; the prune's timer fires daily. The same trace is replayed for every policy.

use std::fmt::Write as _;

/// The trace's parameters (defaults: the reference host, [`Params::reference`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub name: String,
    pub seed: u64,
    /// Simulated days.
    pub days: u32,
    /// Size of the file system holding `/` and the Docker data-root.
    pub disk_bytes: u64,
    /// Usage at the start (the OS and everything not Docker is the difference to the images
    /// present at the start).
    pub start_used_bytes: u64,
    /// Recipes, each with its own app image repository.
    pub app_repos: u32,
    /// Shared service images (databases, caches, proxies) that recipes deploy beside their app.
    pub dep_repos: u32,
    /// Infrastructure services that always run (their images are referenced at all times).
    pub infra_repos: u32,
    /// Base image families (OS + runtime) that images are built on.
    pub bases: u32,
    /// Size of a base family's layers, MiB (log-uniform range).
    pub base_mb: (f64, f64),
    /// Size of an image's own layers (above its base), MiB (log-uniform range).
    pub own_mb: (f64, f64),
    /// Own layers per image.
    pub own_layers: u32,
    /// Mean days between two releases of an app image (Poisson).
    pub app_release_days: f64,
    /// Mean days between two releases of a shared service image.
    pub dep_release_days: f64,
    /// Mean days between two rebuilds of a base family (new base layers; every image built on
    /// it changes all its layers at its next release).
    pub base_rebuild_days: f64,
    /// CI runs per day (Poisson), 70 % of them between 08:00 and 20:00.
    pub runs_per_day: f64,
    /// Run duration, minutes (uniform).
    pub run_minutes: (u32, u32),
    /// Zipf exponent of recipe popularity.
    pub zipf_s: f64,
    /// Shared service images per recipe (uniform, inclusive).
    pub deps_per_recipe: (u32, u32),
    /// Fraction of runs that deploy the previous release first and upgrade to the latest.
    pub upgrade_frac: f64,
    /// Fraction of runs that leave a stopped one-off container of the app image.
    pub oneoff_frac: f64,
    /// Writable-layer size of such a container, MiB (uniform).
    pub oneoff_mb: (f64, f64),
    /// Volume data a running stack writes, MiB (uniform), removed at teardown.
    pub volume_mb: (f64, f64),
    /// Local image builds per day (Poisson).
    pub builds_per_day: f64,
    /// Distinct locally built images (each rebuilt image leaves its predecessor untagged).
    pub build_repos: u32,
    /// Build cache written per build, as a fraction of the rebuilt layers.
    pub build_cache_frac: f64,
    /// Daemon events one service's deploy and teardown emit (container, network, service…);
    /// the daemon keeps only the last 256 for `since` queries.
    pub events_per_service: u32,
    /// The timer's `RandomizedDelaySec`, seconds.
    pub timer_delay_secs: u64,
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: u64 = 1024 * 1024 * 1024;
pub const DAY: i64 = 86_400;

impl Params {
    /// The seed's host: a 64 GiB root, ~19 GiB used at the start, 21 recipe images, 90 days.
    pub fn reference() -> Self {
        Params {
            name: "reference".into(),
            seed: 0x2c0c_1d0c_4e5e_ed01,
            days: 90,
            disk_bytes: 64 * GIB,
            start_used_bytes: 19 * GIB,
            app_repos: 16,
            dep_repos: 5,
            infra_repos: 2,
            bases: 4,
            base_mb: (30.0, 250.0),
            own_mb: (80.0, 900.0),
            own_layers: 4,
            app_release_days: 14.0,
            dep_release_days: 30.0,
            base_rebuild_days: 30.0,
            runs_per_day: 12.0,
            run_minutes: (8, 25),
            zipf_s: 1.0,
            deps_per_recipe: (0, 2),
            upgrade_frac: 0.25,
            oneoff_frac: 0.2,
            oneoff_mb: (5.0, 80.0),
            volume_mb: (50.0, 400.0),
            builds_per_day: 1.5,
            build_repos: 3,
            build_cache_frac: 0.5,
            events_per_service: 16,
            timer_delay_secs: 3600,
        }
    }

    /// Releases every few days, bases rebuilt every two weeks.
    pub fn fast_release() -> Self {
        Params {
            name: "fast-release".into(),
            app_release_days: 3.0,
            dep_release_days: 10.0,
            base_rebuild_days: 14.0,
            ..Self::reference()
        }
    }

    /// Many local builds of more images.
    pub fn build_heavy() -> Self {
        Params {
            name: "build-heavy".into(),
            builds_per_day: 12.0,
            build_repos: 6,
            ..Self::reference()
        }
    }

    /// A host with many rarely run recipes on a disk too small for their churn: 40 recipes
    /// (Zipf 1.2), 6 runs a day, the fast-release cadence, a 40 GiB root with 26 GiB used at
    /// the start. Superseded digests alone do not bring it back under the threshold and many
    /// repositories go weeks without a deploy, so the tier reaches the newest images of idle
    /// repositories (least recently used) and `evict_keep_recent` decides which of them stay.
    pub fn tight_disk() -> Self {
        Params {
            name: "tight-disk".into(),
            disk_bytes: 40 * GIB,
            start_used_bytes: 26 * GIB,
            app_repos: 40,
            runs_per_day: 6.0,
            zipf_s: 1.2,
            events_per_service: 2,
            ..Self::fast_release()
        }
    }

    /// One line per parameter (for the docs).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{}: {} days, disk {:.0} GiB, {:.0} GiB used at start; {} app + {} shared + {} infra repos on {} bases; \
             releases every {}/{} days, bases rebuilt every {} days; {} runs/day ({}–{} min, {:.0} % upgrade tests, \
             {:.0} % leave a stopped container); {} builds/day of {} images",
            self.name,
            self.days,
            self.disk_bytes as f64 / GIB as f64,
            self.start_used_bytes as f64 / GIB as f64,
            self.app_repos,
            self.dep_repos,
            self.infra_repos,
            self.bases,
            self.app_release_days,
            self.dep_release_days,
            self.base_rebuild_days,
            self.runs_per_day,
            self.run_minutes.0,
            self.run_minutes.1,
            self.upgrade_frac * 100.0,
            self.oneoff_frac * 100.0,
            self.builds_per_day,
            self.build_repos
        );
        s
    }
}

/// SplitMix64: small, seeded, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range_f(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.f64()).exp()
    }
    /// Uniform in lo..=hi.
    pub fn range_u(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Exponential with this mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }
    /// A 64-hex-digit digest.
    pub fn hex64(&mut self) -> String {
        let mut s = String::with_capacity(64);
        for _ in 0..4 {
            let _ = write!(s, "{:016x}", self.next_u64());
        }
        s
    }
}

/// What a repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A recipe's app image, deployed by CI runs.
    App,
    /// A shared service image (postgres, redis, …), deployed beside apps.
    Dep,
    /// An always-running infrastructure service's image.
    Infra,
    /// A base image, pulled by local builds (`FROM`, tagged).
    Base,
    /// A locally built image (tagged, no repo digest).
    Build,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub name: String,
    pub kind: RepoKind,
    /// Base family (index into `Trace::bases`).
    pub base: usize,
    /// Versions in release order.
    pub versions: Vec<usize>,
}

/// One image version: what a registry serves under one digest (or, for builds, one local build).
#[derive(Debug, Clone)]
pub struct Version {
    pub repo: usize,
    /// Image id (`sha256:…`).
    pub id: String,
    /// Repo digest (`sha256:…`), `None` for local builds.
    pub digest: Option<String>,
    pub tag: String,
    /// Trace time it was created (released or built), seconds from the trace start (may be < 0).
    pub created: i64,
    pub layers: Vec<usize>,
}

/// A service of a run stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub version: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A CI run deploys its stack: pulls what is missing, creates one running task per service.
    Deploy {
        run: u32,
        services: Vec<ServiceSpec>,
        volume_bytes: u64,
    },
    /// The run upgrades its services to these versions (same names).
    Upgrade {
        run: u32,
        services: Vec<ServiceSpec>,
    },
    /// The run leaves a stopped container of this version.
    OneOff {
        run: u32,
        version: usize,
        rw_bytes: u64,
    },
    /// The run's stack is removed (services, their containers, volumes — never images).
    Teardown { run: u32 },
    /// A local build: uses (pulls if missing) `base`, creates `version` tagged (its predecessor
    /// becomes an untagged leftover) and `cache_bytes` of build cache.
    Build {
        version: usize,
        base: usize,
        cache_bytes: u64,
    },
    /// An untagged image with no repo digest appears (a build leftover, e.g. `docker load`).
    Leftover { version: usize },
    /// The prune's timer fires.
    Timer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// Seconds from the trace start.
    pub t: i64,
    pub ev: Event,
}

/// The generated trace.
#[derive(Debug, Clone)]
pub struct Trace {
    pub params: Params,
    pub layers: Vec<u64>,
    pub repos: Vec<Repo>,
    pub versions: Vec<Version>,
    /// Versions present at the start (the latest of every app, shared and infra repository).
    pub initial: Vec<usize>,
    /// Infra services at the start: (name, version).
    pub infra: Vec<ServiceSpec>,
    /// Bytes in use that are not Docker's.
    pub system_bytes: u64,
    pub events: Vec<Timed>,
}

impl Trace {
    /// The latest version of `repo` released at or before `t`.
    pub fn latest_at(&self, repo: usize, t: i64) -> usize {
        let vs = &self.repos[repo].versions;
        let mut best = vs[0];
        for &v in vs {
            if self.versions[v].created <= t {
                best = v;
            }
        }
        best
    }

    pub fn image_bytes(&self, v: usize) -> u64 {
        self.versions[v]
            .layers
            .iter()
            .map(|&l| self.layers[l])
            .sum()
    }

    /// Uses of every version in time order (deploys, upgrades, one-offs, builds' bases).
    pub fn uses(&self) -> Vec<Vec<i64>> {
        let mut u = vec![Vec::new(); self.versions.len()];
        for e in &self.events {
            match &e.ev {
                Event::Deploy { services, .. } | Event::Upgrade { services, .. } => {
                    for s in services {
                        u[s.version].push(e.t);
                    }
                }
                Event::OneOff { version, .. } => u[*version].push(e.t),
                Event::Build { base, .. } => u[*base].push(e.t),
                Event::Teardown { .. } | Event::Leftover { .. } | Event::Timer => {}
            }
        }
        u
    }
}

struct Builder {
    rng: Rng,
    layers: Vec<u64>,
    repos: Vec<Repo>,
    versions: Vec<Version>,
    /// per base family: versions of its layers over time: (time, layers)
    bases: Vec<Vec<(i64, Vec<usize>)>>,
}

impl Builder {
    fn new_layers(&mut self, total_mb: f64, n: u32) -> Vec<usize> {
        let mut out = Vec::new();
        // uneven split: the lowest own layer (dependencies) is the biggest
        let weights: Vec<f64> = (0..n).map(|i| 1.0 / f64::from(i + 1)).collect();
        let sum: f64 = weights.iter().sum();
        for w in weights {
            let bytes = (total_mb * MIB * w / sum) as u64;
            self.layers.push(bytes.max(4096));
            out.push(self.layers.len() - 1);
        }
        out
    }

    fn base_layers_at(&self, base: usize, t: i64) -> Vec<usize> {
        let mut best = &self.bases[base][0].1;
        for (bt, l) in &self.bases[base] {
            if *bt <= t {
                best = l;
            }
        }
        best.clone()
    }

    fn push_version(
        &mut self,
        repo: usize,
        created: i64,
        layers: Vec<usize>,
        pulled: bool,
    ) -> usize {
        let n = self.repos[repo].versions.len();
        let kind = self.repos[repo].kind;
        let tag = match kind {
            RepoKind::Build => "ci".to_string(),
            RepoKind::Base => "stable".to_string(),
            _ => format!("1.{n}"),
        };
        let v = Version {
            repo,
            id: format!("sha256:{}", self.rng.hex64()),
            digest: pulled.then(|| format!("sha256:{}", self.rng.hex64())),
            tag,
            created,
            layers,
        };
        self.versions.push(v);
        let idx = self.versions.len() - 1;
        self.repos[repo].versions.push(idx);
        idx
    }
}

fn poisson_times(rng: &mut Rng, mean_days: f64, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    if mean_days <= 0.0 {
        return out;
    }
    let mut t = from as f64;
    loop {
        t += rng.exp(mean_days * DAY as f64);
        if t >= to as f64 {
            return out;
        }
        out.push(t as i64);
    }
}

fn zipf_pick(rng: &mut Rng, n: usize, s: f64) -> usize {
    let w: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = w.iter().sum();
    let mut x = rng.f64() * total;
    for (i, wi) in w.iter().enumerate() {
        if x < *wi {
            return i;
        }
        x -= wi;
    }
    n - 1
}

/// A run stack name that the default run-stack pattern matches.
fn stack_name(rng: &mut Rng) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::new();
    for _ in 0..3 {
        s.push(A[(rng.next_u64() % A.len() as u64) as usize] as char);
    }
    let _ = write!(
        s,
        "-{:06x}_ci_commoninternet_net",
        rng.next_u64() & 0xff_ffff
    );
    s
}

/// Generate the trace.
pub fn generate(p: &Params) -> Trace {
    let mut b = Builder {
        rng: Rng::new(p.seed),
        layers: Vec::new(),
        repos: Vec::new(),
        versions: Vec::new(),
        bases: Vec::new(),
    };
    let end = i64::from(p.days) * DAY;
    let history = -60 * DAY;
    // base families and their rebuilds (a rebuild: new layers)
    for _ in 0..p.bases {
        let mb = b.rng.log_uniform(p.base_mb.0, p.base_mb.1);
        let mut versions = Vec::new();
        let first = b.new_layers(mb, 2);
        versions.push((history - DAY, first));
        for t in poisson_times(&mut b.rng, p.base_rebuild_days, history, end) {
            let f = b.rng.range_f(0.95, 1.05);
            let l = b.new_layers(mb * f, 2);
            versions.push((t, l));
        }
        b.bases.push(versions);
    }
    // repositories and their releases
    let add_repo = |b: &mut Builder, name: String, kind: RepoKind| {
        let base = (b.rng.next_u64() % u64::from(p.bases.max(1))) as usize;
        b.repos.push(Repo {
            name,
            kind,
            base,
            versions: Vec::new(),
        });
        b.repos.len() - 1
    };
    let mut apps = Vec::new();
    let mut deps = Vec::new();
    let mut infra = Vec::new();
    let mut base_repos = Vec::new();
    let mut builds = Vec::new();
    for i in 0..p.app_repos {
        apps.push(add_repo(
            &mut b,
            format!("coop-cloud/recipe-{i:02}"),
            RepoKind::App,
        ));
    }
    for i in 0..p.dep_repos {
        deps.push(add_repo(
            &mut b,
            format!("library/service-{i}"),
            RepoKind::Dep,
        ));
    }
    for i in 0..p.infra_repos {
        infra.push(add_repo(
            &mut b,
            format!("library/infra-{i}"),
            RepoKind::Infra,
        ));
    }
    for i in 0..p.bases {
        let r = add_repo(&mut b, format!("library/base-{i}"), RepoKind::Base);
        b.repos[r].base = i as usize;
        base_repos.push(r);
    }
    for i in 0..p.build_repos {
        builds.push(add_repo(
            &mut b,
            format!("ci-build/image-{i}"),
            RepoKind::Build,
        ));
    }
    // base images as repositories: one version per base rebuild
    for (i, &r) in base_repos.iter().enumerate() {
        for (t, l) in b.bases[i].clone() {
            b.push_version(r, t, l, true);
        }
    }
    let release = |b: &mut Builder, repo: usize, mean: f64| {
        let mb = b.rng.log_uniform(p.own_mb.0, p.own_mb.1);
        let base = b.repos[repo].base;
        let created0 = history + (b.rng.f64() * 30.0 * DAY as f64) as i64;
        let mut own = b.new_layers(mb, p.own_layers);
        let mut base_l = b.base_layers_at(base, created0);
        let v0 = [base_l.clone(), own.clone()].concat();
        b.push_version(repo, created0, v0, true);
        for t in poisson_times(&mut b.rng, mean, created0, end) {
            let now_base = b.base_layers_at(base, t);
            if now_base != base_l {
                base_l = now_base;
                own = b.new_layers(mb, p.own_layers);
            } else {
                // a release changes the top k own layers
                let k = b.rng.range_u(1, p.own_layers.saturating_sub(1).max(1)) as usize;
                let keep = own.len() - k;
                let top: f64 = own[keep..].iter().map(|&l| b.layers[l] as f64).sum::<f64>() / MIB;
                let f = b.rng.range_f(0.9, 1.1);
                let fresh = b.new_layers(top * f, k as u32);
                own.truncate(keep);
                own.extend(fresh);
            }
            let layers = [base_l.clone(), own.clone()].concat();
            b.push_version(repo, t, layers, true);
        }
    };
    for &r in &apps {
        release(&mut b, r, p.app_release_days);
    }
    for &r in &deps {
        release(&mut b, r, p.dep_release_days);
    }
    for &r in &infra {
        release(&mut b, r, 0.0);
    }
    let mut events = Vec::new();
    // timer: daily at midnight + randomized delay
    for d in 1..=i64::from(p.days) {
        let delay = (b.rng.next_u64() % p.timer_delay_secs.max(1)) as i64;
        events.push(Timed {
            t: d * DAY + delay,
            ev: Event::Timer,
        });
    }
    // recipes' dependencies
    let recipe_deps: Vec<Vec<usize>> = apps
        .iter()
        .map(|_| {
            let n = b.rng.range_u(p.deps_per_recipe.0, p.deps_per_recipe.1) as usize;
            let mut d: Vec<usize> = Vec::new();
            while d.len() < n.min(deps.len()) {
                let x = deps[(b.rng.next_u64() % deps.len() as u64) as usize];
                if !d.contains(&x) {
                    d.push(x);
                }
            }
            d
        })
        .collect();
    // CI runs
    let trace_shell = Trace {
        params: p.clone(),
        layers: Vec::new(),
        repos: b.repos.clone(),
        versions: b.versions.clone(),
        initial: Vec::new(),
        infra: Vec::new(),
        system_bytes: 0,
        events: Vec::new(),
    };
    let mut run = 0u32;
    for d in 0..i64::from(p.days) {
        let n = poisson_count(&mut b.rng, p.runs_per_day);
        for _ in 0..n {
            let hour = if b.rng.chance(0.7) {
                b.rng.range_f(8.0, 20.0)
            } else {
                let h = b.rng.range_f(0.0, 12.0);
                if h < 8.0 {
                    h
                } else {
                    h + 12.0
                }
            };
            let t0 = d * DAY + (hour * 3600.0) as i64;
            let dur = i64::from(b.rng.range_u(p.run_minutes.0, p.run_minutes.1)) * 60;
            let recipe = zipf_pick(&mut b.rng, apps.len(), p.zipf_s);
            let stack = stack_name(&mut b.rng);
            let app = apps[recipe];
            let latest: Vec<ServiceSpec> = std::iter::once(app)
                .chain(recipe_deps[recipe].iter().copied())
                .enumerate()
                .map(|(i, r)| ServiceSpec {
                    name: format!(
                        "{stack}_{}",
                        if i == 0 {
                            "app".into()
                        } else {
                            format!("svc{i}")
                        }
                    ),
                    version: trace_shell.latest_at(r, t0),
                })
                .collect();
            let prev = {
                let vs = &b.repos[app].versions;
                let cur = latest[0].version;
                let pos = vs.iter().position(|&v| v == cur).unwrap_or(0);
                (pos > 0).then(|| vs[pos - 1])
            };
            let upgrade = prev.is_some() && b.rng.chance(p.upgrade_frac);
            let volume_bytes = (b.rng.range_f(p.volume_mb.0, p.volume_mb.1) * MIB) as u64;
            run += 1;
            if let (true, Some(prev)) = (upgrade, prev) {
                let mut first = latest.clone();
                first[0].version = prev;
                events.push(Timed {
                    t: t0,
                    ev: Event::Deploy {
                        run,
                        services: first,
                        volume_bytes,
                    },
                });
                events.push(Timed {
                    t: t0 + dur / 2,
                    ev: Event::Upgrade {
                        run,
                        services: latest[..1].to_vec(),
                    },
                });
            } else {
                events.push(Timed {
                    t: t0,
                    ev: Event::Deploy {
                        run,
                        services: latest.clone(),
                        volume_bytes,
                    },
                });
            }
            if b.rng.chance(p.oneoff_frac) {
                let rw = (b.rng.range_f(p.oneoff_mb.0, p.oneoff_mb.1) * MIB) as u64;
                events.push(Timed {
                    t: t0 + dur * 3 / 4,
                    ev: Event::OneOff {
                        run,
                        version: latest[0].version,
                        rw_bytes: rw,
                    },
                });
            }
            events.push(Timed {
                t: t0 + dur,
                ev: Event::Teardown { run },
            });
        }
        // local builds
        let n = poisson_count(&mut b.rng, p.builds_per_day);
        for _ in 0..n {
            if builds.is_empty() {
                break;
            }
            let t = d * DAY + (b.rng.range_f(8.0, 20.0) * 3600.0) as i64;
            let repo = builds[(b.rng.next_u64() % builds.len() as u64) as usize];
            let base_fam = b.repos[repo].base;
            let base_v = trace_shell.latest_at(base_repos[base_fam], t);
            let mb = b.rng.log_uniform(p.own_mb.0, p.own_mb.1 / 2.0);
            let k = b.rng.range_u(1, 2);
            let own = b.new_layers(mb, k);
            // the lower own layers of the last build are reused when the base did not change
            let mut layers = b.versions[base_v].layers.clone();
            if let Some(&last) = b.repos[repo].versions.last() {
                let lv = &b.versions[last];
                if lv.layers.starts_with(&layers) {
                    let reuse: Vec<usize> = lv.layers[layers.len()..]
                        .iter()
                        .take(p.own_layers.saturating_sub(k) as usize)
                        .copied()
                        .collect();
                    layers.extend(reuse);
                }
            }
            let fresh: u64 = own.iter().map(|&l| b.layers[l]).sum();
            if layers.len() == b.versions[base_v].layers.len() {
                // first build on this base: all own layers new
                let extra = b.new_layers(mb * 2.0, p.own_layers.saturating_sub(k));
                layers.extend(extra);
            }
            layers.extend(own);
            let v = b.push_version(repo, t, layers, false);
            events.push(Timed {
                t,
                ev: Event::Build {
                    version: v,
                    base: base_v,
                    cache_bytes: (fresh as f64 * p.build_cache_frac) as u64,
                },
            });
        }
    }
    // stable order: by time, then timer after everything else at the same second
    events.sort_by_key(|e| (e.t, matches!(e.ev, Event::Timer)));
    let mut trace = Trace {
        params: p.clone(),
        layers: b.layers,
        repos: b.repos,
        versions: b.versions,
        initial: Vec::new(),
        infra: Vec::new(),
        system_bytes: 0,
        events,
    };
    let initial: Vec<usize> = apps
        .iter()
        .chain(deps.iter())
        .chain(infra.iter())
        .map(|&r| trace.latest_at(r, 0))
        .collect();
    let infra_specs: Vec<ServiceSpec> = infra
        .iter()
        .enumerate()
        .map(|(i, &r)| ServiceSpec {
            name: format!("infra-{i}_app"),
            version: trace.latest_at(r, 0),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let docker: u64 = initial
        .iter()
        .flat_map(|&v| trace.versions[v].layers.iter())
        .filter(|l| seen.insert(**l))
        .map(|&l| trace.layers[l])
        .sum();
    trace.system_bytes = p.start_used_bytes.saturating_sub(docker);
    trace.initial = initial;
    trace.infra = infra_specs;
    trace
}

fn poisson_count(rng: &mut Rng, mean: f64) -> u32 {
    // Knuth; means here are small
    let l = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.f64();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_deterministic_and_shaped_like_the_reference_host() {
        let p = Params::reference();
        let a = generate(&p);
        let b = generate(&p);
        assert_eq!(a.events, b.events);
        assert_eq!(a.layers, b.layers);
        assert_eq!(a.initial.len(), 23);
        let docker: u64 = p.start_used_bytes - a.system_bytes;
        let gib = docker as f64 / GIB as f64;
        assert!((6.0..16.0).contains(&gib), "{gib} GiB of images at start");
        let timers = a.events.iter().filter(|e| e.ev == Event::Timer).count();
        assert_eq!(timers, 90);
        let deploys = a
            .events
            .iter()
            .filter(|e| matches!(e.ev, Event::Deploy { .. }))
            .count();
        assert!((900..1300).contains(&deploys), "{deploys}");
        let mut other = Params::reference();
        other.seed += 1;
        assert_ne!(generate(&other).events, a.events);
    }
}
