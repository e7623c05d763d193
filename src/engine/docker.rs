//! The Docker implementation of [`Engine`](super::Engine), on bollard. The only file that
//! imports bollard: everything Docker-shaped (JSON models, filters, nanosecond durations,
//! status codes) is translated here into cdq's own types, so no other module can grow a
//! dependency on the wire format.
//!
//! Must not: decide what to create or when (that is `plan`/`execute`), print, or touch any
//! object it was not asked about by name or by the project label.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    EventMessage, HealthConfig, HealthStatusEnum, HostConfig, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkingConfig, PortBinding, PortMap, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ImportImageOptions, InspectContainerOptions,
    InspectNetworkOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, ClientVersion};
use futures_util::{StreamExt, TryStreamExt, future::try_join_all, stream};

use super::{
    ByteStream, Container, CreateSpec, Engine, EngineError, EngineInfo, Event, EventKind,
    EventStream, Health, ImageInfo, LABEL_PROJECT, LABEL_SERVICE, LineStream, MIN_API_VERSION,
    OneOff, PublishedPort, Result, RunState,
};

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// bollard's per-request timeout (seconds) for getting response headers; streams (events,
/// follow_logs, wait) are not bounded by it once the headers arrived.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Image save/load: bounded only so a wedged daemon cannot hang cdq forever.
const TRANSFER_TIMEOUT_SECS: u64 = 3600;
/// Docker reports a never-started container's StartedAt as Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A connection to one Docker daemon, at the API version negotiated on connect.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// What the user would recognise: the socket path or the tcp address.
    socket: String,
    api_version: String,
}

impl Docker {
    /// Connects to `DOCKER_HOST` (unix:// or tcp://), or to `/var/run/docker.sock`, and
    /// negotiates the API version.
    pub async fn connect() -> Result<Docker> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Self::connect_to(&host).await
    }

    /// Connects to the given host (`unix:///path` or `tcp://host:port`).
    pub async fn connect_to(host: &str) -> Result<Docker> {
        let socket = host
            .strip_prefix("unix://")
            .map(str::to_string)
            .unwrap_or_else(|| host.to_string());
        if host.starts_with("unix://") {
            probe_unix_socket(&socket)?;
        }

        // bollard's `negotiate_version` asks `/v1.53/version`, and Docker before 25 refuses
        // any request above its own maximum ("client version 1.53 is too new"), so
        // negotiation would fail on exactly the engines it exists for. Instead ask at the
        // oldest version cdq supports, which every acceptable engine answers, then settle on
        // the lower of the engine's maximum and bollard's, and still let bollard confirm.
        let min = parse_version(MIN_API_VERSION).expect("MIN_API_VERSION is well formed");
        let probe = open(host, &socket, &min)?;
        let version = match probe.client.version().await {
            Ok(v) => v,
            Err(BollardError::DockerResponseServerError { message, .. })
                if message.contains("is too new") =>
            {
                // "client version 1.39 is too new. Maximum supported API version is 1.38"
                let server = message
                    .rsplit(' ')
                    .next()
                    .unwrap_or("unknown")
                    .trim_end_matches('.')
                    .to_string();
                return Err(EngineError::TooOld { version: server });
            }
            Err(e) => return Err(probe.map_err(e, "")),
        };
        let server_api = version.api_version.unwrap_or_default();
        let server = parse_version(&server_api).ok_or_else(|| {
            EngineError::Other(format!(
                "the Docker daemon at `{socket}` reported an unreadable API version `{server_api}`"
            ))
        })?;
        if server < min {
            return Err(EngineError::TooOld {
                version: server_api,
            });
        }
        let target = if server < *API_DEFAULT_VERSION {
            server
        } else {
            *API_DEFAULT_VERSION
        };
        let conn = open(host, &socket, &target)?;
        let client = conn
            .client
            .clone()
            .negotiate_version()
            .await
            .map_err(|e| conn.map_err(e, ""))?;
        let negotiated = client.client_version();
        Ok(Docker {
            client,
            socket,
            api_version: format!("{}.{}", negotiated.major_version, negotiated.minor_version),
        })
    }

    /// The API version this connection speaks.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Translates a bollard error; `what` names the object asked for (for NotFound).
    fn map_err(&self, e: BollardError, what: &str) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(if what.is_empty() {
                message
            } else {
                what.to_string()
            }),
            BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            } => EngineError::Conflict(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Api {
                status: status_code,
                message,
            },
            BollardError::IOError { err } if err.kind() == std::io::ErrorKind::PermissionDenied => {
                EngineError::PermissionDenied {
                    socket: self.socket.clone(),
                }
            }
            e @ (BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)) => EngineError::Unreachable {
                socket: self.socket.clone(),
                source: Box::new(e),
            },
            e => EngineError::Other(e.to_string()),
        }
    }

    /// A client for image transfers: Docker 20.10 writes the whole save (or reads the whole
    /// load) before its first response byte, which can take longer than a request's timeout.
    fn transfer_client(&self) -> bollard::Docker {
        self.client
            .clone()
            .with_timeout(Duration::from_secs(TRANSFER_TIMEOUT_SECS))
    }

    async fn inspect_raw(&self, id: &str) -> Result<Container> {
        let resp = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map_err(e, id))?;
        Ok(container_from_inspect(resp))
    }

    async fn collect_logs(&self, id: &str, tail: Option<u64>) -> Result<Vec<String>> {
        let opts = log_options(tail, None, false);
        let chunks: Vec<_> = self
            .client
            .logs(id, Some(opts))
            .try_collect()
            .await
            .map_err(|e| self.map_err(e, id))?;
        Ok(chunks
            .iter()
            .flat_map(|c| frame_lines(c.as_ref()))
            .collect())
    }
}

