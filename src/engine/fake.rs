//! A test double: an in-memory [`Engine`](super::Engine) that behaves like the Docker daemon
//! as far as cdq can tell, driven by tokio's clock so tests run in milliseconds with
//! `#[tokio::test(start_paused = true)]`. Compiled into the library (not `cfg(test)`) so
//! integration tests and unit tests of other modules share it. The contract tests
//! (`tests/engine_contract.rs`) hold it to the real daemon's behaviour.
//!
//! What it models, because cdq branches on it: images present or not; name conflicts; the
//! network a container joins must exist; ports are published only while running and a host
//! port taken by another running container fails the start (as Docker's "port is already
//! allocated"); a healthcheck probes every `interval`, failures during `start_period` do not
//! count, `retries` failures make it unhealthy; the events Docker emits (start,
//! health_status on change only, oom, die with the exit code, destroy) including those of
//! one-off containers that carry the project label; removing a running container is a
//! conflict; stopping a stopped one is fine.
//!
//! Registries: a pull finds the reference in the fake registry ([`FakeEngine::registry_put`]),
//! picks the variant of the asked platform (or fails as the daemon does with `no matching
//! manifest`), refuses without the credentials [`FakeEngine::require_auth`] set, streams one
//! event per layer and tags the image locally; a push copies a local image into the
//! registry. Faults on `Op::Pull`/`Op::Push` end the stream after its first event, as a
//! connection dropped mid-blob does.
//!
//! What it does not: restart policies (an exited container stays exited), more than one
//! network per container, layer sharing between pulls.
//!
//! Must not: be used outside tests, or grow behaviour the real daemon does not have — every
//! behaviour here is either pinned by a contract test or scripted explicitly by the test.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{
    ByteStream, Container, CreateSpec, Engine, EngineError, EngineInfo, Event, EventKind,
    EventStream, Health, ImageInfo, LABEL_PROJECT, LABEL_SERVICE, LineStream, NetworkInfo, OneOff,
    PublishedPort, Result, RunState, SupportFacts,
};
use crate::project::{Healthcheck, ServiceSpec};

/// What a fake container does once started. Set per service (`io.cdq.service` label) or per
/// image; the default is `HealthyAfter(Duration::ZERO)`: healthy at the first probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Probes fail until this long after start, then pass: healthy at the first probe at or
    /// after it (probes run every `interval`, the first one `interval` after start).
    HealthyAfter(Duration),
    /// Every probe fails with this output; unhealthy after `retries` counted failures.
    NeverHealthy { probe_output: String },
    /// Exits with this code this long after start; probes fail until then.
    ExitAfter(Duration, i64),
    /// Killed by the OOM killer this long after start: an `oom` event, then `die` with 137.
    OomAfter(Duration),
    /// Runs and never reports health, whatever the spec says (an image whose HEALTHCHECK is
    /// disabled). Without a healthcheck in the spec every behaviour is health-less anyway.
    NoHealthcheck,
}

/// The operations faults can be injected into with [`FakeEngine::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Info,
    ListContainers,
    InspectContainer,
    Image,
    EnsureNetwork,
    ListNetworks,
    RemoveNetwork,
    NetworkEndpoints,
    ForceDisconnect,
    Create,
    Start,
    Stop,
    Remove,
    Rename,
    Support,
    Logs,
    FollowLogs,
    Events,
    RunOneoff,
    Exec,
    Export,
    Import,
    Pull,
    Push,
    Tag,
    RegistryPlatforms,
}

/// What the fake recorded about a created container's request, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSpec {
    pub service: ServiceSpec,
    pub network: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone)]
enum Msg {
    Event {
        project: Option<String>,
        event: Event,
    },
    Log {
        id: String,
        line: String,
    },
    /// The daemon went away: every open stream ends with an error.
    Lost,
}

struct FakeContainer {
    c: Container,
    created: CreatedSpec,
    /// What it publishes while running (ephemeral host ports chosen at create).
    publish: Vec<PublishedPort>,
    logs: Vec<String>,
    /// Bumped on every start and stop, so a stale transition task cannot apply.
    run: u64,
    /// When it last started (tokio's clock), for probes run with `exec`.
    started: Option<Instant>,
    task: Option<AbortHandle>,
    /// Force-disconnected from its network while running (Docker drops the network from
    /// the container's config; it stays off it).
    detached: bool,
}

struct State {
    images: BTreeMap<String, ImageInfo>,
    by_service: HashMap<String, Behavior>,
    by_image: HashMap<String, Behavior>,
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// (network, endpoint name) pairs the daemon failed to release: see
    /// [`FakeEngine::leave_stale_endpoint`].
    stale: BTreeSet<(String, String)>,
    calls: Vec<String>,
    faults: HashMap<Op, VecDeque<EngineError>>,
    oneoff_results: HashMap<String, (i64, String)>,
    /// Image id -> its config and layers, for images added with content or loaded.
    contents: HashMap<String, Content>,
    unreachable: bool,
    /// The fake registry: reference -> (arch, image) per platform it holds.
    registry: BTreeMap<String, Vec<(String, ImageInfo)>>,
    /// Registry host -> (username, password) it accepts; hosts not listed need none.
    auth: HashMap<String, (String, String)>,
    serial: u64,
    next_ephemeral: u16,
    info: EngineInfo,
}

struct Inner {
    state: Mutex<State>,
    tx: broadcast::Sender<Msg>,
    /// Wall clock at creation and the tokio instant of the same moment: fake timestamps move
    /// with tokio's (possibly paused) clock.
    epoch: SystemTime,
    origin: Instant,
    /// Every container event sent (project, event), for `support_facts`' history.
    history: Mutex<Vec<(Option<String>, Event)>>,
}

