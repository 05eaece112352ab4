//! A target: a command transport plus a Docker endpoint.

use crate::systemd::{parse_show, UnitState, SHOW_PROPERTIES};
use crate::transport::{display_argv, CmdOutput, DockerExec, Local, Ssh, SshForward, Transport};
use crate::HostError;
use bollard::Docker;
use std::sync::Arc;

/// What `--target` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// The embedded sandbox (the default).
    Sandbox,
    /// This machine.
    Local,
    /// `ssh://[user@]host[:port]`
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// `docker://NAME`: a running container on the local Docker daemon.
    Docker { name: String },
}

impl TargetSpec {
    pub fn parse(s: &str) -> Result<TargetSpec, HostError> {
        let bad = |why: &str| HostError::BadTarget(s.to_string(), why.to_string());
        match s {
            "sandbox" => return Ok(TargetSpec::Sandbox),
            "local" => return Ok(TargetSpec::Local),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let rest = rest.trim_end_matches('/');
            let (user, hostport) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, rest),
            };
            if let Some(u) = &user {
                if u.is_empty() || u.starts_with('-') || u.contains(char::is_whitespace) {
                    return Err(bad("the user part is empty or not a user name"));
                }
            }
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(']') || h.ends_with(']') => {
                    let port: u16 = p
                        .parse()
                        .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
                    if port == 0 {
                        return Err(bad("the port is not a number from 1 to 65535"));
                    }
                    (h.to_string(), Some(port))
                }
                _ => (hostport.to_string(), None),
            };
            if host.is_empty() || host.starts_with('-') || host.contains(['/', ' ', '\t']) {
                return Err(bad("the host name is empty or malformed"));
            }
            return Ok(TargetSpec::Ssh { user, host, port });
        }
        if let Some(name) = s.strip_prefix("docker://") {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(bad("a container name is letters, digits, `_`, `.` and `-`"));
            }
            return Ok(TargetSpec::Docker {
                name: name.to_string(),
            });
        }
        Err(bad(
            "expected sandbox, local, ssh://[user@]host[:port] or docker://NAME",
        ))
    }

    /// `sandbox`, `local`, `ssh` or `docker`: the key of per-target overrides in gate specs.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSpec::Sandbox => "sandbox",
            TargetSpec::Local => "local",
            TargetSpec::Ssh { .. } => "ssh",
            TargetSpec::Docker { .. } => "docker",
        }
    }
}

/// A connected target.
pub struct Target {
    pub spec: TargetSpec,
    label: String,
    transport: Arc<dyn Transport>,
    docker_host: String,
    /// How the Docker endpoint reaches the target's daemon, when that is not obvious from
    /// `docker_host` (the ssh forward), for error messages.
    docker_via: Option<String>,
    _forward: Option<SshForward>,
}

/// The environment variable naming the remote Docker socket an ssh target forwards.
pub const SSH_DOCKER_SOCKET_ENV: &str = "CCCI_SSH_DOCKER_SOCKET";
/// The remote Docker socket an ssh target forwards when `CCCI_SSH_DOCKER_SOCKET` is unset.
pub const DEFAULT_REMOTE_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The Docker endpoint of this machine: `DOCKER_HOST`, else the default socket.
pub fn local_docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

impl Target {
    /// Build a target from a transport and a Docker endpoint URI (`unix://PATH` or `tcp://…`).
    pub fn new(spec: TargetSpec, transport: Arc<dyn Transport>, docker_host: String) -> Target {
        Target {
            label: transport.describe(),
            spec,
            transport,
            docker_host,
            docker_via: None,
            _forward: None,
        }
    }

    /// This machine, its Docker at `DOCKER_HOST` or the default socket.
    pub fn local() -> Target {
        Target::new(TargetSpec::Local, Arc::new(Local), local_docker_host())
    }

    /// A container on a Docker daemon, reached by `docker exec`; its Docker endpoint is
    /// `docker_host` (the daemon whose socket the container has, for the sandbox host).
    pub fn docker_exec(
        spec: TargetSpec,
        docker_host: &str,
        container: &str,
        label: &str,
    ) -> Result<Target, HostError> {
        let docker = connect(docker_host, label)?;
        Ok(Target::new(
            spec,
            Arc::new(DockerExec {
                docker,
                container: container.to_string(),
                label: label.to_string(),
            }),
            docker_host.to_string(),
        ))
    }

