//! The Docker implementation of [`Engine`](super::Engine), on bollard. The only module that
//! imports bollard (this file: connecting and the trait; `wire.rs`: the translation): everything Docker-shaped (JSON models, filters, nanosecond durations,
//! status codes) is translated here into cdq's own types, so no other module can grow a
//! dependency on the wire format.
//!
//! Must not: decide what to create or when (that is `plan`/`execute`), print, or touch any
//! object it was not asked about by name or by the project label.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EventMessage, HostConfig, NetworkCreateRequest, NetworkDisconnectRequest,
    ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ImportImageOptions,
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    PushImageOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
    TagImageOptions, WaitContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, ClientVersion};
use futures_util::{StreamExt, TryStreamExt, future::try_join_all, stream};

use super::{
    ByteStream, Container, CreateSpec, Engine, EngineError, EngineInfo, EventKind, EventStream,
    ImageInfo, LineStream, MIN_API_VERSION, NetworkInfo, OneOff, RegistryAuth, Result, RunState,
    SupportFacts, TransferStream,
};

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// bollard's per-request timeout (seconds) for getting response headers; streams (events,
/// follow_logs, wait) are not bounded by it once the headers arrived.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Connecting and the daemon's first answer (the version handshake): an endpoint that
/// accepts and never answers must not hold `status` for the request timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Image save/load: bounded only so a wedged daemon cannot hang cdq forever.
const TRANSFER_TIMEOUT_SECS: u64 = 3600;

/// A connection to one Docker daemon, at the API version negotiated on connect.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// What the user would recognise: the socket path or the tcp address.
    socket: String,
    api_version: String,
    /// `DOCKER_HOST`'s form, for the libpod requests bollard cannot make.
    host: String,
    /// Podman's version when the daemon is Podman (`podman.rs` says what differs).
    podman: Option<String>,
    /// When cdq last ran each container's health check on Podman.
    checked: Arc<Mutex<HashMap<String, std::time::Instant>>>,
    /// On Podman: the hard limits containers are kept within (`podman::hard_limits`).
    hard_limits: Vec<(&'static str, Option<u64>)>,
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

    /// Connects to the given host (`unix:///path` or `tcp://host:port`): the connection and
    /// the daemon's first answer within [`CONNECT_TIMEOUT`].
    pub async fn connect_to(host: &str) -> Result<Docker> {
        let socket = host
            .strip_prefix("unix://")
            .map(str::to_string)
            .unwrap_or_else(|| host.to_string());
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::handshake(host)).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::NoAnswer {
                socket,
                after: CONNECT_TIMEOUT,
            }),
        }
    }

    async fn handshake(host: &str) -> Result<Docker> {
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
        let server_api = version.api_version.clone().unwrap_or_default();
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
            host: host.to_string(),
            hard_limits: match podman::detect(&version) {
                Some(_) => podman::hard_limits(host),
                None => Vec::new(),
            },
            podman: podman::detect(&version),
            checked: Arc::default(),
        })
    }

    /// The API version this connection speaks.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Translates a bollard error; `what` names the object asked for (for NotFound).
    /// Creates network `name` with `driver` unless one of that name exists (true: created).
    pub(super) async fn ensure_network_with(
        &self,
        name: &str,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool> {
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
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(driver.to_string()),
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

    /// Translates a bollard error of a pull, push or registry inspection: what the daemon
    /// said about the registry is kept word for word (`ops::pull` classifies it); a lost
    /// daemon stays a daemon error.
    fn map_registry_err(&self, e: BollardError) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Registry {
                status: Some(status_code),
                message,
            },
            BollardError::DockerStreamError { error } => EngineError::Registry {
                status: None,
                message: error,
            },
            e => self.map_err(e, ""),
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
        let c = self.inspect_plain(id).await?;
        // Podman without systemd never runs health checks: cdq does, then looks again.
        if let Some(version) = &self.podman
            && c.state == RunState::Running
            && c.health.is_some()
            && podman::due(&self.checked, &c.id)
        {
            match podman::run_healthcheck(&self.host, version, &c.id).await {
                Ok(_) => return self.inspect_plain(id).await,
                // Stopped or removed meanwhile: the inspect above stands.
                Err(_) => return Ok(c),
            }
        }
        Ok(c)
    }

    async fn inspect_plain(&self, id: &str) -> Result<Container> {
        let resp = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map_err(e, id))?;
        let mut c = container_from_inspect(resp);
        if self.podman.is_some() {
            c.image = podman::docker_reference(&c.image);
        }
        Ok(c)
    }

    /// The registries the daemon treats as insecure (`docker info`'s `RegistryConfig`): the
    /// names configured so (`IndexConfigs` with `Secure: false`) and the insecure CIDRs, which
    /// are loopback's, as Docker's default, when the engine reports none (Podman).
    pub async fn insecure_registries(&self) -> Result<(Vec<String>, Vec<String>)> {
        let i = self.client.info().await.map_err(|e| self.map_err(e, ""))?;
        let config = i.registry_config.unwrap_or_default();
        let mut names: Vec<String> = config
            .index_configs
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, c)| c.secure == Some(false))
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let cidrs = config
            .insecure_registry_cidrs
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| vec!["127.0.0.0/8".to_string()]);
        Ok((names, cidrs))
    }

    /// Whether the daemon is Podman (its version), for callers that name the engine.
    pub fn podman(&self) -> Option<&str> {
        self.podman.as_deref()
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
        host: host.to_string(),
        podman: None,
        checked: Arc::default(),
        hard_limits: Vec::new(),
    })
}