/// The in-memory engine. Cheap to clone; clones share one daemon.
#[derive(Clone)]
pub struct FakeEngine {
    inner: Arc<Inner>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

const FAKE_SOCKET: &str = "fake:///var/run/docker.sock";
/// Docker's defaults for a healthcheck that leaves these at zero.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

impl FakeEngine {
    /// An empty daemon: no images, no containers, no networks; Docker 20.10 on x86_64.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        FakeEngine {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    images: BTreeMap::new(),
                    by_service: HashMap::new(),
                    by_image: HashMap::new(),
                    containers: BTreeMap::new(),
                    networks: BTreeMap::new(),
                    stale: BTreeSet::new(),
                    calls: Vec::new(),
                    faults: HashMap::new(),
                    oneoff_results: HashMap::new(),
                    contents: HashMap::new(),
                    unreachable: false,
                    registry: BTreeMap::new(),
                    auth: HashMap::new(),
                    serial: 0,
                    next_ephemeral: 32768,
                    info: EngineInfo {
                        product: "Docker".into(),
                        server_version: "20.10.24".into(),
                        api_version: "1.41".into(),
                        arch: "x86_64".into(),
                        os: "linux".into(),
                        storage_driver: "overlay2".into(),
                        root_dir: "/var/lib/docker".into(),
                        cpus: 2,
                        memory_bytes: 8 << 30,
                    },
                }),
                tx,
                epoch: SystemTime::now(),
                origin: Instant::now(),
                history: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Makes `reference` present locally.
    pub fn add_image(&self, reference: &str, info: ImageInfo) {
        self.state().images.insert(reference.to_string(), info);
    }

    /// Makes `reference` present with real content, as `docker load` would: a config naming
    /// `arch` and the layers' sha256 as its diff ids; the id is the config's sha256. Only such
    /// images (and loaded ones) can be exported.
    pub fn add_image_with_layers(
        &self,
        reference: &str,
        arch: &str,
        user: &str,
        layers: &[&[u8]],
    ) -> ImageInfo {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_id(l)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": { "User": user },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .expect("a JSON value serialises");
        let layers: Vec<Vec<u8>> = layers.iter().map(|l| l.to_vec()).collect();
        let info = image_info(&config, &layers).expect("the config was just built");
        let mut st = self.state();
        st.contents.insert(info.id.clone(), (config, layers));
        st.images.insert(reference.to_string(), info.clone());
        info
    }

    /// Puts `info` into the fake registry as `reference`'s variant for `info.arch` (a second
    /// arch makes it a multi-arch tag).
    pub fn registry_put(&self, reference: &str, info: ImageInfo) {
        let mut st = self.state();
        let variants = st.registry.entry(reference.to_string()).or_default();
        variants.retain(|(a, _)| *a != info.arch);
        variants.push((info.arch.clone(), info));
    }

    /// What the fake registry holds for `reference`, by arch.
    pub fn registry_get(&self, reference: &str) -> Vec<(String, ImageInfo)> {
        self.state()
            .registry
            .get(reference)
            .cloned()
            .unwrap_or_default()
    }

    /// The registry at `host` accepts only this user and password (the daemon's 401 otherwise).
    pub fn require_auth(&self, host: &str, username: &str, password: &str) {
        self.state()
            .auth
            .insert(host.to_string(), (username.into(), password.into()));
    }

    /// Untags `reference` (as `docker rmi` of one of several tags).
    pub fn remove_image(&self, reference: &str) {
        self.state().images.remove(reference);
    }

    /// Replaces what `info()` reports (e.g. an aarch64 host).
    pub fn set_info(&self, info: EngineInfo) {
        self.state().info = info;
    }

    /// Scripts containers of this service (by their `io.cdq.service` label); wins over
    /// [`behave_image`](Self::behave_image). Applies from the next start.
    pub fn behave(&self, service: &str, behavior: Behavior) {
        self.state()
            .by_service
            .insert(service.to_string(), behavior);
    }

    /// Scripts containers of this image.
    pub fn behave_image(&self, reference: &str, behavior: Behavior) {
        self.state()
            .by_image
            .insert(reference.to_string(), behavior);
    }

    /// What `run_oneoff` on this image returns (default: exit 0, no output).
    /// What `run_oneoff` on this image returns when its entrypoint starts with `program`;
    /// wins over [`set_oneoff_result`](Self::set_oneoff_result) (preflight's probes run
    /// `getconf` and `sh` in the same image).
    pub fn set_oneoff_result_for(&self, image: &str, program: &str, exit_code: i64, output: &str) {
        self.state().oneoff_results.insert(
            format!("{image}\0{program}"),
            (exit_code, output.to_string()),
        );
    }

    pub fn set_oneoff_result(&self, image: &str, exit_code: i64, output: &str) {
        self.state()
            .oneoff_results
            .insert(image.to_string(), (exit_code, output.to_string()));
    }

    /// Every call of a mutating method that reached the daemon, in order:
    /// `create <name>`, `start <id>`, `stop <id>`, `remove <id>`, `ensure_network <name>`,
    /// `remove_network <name>`, `force_disconnect <network> <endpoint>`, `run_oneoff <image>`,
    /// `import_images`, `pull <ref>`, `push <ref>`, `tag <source> <target>`. Calls refused
    /// because the daemon is
    /// unreachable are not recorded; calls failed by [`fail_next`](Self::fail_next) are.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The next call of `op` fails with `error` (queued: several calls fail in order).
    pub fn fail_next(&self, op: Op, error: EngineError) {
        self.state().faults.entry(op).or_default().push_back(error);
    }

    /// Daemon lost (true) or back (false). While lost every call fails with `Unreachable`
    /// and open event and log streams end with that error; containers keep running.
    pub fn set_unreachable(&self, lost: bool) {
        self.state().unreachable = lost;
        if lost {
            let _ = self.inner.tx.send(Msg::Lost);
        }
    }

    /// Appends a line to a container's log (id or name), as if it printed it.
    pub fn push_log(&self, container: &str, line: &str) {
        let mut st = self.state();
        if let Some(id) = resolve(&st, container) {
            st.containers
                .get_mut(&id)
                .expect("resolved")
                .logs
                .push(line.to_string());
            self.send(
                &st,
                Msg::Log {
                    id,
                    line: line.to_string(),
                },
            );
        }
    }

    /// Stand-in for a Docker 20.10 fault that cannot be caused on purpose: libnetwork keeps
    /// the endpoint `endpoint` (a container name) on `network` after its container is gone.
    /// `network inspect` lists no container, removing the network fails with "has active
    /// endpoints", starting a container of that name on it fails with "endpoint with name
    /// ... already exists", and only `network disconnect -f` (or a daemon restart) clears it.
    pub fn leave_stale_endpoint(&self, network: &str, endpoint: &str) {
        self.state()
            .stale
            .insert((network.to_string(), endpoint.to_string()));
    }

    /// Stand-in for the Docker 20.10 fault seen here after removing about 100 containers
    /// at once (moby/moby#42119): the network's endpoint count stays above zero with no
    /// endpoint left. Removing the network fails with "has active endpoints", inspect lists
    /// nothing, no name can be disconnected; only a daemon restart clears it.
    pub fn leak_endpoint_count(&self, network: &str) {
        // An endpoint without a name: nothing can address it.
        self.leave_stale_endpoint(network, "");
    }

    /// The stale endpoints left on `network`.
    pub fn stale_endpoints(&self, network: &str) -> Vec<String> {
        self.state()
            .stale
            .iter()
            .filter(|(n, _)| n == network)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The request a container was created with (id or name).
    pub fn created_spec(&self, container: &str) -> Option<CreatedSpec> {
        let st = self.state();
        resolve(&st, container).map(|id| st.containers[&id].created.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread must not hide the real failure behind a poison error.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, st: &State, msg: Msg) {
        // A lost daemon delivers nothing; nobody listening is fine.
        if !st.unreachable {
            if let Msg::Event { project, event } = &msg {
                self.inner
                    .history
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((project.clone(), event.clone()));
            }
            let _ = self.inner.tx.send(msg);
        }
    }

    fn now_nanos(&self) -> i64 {
        let t = self.inner.epoch + self.inner.origin.elapsed();
        t.duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn emit(&self, st: &State, id: &str, kind: EventKind) {
        let c = &st.containers[id].c;
        let event = Event {
            container_id: id.to_string(),
            service: c.labels.get(LABEL_SERVICE).cloned(),
            kind,
            time_nanos: self.now_nanos(),
        };
        self.send(
            st,
            Msg::Event {
                project: c.labels.get(LABEL_PROJECT).cloned(),
                event,
            },
        );
    }

    /// The gate every request passes: reachable, recorded (if mutating), not faulted.
    fn enter(&self, op: Op, call: Option<String>) -> Result<MutexGuard<'_, State>> {
        let mut st = self.state();
        if st.unreachable {
            return Err(unreachable());
        }
        if let Some(call) = call {
            st.calls.push(call);
        }
        if let Some(e) = st.faults.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        Ok(st)
    }

    fn behavior_for(st: &State, c: &Container) -> Behavior {
        c.labels
            .get(LABEL_SERVICE)
            .and_then(|s| st.by_service.get(s))
            .or_else(|| st.by_image.get(&c.image))
            .cloned()
            .unwrap_or(Behavior::HealthyAfter(Duration::ZERO))
    }

    /// Puts a created or exited container into Running and schedules its script.
    fn start_locked(&self, st: &mut State, id: &str) -> Result<()> {
        let fc = &st.containers[id];
        if fc.c.state == RunState::Running {
            return Ok(());
        }
        if st
            .stale
            .contains(&(fc.created.network.clone(), fc.c.name.clone()))
        {
            // Docker 20.10 (libnetwork's ForbiddenError).
            return Err(EngineError::Api {
                status: 403,
                message: format!(
                    "endpoint with name {} already exists in network {}",
                    fc.c.name, fc.created.network
                ),
            });
        }
        for p in &fc.publish {
            let taken = st.containers.values().any(|o| {
                o.c.state == RunState::Running
                    && o.c
                        .ports
                        .iter()
                        .any(|q| q.host_port == p.host_port && q.protocol == p.protocol)
            });
            if taken {
                return Err(EngineError::Api {
                    status: 500,
                    message: format!(
                        "driver failed programming external connectivity on endpoint {} ({}): \
                         Bind for {}:{} failed: port is already allocated",
                        fc.c.name, id, p.host_ip, p.host_port
                    ),
                });
            }
        }
        let behavior = Self::behavior_for(st, &fc.c);
        let hc = fc
            .created
            .service
            .healthcheck
            .clone()
            .filter(|h| !h.is_disabled())
            .filter(|_| behavior != Behavior::NoHealthcheck);
        let started_at = rfc3339(self.now_nanos());
        let fc = st.containers.get_mut(id).expect("checked");
        fc.run += 1;
        fc.c.state = RunState::Running;
        fc.c.health = hc.as_ref().map(|_| Health::Starting);
        fc.c.last_probe = None;
        fc.c.exit_code = None;
        fc.c.oom_killed = false;
        fc.c.started_at = Some(started_at);
        fc.started = Some(Instant::now());
        fc.c.ports = fc.publish.clone();
        fc.logs.push(format!("fake: {} started", fc.c.name));
        let run = fc.run;
        self.emit(st, id, EventKind::Start);
        let this = self.clone();
        let id2 = id.to_string();
        let task = tokio::spawn(async move { this.script(id2, run, behavior, hc).await });
        st.containers.get_mut(id).expect("checked").task = Some(task.abort_handle());
        Ok(())
    }

    /// Plays a started container's behaviour on tokio's clock, as the daemon's health
    /// monitor would: a probe every interval, and the scripted exit.
    async fn script(self, id: String, run: u64, behavior: Behavior, hc: Option<Healthcheck>) {
        let start = Instant::now();
        let exit = match &behavior {
            Behavior::ExitAfter(d, code) => Some((*d, *code, false)),
            Behavior::OomAfter(d) => Some((*d, 137, true)),
            _ => None,
        };
        let interval = hc.as_ref().map(|h| {
            if h.interval.is_zero() {
                DEFAULT_INTERVAL
            } else {
                h.interval
            }
        });
        let retries = hc.as_ref().map_or(DEFAULT_RETRIES, |h| {
            if h.retries == 0 {
                DEFAULT_RETRIES
            } else {
                h.retries
            }
        });
        let start_period = hc.as_ref().map_or(Duration::ZERO, |h| h.start_period);
        let mut probes: u32 = 0;
        let mut streak: u32 = 0;
        loop {
            let next_probe = interval.map(|i| i * (probes + 1));
            let exit_first = match (exit, next_probe) {
                (Some((d, _, _)), Some(p)) => d <= p,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                // Nothing more will ever happen to this container.
                (None, None) => return,
            };
            if exit_first {
                let (d, code, oom) = exit.expect("exit_first");
                tokio::time::sleep_until(start + d).await;
                let mut st = self.state();
                let Some(fc) = st.containers.get_mut(&id).filter(|fc| fc.run == run) else {
                    return;
                };
                fc.run += 1;
                fc.task = None;
                fc.c.state = RunState::Exited;
                fc.c.exit_code = Some(code);
                fc.c.oom_killed = oom;
                fc.c.ports.clear();
                fc.logs.push(if oom {
                    "fake: out of memory".to_string()
                } else {
                    format!("fake: exiting with code {code}")
                });
                if oom {
                    self.emit(&st, &id, EventKind::Oom);
                }
                self.emit(
                    &st,
                    &id,
                    EventKind::Die {
                        exit_code: Some(code),
                    },
                );
                return;
            }
            let at = next_probe.expect("probe");
            tokio::time::sleep_until(start + at).await;
            probes += 1;
            let mut st = self.state();
            let Some(fc) = st.containers.get_mut(&id).filter(|fc| fc.run == run) else {
                return;
            };
            let passed = matches!(&behavior, Behavior::HealthyAfter(d) if at >= *d);
            let (output, new) = if passed {
                streak = 0;
                ("ok".to_string(), Health::Healthy)
            } else {
                // Docker does not count failures inside the start period.
                if at > start_period {
                    streak += 1;
                }
                let output = match &behavior {
                    Behavior::NeverHealthy { probe_output } => probe_output.clone(),
                    _ => "fake: not ready".to_string(),
                };
                let current = fc.c.health.unwrap_or(Health::Starting);
                let new = if streak >= retries {
                    Health::Unhealthy
                } else {
                    current
                };
                (output, new)
            };
            fc.c.last_probe = Some(output);
            let changed = fc.c.health != Some(new);
            fc.c.health = Some(new);
            if changed {
                self.emit(&st, &id, EventKind::Health(new));
            }
            // Settled and nothing else scheduled: end the task so a paused clock can idle.
            let settled = match &behavior {
                Behavior::HealthyAfter(_) => new == Health::Healthy,
                Behavior::NeverHealthy { .. } => new == Health::Unhealthy,
                _ => false,
            };
            if settled && exit.is_none() {
                return;
            }
        }
    }

    fn stop_locked(&self, st: &mut State, id: &str) {
        let fc = st.containers.get_mut(id).expect("resolved");
        if fc.c.state != RunState::Running {
            return;
        }
        if let Some(t) = fc.task.take() {
            t.abort();
        }
        fc.run += 1;
        fc.c.state = RunState::Exited;
        // Every kit image exits cleanly on SIGTERM.
        fc.c.exit_code = Some(0);
        fc.c.ports.clear();
        self.emit(st, id, EventKind::Die { exit_code: Some(0) });
    }
}

/// An image's config JSON and its layer tars.
type Content = (Vec<u8>, Vec<Vec<u8>>);

fn sha256_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What Docker reports for an image with this config and these layers.
fn image_info(config: &[u8], layers: &[Vec<u8>]) -> Result<ImageInfo> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| api_error(format!("invalid image config: {e}")))?;
    let text = |p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(ImageInfo {
        id: sha256_id(config),
        arch: text("/architecture"),
        os: text("/os"),
        user: text("/config/User"),
        size: layers.iter().map(|l| l.len() as u64).sum(),
    })
}