/// Fails early, with the right error, when the socket is missing or not ours to use: bollard
/// reports both as an opaque connection error.
fn probe_unix_socket(path: &str) -> Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(EngineError::PermissionDenied {
                socket: path.to_string(),
            })
        }
        Err(e) => Err(EngineError::Unreachable {
            socket: path.to_string(),
            source: Box::new(e),
        }),
    }
}

fn open(host: &str, socket: &str, version: &ClientVersion) -> Result<Docker> {
    let client = if host.starts_with("unix://") {
        bollard::Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, version)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        bollard::Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
    } else {
        return Err(EngineError::Other(format!(
            "`DOCKER_HOST={host}` is not supported; use unix:///path or tcp://host:port"
        )));
    };
    let client = client.map_err(|e| EngineError::Unreachable {
        socket: socket.to_string(),
        source: Box::new(e),
    })?;
    Ok(Docker {
        client,
        socket: socket.to_string(),
        api_version: format!("{}.{}", version.major_version, version.minor_version),
    })
}

fn parse_version(v: &str) -> Option<ClientVersion> {
    let (major, minor) = v.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

fn label_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )])
}

fn log_options(tail: Option<u64>, since: Option<i64>, follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        // bollard's field is i32; Unix seconds fit until 2038, clamp rather than wrap.
        since: since
            .map(|s| s.clamp(0, i32::MAX as i64) as i32)
            .unwrap_or(0),
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..Default::default()
    }
}

/// One frame of Docker's multiplexed log stream as lines. The json-file and journald drivers
/// store one line per entry, so a frame is one line with its newline; lines over 16 KiB come
/// as several frames and so as several lines, which is acceptable for cdq's tail and follow.
fn frame_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn restart_policy(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((name, n)) => (
            name,
            Some(n.parse::<i64>().map_err(|_| {
                EngineError::Other(format!("restart policy `{s}`: `{n}` is not a number"))
            })?),
        ),
        None => (s, None),
    };
    let name = match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => {
            return Err(EngineError::Other(format!(
                "unknown restart policy `{other}`"
            )));
        }
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(EngineError::Other(format!(
            "restart policy `{s}`: only on-failure takes a retry count"
        )));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// The request body for a service container.
