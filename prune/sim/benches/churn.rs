//! Months of CI churn, every policy on the same traces (`ci_docker_prune_sim`).
//!
//! `cargo bench -p ci-docker-prune-sim --bench churn` — harness-free: it prints the comparison
//! tables (reference, fast-release, build-heavy and tight-disk hosts), the tier's knob and
//! cadence sweeps, the seed sweep (`CHURN_SEEDS` draws per profile, 20 by default) and the
//! wall time of the reference run, and draws `docs/img/churn-{usage,pulls}-{reference,fast-release}.svg`
//! (plotters, SVG backend only). No daemon, no sandbox.
//! `CHURN_NO_PLOTS=1` skips the plots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ci_docker_prune_sim::policies::{EvictSettings, Tiered};
use ci_docker_prune_sim::store::{Pulls, Removal};
use ci_docker_prune_sim::trace::{generate, Params, Trace};
use ci_docker_prune_sim::{
    compulsory_pulls, default_tier, policies, seed_sweep, simulate, sweep_seeds, SimResult,
};
use plotters::prelude::*;

const THRESHOLD: u8 = 80;
const GIB: f64 = (1u64 << 30) as f64;

fn run_all(trace: &Trace, tier: EvictSettings) -> Vec<SimResult> {
    policies(trace, THRESHOLD, tier)
        .into_iter()
        .map(|mut p| simulate(trace, p.as_mut(), THRESHOLD))
        .collect()
}

fn table(trace: &Trace, results: &[SimResult]) -> String {
    let belady = results
        .iter()
        .find(|r| r.policy.starts_with("clairvoyant"))
        .map(|r| r.pulls.bytes)
        .unwrap_or(1)
        .max(1);
    let mut s = String::new();
    s.push_str(&format!("**{}**\n\n", trace.params.describe()));
    s.push_str(
        "| policy | peak | max at timer | days > 80 % | full-disk deploys | pulls: images | layers | GiB | × lower bound | × Belady (heuristic) | evicted (superseded / LRU / other) |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let lb: Pulls = compulsory_pulls(trace);
    for r in results {
        let ev = |k| r.removed.get(&k).copied().unwrap_or(0);
        s.push_str(&format!(
            "| {} | {:.1} % | {:.1} % | {} | {} / {} | {} | {} | {:.1} | {:.2} | {:.2} | {} / {} / {} |\n",
            r.policy,
            r.peak_pct,
            r.max_at_timer_pct,
            r.days_above,
            r.full_deploys,
            r.deploys,
            r.pulls.images,
            r.pulls.layers,
            r.pulls.bytes as f64 / GIB,
            r.pulls.bytes as f64 / lb.bytes.max(1) as f64,
            r.pulls.bytes as f64 / belady as f64,
            ev(Removal::Superseded),
            ev(Removal::Lru),
            ev(Removal::Other),
        ));
    }
    s.push_str(&format!(
        "| lower bound: each new layer pulled once | | | | | {} | {} | {:.1} | 1.00 | {:.2} | |\n",
        lb.images,
        lb.layers,
        lb.bytes as f64 / GIB,
        lb.bytes as f64 / belady as f64
    ));
    s
}

fn short(name: &str) -> String {
    name.split(" (").next().unwrap_or(name).trim().to_string()
}

fn plot_usage(
    path: &Path,
    host: &str,
    results: &[SimResult],
    low: u8,
    days: u32,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Disk usage over {days} days of CI churn ({host} host, max per hour)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..f64::from(days), 20f64..101f64)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("usage of / (%)")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (y, label, color) in [
        (f64::from(THRESHOLD), "threshold 80 %", RED),
        (f64::from(low), "low watermark", BLUE),
    ] {
        chart
            .draw_series(LineSeries::new(
                [(0.0, y), (f64::from(days), y)],
                color.mix(0.5).stroke_width(1),
            ))?
            .label(format!("{label} ({y:.0} %)"))
            .legend(move |(x, yy)| PathElement::new([(x, yy), (x + 18, yy)], color.mix(0.5)));
    }
    for (i, r) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.usage_hourly
                    .iter()
                    .enumerate()
                    .map(|(h, u)| (h as f64 / 24.0, f64::from(*u))),
                color.stroke_width(if r.policy.starts_with("ci-docker-prune + tier") {
                    3
                } else {
                    1
                }),
            ))?
            .label(short(&r.policy))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_pulls(path: &Path, host: &str, results: &[SimResult], days: u32) -> anyhow::Result<()> {
    let max = results
        .iter()
        .map(|r| r.pulls.bytes as f64 / GIB)
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Cumulative registry pulls ({host} host)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..f64::from(days), 0f64..max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("pulled (GiB)")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, r) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.pulled_hourly
                    .iter()
                    .enumerate()
                    .map(|(h, b)| (h as f64 / 24.0, *b as f64 / GIB)),
                color.stroke_width(if r.policy.starts_with("ci-docker-prune + tier") {
                    3
                } else {
                    1
                }),
            ))?
            .label(short(&r.policy))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

fn cadence(traces: &[Trace]) -> String {
    let mut s = String::from(
        "| trace | timer | peak | max at timer | days > 80 % | full-disk deploys | pulled GiB | gaps |\n|---|---|---|---|---|---|---|---|\n",
    );
    for t in traces {
        for every in [None, Some(6), Some(1)] {
            let mut p = Tiered::new(THRESHOLD, default_tier());
            if let Some(h) = every {
                p = p.every(h * 3600);
            }
            let r = simulate(t, &mut p, THRESHOLD);
            s.push_str(&format!(
                "| {} | {} | {:.1} % | {:.1} % | {} | {} | {:.1} | {} |\n",
                t.params.name,
                every.map_or("daily".to_string(), |h| format!("every {h} h")),
                r.peak_pct,
                r.max_at_timer_pct,
                r.days_above,
                r.full_deploys,
                r.pulls.bytes as f64 / GIB,
                r.gaps
            ));
        }
    }
    s
}

