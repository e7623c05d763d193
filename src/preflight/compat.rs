//! What Xinchuang hosts (Kylin, UOS, openEuler on Kunpeng and Phytium) need checked, as
//! needs and facts: the kernel's page size, the cgroup version, which container engine is
//! here (Docker, Podman, or iSulad, which has no Docker API), whether the engine lets the
//! images start threads (`clone3`), and the limits a container is actually granted.
//!
//! [`CompatNeeds`] is pure (settings, catalogue, rendered project); [`gather`] is I/O. It reads
//! `/proc` and `/sys`, and asks the engine with short probe containers (`run_oneoff`, which
//! removes them whatever happens, labelled with the project like `up`'s helpers) only where
//! the answer decides a check: an image's glibc only when the engine blocks `clone3`, the
//! granted limits only for images the compose file sets ulimits for. Judging is
//! `hostcompat`'s.
//!
//! Must not: judge what it finds, leave a probe container behind, probe an image that is not
//! already present (no pull), or reach the engine other than through the [`Engine`] trait.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::catalog::{Catalog, Pages64k};
use crate::engine::{self, Engine, EngineInfo, OneOff};
use crate::project::{Project, Ulimit};
use crate::settings::{Seccomp, Settings};

use super::facts::{ImageProbe, ImageState};

/// One enabled service's image as a Xinchuang host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceCompat {
    pub service: String,
    pub image: String,
    /// The catalogue says its glibc calls clone3.
    pub clone3: bool,
    pub pages_64k: Pages64k,
    pub alternative: Option<String>,
    /// The rendered service runs with `seccomp=unconfined`.
    pub unconfined: bool,
    /// The ulimits the rendered service asks for.
    pub ulimits: BTreeMap<String, Ulimit>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompatNeeds {
    pub services: Vec<ServiceCompat>,
    /// `seccomp: unconfined` is set in cdq.yaml.
    pub seccomp_unconfined: bool,
    /// The rendered bind mounts carry `:z`.
    pub relabelled: bool,
}

impl CompatNeeds {
    pub fn derive(s: &Settings, catalog: &Catalog, project: &Project) -> CompatNeeds {
        let services = s
            .services
            .iter()
            .filter_map(|svc| {
                let facts = catalog.images.get(svc)?;
                let spec = project.services.get(svc.name());
                Some(ServiceCompat {
                    service: svc.name().to_string(),
                    image: spec.map_or_else(|| facts.image.clone(), |p| p.image.clone()),
                    clone3: facts.compat.clone3,
                    pages_64k: facts.compat.pages_64k,
                    alternative: facts.compat.alternative.clone(),
                    unconfined: spec.is_some_and(|p| {
                        p.security_opt
                            .iter()
                            .any(|o| o == "seccomp=unconfined" || o == "seccomp:unconfined")
                    }),
                    ulimits: spec.map(|p| p.ulimits.clone()).unwrap_or_default(),
                })
            })
            .collect();
        CompatNeeds {
            services,
            seccomp_unconfined: s.seccomp == Seccomp::Unconfined,
            relabelled: project
                .services
                .values()
                .flat_map(|p| &p.binds)
                .any(|b| b.relabel.is_some()),
        }
    }
}

/// What an image's probe said about its C library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Glibc {
    /// `getconf GNU_LIBC_VERSION`'s version (`2.36`).
    Version(String),
    /// The probe ran but found no glibc (musl, a static binary, no `getconf`).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlibcProbe {
    pub service: String,
    pub image: String,
    pub glibc: Glibc,
}

/// What a container of `image` was granted when asked for the service's ulimits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitProbe {
    pub service: String,
    pub image: String,
    /// `Ok`: (`ulimit -n`, `ulimit -l` in KiB), None for `unlimited`. `Err`: why the
    /// container could not start or answer (runc's rlimit error).
    pub granted: Result<(Option<u64>, Option<u64>), String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cgroup {
    V1,
    V2,
}

