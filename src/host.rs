//! Small lookups about the host that rendering needs (timezone, whether we are root).
//! The full set of host facts for preflight lives in `preflight::facts`.

use std::path::Path;

/// The host's IANA timezone: `/etc/timezone`, else the `/etc/localtime` link, else UTC.
pub fn timezone() -> String {
    timezone_from(Path::new("/etc"))
}

fn timezone_from(etc: &Path) -> String {
    if let Ok(s) = std::fs::read_to_string(etc.join("timezone")) {
        let s = s.trim();
        if !s.is_empty() && !s.contains(char::is_whitespace) {
            return s.to_string();
        }
    }
    if let Ok(target) = std::fs::read_link(etc.join("localtime")) {
        let t = target.to_string_lossy();
        if let Some(i) = t.find("zoneinfo/") {
            return t[i + "zoneinfo/".len()..].to_string();
        }
    }
    "UTC".to_string()
}

/// Whether SELinux is enforcing here (`/sys/fs/selinux/enforce` is `1`); false without SELinux.
/// `selinux_relabel: auto` relabels bind mounts exactly when this is true.
pub fn selinux_enforcing() -> bool {
    std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|s| s.trim() == "1")
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezone_sources() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(timezone_from(d.path()), "UTC");
        std::os::unix::fs::symlink(
            "/usr/share/zoneinfo/Asia/Shanghai",
            d.path().join("localtime"),
        )
        .unwrap();
        assert_eq!(timezone_from(d.path()), "Asia/Shanghai");
        std::fs::write(d.path().join("timezone"), "Europe/Paris\n").unwrap();
        assert_eq!(timezone_from(d.path()), "Europe/Paris");
    }
}
