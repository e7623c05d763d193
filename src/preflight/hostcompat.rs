//! The Xinchuang checks (Kylin, UOS, openEuler on Kunpeng and Phytium): what breaks there at
//! container start with an error nobody on site can read, found before anything starts.
//! `container-engine` (Docker, Podman, or iSulad with no Docker API), `clone3`, `cgroup`,
//! `page-size`, and `nofile`/`memlock` judged on what a container is actually granted.
//!
//! Pure, like `evaluate`: facts in ([`CompatFacts`](super::compat::CompatFacts)), findings out.
//! Must not: read the host or the engine (that is `compat`), or hold per-image data: which
//! images call clone3 or run on 64K pages is `compose/<arch>.yaml`'s `compat:` section.

use super::compat::{self, Cgroup, Glibc};
use super::evaluate::{finding, pass};
use super::facts::Facts;
use super::requirements::Requirements;
use super::{Finding, Status};
use crate::catalog::Pages64k;

const PODMAN_API: &str = "unix:///run/podman/podman.sock";

/// The Xinchuang checks, in a stable order.
pub fn checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    out.push(container_engine(f));
    if let Some(c) = clone3(f, r) {
        out.push(c);
    }
    out.push(cgroup(f));
    out.push(page_size(f, r));
}

fn container_engine(f: &Facts) -> Finding {
    let needed = "Docker, or Podman's Docker-compatible API";
    let c = &f.compat;
    match &f.docker {
        Ok(i) if i.product == "Podman" => pass(
            "container-engine",
            format!(
                "Podman {} through its Docker API (cdq runs the health checks itself)",
                i.server_version
            ),
            needed,
        ),
        Ok(i) => pass(
            "container-engine",
            format!("{} {}", i.product, i.server_version),
            needed,
        ),
        Err(_) if c.podman.as_deref().is_some_and(|s| !s.is_empty()) => {
            let sock = c.podman.clone().unwrap_or_default();
            finding(
                "container-engine",
                Status::Fail,
                format!("Podman's API socket at `{sock}`, not in use"),
                needed,
                Some(format!(
                    "point cdq at it: `export DOCKER_HOST=unix://{sock}`"
                )),
            )
        }
        Err(_) if c.podman.is_some() => finding(
            "container-engine",
            Status::Fail,
            "Podman installed, its API not started",
            needed,
            Some(format!(
                "start it: `sudo systemctl enable --now podman.socket` (without systemd: `sudo mkdir -p /run/podman && sudo podman system service --time=0 {PODMAN_API} &`), then `export DOCKER_HOST={PODMAN_API}`"
            )),
        ),
        Err(_) if c.isulad => finding(
            "container-engine",
            Status::Fail,
            "iSulad, which has no Docker API",
            needed,
            Some(format!(
                "install Podman beside it (`sudo dnf install -y podman`), start its API (`sudo systemctl enable --now podman.socket`) and `export DOCKER_HOST={PODMAN_API}`; or install Docker (`sudo dnf install -y docker`)"
            )),
        ),
        Err(_) => finding(
            "container-engine",
            Status::Fail,
            "no Docker, Podman or iSulad answered",
            needed,
            Some("install Docker (`docker.io`, `docker-ce`) or Podman, and start it".into()),
        ),
    }
}

