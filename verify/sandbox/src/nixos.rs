//! The `nixos` flavour of the systemd host: what a `nixos-rebuild switch` of a host running
//! the repository's module leaves on disk, laid out in the Debian container (docs/sandbox.md,
//! "The nixos flavour").
//!
//! - unit files rendered from the repository's own module by Nix (`nix/eval/nixos-units.nix`
//!   with the stand-in module system; no `[Install]` section), each in a store path
//!   `/nix/store/<hash>-unit-<name>/<name>`, linked `/etc/systemd/system/<name> ->
//!   /etc/static/systemd/system/<name> -> the store`, and `<target>.wants/` links where the
//!   module says `wantedBy`; systemd then reports the wanted timer `enabled` and the
//!   timer-triggered service `linked`, as on NixOS;
//! - nixpkgs' docker module's own `docker-prune.service`, inert (no timer: autoPrune is off);
//! - the prune binary at `/nix/store/<hash>-ci-docker-prune-<version>/bin/ci-docker-prune`;
//! - the Docker client config as sops-nix renders it: `/root/.docker/config.json ->
//!   /run/secrets-rendered/docker-config.json`, mode 0400, owner root;
//! - `/etc/NIXOS`, and `/run/current-system` pointing at a system built on the host by its own
//!   Nix from `fixtures/nix/system/flake.nix` (a stand-in toplevel).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};

/// The rendered units' Nix expression, relative to the repository.
pub const RENDER_EXPR: &str = "nix/eval/nixos-units.nix";
/// The system stand-in flake, relative to the repository.
pub const SYSTEM_FLAKE: &str = "fixtures/nix/system/flake.nix";
/// Where the host keeps the system flake it builds.
pub const SYSTEM_FLAKE_DIR: &str = "/root/ccci-system";
/// The flake attribute of the stand-in toplevel.
pub const SYSTEM_ATTR: &str = "nixosConfigurations.ccci-host.config.system.build.toplevel";
/// The sops-nix rendered secret the Docker client config links to.
pub const RENDERED_SECRET: &str = "/run/secrets-rendered/docker-config.json";
/// Where the deploy stages the secret until the activation moves it under /run.
pub const STAGED_SECRET: &str = "/var/lib/ccci-sandbox/sops/docker-config.json";
/// `/etc/os-release` of NixOS 25.11 as nixpkgs' `nixos/modules/misc/version.nix` writes it
/// (the build id is the stand-in's).
pub const OS_RELEASE: &str = "ANSI_COLOR=\"0;38;2;126;186;228\"
BUG_REPORT_URL=\"https://github.com/NixOS/nixpkgs/issues\"
BUILD_ID=\"25.11.20251201.0000000\"
CPE_NAME=\"cpe:/o:nixos:nixos:25.11\"
DEFAULT_HOSTNAME=nixos
DOCUMENTATION_URL=\"https://nixos.org/learn.html\"
HOME_URL=\"https://nixos.org/\"
ID=nixos
ID_LIKE=\"\"
IMAGE_ID=\"\"
IMAGE_VERSION=\"\"
LOGO=\"nix-snowflake\"
NAME=NixOS
PRETTY_NAME=\"NixOS 25.11 (Xantusia)\"
SUPPORT_URL=\"https://nixos.org/community.html\"
VERSION=\"25.11 (Xantusia)\"
VERSION_CODENAME=xantusia
VERSION_ID=\"25.11\"
";
/// The `ci-docker-prune` version in its store path name.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One thing the deploy puts into the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Link {
        path: String,
        target: String,
    },
}

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A store path name `<hash>-<name>`, the hash taken from the content (a stand-in for Nix's own
/// derivation hashing: the same content gives the same path).
pub fn store_path(name: &str, content: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(content)
        .finalize();
    let hash: String = digest
        .iter()
        .take(32)
        .map(|b| NIX32[(*b as usize) % 32] as char)
        .collect();
    format!("/nix/store/{hash}-{name}")
}

/// A unit as the module renders it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct RenderedUnit {
    pub text: String,
    #[serde(rename = "wantedBy")]
    pub wanted_by: Vec<String>,
}

