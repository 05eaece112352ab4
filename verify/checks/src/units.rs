//! `units.*`: the legacy timer is gone, the prune timer is active, the prune service is
//! loaded and its last run did not fail — decided from `systemctl show` properties.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Outcome, Trail};
use ccci_host::UnitState;
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![
        Arc::new(LegacyTimerAbsent),
        Arc::new(PruneTimerActive),
        Arc::new(PruneServiceLoaded),
    ]
}

/// Decision of `units.legacy-timer-absent` on a parsed state.
pub fn decide_legacy_absent(s: &UnitState) -> Outcome {
    if s.is_not_found() && !s.has_unit_file() {
        Outcome::pass(format!("{}: LoadState=not-found and no unit file", s.name))
    } else if s.is_masked_inert() {
        // masked is absent, stricter: systemd can never start it (NixOS renders
        // `enable = false` this way; Debian's `systemctl mask`)
        Outcome::pass(format!(
            "{}: masked and inactive (LoadState=masked ActiveState={} FragmentPath={}): systemd can never start it",
            s.name,
            s.active_state,
            if s.fragment_path.is_empty() { "(none)" } else { &s.fragment_path }
        ))
    } else {
        Outcome::fail(format!(
            "{} still exists: {} — remove it (on NixOS: virtualisation.docker.autoPrune.enable = false)",
            s.name,
            s.summary()
        ))
    }
}

/// Decision of `units.prune-timer-active`: loaded, enabled (a `.wants/` symlink that survives
/// a reboot), active, scheduled, and it triggers `service` (a timer pointed at another unit by
/// `Unit=` would never run the prune).
pub fn decide_timer_active(s: &UnitState, service: &str) -> Outcome {
    let mut missing = Vec::new();
    let triggers = s.triggers();
    if s.is_loaded() && !triggers.iter().any(|u| u == service) {
        missing.push(format!(
            "Triggers={} (want {service})",
            if triggers.is_empty() {
                "(none)".to_string()
            } else {
                triggers.join(" ")
            }
        ));
    }
    if !s.is_loaded() {
        missing.push(format!("LoadState={} (want loaded)", s.load_state));
    }
    if !s.is_enabled() {
        missing.push(format!(
            "UnitFileState={} (want enabled)",
            if s.unit_file_state.is_empty() {
                "(none)"
            } else {
                &s.unit_file_state
            }
        ));
    }
    if !s.is_active() {
        missing.push(format!("ActiveState={} (want active)", s.active_state));
    }
    if s.next_elapse().is_none() {
        missing.push("no NextElapseUSecRealtime (the timer is not scheduled)".into());
    }
    if missing.is_empty() {
        Outcome::pass(format!(
            "{} loaded, enabled, active, next elapse {}",
            s.name,
            s.next_elapse().unwrap_or_default()
        ))
    } else {
        Outcome::fail(format!("{}: {}", s.name, missing.join("; ")))
    }
}

/// Decision of `units.prune-service-loaded`.
pub fn decide_service_loaded(s: &UnitState) -> Outcome {
    if !s.is_loaded() {
        return Outcome::fail(format!(
            "{}: LoadState={} (want loaded)",
            s.name, s.load_state
        ));
    }
    if s.last_run_failed() {
        return Outcome::fail(format!(
            "{}: last run failed (ActiveState={}, Result={}); see journalctl -u {}",
            s.name, s.active_state, s.result, s.name
        ));
    }
    Outcome::pass(format!(
        "{} loaded from {}, last result {}",
        s.name,
        s.fragment_path,
        if s.result.is_empty() {
            "(none)"
        } else {
            &s.result
        }
    ))
}

struct LegacyTimerAbsent;
#[async_trait]
impl Check<Ctx> for LegacyTimerAbsent {
    fn id(&self) -> &'static str {
        "units.legacy-timer-absent"
    }
    fn title(&self) -> &'static str {
        "the legacy docker-prune.timer is gone: LoadState=not-found, no unit file"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let state = ctx.unit_state(&mut t, &ctx.params.legacy_timer).await;
        t.conclude(state.map(|s| decide_legacy_absent(&s)))
    }
}

