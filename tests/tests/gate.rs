//! The gate as tests: each check of gate 2pc is one named test, its evidence in the failure
//! message. Against the shared sandbox by default; against a live host when `CCCI_TARGET`
//! names one (`CCCI_TARGET=local cargo test --test gate` on cc-ci itself). Cargo's test
//! filters select checks by id: `cargo test --test gate -- units.` runs the units checks.
//!
//! The gate runs once (its checks in their groups, as `ccci-verify gate` runs them) and each
//! test reports its check's verdict.

use ccci_core::Verdict;
use ccci_tests::gate::{builtin_spec, explain, run_gate, sandbox_lock, target_from_env};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let gate = std::env::var("CCCI_GATE").unwrap_or_else(|_| "2pc".into());
    let spec = builtin_spec(&gate);
    // the checks the filter selects, with libtest's own matching rules
    let selected: Vec<String> = spec
        .checks
        .iter()
        .map(|c| c.id.clone())
        .filter(|id| match &args.filter {
            Some(f) if args.exact => id == f,
            Some(f) => id.contains(f.as_str()),
            None => true,
        })
        .filter(|id| {
            !args.skip.iter().any(|s| {
                if args.exact {
                    id == s
                } else {
                    id.contains(s.as_str())
                }
            })
        })
        .collect();
    if args.list || selected.is_empty() {
        let trials = spec
            .checks
            .iter()
            .map(|c| Trial::test(c.id.clone(), || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let report = {
        let _lock = sandbox_lock();
        let (name, target) = target_from_env();
        if name == "sandbox" {
            // the sandbox as a CI host has it: the probe image untagged (see the helper)
            ccci_tests::gate::untag_probe_image_if_free(ccci_tests::sandbox());
        }
        run_gate(&spec, &name, target, &selected)
    };
    let trials = report
        .checks
        .iter()
        .map(|c| {
            let verdict = c.verdict;
            let blocking = c.blocking;
            let why = explain(&report, &c.id);
            let t = Trial::test(c.id.clone(), move || match verdict {
                Verdict::Pass => Ok(()),
                Verdict::Skip if !blocking => Ok(()),
                _ => Err(Failed::from(why)),
            });
            if c.verdict == Verdict::Skip && !c.blocking {
                t.with_ignored_flag(true)
            } else {
                t
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
