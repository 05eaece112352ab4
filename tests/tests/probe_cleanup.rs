//! The probe never stays on the host: every object it creates carries the `ccci.probe` label and
//! its run's deadline; it is removed when the gate is killed mid-probe (SIGTERM), when the
//! probe's check times out, and — should a run die where nothing can clean up — by the next
//! run's sweep of objects past their deadline.

use bollard::models::{
    SecretSpec, ServiceSpec, TaskSpec, TaskSpecContainerSpec, VolumeCreateRequest,
};
use bollard::query_parameters::{
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListVolumesOptionsBuilder,
};
use ccci_checks::probe::{LABEL, LABEL_DEADLINE};
use ccci_tests::bins::verify_bin;
use ccci_tests::{block_on, sandbox, workspace_root};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Names of the services, volumes and secrets in the sandbox that carry the probe label.
fn probe_objects() -> Vec<String> {
    block_on(async {
        let docker = sandbox().docker_negotiated().await.unwrap();
        let mut filters = HashMap::new();
        filters.insert("label", vec![LABEL]);
        let mut out = Vec::new();
        for s in docker
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
        {
            out.push(format!(
                "service {}",
                s.spec.and_then(|s| s.name).unwrap_or_default()
            ));
        }
        let vols = docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap();
        for v in vols.volumes.unwrap_or_default() {
            out.push(format!("volume {}", v.name));
        }
        for s in docker
            .list_secrets(Some(
                ListSecretsOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
        {
            out.push(format!(
                "secret {}",
                s.spec.and_then(|s| s.name).unwrap_or_default()
            ));
        }
        out
    })
}

fn gate_cmd(spec: &std::path::Path, checks: &[&str]) -> Command {
    let mut c = Command::new(verify_bin());
    c.current_dir(workspace_root())
        .env_remove("DOCKER_HOST")
        .env_remove("CCCI_TARGET")
        .arg("gate")
        .arg(spec)
        .args(["--format", "json"]);
    for id in checks {
        c.args(["--check", id]);
    }
    c
}

fn builtin_spec_file(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("verify/gates/2pc.toml")).unwrap();
    let p = dir.join("2pc.toml");
    std::fs::write(&p, edit(text)).unwrap();
    p
}

#[test]
#[serial_test::file_serial(sandbox)]
fn killing_the_gate_mid_probe_leaves_nothing() {
    sandbox();
    assert_eq!(
        probe_objects(),
        Vec::<String>::new(),
        "leftovers before the test"
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = builtin_spec_file(dir.path(), |t| t);
    let mut child = gate_cmd(&spec, &["cache.image-survives-teardown"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the probe has deployed something, then SIGTERM the gate
    let start = Instant::now();
    while probe_objects().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the probe never deployed"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the gate ended ({status}) before the probe deployed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -TERM: {killed}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "exit 128+SIGTERM: {stderr}");
    assert!(stderr.contains("interrupted (SIGTERM)"), "{stderr}");
    assert_eq!(
        probe_objects(),
        Vec::<String>::new(),
        "the killed gate left probe objects: {stderr}"
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_timeout_shorter_than_the_probe_cleans_up_and_does_not_probe_twice() {
    sandbox();
    let dir = tempfile::tempdir().unwrap();
    let spec = builtin_spec_file(dir.path(), |t| {
        let from = "id = \"cache.image-survives-teardown\"\ngroup = \"host\"\ntimeout_secs = 240";
        assert!(t.contains(from), "2pc.toml changed: {from}");
        t.replace(
            from,
            "id = \"cache.image-survives-teardown\"\ngroup = \"host\"\ntimeout_secs = 3",
        )
    });
    let out = gate_cmd(
        &spec,
        &[
            "cache.image-survives-teardown",
            "prune.keeps-deployed-images",
            "cache.warm-redeploy-zero-layers",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &v);
    let checks = v["checks"].as_array().unwrap();
    let first = &checks[0];
    assert_eq!(first["verdict"], "error", "{first}");
    assert!(
        first["detail"].as_str().unwrap().contains("timed out"),
        "{first}"
    );
    // the checks after it do not start a second probe: they say the first was cancelled
    for c in &checks[1..] {
        assert_eq!(c["verdict"], "error", "{c}");
        assert!(
            c["detail"].as_str().unwrap().contains("was cancelled"),
            "{c}"
        );
    }
    assert_eq!(
        probe_objects(),
        Vec::<String>::new(),
        "the timed-out probe left objects"
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_run_sweeps_probe_objects_past_their_deadline_and_spares_live_ones() {
    sandbox();
    let docker = block_on(sandbox().docker_negotiated()).unwrap();
    let labels = |deadline: &str| {
        let mut l = HashMap::new();
        l.insert(LABEL.to_string(), "1".to_string());
        l.insert(LABEL_DEADLINE.to_string(), deadline.to_string());
        l
    };
    // a killed run's leftovers (deadline long past) and a live run's objects (far future)
    let create = |name: &str, deadline: &str| {
        block_on(async {
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(format!("{name}_data")),
                    labels: Some(labels(deadline)),
                    ..Default::default()
                })
                .await
                .unwrap();
            docker
                .create_secret(SecretSpec {
                    name: Some(format!("{name}_secret")),
                    labels: Some(labels(deadline)),
                    data: Some("eA==".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            docker
                .create_service(
                    ServiceSpec {
                        name: Some(name.to_string()),
                        labels: Some(labels(deadline)),
                        mode: Some(bollard::models::ServiceSpecMode {
                            replicated: Some(bollard::models::ServiceSpecModeReplicated {
                                replicas: Some(0),
                            }),
                            ..Default::default()
                        }),
                        task_template: Some(TaskSpec {
                            container_spec: Some(TaskSpecContainerSpec {
                                image: Some("redis:7-alpine".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    None,
                )
                .await
                .unwrap();
        })
    };
    create("ccci-probe-killed", "1");
    create("ccci-probe-live", "99999999999");
    struct Remove;
    impl Drop for Remove {
        fn drop(&mut self) {
            let docker = block_on(sandbox().docker_negotiated()).unwrap();
            block_on(async {
                for n in ["ccci-probe-killed", "ccci-probe-live"] {
                    let _ = docker.delete_service(n).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                for n in ["ccci-probe-killed", "ccci-probe-live"] {
                    let _ = docker
                        .remove_volume(
                            &format!("{n}_data"),
                            None::<bollard::query_parameters::RemoveVolumeOptions>,
                        )
                        .await;
                    let _ = docker.delete_secret(&format!("{n}_secret")).await;
                }
            });
        }
    }
    let _remove = Remove;
    let dir = tempfile::tempdir().unwrap();
    let spec = builtin_spec_file(dir.path(), |t| t);
    let out = gate_cmd(&spec, &["cache.image-survives-teardown"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sweep") && stdout.contains("ccci-probe-killed"),
        "the sweep is in the evidence: {stdout}"
    );
    let left = probe_objects();
    assert!(
        !left.iter().any(|o| o.contains("ccci-probe-killed")),
        "the dead run's objects were not swept: {left:?}"
    );
    for kind in ["service", "volume", "secret"] {
        assert!(
            left.iter()
                .any(|o| o.starts_with(kind) && o.contains("ccci-probe-live")),
            "a live run's {kind} was swept: {left:?}"
        );
    }
}
