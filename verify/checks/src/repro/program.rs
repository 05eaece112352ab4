//! `repro.program-git-eq-host`: the program the prune service runs is git's product at REV,
//! not a build of other source and not a script in its place (the seed's F2pc-1: a host ran a
//! build of uncommitted source while everything else looked right).
//!
//! For every `ExecStart=` of the prune service, the program systemd executes (its `path=`,
//! resolved on the host):
//! - is an ELF executable (`od -N4` shows `7f 45 4c 46`), never a script that could behave
//!   for the verifier and prune with `--all` otherwise;
//! - prints, on `--version`, the source fingerprint its build computed (`prune/build.rs`), and
//!   that fingerprint equals the one this check computes from git's objects at REV
//!   ([`fingerprint`] over [`source_files`]; no checkout);
//! - on NixOS, also lies in the closure of the running system (`nix-store --query --requisites
//!   /run/current-system`), both as named and resolved: the system `repro.system-git-eq-host`
//!   compares with git, so a store path from another build fails even when its binary is the
//!   same.
//!
//! What it cannot tell: an ELF built to print git's fingerprint while doing something else (no
//! reproducible build to compare bytes with); docs/checks.md says so.

use super::blocking;
use crate::Ctx;
use ccci_core::{short, Decided, Halt, Outcome, Trail};
use ccci_nix::GitRepo;
use sha2::{Digest, Sha256};

/// The single files of the fingerprinted set; with every file below [`SRC_DIR`]. The same set
/// as `prune/build.rs` (written there independently; the gate's tests compare the two through a
/// real build).
pub const FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "prune/Cargo.toml",
    "prune/build.rs",
];
/// The directory whose every file is fingerprinted.
pub const SRC_DIR: &str = "prune/src";

/// The fingerprint of `files` (repository-relative path, content): the sha256 of their
/// manifest as `sha256sum` prints it (`<sha256 hex>  <path>\n` per file, sorted by path),
/// `sha256:<hex>`.
pub fn fingerprint(files: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let manifest: String = sorted
        .iter()
        .map(|(path, data)| format!("{}  {path}\n", hex::encode(Sha256::digest(data))))
        .collect();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest.as_bytes()))
    )
}

/// Repository-relative paths with their contents.
pub type Files = Vec<(String, Vec<u8>)>;

/// The commit `rev` resolves to and the fingerprinted files at it, read from git's objects.
pub fn source_files(repo: &std::path::Path, rev: &str) -> Result<(String, Files), String> {
    let g = GitRepo::open(repo).map_err(|e| e.to_string())?;
    let sha = g.resolve(rev).map_err(|e| e.to_string())?;
    let mut paths: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    paths.extend(g.list_files(&sha, SRC_DIR).map_err(|e| e.to_string())?);
    let data = g
        .read_files_at_commit(&sha, &paths)
        .map_err(|e| e.to_string())?;
    Ok((sha, paths.into_iter().zip(data).collect()))
}

/// The fingerprint in `ci-docker-prune --version` output (`… (source sha256:<64 hex>)`).
pub fn version_fingerprint(out: &str) -> Option<String> {
    let i = out.find("(source sha256:")? + "(source ".len();
    let rest = &out[i..];
    let hex = rest.strip_prefix("sha256:")?;
    let digits: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    (digits.len() == 64 && hex[64..].starts_with(')')).then(|| format!("sha256:{digits}"))
}

/// The program of an `ExecStart=` value as `systemctl show` prints it (`{ path=/x ; argv[]=… }`):
/// what systemd executes, whatever `argv[0]` says.
pub fn exec_path(value: &str) -> Option<String> {
    let i = value.find("path=")? + "path=".len();
    let rest = &value[i..];
    let end = rest.find(" ; ").unwrap_or(rest.len());
    let p = rest[..end].trim();
    (!p.is_empty()).then(|| p.to_string())
}

/// The store path (`/nix/store/<hash>-<name>`) a path lies in, if any.
pub fn store_path_of(p: &str) -> Option<String> {
    let rest = p.strip_prefix("/nix/store/")?;
    let name = rest.split('/').next().filter(|n| !n.is_empty())?;
    Some(format!("/nix/store/{name}"))
}

/// One program's facts on the host, against git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The `path=` systemd executes.
    pub path: String,
    /// It resolved (`readlink -e`) to this file.
    pub resolved: Option<String>,
    /// Its first four bytes are `\x7fELF`.
    pub elf: bool,
    /// The fingerprint its `--version` printed.
    pub printed: Option<String>,
    /// On NixOS: the named and resolved store paths are in the running system's closure
    /// (`None` elsewhere).
    pub in_system: Option<Result<(), String>>,
}