/// None without an engine: the `docker` FAIL already says why nothing is known.
fn clone3(f: &Facts, r: &Requirements) -> Option<Finding> {
    let info = f.docker.as_ref().ok()?;
    let engine = format!("{} {}", info.product, info.server_version);
    let needed = "Docker >= 20.10.10, or `seccomp: unconfined`";
    if !compat::engine_blocks_clone3(info) {
        return Some(pass("clone3", format!("{engine} allows clone3"), needed));
    }
    // The image's own answer wins over the catalogue's where the image is here to ask.
    let at_risk: Vec<(&compat::ServiceCompat, String)> = r
        .compat
        .services
        .iter()
        .filter_map(|s| {
            let probed = f.compat.glibc.iter().find(|p| p.service == s.service);
            match probed.map(|p| &p.glibc) {
                Some(Glibc::Version(v)) if compat::glibc_calls_clone3(v) => {
                    Some((s, format!("glibc {v}")))
                }
                Some(Glibc::Version(_)) => None,
                _ => s.clone3.then(|| (s, "glibc >= 2.34".to_string())),
            }
        })
        .collect();
    let exposed: Vec<String> = at_risk
        .iter()
        .filter(|(s, _)| !s.unconfined)
        .map(|(s, why)| format!("`{}` (`{}`, {why})", s.service, s.image))
        .collect();
    if at_risk.is_empty() {
        return Some(pass(
            "clone3",
            format!("{engine} blocks clone3; no image of the stack calls it"),
            needed,
        ));
    }
    if exposed.is_empty() {
        let names: Vec<&str> = at_risk.iter().map(|(s, _)| s.service.as_str()).collect();
        return Some(pass(
            "clone3",
            format!(
                "{engine} blocks clone3; seccomp=unconfined for {}",
                names.join(", ")
            ),
            needed,
        ));
    }
    let fix = if r.compat.seccomp_unconfined {
        // The setting is on, so these are images the catalogue does not mark.
        "upgrade the engine to Docker 20.10.10 or newer; or mark these images `clone3: true` in the `compat:` section of `compose/<arch>.yaml` under `--templates` so `seccomp: unconfined` covers them".to_string()
    } else {
        "set `seccomp: unconfined` in cdq.yaml (cdq then renders `security_opt: [\"seccomp=unconfined\"]` for these services), or upgrade the engine to Docker 20.10.10 or newer".to_string()
    };
    Some(finding(
        "clone3",
        Status::Fail,
        format!(
            "{engine} answers clone3 with EPERM: {} die with `pthread_create failed`",
            exposed.join(", ")
        ),
        needed,
        Some(fix),
    ))
}

fn cgroup(f: &Facts) -> Finding {
    let needed = "cgroup v1, or v2 with Docker >= 20.10";
    let engine = f.docker.as_ref().ok();
    let docker_before_2010 = engine.is_some_and(|i| {
        i.product != "Podman"
            && compat::version3(&i.server_version).is_some_and(|v| v < (20, 10, 0))
    });
    match f.compat.cgroup {
        None => finding(
            "cgroup",
            Status::Warn,
            "unknown (no /sys/fs/cgroup)",
            needed,
            Some("check with `stat -fc %T /sys/fs/cgroup` (cgroup2fs is v2)".into()),
        ),
        Some(Cgroup::V2) if docker_before_2010 => finding(
            "cgroup",
            Status::Fail,
            format!(
                "v2 with Docker {}, which cannot run containers on it",
                engine.map(|i| i.server_version.as_str()).unwrap_or_default()
            ),
            needed,
            Some("upgrade Docker to 20.10 or newer; or boot with cgroup v1: add `systemd.unified_cgroup_hierarchy=0` to the kernel command line (`sudo grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=0`) and reboot".into()),
        ),
        Some(v) => pass(
            "cgroup",
            match v {
                Cgroup::V1 => "v1",
                Cgroup::V2 => "v2",
            },
            needed,
        ),
    }
}

