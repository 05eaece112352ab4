//! `repro.system-git-eq-host`: on a NixOS host, `/run/current-system` is the system toplevel
//! that git at REV evaluates to. The flake (`[params.repro] system_flake`, a directory of the
//! repository) and its attribute (`system_attr`) come from the gate spec.
//!
//! Git is evaluated where the flake's inputs already are: on the host. The flake's directory
//! at REV (`git archive`, its `flake.lock` pinning the inputs the host already has in its
//! store) is copied to a temporary directory on the host through the target's own transport
//! (base64 chunks, so ssh and docker exec alike) and `nix eval --raw path:DIR#ATTR.outPath`
//! runs there: evaluation only, nothing is built to decide. On a mismatch git's toplevel is
//! built and `nix store diff-closures` shows what differs. A host that is not NixOS: the
//! check does not apply (skip, not blocking).

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

/// The flake's directory at REV as a gzipped tar (paths relative to the repository).
fn archive(repo: &std::path::Path, rev: &str, dir: &str) -> Result<Vec<u8>, String> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar.gz", rev, "--"]);
    let dir = dir.trim_matches('/');
    if !dir.is_empty() && dir != "." {
        cmd.arg(dir);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git archive {rev} -- {dir}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
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
    let current = ctx.params.repro.current_system.clone();
    let cur = ctx.cmd(t, &["readlink", "-f", "--", &current]).await?;
    let host_path = cur.stdout_str().trim().to_string();
    if !cur.ok() || !host_path.starts_with("/nix/store/") {
        return Err(Halt::fail(format!(
            "{current} is not a store path: `{host_path}`"
        )));
    }
    // git at REV: the flake's directory, copied to the host
    let flake_dir = ctx.params.repro.system_flake.clone();
    let (repo, rev, fd) = (ctx.repo.clone(), ctx.rev.clone(), flake_dir.clone());
    let tarball = blocking(move || archive(&repo, &rev, &fd))
        .await?
        .map_err(|e| Halt::error(format!("cannot read the flake at REV: {e}")))?;
    let tmp = ctx
        .cmd(t, &["mktemp", "-d", "/tmp/ccci-system-XXXXXX"])
        .await?;
    let dir = tmp.stdout_str().trim().to_string();
    if !tmp.ok() || !dir.starts_with("/tmp/ccci-system-") {
        return Err(Halt::error(format!("mktemp on the host gave `{dir}`")));
    }
    let r = evaluate_and_compare(ctx, t, &dir, &tarball, &flake_dir, &attr, &host_path).await;
    let _ = ctx.target.run(&["rm", "-rf", "--", &dir]).await;
    r
}

async fn evaluate_and_compare(
    ctx: &Ctx,
    t: &mut Trail,
    dir: &str,
    tarball: &[u8],
    flake_dir: &str,
    attr: &str,
    host_path: &str,
) -> Decided {
    let b64 = base64::engine::general_purpose::STANDARD.encode(tarball);
    let file = format!("{dir}/src.tar.gz");
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
            .map_err(|e| Halt::error(format!("cannot copy the flake to the host: {e}")))?;
        if !o.ok() {
            return Err(Halt::error(format!(
                "cannot copy the flake to the host: {}",
                o.combined()
            )));
        }
        chunks += 1;
    }
    t.push(Evidence::new(
        format!(
            "git archive --format=tar.gz {} -- {flake_dir} | base64 > (host) {file}.b64",
            short(&ctx.rev)
        ),
        Some(0),
        format!(
            "{} bytes in {chunks} chunk(s) of base64 through the target's transport",
            tarball.len()
        ),
    ));
    let x = ctx
        .cmd(
            t,
            &[
                "sh",
                "-c",
                "base64 -d < \"$1.b64\" > \"$1\" && tar -xzf \"$1\" -C \"$2\"",
                "sh",
                &file,
                dir,
            ],
        )
        .await?;
    if !x.ok() {
        return Err(Halt::error("cannot unpack the flake on the host"));
    }
    let sub = flake_dir.trim_matches('/');
    let flake = if sub.is_empty() || sub == "." {
        format!("path:{dir}")
    } else {
        format!("path:{dir}/{sub}")
    };
    let mut argv: Vec<String> = NIX.iter().map(|s| s.to_string()).collect();
    argv.extend([
        "eval".into(),
        "--raw".into(),
        format!("{flake}#{attr}.outPath"),
    ]);
    let ev = ctx.cmd_owned(t, &argv).await?;
    let git_path = ev.stdout_str().trim().to_string();
    if !ev.ok() || !git_path.starts_with("/nix/store/") {
        return Err(Halt::fail(format!(
            "git at {} does not evaluate {attr} on the host: {}",
            short(&ctx.rev),
            ev.stderr_str()
                .lines()
                .filter(|l| !l.starts_with("warning:"))
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
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
