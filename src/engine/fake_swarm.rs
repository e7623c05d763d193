//! A test double: an in-memory [`SwarmEngine`], a Swarm manager as far as cdq can tell,
//! driven by tokio's clock so `ops::swarm` runs against it in milliseconds with
//! `#[tokio::test(start_paused = true)]`. Compiled into the library like the single-host
//! [`FakeEngine`](super::fake::FakeEngine), so integration tests share it; the contract
//! tests (`tests/swarm_contract.rs`) hold it to a real manager's behaviour.
//!
//! What it models, because cdq branches on it or reports it:
//! - nodes with a hostname, role, availability, `Ready`/`Down` state, labels, architecture
//!   and the images present on each;
//! - services with their spec and replica count; one task per slot, placed by the placement
//!   constraints (`node.labels.K`, `node.hostname`, `node.role`, `node.id`,
//!   `node.platform.arch|os`, `==`/`!=`, values compared case-insensitively as swarmkit
//!   does) onto a Ready, active node, spreading a service's tasks; a task no node can take
//!   stays `pending` with swarmkit's `no suitable node (...)` error;
//! - a task's life on the clock: `assigned`, then its container starts ([`START_LAG`]): with
//!   a healthcheck `starting` until the first passing probe (probes every `interval`, the
//!   first one `interval` after start, failures within `start_period` not counted), then
//!   `running`; without one `running` at once. A task whose node lacks the image is
//!   `rejected` (`No such image: …`); one that exits is `failed` (`task: non-zero exit
//!   (N)`), or `complete` (`finished`) on 0. After `retries` counted failed probes Swarm
//!   stops the container, and the task ends by the code the process exits with: no error
//!   says "unhealthy" (measured on Docker 20.10: the kit's redis ends `complete`). An ended
//!   task is kept with desired `shutdown` (at most [`HISTORY`] per slot, as Swarm's task
//!   history) and its replacement is created at once with desired `ready` (`prepared`),
//!   released to `running` after the restart delay cdq's specs set ([`RESTART_DELAY`]);
//! - a node taken down ([`FakeSwarm::node_down`]): its tasks keep their last state
//!   (`running`, as a real manager shows it) with desired `shutdown`, replacements are queued
//!   (pending when pinned to that node); back up ([`FakeSwarm::node_up`]) its old tasks are
//!   shut down and pending tasks placed;
//! - updates: the version is checked (`update out of sequence`); a changed task spec
//!   replaces the tasks shortly after the call returns ([`UPDATE_LAG`]: Swarm's updater runs
//!   asynchronously), an unchanged one leaves them;
//! - removal: the service goes at once, its tasks leave over [`STOP_LAG`]; a network whose
//!   tasks are leaving accepts removal and disappears once they are gone; a network or a
//!   config/secret a live service uses is refused;
//! - config and secret objects and overlay networks with labels; service logs (lines each
//!   task writes when it starts, scripted per service, plus [`FakeSwarm::push_log`]).
//!
//! What it does not: rolling updates one slot at a time (every slot is replaced together),
//! global services, the routing mesh, ports, probe timeouts.
//!
//! Must not: be used outside tests, or grow behaviour a real manager does not have.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::swarm::{Node, NodeState, ServiceCreate, SwarmEngine, SwarmService, Task};
use super::{EngineError, LABEL_PROJECT, LABEL_SERVICE, Result};
use crate::swarm::stack::{Health, Object, ServiceDef};

mod life;

/// The restart delay `docker/swarm.rs` puts in every spec (`restart_policy.delay`).
pub const RESTART_DELAY: Duration = Duration::from_secs(5);
/// From a task's assignment to its container's start (image present).
pub const START_LAG: Duration = Duration::from_millis(500);
/// From `update_service` returning to the updater replacing the tasks.
pub const UPDATE_LAG: Duration = Duration::from_millis(100);
/// From a task's shutdown to its leaving the task list and its network.
pub const STOP_LAG: Duration = Duration::from_secs(1);
/// Ended tasks kept per slot (Swarm's default `TaskHistoryRetentionLimit`).
pub const HISTORY: usize = 5;
/// Docker's healthcheck defaults for zero values.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u64 = 3;