fn page_size(f: &Facts, r: &Requirements) -> Finding {
    let needed = "4 KiB pages, or images that run on larger ones";
    let Some(size) = f.compat.page_size else {
        return finding(
            "page-size",
            Status::Warn,
            "unknown (cannot read /proc/self/auxv)",
            needed,
            Some("check with `getconf PAGESIZE`".into()),
        );
    };
    let kib = size / 1024;
    if size <= 4096 {
        return pass("page-size", format!("{kib} KiB"), needed);
    }
    let of = |p: Pages64k| -> Vec<String> {
        r.compat
            .services
            .iter()
            .filter(|s| s.pages_64k == p)
            .map(|s| {
                let alt = s
                    .alternative
                    .as_deref()
                    .map(|a| format!("; instead: {a}"))
                    .unwrap_or_default();
                format!("`{}` (`{}`{alt})", s.service, s.image)
            })
            .collect()
    };
    let (aborts, unknown) = (of(Pages64k::Aborts), of(Pages64k::Unknown));
    let fix_tail = "or run the stack on a kernel with 4K pages (on Kylin/openEuler aarch64: the `4k` kernel package)";
    if !aborts.is_empty() {
        finding(
            "page-size",
            Status::Fail,
            format!(
                "{kib} KiB pages: {} abort at start (jemalloc built for 4K pages)",
                aborts.join(", ")
            ),
            needed,
            Some(format!(
                "use the alternative named for each (`versions:`/`images:` in cdq.yaml), {fix_tail}"
            )),
        )
    } else if !unknown.is_empty() {
        finding(
            "page-size",
            Status::Warn,
            format!(
                "{kib} KiB pages: {} not known to run on them",
                unknown.join(", ")
            ),
            needed,
            Some(format!(
                "try them first (`cdq up`, then `cdq logs SERVICE` for `Unsupported system page size`); where one aborts use the alternative named, {fix_tail}"
            )),
        )
    } else {
        pass(
            "page-size",
            format!("{kib} KiB; every image of the stack runs on it"),
            needed,
        )
    }
}

/// `nofile` and `memlock`: what a container of the image is granted when it asks for the
/// compose file's ulimits; without an image to ask, this shell's `ulimit -n` as a hint.
pub fn limits(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    let daemon_fix = |n: u64| {
        format!(
            "raise the engine's limits: `sudo systemctl edit docker` (or `podman`), add `[Service]` `LimitNOFILE={n}` and `LimitMEMLOCK=infinity`, then `sudo systemctl restart docker`"
        )
    };
    let nofile_need = r.nofile.as_ref();
    out.push(match nofile_need {
        None => pass("nofile", "not checked", "nothing: no enabled image needs it"),
        Some(n) => {
            let needed = format!(">= {} for {}", n.value, n.by.join(", "));
            let probes: Vec<&compat::LimitProbe> = f
                .compat
                .limits
                .iter()
                .filter(|p| n.by.contains(&p.service))
                .collect();
            if probes.is_empty() {
                match f.nofile {
                    Some(v) if v < n.value => finding(
                        "nofile",
                        Status::Warn,
                        format!("{v} (this shell's `ulimit -n`; no image present to ask the engine)"),
                        needed,
                        Some(format!(
                            "load the images and run preflight again to see what a container gets; if it is less, {}",
                            daemon_fix(n.value)
                        )),
                    ),
                    Some(v) => pass("nofile", format!("{v} (this shell's `ulimit -n`)"), needed),
                    None => pass("nofile", "unlimited (this shell's `ulimit -n`)", needed),
                }
            } else {
                judge(&probes, n.value, needed, "nofile", |g| g.0, daemon_fix(n.value))
            }
        }
    });
    let memlock_by: Vec<&compat::ServiceCompat> = r
        .compat
        .services
        .iter()
        .filter(|s| s.ulimits.get("memlock").is_some_and(|u| u.soft < 0))
        .collect();
    out.push(if memlock_by.is_empty() {
        pass(
            "memlock",
            "not needed",
            "nothing: no enabled image needs it",
        )
    } else {
        let names: Vec<String> = memlock_by.iter().map(|s| s.service.clone()).collect();
        let needed = format!("unlimited for {}", names.join(", "));
        let probes: Vec<&compat::LimitProbe> = f
            .compat
            .limits
            .iter()
            .filter(|p| names.contains(&p.service))
            .collect();
        if probes.is_empty() {
            pass("memlock", "no image present to ask", needed)
        } else {
            judge(
                &probes,
                u64::MAX,
                needed,
                "memlock",
                |g| g.1,
                daemon_fix(r.nofile.as_ref().map_or(65536, |n| n.value)),
            )
        }
    });
}