fn api_error(message: String) -> EngineError {
    EngineError::Api {
        status: 500,
        message,
    }
}

fn tar_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
}

/// A tar laid out as Docker 20.10's `docker save`: a directory per layer named by its chain
/// (so a layer shared at different depths gets several directories), a layer whose content
/// was already written becomes a symlink to the first copy, `<config sha256>.json` per
/// image, and `manifest.json`.
fn save_tar(images: &[(Vec<String>, &Content)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut written: HashMap<String, String> = HashMap::new();
    let mut manifest = Vec::new();
    for (tags, (config, layers)) in images {
        let config_name = format!("{}.json", hex::encode(Sha256::digest(config)));
        tar_file(&mut b, &config_name, config)?;
        let mut chain = String::new();
        let mut paths = Vec::new();
        for layer in layers {
            let diff = sha256_id(layer);
            chain = hex::encode(Sha256::digest(format!("{chain} {diff}").as_bytes()));
            let path = format!("{chain}/layer.tar");
            match written.get(&diff) {
                Some(first) if *first != path => {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_mode(0o644);
                    b.append_link(&mut h, &path, format!("../{first}"))?;
                }
                Some(_) => {}
                None => {
                    tar_file(&mut b, &format!("{chain}/VERSION"), b"1.0")?;
                    tar_file(&mut b, &path, layer)?;
                    written.insert(diff, path.clone());
                }
            }
            paths.push(path);
        }
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": tags,
            "Layers": paths,
        }));
    }
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value serialises");
    tar_file(&mut b, "manifest.json", &manifest)?;
    b.into_inner()
}