    /// A remote host over ssh; its Docker socket (`CCCI_SSH_DOCKER_SOCKET`, default
    /// `/var/run/docker.sock`) is forwarded to a local socket. Extra ssh options (identity,
    /// known_hosts file) come from `CCCI_SSH_OPTS`, split like a shell.
    pub async fn ssh(
        user: Option<String>,
        host: String,
        port: Option<u16>,
    ) -> Result<Target, HostError> {
        let extra = match std::env::var("CCCI_SSH_OPTS") {
            Ok(s) if !s.trim().is_empty() => shell_words::split(&s)
                .map_err(|e| HostError::BadTarget("CCCI_SSH_OPTS".into(), e.to_string()))?,
            _ => vec![],
        };
        let ssh = Ssh {
            user: user.clone(),
            host: host.clone(),
            port,
            extra,
        };
        // reachability first: a clear exit 3 before anything else
        let probe = ssh.exec(&["true".to_string()]).await?;
        if !probe.ok() {
            return Err(HostError::Unreachable {
                target: ssh.label(),
                reason: format!("`true` exited {} over ssh", probe.status),
            });
        }
        let remote_socket = match std::env::var(SSH_DOCKER_SOCKET_ENV) {
            Ok(s) if !s.trim().is_empty() => {
                if !s.starts_with('/') {
                    return Err(HostError::BadTarget(
                        SSH_DOCKER_SOCKET_ENV.into(),
                        format!("`{s}` is not an absolute socket path on the target"),
                    ));
                }
                s
            }
            _ => DEFAULT_REMOTE_DOCKER_SOCKET.to_string(),
        };
        let forward = SshForward::open(&ssh, &remote_socket).await?;
        let docker_host = format!("unix://{}", forward.socket.display());
        let label = ssh.label();
        let mut t = Target::new(
            TargetSpec::Ssh { user, host, port },
            Arc::new(ssh),
            docker_host,
        );
        t.docker_via = Some(format!(
            "forwarded over ssh to {remote_socket} on {label}; set {SSH_DOCKER_SOCKET_ENV} if the daemon listens elsewhere"
        ));
        t._forward = Some(forward);
        Ok(t)
    }

    /// The target a spec names, for every kind this crate can reach by itself: local, ssh and
    /// docker. The sandbox is brought up by its own crate (`ccci-sandbox`), so `Sandbox` is a
    /// `BadTarget` here.
    pub async fn connect(spec: &TargetSpec) -> Result<Target, HostError> {
        match spec {
            TargetSpec::Local => Ok(Target::local()),
            TargetSpec::Ssh { user, host, port } => {
                Target::ssh(user.clone(), host.clone(), *port).await
            }
            TargetSpec::Docker { name } => Target::docker_exec(
                spec.clone(),
                &local_docker_host(),
                name,
                &format!("docker://{name}"),
            ),
            TargetSpec::Sandbox => Err(HostError::BadTarget(
                "sandbox".into(),
                "the sandbox target is resolved by ccci-sandbox".into(),
            )),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn docker_host(&self) -> &str {
        &self.docker_host
    }

    /// Run argv on the target.
    pub async fn run(&self, argv: &[&str]) -> Result<CmdOutput, HostError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.transport.exec(&argv).await
    }

    /// Run argv given as owned strings.
    pub async fn run_owned(&self, argv: &[String]) -> Result<CmdOutput, HostError> {
        self.transport.exec(argv).await
    }

    /// A connected Docker client with the API version negotiated.
    pub async fn docker(&self) -> Result<Docker, HostError> {
        let d = connect(&self.docker_host, &self.label)?;
        d.negotiate_version().await.map_err(|e| HostError::Docker {
            target: self.label.clone(),
            endpoint: self.endpoint_desc(),
            reason: e.to_string(),
        })
    }

    /// The Docker endpoint for messages: the URI, and for ssh which remote socket it forwards.
    fn endpoint_desc(&self) -> String {
        match &self.docker_via {
            Some(via) => format!("{} ({via})", self.docker_host),
            None => self.docker_host.clone(),
        }
    }

    /// The target answers a command and its Docker daemon answers a ping; else `Unreachable`.
    pub async fn ensure_reachable(&self) -> Result<(), HostError> {
        let out = self.run(&["true"]).await.map_err(|e| match e {
            HostError::Unreachable { .. } => e,
            other => HostError::Unreachable {
                target: self.label.clone(),
                reason: other.to_string(),
            },
        })?;
        if !out.ok() {
            return Err(HostError::Unreachable {
                target: self.label.clone(),
                reason: format!("`true` exited {}: {}", out.status, out.combined().trim()),
            });
        }
        let d = self.docker().await.map_err(|e| HostError::Unreachable {
            target: self.label.clone(),
            reason: e.to_string(),
        })?;
        d.ping().await.map_err(|e| HostError::Unreachable {
            target: self.label.clone(),
            reason: format!("Docker at {} does not answer: {e}", self.endpoint_desc()),
        })?;
        Ok(())
    }

    /// Read a file's bytes (`cat -- PATH` on the target). `Ok(None)` when it does not exist.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        let out = self.run(&["cat", "--", path]).await?;
        if out.ok() {
            return Ok(Some(out.stdout));
        }
        let err = out.stderr_str();
        // decided by `test -e`, not by cat's (localised) message
        let exists = self.run(&["test", "-e", path]).await?;
        if !exists.ok() {
            return Ok(None);
        }
        Err(HostError::Exec {
            target: self.label.clone(),
            command: display_argv(&["cat".into(), "--".into(), path.into()]),
            reason: format!("exit {}: {}", out.status, err.trim()),
        })
    }