const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// What a fake task's container does once started, per service (its `io.cdq.service`
/// label, or its name when it has none). Default: `HealthyAfter(Duration::ZERO)`, healthy
/// at the first probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskBehavior {
    /// Probes fail until this long after start, then pass.
    HealthyAfter(Duration),
    /// Every probe fails: after `retries` counted probes Swarm stops the container, whose
    /// process exits with `stop_exit` (0 for redis on SIGTERM, 143 for a JVM), and starts
    /// another, again and again. Without a healthcheck it just runs.
    NeverHealthy { stop_exit: i64 },
    /// The container exits with this code this long after start.
    ExitAfter(Duration, i64),
}

/// The operations faults can be injected into with [`FakeSwarm::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwarmOp {
    Nodes,
    Services,
    Tasks,
    CreateService,
    UpdateService,
    RemoveService,
    Objects,
    CreateObject,
    RemoveObject,
    EnsureOverlay,
    Overlays,
    RemoveOverlay,
    ServiceLogs,
}

struct FakeNode {
    node: Node,
    images: BTreeSet<String>,
}

struct FakeService {
    svc: SwarmService,
    def: ServiceDef,
    network: String,
    object_ids: BTreeMap<String, String>,
    /// Everything the tasks run from: a change replaces them.
    task_spec: String,
}

struct FakeTask {
    t: Task,
    key: String,
    network: String,
    image: String,
    health: Option<Health>,
    /// When its container starts (set on assignment).
    starts_at: Option<Instant>,
    healthy_at: Option<Instant>,
    /// When its container exits, and the code.
    ends_at: Option<(Instant, i64)>,
    /// When it leaves the list (after a shutdown).
    gone_at: Option<Instant>,
}

impl FakeTask {
    fn terminal(&self) -> bool {
        matches!(
            self.t.state.as_str(),
            "complete" | "failed" | "rejected" | "shutdown" | "orphaned" | "remove"
        )
    }
}

#[derive(Debug, Clone)]
enum Timer {
    /// A replacement task (by id) may start: its desired state becomes `running`.
    Release(String),
    /// The updater replaces the service's tasks.
    Update(String),
}

struct FakeObject {
    name: String,
    secret: bool,
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    nodes: Vec<FakeNode>,
    services: Vec<FakeService>,
    tasks: Vec<FakeTask>,
    timers: Vec<(Instant, Timer)>,
    objects: BTreeMap<String, FakeObject>,
    /// name -> (labels, removal accepted).
    networks: BTreeMap<String, (BTreeMap<String, String>, bool)>,
    behaviors: HashMap<String, TaskBehavior>,
    start_lines: HashMap<String, Vec<String>>,
    /// Service id -> its lines, oldest first.
    logs: HashMap<String, Vec<String>>,
    faults: HashMap<SwarmOp, VecDeque<EngineError>>,
    calls: Vec<String>,
    not_manager: bool,
    serial: u64,
}

/// The in-memory manager. Cheap to clone; clones share one swarm.
#[derive(Clone, Default)]
pub struct FakeSwarm {
    state: Arc<Mutex<State>>,
}

impl FakeSwarm {
    /// A swarm with no nodes, services, objects or networks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Ready, active x86_64 node (Docker 20.10.24, 8 GiB, no labels, no images);
    /// returns its id.
    pub fn add_node(&self, hostname: &str, manager: bool) -> String {
        let mut st = self.lock();
        let id = st.next_id("node");
        st.nodes.push(FakeNode {
            node: Node {
                id: id.clone(),
                hostname: hostname.to_string(),
                state: NodeState::Ready,
                availability: "active".into(),
                manager,
                labels: BTreeMap::new(),
                engine_version: "20.10.24".into(),
                arch: "x86_64".into(),
                memory_bytes: 8 << 30,
            },
            images: BTreeSet::new(),
        });
        id
    }