struct PruneTimerActive;
#[async_trait]
impl Check<Ctx> for PruneTimerActive {
    fn id(&self) -> &'static str {
        "units.prune-timer-active"
    }
    fn title(&self) -> &'static str {
        "ci-docker-prune.timer is loaded, enabled and active, with a next elapse"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let state = ctx.unit_state(&mut t, &ctx.params.prune_timer).await;
        t.conclude(state.map(|s| decide_timer_active(&s, &ctx.params.prune_service)))
    }
}

struct PruneServiceLoaded;
#[async_trait]
impl Check<Ctx> for PruneServiceLoaded {
    fn id(&self) -> &'static str {
        "units.prune-service-loaded"
    }
    fn title(&self) -> &'static str {
        "ci-docker-prune.service is loaded and its last run did not fail"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let state = ctx.unit_state(&mut t, &ctx.params.prune_service).await;
        t.conclude(state.map(|s| decide_service_loaded(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict::*;

    fn fixture(name: &str, unit: &str) -> UnitState {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/systemd")
            .join(name);
        let text = std::fs::read_to_string(&p).unwrap();
        ccci_host::parse_show(&text, &[unit]).unwrap().remove(0)
    }

    #[test]
    fn legacy_timer_decisions_on_recorded_states() {
        assert_eq!(
            decide_legacy_absent(&fixture("legacy-timer-not-found.txt", "docker-prune.timer"))
                .verdict,
            Pass
        );
        // masked and inactive is absent, stricter (recorded from systemd 252)
        let masked =
            decide_legacy_absent(&fixture("legacy-timer-masked.txt", "docker-prune.timer"));
        assert_eq!(masked.verdict, Pass, "{}", masked.detail);
        assert!(masked.detail.contains("masked"), "{}", masked.detail);
        // masked after it was started: systemd 252 fails the timer at the reload (it can no
        // longer fire): inert
        let o = decide_legacy_absent(&fixture(
            "legacy-timer-masked-after-start.txt",
            "docker-prune.timer",
        ));
        assert_eq!(o.verdict, Pass, "{}", o.detail);
        // a service masked while it runs keeps running: not absent
        let o = decide_legacy_absent(&fixture(
            "legacy-service-masked-running.txt",
            "docker-prune.service",
        ));
        assert_eq!(o.verdict, Fail, "{}", o.detail);
        for f in [
            "legacy-timer-linked.txt",
            "legacy-timer-stale-file-gone.txt",
        ] {
            assert_eq!(
                decide_legacy_absent(&fixture(f, "docker-prune.timer")).verdict,
                Fail,
                "{f}"
            );
        }
    }

    #[test]
    fn timer_and_service_decisions_on_recorded_states() {
        assert_eq!(
            decide_timer_active(
                &fixture("prune-timer-active.txt", "ci-docker-prune.timer"),
                "ci-docker-prune.service"
            )
            .verdict,
            Pass
        );
        // the same timer pointed at another unit (`Unit=` in a drop-in)
        let o = decide_timer_active(
            &fixture("prune-timer-active.txt", "ci-docker-prune.timer"),
            "other.service",
        );
        assert_eq!(o.verdict, Fail);
        assert!(
            o.detail
                .contains("Triggers=ci-docker-prune.service (want other.service)"),
            "{}",
            o.detail
        );
        let o = decide_timer_active(
            &fixture("prune-timer-disabled.txt", "ci-docker-prune.timer"),
            "ci-docker-prune.service",
        );
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("UnitFileState=disabled") && o.detail.contains("NextElapse"));
        assert_eq!(
            decide_service_loaded(&fixture(
                "prune-service-success.txt",
                "ci-docker-prune.service"
            ))
            .verdict,
            Pass
        );
        assert_eq!(
            decide_service_loaded(&fixture(
                "prune-service-failed.txt",
                "ci-docker-prune.service"
            ))
            .verdict,
            Fail
        );
        // a timer's `not-found` (the unit was never installed) fails the active check
        assert_eq!(
            decide_timer_active(
                &fixture("legacy-timer-not-found.txt", "docker-prune.timer"),
                "docker-prune.service"
            )
            .verdict,
            Fail
        );
    }
}