    /// `systemctl show -p <SHOW_PROPERTIES> -- UNITS…`, parsed; also returns the raw output
    /// for evidence.
    pub async fn unit_states(
        &self,
        units: &[&str],
    ) -> Result<(Vec<UnitState>, String, CmdOutput), HostError> {
        let argv = show_argv(units);
        let out = self.run_owned(&argv).await?;
        let cmd = display_argv(&argv);
        if !out.ok() {
            return Err(HostError::Exec {
                target: self.label.clone(),
                command: cmd,
                reason: format!("exit {}: {}", out.status, out.combined().trim()),
            });
        }
        let states = parse_show(&out.stdout_str(), units)?;
        Ok((states, cmd, out))
    }
}

/// argv of the `systemctl show` the unit model parses.
pub fn show_argv(units: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "systemctl".to_string(),
        "show".into(),
        "-p".into(),
        SHOW_PROPERTIES.join(","),
        "--".into(),
    ];
    argv.extend(units.iter().map(|u| u.to_string()));
    argv
}

fn connect(docker_host: &str, label: &str) -> Result<Docker, HostError> {
    let err = |reason: String| HostError::Docker {
        target: label.to_string(),
        endpoint: docker_host.to_string(),
        reason,
    };
    if let Some(path) = docker_host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| err(e.to_string()))
    } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
        Docker::connect_with_http(docker_host, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| err(e.to_string()))
    } else {
        Err(err("expected unix://PATH or tcp://HOST:PORT".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_specs() {
        assert_eq!(TargetSpec::parse("sandbox").unwrap(), TargetSpec::Sandbox);
        assert_eq!(TargetSpec::parse("local").unwrap(), TargetSpec::Local);
        assert_eq!(
            TargetSpec::parse("ssh://root@cc-ci:2222").unwrap(),
            TargetSpec::Ssh {
                user: Some("root".into()),
                host: "cc-ci".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            TargetSpec::parse("ssh://cc-ci").unwrap(),
            TargetSpec::Ssh {
                user: None,
                host: "cc-ci".into(),
                port: None
            }
        );
        assert_eq!(
            TargetSpec::parse("docker://ccci-host").unwrap(),
            TargetSpec::Docker {
                name: "ccci-host".into()
            }
        );
        for bad in [
            "",
            "nope",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://root@h:99999",
            "ssh://root@h:0",
            "ssh://@h",
            "docker://",
            "docker://a;b",
        ] {
            let e = TargetSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid target"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn local_runs_argv_without_a_shell() {
        let t = Target::local();
        let out = t.run(&["echo", "$(id)", ";", "x"]).await.unwrap();
        assert_eq!(out.stdout_str(), "$(id) ; x\n");
        assert!(t.read_file("/nonexistent/ccci").await.unwrap().is_none());
        assert!(t.read_file("/proc/self/status").await.unwrap().is_some());
    }
}