    /// `docker node update --label-add key=value HOST`.
    pub fn label_node(&self, hostname: &str, key: &str, value: &str) {
        self.with_node(hostname, |n| {
            n.node.labels.insert(key.into(), value.into());
        });
    }

    /// `docker node update --label-rm key HOST`.
    pub fn unlabel_node(&self, hostname: &str, key: &str) {
        self.with_node(hostname, |n| {
            n.node.labels.remove(key);
        });
    }

    /// `active`, `pause` or `drain`.
    pub fn set_availability(&self, hostname: &str, availability: &str) {
        self.with_node(hostname, |n| n.node.availability = availability.into());
    }

    /// The architecture the node reports (Docker's spelling: `aarch64`).
    pub fn set_arch(&self, hostname: &str, arch: &str) {
        self.with_node(hostname, |n| n.node.arch = arch.into());
    }

    /// Makes `image` present on the node (as `docker load` there).
    pub fn add_image(&self, hostname: &str, image: &str) {
        self.with_node(hostname, |n| {
            n.images.insert(image.into());
        });
    }

    /// Makes `image` present on every node.
    pub fn add_image_everywhere(&self, image: &str) {
        let mut st = self.lock();
        for n in &mut st.nodes {
            n.images.insert(image.into());
        }
    }

    /// The node stops answering (its engine or host died): the manager marks it `Down`,
    /// gives up on its tasks (desired `shutdown`, last state kept) and queues replacements.
    pub fn node_down(&self, hostname: &str) {
        let mut st = self.lock();
        let now = Instant::now();
        st.advance(now);
        let Some(id) = st.node_id(hostname) else {
            panic!("fake swarm: no node `{hostname}`")
        };
        st.node_mut(&id).node.state = NodeState::Down;
        let mut restarts = Vec::new();
        for t in &mut st.tasks {
            if t.t.node_id == id && t.t.wants_running() {
                t.t.desired = "shutdown".into();
                restarts.push((t.t.service_id.clone(), t.t.slot));
            }
        }
        for (s, slot) in restarts {
            st.replace(&s, slot, now);
        }
    }

    /// The node is back: Ready; the tasks the manager gave up on are shut down there, and
    /// pending tasks it can take are placed.
    pub fn node_up(&self, hostname: &str) {
        let mut st = self.lock();
        let now = Instant::now();
        st.advance(now);
        let Some(id) = st.node_id(hostname) else {
            panic!("fake swarm: no node `{hostname}`")
        };
        st.node_mut(&id).node.state = NodeState::Ready;
        for t in &mut st.tasks {
            if t.t.node_id == id && !t.t.wants_running() && !t.terminal() {
                t.t.state = "shutdown".into();
                t.t.message = "shutdown".into();
            }
        }
        st.schedule_pending(now);
    }

    /// Scripts the tasks of a service (`io.cdq.service` label, else its name) from their
    /// next start.
    pub fn behave(&self, service: &str, b: TaskBehavior) {
        self.lock().behaviors.insert(service.into(), b);
    }

    /// Lines every task of the service writes when its container starts.
    pub fn start_lines(&self, service: &str, lines: &[&str]) {
        self.lock().start_lines.insert(
            service.into(),
            lines.iter().map(|l| (*l).to_string()).collect(),
        );
    }

    /// Appends a line to the logs of the service (as one of its tasks printed it).
    pub fn push_log(&self, service: &str, line: &str) {
        let mut st = self.lock();
        let ids: Vec<String> = st
            .services
            .iter()
            .filter(|s| key_of(&s.svc) == service)
            .map(|s| s.svc.id.clone())
            .collect();
        for id in ids {
            st.logs.entry(id).or_default().push(line.into());
        }
    }