mod podman;
mod swarm;
mod wire;

use wire::*;

impl Engine for Docker {
    async fn info(&self) -> Result<EngineInfo> {
        let i = self.client.info().await.map_err(|e| self.map_err(e, ""))?;
        Ok(EngineInfo {
            product: if self.podman.is_some() {
                "Podman"
            } else {
                "Docker"
            }
            .into(),
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
        // API 1.41 would allow a second network of the same name; the inspect in
        // `ensure_network_with` and the locks (one cdq per stack) are what keep it to one.
        self.ensure_network_with(name, "bridge", labels).await
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

    async fn networks_named(&self, name: &str) -> Result<Vec<NetworkInfo>> {
        // The daemon's name filter matches substrings: keep exact names only. The list does
        // not carry the attached containers; an inspect by id does.
        let opts = ListNetworksOptions {
            filters: Some(std::collections::HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let ids: Vec<String> = self
            .client
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.map_err(e, ""))?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            match self
                .client
                .inspect_network(&id, None::<InspectNetworkOptions>)
                .await
            {
                Ok(n) => {
                    let mut containers: Vec<String> = n
                        .containers
                        .unwrap_or_default()
                        .into_values()
                        .filter_map(|ep| ep.name)
                        .collect();
                    containers.sort();
                    out.push(NetworkInfo {
                        id: n.id.unwrap_or(id),
                        name: n.name.unwrap_or_default(),
                        labels: n.labels.unwrap_or_default().into_iter().collect(),
                        containers,
                        created: n.created.map(|c| c.to_string()).unwrap_or_default(),
                    });
                }
                // Removed between the list and the inspect.
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(self.map_err(e, name)),
            }
        }
        out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok(out)
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
        let mut body = create_body(spec)?;
        if self.podman.is_some() {
            podman::adjust_create(&mut body, &self.hard_limits);
        }
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

    async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let opts = RenameContainerOptions {
            name: name.to_string(),
        };
        self.client
            .rename_container(id, opts)
            .await
            .map_err(|e| self.map_err(e, id))
    }

    async fn support_facts(&self, project: &str, since: i64) -> Result<SupportFacts> {
        let json = |v: std::result::Result<serde_json::Value, serde_json::Error>| {
            v.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
        };
        let version = self
            .client
            .version()
            .await
            .map_err(|e| self.map_err(e, ""))?;
        let info = self.client.info().await.map_err(|e| self.map_err(e, ""))?;
        let opts = ListContainersOptions {
            all: true,
            filters: Some(label_filter(project)),
            ..Default::default()
        };
        let mut inspects = BTreeMap::new();
        for s in self
            .client
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.map_err(e, ""))?
        {
            let Some(id) = s.id else { continue };
            match self
                .client
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            {
                Ok(r) => {
                    let name = r.name.clone().unwrap_or_else(|| id.clone());
                    inspects.insert(
                        name.trim_start_matches('/').to_string(),
                        json(serde_json::to_value(&r)),
                    );
                }
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(self.map_err(e, &id)),
            }
        }
        // `until` = now makes the daemon close the stream after the past events.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut filters = label_filter(project);
        filters.insert("type".into(), vec!["container".into()]);
        let events: Vec<serde_json::Value> = self
            .client
            .events(Some(EventsOptions {
                since: Some(since.to_string()),
                until: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
                filters: Some(filters),
            }))
            .map_ok(|m| json(serde_json::to_value(&m)))
            .try_collect()
            .await
            .map_err(|e| self.map_err(e, ""))?;
        Ok(SupportFacts {
            version: json(serde_json::to_value(&version)),
            info: json(serde_json::to_value(&info)),
            inspects,
            events,
        })
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
        let mut actions: Vec<String> = ["start", "die", "oom", "health_status", "destroy"]
            .map(String::from)
            .to_vec();
        if self.podman.is_some() {
            actions.extend(podman::EXTRA_EVENTS.map(String::from));
        }
        filters.insert("event".into(), actions);
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
            let this = this.clone();
            async move {
                match m {
                    Ok(m) => match event_from_message(m.clone()) {
                        Some(ev) => Some(Ok(ev)),
                        // Podman's `health_status` has no status: ask the container.
                        None if this.podman.is_some()
                            && m.action.as_deref() == Some("health_status") =>
                        {
                            let id = m.actor.as_ref()?.id.clone()?;
                            let c = this.inspect_plain(&id).await.ok()?;
                            let mut ev = event_from_message(EventMessage {
                                action: Some("start".into()),
                                ..m
                            })?;
                            ev.kind = EventKind::Health(c.health?);
                            Some(Ok(ev))
                        }
                        None => None,
                    },
                    Err(e) => Some(Err(this.map_err(e, ""))),
                }
            }
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
                ulimits: (!spec.ulimits.is_empty()).then(|| {
                    spec.ulimits
                        .iter()
                        .map(|(name, soft, hard)| ResourcesUlimits {
                            name: Some(name.clone()),
                            soft: Some(*soft),
                            hard: Some(*hard),
                        })
                        .collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut body = body;
        if self.podman.is_some() {
            podman::adjust_create(&mut body, &self.hard_limits);
        }
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

    fn pull_image(
        &self,
        reference: &str,
        platform: Option<&str>,
        auth: Option<RegistryAuth>,
    ) -> TransferStream {
        let this = self.clone();
        let opts = CreateImageOptions {
            from_image: Some(reference.to_string()),
            platform: platform.unwrap_or_default().to_string(),
            ..Default::default()
        };
        Box::pin(
            self.transfer_client()
                .create_image(Some(opts), None, auth.map(credentials))
                .map(move |r| {
                    r.map(|i| transfer_event(i.id, i.status, i.progress_detail))
                        .map_err(|e| this.map_registry_err(e))
                }),
        )
    }

    fn push_image(&self, reference: &str, auth: Option<RegistryAuth>) -> TransferStream {
        let this = self.clone();
        let (name, tag) = split_tag(reference);
        let opts = PushImageOptions {
            tag: Some(tag.to_string()),
            platform: None,
        };
        Box::pin(
            self.transfer_client()
                .push_image(name, Some(opts), auth.map(credentials))
                .map(move |r| {
                    r.map(|i| transfer_event(None, i.status, i.progress_detail))
                        .map_err(|e| this.map_registry_err(e))
                }),
        )
    }

    async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let (repo, tag) = split_tag(target);
        let opts = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.client
            .tag_image(source, Some(opts))
            .await
            .map_err(|e| self.map_err(e, source))
    }

    async fn registry_platforms(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<Vec<String>> {
        let d = self
            .client
            .inspect_registry_image(reference, auth.map(credentials))
            .await
            .map_err(|e| self.map_registry_err(e))?;
        Ok(d.platforms
            .into_iter()
            .map(|p| {
                let mut s = format!(
                    "{}/{}",
                    p.os.unwrap_or_default(),
                    p.architecture.unwrap_or_default()
                );
                if let Some(v) = p.variant.filter(|v| !v.is_empty()) {
                    s.push('/');
                    s.push_str(&v);
                }
                s
            })
            .collect())
    }
}
