//! How the prune writes its state files (`usage.json`, `daemon-roots.json`,
//! `gate-stall.json` under the unit's `StateDirectory`): whole or not at all. A temporary file
//! in the same directory is written, `fsync`ed, renamed over the old one, and the directory
//! `fsync`ed, so a crash or a power cut leaves the old file or the new one, never a torn one.

use std::io::Write;
use std::path::Path;

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
}