    /// The container of the service's task in `slot` exits now with `code` (its process
    /// crashed): the task ends as Swarm reports it and is replaced after the delay.
    pub fn fail_task(&self, service: &str, slot: u64, code: i64) {
        let mut st = self.lock();
        let now = Instant::now();
        st.advance(now);
        let i = st
            .tasks
            .iter()
            .position(|t| {
                t.key == service
                    && t.t.slot == slot
                    && t.t.wants_running()
                    && matches!(t.t.state.as_str(), "starting" | "running")
            })
            .unwrap_or_else(|| panic!("fake swarm: no started task {service}.{slot}"));
        st.end(i, now, code);
    }

    /// The engine leaves the swarm: every call fails as on a daemon that is not a manager.
    pub fn leave_swarm(&self) {
        self.lock().not_manager = true;
    }

    /// The next call of `op` fails with `error` (queued: several calls fail in order).
    pub fn fail_next(&self, op: SwarmOp, error: EngineError) {
        self.lock().faults.entry(op).or_default().push_back(error);
    }

    /// Every mutating call that reached the manager, in order: `create_service NAME`,
    /// `update_service NAME`, `remove_service NAME`, `create_object NAME`,
    /// `remove_object NAME`, `ensure_overlay NAME`, `remove_overlay NAME`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The definition service `name` (full Swarm name) was last created or updated with.
    pub fn service_def(&self, name: &str) -> Option<ServiceDef> {
        let st = self.lock();
        st.services
            .iter()
            .find(|s| s.svc.name == name)
            .map(|s| s.def.clone())
    }

