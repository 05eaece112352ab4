//! `ccci-verify units`: the units the Nix files of a repository declare at a revision.

use crate::CliError;
use anyhow::anyhow;
use std::path::Path;

pub fn run(repo: &Path, rev: &str, json: bool) -> Result<u8, CliError> {
    let declared = ccci_nix::units_report(repo, rev, None).map_err(|e| match e {
        ccci_nix::NixError::Git(g) => CliError::Usage(anyhow!("{g}")),
        other => CliError::Usage(anyhow!("{other}")),
    })?;
    if let Ok(git) = ccci_nix::GitRepo::open(repo) {
        if let Ok(dirty) = git.dirty() {
            if !dirty.is_empty() {
                eprintln!(
                    "ccci-verify: note: the work tree of {} has {} uncommitted change(s); units are read at {} (a deploy from the work tree would not be reproducible)",
                    repo.display(),
                    dirty.len(),
                    &declared.rev
                );
            }
        }
    }
    if json {
        let text = declared
            .to_json()
            .map_err(|e| CliError::Runtime(anyhow!("{e}")))?;
        println!("{text}");
        return Ok(0);
    }
    println!("units declared at {}:", declared.rev);
    print_units(&declared.units);
    if declared.units.is_empty() {
        println!("  (none)");
    }
    if !declared.user_units.is_empty() {
        println!("user units (systemd.user: users' managers, not the system's):");
        print_units(&declared.user_units);
    }
    if !declared.initrd_units.is_empty() {
        println!(
            "initrd units (boot.initrd.systemd: before the switch to the host, not host units):"
        );
        print_units(&declared.initrd_units);
    }
    if !declared.masked.is_empty() {
        println!("masked (enable = false: linked to /dev/null, not present):");
        print_units(&declared.masked);
    }
    if !declared.unresolved.is_empty() {
        println!("unresolved (names the static analysis cannot decide):");
        for u in &declared.unresolved {
            println!(
                "  {}:{}  [{}] {}",
                u.file,
                u.line,
                u.reason.as_str(),
                u.text
            );
        }
    }
    Ok(0)
}

fn print_units(units: &[ccci_nix::UnitDecl]) {
    for u in units {
        let mut marks = Vec::new();
        if u.conditional {
            marks.push("conditional");
        }
        if u.overrides {
            marks.push("override of a nixpkgs unit");
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  ({})", marks.join(", "))
        };
        println!("  {:<36} {}:{}{marks}", u.name, u.file, u.line);
    }
}
