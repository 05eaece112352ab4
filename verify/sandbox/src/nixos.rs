//! The `nixos` flavour of the systemd host: what a `nixos-rebuild switch` of a host running
//! the repository's module leaves on disk, laid out in the Debian container (docs/sandbox.md,
//! "The nixos flavour").
//!
//! The system itself is built **on the host by its own Nix** from the repository's
//! `fixtures/nix/system` flake (its `system.nix`): a toplevel that holds `etc` (with
//! `etc/systemd/system` one link to a `system-units` store path whose units are rendered from the
//! repository's module by `nix/eval/nixos-units.nix`, NixOS's own `Environment=` lines
//! included, and `etc/os-release`) and the prune package the units' `ExecStart` names. The
//! deploy copies the files that flake reads to `/root/ccci-system` (a git repository, evaluated
//! as `git+file`, as `nixos-rebuild --flake` evaluates a checkout) and stages the prune binary
//! for the package's builder; the activation builds the toplevel, points `/etc/static` at its
//! `etc` and `/run/current-system` at it.
//!
//! Beside that, in the Debian container's writable `/etc`:
//! - `/etc/systemd/system/<name> -> /etc/static/systemd/system/<name>` for the system's units
//!   and `<target>.wants/` links where the module says `wantedBy` (the Debian container's own
//!   units stay in the directory: see docs/sandbox.md for why it is not one link here); systemd
//!   then reports the wanted timer `enabled` and the timer-triggered service `linked`, as on
//!   NixOS;
//! - nixpkgs' docker module's own `docker-prune.service` (in the system), inert;
//! - the Docker client config as sops-nix renders a template: `/root/.docker/config.json ->
//!   /run/secrets/rendered/docker-config.json`, `/run/secrets -> /run/secrets.d/<N>`, mode
//!   0400, owner root;
//! - `/etc/NIXOS`, `/etc/os-release -> /etc/static/os-release`.

use std::path::Path;

use crate::error::{Result, SandboxError};

/// The rendered units' Nix expression, relative to the repository.
pub const RENDER_EXPR: &str = "nix/eval/nixos-units.nix";
/// The system stand-in flake's directory, relative to the repository.
pub const SYSTEM_FLAKE: &str = "fixtures/nix/system";
/// The repository files the system flake reads (directories: every file below), relative to
/// the repository: the flake, the unit renderer and the module, and the prune's source files
/// (the package's store path follows them, as `prune/build.rs`'s fingerprint does).
pub const SYSTEM_SOURCES: &[&str] = &[
    "fixtures/nix/system",
    "nix/eval",
    "nix/modules",
    "Cargo.toml",
    "Cargo.lock",
    "prune/Cargo.toml",
    "prune/build.rs",
    "prune/src",
];
/// Where the host keeps the system's source (a git repository the activation commits).
pub const SYSTEM_FLAKE_DIR: &str = "/root/ccci-system";
/// The flake attribute of the stand-in toplevel.
pub const SYSTEM_ATTR: &str = "nixosConfigurations.ccci-host.config.system.build.toplevel";
/// The same system with nixpkgs' docker autoPrune on (the `Deploy.nixos_auto_prune` wrong state).
pub const SYSTEM_ATTR_AUTO_PRUNE: &str =
    "nixosConfigurations.ccci-host-autoprune.config.system.build.toplevel";
/// Where the deploy stages the prune binary for the stand-in package's builder
/// (`fixtures/nix/system/system.nix` copies it from here).
pub const STAGED_BIN: &str = "/var/lib/ccci-sandbox/nixos/ci-docker-prune";
/// The sops-nix template the Docker client config links to: sops-nix renders templates under
/// `/run/secrets/rendered/`, and `/run/secrets` is a link to the current generation
/// `/run/secrets.d/<N>` (a ramfs; each activation makes the next generation).
pub const RENDERED_SECRET: &str = "/run/secrets/rendered/docker-config.json";
/// sops-nix's generations directory.
pub const SECRETS_GENERATIONS: &str = "/run/secrets.d";
/// Where the deploy stages the secret until the activation moves it under /run.
pub const STAGED_SECRET: &str = "/var/lib/ccci-sandbox/sops/docker-config.json";
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

