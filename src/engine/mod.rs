//! The `Engine` trait: the Docker operations cdq needs, shaped by cdq rather than by the
//! Docker API. `docker` implements it on bollard (the only file that imports bollard);
//! `fake` implements it in memory for fast tests with a paused clock. The contract tests
//! (`tests/engine_contract.rs`) run the same assertions against both so the fake cannot drift.
//!
//! Must not: decide what to create (that is `plan`), print (that is `ui`).

pub mod docker;
pub mod fake;
pub mod swarm;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::Serialize;

use crate::error::CdqError;
use crate::project::ServiceSpec;

/// Labels cdq puts on everything it creates; they are the source of truth for "ours".
pub const LABEL_PROJECT: &str = "io.cdq.project";
pub const LABEL_SERVICE: &str = "io.cdq.service";
pub const LABEL_CONFIG_HASH: &str = "io.cdq.config-hash";
/// Compose's labels, so `docker compose -p NAME ps|logs` work on a cdq stack.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
/// Compose lists only containers that carry a config hash; cdq writes its own hash here too.
pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";

/// The oldest Docker Engine API cdq speaks (Docker 18.09); newer engines are negotiated down
/// to what both sides support.
pub const MIN_API_VERSION: &str = "1.39";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker daemon at `{socket}`")]
    Unreachable {
        socket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("permission denied on the Docker socket `{socket}`")]
    PermissionDenied { socket: String },
    #[error("Docker API {version} is older than the oldest cdq supports ({MIN_API_VERSION})")]
    TooOld { version: String },
    #[error("`{0}` not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The daemon refuses to remove a network that still has endpoints: a container attached
    /// to it, or a stale endpoint the daemon failed to release when its container went.
    #[error("network `{0}` still has active endpoints")]
    NetworkInUse(String),
    #[error("the Docker daemon said: {message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// An engine error as product copy, with the fix where there is one.
pub fn explain(e: EngineError) -> CdqError {
    let hint = match &e {
        EngineError::Unreachable { .. } => {
            Some("start Docker (`sudo systemctl start docker`), or set `DOCKER_HOST`")
        }
        EngineError::PermissionDenied { .. } => Some(
            "add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again), or run cdq with sudo",
        ),
        EngineError::TooOld { .. } => Some("upgrade Docker to 18.09 or newer"),
        _ => None,
    };
    let mut err = CdqError::failure(e.to_string());
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    pub server_version: String,
    /// The API version negotiated for this connection.
    pub api_version: String,
    /// Docker's spelling (`x86_64`, `aarch64`).
    pub arch: String,
    pub os: String,
    pub storage_driver: String,
    pub root_dir: String,
    pub cpus: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Removing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// One container as cdq sees it (from inspect, or list plus inspect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    /// None when the container has no healthcheck.
    pub health: Option<Health>,
    /// Output of the most recent healthcheck probe, trimmed.
    pub last_probe: Option<String>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// RFC 3339, as Docker reports it; None if never started.
    pub started_at: Option<String>,
    pub ports: Vec<PublishedPort>,
}

impl Container {
    pub fn service(&self) -> Option<&str> {
        self.labels.get(LABEL_SERVICE).map(String::as_str)
    }
    pub fn config_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_CONFIG_HASH).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub id: String,
    /// Docker's spelling for images (`amd64`, `arm64`).
    pub arch: String,
    pub os: String,
    /// The image config's USER ("" when it runs as root).
    pub user: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Die { exit_code: Option<i64> },
    Oom,
    Health(Health),
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub container_id: String,
    pub service: Option<String>,
    pub kind: EventKind,
    /// Nanoseconds since the Unix epoch, from the daemon's clock.
    pub time_nanos: i64,
}

/// What to create: a service of the project, with the name, labels and network cdq chose.
#[derive(Debug, Clone)]
pub struct CreateSpec<'a> {
    pub name: String,
    pub service: &'a ServiceSpec,
    /// Merged: the service's own labels plus cdq's and compose's.
    pub labels: BTreeMap<String, String>,
    pub network: String,
    /// DNS names on the network (the service name).
    pub aliases: Vec<String>,
}

/// A short-lived helper container (e.g. to hand a data directory to a uid without root).
#[derive(Debug, Clone)]
pub struct OneOff {
    pub image: String,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub binds: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;
pub type LineStream = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;
/// Raw bytes in transit (an image tar, either way).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes>> + Send>>;

/// The Docker operations cdq needs. Every method is one logical request.
pub trait Engine: Send + Sync + 'static {
    /// Version, architecture and storage facts of the daemon.
    fn info(&self) -> impl Future<Output = Result<EngineInfo>> + Send;
    /// Every container (running or not) labelled `io.cdq.project=<project>`, inspected.
    fn list_containers(&self, project: &str)
    -> impl Future<Output = Result<Vec<Container>>> + Send;
    fn inspect_container(&self, id: &str) -> impl Future<Output = Result<Container>> + Send;
    /// None when the image is not present locally.
    fn image(&self, reference: &str) -> impl Future<Output = Result<Option<ImageInfo>>> + Send;
    /// Creates the network unless it exists; true when it was created.
    fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Names of networks labelled `io.cdq.project=<project>`.
    fn list_networks(&self, project: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Removes the network; a missing one is fine. `NetworkInUse` while it has endpoints.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Names of the containers the daemon lists on the network (`docker network inspect`);
    /// empty when the network is missing. A stale endpoint is not listed.
    fn network_endpoints(&self, name: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// `docker network disconnect -f <network> <endpoint>`. When no container is named
    /// `endpoint`, removes the endpoint of that name the daemon kept (a stale endpoint);
    /// otherwise disconnects that container (a stopped one loses the network from its
    /// config). A missing network or endpoint, or a container not on it, is fine.
    fn force_disconnect(
        &self,
        network: &str,
        endpoint: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Creates (does not start) a container; returns its id.
    fn create_container(
        &self,
        spec: &CreateSpec<'_>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Removes a stopped container (and its anonymous volumes).
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// The last `tail` lines of stdout and stderr, oldest first.
    fn logs(&self, id: &str, tail: u64) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Log lines as they come (`since`: Unix seconds; `tail`: None for all).
    fn follow_logs(
        &self,
        id: &str,
        tail: Option<u64>,
        since: Option<i64>,
        follow: bool,
    ) -> LineStream;
    /// Container events (start, die, oom, health_status, destroy) for the project, from now on.
    fn events(&self, project: &str) -> EventStream;
    /// Runs a one-off container to completion and removes it; returns its exit code and output.
    fn run_oneoff(&self, spec: &OneOff) -> impl Future<Output = Result<(i64, String)>> + Send;
    /// Runs `cmd` in a running container and waits for it, at most `timeout`; returns its
    /// exit code and output. cdq probes a starting service with its own healthcheck command
    /// this way, so it need not wait a whole `interval` for the daemon's first probe.
    fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<(i64, String)>> + Send;
    /// A `docker save` tar of these references (`GET /images/get`): one config and one
    /// `manifest.json` entry per image, each layer once however many images share it.
    fn export_images(&self, references: &[String]) -> ByteStream;
    /// `docker load` of a tar (`POST /images/load`); returns the daemon's messages
    /// (`Loaded image: <reference>`). An error item in `tar` aborts the upload.
    fn import_images(&self, tar: ByteStream) -> impl Future<Output = Result<Vec<String>>> + Send;
}