    /// The (slot, node hostname) of every task of the service (label or name) that is
    /// desired running and `running` now, on a Ready node.
    pub fn running(&self, service: &str) -> Vec<(u64, String)> {
        let mut st = self.lock();
        st.advance(Instant::now());
        let mut out: Vec<(u64, String)> = st
            .tasks
            .iter()
            .filter(|t| t.key == service && t.t.wants_running() && t.t.state == "running")
            .filter_map(|t| {
                let n = st.nodes.iter().find(|n| n.node.id == t.t.node_id)?;
                (n.node.state == NodeState::Ready).then(|| (t.t.slot, n.node.hostname.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// Names of every service, whoever made it.
    pub fn service_names(&self) -> Vec<String> {
        self.lock()
            .services
            .iter()
            .map(|s| s.svc.name.clone())
            .collect()
    }

    /// Names of every config and secret object, whoever made it.
    pub fn object_names(&self) -> Vec<String> {
        self.lock()
            .objects
            .values()
            .map(|o| o.name.clone())
            .collect()
    }

    /// Names of every network, whoever made it, until it is really deleted.
    pub fn network_names(&self) -> Vec<String> {
        let mut st = self.lock();
        st.advance(Instant::now());
        st.networks.keys().cloned().collect()
    }

    fn with_node(&self, hostname: &str, f: impl FnOnce(&mut FakeNode)) {
        let mut st = self.lock();
        let Some(id) = st.node_id(hostname) else {
            panic!("fake swarm: no node `{hostname}`")
        };
        f(st.node_mut(&id));
        st.schedule_pending(Instant::now());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread must not hide the real failure behind a poison error.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manager's answer to a call: faults and a non-manager first, then the swarm
    /// advanced to now.
    fn call(&self, op: SwarmOp) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        if st.not_manager {
            return Err(EngineError::Api {
                status: 503,
                message: NOT_MANAGER.into(),
            });
        }
        if let Some(e) = st.faults.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        st.advance(Instant::now());
        Ok(st)
    }
}

fn key_of(s: &SwarmService) -> String {
    s.labels
        .get(LABEL_SERVICE)
        .cloned()
        .unwrap_or_else(|| s.name.clone())
}

fn bad_request(message: String) -> EngineError {
    EngineError::Api {
        status: 400,
        message: format!("rpc error: code = InvalidArgument desc = {message}"),
    }
}

fn task_spec(spec: &ServiceCreate<'_>) -> String {
    format!(
        "{:?}|{:?}|{}|{:?}",
        spec.def, spec.labels, spec.network, spec.object_ids
    )
}

impl SwarmEngine for FakeSwarm {
    async fn nodes(&self) -> Result<Vec<Node>> {
        let st = self.call(SwarmOp::Nodes)?;
        Ok(st.nodes.iter().map(|n| n.node.clone()).collect())
    }

    async fn services(&self, project: &str) -> Result<Vec<SwarmService>> {
        let st = self.call(SwarmOp::Services)?;
        Ok(st
            .services
            .iter()
            .filter(|s| s.svc.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|s| s.svc.clone())
            .collect())
    }

    async fn tasks(&self, service_ids: &[String]) -> Result<Vec<Task>> {
        let st = self.call(SwarmOp::Tasks)?;
        Ok(st
            .tasks
            .iter()
            .filter(|t| service_ids.contains(&t.t.service_id))
            .map(|t| t.t.clone())
            .collect())
    }

    async fn create_service(&self, spec: &ServiceCreate<'_>) -> Result<String> {
        let mut st = self.call(SwarmOp::CreateService)?;
        st.calls.push(format!("create_service {}", spec.name));
        if st.services.iter().any(|s| s.svc.name == spec.name) {
            return Err(EngineError::Conflict(format!(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                spec.name
            )));
        }
        st.check_spec(spec)?;
        let id = st.next_id("svc");
        let serial = st.serial;
        st.services.push(FakeService {
            svc: SwarmService {
                id: id.clone(),
                name: spec.name.clone(),
                version: serial,
                labels: spec.labels.clone(),
                replicas: spec.def.replicas,
            },
            def: spec.def.clone(),
            network: spec.network.clone(),
            object_ids: spec.object_ids.clone(),
            task_spec: task_spec(spec),
        });
        let now = Instant::now();
        for slot in 1..=spec.def.replicas {
            st.new_task(&id, slot, "running", now);
        }
        Ok(id)
    }

    async fn update_service(&self, id: &str, version: u64, spec: &ServiceCreate<'_>) -> Result<()> {
        let mut st = self.call(SwarmOp::UpdateService)?;
        st.calls.push(format!("update_service {}", spec.name));
        let Some(current) = st.services.iter().find(|s| s.svc.id == id) else {
            return Err(EngineError::NotFound(spec.name.clone()));
        };
        if current.svc.version != version {
            return Err(EngineError::Api {
                status: 500,
                message: "rpc error: code = Unknown desc = update out of sequence".into(),
            });
        }
        st.check_spec(spec)?;
        st.serial += 1;
        let serial = st.serial;
        let s = st
            .services
            .iter_mut()
            .find(|s| s.svc.id == id)
            .expect("found above");
        s.svc.version = serial;
        s.svc.name = spec.name.clone();
        s.svc.labels = spec.labels.clone();
        s.svc.replicas = spec.def.replicas;
        s.def = spec.def.clone();
        s.network = spec.network.clone();
        s.object_ids = spec.object_ids.clone();
        let new_spec = task_spec(spec);
        if s.task_spec != new_spec {
            s.task_spec = new_spec;
            st.timers
                .push((Instant::now() + UPDATE_LAG, Timer::Update(id.to_string())));
        }
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> Result<()> {
        let mut st = self.call(SwarmOp::RemoveService)?;
        let Some(i) = st.services.iter().position(|s| s.svc.id == id) else {
            // As the Docker implementation: a service already gone is fine.
            return Ok(());
        };
        let s = st.services.remove(i);
        st.calls.push(format!("remove_service {}", s.svc.name));
        let gone = Instant::now() + STOP_LAG;
        for t in &mut st.tasks {
            if t.t.service_id == id {
                t.t.desired = "shutdown".into();
                t.ends_at = None;
                t.healthy_at = None;
                t.gone_at = Some(gone);
            }
        }
        st.logs.remove(id);
        Ok(())
    }

    async fn objects(&self, project: &str) -> Result<Vec<(String, String, bool)>> {
        let st = self.call(SwarmOp::Objects)?;
        Ok(st
            .objects
            .iter()
            .filter(|(_, o)| o.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|(id, o)| (o.name.clone(), id.clone(), o.secret))
            .collect())
    }

    async fn create_object(&self, o: &Object, labels: &BTreeMap<String, String>) -> Result<String> {
        let mut st = self.call(SwarmOp::CreateObject)?;
        st.calls.push(format!("create_object {}", o.name));
        if st
            .objects
            .values()
            .any(|x| x.name == o.name && x.secret == o.secret)
        {
            let kind = if o.secret { "secret" } else { "config" };
            return Err(EngineError::Conflict(format!(
                "rpc error: code = AlreadyExists desc = {kind} {} already exists",
                o.name
            )));
        }
        let id = st.next_id(if o.secret { "sec" } else { "cfg" });
        st.objects.insert(
            id.clone(),
            FakeObject {
                name: o.name.clone(),
                secret: o.secret,
                labels: labels.clone(),
            },
        );
        Ok(id)
    }

    async fn remove_object(&self, id: &str, secret: bool) -> Result<()> {
        let mut st = self.call(SwarmOp::RemoveObject)?;
        let Some(o) = st.objects.get(id).filter(|o| o.secret == secret) else {
            return Ok(());
        };
        let name = o.name.clone();
        st.calls.push(format!("remove_object {name}"));
        if let Some(user) = st
            .services
            .iter()
            .find(|s| s.object_ids.get(&name) == Some(&id.to_string()))
        {
            let kind = if secret { "secret" } else { "config" };
            return Err(bad_request(format!(
                "{kind} '{name}' is in use by the following service: {}",
                user.svc.name
            )));
        }
        st.objects.remove(id);
        Ok(())
    }

    async fn ensure_overlay(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        let mut st = self.call(SwarmOp::EnsureOverlay)?;
        st.calls.push(format!("ensure_overlay {name}"));
        if st.networks.contains_key(name) {
            return Ok(false);
        }
        st.networks
            .insert(name.to_string(), (labels.clone(), false));
        Ok(true)
    }

    async fn overlays(&self, project: &str) -> Result<Vec<String>> {
        let st = self.call(SwarmOp::Overlays)?;
        Ok(st
            .networks
            .iter()
            .filter(|(_, (l, _))| l.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn remove_overlay(&self, name: &str) -> Result<()> {
        let mut st = self.call(SwarmOp::RemoveOverlay)?;
        if !st.networks.contains_key(name) {
            return Ok(());
        }
        st.calls.push(format!("remove_overlay {name}"));
        if let Some(s) = st.services.iter().find(|s| s.network == name) {
            return Err(EngineError::Conflict(format!(
                "rpc error: code = FailedPrecondition desc = network {name} is in use by service {}",
                s.svc.id
            )));
        }
        st.networks.get_mut(name).expect("checked").1 = true;
        st.drop_removed_networks(name);
        Ok(())
    }

    async fn service_logs(&self, id: &str, tail: u64) -> Result<Vec<String>> {
        let st = self.call(SwarmOp::ServiceLogs)?;
        if !st.services.iter().any(|s| s.svc.id == id) {
            return Err(EngineError::NotFound(id.to_string()));
        }
        let lines = st.logs.get(id).cloned().unwrap_or_default();
        let skip = lines
            .len()
            .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
        Ok(lines[skip..].to_vec())
    }
}
