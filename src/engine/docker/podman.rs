//! Podman behind its Docker-compatible API: what differs from Docker and how cdq makes up for
//! it (measured on Debian's Podman 4.3.1, `../shared/notes/podman.md`).
//!
//! - Health checks: Podman schedules them with systemd timers, so on a host without systemd
//!   (or a service started by hand) they never run and a container stays `starting`. cdq runs
//!   the check itself through the libpod endpoint `GET /v<version>/libpod/containers/<id>/healthcheck`,
//!   which updates Podman's own status, streak and log, whenever it inspects a running
//!   container that has one (at most once a second per container): so `up`'s health gate and
//!   `status` see fresh health, and `podman ps` agrees.
//! - Stop: containers created through the Docker API get `StopTimeout=0` on 4.3 (an immediate
//!   SIGKILL on any stop that names no timeout); cdq gives every container Docker's 10 s
//!   default when the compose file sets no `stop_grace_period`.
//! - Limits: Podman raises `nofile` and `nproc` above the host's hard limits and runc then
//!   fails (`error setting rlimits`); cdq asks for them explicitly, never above the hard
//!   limits of the process that talks to Podman (a local socket: the same host).
//! - Events: `health_status` carries no status (cdq inspects for it) and a removal is
//!   `remove`, not `destroy`.
//!
//! Must not: change anything for a Docker daemon; everything here runs only when the daemon
//! said it is Podman.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ResourcesUlimits, SystemVersion};

use super::super::{EngineError, Result};

/// Docker's stop timeout when the container names none.
const DEFAULT_STOP_TIMEOUT_SECS: i64 = 10;
/// cdq runs a container's health check at most this often (`status` and every inspect of
/// `up`'s wait loop ask for it).
pub(super) const CHECK_GAP: Duration = Duration::from_secs(1);
/// One health check run: the check's own timeout is Podman's business, this bounds the call.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Podman's version when the daemon is Podman: its `/version` lists a `Podman Engine`
/// component where Docker lists `Engine`.
pub(super) fn detect(v: &SystemVersion) -> Option<String> {
    v.components
        .as_ref()?
        .iter()
        .find(|c| c.name == "Podman Engine")
        .map(|c| c.version.clone())
}

/// The hard limits a container may ask for: the lower of this process's and, on a local
/// socket, those of the process serving it (`SO_PEERCRED`, then `/proc/<pid>/limits`): Podman
/// sets its own (32768 processes where the shell has more), and runc inherits them.
pub(super) fn hard_limits(host: &str) -> Vec<(&'static str, Option<u64>)> {
    use rustix::process::{Resource, getrlimit};
    let peer = host
        .strip_prefix("unix://")
        .and_then(|path| std::os::unix::net::UnixStream::connect(path).ok())
        .and_then(|s| rustix::net::sockopt::socket_peercred(&s).ok())
        .and_then(|c| {
            std::fs::read_to_string(format!("/proc/{}/limits", c.pid.as_raw_nonzero())).ok()
        });
    let lower = |own: Option<u64>, row: &str| {
        let theirs = peer.as_deref().and_then(|t| hard_limit_row(t, row));
        match (own, theirs) {
            (Some(a), Some(Some(b))) => Some(a.min(b)),
            (None, Some(b)) => b,
            (a, _) => a,
        }
    };
    vec![
        (
            "nofile",
            lower(getrlimit(Resource::Nofile).maximum, "Max open files"),
        ),
        (
            "nproc",
            lower(getrlimit(Resource::Nproc).maximum, "Max processes"),
        ),
    ]
}

