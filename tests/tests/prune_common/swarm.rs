//! A two-node swarm for the worker tests: two plain `dockerd`s, each in a network namespace of
//! its own made here with `ip netns add` and entered with `nsenter --net=…` (as the sandbox
//! starts its daemon: `ip netns exec` remounts /sys and dockerd then finds no cgroups), joined
//! by one veth pair. The pair's addresses (10.231.77.1/30 and .2/30) exist only in these two
//! namespaces, which have no other link and no route: swarm traffic stays between them.
//!
//! Test-only and independent of the shared sandbox (its swarm listens on 127.0.0.1 in its own
//! namespace, so no other namespace can join it, and joining it would change the node count
//! every other test sees). Every name carries this process's id and a counter; [`Node`]'s drop
//! stops its daemon (by its pid) and removes its namespace, mounts, cgroups and directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Address of the first node of a [`link`]ed pair; the second gets `.2`.
pub const FIRST_ADDR: &str = "10.231.77.1";
pub const SECOND_ADDR: &str = "10.231.77.2";

const RUN_ROOT: &str = "/run/ccci-prune-swarm";
const DATA_ROOT: &str = "/var/lib/ccci-prune-swarm";

/// `argv`, which must succeed; its stdout.
fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One plain dockerd in a network namespace of its own.
pub struct Node {
    /// `ccci-psw-<pid>-<n>`: the namespace, the cgroup parent and the directories' name.
    pub name: String,
    run_dir: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
    /// The `dockerd` to run and the PATH it gets (`None`: the system's, this PATH).
    engine: Option<ccci_sandbox::engine::EngineBins>,
    /// `--data-root` (default `<data_dir>/data`).
    pub data_root: PathBuf,
}

impl Node {
    /// Make the namespace and start the daemon; waits until it answers.
    pub fn start() -> Node {
        Node::start_with(None, |_| {})
    }