/// Reads a `docker load` tar: every image of its `manifest.json`, with its tags, config and
/// layers; each layer must match its diff id in the config, as Docker checks.
fn load_tar(tar_bytes: &[u8]) -> Result<Vec<(Vec<String>, Content)>> {
    let bad = |e: std::io::Error| api_error(format!("invalid tar: {e}"));
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if entry.header().entry_type().is_symlink() {
            let target = entry.link_name().map_err(bad)?.unwrap_or_default();
            let dir = std::path::Path::new("/").join(&path);
            let dir = dir.parent().unwrap_or(std::path::Path::new("/"));
            let joined = crate::settings::absolute(dir, &target);
            let joined = joined.to_string_lossy();
            links.insert(path, joined.trim_start_matches('/').to_string());
        } else {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(bad)?;
            files.insert(path, data);
        }
    }
    let file = |p: &str| {
        let p = links.get(p).map(String::as_str).unwrap_or(p);
        files
            .get(p)
            .cloned()
            .ok_or_else(|| api_error(format!("open {p}: no such file or directory")))
    };
    let manifest: Vec<serde_json::Value> = serde_json::from_slice(&file("manifest.json")?)
        .map_err(|e| api_error(format!("invalid manifest.json: {e}")))?;
    let mut out = Vec::new();
    for m in manifest {
        let strs = |k: &str| -> Vec<String> {
            m[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let config = file(m["Config"].as_str().unwrap_or_default())?;
        let layers = strs("Layers")
            .iter()
            .map(|p| file(p))
            .collect::<Result<Vec<_>>>()?;
        let cfg: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| api_error(format!("invalid image config: {e}")))?;
        let diff_ids = cfg["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(api_error("invalid manifest, layers length mismatch".into()));
        }
        for (l, want) in layers.iter().zip(&diff_ids) {
            let got = sha256_id(l);
            if Some(got.as_str()) != want.as_str() {
                return Err(api_error(format!(
                    "layer digest mismatch: expected {want}, got {got}"
                )));
            }
        }
        out.push((strs("RepoTags"), (config, layers)));
    }
    Ok(out)
}

/// The registry host of a reference, as the daemon reads it.
fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The daemon's 401 unless `auth` matches what `host` requires.
fn check_auth(st: &State, reference: &str, auth: &Option<super::RegistryAuth>) -> Result<()> {
    let host = registry_host(reference);
    match (st.auth.get(host), auth) {
        (None, _) => Ok(()),
        (Some((u, p)), Some(a)) if *u == a.username && *p == a.password => Ok(()),
        // The daemon's words: none sent, or refused.
        (Some(_), None) => Err(EngineError::Registry {
            status: Some(500),
            message: format!("Head \"https://{host}/v2/\": no basic auth credentials"),
        }),
        (Some(_), Some(_)) => Err(EngineError::Registry {
            status: Some(500),
            message: "unauthorized: authentication required".into(),
        }),
    }
}

fn transfer(
    layer: Option<&str>,
    status: &str,
    current: Option<u64>,
    total: Option<u64>,
) -> super::TransferEvent {
    super::TransferEvent {
        layer: layer.map(str::to_string),
        status: status.to_string(),
        current,
        total,
    }
}

fn unreachable() -> EngineError {
    EngineError::Unreachable {
        socket: FAKE_SOCKET.to_string(),
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the fake daemon was made unreachable",
        )),
    }
}