fn create_body(spec: &CreateSpec<'_>) -> Result<ContainerCreateBody> {
    let svc = spec.service;
    let mut exposed = Vec::new();
    let mut bindings: PortMap = HashMap::new();
    for p in &svc.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                // Empty means every address, as in `docker run -p 6379:6379`.
                host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                // "" lets Docker pick a free port, as compose does for a bare container port.
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    let binds = svc
        .binds
        .iter()
        .map(|b| {
            let ro = if b.read_only { ":ro" } else { "" };
            format!("{}:{}{ro}", b.source.display(), b.target)
        })
        .collect::<Vec<_>>();
    let ulimits = svc
        .ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect::<Vec<_>>();
    let healthcheck = svc.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    });
    let restart = svc.restart.as_deref().map(restart_policy).transpose()?;
    let endpoint = EndpointSettings {
        aliases: Some(spec.aliases.clone()),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(svc.image.clone()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        // A BTreeMap, so sorted: the same spec always makes the same request.
        env: Some(
            svc.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        stop_timeout: svc.stop_grace_period.map(|d| {
            i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
        }),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            restart_policy: restart,
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            network_mode: Some(spec.network.clone()),
            // Init stays unset: the images run their own entrypoints as PID 1, as compose does.
            init: None,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    })
}

fn run_state(s: Option<ContainerStateStatusEnum>) -> RunState {
    match s {
        // Newer engines say "stopping" while the stop signal is being handled: still running.
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            RunState::Running
        }
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY) | None => {
            RunState::Created
        }
    }
}

/// Published ports as `docker port` shows them, except that an all-addresses binding, which
/// Docker reports twice (0.0.0.0 and ::), is reported once as 0.0.0.0.
fn published_ports(ports: Option<PortMap>) -> Vec<PublishedPort> {
    let mut out: Vec<PublishedPort> = Vec::new();
    for (key, bindings) in ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            let host_ip = b.host_ip.unwrap_or_default();
            out.push(PublishedPort {
                host_ip: if host_ip.is_empty() {
                    "0.0.0.0".into()
                } else {
                    host_ip
                },
                host_port,
                container_port,
                protocol: proto.to_string(),
            });
        }
    }
    let all_v4: Vec<(u16, u16, String)> = out
        .iter()
        .filter(|p| p.host_ip == "0.0.0.0")
        .map(|p| (p.host_port, p.container_port, p.protocol.clone()))
        .collect();
    out.retain(|p| {
        p.host_ip != "::" || !all_v4.contains(&(p.host_port, p.container_port, p.protocol.clone()))
    });
    out.sort_by(|a, b| {
        (a.container_port, &a.protocol, a.host_port, &a.host_ip).cmp(&(
            b.container_port,
            &b.protocol,
            b.host_port,
            &b.host_ip,
        ))
    });
    out
}

fn container_from_inspect(r: ContainerInspectResponse) -> Container {
    let state = r.state.unwrap_or_default();
    let run = run_state(state.status);
    let health = state.health.as_ref().and_then(|h| match h.status {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    });
    let last_probe = state
        .health
        .and_then(|h| h.log)
        .and_then(|log| log.into_iter().last())
        .and_then(|r| r.output)
        .map(|o| o.trim().to_string());
    let config = r.config.unwrap_or_default();
    Container {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: run,
        health,
        last_probe,
        // Docker says 0 for containers that never ran; only an exit has an exit code.
        exit_code: matches!(run, RunState::Exited | RunState::Dead)
            .then_some(state.exit_code)
            .flatten(),
        oom_killed: state.oom_killed.unwrap_or(false),
        started_at: state.started_at.filter(|s| !s.is_empty() && s != ZERO_TIME),
        ports: published_ports(r.network_settings.and_then(|n| n.ports)),
    }
}

