//! Host plumbing: argv commands, prerequisites, detached processes, mounts, loop devices,
//! network namespaces, cgroups. Everything here is synchronous and talks to the kernel or runs
//! host programs by argv (never a shell string).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, SandboxError};
use crate::layout;

/// Programs the sandbox runs, with the Debian package that ships each.
pub(crate) const PREREQUISITES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
    ("dockerd", "docker.io"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("docker-registry", "docker-registry"),
    ("debootstrap", "debootstrap"),
    ("busybox", "busybox-static"),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("ldd", "libc-bin"),
];

/// Find `program` on PATH (plus the sbin dirs, which a non-login root shell may lack).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Root and every program in [`PREREQUISITES`].
pub(crate) fn check_prerequisites() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SandboxError::NotRoot);
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Err(SandboxError::Config(
            "/sys/fs/cgroup is not mounted; the sandbox daemon needs cgroups".into(),
        ));
    }
    check_programs(PREREQUISITES)
}

/// Every program of `list` is on PATH, else the first missing one with its package.
pub(crate) fn check_programs(list: &[(&str, &str)]) -> Result<()> {
    for (program, package) in list {
        if which(program).is_none() {
            return Err(SandboxError::MissingPrerequisite {
                program: (*program).to_string(),
                package: (*package).to_string(),
            });
        }
    }
    Ok(())
}