/// Decision over every program of the service against git's fingerprint.
pub fn decide(service: &str, facts: &[Facts], git: &str, rev: &str) -> Outcome {
    let mut bad = Vec::new();
    if facts.is_empty() {
        return Outcome::fail(format!("{service} has no ExecStart: no program to compare"));
    }
    for f in facts {
        if !f.path.starts_with('/') {
            // systemd looks a bare name up in its own search path (with /usr/local/sbin first),
            // which a command on the host does not reproduce: only an absolute path is judged
            bad.push(format!(
                "{} names no directory: systemd finds it in its own search path, which this check cannot follow; git's units name an absolute path",
                f.path
            ));
            continue;
        }
        let Some(resolved) = &f.resolved else {
            bad.push(format!("{} does not exist on the host", f.path));
            continue;
        };
        if !f.elf {
            bad.push(format!(
                "{} (resolved {resolved}) is not an ELF executable (a script or wrapper in place of the product)",
                f.path
            ));
            continue;
        }
        match &f.printed {
            None => bad.push(format!(
                "{} --version prints no source fingerprint: not a build of this repository's prune",
                f.path
            )),
            Some(p) if p != git => bad.push(format!(
                "{} was built from other source: its fingerprint is {p}, git at {} has {git}",
                f.path,
                short(rev)
            )),
            Some(_) => {}
        }
        if let Some(Err(e)) = &f.in_system {
            bad.push(e.clone());
        }
    }
    if bad.is_empty() {
        let nixos = facts.iter().any(|f| f.in_system.is_some());
        Outcome::pass(format!(
            "{service} runs {}: an ELF built from git's source at {} ({git}){}",
            facts
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            short(rev),
            if nixos {
                ", in the running system's closure"
            } else {
                ""
            }
        ))
    } else {
        Outcome::fail(bad.join("; "))
    }
}

