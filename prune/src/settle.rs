//! Space freed later: on btrfs (and zfs) a delete returns before the filesystem counts the
//! freed extents — btrfs holds them until its next transaction commit (every 30 s by default)
//! and frees a deleted subvolume (the `btrfs` storage driver's layer) in a background cleaner.
//! A `statvfs` right after `DELETE /images/{id}` then shows nothing freed, and a loop that
//! re-measures after each removal goes on evicting what it did not need to.
//!
//! On a filesystem that frees later ([`defers_frees`]: btrfs, zfs) the eviction tier, after
//! each removal, asks the filesystem to commit (`syncfs`: btrfs then counts a deleted file's
//! extents) and samples the usage until it has settled ([`settled`]): everything the delete
//! said it freed is seen, or the usage has not moved for [`SettlePolicy::quiet`], or
//! [`SettlePolicy::max_wait`] has passed. A deleted subvolume (the `btrfs` storage driver's
//! layer) is freed by btrfs' cleaner only after a later periodic commit, whatever `syncfs`
//! does (measured: 100 MiB still counted 6 s after the delete with a `syncfs` every 100 ms),
//! so what is still not seen then is counted as freed ([`with_pending`]): the daemon's bytes
//! of the removals so far, taken off the usage the tier started from. Those bytes are an upper
//! bound (layers shared with an image that stays are not freed), so the tier may stop short of
//! the low watermark, never past it; the next run measures again. Elsewhere (ext4, xfs: frees
//! are counted when the delete returns) one measurement follows each removal, as before. Pure:
//! the samples are taken by the caller.

use std::path::PathBuf;
use std::time::Duration;

use crate::gates::DiskUsage;

/// `statfs(2)`'s `f_type` of btrfs.
pub const BTRFS_MAGIC: i64 = 0x9123_683E;
/// `statfs(2)`'s `f_type` of zfs (OpenZFS on Linux).
pub const ZFS_MAGIC: i64 = 0x2FC1_2FC1;

/// Does a filesystem of this `f_type` count freed space only later?
pub fn defers_frees(f_type: i64) -> bool {
    f_type == BTRFS_MAGIC || f_type == ZFS_MAGIC
}

/// The usage the tier goes by on a filesystem that frees later: `measured` now, or, when less
/// has been seen freed than the removals said they free, the usage it started from
/// (`start_used`) less what they said (`said_freed`).
pub fn with_pending(measured: &DiskUsage, start_used: u64, said_freed: u64) -> DiskUsage {
    let total = measured.used.saturating_add(measured.avail);
    let used = measured.used.min(start_used.saturating_sub(said_freed));
    DiskUsage {
        path: PathBuf::from(&measured.path),
        used,
        avail: total.saturating_sub(used),
    }
}

/// How long to wait for space freed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlePolicy {
    /// Between two samples.
    pub poll: Duration,
    /// Settled when the usage has not moved for this long.
    pub quiet: Duration,
    /// Never wait longer than this after one removal.
    pub max_wait: Duration,
}

/// The tier's waits: a sample every 100 ms; settled after 1 s without change, at most 10 s.
pub const SETTLE: SettlePolicy = SettlePolicy {
    poll: Duration::from_millis(100),
    quiet: Duration::from_secs(1),
    max_wait: Duration::from_secs(10),
};

/// Used bytes at one moment after a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the removal returned.
    pub at: Duration,
    pub used: u64,
}

/// Has the usage settled after a removal? `before`: used bytes before it; `expected`: the
/// bytes the daemon says it freed (the image's `Size`, an upper bound: layers shared with an
/// image that stays are not freed); `samples`: oldest first, the last one just taken.
pub fn settled(before: u64, expected: u64, samples: &[Sample], p: &SettlePolicy) -> bool {
    let Some(last) = samples.last() else {
        return false;
    };
    // everything the delete freed is counted (19/20: filesystem overhead and rounding)
    if before.saturating_sub(last.used) >= expected - expected / 20 {
        return true;
    }
    if last.at >= p.max_wait {
        return true;
    }
    // the usage as it is since the last change
    let since = samples
        .iter()
        .rev()
        .take_while(|s| s.used == last.used)
        .last()
        .map_or(last.at, |s| s.at);
    // a change before the first sample cannot be dated: count from the removal
    last.at.saturating_sub(since) >= p.quiet
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn run(before: u64, expected: u64, used_at_ms: &[(u64, u64)]) -> Option<u64> {
        // the first sample at which the loop stops (ms), if any
        let mut samples = Vec::new();
        for &(ms, used) in used_at_ms {
            samples.push(Sample {
                at: Duration::from_millis(ms),
                used,
            });
            if settled(before, expected, &samples, &SETTLE) {
                return Some(ms);
            }
        }
        None
    }

    #[test]
    fn pending_frees_count_as_freed_until_the_filesystem_shows_them() {
        let u = |used: u64| DiskUsage {
            path: "/d".into(),
            used,
            avail: 1000 - used,
        };
        // started at 610, the daemon said 42 freed, nothing seen yet: 568
        assert_eq!(with_pending(&u(610), 610, 42), u(568));
        // the filesystem shows more than was said (another writer freed space): as measured
        assert_eq!(with_pending(&u(500), 610, 42), u(500));
        // another writer filled the disk meanwhile: still what was said, no lower
        assert_eq!(with_pending(&u(650), 610, 42), u(568));
        // said more than ever used: zero, never negative
        assert_eq!(with_pending(&u(610), 610, 700), u(0));
        assert!(defers_frees(BTRFS_MAGIC) && defers_frees(ZFS_MAGIC));
        assert!(!defers_frees(0xEF53)); // ext4
    }

    /// Hand-derived timelines: where a loop sampling every 100 ms must stop.
    #[test]
    fn waits_for_space_freed_later_and_no_longer() {
        let b = 500 * MIB;
        // ext4: all 40 MiB freed at once — no wait
        assert_eq!(run(b, 40 * MIB, &[(0, b - 41 * MIB)]), Some(0));
        // btrfs: nothing until the commit at 300 ms, then the cleaner frees in two steps
        let btrfs: Vec<(u64, u64)> = (0..=30)
            .map(|i| {
                let ms = i * 100;
                let used = match ms {
                    0..=299 => b,
                    300..=599 => b - 15 * MIB,
                    _ => b - 40 * MIB,
                };
                (ms, used)
            })
            .collect();
        assert_eq!(run(b, 40 * MIB, &btrfs), Some(600));
        // shared layers: 40 MiB said, 10 MiB freed at once, never more — settled after 1 s
        // without change
        let shared: Vec<(u64, u64)> = (0..=30).map(|i| (i * 100, b - 10 * MIB)).collect();
        assert_eq!(run(b, 40 * MIB, &shared), Some(1000));
        // nothing ever freed: the same 1 s of quiet
        let none: Vec<(u64, u64)> = (0..=30).map(|i| (i * 100, b)).collect();
        assert_eq!(run(b, 40 * MIB, &none), Some(1000));
        // a usage that keeps moving (other writers) stops at the cap
        let busy: Vec<(u64, u64)> = (0..=120).map(|i| (i * 100, b + i * MIB)).collect();
        assert_eq!(run(b, 40 * MIB, &busy), Some(10_000));
        // no sample: not settled
        assert!(!settled(b, MIB, &[], &SETTLE));
    }
}
