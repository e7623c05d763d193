//! The pure judgement of host [`Facts`] against what the stack needs ([`Requirements`]).
//!
//! Pure: no I/O, no clock, so every check and outcome is a unit test over hand-made facts.
//! Thresholds that depend on the chosen images (vm.max_map_count, open files, memory) come
//! from the catalogue (`compose/<arch>.yaml`), not from code here.

use std::path::Path;

use crate::engine::MIN_API_VERSION;
use crate::services::Arch;

use super::facts::{Chown, DockerProblem, Facts, ImageState, PortState};
use super::requirements::Requirements;
use super::{Finding, Status};

/// The oldest Docker Engine cdq supports: 18.09 speaks API 1.39 (`MIN_API_VERSION`).
pub const MIN_ENGINE: (u64, u64) = (18, 9);
/// The oldest Podman whose Docker API and libpod health check endpoint cdq relies on.
pub const MIN_PODMAN: (u64, u64) = (4, 0);
/// Nine JVM and database services on fewer cores start, but time out their health checks.
pub const MIN_CPUS: usize = 2;
pub const RECOMMENDED_CPUS: usize = 4;
/// Data directory: below the first the databases fill it during the PoC; below the second
/// a week of Kafka and Elasticsearch data will.
pub const DATA_FAIL_MB: u64 = 2 * 1024;
pub const DATA_WARN_MB: u64 = 10 * 1024;
/// Docker's root holds the images (about 4 GiB for the official set) and container layers.
pub const DOCKER_FAIL_MB: u64 = 2 * 1024;
pub const DOCKER_WARN_MB: u64 = 8 * 1024;

pub(super) fn finding(
    id: impl Into<String>,
    status: Status,
    found: impl Into<String>,
    needed: impl Into<String>,
    fix: Option<String>,
) -> Finding {
    Finding {
        id: id.into(),
        status,
        found: found.into(),
        needed: needed.into(),
        fix,
    }
}

pub(super) fn pass(id: &str, found: impl Into<String>, needed: impl Into<String>) -> Finding {
    finding(id, Status::Pass, found, needed, None)
}

