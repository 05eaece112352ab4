//! Speed of the unit extractor: the fixture corpus file by file, the repository's own
//! module, and a large synthetic module (2 000 services). `cargo bench -p ccci-nix`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nix");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "nix"))
                .filter_map(|p| {
                    let text = std::fs::read_to_string(&p).ok()?;
                    Some((p.file_name()?.to_string_lossy().into_owned(), text))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn large_module(n: usize) -> String {
    let mut s = String::from("{ config, lib, ... }:\nwith lib;\nlet cfg = config.x; in {\n  config = mkIf cfg.enable {\n");
    for i in 0..n {
        s.push_str(&format!(
            "    systemd.services.\"svc-{i}\" = {{ serviceConfig.ExecStart = \"/bin/true {i}\"; startAt = optional cfg.timers \"daily\"; }};\n"
        ));
    }
    s.push_str("  };\n}\n");
    s
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("fixture-corpus", |b| {
        b.iter(|| {
            for (name, text) in &files {
                let _ = black_box(ccci_nix::extract_units(name, text));
            }
        })
    });
    let module = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix/modules/docker-prune.nix"),
    )
    .unwrap_or_default();
    g.throughput(Throughput::Bytes(module.len() as u64));
    g.bench_function("repo-module", |b| {
        b.iter(|| black_box(ccci_nix::extract_units("m.nix", &module)))
    });
    let large = large_module(2_000);
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.sample_size(20);
    g.bench_function("2000-services", |b| {
        b.iter(|| black_box(ccci_nix::extract_units("big.nix", &large)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