/// Names of the running containers with an endpoint on `network`, sorted.
fn attached(st: &State, network: &str) -> Vec<String> {
    st.containers
        .values()
        .filter(|c| c.c.state == RunState::Running && c.created.network == network && !c.detached)
        .map(|c| c.c.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Docker accepts a full id, a unique id prefix or a name.
fn resolve(st: &State, key: &str) -> Option<String> {
    if st.containers.contains_key(key) {
        return Some(key.to_string());
    }
    let name = key.trim_start_matches('/');
    if let Some((id, _)) = st.containers.iter().find(|(_, c)| c.c.name == name) {
        return Some(id.clone());
    }
    let mut prefixed = st.containers.keys().filter(|id| id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(id), None) if !key.is_empty() => Some(id.clone()),
        _ => None,
    }
}

fn fake_id(seed: &str, serial: u64) -> String {
    hex::encode(Sha256::digest(format!("{seed}/{serial}").as_bytes()))
}

/// RFC 3339 in UTC with nanoseconds, as Docker prints StartedAt.
fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Engine for FakeEngine {
    async fn info(&self) -> Result<EngineInfo> {
        let st = self.enter(Op::Info, None)?;
        Ok(st.info.clone())
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<Container>> {
        let st = self.enter(Op::ListContainers, None)?;
        let mut out: Vec<Container> = st
            .containers
            .values()
            .filter(|c| c.c.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|c| c.c.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect_container(&self, id: &str) -> Result<Container> {
        let st = self.enter(Op::InspectContainer, None)?;
        resolve(&st, id)
            .map(|k| st.containers[&k].c.clone())
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let st = self.enter(Op::Image, None)?;
        Ok(st.images.get(reference).cloned())
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        let mut st = self.enter(Op::EnsureNetwork, Some(format!("ensure_network {name}")))?;
        if st.networks.contains_key(name) {
            return Ok(false);
        }
        st.serial += 1;
        let id = fake_id(name, st.serial);
        st.networks.insert(name.to_string(), (id, labels.clone()));
        Ok(true)
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<String>> {
        let st = self.enter(Op::ListNetworks, None)?;
        Ok(st
            .networks
            .iter()
            .filter(|(_, (_, l))| l.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<NetworkInfo>> {
        let st = self.enter(Op::ListNetworks, None)?;
        Ok(st
            .networks
            .get(name)
            .map(|(id, labels)| NetworkInfo {
                id: id.clone(),
                name: name.to_string(),
                labels: labels.clone(),
                containers: attached(&st, name),
                created: String::new(),
            })
            .into_iter()
            .collect())
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        let mut st = self.enter(Op::RemoveNetwork, Some(format!("remove_network {name}")))?;
        if !st.networks.contains_key(name) {
            return Ok(());
        }
        let in_use = !attached(&st, name).is_empty() || st.stale.iter().any(|(n, _)| n == name);
        if in_use {
            // Docker 20.10 answers 403 "... has active endpoints", which the client maps.
            return Err(EngineError::NetworkInUse(name.to_string()));
        }
        st.networks.remove(name);
        Ok(())
    }

    async fn network_endpoints(&self, name: &str) -> Result<Vec<String>> {
        let st = self.enter(Op::NetworkEndpoints, None)?;
        // Stale endpoints have no container, so inspect does not list them.
        Ok(attached(&st, name))
    }

    async fn force_disconnect(&self, network: &str, endpoint: &str) -> Result<()> {
        let mut st = self.enter(
            Op::ForceDisconnect,
            Some(format!("force_disconnect {network} {endpoint}")),
        )?;
        // Like Docker: the name means the container of that name when there is one; only
        // without one is it an endpoint name, and a stale endpoint removed.
        match st.containers.values_mut().find(|c| c.c.name == endpoint) {
            Some(fc) => {
                if fc.created.network == network {
                    fc.detached = true;
                    fc.c.networks.retain(|n| n != network);
                }
            }
            None => {
                st.stale
                    .remove(&(network.to_string(), endpoint.to_string()));
            }
        }
        Ok(())
    }

    async fn create_container(&self, spec: &CreateSpec<'_>) -> Result<String> {
        let mut st = self.enter(Op::Create, Some(format!("create {}", spec.name)))?;
        if !st.images.contains_key(&spec.service.image) {
            return Err(EngineError::NotFound(spec.service.image.clone()));
        }
        if let Some(other) =
            resolve(&st, &spec.name).filter(|id| st.containers[id].c.name == spec.name)
        {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{other}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                spec.name
            )));
        }
        if !st.networks.contains_key(&spec.network) {
            return Err(EngineError::NotFound(spec.network.clone()));
        }
        st.serial += 1;
        let id = fake_id(&spec.name, st.serial);
        let mut publish = Vec::new();
        for p in &spec.service.ports {
            let host_port = if p.host_port == 0 {
                st.next_ephemeral += 1;
                st.next_ephemeral
            } else {
                p.host_port
            };
            publish.push(PublishedPort {
                host_ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                host_port,
                container_port: p.container_port,
                protocol: p.protocol.clone(),
            });
        }
        publish.sort_by(|a, b| {
            (a.container_port, &a.protocol, a.host_port, &a.host_ip).cmp(&(
                b.container_port,
                &b.protocol,
                b.host_port,
                &b.host_ip,
            ))
        });
        st.containers.insert(
            id.clone(),
            FakeContainer {
                c: Container {
                    id: id.clone(),
                    name: spec.name.clone(),
                    image: spec.service.image.clone(),
                    labels: spec.labels.clone(),
                    state: RunState::Created,
                    health: None,
                    last_probe: None,
                    exit_code: None,
                    oom_killed: false,
                    started_at: None,
                    ports: Vec::new(),
                    networks: vec![spec.network.clone()],
                    restart: spec.service.restart.clone().unwrap_or_else(|| "no".into()),
                    binds: spec.service.binds.iter().map(|b| b.docker_form()).collect(),
                    env: spec
                        .service
                        .environment
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                },
                created: CreatedSpec {
                    service: spec.service.clone(),
                    network: spec.network.clone(),
                    aliases: spec.aliases.clone(),
                },
                publish,
                logs: Vec::new(),
                run: 0,
                started: None,
                task: None,
                detached: false,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut st = self.enter(Op::Start, Some(format!("start {id}")))?;
        let key = resolve(&st, id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        self.start_locked(&mut st, &key)
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        let mut st = self.enter(Op::Stop, Some(format!("stop {id}")))?;
        let key = resolve(&st, id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        self.stop_locked(&mut st, &key);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut st = self.enter(Op::Remove, Some(format!("remove {id}")))?;
        let Some(key) = resolve(&st, id) else {
            return Ok(());
        };
        if st.containers[&key].c.state == RunState::Running {
            return Err(EngineError::Conflict(format!(
                "You cannot remove a running container {key}. Stop the container before \
                 attempting removal or force remove"
            )));
        }
        self.emit(&st, &key, EventKind::Destroy);
        st.containers.remove(&key);
        Ok(())
    }

    async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let mut st = self.enter(Op::Rename, Some(format!("rename {id} {name}")))?;
        let key = resolve(&st, id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if let Some(other) = st
            .containers
            .iter()
            .find(|(k, c)| c.c.name == name && **k != key)
            .map(|(k, _)| k.clone())
        {
            return Err(EngineError::Conflict(format!(
                "Error when allocating new name: Conflict. The container name \"/{name}\" is \
                 already in use by container \"{other}\". You have to remove (or rename) that \
                 container to be able to reuse that name."
            )));
        }
        if let Some(fc) = st.containers.get_mut(&key) {
            fc.c.name = name.to_string();
        }
        Ok(())
    }

    /// Docker-shaped JSON for the fields a support archive reads first.
    async fn support_facts(&self, project: &str, since: i64) -> Result<SupportFacts> {
        let st = self.enter(Op::Support, None)?;
        let i = &st.info;
        let version = serde_json::json!({
            "Version": i.server_version, "ApiVersion": i.api_version,
            "Os": i.os, "Arch": i.arch,
        });
        let info = serde_json::json!({
            "ServerVersion": i.server_version, "Architecture": i.arch, "Driver": i.storage_driver,
            "DockerRootDir": i.root_dir, "NCPU": i.cpus, "MemTotal": i.memory_bytes,
        });
        let inspects = st
            .containers
            .values()
            .filter(|c| c.c.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|fc| {
                let c = &fc.c;
                let env: Vec<String> = fc
                    .created
                    .service
                    .environment
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let v = serde_json::json!({
                    "Id": c.id, "Name": format!("/{}", c.name),
                    "Config": { "Image": c.image, "Labels": c.labels, "Env": env },
                    "State": {
                        "Status": serde_json::to_value(c.state).unwrap_or_default(),
                        "ExitCode": c.exit_code.unwrap_or(0), "OOMKilled": c.oom_killed,
                        "Health": c.health.map(|h| serde_json::json!({ "Status": h })),
                    },
                });
                (c.name.clone(), v)
            })
            .collect();
        drop(st);
        let since_nanos = since.saturating_mul(1_000_000_000);
        let events = self
            .inner
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, e)| p.as_deref() == Some(project) && e.time_nanos >= since_nanos)
            .map(|(_, e)| {
                let action = match &e.kind {
                    EventKind::Start => "start".to_string(),
                    EventKind::Die { .. } => "die".into(),
                    EventKind::Oom => "oom".into(),
                    EventKind::Health(h) => format!(
                        "health_status: {}",
                        serde_json::to_value(h)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    ),
                    EventKind::Destroy => "destroy".into(),
                };
                serde_json::json!({
                    "Type": "container", "Action": action,
                    "Actor": { "ID": e.container_id },
                    "time": e.time_nanos / 1_000_000_000, "timeNano": e.time_nanos,
                })
            })
            .collect();
        Ok(SupportFacts {
            version,
            info,
            inspects,
            events,
        })
    }

    async fn logs(&self, id: &str, tail: u64) -> Result<Vec<String>> {
        let st = self.enter(Op::Logs, None)?;
        let key = resolve(&st, id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let logs = &st.containers[&key].logs;
        let skip = logs
            .len()
            .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
        Ok(logs[skip..].to_vec())
    }

    fn follow_logs(
        &self,
        id: &str,
        tail: Option<u64>,
        _since: Option<i64>,
        follow: bool,
    ) -> LineStream {
        // Subscribe before reading the backlog so no line falls between the two.
        let rx = self.inner.tx.subscribe();
        let (backlog, key, live) = match self.enter(Op::FollowLogs, None) {
            Err(e) => return Box::pin(stream::iter([Err(e)])),
            Ok(st) => match resolve(&st, id) {
                None => {
                    return Box::pin(stream::iter([Err(EngineError::NotFound(id.to_string()))]));
                }
                Some(key) => {
                    let logs = &st.containers[&key].logs;
                    let skip = tail.map_or(0, |t| {
                        logs.len()
                            .saturating_sub(usize::try_from(t).unwrap_or(usize::MAX))
                    });
                    let running = st.containers[&key].c.state == RunState::Running;
                    (logs[skip..].to_vec(), key, follow && running)
                }
            },
        };
        let backlog = stream::iter(backlog.into_iter().map(Ok));
        if !live {
            return Box::pin(backlog);
        }
        let tail_stream = stream::unfold(Some(rx), move |rx| {
            let key = key.clone();
            async move {
                let mut rx = rx?;
                loop {
                    match rx.recv().await {
                        Ok(Msg::Log { id, line }) if id == key => {
                            return Some((Ok(line), Some(rx)));
                        }
                        Ok(Msg::Event { event, .. })
                            if event.container_id == key
                                && matches!(
                                    event.kind,
                                    EventKind::Die { .. } | EventKind::Destroy
                                ) =>
                        {
                            return None;
                        }
                        Ok(Msg::Lost) => return Some((Err(unreachable()), None)),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Box::pin(futures_util::StreamExt::chain(backlog, tail_stream))
    }

    fn events(&self, project: &str) -> EventStream {
        let rx = self.inner.tx.subscribe();
        if let Err(e) = self.enter(Op::Events, None) {
            return Box::pin(stream::iter([Err(e)]));
        }
        let project = project.to_string();
        Box::pin(stream::unfold(Some(rx), move |rx| {
            let project = project.clone();
            async move {
                let mut rx = rx?;
                loop {
                    match rx.recv().await {
                        Ok(Msg::Event {
                            project: Some(p),
                            event,
                        }) if p == project => {
                            return Some((Ok(event), Some(rx)));
                        }
                        Ok(Msg::Lost) => return Some((Err(unreachable()), None)),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            // The daemon never drops events silently; neither may the fake.
                            return Some((
                                Err(EngineError::Other(format!(
                                    "fake event stream lagged by {n}"
                                ))),
                                None,
                            ));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        }))
    }

    async fn run_oneoff(&self, spec: &OneOff) -> Result<(i64, String)> {
        let mut st = self.enter(Op::RunOneoff, Some(format!("run_oneoff {}", spec.image)))?;
        if !st.images.contains_key(&spec.image) {
            return Err(EngineError::NotFound(spec.image.clone()));
        }
        let program = spec.entrypoint.first().cloned().unwrap_or_default();
        let (code, output) = st
            .oneoff_results
            .get(&format!("{}\0{program}", spec.image))
            .or_else(|| st.oneoff_results.get(&spec.image))
            .cloned()
            .unwrap_or_default();
        // A real one-off is a container like any other: with the project label its start,
        // die and destroy show up in the project's event stream, and so they do here.
        st.serial += 1;
        let id = fake_id(&spec.image, st.serial);
        let send = |kind: EventKind| Msg::Event {
            project: spec.labels.get(LABEL_PROJECT).cloned(),
            event: Event {
                container_id: id.clone(),
                service: spec.labels.get(LABEL_SERVICE).cloned(),
                kind,
                time_nanos: self.now_nanos(),
            },
        };
        for kind in [
            EventKind::Start,
            EventKind::Die {
                exit_code: Some(code),
            },
            EventKind::Destroy,
        ] {
            self.send(&st, send(kind));
        }
        Ok((code, output))
    }

    /// Answers as the container's healthcheck would now: its behaviour decides. Not recorded
    /// in `calls()`: a probe changes nothing.
    async fn exec(&self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<(i64, String)> {
        let st = self.enter(Op::Exec, None)?;
        let fc = st
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if fc.c.state != RunState::Running {
            return Err(EngineError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        let up_for = fc.started.map(|t| t.elapsed()).unwrap_or_default();
        Ok(match Self::behavior_for(&st, &fc.c) {
            Behavior::HealthyAfter(d) if up_for >= d => (0, String::new()),
            Behavior::NeverHealthy { probe_output } => (1, probe_output),
            _ => (1, "fake: not ready".to_string()),
        })
    }

    fn export_images(&self, references: &[String]) -> ByteStream {
        let result = (|| {
            let st = self.enter(Op::Export, None)?;
            // One entry per image, with every requested reference that names it (as Docker).
            let mut by_id: Vec<(Vec<String>, String)> = Vec::new();
            for r in references {
                let info = st
                    .images
                    .get(r)
                    .ok_or_else(|| EngineError::NotFound(r.clone()))?;
                match by_id.iter_mut().find(|(_, id)| *id == info.id) {
                    Some((tags, _)) => tags.push(r.clone()),
                    None => by_id.push((vec![r.clone()], info.id.clone())),
                }
            }
            let mut images = Vec::new();
            for (tags, id) in &by_id {
                let content = st.contents.get(id).ok_or_else(|| {
                    EngineError::Other(format!(
                        "the fake cannot export `{}`: it was added without content",
                        tags[0]
                    ))
                })?;
                images.push((tags.clone(), content));
            }
            save_tar(&images).map_err(|e| EngineError::Other(e.to_string()))
        })();
        // Delivered in pieces, as a socket would.
        let items: Vec<Result<bytes::Bytes>> = match result {
            Ok(tar) => tar
                .chunks(64 * 1024)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        Box::pin(stream::iter(items))
    }

    async fn import_images(&self, mut tar: ByteStream) -> Result<Vec<String>> {
        use futures_util::StreamExt;
        drop(self.enter(Op::Import, Some("import_images".to_string()))?);
        let mut buf = Vec::new();
        while let Some(piece) = tar.next().await {
            buf.extend_from_slice(&piece?);
        }
        let images = load_tar(&buf)?;
        let mut st = self.enter(Op::Import, None)?;
        let mut out = Vec::new();
        for (tags, (config, layers)) in images {
            let info = image_info(&config, &layers)?;
            for t in &tags {
                st.images.insert(t.clone(), info.clone());
                out.push(format!("Loaded image: {t}"));
            }
            st.contents.insert(info.id.clone(), (config, layers));
        }
        Ok(out)
    }

    fn pull_image(
        &self,
        reference: &str,
        platform: Option<&str>,
        auth: Option<super::RegistryAuth>,
    ) -> super::TransferStream {
        let reference = reference.to_string();
        let platform = platform.map(str::to_string);
        let result = (|| {
            let mut st = self.enter(Op::Pull, Some(format!("pull {reference}")))?;
            let host = registry_host(&reference).to_string();
            // A registry the fake knows nothing of is not listening, as a free port is not.
            if !st.auth.contains_key(&host) && !st.registry.keys().any(|k| registry_host(k) == host)
            {
                return Err(EngineError::Registry {
                    status: Some(500),
                    message: format!(
                        "Get \"http://{host}/v2/\": dial tcp {host}: connect: connection refused"
                    ),
                });
            }
            check_auth(&st, &reference, &auth)?;
            let variants =
                st.registry
                    .get(&reference)
                    .cloned()
                    .ok_or_else(|| EngineError::Registry {
                        status: Some(404),
                        message: format!(
                            "manifest for {reference} not found: manifest unknown: manifest unknown"
                        ),
                    })?;
            let want = platform
                .as_deref()
                .and_then(|p| p.split('/').nth(1))
                .map(str::to_string)
                .unwrap_or_else(|| match st.info.arch.as_str() {
                    "aarch64" => "arm64".into(),
                    _ => "amd64".into(),
                });
            let info = variants
                .iter()
                .find(|(a, _)| *a == want)
                .map(|(_, i)| i.clone())
                .ok_or_else(|| EngineError::Registry {
                    status: None,
                    message: format!(
                        "no matching manifest for linux/{want} in the manifest list entries"
                    ),
                })?;
            st.images.insert(reference.clone(), info.clone());
            Ok::<ImageInfo, EngineError>(info)
        })();
        let events: Vec<Result<super::TransferEvent>> = match result {
            Ok(info) => {
                let layer = &info.id.trim_start_matches("sha256:")[..12.min(info.id.len())];
                vec![
                    Ok(transfer(Some(layer), "Pulling fs layer", None, None)),
                    Ok(transfer(
                        Some(layer),
                        "Downloading",
                        Some(info.size / 2),
                        Some(info.size),
                    )),
                    Ok(transfer(
                        Some(layer),
                        "Downloading",
                        Some(info.size),
                        Some(info.size),
                    )),
                    Ok(transfer(Some(layer), "Pull complete", None, None)),
                    Ok(transfer(
                        None,
                        &format!("Status: Downloaded newer image for {reference}"),
                        None,
                        None,
                    )),
                ]
            }
            // A fault drops the connection after the first progress message.
            Err(e) => vec![
                Ok(transfer(
                    Some("0123456789ab"),
                    "Pulling fs layer",
                    None,
                    None,
                )),
                Err(e),
            ],
        };
        Box::pin(stream::iter(events))
    }

    fn push_image(
        &self,
        reference: &str,
        auth: Option<super::RegistryAuth>,
    ) -> super::TransferStream {
        let reference = reference.to_string();
        let result = (|| {
            let mut st = self.enter(Op::Push, Some(format!("push {reference}")))?;
            check_auth(&st, &reference, &auth)?;
            let info = st
                .images
                .get(&reference)
                .cloned()
                .ok_or_else(|| EngineError::Registry {
                    status: Some(404),
                    message: format!("An image does not exist locally with the tag: {reference}"),
                })?;
            let variants = st.registry.entry(reference.clone()).or_default();
            variants.retain(|(a, _)| *a != info.arch);
            variants.push((info.arch.clone(), info.clone()));
            Ok(info)
        })();
        let events: Vec<Result<super::TransferEvent>> = match result {
            Ok(info) => {
                // Docker's closing message: the tag, the manifest digest, its size.
                let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
                let digest = hex::encode(Sha256::digest(format!("{}{}", info.id, info.arch)));
                vec![
                    Ok(transfer(None, "Preparing", None, None)),
                    Ok(transfer(None, "Pushing", Some(info.size), Some(info.size))),
                    Ok(transfer(None, "Pushed", None, None)),
                    Ok(transfer(
                        None,
                        &format!("{tag}: digest: sha256:{digest} size: 1573"),
                        None,
                        None,
                    )),
                ]
            }
            Err(e) => vec![Ok(transfer(None, "Preparing", None, None)), Err(e)],
        };
        Box::pin(stream::iter(events))
    }

    async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let mut st = self.enter(Op::Tag, Some(format!("tag {source} {target}")))?;
        // Docker tags by reference or by image id alike.
        let info = st
            .images
            .get(source)
            .or_else(|| st.images.values().find(|i| i.id == source))
            .cloned()
            .ok_or_else(|| EngineError::NotFound(source.to_string()))?;
        st.images.insert(target.to_string(), info);
        Ok(())
    }

    async fn registry_platforms(
        &self,
        reference: &str,
        auth: Option<super::RegistryAuth>,
    ) -> Result<Vec<String>> {
        let st = self.enter(Op::RegistryPlatforms, None)?;
        check_auth(&st, reference, &auth)?;
        let variants = st
            .registry
            .get(reference)
            .ok_or_else(|| EngineError::Registry {
                status: Some(404),
                message: format!("{reference}: manifest unknown"),
            })?;
        Ok(variants.iter().map(|(a, _)| format!("linux/{a}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Port;
    use futures_util::StreamExt;

    const IMAGE: &str = "cdq-local/redis:2-amd64";

    fn image() -> ImageInfo {
        ImageInfo {
            id: "sha256:1".into(),
            arch: "amd64".into(),
            os: "linux".into(),
            user: "redis".into(),
            size: 1,
        }
    }

    fn service(name: &str, hc: Option<Healthcheck>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: IMAGE.into(),
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            binds: vec![],
            ports: vec![],
            depends_on: BTreeMap::new(),
            healthcheck: hc,
            restart: None,
            ulimits: BTreeMap::new(),
            user: None,
            working_dir: None,
            hostname: None,
            labels: BTreeMap::new(),
            stop_grace_period: None,
            security_opt: vec![],
        }
    }

    fn hc(interval: u64, retries: u32, start_period: u64) -> Option<Healthcheck> {
        Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_secs(start_period),
        })
    }

    fn spec<'a>(svc: &'a ServiceSpec) -> CreateSpec<'a> {
        CreateSpec {
            name: format!("p-{}-1", svc.name),
            service: svc,
            labels: BTreeMap::from([
                (LABEL_PROJECT.to_string(), "p".to_string()),
                (LABEL_SERVICE.to_string(), svc.name.clone()),
            ]),
            network: "p_default".into(),
            aliases: vec![svc.name.clone()],
        }
    }

    async fn engine() -> FakeEngine {
        let e = FakeEngine::new();
        e.add_image(IMAGE, image());
        e.ensure_network("p_default", &BTreeMap::new())
            .await
            .unwrap();
        e.clear_calls();
        e
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_at_the_first_probe_after_the_scripted_delay() {
        let e = engine().await;
        e.behave("redis", Behavior::HealthyAfter(Duration::from_secs(25)));
        let svc = service("redis", hc(10, 3, 0));
        let mut events = e.events("p");
        let id = e.create_container(&spec(&svc)).await.unwrap();
        let t0 = Instant::now();
        e.start_container(&id).await.unwrap();
        assert_eq!(events.next().await.unwrap().unwrap().kind, EventKind::Start);
        let c = e.inspect_container(&id).await.unwrap();
        assert_eq!(
            (c.state, c.health),
            (RunState::Running, Some(Health::Starting))
        );
        let ev = events.next().await.unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::Health(Health::Healthy));
        assert_eq!(ev.service.as_deref(), Some("redis"));
        // Probes at 10, 20, 30 s: the first at or after 25 s passes.
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
        let c = e.inspect_container(&id).await.unwrap();
        assert_eq!(c.last_probe.as_deref(), Some("ok"));
    }

    #[tokio::test(start_paused = true)]
    async fn never_healthy_goes_unhealthy_after_retries_outside_the_start_period() {
        let e = engine().await;
        e.behave(
            "redis",
            Behavior::NeverHealthy {
                probe_output: "connection refused".into(),
            },
        );
        let svc = service("redis", hc(1, 3, 5));
        let mut events = e.events("p");
        let id = e.create_container(&spec(&svc)).await.unwrap();
        let t0 = Instant::now();
        e.start_container(&id).await.unwrap();
        events.next().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = e.inspect_container(&id).await.unwrap();
        assert_eq!(c.health, Some(Health::Starting));
        assert_eq!(c.last_probe.as_deref(), Some("connection refused"));
        let ev = events.next().await.unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::Health(Health::Unhealthy));
        // Probes at 1..5 s fall in the start period; 6, 7, 8 s count.
        assert_eq!(t0.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn exit_and_oom_emit_die_with_the_code() {
        let e = engine().await;
        e.behave("a", Behavior::ExitAfter(Duration::from_millis(300), 3));
        e.behave("b", Behavior::OomAfter(Duration::from_secs(1)));
        let (a, b) = (service("a", None), service("b", None));
        let mut events = e.events("p");
        let ia = e.create_container(&spec(&a)).await.unwrap();
        let ib = e.create_container(&spec(&b)).await.unwrap();
        e.start_container(&ia).await.unwrap();
        e.start_container(&ib).await.unwrap();
        let kinds: Vec<(String, EventKind)> = events
            .by_ref()
            .take(5)
            .map(|r| {
                let ev = r.unwrap();
                (ev.service.unwrap(), ev.kind)
            })
            .collect()
            .await;
        assert_eq!(
            kinds,
            vec![
                ("a".into(), EventKind::Start),
                ("b".into(), EventKind::Start),
                ("a".into(), EventKind::Die { exit_code: Some(3) }),
                ("b".into(), EventKind::Oom),
                (
                    "b".into(),
                    EventKind::Die {
                        exit_code: Some(137)
                    }
                ),
            ]
        );
        let c = e.inspect_container(&ia).await.unwrap();
        assert_eq!((c.state, c.exit_code), (RunState::Exited, Some(3)));
        assert_eq!(
            e.logs(&ia, 1).await.unwrap(),
            vec!["fake: exiting with code 3"]
        );
        assert!(e.inspect_container(&ib).await.unwrap().oom_killed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_host_port_fails_the_start_like_the_daemon() {
        let e = engine().await;
        let mut a = service("a", None);
        a.ports.push(Port {
            host_ip: None,
            host_port: 16379,
            container_port: 6379,
            protocol: "tcp".into(),
        });
        let mut b = a.clone();
        b.name = "b".into();
        let ia = e.create_container(&spec(&a)).await.unwrap();
        let ib = e.create_container(&spec(&b)).await.unwrap();
        assert!(
            e.inspect_container(&ia).await.unwrap().ports.is_empty(),
            "published on start"
        );
        e.start_container(&ia).await.unwrap();
        assert_eq!(
            e.inspect_container(&ia).await.unwrap().ports[0].host_ip,
            "0.0.0.0"
        );
        match e.start_container(&ib).await {
            Err(EngineError::Api {
                status: 500,
                message,
            }) => {
                assert!(message.contains("port is already allocated"), "{message}")
            }
            other => panic!("expected a port conflict, got {other:?}"),
        }
        // Freed on stop.
        e.stop_container(&ia, Duration::from_secs(1)).await.unwrap();
        e.start_container(&ib).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn calls_faults_and_a_lost_daemon() {
        let e = engine().await;
        let svc = service("redis", None);
        let id = e.create_container(&spec(&svc)).await.unwrap();
        e.fail_next(
            Op::Start,
            EngineError::Api {
                status: 500,
                message: "boom".into(),
            },
        );
        assert!(matches!(
            e.start_container(&id).await,
            Err(EngineError::Api { .. })
        ));
        e.start_container(&id).await.unwrap();
        assert_eq!(
            e.calls(),
            vec![
                "create p-redis-1".to_string(),
                format!("start {id}"),
                format!("start {id}")
            ]
        );
        let mut events = e.events("p");
        e.set_unreachable(true);
        assert!(matches!(
            events.next().await,
            Some(Err(EngineError::Unreachable { .. }))
        ));
        assert!(events.next().await.is_none());
        assert!(matches!(
            e.list_containers("p").await,
            Err(EngineError::Unreachable { .. })
        ));
        e.set_unreachable(false);
        assert_eq!(e.list_containers("p").await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn follow_logs_streams_pushed_lines_until_the_container_dies() {
        let e = engine().await;
        let svc = service("redis", None);
        let id = e.create_container(&spec(&svc)).await.unwrap();
        e.start_container(&id).await.unwrap();
        let lines = e.follow_logs(&id, Some(1), None, true);
        e.push_log("p-redis-1", "ready to accept connections");
        e.stop_container(&id, Duration::from_secs(1)).await.unwrap();
        let got: Vec<String> = lines.map(|l| l.unwrap()).collect().await;
        assert_eq!(
            got,
            vec!["fake: p-redis-1 started", "ready to accept connections"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn oneoff_events_reach_the_project_stream() {
        let e = engine().await;
        e.set_oneoff_result(IMAGE, 0, "chowned");
        let mut events = e.events("p");
        let out = e
            .run_oneoff(&OneOff {
                image: IMAGE.into(),
                user: "0".into(),
                entrypoint: vec!["chown".into()],
                binds: vec![],
                labels: BTreeMap::from([(LABEL_PROJECT.to_string(), "p".to_string())]),
                ulimits: vec![],
            })
            .await
            .unwrap();
        assert_eq!(out, (0, "chowned".to_string()));
        let kinds: Vec<EventKind> = events
            .by_ref()
            .take(3)
            .map(|r| r.unwrap().kind)
            .collect()
            .await;
        assert_eq!(
            kinds,
            vec![
                EventKind::Start,
                EventKind::Die { exit_code: Some(0) },
                EventKind::Destroy
            ]
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_709_251_200_000_000_005),
            "2024-03-01T00:00:00.000000005Z"
        );
    }
}