/// `20.10.24+dfsg1` -> (20, 10); `1.41` -> (1, 41).
pub fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn gib(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

/// Judges the facts against the requirements: one finding per check, in a stable order.
pub fn evaluate(f: &Facts, r: &Requirements) -> Vec<Finding> {
    let mut out = Vec::new();
    docker_checks(f, &mut out);
    host_checks(f, r, &mut out);
    kernel_checks(f, r, &mut out);
    port_checks(f, &mut out);
    data_dir_checks(f, r, &mut out);
    deploy_dir_check(f, &mut out);
    service_dir_checks(f, r, &mut out);
    clock_checks(f, &mut out);
    image_checks(f, r, &mut out);
    super::olddata::judge(&f.old_data, &mut out);
    super::hostcompat::checks(f, r, &mut out);
    out.push(host_ip_check(f));
    out
}

fn docker_checks(f: &Facts, out: &mut Vec<Finding>) {
    let info = match &f.docker {
        Ok(i) => i,
        Err(p) => {
            let (found, fix) = match p {
                DockerProblem::PermissionDenied { socket } => (
                    format!("permission denied on `{socket}`"),
                    "add yourself to the docker group: `sudo usermod -aG docker $USER`, then log out and in again (or run cdq with sudo)".to_string(),
                ),
                DockerProblem::Unreachable { socket, detail } => (
                    format!("no daemon at `{socket}` ({detail})"),
                    "start it: `sudo systemctl start docker`".to_string(),
                ),
                DockerProblem::TooOld { version } => (
                    format!("Docker API {version}"),
                    "upgrade Docker to 18.09 or newer".to_string(),
                ),
                DockerProblem::Other(m) => (m.clone(), "check `docker info` works".to_string()),
            };
            out.push(finding(
                "docker",
                Status::Fail,
                found,
                "a reachable Docker daemon",
                Some(fix),
            ));
            // Engine version, arch, storage, Docker's disk and images cannot be checked
            // without it; the one FAIL above says why.
            compose_check(f, out);
            return;
        }
    };
    out.push(pass(
        "docker",
        format!("{} {} ({})", info.product, info.server_version, info.os),
        "a reachable Docker daemon",
    ));
    // Podman's versions are its own (4.3.1): only its API version compares with Docker's.
    let podman = info.product == "Podman";

    let needed = format!(
        "Docker >= {}.{:02}, API >= {MIN_API_VERSION}",
        MIN_ENGINE.0, MIN_ENGINE.1
    );
    let floor = if podman { MIN_PODMAN } else { MIN_ENGINE };
    let engine_ok = major_minor(&info.server_version).is_some_and(|v| v >= floor);
    let api_ok = major_minor(&info.api_version)
        .zip(major_minor(MIN_API_VERSION))
        .is_some_and(|(v, min)| v >= min);
    let found = format!(
        "{} {}, API {}",
        info.product, info.server_version, info.api_version
    );
    let needed = if podman {
        format!(
            "Podman >= {}.{}, API >= {MIN_API_VERSION}",
            floor.0, floor.1
        )
    } else {
        needed
    };
    out.push(if engine_ok && api_ok {
        pass("docker-version", found, needed)
    } else {
        finding(
            "docker-version",
            Status::Fail,
            found,
            needed,
            Some(if podman {
                "upgrade Podman to 4.0 or newer (the distribution's `podman` package)".into()
            } else {
                "upgrade Docker to 18.09 or newer (the distribution's `docker.io` package is enough)".into()
            }),
        )
    });

    let daemon = Arch::from_any(&info.arch);
    let host = Arch::from_any(&f.host_arch);
    out.push(if daemon.is_some() && daemon == host {
        pass(
            "docker-arch",
            format!("daemon {}", info.arch),
            format!("same as the host ({})", f.host_arch),
        )
    } else {
        finding(
            "docker-arch",
            Status::Fail,
            format!("daemon {}", info.arch),
            format!("same as the host ({})", f.host_arch),
            Some("use the Docker engine built for this host's architecture".into()),
        )
    });

    let found = format!("{} at `{}`", info.storage_driver, info.root_dir);
    out.push(match info.storage_driver.as_str() {
        "vfs" | "devicemapper" | "aufs" => finding(
            "docker-storage",
            Status::Warn,
            found,
            "overlay2",
            Some("set `\"storage-driver\": \"overlay2\"` in /etc/docker/daemon.json and restart Docker (existing images must be pulled or loaded again)".into()),
        ),
        _ => pass("docker-storage", found, "overlay2"),
    });
    compose_check(f, out);

    let needed = format!(">= {} free", gib(DOCKER_WARN_MB));
    out.push(match f.docker_root_free_mb {
        None => finding(
            "disk-docker",
            Status::Warn,
            format!("unknown (cannot read `{}`)", info.root_dir),
            needed,
            Some(format!("check with `df -h {}`", info.root_dir)),
        ),
        Some(mb) => {
            let found = format!("{} free at `{}`", gib(mb), info.root_dir);
            let fix = Some(format!(
                "free space under `{}`: `docker system prune` removes unused images and containers",
                info.root_dir
            ));
            if mb < DOCKER_FAIL_MB {
                finding("disk-docker", Status::Fail, found, needed, fix)
            } else if mb < DOCKER_WARN_MB {
                finding("disk-docker", Status::Warn, found, needed, fix)
            } else {
                pass("disk-docker", found, needed)
            }
        }
    });
}

fn compose_check(f: &Facts, out: &mut Vec<Finding>) {
    let mut found = Vec::new();
    if let Some(v) = &f.compose_plugin {
        found.push(format!("docker compose {v}"));
    }
    if let Some(v) = &f.compose_standalone {
        found.push(format!("docker-compose {v}"));
    }
    let needed = "optional: to run the rendered file by hand";
    out.push(if found.is_empty() {
        finding(
            "compose",
            Status::Warn,
            "neither `docker compose` nor `docker-compose`",
            needed,
            Some("cdq does not need it; to run the rendered file by hand install the compose plugin (`docker-compose-plugin` or `docker-compose`)".into()),
        )
    } else {
        pass("compose", found.join(", "), needed)
    });
}

fn host_checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    let needed = format!("amd64 or arm64, matching the render ({})", r.arch);
    out.push(match Arch::from_any(&f.host_arch) {
        None => finding(
            "host-arch",
            Status::Fail,
            f.host_arch.clone(),
            needed,
            Some("cdq deploys to amd64 (x86_64) and arm64 (aarch64) hosts only".into()),
        ),
        Some(a) if a != r.arch => finding(
            "host-arch",
            Status::Fail,
            format!("{a} host, rendering for {}", r.arch),
            needed,
            Some(if r.explicit_arch {
                "drop `--arch` / `arch:` in cdq.yaml to deploy for this host (render for another arch only to copy the files elsewhere)".into()
            } else {
                "render on the target host, or pass its arch with `--arch`".into()
            }),
        ),
        Some(a) => pass("host-arch", a.to_string(), needed),
    });

    let needed = format!(">= {MIN_CPUS} cores ({RECOMMENDED_CPUS} recommended)");
    let found = format!("{} cores", f.cpus);
    let fix = Some(
        "give the host more cores, or enable fewer services (`services:` in cdq.yaml)".to_string(),
    );
    out.push(if f.cpus < MIN_CPUS {
        finding("cpu", Status::Fail, found, needed, fix)
    } else if f.cpus < RECOMMENDED_CPUS {
        finding("cpu", Status::Warn, found, needed, fix)
    } else {
        pass("cpu", found, needed)
    });

    let needed = format!(
        ">= {} for {} services (memory + heap)",
        gib(r.memory_mb),
        r.services.len()
    );
    let found = format!(
        "{} total, {} available",
        gib(f.memory_total_mb),
        gib(f.memory_available_mb)
    );
    let fix = Some("lower the heaps (`heap: { elasticsearch: 512m, kafka: 512m }` in cdq.yaml) or enable fewer services (`services:`)".to_string());
    out.push(if f.memory_total_mb < r.memory_mb {
        finding("memory", Status::Fail, found, needed, fix)
    } else if f.memory_available_mb < r.memory_mb {
        finding(
            "memory",
            Status::Warn,
            found,
            needed,
            Some("stop other memory-hungry processes, or lower the heaps in cdq.yaml".into()),
        )
    } else {
        pass("memory", found, needed)
    });

    let d = &f.data_dir;
    let needed = format!(">= {} free", gib(DATA_WARN_MB));
    out.push(match d.free_mb {
        None => finding(
            "disk-data",
            Status::Warn,
            format!("unknown (cannot stat `{}`)", d.nearest.display()),
            needed,
            Some(format!("check with `df -h {}`", d.nearest.display())),
        ),
        Some(mb) => {
            let found = format!("{} free at `{}`", gib(mb), d.nearest.display());
            let fix = Some(format!(
                "free space at `{}`, or put the data elsewhere: `--data-dir /big/disk/cdq` (or `data_dir:` in cdq.yaml)",
                d.nearest.display()
            ));
            if mb < DATA_FAIL_MB {
                finding("disk-data", Status::Fail, found, needed, fix)
            } else if mb < DATA_WARN_MB {
                finding("disk-data", Status::Warn, found, needed, fix)
            } else {
                pass("disk-data", found, needed)
            }
        }
    });
}

