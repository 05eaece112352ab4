//! `repro.system-git-eq-host`: on a NixOS host, `/run/current-system` (the spec's
//! `current_system`) is the system toplevel that git at REV evaluates to. The flake
//! (`[params.repro] system_flake`, a directory of the repository) and its attribute
//! (`system_attr`) come from the gate spec.
//!
//! Git at REV is evaluated exactly as `nixos-rebuild --flake CHECKOUT#HOST` on a clean
//! checkout at REV evaluates it: as a `git+file` flake, so `self.rev`, `self.shortRev`,
//! `self.lastModified`, `self.revCount` and `narHash` are REV's (a configuration that sets
//! `system.configurationRevision = self.rev or self.dirtyRev or null` gets REV), and nothing
//! else is in its tree. A fresh repository holding REV and its history (named by the ref
//! `ccci-rev`) is copied to a temporary directory on the host through the target's own
//! transport (base64 chunks, so ssh and docker exec alike; the upload lands beside the
//! repository, never inside it) and `nix eval --raw git+file://DIR/repo?ref=ccci-rev&rev=REV
//! [&dir=SUB]#ATTR.outPath` runs there, where the flake's inputs already are: evaluation only,
//! nothing is built to decide. On a mismatch git's toplevel is built and `nix store
//! diff-closures` shows what differs. A host that is not NixOS: the check does not apply
//! (skip, not blocking).

use super::blocking;
use crate::Ctx;
use base64::Engine as _;
use ccci_core::{short, Decided, Evidence, Halt, Outcome, Trail};

/// Base64 characters per upload command (well under the 128 KiB a single argument may take).
const CHUNK: usize = 48 * 1024;

const NIX: &[&str] = &["nix", "--extra-experimental-features", "nix-command flakes"];

/// Decision from both store paths.
pub fn decide(current: &str, host: &str, git: &str, rev: &str, attr: &str) -> Outcome {
    if host == git {
        Outcome::pass(format!(
            "{current} is {host}, the toplevel git at {} evaluates to ({attr})",
            short(rev)
        ))
    } else {
        Outcome::fail(format!(
            "{current} is {host}, but git at {} evaluates {attr} to {git}",
            short(rev)
        ))
    }
}

/// The ref the shipped repository names REV by (Nix 2.8's git fetcher fetches a ref, then
/// looks for the rev in it).
const REV_REF: &str = "ccci-rev";

fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Git at REV as `nixos-rebuild --flake CHECKOUT#HOST` reads it: a repository holding REV and
/// its whole history (so `self.rev`, `self.shortRev`, `self.lastModified`, `self.revCount` and
/// the tree's `narHash` are the checkout's), REV named by the ref [`REV_REF`], nothing else in
/// it. Returns the full commit id and the repository's `.git` as a gzipped tar.
fn repo_at_rev(repo: &std::path::Path, rev: &str) -> Result<(String, Vec<u8>), String> {
    let commit = git(
        repo,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )?;
    // fetched from another directory: a relative repository path (`--repo .`) must not name
    // the new repository itself
    let src = std::fs::canonicalize(repo)
        .map_err(|e| format!("{}: {e}", repo.display()))?
        .to_string_lossy()
        .to_string();
    let tmp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let dir = tmp.path();
    git(dir, &["init", "-q"])?;
    git(
        dir,
        &[
            "-c",
            "protocol.version=2",
            "fetch",
            "-q",
            "--no-tags",
            &src,
            &format!("{commit}:refs/heads/{REV_REF}"),
        ],
    )?;
    git(
        dir,
        &["symbolic-ref", "HEAD", &format!("refs/heads/{REV_REF}")],
    )?;
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-czf", "-", ".git"])
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tar of the repository at REV: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((commit, out.stdout))
}

/// The flake reference `nixos-rebuild` evaluates for a checkout at `repo_dir` at `commit`, the
/// flake in `sub` (`.` or empty: the root).
pub fn flake_ref(repo_dir: &str, commit: &str, sub: &str) -> String {
    let sub = sub.trim_matches('/');
    let dir = if sub.is_empty() || sub == "." {
        String::new()
    } else {
        format!("&dir={sub}")
    };
    format!("git+file://{repo_dir}?ref={REV_REF}&rev={commit}{dir}")
}

/// Git at REV on the host, where the flake's inputs are: a temporary directory holding the
/// repository at REV (see [`repo_at_rev`]) and the `git+file` flake reference `nixos-rebuild`
/// would evaluate for it. [`HostFlake::remove`] deletes it again.
pub(crate) struct HostFlake {
    dir: String,
    /// `git+file://DIR/repo?ref=ccci-rev&rev=REV[&dir=SUB]`
    pub flake: String,
}