    /// [`Node::start`] with another engine's binaries, and `prepare` run before the daemon
    /// starts (to mount a filesystem at its data-root, say).
    pub fn start_with(
        engine: Option<ccci_sandbox::engine::EngineBins>,
        prepare: impl FnOnce(&Node),
    ) -> Node {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ccci-psw-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let node = Node {
            run_dir: Path::new(RUN_ROOT).join(&name),
            data_dir: Path::new(DATA_ROOT).join(&name),
            data_root: Path::new(DATA_ROOT).join(&name).join("data"),
            name,
            child: None,
            engine,
        };
        sh(&["ip", "netns", "add", &node.name]);
        sh(&["ip", "-n", &node.name, "link", "set", "lo", "up"]);
        for d in [node.run_dir.join("exec"), node.data_dir.join("data")] {
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        prepare(&node);
        // An explicit config so /etc/docker/daemon.json never applies, and the trust key
        // Docker 20.10 writes goes here, not to /etc/docker/key.json.
        let conf = serde_json::json!({ "deprecated-key-path": node.run_dir.join("key.json") });
        std::fs::write(node.run_dir.join("daemon.json"), conf.to_string())
            .unwrap_or_else(|e| panic!("daemon.json: {e}"));
        let mut node = node;
        node.spawn();
        node
    }

    /// Mount a tmpfs of `size` at `dir` (made first); the drop unmounts it with the others.
    pub fn mount_tmpfs(&self, dir: &Path, size: &str) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &dir.to_string_lossy(),
        ]);
    }

    /// A directory of this node's own (removed with it).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// Replace the daemon's config file with `conf` (the trust key stays out of /etc/docker);
    /// it applies at the next [`Node::restart`].
    pub fn set_config(&self, mut conf: serde_json::Value) {
        conf["deprecated-key-path"] = serde_json::json!(self.run_dir.join("key.json"));
        std::fs::write(self.run_dir.join("daemon.json"), conf.to_string())
            .unwrap_or_else(|e| panic!("daemon.json: {e}"));
    }

    /// `unix://<socket>`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    fn log(&self) -> PathBuf {
        self.data_dir.join("dockerd.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap_or_else(|e| panic!("dockerd log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dockerd log: {e}"));
        let p = |x: PathBuf| x.to_string_lossy().into_owned();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg("--");
        match &self.engine {
            Some(bins) => cmd
                .arg("env")
                .arg(format!("PATH={}", bins.path_env()))
                .arg(&bins.dockerd),
            None => cmd.arg("dockerd"),
        };
        let child = cmd
            .args(["--config-file", &p(self.run_dir.join("daemon.json"))])
            .args(["-H", &self.docker_host()])
            .args(["--pidfile", &p(self.run_dir.join("dockerd.pid"))])
            .args(["--exec-root", &p(self.run_dir.join("exec"))])
            .args(["--data-root", &p(self.data_root.clone())])
            .args(["--cgroup-parent", &self.name])
            .args(["--shutdown-timeout", "5", "--userland-proxy=false"])
            .arg("--bridge=none")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start dockerd: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .0
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "dockerd {} exited ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "dockerd {} did not answer in 60 s:\n{}",
            self.name,
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `docker ARGS` against this node: (success, stdout, stderr).
    pub fn docker(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.docker(args);
        assert!(ok, "{}: docker {args:?} failed: {err}\n{out}", self.name);
        out
    }

    /// Ids of every image that carries a tag on this node.
    pub fn tagged_image_ids(&self) -> Vec<String> {
        self.docker_ok(&["image", "ls", "--no-trunc", "--format", "{{.ID}} {{.Tag}}"])
            .lines()
            .filter(|l| !l.ends_with(" <none>"))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Load `spec` into this node's store; its id.
    pub fn load(&self, spec: &ccci_sandbox::images::ImageSpec) -> String {
        let host = self.socket();
        ccci_tests::block_on(async move {
            let d = bollard::Docker::connect_with_unix(
                &host.to_string_lossy(),
                120,
                bollard::API_DEFAULT_VERSION,
            )
            .unwrap_or_else(|e| panic!("connect: {e}"))
            .negotiate_version()
            .await
            .unwrap_or_else(|e| panic!("negotiate: {e}"));
            ccci_sandbox::images::load(&d, spec)
                .await
                .unwrap_or_else(|e| panic!("load image: {e}"))
        })
    }

    /// Stop the daemon (SIGTERM: it stops its containers and containerd), SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stop and start the daemon again (same namespace, same state).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        // Mounts the daemon left under our directories, deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| {
                m.starts_with(&*self.run_dir.to_string_lossy())
                    || m.starts_with(&*self.data_dir.to_string_lossy())
            })
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        // The namespace (the veth pair goes with it).
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        // The cgroups of its containers: /sys/fs/cgroup/<controller>/<name>, deepest first.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                remove_cgroup_tree(&c.path().join(&self.name));
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_dir(RUN_ROOT);
        let _ = std::fs::remove_dir(DATA_ROOT);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// Join `a` and `b` with a veth pair: `a` gets [`FIRST_ADDR`], `b` [`SECOND_ADDR`] (/30). The
/// pair is created directly in the two namespaces (never in the machine's own).
pub fn link(a: &Node, b: &Node) {
    sh(&[
        "ip", "link", "add", "psw0", "netns", &a.name, "type", "veth", "peer", "name", "psw0",
        "netns", &b.name,
    ]);
    for (n, addr) in [(a, FIRST_ADDR), (b, SECOND_ADDR)] {
        sh(&[
            "ip",
            "-n",
            &n.name,
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            "psw0",
        ]);
        sh(&["ip", "-n", &n.name, "link", "set", "psw0", "up"]);
    }
}

/// `swarm init` on `manager` (at [`FIRST_ADDR`]) and `swarm join` of `other` (at
/// [`SECOND_ADDR`]) with the `role` token (`worker` or `manager`).
pub fn init_and_join(manager: &Node, other: &Node, role: &str) {
    manager.docker_ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        FIRST_ADDR,
        "--listen-addr",
        &format!("{FIRST_ADDR}:2377"),
    ]);
    let token = manager.docker_ok(&["swarm", "join-token", "-q", role]);
    other.docker_ok(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--advertise-addr",
        SECOND_ADDR,
        "--listen-addr",
        &format!("{SECOND_ADDR}:2377"),
        &format!("{FIRST_ADDR}:2377"),
    ]);
}