fn kernel_checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    out.push(match &r.vm_max_map_count {
        None => pass(
            "vm-max-map-count",
            "not checked",
            "nothing: no enabled image needs it",
        ),
        Some(n) => {
            let needed = format!(">= {} for {}", n.value, n.by.join(", "));
            let fix = Some(format!(
                "`sudo sysctl -w vm.max_map_count={v}`; to persist: `echo vm.max_map_count={v} | sudo tee /etc/sysctl.d/99-cdq.conf`",
                v = n.value
            ));
            match f.vm_max_map_count {
                None => finding(
                    "vm-max-map-count",
                    Status::Warn,
                    "unknown (cannot read /proc/sys/vm/max_map_count)",
                    needed,
                    fix,
                ),
                Some(v) if v < n.value => {
                    finding("vm-max-map-count", Status::Fail, v.to_string(), needed, fix)
                }
                Some(v) => pass("vm-max-map-count", v.to_string(), needed),
            }
        }
    });

    // Judged on what a container is granted (a probe container), not this shell's limit.
    super::hostcompat::limits(f, r, out);

    out.push(if f.swap_total_mb > 0 {
        finding(
            "swap",
            Status::Warn,
            format!("{} of swap on", gib(f.swap_total_mb)),
            "off (swapped JVMs stall their health checks)",
            Some("`sudo swapoff -a` (and comment out swap in /etc/fstab to persist)".into()),
        )
    } else {
        pass("swap", "off", "off")
    });

    out.push(match f.thp.as_deref() {
        Some("always") => finding(
            "thp",
            Status::Warn,
            "always",
            "madvise or never (redis and the JVMs stall on always)",
            Some("`echo madvise | sudo tee /sys/kernel/mm/transparent_hugepage/enabled`".into()),
        ),
        Some(m) => pass("thp", m, "madvise or never"),
        None => pass("thp", "not available", "madvise or never"),
    });

    out.push(if f.selinux_enforcing == Some(true) && r.compat.relabelled {
        pass(
            "selinux",
            "enforcing; bind mounts relabelled (`:z`)",
            "not enforcing, or volumes with `:z`",
        )
    } else if f.selinux_enforcing == Some(true) {
        finding(
            "selinux",
            Status::Warn,
            "enforcing, bind mounts not relabelled",
            "bind mounts labelled for containers",
            Some("set `selinux_relabel: true` (or `auto`) in cdq.yaml: cdq renders `:z` on every bind mount; or for the PoC `sudo setenforce 0`".into()),
        )
    } else {
        pass(
            "selinux",
            if f.selinux_enforcing == Some(false) {
                "permissive"
            } else {
                "not enabled"
            },
            "not enforcing, or volumes with `:z`",
        )
    });
}