impl HostFlake {
    /// Copy git at REV (the flake in `[params.repro] system_flake`) to the host through the
    /// target's own transport (base64 chunks, so ssh and docker exec alike; the upload lands
    /// beside the repository, never inside it). Recorded.
    pub(crate) async fn upload(ctx: &Ctx, t: &mut Trail) -> Result<HostFlake, Halt> {
        let flake_dir = ctx.params.repro.system_flake.clone();
        let (repo, rev) = (ctx.repo.clone(), ctx.rev.clone());
        let (commit, tarball) = blocking(move || repo_at_rev(&repo, &rev))
            .await?
            .map_err(|e| Halt::error(format!("cannot read git at REV: {e}")))?;
        let tmp = ctx
            .cmd(t, &["mktemp", "-d", "/tmp/ccci-system-XXXXXX"])
            .await?;
        let dir = tmp.stdout_str().trim().to_string();
        if !tmp.ok() || !dir.starts_with("/tmp/ccci-system-") {
            return Err(Halt::error(format!("mktemp on the host gave `{dir}`")));
        }
        let hf = HostFlake {
            flake: flake_ref(&format!("{dir}/repo"), &commit, &flake_dir),
            dir,
        };
        match hf.unpack(ctx, t, &commit, &tarball).await {
            Ok(()) => Ok(hf),
            Err(e) => {
                hf.remove(ctx).await;
                Err(e)
            }
        }
    }

    async fn unpack(
        &self,
        ctx: &Ctx,
        t: &mut Trail,
        commit: &str,
        tarball: &[u8],
    ) -> Result<(), Halt> {
        let dir = &self.dir;
        let b64 = base64::engine::general_purpose::STANDARD.encode(tarball);
        // the upload sits beside the repository, never inside the tree that is evaluated
        let file = format!("{dir}/upload.tar.gz");
        let repo_dir = format!("{dir}/repo");
        let mut chunks = 0;
        for chunk in b64.as_bytes().chunks(CHUNK) {
            let chunk = std::str::from_utf8(chunk).unwrap_or_default();
            let o = ctx
                .target
                .run(&[
                    "sh",
                    "-c",
                    "printf %s \"$1\" >> \"$2\"",
                    "sh",
                    chunk,
                    &format!("{file}.b64"),
                ])
                .await
                .map_err(|e| Halt::error(format!("cannot copy git at REV to the host: {e}")))?;
            if !o.ok() {
                return Err(Halt::error(format!(
                    "cannot copy git at REV to the host: {}",
                    o.combined()
                )));
            }
            chunks += 1;
        }
        t.push(Evidence::new(
            format!(
                "git init; git fetch --no-tags REPO {commit}:refs/heads/{REV_REF}; tar -czf - .git | base64 > (host) {file}.b64"
            ),
            Some(0),
            format!(
                "{} bytes (REV and its history, nothing else) in {chunks} chunk(s) of base64 through the target's transport",
                tarball.len()
            ),
        ));
        let x = ctx
            .cmd(
                t,
                &[
                    "sh",
                    "-c",
                    "base64 -d < \"$1.b64\" > \"$1\" && mkdir \"$2\" && tar -xzf \"$1\" -C \"$2\" && rm -f \"$1\" \"$1.b64\"",
                    "sh",
                    &file,
                    &repo_dir,
                ],
            )
            .await?;
        if !x.ok() {
            return Err(Halt::error("cannot unpack git at REV on the host"));
        }
        Ok(())
    }

    /// Delete the upload from the host (not recorded: it changes nothing the verdict read).
    pub(crate) async fn remove(self, ctx: &Ctx) {
        let _ = ctx.target.run(&["rm", "-rf", "--", &self.dir]).await;
    }
}

/// A `nix eval` on the host with the flake features on, `args` after `eval`.
pub(crate) fn nix_eval(args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = NIX.iter().map(|s| s.to_string()).collect();
    argv.push("eval".into());
    argv.extend(args.iter().cloned());
    argv
}

