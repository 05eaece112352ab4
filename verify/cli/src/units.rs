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
    for u in &declared.units {
        println!(
            "  {:<36} {}:{}{}",
            u.name,
            u.file,
            u.line,
            if u.conditional { "  (conditional)" } else { "" }
        );
    }
    if declared.units.is_empty() {
        println!("  (none)");
    }
    if !declared.unresolved.is_empty() {
        println!("unresolved (names the static analysis cannot decide):");
        for u in &declared.unresolved {
            println!("  {}:{}  {}", u.file, u.line, u.text);
        }
    }
    Ok(0)
}