pub(super) async fn program_git_eq_host(ctx: &Ctx, t: &mut Trail) -> Decided {
    let service = ctx.params.prune_service.clone();
    let s = ctx.unit_state(t, &service).await?;
    if !s.is_loaded() {
        return Err(Halt::fail(format!(
            "{service} is not loaded (LoadState={}): no program to compare",
            s.load_state
        )));
    }
    let paths: Vec<String> = s
        .raw
        .get("ExecStart")
        .map(|v| v.lines().filter_map(exec_path).collect())
        .unwrap_or_default();
    let nixos = super::host_is_nixos(ctx, t).await?;
    let (repo, rev) = (ctx.repo.clone(), ctx.rev.clone());
    let (commit, files) = blocking(move || source_files(&repo, &rev))
        .await?
        .map_err(|e| Halt::error(format!("cannot read the prune's source at REV: {e}")))?;
    let git = fingerprint(&files);
    t.note(
        format!(
            "source fingerprint of git at {} (prune/build.rs's set)",
            short(&commit)
        ),
        format!(
            "{git} over {} files: {}",
            files.len(),
            files
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let closure = if nixos {
        let current = ctx.params.repro.current_system.clone();
        let q = ctx
            .target
            .run(&["nix-store", "--query", "--requisites", "--", &current])
            .await
            .map_err(|e| Halt::error(format!("cannot read the running system's closure: {e}")))?;
        if !q.ok() {
            return Err(Halt::error(format!(
                "nix-store --query --requisites {current} failed: {}",
                q.stderr_str().trim()
            )));
        }
        let c: Vec<String> = q
            .stdout_str()
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        t.note(
            format!("nix-store --query --requisites -- {current}"),
            format!("{} store paths in the running system's closure", c.len()),
        );
        Some((current, c))
    } else {
        None
    };
    let mut facts = Vec::new();
    for path in paths {
        if !path.starts_with('/') {
            // decided without a look (see `decide`): `readlink` here would resolve it against
            // the command's working directory, not systemd's search path
            facts.push(Facts {
                path,
                resolved: None,
                elf: false,
                printed: None,
                in_system: None,
            });
            continue;
        }
        let r = ctx.cmd(t, &["readlink", "-e", "--", &path]).await?;
        let resolved = r
            .ok()
            .then(|| r.stdout_str().trim().to_string())
            .filter(|s| !s.is_empty());
        let (mut elf, mut printed) = (false, None);
        if let Some(file) = &resolved {
            let od = ctx
                .cmd(t, &["od", "-An", "-tx1", "-N4", "--", file])
                .await?;
            elf = od.ok()
                && od.stdout_str().split_whitespace().collect::<Vec<_>>()
                    == ["7f", "45", "4c", "46"];
            if elf {
                let v = ctx.cmd(t, &[file, "--version"]).await?;
                printed = v
                    .ok()
                    .then(|| version_fingerprint(&v.stdout_str()))
                    .flatten();
            }
        }
        let in_system = closure.as_ref().map(|(current, c)| {
            let mut missing = Vec::new();
            for p in std::iter::once(&path).chain(resolved.as_ref()) {
                match store_path_of(p) {
                    Some(sp) if c.contains(&sp) => {}
                    Some(sp) => missing.push(format!(
                        "{p}: its store path {sp} is not in the closure of {current}"
                    )),
                    None => missing.push(format!("{p} is not in the Nix store")),
                }
            }
            missing.dedup();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} is not the running system's program ({})",
                    path,
                    missing.join("; ")
                ))
            }
        });
        // in the closure, and unchanged: a store path edited in place keeps its name (from the
        // adversarial read: a wrapper ELF put inside the package's store path passed)
        let mut in_system = in_system;
        if matches!(in_system, Some(Ok(()))) {
            let mut sps: Vec<String> = std::iter::once(&path)
                .chain(resolved.as_ref())
                .filter_map(|p| store_path_of(p))
                .collect();
            sps.dedup();
            for sp in sps {
                let v = ctx
                    .cmd(t, &["nix-store", "--verify-path", "--", &sp])
                    .await?;
                let said = format!("{}{}", v.stdout_str(), v.stderr_str());
                if !v.ok() && said.contains("was modified") {
                    in_system = Some(Err(format!(
                        "{path}: its store path {sp} was modified in place (nix-store --verify-path: {})",
                        said.trim()
                    )));
                    break;
                }
            }
        }
        facts.push(Facts {
            path,
            resolved,
            elf,
            printed,
            in_system,
        });
    }
    Ok(decide(&service, &facts, &git, &commit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict;

    /// The fingerprint's definition, from coreutils: in a directory holding `a/b` = "hi" and
    /// an empty `b`, `sha256sum a/b b | sha256sum` prints
    /// `56912bd8f17a02e879b6558f2c2f1f048420bab661f6001a8f875062fd592b45` (hand-run, kept).
    #[test]
    fn fingerprint_is_the_sha256sum_manifest() {
        let want = "sha256:56912bd8f17a02e879b6558f2c2f1f048420bab661f6001a8f875062fd592b45";
        let got = fingerprint(&[("b".into(), vec![]), ("a/b".into(), b"hi".to_vec())]);
        assert_eq!(got, want);
        assert_ne!(
            got,
            fingerprint(&[("b".into(), vec![]), ("a/b".into(), b"hj".to_vec())])
        );
    }

    #[test]
    fn reads_the_fingerprint_from_version_output() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            version_fingerprint(&format!("ci-docker-prune 0.1.0 (source sha256:{hex})\n")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(version_fingerprint("ci-docker-prune 0.1.0\n"), None);
        assert_eq!(
            version_fingerprint(&format!("x (source sha256:{}", &hex[..63])),
            None
        );
    }

    #[test]
    fn a_bare_program_name_is_never_judged_by_the_working_directory() {
        // from the adversarial read: a drop-in's `ExecStart=ci-docker-prune …` ran a script
        // at /usr/local/sbin while `readlink` judged /ci-docker-prune, a right binary
        let f = Facts {
            path: "ci-docker-prune".into(),
            resolved: Some("/ci-docker-prune".into()),
            elf: true,
            printed: Some("sha256:aa".into()),
            in_system: None,
        };
        let o = decide("ci-docker-prune.service", &[f], "sha256:aa", "0123456789ab");
        assert_eq!(o.verdict, ccci_core::Verdict::Fail, "{}", o.detail);
        assert!(o.detail.contains("names no directory"), "{}", o.detail);
    }

    #[test]
    fn exec_path_is_what_systemd_executes() {
        assert_eq!(
            exec_path("{ path=/usr/local/bin/x ; argv[]=/usr/local/bin/ci-docker-prune --json ; ignore_errors=no ; start_time=[n/a] }"),
            Some("/usr/local/bin/x".into())
        );
        assert_eq!(exec_path("{ argv[]=/x }"), None);
        assert_eq!(
            store_path_of("/nix/store/abc-ci-docker-prune-0.1.0/bin/ci-docker-prune"),
            Some("/nix/store/abc-ci-docker-prune-0.1.0".into())
        );
        assert_eq!(store_path_of("/usr/bin/x"), None);
    }

    fn facts(elf: bool, printed: Option<&str>, in_system: Option<Result<(), String>>) -> Facts {
        Facts {
            path: "/usr/local/bin/ci-docker-prune".into(),
            resolved: Some("/usr/local/bin/ci-docker-prune".into()),
            elf,
            printed: printed.map(String::from),
            in_system,
        }
    }

    #[test]
    fn decisions() {
        let git = "sha256:aa";
        let rev = "0123456789abcdef0123";
        let v = |f: &[Facts]| decide("p.service", f, git, rev).verdict;
        assert_eq!(v(&[facts(true, Some(git), None)]), Verdict::Pass);
        assert_eq!(v(&[facts(true, Some(git), Some(Ok(())))]), Verdict::Pass);
        assert_eq!(v(&[facts(false, Some(git), None)]), Verdict::Fail);
        assert_eq!(v(&[facts(true, Some("sha256:bb"), None)]), Verdict::Fail);
        assert_eq!(v(&[facts(true, None, None)]), Verdict::Fail);
        assert_eq!(
            v(&[facts(true, Some(git), Some(Err("outside".into())))]),
            Verdict::Fail
        );
        assert_eq!(v(&[]), Verdict::Fail);
        let mut missing = facts(true, Some(git), None);
        missing.resolved = None;
        assert_eq!(v(&[missing]), Verdict::Fail);
        // every program counts, not only the first
        assert_eq!(
            v(&[facts(true, Some(git), None), facts(false, None, None)]),
            Verdict::Fail
        );
    }
}