fn port_checks(f: &Facts, out: &mut Vec<Finding>) {
    for p in &f.ports {
        let n = &p.need;
        let id = format!("port-{}", n.port);
        let needed = format!("{}:{} free for `{}`", n.addr, n.port, n.service);
        let change = format!(
            "or publish `{}` on another port: `ports: {{ {}: {} }}` in cdq.yaml",
            n.service,
            n.service,
            n.port.saturating_add(10)
        );
        out.push(match &p.state {
            PortState::Free => pass(&id, "free", needed),
            PortState::Ours { service } => pass(
                &id,
                format!("published by this stack's `{service}`"),
                needed,
            ),
            PortState::Held { holder } => {
                let by = holder.clone().unwrap_or_else(|| "another process".into());
                // docker-proxy means another container publishes the port: name the way
                // to find it rather than the proxy, which is not what to stop.
                let stop = if by.ends_with("(docker-proxy)") {
                    format!(
                        "a container publishes it: stop the one `docker ps --filter publish={}` lists",
                        n.port
                    )
                } else {
                    format!(
                        "stop {by} (`sudo ss -ltnp 'sport = :{}'` shows it)",
                        n.port
                    )
                };
                finding(
                    id,
                    Status::Fail,
                    format!("port {} in use by {by}", n.port),
                    needed,
                    Some(format!("{stop}, {change}")),
                )
            }
            PortState::Unbindable { reason } => finding(
                id,
                Status::Fail,
                format!("cannot bind {}:{}: {reason}", n.addr, n.port),
                needed,
                Some(format!(
                    "pass an address of this host with `--ip`, {change}"
                )),
            ),
        });
    }
}

