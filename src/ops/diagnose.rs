//! `diagnose` as data: the parts of a support archive (what the team at home needs to answer
//! "why is it broken" without a remote session) and the `.tar.gz` that holds them. Every
//! part passes through the stack's [`Scrubber`] on its way into the archive, whatever it is
//! (environment in an inspect, a password in a rendered file, a log line), so no value of
//! `secrets.env` is ever written; `secrets.env` itself is described, not copied.
//!
//! Must not: print, prompt, or fail because the daemon is down: the engine's parts become a
//! note saying why they are missing and the host's parts are still collected.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::engine::{Engine, EngineError};
use crate::secrets::Scrubber;

/// How many log lines of each container go in: enough to see a crash loop's restarts.
pub const LOG_LINES: u64 = 300;
/// How far back the daemon's events for the project go.
pub const EVENTS_SINCE: Duration = Duration::from_secs(24 * 3600);

/// The parts of an archive, by path inside it (sorted, so archives diff well).
#[derive(Default)]
pub struct Parts(pub BTreeMap<String, Vec<u8>>);

impl Parts {
    pub fn text(&mut self, path: &str, text: impl Into<String>) {
        self.0.insert(path.to_string(), text.into().into_bytes());
    }

    pub fn json(&mut self, path: &str, v: &impl serde::Serialize) {
        let t =
            serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("not serialisable: {e}"));
        self.text(path, t);
    }

    /// The rendered kit on disk under `deploy_dir` (compose files, `.env`, `confd/`, the
    /// stored host IP): everything but `secrets.env`, data and backups, described instead.
    pub fn rendered(&mut self, deploy_dir: &Path, data_dir: &Path) {
        let mut stack = vec![deploy_dir.to_path_buf()];
        let mut listing = String::new();
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut children: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            children.sort();
            for p in children {
                let rel = p
                    .strip_prefix(deploy_dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                let meta = std::fs::symlink_metadata(&p);
                let mode = meta
                    .as_ref()
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0);
                let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                listing.push_str(&format!("{mode:04o} {size:>10} {rel}\n"));
                if p == data_dir || p.starts_with(data_dir) || rel == crate::secrets::FILE {
                    continue;
                }
                // Not copied: backups (the customer's data) and a restored MySQL dump (the
                // same), archives, and anything over 1 MiB (not configuration).
                let data = rel == "backups"
                    || rel.ends_with(".tar.gz")
                    || rel.ends_with(crate::ops::restore::MYSQL_INIT_NAME);
                if p.is_dir() {
                    if !rel.starts_with(".cdq") && !data {
                        stack.push(p);
                    }
                } else if p.is_file()
                    && size <= 1 << 20
                    && !data
                    && let Ok(b) = std::fs::read(&p)
                {
                    self.0.insert(format!("rendered/{rel}"), b);
                }
            }
        }
        self.text("rendered/LISTING.txt", listing);
    }

    /// Writes the archive (mode 0600, through a temporary name), every part scrubbed.
    pub fn write(&self, path: &Path, scrubber: &Scrubber) -> anyhow::Result<u64> {
        let (tmp, f) = crate::fsio::create_partial(path)?;
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            std::io::BufWriter::new(f),
            flate2::Compression::default(),
        ));
        let now = crate::ops::backup::now();
        for (p, bytes) in &self.0 {
            let masked = scrub_bytes(bytes, scrubber);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(masked.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(now);
            tar.append_data(&mut h, format!("cdq-diagnose/{p}"), masked.as_slice())?;
        }
        let mut w = tar.into_inner()?.finish()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing `{}`", path.display()))?;
        Ok(std::fs::metadata(path)?.len())
    }
}

/// Scrubs text; bytes that are not UTF-8 are scrubbed on their lossy text (a binary file
/// cannot carry a password through unmasked either way).
fn scrub_bytes(b: &[u8], s: &Scrubber) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(t) => s.scrub(t).into_bytes(),
        Err(_) => s.scrub(&String::from_utf8_lossy(b)).into_bytes(),
    }
}

