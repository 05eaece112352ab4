//! The runner: checks of one group run in spec order, groups run concurrently; each check has
//! a timeout and an optional retry-until-deadline for converging state. Results come back in
//! spec order whatever order they finished in.

use crate::check::{Check, Outcome, Verdict};
use crate::redact::Redactor;
use crate::report::CheckResult;
use crate::spec::CheckSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A check of the catalog paired with its entry in the gate spec.
pub struct Planned<C: ?Sized> {
    pub spec: CheckSpec,
    pub check: Arc<dyn Check<C>>,
}

impl<C: ?Sized> Clone for Planned<C> {
    fn clone(&self) -> Self {
        Planned {
            spec: self.spec.clone(),
            check: Arc::clone(&self.check),
        }
    }
}

/// Progress events, for a live display.
#[derive(Debug, Clone)]
pub enum Progress {
    Started {
        id: String,
    },
    Retrying {
        id: String,
        attempt: u32,
        detail: String,
    },
    Finished(CheckResult),
}

/// How long to wait between attempts of a check with `retry_until_secs`.
pub const RETRY_PAUSE: Duration = Duration::from_millis(1000);

async fn run_one<C: Send + Sync + ?Sized + 'static>(
    p: &Planned<C>,
    ctx: &Arc<C>,
    redactor: &Redactor,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> CheckResult {
    let id = p.spec.id.clone();
    progress(Progress::Started { id: id.clone() });
    let start = Instant::now();
    let timeout = Duration::from_secs(p.spec.timeout_secs);
    let deadline = start + Duration::from_secs(p.spec.retry_until_secs);
    let mut attempt = 1u32;
    let outcome = loop {
        let outcome = match tokio::time::timeout(timeout, p.check.run(ctx)).await {
            Ok(o) => o,
            Err(_) => Outcome::error(format!(
                "timed out after {}s (timeout_secs in the gate spec)",
                p.spec.timeout_secs
            )),
        };
        let settled = outcome.verdict == Verdict::Pass || outcome.verdict == Verdict::Skip;
        if settled || Instant::now() + RETRY_PAUSE >= deadline {
            let mut outcome = outcome;
            if attempt > 1 {
                outcome.detail = format!("{} (after {attempt} attempts)", outcome.detail);
            }
            break outcome;
        }
        progress(Progress::Retrying {
            id: id.clone(),
            attempt,
            detail: redactor.scrub(&outcome.detail),
        });
        tokio::time::sleep(RETRY_PAUSE).await;
        attempt += 1;
    };
    let result = CheckResult {
        id,
        title: p.check.title().to_string(),
        verdict: outcome.verdict,
        // a check that does not apply here does not hold the gate (and only a skip can say so)
        blocking: p.spec.blocking && !(outcome.verdict == Verdict::Skip && outcome.not_applicable),
        duration_ms: start.elapsed().as_millis() as u64,
        detail: redactor.scrub(&outcome.detail),
        evidence: outcome
            .evidence
            .into_iter()
            .map(|mut e| {
                e.command = redactor.scrub(&e.command);
                e.output = redactor.scrub(&e.output);
                e
            })
            .collect(),
    };
    progress(Progress::Finished(result.clone()));
    result
}