/// Error text of a failed `nix` run without its warnings, on one line.
pub(crate) fn nix_error(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// The link to the running system (`[params.repro] current_system`) resolved on the host: a
/// store path, else a FAIL.
pub(crate) async fn current_system(ctx: &Ctx, t: &mut Trail) -> Result<String, Halt> {
    let current = ctx.params.repro.current_system.clone();
    let cur = ctx.cmd(t, &["readlink", "-f", "--", &current]).await?;
    let host_path = cur.stdout_str().trim().to_string();
    if !cur.ok() || !host_path.starts_with("/nix/store/") {
        return Err(Halt::fail(format!(
            "{current} is not a store path: `{host_path}`"
        )));
    }
    Ok(host_path)
}

pub(super) async fn system_git_eq_host(ctx: &Ctx, t: &mut Trail) -> Decided {
    if !super::host_is_nixos(ctx, t).await? {
        return Ok(Outcome::not_applicable(
            "the host is not NixOS (no /etc/NIXOS): it has no system toplevel to compare with git",
        ));
    }
    let Some(attr) = ctx.params.repro.system_attr.clone() else {
        return Err(Halt::error(
            "[params.repro] system_attr is not set: the gate spec must name the flake attribute of the system toplevel",
        ));
    };
    let host_path = current_system(ctx, t).await?;
    compare_toplevel(ctx, t, &attr, &host_path).await
}

/// Git at REV (a repository holding REV and its history, copied to the host and evaluated
/// there as a git+file flake: what nixos-rebuild evaluates, nothing added to its tree)
/// evaluated to its toplevel `attr`, against `host_path`.
pub(crate) async fn compare_toplevel(
    ctx: &Ctx,
    t: &mut Trail,
    attr: &str,
    host_path: &str,
) -> Decided {
    let hf = HostFlake::upload(ctx, t).await?;
    let r = evaluate_and_compare(ctx, t, &hf.flake, attr, host_path).await;
    hf.remove(ctx).await;
    r
}

async fn evaluate_and_compare(
    ctx: &Ctx,
    t: &mut Trail,
    flake: &str,
    attr: &str,
    host_path: &str,
) -> Decided {
    let argv = nix_eval(&["--raw".into(), format!("{flake}#{attr}.outPath")]);
    let ev = ctx.cmd_owned(t, &argv).await?;
    let git_path = ev.stdout_str().trim().to_string();
    if !ev.ok() || !git_path.starts_with("/nix/store/") {
        return Err(Halt::fail(format!(
            "git at {} does not evaluate {attr} on the host: {}",
            short(&ctx.rev),
            nix_error(&ev.stderr_str())
        )));
    }
    t.note(
        "store paths",
        format!(
            "host ({}): {host_path}\ngit at {}: {git_path}",
            ctx.params.repro.current_system,
            short(&ctx.rev)
        ),
    );
    let o = decide(
        &ctx.params.repro.current_system,
        host_path,
        &git_path,
        &ctx.rev,
        attr,
    );
    if o.verdict == ccci_core::Verdict::Fail {
        // what differs: build git's toplevel and diff the closures (evidence only)
        let mut build: Vec<String> = NIX.iter().map(|s| s.to_string()).collect();
        build.extend([
            "build".into(),
            "--no-link".into(),
            format!("{flake}#{attr}"),
        ]);
        let b = ctx.cmd_owned(t, &build).await?;
        if b.ok() {
            let mut diff: Vec<String> = NIX.iter().map(|s| s.to_string()).collect();
            diff.extend([
                "store".into(),
                "diff-closures".into(),
                host_path.to_string(),
                git_path.clone(),
            ]);
            ctx.cmd_owned(t, &diff).await?;
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict;

    /// `path` relative to `base` (both absolute): `../..` up to their common prefix, then down.
    fn pathdiff(path: &std::path::Path, base: &std::path::Path) -> std::path::PathBuf {
        let p: Vec<_> = path.components().collect();
        let b: Vec<_> = base.components().collect();
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = std::path::PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &p[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn the_flake_ref_is_git_file_at_rev_with_the_subdirectory() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            flake_ref("/tmp/ccci-system-x/repo", c, "."),
            format!("git+file:///tmp/ccci-system-x/repo?ref=ccci-rev&rev={c}")
        );
        assert_eq!(
            flake_ref("/tmp/ccci-system-x/repo", c, "/fixtures/nix/system/"),
            format!(
                "git+file:///tmp/ccci-system-x/repo?ref=ccci-rev&rev={c}&dir=fixtures/nix/system"
            )
        );
    }

    /// The shipped repository holds REV and its history, and nothing else: the same
    /// `self.revCount` a checkout gives, no other branch.
    #[test]
    fn the_repository_at_rev_has_its_history_and_nothing_else() {
        let src = tempfile::tempdir().unwrap();
        let g = |args: &[&str]| git(src.path(), args).unwrap();
        g(&["init", "-q"]);
        let commit = |msg: &str| {
            std::fs::write(src.path().join("f"), msg).unwrap();
            g(&["add", "f"]);
            g(&[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                msg,
            ]);
            g(&["rev-parse", "HEAD"])
        };
        commit("one");
        let two = commit("two");
        commit("three");
        // a relative repository path, as `--repo .` gives it
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(src.path(), &cwd);
        let (full, tar) = repo_at_rev(&rel, &two[..10]).unwrap();
        assert_eq!(full, two);
        let out = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("tar")
            .arg("-C")
            .arg(out.path())
            .arg("-xzf")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&tar)?;
                c.wait()
            })
            .unwrap();
        assert!(st.success());
        let r = |args: &[&str]| git(out.path(), args).unwrap();
        assert_eq!(r(&["rev-parse", "refs/heads/ccci-rev"]), two);
        assert_eq!(r(&["rev-list", "--count", "ccci-rev"]), "2");
        assert_eq!(
            r(&["for-each-ref", "--format=%(refname)"]),
            "refs/heads/ccci-rev"
        );
        // the third commit is not in it
        assert_eq!(r(&["rev-list", "--all", "--count"]), "2");
    }

    #[test]
    fn both_paths_in_the_detail() {
        let cur = "/run/current-system";
        let o = decide(
            cur,
            "/nix/store/a-x",
            "/nix/store/a-x",
            "0123456789abcdef",
            "t",
        );
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(
            o.detail
                .starts_with("/run/current-system is /nix/store/a-x"),
            "{}",
            o.detail
        );
        let o = decide(
            cur,
            "/nix/store/a-x",
            "/nix/store/b-x",
            "0123456789abcdef",
            "t",
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.detail.contains("/nix/store/a-x") && o.detail.contains("/nix/store/b-x"));
    }
}
