//! Host facts for preflight, gathered once: the engine (through the [`Engine`] trait), this
//! process's limits, `/proc` and `/sys`, free space, ports, interfaces.
//!
//! This is the only I/O of preflight. It observes and never changes anything: ports are
//! probed by binding and immediately closing a listener, the data directory is never created
//! (its nearest existing ancestor is checked instead), nothing is written. It does not judge
//! what it finds; `evaluate` does.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::{Engine, EngineError, EngineInfo};
use crate::hostip;

use super::requirements::{PortNeed, Requirements};

/// Why the engine could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DockerProblem {
    PermissionDenied { socket: String },
    Unreachable { socket: String, detail: String },
    TooOld { version: String },
    Other(String),
}

impl From<&EngineError> for DockerProblem {
    fn from(e: &EngineError) -> Self {
        match e {
            EngineError::PermissionDenied { socket } => DockerProblem::PermissionDenied {
                socket: socket.clone(),
            },
            EngineError::Unreachable { socket, source } => DockerProblem::Unreachable {
                socket: socket.clone(),
                detail: source.to_string(),
            },
            EngineError::TooOld { version } => DockerProblem::TooOld {
                version: version.clone(),
            },
            other => DockerProblem::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirProbe {
    pub path: PathBuf,
    pub exists: bool,
    pub is_dir: bool,
    /// The path itself when it exists, else its nearest existing ancestor.
    pub nearest: PathBuf,
    /// Whether `nearest` is a directory: when it is a regular file the path below it can
    /// never be created, however writable that file is.
    pub nearest_is_dir: bool,
    /// Whether `nearest` is writable by this process (so the directory can be made there).
    pub writable: bool,
    /// Free space for unprivileged users at `nearest`, in MiB.
    pub free_mb: Option<u64>,
    /// The filesystem holding `nearest` is mounted read-only (no chown or sudo fixes that).
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDir {
    pub service: String,
    pub uid: Option<u32>,
    pub check: crate::fsio::DirCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PortState {
    Free,
    /// Held by a container of this very project (a re-run of `cdq up`): not a conflict.
    Ours {
        service: String,
    },
    /// In use; the holder as `pid N (name)` when `/proc` tells.
    Held {
        holder: Option<String>,
    },
    /// Cannot be bound for another reason (address not on this host, port below 1024).
    Unbindable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortProbe {
    pub need: PortNeed,
    pub state: PortState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageState {
    /// Present, with Docker's spelling of its architecture.
    Present {
        arch: String,
    },
    Missing,
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageProbe {
    pub service: String,
    pub reference: String,
    pub state: ImageState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Chown {
    Root,
    CapChown,
    No,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpProbe {
    pub ip: IpAddr,
    pub source: &'static str,
    /// The interface holding the IP, and whether it is one cdq never picks (loopback, bridges).
    pub interface: Option<(String, bool)>,
    pub candidates: Vec<String>,
}

/// Everything preflight knows about the host. Plain data, so tests build it by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Rust's spelling of this binary's architecture (`x86_64`, `aarch64`).
    pub host_arch: String,
    pub docker: Result<EngineInfo, DockerProblem>,
    pub compose_plugin: Option<String>,
    pub compose_standalone: Option<String>,
    pub cpus: usize,
    pub memory_total_mb: u64,
    pub memory_available_mb: u64,
    pub swap_total_mb: u64,
    pub data_dir: DirProbe,
    pub deploy_dir: DirProbe,
    /// Each service's read-write data directory, as cdq's ownership rules see it.
    pub service_dirs: Vec<ServiceDir>,
    pub docker_root_free_mb: Option<u64>,
    /// Read only when an enabled image needs it.
    pub vm_max_map_count: Option<u64>,
    /// This process's soft open-file limit; None when unlimited.
    pub nofile: Option<u64>,
    /// The bracketed mode of transparent huge pages (`always`, `madvise`, `never`).
    pub thp: Option<String>,
    pub ports: Vec<PortProbe>,
    pub chown: Chown,
    pub selinux_enforcing: Option<bool>,
    /// `timedatectl`'s NTPSynchronized; None when it cannot be asked.
    pub clock_synchronized: Option<bool>,
    pub timezone: String,
    pub images: Vec<ImageProbe>,
    pub host_ip: IpProbe,
    /// What the mysql and kafka data directories hold (see `olddata`).
    pub old_data: Vec<super::olddata::Probe>,
    /// Page size, cgroup, engines present, and what probe containers said (Xinchuang).
    pub compat: super::compat::CompatFacts,
}

const MIB: u64 = 1024 * 1024;

/// Gathers the facts `req` calls for. Never fails: what cannot be learnt is recorded as
/// unknown and judged by `evaluate`.
pub async fn gather<E: Engine>(
    engine: Result<&E, EngineError>,
    req: &Requirements,
    project: &str,
) -> Facts {
    let (docker, engine) = match engine {
        Err(e) => (Err(DockerProblem::from(&e)), None),
        Ok(eng) => match eng.info().await {
            Ok(i) => (Ok(i), Some(eng)),
            Err(e) => (Err(DockerProblem::from(&e)), None),
        },
    };
    let mut images = Vec::new();
    let mut ours = Vec::new();
    if let Some(eng) = engine {
        for (service, reference) in &req.images {
            let state = match eng.image(reference).await {
                Ok(Some(info)) => ImageState::Present { arch: info.arch },
                Ok(None) => ImageState::Missing,
                Err(e) => ImageState::Unknown(e.to_string()),
            };
            images.push(ImageProbe {
                service: service.clone(),
                reference: reference.clone(),
                state,
            });
        }
        // A port published by this project's own containers is not a conflict.
        if let Ok(list) = eng.list_containers(project).await {
            for c in list {
                let svc = c.service().unwrap_or(&c.name).to_string();
                ours.extend(c.ports.iter().map(|p| (p.host_port, svc.clone())));
            }
        }
    }
    let compat = super::compat::gather(
        engine.zip(docker.as_ref().ok()),
        &images,
        &req.compat,
        project,
    )
    .await;
    let docker_root_free_mb = docker
        .as_ref()
        .ok()
        .and_then(|i| free_mb(Path::new(&i.root_dir)));

    let (cpus, memory_total_mb, memory_available_mb, swap_total_mb) = memory();
    let ports = req
        .ports
        .iter()
        .map(|need| PortProbe {
            need: need.clone(),
            state: probe_port(need, &ours),
        })
        .collect();
    let (compose_plugin, compose_standalone) = std::thread::scope(|s| {
        // Both may hang on a broken install; run them side by side under one short timeout.
        let a = s.spawn(|| tool_version("docker", &["compose", "version", "--short"]));
        let b = s.spawn(|| tool_version("docker-compose", &["version", "--short"]));
        (a.join().ok().flatten(), b.join().ok().flatten())
    });

    Facts {
        host_arch: std::env::consts::ARCH.to_string(),
        docker,
        compose_plugin,
        compose_standalone,
        cpus,
        memory_total_mb,
        memory_available_mb,
        swap_total_mb,
        data_dir: probe_dir(&req.data_dir),
        deploy_dir: probe_dir(&req.deploy_dir),
        service_dirs: req
            .service_dirs
            .iter()
            .map(|(service, dir, uid)| ServiceDir {
                service: service.clone(),
                uid: *uid,
                check: crate::fsio::classify(dir, project),
            })
            .collect(),
        docker_root_free_mb,
        vm_max_map_count: req
            .vm_max_map_count
            .as_ref()
            .and_then(|_| read_u64("/proc/sys/vm/max_map_count")),
        nofile: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        thp: std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .ok()
            .and_then(|s| bracketed(&s)),
        ports,
        chown: chown_ability(),
        selinux_enforcing: std::fs::read_to_string("/sys/fs/selinux/enforce")
            .ok()
            .map(|s| s.trim() == "1"),
        clock_synchronized: tool_version(
            "timedatectl",
            &["show", "-p", "NTPSynchronized", "--value"],
        )
        .and_then(|s| match s.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }),
        timezone: crate::host::timezone(),
        images,
        host_ip: probe_ip(&req.host_ip),
        old_data: super::olddata::probe(&req.data),
        compat,
    }
}

fn memory() -> (usize, u64, u64, u64) {
    use sysinfo::{CpuRefreshKind, System};
    let Ok(mut sys) = System::new() else {
        return (0, 0, 0, 0);
    };
    sys.refresh_memory();
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    (
        sys.cpus().len(),
        sys.total_memory() / MIB,
        sys.available_memory() / MIB,
        sys.total_swap() / MIB,
    )
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `always [madvise] never` -> `madvise`.
pub fn bracketed(s: &str) -> Option<String> {
    let start = s.find('[')? + 1;
    let end = s[start..].find(']')? + start;
    Some(s[start..end].to_string())
}

pub fn free_mb(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize) / MIB)
}

pub fn probe_dir(path: &Path) -> DirProbe {
    let exists = path.exists();
    let nearest = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    DirProbe {
        path: path.to_path_buf(),
        exists,
        is_dir: path.is_dir(),
        writable: rustix::fs::access(&nearest, rustix::fs::Access::WRITE_OK).is_ok(),
        free_mb: free_mb(&nearest),
        read_only: rustix::fs::statvfs(&nearest)
            .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)),
        nearest_is_dir: nearest.is_dir(),
        nearest,
    }
}

fn chown_ability() -> Chown {
    if rustix::process::geteuid().is_root() {
        return Chown::Root;
    }
    // CAP_CHOWN is bit 0 of the effective capability set.
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        });
    match cap_eff {
        Some(c) if c & 1 == 1 => Chown::CapChown,
        _ => Chown::No,
    }
}

/// Runs a tool and returns its trimmed stdout, or None if it is absent, fails, or takes
/// longer than three seconds (a hung daemon must not hang preflight).
fn tool_version(cmd: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let out = out.trim().trim_start_matches('v').to_string();
    (!out.is_empty()).then_some(out)
}

fn probe_port(need: &PortNeed, ours: &[(u16, String)]) -> PortState {
    let Ok(ip) = need.addr.parse::<IpAddr>() else {
        return PortState::Unbindable {
            reason: format!("`{}` is not an IP address", need.addr),
        };
    };
    let addr = SocketAddr::new(ip, need.port);
    let res = if need.protocol == "udp" {
        UdpSocket::bind(addr).map(drop)
    } else {
        TcpListener::bind(addr).map(drop)
    };
    match res {
        Ok(()) => PortState::Free,
        Err(e) => {
            if let Some((_, svc)) = ours.iter().find(|(p, _)| *p == need.port) {
                return PortState::Ours {
                    service: svc.clone(),
                };
            }
            match e.kind() {
                std::io::ErrorKind::AddrInUse => PortState::Held {
                    holder: (need.protocol != "udp")
                        .then(|| holder_of(need.port))
                        .flatten(),
                },
                std::io::ErrorKind::AddrNotAvailable => PortState::Unbindable {
                    reason: format!("`{ip}` is not an address of this host"),
                },
                std::io::ErrorKind::PermissionDenied => PortState::Unbindable {
                    reason: "ports below 1024 need root".into(),
                },
                _ => PortState::Unbindable {
                    reason: e.to_string(),
                },
            }
        }
    }
}

/// The process listening on a TCP port, best effort: the LISTEN socket's inode from
/// `/proc/net/tcp{,6}`, then the `/proc/<pid>/fd` link that points at it. Other users'
/// processes are only visible to root; then this returns None.
pub fn holder_of(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listen_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                let comm = std::fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                return Some(format!("pid {pid} ({comm})"));
            }
        }
    }
    None
}

