//! systemd's path escaping (`systemd-escape --path`), used to name mount units:
//! `systemd.mounts = [ { where = "/var/lib/docker"; } ]` declares `var-lib-docker.mount`.

/// Escape a file system path the way systemd names its mount and automount units
/// (`unit_name_path_escape` in systemd): the path is simplified (duplicate and trailing
/// slashes dropped, `.` segments removed), the root becomes `-`, the leading slash is
/// dropped, `/` becomes `-`, and every byte outside `[A-Za-z0-9:_.]` (and a leading
/// `.`) becomes `\xNN`.
pub fn escape_path(path: &str) -> String {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments.is_empty() {
        return "-".to_string();
    }
    let joined = segments.join("/");
    let mut out = String::with_capacity(joined.len());
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_path;

    // Expected values are what `systemd-escape --path` prints for the same input.
    #[test]
    fn matches_systemd_escape() {
        assert_eq!(escape_path("/"), "-");
        assert_eq!(escape_path("/var/lib/docker"), "var-lib-docker");
        assert_eq!(escape_path("/mnt/my-disk"), "mnt-my\\x2ddisk");
        assert_eq!(escape_path("//srv//data/"), "srv-data");
        assert_eq!(escape_path("/.hidden/x y"), "\\x2ehidden-x\\x20y");
        assert_eq!(escape_path("/home/ü"), "home-\\xc3\\xbc");
    }
}