/// The engine's parts: version and info, every container of the project (inspect and its
/// last log lines), the status rows. When the daemon cannot be reached, one note saying so.
pub async fn engine_parts<E: Engine>(
    engine: Result<&E, &EngineError>,
    project: &str,
    expected: &[String],
    parts: &mut Parts,
) -> Result<(), String> {
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            let why = format!("the Docker daemon could not be reached: {e}");
            parts.text(
                "engine/UNREACHABLE.txt",
                format!("{why}\nOnly the host's side was collected.\n"),
            );
            return Err(why);
        }
    };
    // The daemon's own words: version, info, every inspect, the events of the last day.
    let since = crate::ops::backup::now() as i64 - EVENTS_SINCE.as_secs() as i64;
    match engine.support_facts(project, since).await {
        Ok(f) => {
            parts.json("engine/version.json", &f.version);
            parts.json("engine/info.json", &f.info);
            let events: String = f.events.iter().map(|e| format!("{e}\n")).collect();
            parts.text("engine/events.jsonl", events);
            for (name, v) in &f.inspects {
                parts.json(&format!("containers/{name}/inspect.json"), v);
            }
        }
        Err(e) => parts.text("engine/support-facts.error.txt", e.to_string()),
    }
    let containers = match engine.list_containers(project).await {
        Ok(c) => c,
        Err(e) => {
            let why = format!("listing the containers failed: {e}");
            parts.text("engine/containers.error.txt", why.clone());
            return Err(why);
        }
    };
    let now = crate::ops::backup::now() as i64;
    let rows = crate::ops::status::rows(expected, &containers, now);
    parts.json(
        "status.json",
        &serde_json::json!({ "project": project, "services": rows }),
    );
    parts.text("status.txt", crate::ops::status::table(&rows));
    for c in &containers {
        let name = c.name.trim_start_matches('/');
        parts.json(&format!("containers/{name}/cdq-view.json"), c);
        match tokio::time::timeout(Duration::from_secs(20), engine.logs(&c.id, LOG_LINES)).await {
            Ok(Ok(lines)) => parts.text(
                &format!("containers/{name}/logs.txt"),
                lines.join("\n") + "\n",
            ),
            Ok(Err(e)) => parts.text(&format!("containers/{name}/logs.error.txt"), e.to_string()),
            Err(_) => parts.text(
                &format!("containers/{name}/logs.error.txt"),
                "timed out after 20s",
            ),
        }
    }
    Ok(())
}

/// What this host looks like: kernel, page size, cgroup version, SELinux, limits, disk,
/// memory, time sync. Files that are missing are said to be missing.
pub fn host_parts(deploy_dir: &Path, data_dir: &Path, parts: &mut Parts) {
    let read = |p: &str| {
        std::fs::read_to_string(p).unwrap_or_else(|e| format!("(cannot read `{p}`: {e})\n"))
    };
    let mut facts = String::new();
    let mut line = |k: &str, v: String| facts.push_str(&format!("{k}: {}\n", v.trim()));
    line("kernel", read("/proc/sys/kernel/osrelease"));
    line("kernel version", read("/proc/sys/kernel/version"));
    line("arch", std::env::consts::ARCH.to_string());
    line("page size", rustix::param::page_size().to_string());
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2 (unified)"
    } else if Path::new("/sys/fs/cgroup/memory").exists() {
        "v1"
    } else {
        "unknown"
    };
    line("cgroup", cgroup.to_string());
    let selinux = match std::fs::read_to_string("/sys/fs/selinux/enforce") {
        Ok(x) if x.trim() == "1" => "enforcing".to_string(),
        Ok(_) => "permissive".to_string(),
        Err(_) => "not enabled".to_string(),
    };
    line("selinux", selinux);
    line("vm.max_map_count", read("/proc/sys/vm/max_map_count"));
    line("fs.file-max", read("/proc/sys/fs/file-max"));
    line("uptime (s)", read("/proc/uptime"));
    line("root", crate::host::is_root().to_string());
    for (what, dir) in [("deploy dir", deploy_dir), ("data dir", data_dir)] {
        let free = crate::preflight::facts::free_mb(existing(dir).as_path())
            .map(|m| format!("{m} MiB free"))
            .unwrap_or_else(|| "unknown".into());
        line(&format!("{what} `{}`", dir.display()), free);
    }
    line("time sync", time_sync());
    parts.text("host/facts.txt", facts);
    parts.text("host/os-release", read("/etc/os-release"));
    parts.text("host/meminfo", read("/proc/meminfo"));
    parts.text("host/limits", read("/proc/self/limits"));
    parts.text("host/mounts", read("/proc/self/mounts"));
    parts.text("host/cpuinfo", read("/proc/cpuinfo"));
}

fn existing(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

/// Whether the clock is synchronised, from the kernel (`adjtimex`'s unsynchronised flag via
/// systemd's marker) or the sync daemon that is present.
fn time_sync() -> String {
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return "synchronised (systemd-timesyncd)".into();
    }
    for (cmd, args) in [
        ("timedatectl", &["show", "-p", "NTPSynchronized"][..]),
        ("chronyc", &["tracking"][..]),
    ] {
        if let Ok(o) = std::process::Command::new(cmd).args(args).output()
            && o.status.success()
        {
            return format!(
                "{cmd}: {}",
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .replace('\n', "; ")
            );
        }
    }
    "unknown (no timedatectl or chronyc answered)".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;

    #[test]
    fn every_secret_is_masked_in_every_part() {
        let s = Secrets::fixed();
        let scrubber = Scrubber::new(&s);
        let mut parts = Parts::default();
        for (i, v) in s.values().enumerate() {
            parts.text(
                &format!("p{i}.txt"),
                format!("env PASSWORD={v} and again {v}\n"),
            );
        }
        parts.0.insert(
            "bin".into(),
            [
                b"\xff\xfe".as_slice(),
                s.values().next().unwrap().as_bytes(),
            ]
            .concat(),
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("d.tar.gz");
        parts.write(&f, &scrubber).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&f).unwrap(),
        ));
        let mut n = 0;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            let t = String::from_utf8_lossy(&b);
            for v in s.values() {
                assert!(!t.contains(v), "{v} in {t}");
            }
            n += 1;
        }
        assert_eq!(n, s.values().count() + 1);
    }
}
