//! A gate that holds the host hostage: the disk is over the threshold, yet `runs` or
//! `converge` closes run after run. Each run over the threshold that such a gate stops is
//! remembered (`gate-stall.json` in the state directory: since when, how many runs); a run
//! that gets past every gate, or one below the threshold, forgets it. Once the record is older
//! than `gate_stall_warn_after` the run logs a warning and reports it in the JSON (`stalled`).
//! Without a state directory nothing is remembered between runs and nothing is reported.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::gates::Gate;

/// The file in the state directory.
pub const STATE_FILE: &str = "gate-stall.json";

/// Since when the disk has been over the threshold with a gate closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// Unix seconds of the first run it stopped.
    pub since: i64,
    /// The gate that closed at the latest such run.
    pub gate: Gate,
    /// How many consecutive runs over the threshold it stopped (the latest included).
    pub runs: u64,
}

/// The stall after a run at `now`: `closed` is the gate that stopped a run over the
/// threshold, `None` when the run got past every gate or the disk was below the threshold.
pub fn next(prev: Option<&Stall>, now: i64, closed: Option<Gate>) -> Option<Stall> {
    let gate = closed.filter(|g| *g != Gate::Disk)?;
    Some(match prev {
        Some(p) => Stall {
            since: p.since.min(now),
            gate,
            runs: p.runs.saturating_add(1),
        },
        None => Stall {
            since: now,
            gate,
            runs: 1,
        },
    })
}

/// How long `stall` has lasted at `now`, if that is at least `warn_after` seconds.
pub fn overdue(stall: &Stall, now: i64, warn_after: u64) -> Option<u64> {
    let lasted = now.saturating_sub(stall.since).max(0) as u64;
    (lasted >= warn_after).then_some(lasted)
}

/// The remembered stall in `state_dir`, if any (an unreadable file counts as none).
pub fn load(state_dir: &Path) -> Option<Stall> {
    let text = std::fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remember `stall` in `state_dir` (none: forget it).
pub fn save(state_dir: &Path, stall: Option<&Stall>) -> std::io::Result<()> {
    match stall {
        Some(s) => {
            let text = serde_json::to_string(s).map_err(std::io::Error::other)?;
            crate::statefile::write_atomic(state_dir, STATE_FILE, (text + "\n").as_bytes())
        }
        None => match std::fs::remove_file(state_dir.join(STATE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    #[test]
    fn a_stall_starts_counts_and_ends() {
        // first run stopped by converge over the threshold
        let s1 = next(None, 100, Some(Gate::Converge)).unwrap();
        assert_eq!((s1.since, s1.runs, s1.gate), (100, 1, Gate::Converge));
        // a day later, stopped by runs: the same stall (the disk never got relief)
        let s2 = next(Some(&s1), 100 + 24 * H, Some(Gate::Runs)).unwrap();
        assert_eq!((s2.since, s2.runs, s2.gate), (100, 2, Gate::Runs));
        // a run past every gate, or below the threshold, ends it
        assert_eq!(next(Some(&s2), 200 * H, None), None);
        assert_eq!(next(Some(&s2), 200 * H, Some(Gate::Disk)), None);
        // a clock that went back never makes it younger than it was
        assert_eq!(next(Some(&s2), 50, Some(Gate::Converge)).unwrap().since, 50);
    }

    #[test]
    fn overdue_once_it_lasted_the_span() {
        let s = Stall {
            since: 1000,
            gate: Gate::Converge,
            runs: 3,
        };
        assert_eq!(overdue(&s, 1000 + 24 * H - 1, 24 * H as u64), None);
        assert_eq!(
            overdue(&s, 1000 + 24 * H, 24 * H as u64),
            Some(24 * H as u64)
        );
        assert_eq!(overdue(&s, 0, 0), Some(0));
    }

    #[test]
    fn remembered_and_forgotten_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let s = next(None, 5, Some(Gate::Runs)).unwrap();
        save(dir.path(), Some(&s)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert_eq!(text, "{\"since\":5,\"gate\":\"runs\",\"runs\":1}\n");
        assert_eq!(load(dir.path()), Some(s));
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()), None);
        save(dir.path(), None).unwrap();
    }
}
