//! The ssh target for real: this machine's own OpenSSH server (`/usr/sbin/sshd`, Debian's
//! openssh-server) on a free loopback port, with a throwaway host key, a client key and a
//! known_hosts file in a temporary directory. Client options reach `ccci-verify` through
//! `CCCI_SSH_OPTS`; the forwarded Docker socket is the shared sandbox daemon's
//! (`CCCI_SSH_DOCKER_SOCKET`), so checks that talk to Docker over the forward reach a real
//! daemon in swarm mode.
//!
//! Proves: argv with shell metacharacters arrives as the exact words (quoted once at the ssh
//! boundary, nothing injected); an unknown host key is refused (exit 3, the message names the
//! host-key problem) even when the user's options try to switch checking off; a closed port
//! exits 3; a forward to a socket that is not there exits 3 naming it; malformed ssh settings
//! exit 2; the gate's JSON over ssh carries the ssh label and the sandbox daemon's evidence;
//! no secret is ever printed.

mod verify_cli;

use ccci_host::transport::{Ssh, Transport};
use ccci_host::{Target, TargetSpec};
use ccci_tests::{block_on, sandbox, workspace_root};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verify_cli::{assert_no_secret, run, verify, Run, SANDBOX_AUTH_BLOB};

/// A running sshd on 127.0.0.1:port, killed when dropped.
struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ccci-test", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen (openssh-client): {e}"));
    assert!(st.success(), "ssh-keygen -f {}: {st}", path.display());
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "/usr/sbin/sshd is missing: install openssh-server (.ci/deps does)"
        );
        // privilege separation directory sshd insists on
        std::fs::create_dir_all("/run/sshd")
            .unwrap_or_else(|e| panic!("cannot create /run/sshd (sshd needs it): {e}"));
        let dir = tempfile::Builder::new()
            .prefix("ccci-sshd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let config = format!(
            "HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             PermitRootLogin yes\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             AllowStreamLocalForwarding yes\n\
             PrintMotd no\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut words = host_pub.split_whitespace();
        let (kind, key) = (words.next().unwrap(), words.next().unwrap());
        // a few tries: the free port can be taken between probe and bind
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(
                d.join("known_hosts"),
                format!("[127.0.0.1]:{port} {kind} {key}\n"),
            )
            .unwrap();
            std::fs::write(d.join("empty_known_hosts"), "").unwrap();
            let log = std::fs::File::create(d.join("sshd.log")).unwrap();
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .args(["-p", &port.to_string(), "-o", "ListenAddress=127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
            let t0 = Instant::now();
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { child, dir, port };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "sshd on port {port} did not come up: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
        }
        panic!(
            "sshd does not start: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `CCCI_SSH_OPTS` for this server with `known_hosts` as the known-hosts file.
    fn opts_with(&self, known_hosts: &str) -> String {
        format!(
            "-F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
            self.path("client_key").display(),
            self.path(known_hosts).display()
        )
    }

    fn opts(&self) -> String {
        self.opts_with("known_hosts")
    }

    fn target(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.port)
    }

    /// The ssh transport to this server, as `Target::ssh` builds it from `CCCI_SSH_OPTS`.
    fn transport(&self) -> Ssh {
        let extra: Vec<String> = self.opts().split(' ').map(String::from).collect();
        Ssh {
            user: Some("root".into()),
            host: "127.0.0.1".into(),
            port: Some(self.port),
            extra,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// `ccci-verify gate SPEC --target ssh://root@127.0.0.1:PORT ARGS…` with this server's opts.
    fn gate(&self, spec: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let mut cmd = verify();
        cmd.args(["gate", spec, "--target", &self.target()])
            .args(args)
            .env("CCCI_SSH_OPTS", self.opts());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sandbox_socket() -> String {
    sandbox().socket_path().display().to_string()
}

#[test]
fn argv_arrives_as_the_exact_words() {
    let sshd = Sshd::start();
    let ssh = sshd.transport();
    let canary = sshd.path("pwned");
    let c = canary.display().to_string();
    let words: Vec<String> = [
        "$(id)",
        "`id`",
        "a;b",
        "; touch CANARY",
        "$(touch CANARY)",
        "it's",
        "\"double\"",
        "two  spaces",
        " lead and trail ",
        "*",
        "~",
        "$HOME",
        "",
        "back\\slash",
        "new\nline",
        "tab\there",
        "| touch CANARY",
        "&& touch CANARY",
        "> CANARY",
        "-n",
        "ünïcödé",
    ]
    .iter()
    .map(|w| w.replace("CANARY", &c))
    .collect();
    let mut argv = vec!["printf".to_string(), "%s\\n".to_string()];
    argv.extend(words.iter().cloned());
    let out = block_on(ssh.exec(&argv)).unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(out.status, 0, "{}", out.combined());
    let expected: String = words.iter().map(|w| format!("{w}\n")).collect();
    assert_eq!(
        out.stdout_str(),
        expected,
        "the remote command saw other words"
    );
    assert!(
        !canary.exists(),
        "a word was run as a command on the remote host"
    );

    // the remote command's own exit status comes back as it is
    let out = block_on(ssh.exec(&["sh".into(), "-c".into(), "exit 7".into()])).unwrap();
    assert_eq!(out.status, 7);

    // through a Target: a file whose name is full of metacharacters is read, not interpreted
    let t = Target::new(
        TargetSpec::Ssh {
            user: Some("root".into()),
            host: "127.0.0.1".into(),
            port: Some(sshd.port),
        },
        Arc::new(ssh),
        "unix:///nonexistent/ccci.sock".into(),
    );
    assert_eq!(t.label(), sshd.target());
    let weird = sshd.path("we$(touch pwned) ird;name's");
    std::fs::write(&weird, b"content\x00\xff").unwrap();
    let got = block_on(t.read_file(&weird.display().to_string())).unwrap();
    assert_eq!(got.as_deref(), Some(&b"content\x00\xff"[..]));
    assert!(!canary.exists() && !sshd.path("pwned").exists());
    let missing = block_on(t.read_file(&sshd.path("no such file").display().to_string())).unwrap();
    assert!(missing.is_none());
}

#[test]
fn an_unknown_host_key_is_refused_exit_3() {
    let sshd = Sshd::start();
    for opts in [
        sshd.opts_with("empty_known_hosts"),
        // the user's options cannot switch host-key checking off: ccci-verify's come first
        format!(
            "{} -o StrictHostKeyChecking=no",
            sshd.opts_with("empty_known_hosts")
        ),
        format!(
            "{} -o StrictHostKeyChecking=accept-new",
            sshd.opts_with("empty_known_hosts")
        ),
    ] {
        let r = run(verify()
            .args([
                "gate",
                "2pc",
                "--target",
                &sshd.target(),
                "--check",
                "units.legacy-timer-absent",
            ])
            .env("CCCI_SSH_OPTS", &opts));
        assert_eq!(r.code, Some(3), "CCCI_SSH_OPTS={opts}: {}", r.show());
        assert!(
            r.stderr.contains("Host key verification failed")
                && r.stderr.contains("host key is known"),
            "the message names the host-key problem: {}",
            r.show()
        );
        assert!(r.stderr.contains(&sshd.target()), "{}", r.show());
        assert!(r.stdout.is_empty(), "{}", r.show());
        let empty = std::fs::read_to_string(sshd.path("empty_known_hosts")).unwrap();
        assert!(empty.is_empty(), "the unknown key was added to known_hosts");
    }
    // and with the right known_hosts the same command gets through (the refusal was the key)
    let r = sshd.gate(
        "2pc",
        &["--check", "units.legacy-timer-absent"],
        &[("CCCI_SSH_DOCKER_SOCKET", &sandbox_socket())],
    );
    assert!(
        matches!(r.code, Some(0) | Some(1)),
        "with the host key known the gate runs: {}",
        r.show()
    );
}

#[test]
fn an_authentication_failure_exits_3() {
    let sshd = Sshd::start();
    // a key the server does not know, and no other way in (BatchMode: no password prompt)
    let stranger = sshd.path("stranger_key");
    keygen(&stranger);
    let opts = sshd.opts().replace(
        &sshd.path("client_key").display().to_string(),
        &stranger.display().to_string(),
    );
    assert!(opts.contains("stranger_key"), "{opts}");
    let r = run(verify()
        .args([
            "gate",
            "2pc",
            "--target",
            &sshd.target(),
            "--check",
            "units.legacy-timer-absent",
        ])
        .env("CCCI_SSH_OPTS", &opts));
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(r.stderr.contains(&sshd.target()), "{}", r.show());
    assert!(
        r.stderr.contains("Permission denied"),
        "the message says why: {}",
        r.show()
    );
    assert!(r.stdout.is_empty(), "{}", r.show());
}

#[test]
fn a_closed_port_exits_3() {
    let port = free_port();
    let sshd = Sshd::start();
    let target = format!("ssh://root@127.0.0.1:{port}");
    let r = run(verify()
        .args([
            "gate",
            "2pc",
            "--target",
            &target,
            "--check",
            "units.legacy-timer-absent",
        ])
        .env("CCCI_SSH_OPTS", sshd.opts()));
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(r.stderr.contains(&target), "{}", r.show());
    assert!(r.stderr.contains("Connection refused"), "{}", r.show());
}

#[test]
fn a_docker_socket_that_is_not_there_exits_3_naming_it() {
    let sshd = Sshd::start();
    let r = sshd.gate(
        "2pc",
        &["--check", "store.docker-root-persistent"],
        &[("CCCI_SSH_DOCKER_SOCKET", "/nonexistent/ccci/docker.sock")],
    );
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(
        r.stderr.contains("/nonexistent/ccci/docker.sock"),
        "the message names the remote socket: {}",
        r.show()
    );
}

#[test]
fn malformed_ssh_settings_exit_2() {
    let sshd = Sshd::start();
    let r = sshd.gate(
        "2pc",
        &["--check", "units.legacy-timer-absent"],
        &[("CCCI_SSH_DOCKER_SOCKET", "relative/docker.sock")],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("CCCI_SSH_DOCKER_SOCKET"), "{}", r.show());
    let r = run(verify()
        .args(["gate", "2pc", "--target", &sshd.target()])
        .env("CCCI_SSH_OPTS", "-o 'unbalanced"));
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("CCCI_SSH_OPTS"), "{}", r.show());
}

fn json(r: &Run) -> Value {
    let v =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", r.show()));
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &v);
    v
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the report: {report}"))
}

/// The built-in gate over ssh, its Docker socket forwarded to the sandbox daemon. Those checks
/// run on this machine; what is deterministic is asserted: the store check talks to the sandbox
/// daemon through the forward (its `GET /info` names the sandbox data-root, which the built-in
/// spec does not expect for an ssh target, so it fails saying so).
#[test]
fn gate_over_ssh_reaches_the_sandbox_daemon_through_the_forward() {
    let info = sandbox();
    let sshd = Sshd::start();
    let data_root = info.data_root.display().to_string();
    let r = sshd.gate(
        "2pc",
        &[
            "--check",
            "store.docker-root-persistent",
            "--check",
            "auth.daemon-authenticated",
            "--format",
            "json",
        ],
        &[("CCCI_SSH_DOCKER_SOCKET", &sandbox_socket())],
    );
    assert_eq!(r.code, Some(1), "{}", r.show());
    let v = json(&r);
    assert_eq!(v["version"], 1);
    assert_eq!(v["gate"], "2pc");
    assert_eq!(v["target"], sshd.target());
    let store = check(&v, "store.docker-root-persistent");
    let ev = &store["evidence"][0];
    assert_eq!(ev["command"], "GET /info", "{store}");
    assert!(
        ev["output"]
            .as_str()
            .is_some_and(|o| o.contains(&format!("DockerRootDir={data_root}"))),
        "the daemon behind the forward is the sandbox's: {store}"
    );
    assert_eq!(store["verdict"], "fail", "{store}");
    assert!(
        store["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the gate expects /var/lib/docker")),
        "{store}"
    );
    // the command evidence ran over ssh on this machine: findmnt of the sandbox data-root
    assert!(
        store["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("findmnt") && c.contains(&data_root)))),
        "{store}"
    );
    let auth = check(&v, "auth.daemon-authenticated");
    assert!(!auth["evidence"].as_array().unwrap().is_empty(), "{auth}");
    if !Path::new("/root/.docker/config.json").exists() {
        assert_eq!(auth["verdict"], "fail", "{auth}");
        assert!(
            auth["detail"]
                .as_str()
                .is_some_and(|d| d.contains("/root/.docker/config.json")),
            "the reason names the missing file: {auth}"
        );
    }
}

/// The whole gate over ssh against this machine (which is not a deployed CI host), its Docker
/// socket forwarded to the sandbox daemon: the gate fails (exit 1) — at least the store check
/// must, its expected root is not the sandbox's — every check, whatever its verdict, carries
/// the evidence that decided it, and the cache probe (a swarm service deployed, torn down and
/// redeployed, the daemon's events streamed) works through the forward and passes.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_whole_gate_over_ssh_carries_evidence_for_every_verdict() {
    sandbox();
    let sshd = Sshd::start();
    let r = sshd.gate(
        "2pc",
        &["--format", "json"],
        &[("CCCI_SSH_DOCKER_SOCKET", &sandbox_socket())],
    );
    assert_eq!(r.code, Some(1), "{}", r.show());
    let v = json(&r);
    assert_eq!(v["target"], sshd.target());
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(
        checks.len(),
        ccci_tests::gate::builtin_spec("2pc").checks.len(),
        "every check of the gate: {}",
        r.stdout
    );
    for c in checks {
        let evidence = c["evidence"].as_array().expect("evidence");
        assert!(
            !evidence.is_empty(),
            "{} has verdict {} without evidence: {c}",
            c["id"],
            c["verdict"]
        );
        for e in evidence {
            assert!(e["command"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
        }
    }
    assert_eq!(check(&v, "store.docker-root-persistent")["verdict"], "fail");
    for id in [
        "cache.image-survives-teardown",
        "cache.warm-redeploy-zero-layers",
    ] {
        let c = check(&v, id);
        assert_eq!(c["verdict"], "pass", "{id} over the ssh forward: {c}");
    }
}

/// A spec copy whose ssh override expects the sandbox data-root and a credential file made
/// here: the sandbox registry's working credential (the daemon behind the forward logs in with
/// it) beside another registry's canary secret: both checks pass over ssh, in every format,
/// and neither secret is printed; a world-readable copy of the file fails the auth check,
/// still without them.
#[test]
#[serial_test::file_serial(sandbox)] // the wrong states revoke the sandbox user for a while
fn gate_over_ssh_passes_with_the_right_spec_and_never_prints_the_secret() {
    const CANARY: &str = "ssh-canary-s3cret-never-print";
    // base64("ccci-canary:<CANARY>")
    const CANARY_BLOB: &str = "Y2NjaS1jYW5hcnk6c3NoLWNhbmFyeS1zM2NyZXQtbmV2ZXItcHJpbnQ=";
    let info = sandbox();
    let sshd = Sshd::start();
    let cred = sshd.path("config.json");
    std::fs::write(
        &cred,
        format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{CANARY_BLOB}"}},"{}":{{"auth":"{SANDBOX_AUTH_BLOB}"}}}}}}"#,
            ccci_tests::ccci_sandbox::AUTH_REGISTRY_ADDR
        ),
    )
    .unwrap();
    set_mode(&cred, 0o600);
    let base = std::fs::read_to_string(workspace_root().join("verify/gates/2pc.toml")).unwrap();
    let spec = sshd.path("2pc-ssh.toml");
    std::fs::write(
        &spec,
        format!(
            "{base}\n[targets.ssh.params.store]\ndocker_root = \"{}\"\n\n[targets.ssh.params.auth]\nexpected_user = \"ccci-sandbox\"\nconfig_path = \"{}\"\nregistry = \"{}\"\n",
            info.data_root.display(),
            cred.display(),
            ccci_tests::ccci_sandbox::AUTH_REGISTRY_ADDR
        ),
    )
    .unwrap();
    let spec = spec.display().to_string();
    let env = [("CCCI_SSH_DOCKER_SOCKET", sandbox_socket())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let checks = [
        "--check",
        "store.docker-root-persistent",
        "--check",
        "auth.daemon-authenticated",
    ];
    let no_canary = |what: &str, text: &str| {
        assert!(!text.contains(CANARY), "{what} carries the canary secret");
        assert!(
            !text.contains(CANARY_BLOB),
            "{what} carries the canary's auth blob"
        );
        assert_no_secret(what, text);
    };
    for format in ["json", "human", "markdown", "junit"] {
        let mut args = checks.to_vec();
        args.extend(["--format", format]);
        let r = sshd.gate(&spec, &args, &env);
        no_canary(format, &r.stdout);
        no_canary(format, &r.stderr);
        assert_eq!(r.code, Some(0), "{format}: {}", r.show());
        if format == "json" {
            let v = json(&r);
            assert_eq!(v["target"], sshd.target());
            for id in ["store.docker-root-persistent", "auth.daemon-authenticated"] {
                assert_eq!(check(&v, id)["verdict"], "pass", "{}", r.show());
            }
            let auth = check(&v, "auth.daemon-authenticated");
            assert!(
                auth["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("ccci-sandbox")
                        && d.contains("the registry accepts it: Login Succeeded")),
                "{auth}"
            );
        }
    }
    set_mode(&cred, 0o644);
    let mut args = checks.to_vec();
    args.extend(["--format", "json"]);
    let r = sshd.gate(&spec, &args, &env);
    no_canary("json", &r.stdout);
    assert_eq!(r.code, Some(1), "{}", r.show());
    let v = json(&r);
    let auth = check(&v, "auth.daemon-authenticated");
    assert_eq!(auth["verdict"], "fail", "{auth}");
    assert!(
        auth["detail"].as_str().is_some_and(|d| d.contains("644")),
        "{auth}"
    );
    assert_eq!(check(&v, "store.docker-root-persistent")["verdict"], "pass");
}

/// A unit name from the spec full of shell syntax goes over ssh as one word: the remote shell
/// runs nothing of it, and the evidence shows the quoted word.
#[test]
fn a_unit_name_cannot_inject_a_command_over_ssh() {
    sandbox();
    let sshd = Sshd::start();
    let canary = sshd.path("injected");
    let name = format!(
        "x.timer; touch {c}; $(touch {c}) `touch {c}`",
        c = canary.display()
    );
    let base = std::fs::read_to_string(workspace_root().join("verify/gates/2pc.toml")).unwrap();
    let spec = sshd.path("2pc-evil.toml");
    let quoted = serde_json::to_string(&name).unwrap();
    std::fs::write(
        &spec,
        format!("{base}\n[targets.ssh.params]\nlegacy_timer = {quoted}\n"),
    )
    .unwrap();
    let r = sshd.gate(
        &spec.display().to_string(),
        &["--check", "units.legacy-timer-absent", "--format", "json"],
        &[("CCCI_SSH_DOCKER_SOCKET", &sandbox_socket())],
    );
    // this machine may have no systemd as PID 1: the verdict is not the point here
    assert!(matches!(r.code, Some(0) | Some(1)), "{}", r.show());
    assert!(
        !canary.exists(),
        "a unit name from the spec ran as a command over ssh"
    );
    let v = json(&r);
    let c = check(&v, "units.legacy-timer-absent");
    // whatever the verdict, it carries the command that decided it, with its exit
    let ev = &c["evidence"][0];
    assert!(ev["exit"].is_i64(), "{c}");
    let cmd = ev["command"].as_str().unwrap_or_default();
    assert!(
        cmd.starts_with("systemctl show ") && cmd.contains(&format!("'{name}'")),
        "the evidence shows the name as one quoted word: {c}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