/// Run the planned checks against `ctx`. Every detail and evidence string is scrubbed with
/// `redactor` before it leaves the runner (also in progress events).
pub async fn run_checks<C: Send + Sync + ?Sized + 'static>(
    planned: Vec<Planned<C>>,
    ctx: Arc<C>,
    redactor: Redactor,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Vec<CheckResult> {
    // group in first-appearance order, keeping spec order inside a group
    type Group<C> = (String, Vec<(usize, Planned<C>)>);
    let mut groups: Vec<Group<C>> = Vec::new();
    for (i, p) in planned.into_iter().enumerate() {
        let key = p.spec.group_key().to_string();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push((i, p)),
            None => groups.push((key, vec![(i, p)])),
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (_, members) in groups {
        let ctx = Arc::clone(&ctx);
        let redactor = redactor.clone();
        let progress = Arc::clone(&progress);
        set.spawn(async move {
            let mut out = Vec::new();
            for (i, p) in members {
                out.push((i, run_one(&p, &ctx, &redactor, progress.as_ref()).await));
            }
            out
        });
    }
    let mut results: Vec<(usize, CheckResult)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(v) => results.extend(v),
            // a panicking check is a bug; its group's results are lost, so say so loudly
            Err(e) => results.push((
                usize::MAX,
                CheckResult {
                    id: "runner".into(),
                    title: "the runner".into(),
                    verdict: Verdict::Error,
                    blocking: true,
                    duration_ms: 0,
                    detail: format!("a check group panicked: {e}"),
                    evidence: vec![],
                },
            )),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    struct Ctx {
        log: Mutex<Vec<String>>,
        calls: AtomicU32,
    }

    struct Sleepy(&'static str, u64, Verdict);
    #[async_trait]
    impl Check<Ctx> for Sleepy {
        fn id(&self) -> &'static str {
            self.0
        }
        fn title(&self) -> &'static str {
            "sleepy"
        }
        async fn run(&self, ctx: &Ctx) -> Outcome {
            ctx.log.lock().unwrap().push(format!("start {}", self.0));
            tokio::time::sleep(Duration::from_millis(self.1)).await;
            ctx.log.lock().unwrap().push(format!("end {}", self.0));
            Outcome::new(self.2, format!("{} says secret-token-1", self.0))
        }
    }

    struct Flaky;
    #[async_trait]
    impl Check<Ctx> for Flaky {
        fn id(&self) -> &'static str {
            "flaky"
        }
        fn title(&self) -> &'static str {
            "flaky"
        }
        async fn run(&self, ctx: &Ctx) -> Outcome {
            let n = ctx.calls.fetch_add(1, Ordering::SeqCst);
            Outcome::decide(n >= 2, "converged", "not yet")
        }
    }

    fn spec(id: &str, group: Option<&str>, timeout: u64, retry: u64) -> CheckSpec {
        CheckSpec {
            id: id.into(),
            blocking: true,
            timeout_secs: timeout,
            retry_until_secs: retry,
            group: group.map(String::from),
        }
    }

    fn ctx() -> Arc<Ctx> {
        Arc::new(Ctx {
            log: Mutex::new(vec![]),
            calls: AtomicU32::new(0),
        })
    }

    #[tokio::test]
    async fn groups_run_in_order_and_concurrently_results_in_spec_order() {
        let c = ctx();
        let planned: Vec<Planned<Ctx>> = vec![
            Planned {
                spec: spec("a", Some("g"), 5, 0),
                check: Arc::new(Sleepy("a", 200, Verdict::Pass)),
            },
            Planned {
                spec: spec("b", Some("g"), 5, 0),
                check: Arc::new(Sleepy("b", 10, Verdict::Fail)),
            },
            Planned {
                spec: spec("c", None, 5, 0),
                check: Arc::new(Sleepy("c", 50, Verdict::Pass)),
            },
        ];
        let r = Redactor::new();
        r.add("secret-token-1");
        let res = run_checks(planned, c.clone(), r, Arc::new(|_| {})).await;
        let ids: Vec<_> = res.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(res[1].verdict, Verdict::Fail);
        assert!(res.iter().all(|r| !r.detail.contains("secret-token-1")));
        let log = c.log.lock().unwrap().clone();
        let pos = |s: &str| log.iter().position(|x| x == s).unwrap();
        // same group: b starts after a ends; other group: c ends before a ends
        assert!(pos("start b") > pos("end a"));
        assert!(pos("end c") < pos("end a"));
    }

    #[tokio::test]
    async fn timeout_is_an_error() {
        let planned: Vec<Planned<Ctx>> = vec![Planned {
            spec: spec("slow", None, 1, 0),
            check: Arc::new(Sleepy("slow", 3000, Verdict::Pass)),
        }];
        let res = run_checks(planned, ctx(), Redactor::new(), Arc::new(|_| {})).await;
        assert_eq!(res[0].verdict, Verdict::Error);
        assert!(res[0].detail.contains("timed out after 1s"));
    }

    #[tokio::test]
    async fn retry_until_deadline_then_pass() {
        let c = ctx();
        let planned: Vec<Planned<Ctx>> = vec![Planned {
            spec: spec("flaky", None, 5, 10),
            check: Arc::new(Flaky),
        }];
        let res = run_checks(planned, c.clone(), Redactor::new(), Arc::new(|_| {})).await;
        assert_eq!(res[0].verdict, Verdict::Pass);
        assert!(
            res[0].detail.contains("after 3 attempts"),
            "{}",
            res[0].detail
        );
    }

    struct Skips(&'static str, bool);
    #[async_trait]
    impl Check<Ctx> for Skips {
        fn id(&self) -> &'static str {
            self.0
        }
        fn title(&self) -> &'static str {
            "skips"
        }
        async fn run(&self, _: &Ctx) -> Outcome {
            if self.1 {
                Outcome::not_applicable("not NixOS")
            } else {
                Outcome::skip("could not test it now")
            }
        }
    }

    #[tokio::test]
    async fn a_check_that_does_not_apply_is_not_blocking_any_other_skip_is() {
        let planned: Vec<Planned<Ctx>> = vec![
            Planned {
                spec: spec("na", None, 5, 0),
                check: Arc::new(Skips("na", true)),
            },
            Planned {
                spec: spec("skip", None, 5, 0),
                check: Arc::new(Skips("skip", false)),
            },
        ];
        let res = run_checks(planned, ctx(), Redactor::new(), Arc::new(|_| {})).await;
        assert_eq!(res[0].verdict, Verdict::Skip);
        assert!(!res[0].blocking, "a non-applicable skip must not block");
        assert_eq!(res[1].verdict, Verdict::Skip);
        assert!(res[1].blocking, "any other skip blocks");
        let report = crate::Report::new("g", "t", "r", vec![res[0].clone()]);
        assert_eq!(report.exit_code(), 0);
        let report = crate::Report::new("g", "t", "r", res);
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn without_retry_a_failure_is_final() {
        let c = ctx();
        let planned: Vec<Planned<Ctx>> = vec![Planned {
            spec: spec("flaky", None, 5, 0),
            check: Arc::new(Flaky),
        }];
        let res = run_checks(planned, c.clone(), Redactor::new(), Arc::new(|_| {})).await;
        assert_eq!(res[0].verdict, Verdict::Fail);
        assert_eq!(c.calls.load(Ordering::SeqCst), 1);
    }
}