fn data_dir_checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    let d = &f.data_dir;
    let path = d.path.display();
    let needed = "a directory cdq can write (created if missing)";
    let elsewhere = "or put the data elsewhere: `--data-dir DIR` (or `data_dir:` in cdq.yaml)";
    out.push(if d.exists && !d.is_dir {
        finding(
            "data-dir",
            Status::Fail,
            format!("`{path}` is a file"),
            needed,
            Some(format!("move the file away, {elsewhere}")),
        )
    } else if !d.exists && !d.nearest_is_dir {
        finding(
            "data-dir",
            Status::Fail,
            format!(
                "`{}` is a file, so `{path}` cannot be created",
                d.nearest.display()
            ),
            needed,
            Some(format!("move the file away, {elsewhere}")),
        )
    } else if d.read_only {
        finding(
            "data-dir",
            Status::Fail,
            format!("`{}` is on a read-only filesystem", d.nearest.display()),
            needed,
            Some(format!(
                "remount it read-write (`sudo mount -o remount,rw $(stat -c %m {})`), {elsewhere}",
                d.nearest.display()
            )),
        )
    } else if !d.writable {
        finding(
            "data-dir",
            Status::Fail,
            format!("`{}` is not writable", d.nearest.display()),
            needed,
            Some(format!(
                "`sudo mkdir -p {path} && sudo chown $USER {path}`, {elsewhere}"
            )),
        )
    } else if d.exists {
        pass("data-dir", format!("`{path}` exists"), needed)
    } else {
        pass(
            "data-dir",
            format!("`{path}` will be created in `{}`", d.nearest.display()),
            needed,
        )
    });

    let uids: Vec<String> = r.uids.iter().map(u32::to_string).collect();
    let needed = format!("handed to uids {}", uids.join(", "));
    out.push(match f.chown {
        Chown::Root => pass("data-dir-owner", "running as root", needed),
        Chown::CapChown => pass("data-dir-owner", "CAP_CHOWN", needed),
        Chown::No => finding(
            "data-dir-owner",
            Status::Warn,
            "not root, no CAP_CHOWN",
            needed,
            Some("nothing to do: cdq hands each directory over through a short-lived helper container".into()),
        ),
    });
}

/// What the deploy directory needs: room for the rendered files, `secrets.env` and its lock.
const DEPLOY_MIN_MB: u64 = 16;

fn deploy_dir_check(f: &Facts, out: &mut Vec<Finding>) {
    let d = &f.deploy_dir;
    let path = d.path.display();
    let near = d.nearest.display();
    let needed = format!("writable, >= {DEPLOY_MIN_MB} MiB free (rendered files, secrets.env)");
    let elsewhere = "or use another deploy directory: `--dir DIR` (or `CDQ_DIR`)";
    out.push(if (d.exists && !d.is_dir) || (!d.exists && !d.nearest_is_dir) {
        finding(
            "deploy-dir",
            Status::Fail,
            format!("`{near}` is a file"),
            needed,
            Some(format!("move the file away, {elsewhere}")),
        )
    } else if d.read_only {
        finding(
            "deploy-dir",
            Status::Fail,
            format!("`{near}` is on a read-only filesystem"),
            needed,
            Some(format!(
                "remount it read-write (`sudo mount -o remount,rw $(stat -c %m {near})`), {elsewhere}"
            )),
        )
    } else if !d.writable {
        finding(
            "deploy-dir",
            Status::Fail,
            format!("`{near}` is not writable"),
            needed,
            Some(format!(
                "`sudo mkdir -p {path} && sudo chown $USER {path}`, {elsewhere}"
            )),
        )
    } else if d.free_mb.is_some_and(|mb| mb < DEPLOY_MIN_MB) {
        finding(
            "deploy-dir",
            Status::Fail,
            format!(
                "{} MiB free at `{near}`",
                d.free_mb.unwrap_or_default()
            ),
            needed,
            Some(format!("free space at `{near}` (`df -h {near}`), {elsewhere}")),
        )
    } else {
        pass("deploy-dir", format!("`{path}` is writable"), needed)
    });
}

/// Each service's data directory: cdq mounts only what it made for this project, an empty
/// directory, or one the user adopts with `--adopt-data SERVICE`.
fn service_dir_checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    for sd in &f.service_dirs {
        let id = format!("data-{}", sd.service);
        let needed = "missing, empty, or made by cdq for this project";
        let to = match sd.uid {
            Some(u) => format!("uid {u}"),
            None => "the uid the image runs as".to_string(),
        };
        let found = sd.check.describe();
        out.push(if sd.check.usable() {
            pass(&id, found, needed)
        } else if r.adopt.contains(&sd.service) {
            finding(
                &id,
                Status::Warn,
                found,
                needed,
                Some(format!(
                    "adopted (`--adopt-data {}`): its files are handed to {to} and `down --purge` will delete it",
                    sd.service
                )),
            )
        } else {
            let dir = sd.check.path.display();
            let parent = sd
                .check
                .path
                .parent()
                .unwrap_or(Path::new("/"))
                .display();
            finding(
                &id,
                Status::Fail,
                found,
                needed,
                Some(format!(
                    "use another data directory (`--data-dir DIR`), or move it aside (`mv {dir} {parent}/{}.before-cdq`), or hand it to `{}` with `--adopt-data {}` (its files become {to}'s, and `down --purge` deletes it)",
                    sd.check.path.file_name().unwrap_or_default().to_string_lossy(),
                    sd.service,
                    sd.service
                )),
            )
        });
    }
}

