//! The `Engine` trait: the Docker operations cdq needs, shaped by cdq rather than by the
//! Docker API. `docker` implements it on bollard (the only file that imports bollard);
//! `fake` implements it in memory for fast tests with a paused clock. The contract tests
//! (`tests/engine_contract.rs`) run the same assertions against both so the fake cannot drift.
//!
//! Must not: decide what to create (that is `plan`), print (that is `ui`).

pub mod docker;
pub mod fake;
pub mod fake_swarm;
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
    /// The endpoint accepted the connection (or never completed it) but gave no answer in
    /// time: a wedged daemon, or something else listening there.
    #[error("the Docker daemon at `{socket}` did not answer within {}s", after.as_secs())]
    NoAnswer { socket: String, after: Duration },
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
    /// A pull, push or registry inspection the daemon could not do: its own words (HTTP
    /// status when the request itself failed, none when the progress stream ended with an
    /// error). `ops::pull` classifies them into the failure and its fix.
    #[error("{message}")]
    Registry {
        status: Option<u16>,
        message: String,
    },
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
        EngineError::NoAnswer { .. } => Some(
            "check that `DOCKER_HOST` names a running Docker daemon (unset, cdq uses \
             `/var/run/docker.sock`), and that the daemon is not hung (`sudo systemctl status docker`)",
        ),
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
    /// `Docker` or `Podman` (its Docker-compatible API), as preflight names the engine.
    pub product: String,
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
    /// Names of the networks it is attached to.
    pub networks: Vec<String>,
    /// Its restart policy as compose spells it: `no`, `always`, `unless-stopped`,
    /// `on-failure` or `on-failure:N`.
    pub restart: String,
    /// Its bind mounts as `SOURCE:TARGET[:ro]`.
    pub binds: Vec<String>,
    /// Its environment (`KEY=VALUE`), the image's included.
    pub env: Vec<String>,
}

impl Container {
    pub fn service(&self) -> Option<&str> {
        self.labels.get(LABEL_SERVICE).map(String::as_str)
    }
    pub fn config_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_CONFIG_HASH).map(String::as_str)
    }
}

/// A network as `docker network inspect` shows it: what cdq needs to tell its own network
/// from someone else's of the same name, and one of two left by a race from the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Names of the containers attached to it.
    pub containers: Vec<String>,
    /// RFC 3339, as Docker reports it.
    pub created: String,
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
    /// (name, soft, hard), as the compose file's `ulimits` (preflight asks what a container
    /// is actually granted this way).
    pub ulimits: Vec<(String, i64, i64)>,
}

/// What the daemon says about itself and a project, in its own JSON, for support archives
/// (`cdq diagnose`): `docker version`, `docker info`, `docker inspect` of every container of
/// the project, and `docker events` for it since a time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SupportFacts {
    pub version: serde_json::Value,
    pub info: serde_json::Value,
    /// Container name (without `/`) -> its inspect.
    pub inspects: BTreeMap<String, serde_json::Value>,
    /// Oldest first, as `docker events --format '{{json .}}'` prints them.
    pub events: Vec<serde_json::Value>,
}

/// Credentials for one registry, sent as Docker's `X-Registry-Auth` header. `Debug` shows
/// neither the password nor the token: they must never reach a log or a message.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    /// The registry host as the credentials store names it (`127.0.0.1:5000`).
    pub server: String,
    pub username: String,
    pub password: String,
    /// An OAuth identity token (a credential helper's `<token>` user) instead of a password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One progress message of a pull or push, as the daemon streams it (per layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferEvent {
    /// The layer (short digest) the message is about; None for messages about the image.
    pub layer: Option<String>,
    /// `Pulling fs layer`, `Downloading`, `Pull complete`, `Pushed`, `Digest: ...`.
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

pub type TransferStream = Pin<Box<dyn Stream<Item = Result<TransferEvent>> + Send>>;

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
    /// Every network named exactly `name`, whoever made it (Docker allows several of one
    /// name when two creates race), oldest first.
    fn networks_named(&self, name: &str) -> impl Future<Output = Result<Vec<NetworkInfo>>> + Send;
    /// Removes the network (a name, or an id when several share a name); a missing one is
    /// fine. `NetworkInUse` while it has endpoints.
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
    /// Renames a container (`docker rename`). `Conflict` when the name is taken, `NotFound`
    /// when there is no such container. An upgrade keeps the previous container under
    /// another name until its successor is healthy.
    fn rename_container(&self, id: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
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
    /// The daemon's version, info, the project's container inspects and its events since
    /// `since` (Unix seconds), as the daemon's JSON ([`SupportFacts`]).
    fn support_facts(
        &self,
        project: &str,
        since: i64,
    ) -> impl Future<Output = Result<SupportFacts>> + Send;
    /// A `docker save` tar of these references (`GET /images/get`): one config and one
    /// `manifest.json` entry per image, each layer once however many images share it.
    fn export_images(&self, references: &[String]) -> ByteStream;
    /// `docker load` of a tar (`POST /images/load`); returns the daemon's messages
    /// (`Loaded image: <reference>`). An error item in `tar` aborts the upload.
    fn import_images(&self, tar: ByteStream) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// `docker pull --platform` (`POST /images/create`): the daemon's progress messages; the
    /// stream ends with `Err(Registry)` when the pull fails. Dropping it cancels the pull.
    fn pull_image(
        &self,
        reference: &str,
        platform: Option<&str>,
        auth: Option<RegistryAuth>,
    ) -> TransferStream;
    /// `docker push` of exactly this tag (`POST /images/{name}/push?tag=`).
    fn push_image(&self, reference: &str, auth: Option<RegistryAuth>) -> TransferStream;
    /// `docker tag source target`.
    fn tag_image(&self, source: &str, target: &str) -> impl Future<Output = Result<()>> + Send;
    /// The platforms (`linux/arm64`) the registry holds for `reference`
    /// (`GET /distribution/{name}/json`): what a pull of a missing architecture can offer.
    fn registry_platforms(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}