fn tail_str(s: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Run argv to completion; error (with output tail) unless it exits 0. Returns stdout.
pub(crate) fn run(step: &str, argv: &[&str]) -> Result<String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| SandboxError::Config("empty command".into()))?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SandboxError::Command {
            step: step.to_string(),
            command: argv.join(" "),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(SandboxError::Command {
            step: step.to_string(),
            command: argv.join(" "),
            status: out.status.to_string(),
            output: tail_str(&text, 30),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The last `n` lines of a log file ("" if unreadable).
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    tail_str(&String::from_utf8_lossy(&buf), n)
}

/// Start argv inside network namespace `netns` as its own process group (so it outlives the
/// caller and is not hit by the caller's terminal signals), stdin from /dev/null, stdout and
/// stderr appended to `log`. Returns its pid. `nsenter` execs the program, so the pid is the
/// program's own.
pub(crate) fn spawn_in_netns(step: &str, netns: &str, argv: &[String], log: &Path) -> Result<u32> {
    let logf = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log)
        .map_err(|e| SandboxError::io(step, log, e))?;
    let logf2 = logf
        .try_clone()
        .map_err(|e| SandboxError::io(step, log, e))?;
    let child = Command::new("nsenter")
        .arg(format!("--net={}", layout::netns_file(netns).display()))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .process_group(0)
        .spawn()
        .map_err(|e| SandboxError::Command {
            step: step.to_string(),
            command: argv.join(" "),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    let pid = child.id();
    // Dropping `Child` neither waits nor kills; reap it in the background so it never lingers
    // as a zombie while this process lives.
    std::thread::spawn(move || {
        let mut c = child;
        let _ = c.wait();
    });
    Ok(pid)
}

/// Is `pid` a live (non-zombie) process?
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" that closes comm
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// The NUL-separated command line of `pid`, joined with spaces.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).to_string())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Pid from a pidfile, if the file holds one.
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every process whose command line contains `needle`.
pub(crate) fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for ent in rd.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Some(c) = cmdline(pid) {
                if c.contains(needle) && pid_alive(pid) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

fn signal(pid: u32, sig: i32) {
    if let Ok(p) = i32::try_from(pid) {
        if p > 1 {
            // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
            unsafe {
                libc::kill(p, sig);
            }
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait for the processes to be gone.
pub(crate) fn terminate(pids: &[u32], grace: Duration) -> Vec<u32> {
    for p in pids {
        signal(*p, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| pid_alive(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_now(pids)
}

/// SIGKILL and wait (up to 10 s); returns the pids still alive after that.
pub(crate) fn kill_now(pids: &[u32]) -> Vec<u32> {
    for p in pids {
        if pid_alive(*p) {
            signal(*p, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && pids.iter().any(|p| pid_alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    pids.iter().copied().filter(|p| pid_alive(*p)).collect()
}

/// Mount points (from /proc/self/mountinfo) equal to or under any of `roots`, deepest first.
pub(crate) fn mounts_under(roots: &[PathBuf]) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| roots.iter().any(|r| m.starts_with(r)))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok());
            if let Some(v) = oct {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Is `path` a mount point with private propagation (no `shared:`/`master:` tag)?
pub(crate) fn is_private_mount(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    text.lines()
        .rev()
        .find(|l| l.split(' ').nth(4).map(unescape_mount).as_deref() == Some(&*want))
        .map(|l| {
            let optional = l.split(" - ").next().unwrap_or("");
            !optional.contains("shared:") && !optional.contains("master:")
        })
        .unwrap_or(false)
}

/// Is `path` a mount point?
pub(crate) fn is_mounted(path: &Path) -> bool {
    mounts_under(&[path.to_path_buf()])
        .iter()
        .any(|m| m == path)
}

/// Unmount `path` (all stacked mounts); lazily if it stays busy.
pub(crate) fn umount_all(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Teardown(format!("bad path {}", path.display())))?;
    for _ in 0..8 {
        if !is_mounted(path) {
            return Ok(());
        }
        // SAFETY: c is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(c.as_ptr(), 0) };
        if rc != 0 {
            // SAFETY: as above; MNT_DETACH detaches now and frees when no longer busy.
            let rc2 = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc2 != 0 {
                let err = std::io::Error::last_os_error();
                if !is_mounted(path) {
                    return Ok(());
                }
                return Err(SandboxError::Teardown(format!(
                    "umount {}: {err}",
                    path.display()
                )));
            }
        }
    }
    if is_mounted(path) {
        return Err(SandboxError::Teardown(format!(
            "{} still mounted",
            path.display()
        )));
    }
    Ok(())
}

/// Loop devices whose backing file is `file`.
pub(crate) fn loop_devices_for(file: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let want = file.to_string_lossy().to_string();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().to_string();
            if !name.starts_with("loop") {
                continue;
            }
            let bf = ent.path().join("loop/backing_file");
            if let Ok(s) = std::fs::read_to_string(bf) {
                let s = s.trim();
                let s = s.strip_suffix(" (deleted)").unwrap_or(s);
                if s == want {
                    out.push(format!("/dev/{name}"));
                }
            }
        }
    }
    out.sort();
    out
}

/// Does network namespace `name` exist?
pub(crate) fn netns_exists(name: &str) -> bool {
    layout::netns_file(name).exists()
}

/// `statvfs(path)` as (total bytes, used bytes); used counts what non-root users cannot use
/// either, i.e. `total - available`, the way `df` computes its percentage.
pub(crate) fn fs_usage(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Config(format!("bad path {}", path.display())))?;
    // SAFETY: zeroed statvfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(SandboxError::io(
            "statvfs",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Ok((total, total.saturating_sub(avail)))
}

/// Create `path` with `bytes` really allocated (not sparse).
pub(crate) fn fallocate(path: &Path, bytes: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SandboxError::io("ballast", path, e))?;
    let len = libc::off_t::try_from(bytes)
        .map_err(|_| SandboxError::Config(format!("ballast of {bytes} bytes is too large")))?;
    // SAFETY: fallocate on an fd we own; no memory is passed.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(SandboxError::io("ballast", path, err));
    }
    Ok(())
}

/// A TCP connection to `addr`, made from inside network namespace `netns`: a helper thread
/// enters the namespace (setns affects only the calling thread) and connects; the socket stays
/// in that namespace after the thread ends.
pub fn netns_connect(netns: &str, addr: &str) -> std::io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let path = layout::netns_file(netns);
    let addr = addr.to_string();
    let handle = std::thread::spawn(move || -> std::io::Result<TcpStream> {
        let f = File::open(&path)?;
        // SAFETY: setns on a valid namespace fd; affects only this helper thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sa: std::net::SocketAddr = addr.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
        })?;
        TcpStream::connect_timeout(&sa, Duration::from_secs(5))
    });
    handle
        .join()
        .map_err(|_| std::io::Error::other("netns connect thread panicked"))?
}

/// A minimal HTTP/1.0 request over a netns connection; returns (status code, body).
pub(crate) fn netns_http(
    netns: &str,
    addr: &str,
    method: &str,
    path: &str,
    accept: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut s = netns_connect(netns, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer: {}", tail_str(&text, 3))))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Every cgroup directory named `name` at the top of a mounted hierarchy under /sys/fs/cgroup.
pub(crate) fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for ent in rd.flatten() {
            let p = ent.path().join(name);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    // cgroup v2 only (no per-controller dirs)
    let p = Path::new("/sys/fs/cgroup").join(name);
    if p.join("cgroup.procs").exists() && !out.contains(&p) {
        out.push(p);
    }
    out
}

/// All pids in the cgroup trees under `dirs`.
pub(crate) fn cgroup_pids(dirs: &[PathBuf]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for ent in rd.flatten() {
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(ent.path());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Remove the (empty) cgroup trees under `dirs`, deepest first.
pub(crate) fn remove_cgroup_trees(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for ent in rd.flatten() {
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(ent.path());
                }
            }
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut left = Vec::new();
    for d in all {
        let mut ok = false;
        for _ in 0..20 {
            if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !ok {
            left.push(d);
        }
    }
    left
}

/// An exclusive lock on `path` (created if missing), blocking until it is free. Released when
/// the returned file is dropped (or the process dies).
pub(crate) fn lock_file(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SandboxError::io("lock", parent, e))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SandboxError::io("lock", path, e))?;
    f.lock().map_err(|e| SandboxError::io("lock", path, e))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes_spaces() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/end\\"), "/end\\");
    }

    #[test]
    fn run_reports_failures_with_output() {
        let err = run("test", &["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("boom"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert_eq!(run("test", &["sh", "-c", "echo ok"]).unwrap(), "ok\n");
    }

    #[test]
    fn missing_program_names_its_package() {
        let err = check_programs(&[("sh", "dash"), ("ccci-no-such-program", "ccci-pkg")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ccci-no-such-program"), "{err}");
        assert!(err.contains("apt-get install ccci-pkg"), "{err}");
        assert!(check_programs(&[("sh", "dash")]).is_ok());
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_str("a\nb\nc\n", 2), "b\nc");
    }
}