/// The verdict over probes: any refused start is a FAIL naming the engine's words; any grant
/// below `want` (None = unlimited) a FAIL too, since the image then fails its own start checks.
fn judge(
    probes: &[&compat::LimitProbe],
    want: u64,
    needed: String,
    id: &str,
    pick: impl Fn(&(Option<u64>, Option<u64>)) -> Option<u64>,
    fix: String,
) -> Finding {
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for p in probes {
        match &p.granted {
            Err(why) => bad.push(format!(
                "a `{}` container could not start with its ulimits: {why}",
                p.service
            )),
            Ok(g) => match pick(g) {
                Some(v) if v < want => bad.push(format!("a `{}` container gets {v}", p.service)),
                v => good.push(format!(
                    "{} in a `{}` container",
                    v.map_or("unlimited".to_string(), |v| v.to_string()),
                    p.service
                )),
            },
        }
    }
    if bad.is_empty() {
        pass(id, good.join(", "), needed)
    } else {
        finding(id, Status::Fail, bad.join("; "), needed, Some(fix))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use super::super::compat::{
        Cgroup, CompatFacts, CompatNeeds, Glibc, GlibcProbe, LimitProbe, ServiceCompat,
    };
    use super::super::evaluate::tests::{good, outcome, req};
    use super::super::facts::{DockerProblem, Facts};
    use super::super::requirements::Requirements;
    use super::super::{Status, evaluate};
    use crate::catalog::Pages64k;
    use crate::project::Ulimit;

    fn svc(name: &str, image: &str, clone3: bool, pages: Pages64k) -> ServiceCompat {
        ServiceCompat {
            service: name.into(),
            image: image.into(),
            clone3,
            pages_64k: pages,
            alternative: None,
            unconfined: false,
            ulimits: BTreeMap::new(),
        }
    }

    /// The needs of `evaluate`'s `req()`: elasticsearch (glibc 2.31, nofile and memlock),
    /// kafka (clone3, nofile) and server (clone3, untested on 64K pages).
    pub(in crate::preflight) fn needs() -> CompatNeeds {
        let mut es = svc(
            "elasticsearch",
            "elasticsearch:7.17.22",
            false,
            Pages64k::Ok,
        );
        es.ulimits = BTreeMap::from([
            (
                "nofile".into(),
                Ulimit {
                    soft: 65536,
                    hard: 65536,
                },
            ),
            ("memlock".into(), Ulimit { soft: -1, hard: -1 }),
        ]);
        let mut kafka = svc("kafka", "bitnami/kafka:3.6.2", true, Pages64k::Ok);
        kafka.ulimits = BTreeMap::from([(
            "nofile".into(),
            Ulimit {
                soft: 65536,
                hard: 65536,
            },
        )]);
        let mut server = svc("server", "cdhub/cd-server:3.2.0", true, Pages64k::Unknown);
        server.alternative = Some("ask the CD team".into());
        CompatNeeds {
            services: vec![es, kafka, server],
            seccomp_unconfined: false,
            relabelled: false,
        }
    }

    /// A host where every Xinchuang check passes: 4K pages, cgroup v2, Docker.
    pub(in crate::preflight) fn facts() -> CompatFacts {
        CompatFacts {
            page_size: Some(4096),
            cgroup: Some(Cgroup::V2),
            isulad: false,
            podman: None,
            glibc: vec![],
            limits: vec![],
        }
    }

    fn docker(f: &mut Facts, product: &str, version: &str) {
        let i = f.docker.as_mut().unwrap();
        i.product = product.into();
        i.server_version = version.into();
    }

    fn no_docker(f: &mut Facts) {
        f.docker = Err(DockerProblem::Unreachable {
            socket: "/var/run/docker.sock".into(),
            detail: "no such file".into(),
        });
    }

    fn limit(service: &str, granted: Result<(Option<u64>, Option<u64>), String>) -> LimitProbe {
        LimitProbe {
            service: service.into(),
            image: "elasticsearch:7.17.22".into(),
            granted,
        }
    }

    type Row = (
        &'static str,
        &'static str,
        Status,
        &'static str,
        fn(&mut Facts, &mut Requirements),
    );

    /// (label, check id, status, text in found or fix, how the host differs from `good`).
    const ROWS: &[Row] = &[
        (
            "podman",
            "container-engine",
            Status::Pass,
            "Podman 4.3.1 through its Docker API",
            |f, _| docker(f, "Podman", "4.3.1"),
        ),
        (
            "isulad only",
            "container-engine",
            Status::Fail,
            "no Docker API",
            |f, _| {
                no_docker(f);
                f.compat.isulad = true;
            },
        ),
        (
            "isulad fix",
            "container-engine",
            Status::Fail,
            "dnf install -y podman",
            |f, _| {
                no_docker(f);
                f.compat.isulad = true;
            },
        ),
        (
            "podman socket unused",
            "container-engine",
            Status::Fail,
            "export DOCKER_HOST=unix:///run/podman/podman.sock",
            |f, _| {
                no_docker(f);
                f.compat.podman = Some("/run/podman/podman.sock".into());
            },
        ),
        (
            "podman without its API",
            "container-engine",
            Status::Fail,
            "podman system service",
            |f, _| {
                no_docker(f);
                f.compat.podman = Some(String::new());
            },
        ),
        (
            "no engine",
            "container-engine",
            Status::Fail,
            "install Docker",
            |f, _| no_docker(f),
        ),
        (
            "docker 19.03",
            "clone3",
            Status::Fail,
            "seccomp: unconfined",
            |f, _| docker(f, "Docker", "19.03.15"),
        ),
        (
            "docker 19.03 names images",
            "clone3",
            Status::Fail,
            "`kafka` (`bitnami/kafka:3.6.2`, glibc >= 2.34), `server`",
            |f, _| docker(f, "Docker", "19.03.15"),
        ),
        (
            "docker 20.10.9",
            "clone3",
            Status::Fail,
            "Docker 20.10.9 answers clone3 with EPERM",
            |f, _| docker(f, "Docker", "20.10.9"),
        ),
        (
            "unconfined covers",
            "clone3",
            Status::Pass,
            "seccomp=unconfined for kafka, server",
            |f, r| {
                docker(f, "Docker", "19.03.15");
                r.compat.seccomp_unconfined = true;
                for s in &mut r.compat.services {
                    s.unconfined = s.clone3;
                }
            },
        ),
        (
            "probe says old glibc",
            "clone3",
            Status::Pass,
            "no image of the stack calls it",
            |f, r| {
                docker(f, "Docker", "19.03.15");
                r.compat.services.retain(|s| s.service != "server");
                f.compat.glibc = vec![GlibcProbe {
                    service: "kafka".into(),
                    image: "bitnami/kafka:3.6.2".into(),
                    glibc: Glibc::Version("2.31".into()),
                }];
            },
        ),
        (
            "probe finds an unmarked image",
            "clone3",
            Status::Fail,
            "mark these images `clone3: true`",
            |f, r| {
                docker(f, "Docker", "19.03.15");
                r.compat.seccomp_unconfined = true;
                for s in &mut r.compat.services {
                    s.unconfined = s.clone3;
                }
                f.compat.glibc = vec![GlibcProbe {
                    service: "elasticsearch".into(),
                    image: "elasticsearch:7.17.22".into(),
                    glibc: Glibc::Version("2.35".into()),
                }];
            },
        ),
        (
            "podman 4 allows clone3",
            "clone3",
            Status::Pass,
            "Podman 4.3.1 allows clone3",
            |f, _| docker(f, "Podman", "4.3.1"),
        ),
        ("cgroup v1", "cgroup", Status::Pass, "v1", |f, _| {
            f.compat.cgroup = Some(Cgroup::V1)
        }),
        (
            "cgroup v2 old docker",
            "cgroup",
            Status::Fail,
            "systemd.unified_cgroup_hierarchy=0",
            |f, _| docker(f, "Docker", "19.03.15"),
        ),
        (
            "cgroup v1 old docker",
            "cgroup",
            Status::Pass,
            "v1",
            |f, _| {
                docker(f, "Docker", "19.03.15");
                f.compat.cgroup = Some(Cgroup::V1);
            },
        ),
        (
            "cgroup unknown",
            "cgroup",
            Status::Warn,
            "cgroup2fs",
            |f, _| f.compat.cgroup = None,
        ),
        (
            "64k unknown image",
            "page-size",
            Status::Warn,
            "64 KiB pages: `server` (`cdhub/cd-server:3.2.0`; instead: ask the CD team)",
            |f, _| f.compat.page_size = Some(65536),
        ),
        (
            "64k aborting image",
            "page-size",
            Status::Fail,
            "`kafka` (`bitnami/kafka:3.6.2`) abort at start",
            |f, r| {
                f.compat.page_size = Some(65536);
                r.compat.services[1].pages_64k = Pages64k::Aborts;
            },
        ),
        (
            "64k all fine",
            "page-size",
            Status::Pass,
            "every image of the stack runs on it",
            |f, r| {
                f.compat.page_size = Some(65536);
                r.compat.services.retain(|s| s.service != "server");
            },
        ),
        (
            "16k pages judged alike",
            "page-size",
            Status::Warn,
            "16 KiB pages",
            |f, _| f.compat.page_size = Some(16384),
        ),
        (
            "page size unknown",
            "page-size",
            Status::Warn,
            "getconf PAGESIZE",
            |f, _| f.compat.page_size = None,
        ),
        (
            "nofile granted",
            "nofile",
            Status::Pass,
            "65536 in a `elasticsearch` container",
            |f, _| {
                f.nofile = Some(1024);
                f.compat.limits = vec![limit("elasticsearch", Ok((Some(65536), None)))];
            },
        ),
        (
            "nofile granted less",
            "nofile",
            Status::Fail,
            "a `elasticsearch` container gets 20000",
            |f, _| {
                f.compat.limits = vec![limit("elasticsearch", Ok((Some(20000), None)))];
            },
        ),
        (
            "nofile refused",
            "nofile",
            Status::Fail,
            "LimitNOFILE=65536",
            |f, _| {
                f.compat.limits = vec![limit(
                "elasticsearch",
                Err("error setting rlimits for ready process: error setting rlimit type 7: operation not permitted".into()),
            )];
            },
        ),
        (
            "memlock granted",
            "memlock",
            Status::Pass,
            "unlimited in a `elasticsearch` container",
            |f, _| {
                f.compat.limits = vec![limit("elasticsearch", Ok((Some(65536), None)))];
            },
        ),
        (
            "memlock limited",
            "memlock",
            Status::Fail,
            "LimitMEMLOCK=infinity",
            |f, _| {
                f.compat.limits = vec![limit("elasticsearch", Ok((Some(65536), Some(64))))];
            },
        ),
        (
            "memlock not needed",
            "memlock",
            Status::Pass,
            "not needed",
            |_, r| {
                r.compat.services.retain(|s| s.service != "elasticsearch");
            },
        ),
    ];

    #[test]
    fn every_xinchuang_outcome() {
        for (label, id, status, text, change) in ROWS {
            let (mut f, mut r) = (good(), req());
            change(&mut f, &mut r);
            let got = outcome(&f, &r, id);
            assert_eq!(got.status, *status, "{label}: {got:#?}");
            let hay = format!("{} {}", got.found, got.fix.clone().unwrap_or_default());
            assert!(hay.contains(text), "{label}: `{text}` not in {got:#?}");
            if *status != Status::Pass {
                assert!(got.fix.is_some(), "{label}: a non-pass needs a fix");
            }
        }
    }

    #[test]
    fn without_an_engine_clone3_is_left_out_and_the_engine_check_stays() {
        let mut f = good();
        no_docker(&mut f);
        let ids: Vec<String> = evaluate(&f, &req()).into_iter().map(|x| x.id).collect();
        assert!(!ids.contains(&"clone3".to_string()));
        for id in [
            "container-engine",
            "cgroup",
            "page-size",
            "nofile",
            "memlock",
        ] {
            assert!(ids.contains(&id.to_string()), "{id} missing: {ids:?}");
        }
    }
}
