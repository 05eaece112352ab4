//! `cache.*`: a teardown leaves the probe's image in the store, and a warm redeploy pulls zero
//! layers. Both are decided here from the facts the shared probe recorded ([`crate::probe`]).

use crate::probe::{same_id, ProbeRun};
use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{short, Check, Outcome};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![
        Arc::new(ImageSurvivesTeardown),
        Arc::new(WarmRedeployZeroLayers),
    ]
}

/// An outcome carrying the probe's evidence.
pub(crate) fn with_probe(p: &ProbeRun, o: Outcome) -> Outcome {
    o.with_evidence(p.trail.evidence().iter().cloned())
}

/// The probe did not get as far as `step`: an error with the probe's reason.
pub(crate) fn error_before(p: &ProbeRun, step: &str) -> Outcome {
    with_probe(
        p,
        Outcome::error(format!(
            "the probe failed before {step}: {}",
            p.error.clone().unwrap_or_else(|| "step did not run".into())
        )),
    )
}

/// Decision of `cache.image-survives-teardown`.
pub fn decide_survives_teardown(p: &ProbeRun) -> Outcome {
    let (Some(id), Some(after)) = (&p.image_id, &p.after_teardown) else {
        return error_before(p, "the teardown check");
    };
    let o = match after {
        Some(found) if same_id(found, id) => Outcome::pass(format!(
            "{} survived the teardown of {} (image {} still in the store)",
            p.pinned.clone().unwrap_or_default(),
            p.service,
            short(id)
        )),
        Some(found) => Outcome::fail(format!(
            "the store has {} where the probe ran {}",
            short(found),
            short(id)
        )),
        None => Outcome::fail(format!(
            "image {} is gone after the teardown of {}: the next run re-pulls it",
            short(id),
            p.service
        )),
    };
    with_probe(p, o)
}

/// Decision of `cache.warm-redeploy-zero-layers`.
pub fn decide_warm_redeploy(p: &ProbeRun) -> Outcome {
    let (Some(id), Some(pull), Some(events), Some(id2)) = (
        &p.image_id,
        &p.warm_pull,
        p.redeploy_pull_events,
        &p.redeploy_image_id,
    ) else {
        return error_before(p, "the redeploy completed");
    };
    let mut bad = Vec::new();
    if !pull.downloaded.is_empty() {
        bad.push(format!(
            "the pull downloaded {} layer(s)",
            pull.downloaded.len()
        ));
    }
    // the warm pull's own event must be among them, or the window saw nothing
    if events == 0 {
        return with_probe(
            p,
            Outcome::error(
                "the daemon reported no pull event, not even the warm pull's own: the event window missed the redeploy, so zero pulls is not shown",
            ),
        );
    }
    if events > 1 {
        bad.push(format!(
            "the daemon reported {} extra pull event(s) during the redeploy",
            events - 1
        ));
    }
    if !same_id(id, id2) {
        bad.push(format!(
            "the redeploy runs image {} instead of {}",
            short(id2),
            short(id)
        ));
    }
    let o = if bad.is_empty() {
        Outcome::pass(format!(
            "redeploy converged on image {} with 0 layers pulled ({})",
            short(id),
            pull.final_status
        ))
    } else {
        Outcome::fail(bad.join("; "))
    };
    with_probe(p, o)
}

struct ImageSurvivesTeardown;
#[async_trait]
impl Check<Ctx> for ImageSurvivesTeardown {
    fn id(&self) -> &'static str {
        "cache.image-survives-teardown"
    }
    fn title(&self) -> &'static str {
        "a probe service from redis:7-alpine, removed as a teardown removes it, leaves the image (same id) in the store"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        decide_survives_teardown(crate::probe::get(ctx).await)
    }
}

struct WarmRedeployZeroLayers;
#[async_trait]
impl Check<Ctx> for WarmRedeployZeroLayers {
    fn id(&self) -> &'static str {
        "cache.warm-redeploy-zero-layers"
    }
    fn title(&self) -> &'static str {
        "redeploying pulls zero layers (pull stream and daemon events) and converges"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        decide_warm_redeploy(crate::probe::get(ctx).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{sample, PullStats};
    use ccci_core::Verdict::*;

    #[test]
    fn teardown_decisions() {
        assert_eq!(
            decide_survives_teardown(&sample(Some(Some("sha256:aaaa")), None)).verdict,
            Pass
        );
        assert_eq!(
            decide_survives_teardown(&sample(Some(None), None)).verdict,
            Fail
        );
        let o = decide_survives_teardown(&sample(Some(Some("sha256:bbbb")), None));
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("bbbb"), "{}", o.detail);
        assert_eq!(decide_survives_teardown(&sample(None, None)).verdict, Error);
    }

    /// A redeploy with `events` pull events besides the warm pull's own.
    fn redeployed(downloaded: &[&str], events: usize, id2: &str) -> ProbeRun {
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        p.warm_pull = Some(PullStats {
            downloaded: downloaded.iter().map(|s| s.to_string()).collect(),
            already: Default::default(),
            final_status: "Status: Image is up to date".into(),
        });
        p.redeploy_pull_events = Some(events + 1);
        p.redeploy_image_id = Some(id2.into());
        p
    }

    #[test]
    fn warm_redeploy_decisions() {
        let o = decide_warm_redeploy(&redeployed(&[], 0, "sha256:aaaa"));
        assert_eq!(o.verdict, Pass, "{}", o.detail);
        assert!(o.detail.contains("0 layers pulled"));
        // the same id without its prefix is the same image
        assert_eq!(
            decide_warm_redeploy(&redeployed(&[], 0, "aaaa")).verdict,
            Pass
        );

        let o = decide_warm_redeploy(&redeployed(&["l1", "l2"], 0, "sha256:aaaa"));
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("downloaded 2 layer(s)"), "{}", o.detail);

        let o = decide_warm_redeploy(&redeployed(&[], 1, "sha256:aaaa"));
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("1 extra pull event"), "{}", o.detail);

        let o = decide_warm_redeploy(&redeployed(&[], 0, "sha256:cccc"));
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("instead of aaaa"), "{}", o.detail);

        // no event at all, not even the warm pull's: the window missed them (clock skew)
        let mut p = redeployed(&[], 0, "sha256:aaaa");
        p.redeploy_pull_events = Some(0);
        let o = decide_warm_redeploy(&p);
        assert_eq!(o.verdict, Error);
        assert!(o.detail.contains("no pull event"), "{}", o.detail);

        // the probe stopped before the redeploy: an error with its reason, never a pass
        let mut p = sample(Some(Some("sha256:aaaa")), None);
        p.error = Some("POST /services/create: boom".into());
        let o = decide_warm_redeploy(&p);
        assert_eq!(o.verdict, Error);
        assert!(o.detail.contains("boom"), "{}", o.detail);
    }
}