/// The hard limit of a `/proc/<pid>/limits` row: Some(None) for `unlimited`.
fn hard_limit_row(limits: &str, row: &str) -> Option<Option<u64>> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(row))?;
    match rest.split_whitespace().nth(1)? {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// Adjusts a create request for Podman: a stop timeout, and `nofile`/`nproc` within `hard`
/// (None: unlimited). Limits the compose file asks for are kept when they fit and lowered to
/// the hard limit when they do not (preflight's `nofile` check reports what is granted).
pub(super) fn adjust_create(body: &mut ContainerCreateBody, hard: &[(&str, Option<u64>)]) {
    if body.stop_timeout.is_none() {
        body.stop_timeout = Some(DEFAULT_STOP_TIMEOUT_SECS);
    }
    let hc = body.host_config.get_or_insert_with(Default::default);
    let ulimits = hc.ulimits.get_or_insert_with(Vec::new);
    for (name, max) in hard {
        let Some(max) = max.map(|m| i64::try_from(m).unwrap_or(i64::MAX)) else {
            continue;
        };
        match ulimits
            .iter_mut()
            .find(|u| u.name.as_deref() == Some(*name))
        {
            Some(u) => {
                // -1 is "unlimited": not grantable under a finite hard limit either.
                let clamp =
                    |v: Option<i64>| Some(v.filter(|v| *v >= 0).map_or(max, |v| v.min(max)));
                u.soft = clamp(u.soft);
                u.hard = clamp(u.hard);
            }
            None => ulimits.push(ResourcesUlimits {
                name: Some(name.to_string()),
                soft: Some(max),
                hard: Some(max),
            }),
        }
    }
}

/// An image reference as Docker would report it: Podman reports the fully qualified name it
/// resolved (`localhost/cdq-local/redis:2-amd64` for a loaded image, `docker.io/library/redis:7`
/// for a pulled one), which would make every plan see a changed image.
pub(super) fn docker_reference(image: &str) -> String {
    for prefix in ["localhost/", "docker.io/library/", "docker.io/"] {
        if let Some(rest) = image.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    image.to_string()
}

/// The event actions to ask Podman for, beside Docker's.
pub(super) const EXTRA_EVENTS: [&str; 1] = ["remove"];

/// Runs the container's health check through the libpod API; returns the HTTP status and
/// body. `host` is `DOCKER_HOST`'s form (`unix:///path` or `tcp://h:p`).
pub(super) async fn run_healthcheck(host: &str, version: &str, id: &str) -> Result<(u16, String)> {
    let path = format!("/v{version}/libpod/containers/{id}/healthcheck");
    let host = host.to_string();
    tokio::task::spawn_blocking(move || http_get(&host, &path))
        .await
        .map_err(|e| EngineError::Other(format!("podman healthcheck: {e}")))?
}

/// A bare HTTP/1.1 GET (bollard has no request for libpod endpoints). Blocking; bounded by
/// `CHECK_TIMEOUT`.
fn http_get(host: &str, path: &str) -> Result<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
    let io = |e: std::io::Error| EngineError::Unreachable {
        socket: host.to_string(),
        source: Box::new(e),
    };
    let mut raw = Vec::new();
    if let Some(path) = host.strip_prefix("unix://") {
        let mut s = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
        s.set_read_timeout(Some(CHECK_TIMEOUT)).map_err(io)?;
        s.write_all(req.as_bytes()).map_err(io)?;
        s.read_to_end(&mut raw).map_err(io)?;
    } else {
        let addr = host
            .trim_start_matches("tcp://")
            .trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).map_err(io)?;
        s.set_read_timeout(Some(CHECK_TIMEOUT)).map_err(io)?;
        s.write_all(req.as_bytes()).map_err(io)?;
        s.read_to_end(&mut raw).map_err(io)?;
    }
    parse_response(&raw)
        .ok_or_else(|| EngineError::Other(format!("podman answered `{path}` unreadably")))
}

/// Status code and body of an HTTP/1.1 response (plain or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n..)?.trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// Rate limit for health check runs: true when the container's last run is `CHECK_GAP` old.
pub(super) fn due(last: &std::sync::Mutex<HashMap<String, std::time::Instant>>, id: &str) -> bool {
    let mut m = last.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    match m.get(id) {
        Some(t) if now.duration_since(*t) < CHECK_GAP => false,
        _ => {
            m.insert(id.to_string(), now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{HostConfig, SystemVersionComponents};

    #[test]
    fn podman_is_told_apart_by_its_component() {
        let v = |name: &str| SystemVersion {
            components: Some(vec![SystemVersionComponents {
                name: name.into(),
                version: "4.3.1".into(),
                details: None,
            }]),
            ..Default::default()
        };
        assert_eq!(detect(&v("Podman Engine")).as_deref(), Some("4.3.1"));
        assert_eq!(detect(&v("Engine")), None);
        assert_eq!(detect(&SystemVersion::default()), None);
    }

    #[test]
    fn limits_are_asked_for_within_the_hard_limit_and_a_stop_timeout_is_set() {
        let mut body = ContainerCreateBody {
            host_config: Some(HostConfig {
                ulimits: Some(vec![ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(65536),
                    hard: Some(65536),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        adjust_create(
            &mut body,
            &[("nofile", Some(20000)), ("nproc", Some(32768))],
        );
        let u = body.host_config.unwrap().ulimits.unwrap();
        let got: Vec<(String, i64, i64)> = u
            .into_iter()
            .map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("nofile".into(), 20000, 20000),
                ("nproc".into(), 32768, 32768)
            ]
        );
        assert_eq!(body.stop_timeout, Some(DEFAULT_STOP_TIMEOUT_SECS));

        let mut body = ContainerCreateBody {
            stop_timeout: Some(30),
            ..Default::default()
        };
        adjust_create(&mut body, &[("nofile", Some(1024)), ("nproc", None)]);
        assert_eq!(body.stop_timeout, Some(30));
        let u = body.host_config.unwrap().ulimits.unwrap();
        assert_eq!(u.len(), 1, "an unlimited hard limit needs nothing asked");
    }

    #[test]
    fn references_read_as_docker_reports_them() {
        assert_eq!(
            docker_reference("localhost/cdq-local/redis:2-amd64"),
            "cdq-local/redis:2-amd64"
        );
        assert_eq!(
            docker_reference("docker.io/library/redis:7.2.5"),
            "redis:7.2.5"
        );
        assert_eq!(
            docker_reference("docker.io/bitnami/kafka:3.6.2"),
            "bitnami/kafka:3.6.2"
        );
        assert_eq!(
            docker_reference("harbor.example.com/cd/redis:7"),
            "harbor.example.com/cd/redis:7"
        );
    }

    #[test]
    fn proc_limits_rows_parse() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             32768                32768                processes \nMax open files            1024                 unlimited            files     \n";
        assert_eq!(hard_limit_row(t, "Max processes"), Some(Some(32768)));
        assert_eq!(hard_limit_row(t, "Max open files"), Some(None));
        assert_eq!(hard_limit_row(t, "Max locked memory"), None);
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Status\":\"healthy\"}";
        assert_eq!(
            parse_response(plain),
            Some((200, "{\"Status\":\"healthy\"}".into()))
        );
        let chunked = b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((409, "hello world".into())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