/// Inodes of LISTEN sockets on `port` in a `/proc/net/tcp` table.
pub fn listen_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            // State 0A is TCP_LISTEN.
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

fn probe_ip(d: &hostip::Decision) -> IpProbe {
    let ifaces = hostip::interfaces().unwrap_or_default();
    IpProbe {
        ip: d.ip,
        source: d.source.describe(),
        interface: hostip::interface_of(d.ip, &ifaces),
        candidates: hostip::candidates(&ifaces)
            .into_iter()
            .map(|(n, ip)| format!("{ip} ({n})"))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_inodes_reads_only_listening_sockets_on_the_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listen_inodes(t, 8080), vec![4242]);
        assert_eq!(listen_inodes(t, 3000), vec![4444]);
        assert!(listen_inodes(t, 9094).is_empty());
    }

    #[test]
    fn thp_mode_is_the_bracketed_word() {
        assert_eq!(
            bracketed("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            bracketed("[always] madvise never").as_deref(),
            Some("always")
        );
        assert_eq!(bracketed("nothing"), None);
    }

    #[test]
    fn a_missing_dir_is_probed_at_its_nearest_ancestor_and_not_created() {
        let d = tempfile::tempdir().unwrap();
        let want = d.path().join("a/b/c");
        let p = probe_dir(&want);
        assert!(!p.exists && !p.is_dir);
        assert_eq!(p.nearest, d.path());
        assert!(p.writable);
        assert!(p.free_mb.is_some());
        assert!(!d.path().join("a").exists());
    }

    #[test]
    fn a_held_port_names_this_process() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let need = PortNeed {
            service: "server".into(),
            addr: "127.0.0.1".into(),
            port,
            protocol: "tcp".into(),
        };
        let me = format!("pid {} (", std::process::id());
        match probe_port(&need, &[]) {
            PortState::Held { holder: Some(h) } => assert!(h.starts_with(&me), "{h}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            probe_port(&need, &[(port, "server".into())]),
            PortState::Ours {
                service: "server".into()
            }
        );
        drop(l);
        assert_eq!(probe_port(&need, &[]), PortState::Free);
    }
}