/// Every file below `rel` in `repo` (a file: itself), repository-relative, sorted.
fn files_below(repo: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let p = repo.join(rel);
    let meta =
        std::fs::symlink_metadata(&p).map_err(|e| SandboxError::io("nixos flavour", &p, e))?;
    if meta.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&p)
            .map_err(|e| SandboxError::io("nixos flavour", &p, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            files_below(repo, &format!("{rel}/{n}"), out)?;
        }
    } else if meta.is_file() {
        let data = std::fs::read(&p).map_err(|e| SandboxError::io("nixos flavour", &p, e))?;
        out.push((rel.to_string(), data));
    }
    Ok(())
}

/// Everything the `nixos` flavour installs, as host paths: the prune binary staged for the
/// system's package, the system's source, the links into the system's `/etc`, the Docker client
/// config; `settings` (NixOS option values as JSON, a host configured away from the module's
/// defaults) become the system's `settings.json`, which the stand-in system renders its units
/// with. Returns the entries and the timers a target wants (started after the switch).
pub fn entries(
    repo: &Path,
    prune_bin: Option<&[u8]>,
    docker_config: Option<&str>,
    auto_prune: bool,
    settings: Option<&str>,
) -> Result<(Vec<Entry>, Vec<String>)> {
    let mut v = Vec::new();
    if let Some(bin) = prune_bin {
        v.push(Entry::File {
            path: STAGED_BIN.into(),
            mode: 0o555,
            data: bin.to_vec(),
        });
    }
    let mut sources = Vec::new();
    for rel in SYSTEM_SOURCES {
        files_below(repo, rel, &mut sources)?;
    }
    for (rel, data) in sources {
        v.push(Entry::File {
            path: format!("{SYSTEM_FLAKE_DIR}/{rel}"),
            mode: 0o644,
            data,
        });
    }
    if let Some(s) = settings {
        // the host's configuration: the system's units are rendered with it
        v.push(Entry::File {
            path: format!("{SYSTEM_FLAKE_DIR}/{SYSTEM_FLAKE}/settings.json"),
            mode: 0o644,
            data: s.as_bytes().to_vec(),
        });
    }
    // the unit names and what wants them (the texts are the system's, built on the host)
    let mut wanted_timers = Vec::new();
    for (name, unit) in render_units(
        repo,
        "/nix/store/x-pkg",
        "/nix/store/x-script",
        auto_prune,
        settings,
    )? {
        v.push(Entry::Link {
            path: format!("/etc/systemd/system/{name}"),
            target: format!("/etc/static/systemd/system/{name}"),
        });
        for target in &unit.wanted_by {
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
    // /etc/os-release as NixOS links it: /etc/os-release -> /etc/static/os-release -> the
    // system's etc (the checks decide NixOS from it, /etc/NIXOS and /run/current-system together)
    v.push(Entry::Link {
        path: "/etc/os-release".into(),
        target: "/etc/static/os-release".into(),
    });
    wanted_timers.sort();
    wanted_timers.dedup();
    Ok((v, wanted_timers))
}

/// What goes before the files of a `nixos` deploy: the previous system's source and the
/// links an earlier deploy made into `/etc/static` (a unit that is no longer the system's, e.g.
/// autoPrune's timer, disappears with them), never anything inside the store.
pub const CLEAN_SCRIPT: &str = "rm -rf /root/ccci-system; \
     find /etc/systemd/system -xtype l -lname '/etc/static/*' -delete 2>/dev/null; \
     find /etc/systemd/system -type l -lname '/etc/static/*' -delete 2>/dev/null; \
     systemctl stop docker-prune.timer 2>/dev/null; true";

/// The host commands that finish a `nixos` deploy after the files are in (what
/// `nixos-rebuild switch` does): the secret rendered as sops-nix renders a template, into the
/// next generation `/run/secrets.d/<N>/rendered/` (0400 root) with `/run/secrets` pointed at it
/// and the previous generation removed;
/// the system's source committed in [`SYSTEM_FLAKE_DIR`], its toplevel built with the host's Nix
/// as a `git+file` flake, and every path of its closure whose contents were changed in place (a
/// test's wrong state) rebuilt; `/etc/static` pointed at the toplevel's `etc`, `/run/current-system`
/// at the toplevel.
pub fn activate_script(auto_prune: bool) -> String {
    let attr = if auto_prune {
        SYSTEM_ATTR_AUTO_PRUNE
    } else {
        SYSTEM_ATTR
    };
    format!(
        "set -e; if [ -f {STAGED_SECRET} ]; then n=1; if [ -L /run/secrets ]; then n=$(( $(basename \"$(readlink /run/secrets)\") + 1 )); fi; \
         mkdir -p -m 0751 {SECRETS_GENERATIONS}/$n/rendered; install -m 0400 -o root -g root {STAGED_SECRET} {SECRETS_GENERATIONS}/$n/rendered/docker-config.json; \
         old=$(readlink /run/secrets || true); ln -sfn {SECRETS_GENERATIONS}/$n /run/secrets; if [ -n \"$old\" ] && [ \"$old\" != {SECRETS_GENERATIONS}/$n ]; then rm -rf \"$old\"; fi; rm -f {STAGED_SECRET}; fi; \
         cd {SYSTEM_FLAKE_DIR}; rm -rf .git; git init -q; git add -A; git -c user.name=ccci-sandbox -c user.email=ccci@sandbox.invalid commit -qm deploy; \
         a='git+file://{SYSTEM_FLAKE_DIR}?dir={SYSTEM_FLAKE}#{attr}'; out=$(nix eval --raw \"$a.outPath\"); nix build --no-link --option substituters '' \"$a\"; test -e \"$out\"; \
         for p in $(nix-store --query --requisites \"$out\"); do nix-store --verify-path \"$p\" 2>/dev/null || nix-store --repair-path \"$p\"; done; \
         etc=$(readlink -e \"$out/etc\"); rm -rf /etc/static; ln -s \"$etc\" /etc/static; ln -sfn \"$out\" /run/current-system"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_the_repository_system_nixos_style() {
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
        assert!(links.contains(&("/etc/os-release", "/etc/static/os-release")));
        // the docker module's service is there, its timer is not
        assert!(links
            .iter()
            .any(|(p, _)| *p == "/etc/systemd/system/docker-prune.service"));
        assert!(!links
            .iter()
            .any(|(p, _)| p.contains("docker-prune.timer") && !p.contains("ci-docker-prune")));
        let files: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::File { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        // what the system flake reads, and the binary its package copies
        for f in [
            "/root/ccci-system/fixtures/nix/system/flake.nix",
            "/root/ccci-system/fixtures/nix/system/system.nix",
            "/root/ccci-system/nix/eval/nixos-units.nix",
            "/root/ccci-system/nix/modules/docker-prune.nix",
            "/root/ccci-system/prune/src/main.rs",
            "/root/ccci-system/Cargo.lock",
            STAGED_BIN,
        ] {
            assert!(files.contains(&f), "{f} not deployed");
        }
        // no unit file is written outside the store: the system has them
        assert!(
            !files
                .iter()
                .any(|f| f.starts_with("/etc/") && f.contains("systemd")),
            "{files:?}"
        );
        let (with_auto, timers) = super::entries(&repo, None, None, true, None).unwrap();
        assert!(timers.contains(&"docker-prune.timer".to_string()));
        assert!(with_auto.iter().any(
            |e| matches!(e, Entry::Link { path, .. } if path == "/etc/systemd/system/docker-prune.timer")
        ));
        assert!(activate_script(true).contains("ccci-host-autoprune"));
        assert!(!activate_script(false).contains("autoprune"));
    }
}