fn sweep(trace: &Trace) -> String {
    let mut s = String::from(
        "| low watermark | keep recent | peak | max at timer | days > 80 % | full-disk deploys | pulled GiB | gaps |\n|---|---|---|---|---|---|---|---|\n",
    );
    for low in [60u8, 65, 70, 75] {
        for keep in [0u64, 7, 14, 30] {
            let e = EvictSettings {
                low_watermark: low,
                keep_recent: Duration::from_secs(keep * 86_400),
            };
            let r = simulate(trace, &mut Tiered::new(THRESHOLD, e), THRESHOLD);
            s.push_str(&format!(
                "| {low} % | {keep} d | {:.1} % | {:.1} % | {} | {} | {:.1} | {} |\n",
                r.peak_pct,
                r.max_at_timer_pct,
                r.days_above,
                r.full_deploys,
                r.pulls.bytes as f64 / GIB,
                r.gaps
            ));
        }
    }
    s
}

/// Every policy on `n` seeds of each profile: the worst ratio of pulled bytes to the
/// compulsory lower bound of the same trace, and what `evict_keep_recent` changed.
fn seed_table(profiles: &[Params], n: u32, tier: EvictSettings) -> String {
    let mut s = String::new();
    for base in profiles {
        let seeds = sweep_seeds(base, n);
        let (rows, keep) = seed_sweep(base, &seeds, THRESHOLD, tier);
        s.push_str(&format!(
            "**{}**, {} seeds ({:#x} + 0..{}):\n\n",
            base.name, n, base.seed, n
        ));
        s.push_str("| policy | pulled bytes ÷ lower bound: worst | (seed) | median | images ÷ lower bound: worst | full-disk deploys: most on one seed | seeds with any | peak, all seeds | LRU removals, all seeds |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in &rows {
            s.push_str(&format!(
                "| {} | {:.3} | {:#x} | {:.3} | {:.3} | {} | {} | {:.1} % | {} |\n",
                r.policy,
                r.worst_bytes_ratio,
                r.worst_seed,
                r.median_bytes_ratio,
                r.worst_images_ratio,
                r.max_full_deploys,
                r.seeds_with_full_deploys,
                r.max_peak_pct,
                r.lru_removals
            ));
        }
        s.push_str(&format!(
            "\nkeep-recent ({} d) against 0 d, same seeds: removals differ on {} of {} seeds; {} removals only without the guard\n\n",
            tier.keep_recent.as_secs() / 86_400,
            keep.seeds_changed,
            keep.seeds,
            keep.removals_only_without_guard
        ));
    }
    s
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let tier = default_tier();
    let reference = Params::reference();
    let start = Instant::now();
    let trace = generate(&reference);
    let generated = start.elapsed();
    let results = run_all(&trace, tier);
    let wall = start.elapsed();
    println!("{}", table(&trace, &results));
    println!(
        "reference trace: {} events, generated in {:.0} ms; all {} policies in {:.2} s (release build, goal < 10 s)\n",
        trace.events.len(),
        generated.as_secs_f64() * 1000.0,
        results.len(),
        wall.as_secs_f64()
    );
    for r in &results {
        if r.policy.starts_with("ci-docker-prune + tier") {
            println!(
                "tier: usage-state gaps (lost event windows) at {} of {} timer runs\n",
                r.gaps, reference.days
            );
        }
    }
    let variants: Vec<Trace> = [
        Params::fast_release(),
        Params::build_heavy(),
        Params::tight_disk(),
    ]
    .iter()
    .map(generate)
    .collect();
    let mut plotted = vec![(reference.name.clone(), results)];
    for t in &variants {
        let r = run_all(t, tier);
        println!("{}", table(t, &r));
        if t.params.name == "fast-release" {
            plotted.push((t.params.name.clone(), r));
        }
    }
    println!(
        "tier knobs on the fast-release trace:\n\n{}",
        sweep(&variants[0])
    );
    let all = [trace.clone(), variants[0].clone(), variants[1].clone()];
    println!("the tier's timer cadence:\n\n{}", cadence(&all));
    let n: u32 = std::env::var("CHURN_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let start = Instant::now();
    let profiles = [
        reference.clone(),
        Params::fast_release(),
        Params::build_heavy(),
        Params::tight_disk(),
    ];
    println!(
        "seed sweep (every policy, {n} draws per profile):\n\n{}",
        seed_table(&profiles, n, tier)
    );
    println!(
        "seed sweep: {} traces in {:.1} s\n",
        n as usize * profiles.len(),
        start.elapsed().as_secs_f64()
    );
    if std::env::var_os("CHURN_NO_PLOTS").is_none() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
        std::fs::create_dir_all(&dir)?;
        for (host, results) in &plotted {
            let u = dir.join(format!("churn-usage-{host}.svg"));
            let p = dir.join(format!("churn-pulls-{host}.svg"));
            plot_usage(&u, host, results, tier.low_watermark, reference.days)?;
            plot_pulls(&p, host, results, reference.days)?;
            println!("plots: {} {}", u.display(), p.display());
        }
    }
    Ok(())
}