/// Host facts for the Xinchuang checks. Plain data, so tests build it by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompatFacts {
    /// The kernel's page size in bytes.
    pub page_size: Option<u64>,
    pub cgroup: Option<Cgroup>,
    /// iSulad is installed (its socket or binary).
    pub isulad: bool,
    /// A Podman API socket on this host, or `podman` installed with no socket (`Some("")`).
    pub podman: Option<String>,
    pub glibc: Vec<GlibcProbe>,
    pub limits: Vec<LimitProbe>,
}

/// Whether the engine answers `clone3` with EPERM: Docker before 20.10.10 (moby#42681), or a
/// Podman older than 3.2, whose seccomp profile predates the ENOSYS rule.
pub fn engine_blocks_clone3(info: &EngineInfo) -> bool {
    let v = version3(&info.server_version);
    if info.product == "Podman" {
        v.is_some_and(|v| v < (3, 2, 0))
    } else {
        v.is_some_and(|v| v < (20, 10, 10))
    }
}

/// `19.03.15` -> (19, 3, 15); `20.10.24+dfsg1` -> (20, 10, 24).
pub fn version3(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let patch = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// `2.36` >= 2.34: glibc's pthread_create calls clone3 from 2.34 on.
pub fn glibc_calls_clone3(version: &str) -> bool {
    version3(version).is_some_and(|(a, b, _)| (a, b) >= (2, 34))
}

pub async fn gather<E: Engine>(
    engine: Option<(&E, &EngineInfo)>,
    images: &[ImageProbe],
    needs: &CompatNeeds,
    project: &str,
) -> CompatFacts {
    let mut facts = CompatFacts {
        page_size: page_size(),
        cgroup: cgroup(Path::new("/sys/fs/cgroup")),
        isulad: Path::new("/run/isulad.sock").exists() || on_path("isulad") || on_path("isula"),
        podman: podman_socket(),
        ..Default::default()
    };
    let Some((eng, info)) = engine else {
        return facts;
    };
    let present = |image: &str| {
        images
            .iter()
            .any(|p| p.reference == image && matches!(p.state, ImageState::Present { .. }))
    };
    let labels: BTreeMap<String, String> = [
        (engine::LABEL_PROJECT, project),
        (engine::COMPOSE_ONEOFF, "True"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if engine_blocks_clone3(info) {
        for s in needs.services.iter().filter(|s| present(&s.image)) {
            facts.glibc.push(GlibcProbe {
                service: s.service.clone(),
                image: s.image.clone(),
                glibc: glibc_of(eng, &s.image, &labels).await,
            });
        }
    }
    let mut asked = Vec::new();
    for s in &needs.services {
        if s.ulimits.is_empty() || !present(&s.image) || asked.contains(&s.image) {
            continue;
        }
        asked.push(s.image.clone());
        facts.limits.push(LimitProbe {
            service: s.service.clone(),
            image: s.image.clone(),
            granted: granted_limits(eng, &s.image, &s.ulimits, &labels).await,
        });
    }
    facts
}

/// The glibc of an image, from a short container: `getconf GNU_LIBC_VERSION` prints
/// `glibc 2.36`; musl and static images have no such answer.
pub async fn glibc_of<E: Engine>(eng: &E, image: &str, labels: &BTreeMap<String, String>) -> Glibc {
    let spec = OneOff {
        image: image.to_string(),
        user: String::new(),
        entrypoint: vec!["getconf".into(), "GNU_LIBC_VERSION".into()],
        binds: vec![],
        labels: labels.clone(),
        ulimits: vec![],
    };
    match eng.run_oneoff(&spec).await {
        Ok((0, out)) => match out.trim().strip_prefix("glibc ") {
            Some(v) => Glibc::Version(v.trim().to_string()),
            None => Glibc::Unknown(format!("`getconf` said `{}`", out.trim())),
        },
        Ok((code, out)) => Glibc::Unknown(format!("`getconf` exited {code}: {}", out.trim())),
        Err(e) => Glibc::Unknown(e.to_string()),
    }
}

/// What a container of `image` is granted when it asks for `ulimits`, from a short one.
pub async fn granted_limits<E: Engine>(
    eng: &E,
    image: &str,
    ulimits: &BTreeMap<String, Ulimit>,
    labels: &BTreeMap<String, String>,
) -> Result<(Option<u64>, Option<u64>), String> {
    let spec = OneOff {
        image: image.to_string(),
        user: String::new(),
        entrypoint: vec!["sh".into(), "-c".into(), "ulimit -n; ulimit -l".into()],
        binds: vec![],
        labels: labels.clone(),
        ulimits: ulimits
            .iter()
            .map(|(k, u)| (k.clone(), u.soft, u.hard))
            .collect(),
    };
    match eng.run_oneoff(&spec).await {
        Ok((0, out)) => {
            parse_limits(&out).ok_or_else(|| format!("unreadable answer `{}`", out.trim()))
        }
        Ok((code, out)) => Err(format!("exited {code}: {}", out.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// `65536\nunlimited` -> (Some(65536), None).
pub fn parse_limits(out: &str) -> Option<(Option<u64>, Option<u64>)> {
    let mut it = out.split_whitespace();
    let one = |s: &str| match s {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    };
    Some((one(it.next()?)?, one(it.next()?)?))
}

/// The page size from the aux vector (`AT_PAGESZ`), which the kernel hands every process.
fn page_size() -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    let raw = std::fs::read("/proc/self/auxv").ok()?;
    raw.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let val = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_PAGESZ).then_some(val)
    })
}

/// v2 when the unified hierarchy is mounted at `root` (it has `cgroup.controllers`).
pub fn cgroup(root: &Path) -> Option<Cgroup> {
    if root.join("cgroup.controllers").exists() {
        Some(Cgroup::V2)
    } else if root.is_dir() {
        Some(Cgroup::V1)
    } else {
        None
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn podman_socket() -> Option<String> {
    let mut candidates = vec!["/run/podman/podman.sock".to_string()];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(format!("{}/podman/podman.sock", dir.to_string_lossy()));
    }
    candidates
        .into_iter()
        .find(|c| Path::new(c).exists())
        .or_else(|| on_path("podman").then(String::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_thresholds() {
        assert_eq!(version3("19.03.15"), Some((19, 3, 15)));
        assert_eq!(version3("20.10.24+dfsg1"), Some((20, 10, 24)));
        let info = |product: &str, v: &str| EngineInfo {
            product: product.into(),
            server_version: v.into(),
            api_version: "1.40".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            storage_driver: "overlay2".into(),
            root_dir: "/var/lib/docker".into(),
            cpus: 1,
            memory_bytes: 1,
        };
        assert!(engine_blocks_clone3(&info("Docker", "19.03.15")));
        assert!(engine_blocks_clone3(&info("Docker", "18.09.9")));
        assert!(engine_blocks_clone3(&info("Docker", "20.10.9")));
        assert!(!engine_blocks_clone3(&info("Docker", "20.10.10")));
        assert!(!engine_blocks_clone3(&info("Docker", "24.0.7")));
        assert!(!engine_blocks_clone3(&info("Podman", "4.3.1")));
        assert!(glibc_calls_clone3("2.36") && glibc_calls_clone3("2.34"));
        assert!(!glibc_calls_clone3("2.31") && !glibc_calls_clone3("2.17"));
    }

    #[test]
    fn limits_answers_parse() {
        assert_eq!(
            parse_limits("65536\nunlimited\n"),
            Some((Some(65536), None))
        );
        assert_eq!(parse_limits("1024\n64"), Some((Some(1024), Some(64))));
        assert_eq!(parse_limits("sh: ulimit: bad"), None);
    }

    #[test]
    fn this_host_has_a_page_size_and_a_cgroup_version() {
        let p = page_size().expect("the aux vector has AT_PAGESZ");
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup(d.path()), Some(Cgroup::V1));
        std::fs::write(d.path().join("cgroup.controllers"), "cpu io memory").unwrap();
        assert_eq!(cgroup(d.path()), Some(Cgroup::V2));
        assert_eq!(cgroup(&d.path().join("missing")), None);
    }
}
