//! How the prune writes its state files (`usage.json`, `daemon-roots.json`,
//! `gate-stall.json` under the unit's `StateDirectory`): whole or not at all. A temporary file
//! in the same directory is written, `fsync`ed, renamed over the old one, and the directory
//! `fsync`ed, so a crash or a power cut leaves the old file or the new one, never a torn one.
//!
//! A run that writes state holds the directory's lock ([`StateLock`]: `flock(2)` on `lock` in
//! the directory) from before it reads the state until it exits, so a timer run and a manual
//! run never interleave their read-modify-write of the same files. A run that cannot have the
//! lock — the directory is read-only or full, or another run keeps it longer than
//! [`LOCK_WAIT`] — writes no state at all, and says so.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file in the state directory.
pub const LOCK_FILE: &str = "lock";
/// How long a run waits for another run's lock before it goes on without writing state.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The state directory's lock, held until dropped (the kernel releases it when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Why a run writes no state.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot be written ({0})")]
    Io(#[from] std::io::Error),
    #[error("is in use by another ci-docker-prune run (its lock was not released within {0:?})")]
    Busy(Duration),
}

/// Take the lock of `dir` (created if missing), waiting up to `wait` for another run.
pub fn lock(dir: &Path, wait: Duration) -> Result<StateLock, LockError> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    let start = Instant::now();
    loop {
        // SAFETY: flock on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(StateLock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(e.into());
        }
        if start.elapsed() >= wait {
            return Err(LockError::Busy(wait));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Can a file be written in `dir` now? A small file is written whole (as [`write_atomic`]
/// writes) and removed: a full filesystem fails here, where creating the empty lock file
/// does not.
pub fn probe(dir: &Path) -> std::io::Result<()> {
    const PROBE: &str = ".probe";
    write_atomic(dir, PROBE, &[b'.'; 4096])?;
    std::fs::remove_file(dir.join(PROBE))
}

/// Write `bytes` to `dir/name` atomically and durably (see the module doc). The temporary
/// file carries this process's id, so two runs never write the same temporary file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a.json", b"{\"v\":1}\n").unwrap();
        write_atomic(dir.path(), "a.json", b"{\"v\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.json")).unwrap(),
            "{\"v\":2}\n"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json"]);
        // a directory that is not there: an error, and nothing left anywhere
        let e = write_atomic(&dir.path().join("nope"), "a.json", b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn one_run_holds_the_lock_the_other_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), Duration::ZERO).unwrap();
        let t = Instant::now();
        let e = lock(dir.path(), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, LockError::Busy(_)), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        drop(held);
        lock(dir.path(), Duration::ZERO).unwrap();
        // a missing directory is made; the probe leaves nothing behind
        let sub = dir.path().join("a/b");
        let _l = lock(&sub, Duration::ZERO).unwrap();
        probe(&sub).unwrap();
        let names: Vec<String> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [LOCK_FILE]);
    }
}
