//! The one definition of the seed's promise "never `--all`, never volumes": which words of a
//! command line, a script or a config ask a prune for every image or for volumes.
//! `prune.never-all-never-volumes` decides with it, and the Nix parity test
//! (`tests/tests/nix_files.rs`) holds the module and the portable units to it. The VM tests
//! (`vm-tests/module-eval.nix`, `vm-tests/prune-policy.nix`) test the same cases in Nix.

/// The part of a flag before `=`, lower-cased (`--All=true` → `--all`).
fn flag_name(word: &str) -> String {
    word.split('=').next().unwrap_or(word).to_ascii_lowercase()
}

/// A boolean flag value Docker's flag parser (Go's `strconv.ParseBool`) reads as false. Any
/// other value is true, or an error that Docker reports: never taken as "not asked".
fn is_false(v: &str) -> bool {
    matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False")
}

/// A word that asks for everything, in every spelling Docker's flag parser accepts: `--all`,
/// `--all=V` (V not false), a cluster of short flags holding `a` (`-a`, `-af`, `-fa`), with
/// `=V` applying to the cluster's last flag (`-a=true`, `-fa=1`; not `-fa=false`).
pub fn asks_for_all(word: &str) -> bool {
    let (flag, value) = match word.split_once('=') {
        Some((f, v)) => (f, Some(v)),
        None => (word, None),
    };
    if flag.eq_ignore_ascii_case("--all") {
        return !value.is_some_and(is_false);
    }
    let Some(cluster) = flag.strip_prefix('-') else {
        return false;
    };
    if cluster.is_empty()
        || cluster.starts_with('-')
        || !cluster.chars().all(|c| c.is_ascii_alphabetic())
    {
        return false;
    }
    let (init, last) = cluster.split_at(cluster.len() - 1);
    init.contains('a') || (last == "a" && !value.is_some_and(is_false))
}

/// A word that asks for volumes: a flag whose name mentions volumes (`--volumes`,
/// `--prune-volumes=true`; not `--volumes=false`), or the `volume` command itself
/// (`docker volume prune`).
pub fn asks_for_volumes(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    if w.starts_with('-') && flag_name(&w).contains("volume") {
        return !word.split_once('=').is_some_and(|(_, v)| is_false(v));
    }
    w == "volume" || w == "volumes"
}

/// The words of argv that ask for everything or for volumes.
pub fn forbidden_args(argv: &[String]) -> Vec<String> {
    argv.iter()
        .filter(|a| asks_for_all(a) || asks_for_volumes(a))
        .cloned()
        .collect()
}

/// The program of argv is a prune: `ci-docker-prune` itself, or any command with a `prune`
/// word (`docker system prune`, `docker image prune`).
pub fn is_prune_command(argv: &[String]) -> bool {
    let prog = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    prog == "ci-docker-prune" || argv.iter().any(|a| a == "prune")
}

/// Every request for `all` or for volumes in a deployed command line and the texts it names
/// (scripts, config files, as `(name, text)`), one message each; empty when there is none.
pub fn find_forbidden(argv: &[String], texts: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    if is_prune_command(argv) {
        for a in argv {
            if asks_for_volumes(a) {
                found.push(format!("command line touches volumes: `{a}`"));
            } else if asks_for_all(a) {
                found.push(format!("command line asks for `{a}`"));
            }
        }
    }
    for (name, text) in texts {
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = code.split_whitespace().collect();
            let prunes = words.contains(&"prune") || code.contains("/prune");
            if prunes {
                for w in &words {
                    let w = w.trim_matches(|c| c == '"' || c == '\'' || c == ';');
                    if asks_for_all(w) {
                        found.push(format!("{name}:{}: asks for `{w}`: {}", n + 1, line.trim()));
                    }
                }
                if code.contains("volume") {
                    found.push(format!("{name}:{}: prunes volumes: {}", n + 1, line.trim()));
                }
            }
            if code.contains("all=true")
                || code.contains("all=1")
                || code.contains("/volumes/prune")
            {
                found.push(format!(
                    "{name}:{}: API call asks for all/volumes: {}",
                    n + 1,
                    line.trim()
                ));
            }
            // TOML config keys
            let t = code.trim();
            for key in ["all", "volumes", "prune_volumes"] {
                if let Some(rest) = t.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') && rest.contains("true") {
                        found.push(format!("{name}:{}: config sets `{t}`", n + 1));
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn words() {
        for w in [
            "--all",
            "--ALL",
            "--all=true",
            "--all=1",
            "-a",
            "-af",
            "-fa",
        ] {
            assert!(asks_for_all(w), "{w}");
        }
        for w in [
            "--all=false",
            "--all=0",
            "--allow",
            "-f",
            "--",
            "-",
            "all",
            "-1a",
        ] {
            assert!(!asks_for_all(w), "{w}");
        }
        for w in ["--volumes", "--prune-volumes=true", "volume", "volumes"] {
            assert!(asks_for_volumes(w), "{w}");
        }
        // a path that mentions volumes is not a request for them
        for w in ["/var/lib/docker/volumes", "--path=/var/lib/docker/volumes"] {
            assert!(!asks_for_volumes(w), "{w}");
        }
    }

    #[test]
    fn forbidden_args_are_found_in_argv_scripts_and_config() {
        assert!(find_forbidden(
            &s(&["/usr/local/bin/ci-docker-prune", "--threshold", "80"]),
            &[]
        )
        .is_empty());
        assert!(!find_forbidden(
            &s(&["/usr/bin/docker", "system", "prune", "--all", "-f"]),
            &[]
        )
        .is_empty());
        assert!(!find_forbidden(&s(&["docker", "system", "prune", "-af"]), &[]).is_empty());
        assert!(!find_forbidden(&s(&["docker", "system", "prune", "--volumes"]), &[]).is_empty());
        assert!(!find_forbidden(&s(&["/usr/local/bin/ci-docker-prune", "--all"]), &[]).is_empty());
        assert!(!find_forbidden(&s(&["docker", "volume", "prune", "-f"]), &[]).is_empty());
        // not a prune: its words are not read
        assert!(find_forbidden(&s(&["/bin/ls", "-a"]), &[]).is_empty());
        let script = (
            "/x.sh".to_string(),
            "#!/bin/sh\ndocker image prune -a -f # evict\n".to_string(),
        );
        assert!(!find_forbidden(&s(&["/x.sh"]), &[script]).is_empty());
        let ok_script = (
            "/x.sh".to_string(),
            "#!/bin/sh\n# never --all\ndocker image prune -f\n".to_string(),
        );
        assert!(find_forbidden(&s(&["/x.sh"]), &[ok_script]).is_empty());
        let cfg = (
            "/etc/p.toml".to_string(),
            "threshold = 80\nvolumes = true\n".to_string(),
        );
        assert!(!find_forbidden(&s(&["ci-docker-prune"]), &[cfg]).is_empty());
    }

    #[test]
    fn forbidden_args_of_an_argv() {
        assert_eq!(
            forbidden_args(&s(&[
                "ci-docker-prune",
                "--all",
                "--until",
                "24h",
                "--volumes"
            ])),
            s(&["--all", "--volumes"])
        );
        assert!(forbidden_args(&s(&["ci-docker-prune", "--path", "/"])).is_empty());
    }
}