/// Render the units of `repo`'s module (as `nix/eval/nixos-units.nix` there does) with the prune
/// package at `package` and the docker module's prune script at `script`; `auto_prune` adds
/// autoPrune's `docker-prune.timer` (a wrong state); `settings` (NixOS option values as JSON)
/// replaces the expression's default settings (a host configured away from the module's
/// defaults). Runs `nix-instantiate` on this machine.
pub fn render_units(
    repo: &Path,
    package: &str,
    script: &str,
    auto_prune: bool,
    settings: Option<&str>,
) -> Result<Vec<(String, RenderedUnit)>> {
    let expr = repo.join(RENDER_EXPR);
    let mut cmd = std::process::Command::new("nix-instantiate");
    if let Some(s) = settings {
        cmd.args(["--argstr", "settings", s]);
    }
    let out = cmd
        .args(["--eval", "--strict", "--json"])
        .arg(&expr)
        .args(["--argstr", "packagePath", package])
        .args(["--argstr", "scriptPath", script])
        .args([
            "--arg",
            "autoPrune",
            if auto_prune { "true" } else { "false" },
        ])
        .output()
        .map_err(|e| {
            SandboxError::Config(format!(
                "nixos flavour: cannot run nix-instantiate (install nix-bin): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(SandboxError::Config(format!(
            "nixos flavour: nix-instantiate {} failed: {}",
            expr.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let units: std::collections::BTreeMap<String, RenderedUnit> =
        serde_json::from_slice(&out.stdout).map_err(|e| {
            SandboxError::Config(format!(
                "nixos flavour: rendered units are not the expected JSON: {e}"
            ))
        })?;
    Ok(units.into_iter().collect())
}

/// Everything the `nixos` flavour installs, as host paths: the prune binary (bytes), the
/// repository to render from, the Docker client config; `settings` as in [`render_units`].
pub fn entries(
    repo: &Path,
    prune_bin: Option<&[u8]>,
    docker_config: Option<&str>,
    auto_prune: bool,
    settings: Option<&str>,
) -> Result<(Vec<Entry>, Vec<String>)> {
    let mut v = Vec::new();
    let package = store_path(
        &format!("ci-docker-prune-{VERSION}"),
        prune_bin.unwrap_or_default(),
    );
    if let Some(bin) = prune_bin {
        v.push(Entry::File {
            path: format!("{package}/bin/ci-docker-prune"),
            mode: 0o555,
            data: bin.to_vec(),
        });
    }
    let script_text = b"#!/bin/sh\n# nixpkgs' docker module: autoPrune's command (inert while no timer triggers it)\nexec docker system prune -f\n";
    let script = store_path("unit-script-docker-prune-start", script_text);
    v.push(Entry::File {
        path: format!("{script}/bin/docker-prune-start"),
        mode: 0o555,
        data: script_text.to_vec(),
    });
    let mut wanted_timers = Vec::new();
    for (name, unit) in render_units(repo, &package, &script, auto_prune, settings)? {
        let store = store_path(&format!("unit-{name}"), unit.text.as_bytes());
        v.push(Entry::File {
            path: format!("{store}/{name}"),
            mode: 0o444,
            data: unit.text.into_bytes(),
        });
        v.push(Entry::Link {
            path: format!("/etc/static/systemd/system/{name}"),
            target: format!("{store}/{name}"),
        });
        v.push(Entry::Link {
            path: format!("/etc/systemd/system/{name}"),
            target: format!("/etc/static/systemd/system/{name}"),
        });
        for target in &unit.wanted_by {
            v.push(Entry::Link {
                path: format!("/etc/static/systemd/system/{target}.wants/{name}"),
                target: format!("../{name}"),
            });
            v.push(Entry::Link {
                path: format!("/etc/systemd/system/{target}.wants/{name}"),
                target: format!("/etc/static/systemd/system/{target}.wants/{name}"),
            });
            if name.ends_with(".timer") {
                wanted_timers.push(name.clone());
            }
        }
    }
    if let Some(cfg) = docker_config {
        // /run is a tmpfs the archive upload cannot reach: the secret is staged in the
        // rootfs and moved into place by the activation (as sops-nix decrypts at activation)
        v.push(Entry::File {
            path: STAGED_SECRET.into(),
            mode: 0o400,
            data: cfg.as_bytes().to_vec(),
        });
        v.push(Entry::Dir {
            path: "/root/.docker".into(),
            mode: 0o700,
        });
        v.push(Entry::Link {
            path: "/root/.docker/config.json".into(),
            target: RENDERED_SECRET.into(),
        });
    }
    v.push(Entry::File {
        path: "/etc/NIXOS".into(),
        mode: 0o644,
        data: Vec::new(),
    });
    // /etc/os-release as NixOS links it: /etc/os-release -> /etc/static/os-release -> the store
    // (the checks decide NixOS from it, /etc/NIXOS and /run/current-system together)
    let os_release = store_path("etc-os-release", OS_RELEASE.as_bytes());
    v.push(Entry::File {
        path: os_release.clone(),
        mode: 0o444,
        data: OS_RELEASE.as_bytes().to_vec(),
    });
    v.push(Entry::Link {
        path: "/etc/static/os-release".into(),
        target: os_release,
    });
    v.push(Entry::Link {
        path: "/etc/os-release".into(),
        target: "/etc/static/os-release".into(),
    });
    let flake = std::fs::read(repo.join(SYSTEM_FLAKE))
        .map_err(|e| SandboxError::io("nixos flavour", repo.join(SYSTEM_FLAKE), e))?;
    v.push(Entry::File {
        path: format!("{SYSTEM_FLAKE_DIR}/flake.nix"),
        mode: 0o644,
        data: flake,
    });
    wanted_timers.sort();
    wanted_timers.dedup();
    Ok((v, wanted_timers))
}

/// The host commands that finish a `nixos` deploy after the files are in (what activation
/// does): the rendered secret into `/run/secrets-rendered/` (0400 root), the system stand-in
/// built with the host's Nix and `/run/current-system` pointed at it.
pub fn activate_script() -> String {
    format!(
        "set -e; if [ -f {STAGED_SECRET} ]; then mkdir -p -m 0751 /run/secrets-rendered; install -m 0400 -o root -g root {STAGED_SECRET} {RENDERED_SECRET}; rm -f {STAGED_SECRET}; fi; a='path:{SYSTEM_FLAKE_DIR}#{SYSTEM_ATTR}'; out=$(nix eval --raw \"$a.outPath\"); nix build --no-link --option substituters '' \"$a\"; test -e \"$out\"; ln -sfn \"$out\" /run/current-system"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_look_like_nix() {
        let p = store_path("unit-x.timer", b"[Timer]\n");
        let hash = p
            .strip_prefix("/nix/store/")
            .and_then(|r| r.split_once('-'))
            .map(|(h, _)| h)
            .unwrap_or_default();
        assert_eq!(hash.len(), 32, "{p}");
        assert!(hash.bytes().all(|b| NIX32.contains(&b)), "{p}");
        assert!(p.ends_with("-unit-x.timer"));
        assert_ne!(p, store_path("unit-x.timer", b"[Timer]\nX=1\n"));
    }

    #[test]
    fn renders_the_repository_module_nixos_style() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if std::process::Command::new("nix-instantiate")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("nix-instantiate is needed (Debian package nix-bin; .ci/deps installs it)");
        }
        let (entries, timers) = entries(&repo, Some(b"bin"), Some("{}"), false, None).unwrap();
        assert_eq!(timers, vec!["ci-docker-prune.timer".to_string()]);
        let links: Vec<(&str, &str)> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Link { path, target } => Some((path.as_str(), target.as_str())),
                _ => None,
            })
            .collect();
        assert!(links.contains(&(
            "/etc/systemd/system/ci-docker-prune.timer",
            "/etc/static/systemd/system/ci-docker-prune.timer"
        )));
        assert!(links.contains(&(
            "/etc/systemd/system/timers.target.wants/ci-docker-prune.timer",
            "/etc/static/systemd/system/timers.target.wants/ci-docker-prune.timer"
        )));
        assert!(links.contains(&("/root/.docker/config.json", RENDERED_SECRET)));
        // the docker module's service is there, its timer is not
        assert!(links
            .iter()
            .any(|(p, _)| *p == "/etc/systemd/system/docker-prune.service"));
        assert!(!links
            .iter()
            .any(|(p, _)| p.contains("docker-prune.timer") && !p.contains("ci-docker-prune")));
        let service = entries
            .iter()
            .find_map(|e| match e {
                Entry::File { path, data, .. } if path.ends_with("/ci-docker-prune.service") => {
                    Some(String::from_utf8_lossy(data).to_string())
                }
                _ => None,
            })
            .unwrap();
        assert!(!service.contains("[Install]"), "{service}");
        assert!(
            service.contains("ExecStart=\"/nix/store/")
                && service.contains(&format!("-ci-docker-prune-{VERSION}/bin/ci-docker-prune\"")),
            "{service}"
        );
        let (with_auto, timers) = super::entries(&repo, None, None, true, None).unwrap();
        assert!(timers.contains(&"docker-prune.timer".to_string()));
        assert!(with_auto.iter().any(
            |e| matches!(e, Entry::Link { path, .. } if path == "/etc/systemd/system/docker-prune.timer")
        ));
    }
}