fn event_from_message(m: EventMessage) -> Option<Event> {
    let action = m.action?;
    let actor = m.actor.unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::Oom,
        "destroy" => EventKind::Destroy,
        a => match a
            .strip_prefix("health_status")?
            .trim_start_matches(':')
            .trim()
        {
            "healthy" => EventKind::Health(Health::Healthy),
            "unhealthy" => EventKind::Health(Health::Unhealthy),
            "starting" => EventKind::Health(Health::Starting),
            _ => return None,
        },
    };
    Some(Event {
        container_id: actor.id.unwrap_or_default(),
        service: attrs.get(LABEL_SERVICE).cloned(),
        kind,
        time_nanos: m
            .time_nano
            .or_else(|| m.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or(0),
    })
}

impl Engine for Docker {
    async fn info(&self) -> Result<EngineInfo> {
        let i = self.client.info().await.map_err(|e| self.map_err(e, ""))?;
        Ok(EngineInfo {
            server_version: i.server_version.unwrap_or_default(),
            api_version: self.api_version.clone(),
            arch: i.architecture.unwrap_or_default(),
            os: i.os_type.unwrap_or_default(),
            storage_driver: i.driver.unwrap_or_default(),
            root_dir: i.docker_root_dir.unwrap_or_default(),
            cpus: i.ncpu.unwrap_or(0).max(0) as u64,
            memory_bytes: i.mem_total.unwrap_or(0).max(0) as u64,
        })
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<Container>> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(label_filter(project)),
            ..Default::default()
        };
        let summaries = self
            .client
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.map_err(e, ""))?;
        let inspected = try_join_all(summaries.into_iter().filter_map(|s| s.id).map(
            |id| async move {
                match self.inspect_raw(&id).await {
                    Ok(c) => Ok(Some(c)),
                    // Removed between the list and the inspect: it is simply not there any more.
                    Err(EngineError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            },
        ))
        .await?;
        let mut out: Vec<Container> = inspected.into_iter().flatten().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect_container(&self, id: &str) -> Result<Container> {
        self.inspect_raw(id).await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.client.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                arch: i.architecture.unwrap_or_default(),
                os: i.os.unwrap_or_default(),
                user: i.config.and_then(|c| c.user).unwrap_or_default(),
                size: i.size.unwrap_or(0).max(0) as u64,
            })),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.map_err(e, reference)),
        }
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        match self
            .client
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => return Ok(false),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.map_err(e, name)),
        }
        // API 1.41 would allow a second network of the same name; the inspect above and the
        // deploy-directory lock (one cdq per stack) are what keep it to one.
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.client.create_network(req).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(self.map_err(e, name)),
        }
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<String>> {
        let opts = ListNetworksOptions {
            filters: Some(label_filter(project)),
        };
        let nets = self
            .client
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.map_err(e, ""))?;
        let mut names: Vec<String> = nets.into_iter().filter_map(|n| n.name).collect();
        names.sort();
        Ok(names)
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.client.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 20.10 answers 403 "error while removing network: network x id y has active
            // endpoints"; matched by its words, whatever the status an engine gives it.
            Err(BollardError::DockerResponseServerError { message, .. })
                if message.contains("active endpoints") =>
            {
                Err(EngineError::NetworkInUse(name.to_string()))
            }
            Err(e) => Err(self.map_err(e, name)),
        }
    }

    async fn network_endpoints(&self, name: &str) -> Result<Vec<String>> {
        match self
            .client
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => {
                let mut names: Vec<String> = n
                    .containers
                    .unwrap_or_default()
                    .into_values()
                    .filter_map(|ep| ep.name)
                    .collect();
                names.sort();
                Ok(names)
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Vec::new()),
            Err(e) => Err(self.map_err(e, name)),
        }
    }

    async fn force_disconnect(&self, network: &str, endpoint: &str) -> Result<()> {
        let req = NetworkDisconnectRequest {
            container: endpoint.to_string(),
            force: Some(true),
        };
        match self.client.disconnect_network(network, req).await {
            Ok(()) => Ok(()),
            // No such network, or (container gone) no such endpoint: nothing to remove.
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // The container exists but is not on the network (20.10 answers 500).
            Err(BollardError::DockerResponseServerError { message, .. })
                if message.contains("is not connected to the network") =>
            {
                Ok(())
            }
            Err(e) => Err(self.map_err(e, network)),
        }
    }

    async fn create_container(&self, spec: &CreateSpec<'_>) -> Result<String> {
        let body = create_body(spec)?;
        let opts = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self.client.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(EngineError::NotFound(
                // "network x not found" vs "No such image: y": name what is missing.
                if message.contains("network") {
                    spec.network.clone()
                } else {
                    spec.service.image.clone()
                },
            )),
            Err(e) => Err(self.map_err(e, &spec.name)),
        }
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.client
            .start_container(id, None)
            .await
            .map_err(|e| self.map_err(e, id))
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let opts = StopContainerOptions {
            t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // An already stopped container answers 304, which bollard counts as success.
        self.client
            .stop_container(id, Some(opts))
            .await
            .map_err(|e| self.map_err(e, id))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            v: true,
            force: false,
            link: false,
        };
        match self.client.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.map_err(e, id)),
        }
    }

    async fn logs(&self, id: &str, tail: u64) -> Result<Vec<String>> {
        self.collect_logs(id, Some(tail)).await
    }

    fn follow_logs(
        &self,
        id: &str,
        tail: Option<u64>,
        since: Option<i64>,
        follow: bool,
    ) -> LineStream {
        let this = self.clone();
        let id = id.to_string();
        let frames = self
            .client
            .logs(&id, Some(log_options(tail, since, follow)));
        Box::pin(frames.flat_map(move |frame| {
            let items: Vec<Result<String>> = match frame {
                Ok(f) => frame_lines(f.as_ref()).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(this.map_err(e, &id))],
            };
            stream::iter(items)
        }))
    }

    fn events(&self, project: &str) -> EventStream {
        let mut filters = label_filter(project);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            ["start", "die", "oom", "health_status", "destroy"]
                .map(String::from)
                .to_vec(),
        );
        // The request is only sent when the stream is first polled; `since` = now keeps the
        // promise "from now on" for events that happen between this call and that poll.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let opts = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        let this = self.clone();
        Box::pin(self.client.events(Some(opts)).filter_map(move |m| {
            let out = match m {
                Ok(m) => event_from_message(m).map(Ok),
                Err(e) => Some(Err(this.map_err(e, ""))),
            };
            std::future::ready(out)
        }))
    }

    async fn run_oneoff(&self, spec: &OneOff) -> Result<(i64, String)> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: (!spec.user.is_empty()).then(|| spec.user.clone()),
            entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            host_config: Some(HostConfig {
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = match self
            .client
            .create_container(None::<CreateContainerOptions>, body)
            .await
        {
            Ok(r) => r.id,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(EngineError::NotFound(spec.image.clone())),
            Err(e) => return Err(self.map_err(e, &spec.image)),
        };
        let result = async {
            self.client
                .start_container(&id, None)
                .await
                .map_err(|e| self.map_err(e, &id))?;
            let code = match self
                .client
                .wait_container(&id, None::<WaitContainerOptions>)
                .try_collect::<Vec<_>>()
                .await
            {
                Ok(r) => r.last().map_or(0, |r| r.status_code),
                // bollard turns a non-zero exit into an error; for cdq it is the answer.
                Err(BollardError::DockerContainerWaitError { code, .. }) => code,
                Err(e) => return Err(self.map_err(e, &id)),
            };
            let output = self.collect_logs(&id, None).await?.join("\n");
            Ok((code, output))
        }
        .await;
        // Removed whatever happened above: a one-off must never outlive its call.
        let removed = self
            .client
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    v: true,
                    force: true,
                    link: false,
                }),
            )
            .await;
        let out = result?;
        removed.map_err(|e| self.map_err(e, &id))?;
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<(i64, String)> {
        let run = async {
            let created = self
                .client
                .create_exec(
                    id,
                    bollard::exec::CreateExecOptions {
                        cmd: Some(cmd.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.map_err(e, id))?;
            let mut output = String::new();
            if let bollard::exec::StartExecResults::Attached {
                output: mut out, ..
            } = self
                .client
                .start_exec(&created.id, None::<bollard::exec::StartExecOptions>)
                .await
                .map_err(|e| self.map_err(e, id))?
            {
                while let Some(chunk) = out.next().await {
                    match chunk {
                        Ok(c) => output.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                        Err(e) => return Err(self.map_err(e, id)),
                    }
                }
            }
            let code = self
                .client
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.map_err(e, id))?
                .exit_code
                .unwrap_or(-1);
            Ok((code, output.trim().to_string()))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Ok((
                -1,
                format!("probe timed out after {}s", timeout.as_secs_f64()),
            )),
        }
    }

    fn export_images(&self, references: &[String]) -> ByteStream {
        let this = self.clone();
        let what = references.join(", ");
        let names: Vec<&str> = references.iter().map(String::as_str).collect();
        Box::pin(
            self.transfer_client()
                .export_images(&names)
                .map(move |r| r.map_err(|e| this.map_err(e, &what))),
        )
    }

    async fn import_images(&self, tar: ByteStream) -> Result<Vec<String>> {
        let opts = ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let replies: Vec<_> = self
            .transfer_client()
            .import_image_stream(opts, tar, None)
            .try_collect()
            .await
            .map_err(|e| self.map_err(e, ""))?;
        Ok(replies
            .into_iter()
            .filter_map(|r| r.stream)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        let p = restart_policy("on-failure:5").unwrap();
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(p.maximum_retry_count, Some(5));
        assert_eq!(
            restart_policy("unless-stopped").unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            restart_policy("no").unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert!(restart_policy("sometimes").is_err());
        assert!(restart_policy("always:3").is_err());
    }

    #[test]
    fn health_events_parse_with_and_without_the_colon() {
        let msg = |action: &str| EventMessage {
            action: Some(action.to_string()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    (LABEL_SERVICE.to_string(), "redis".to_string()),
                    ("exitCode".to_string(), "3".to_string()),
                ])),
            }),
            time_nano: Some(7),
            ..Default::default()
        };
        let e = event_from_message(msg("health_status: healthy")).unwrap();
        assert_eq!(e.kind, EventKind::Health(Health::Healthy));
        assert_eq!(e.service.as_deref(), Some("redis"));
        assert_eq!(e.time_nanos, 7);
        let e = event_from_message(msg("die")).unwrap();
        assert_eq!(e.kind, EventKind::Die { exit_code: Some(3) });
        assert!(event_from_message(msg("exec_start: sh")).is_none());
    }

    #[test]
    fn all_address_bindings_are_reported_once() {
        let ports = HashMap::from([(
            "6379/tcp".to_string(),
            Some(vec![
                PortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some("16379".into()),
                },
                PortBinding {
                    host_ip: Some("::".into()),
                    host_port: Some("16379".into()),
                },
            ]),
        )]);
        let p = published_ports(Some(ports));
        assert_eq!(
            p,
            vec![PublishedPort {
                host_ip: "0.0.0.0".into(),
                host_port: 16379,
                container_port: 6379,
                protocol: "tcp".into()
            }]
        );
    }

    #[test]
    fn frames_become_lines_without_their_newline() {
        assert_eq!(frame_lines(b"a\n"), vec!["a"]);
        assert_eq!(frame_lines(b"a\r\nb\n"), vec!["a", "b"]);
        assert_eq!(frame_lines(b"partial"), vec!["partial"]);
    }
}