fn clock_checks(f: &Facts, out: &mut Vec<Finding>) {
    out.push(match f.clock_synchronized {
        Some(true) => pass("clock", "synchronised (NTP)", "synchronised"),
        Some(false) => finding(
            "clock",
            Status::Warn,
            "not synchronised",
            "synchronised (kafka and the apps compare timestamps)",
            Some(
                "`sudo timedatectl set-ntp true`, or point chrony at the site's NTP server".into(),
            ),
        ),
        None => finding(
            "clock",
            Status::Warn,
            "unknown (no `timedatectl`)",
            "synchronised",
            Some("check with `chronyc tracking` or `ntpq -p`".into()),
        ),
    });
    out.push(pass(
        "timezone",
        f.timezone.clone(),
        "any: containers get the host's (set `timezone:` in cdq.yaml to change)",
    ));
}

fn image_checks(f: &Facts, r: &Requirements, out: &mut Vec<Finding>) {
    let Ok(_) = f.docker else { return };
    let want = r.arch.name();
    for img in &f.images {
        let id = format!("image-{}", img.service);
        let needed = format!("`{}` for {want}", img.reference);
        let missing_fix = if r.registry {
            // cdq pulls it itself (issue 13): `cdq up` does by default.
            "pull it from the registry: `cdq pull` (`cdq up` pulls what is missing unless `--pull never`)"
                .to_string()
        } else if r.image_set == "local" {
            format!("build the local kit: `scripts/build-local-images.sh --arch {want}`")
        } else {
            format!(
                "load it from an offline archive: `cdq bundle load FILE` or `docker load -i FILE` (online: `cdq pull`, or `docker pull {}`)",
                img.reference
            )
        };
        out.push(match &img.state {
            ImageState::Present { arch } if Arch::from_any(arch) == Some(r.arch) => {
                pass(&id, format!("present ({arch})"), needed)
            }
            ImageState::Present { arch } => finding(
                id,
                Status::Fail,
                format!("`{}` is {arch}, not {want}", img.reference),
                needed,
                Some(format!(
                    "remove it (`docker rmi {}`), then {missing_fix}",
                    img.reference
                )),
            ),
            ImageState::Missing => finding(
                id,
                if r.registry {
                    Status::Warn
                } else {
                    Status::Fail
                },
                "not present",
                needed,
                Some(missing_fix),
            ),
            ImageState::Unknown(m) => finding(
                id,
                Status::Warn,
                format!("cannot inspect: {m}"),
                needed,
                Some(format!(
                    "check with `docker image inspect {}`",
                    img.reference
                )),
            ),
        });
    }
}

fn host_ip_check(f: &Facts) -> Finding {
    let h = &f.host_ip;
    let needed = "an address of this host other machines reach (kafka advertises it)";
    let others = if h.candidates.is_empty() {
        "pass an address of this host: `--ip A.B.C.D`".to_string()
    } else {
        format!(
            "pass one of this host's: `--ip {}` ({})",
            h.candidates[0].split(' ').next().unwrap_or_default(),
            h.candidates.join(", ")
        )
    };
    match &h.interface {
        Some((name, false)) => pass(
            "host-ip",
            format!("{} on {name} ({})", h.ip, h.source),
            needed,
        ),
        Some((name, true)) => finding(
            "host-ip",
            Status::Warn,
            format!(
                "{} on {name} ({}): other machines cannot reach it",
                h.ip, h.source
            ),
            needed,
            Some(others),
        ),
        None => finding(
            "host-ip",
            Status::Fail,
            format!("{} is on no interface of this host ({})", h.ip, h.source),
            needed,
            Some(others),
        ),
    }
}

#[cfg(test)]
pub(super) mod tests;
