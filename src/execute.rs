//! Executes a [`Plan`] through an [`Engine`]: each service starts the moment its own
//! dependencies are healthy (not when a whole level is), waits are driven by the engine's
//! event stream with inspect as the fallback, and every service has its own deadline.
//!
//! Healthy services stay up when another fails, so a re-run resumes from there. Ctrl-C stops
//! the waiting and leaves containers as they are. Progress goes to a [`Progress`] sink; this
//! module never prints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::time::Instant;

use crate::engine::{
    self, Container, CreateSpec, Engine, EngineError, EventKind, Health, RunState,
};
use crate::plan::{Action, Plan, container_name};
use crate::project::{Condition, Project, ServiceSpec};

mod binds;
mod rollback;
use binds::prepare_binds;
pub use rollback::previous_name;
use rollback::{is_upgrade, roll_back};

/// What a service is doing, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Waiting {
        on: Vec<String>,
    },
    Removing,
    /// An unhealthy container is being restarted.
    Restarting,
    Creating,
    Starting,
    /// Started; health checks have not passed yet.
    Checking,
    Unhealthy {
        probe: String,
    },
    Healthy {
        elapsed: Duration,
    },
    /// Running with no healthcheck.
    Running,
    Kept,
    Failed {
        why: String,
    },
    /// The new container failed: the previous one is being put back.
    RollingBack,
    /// The previous container is back; `healthy` says whether it became healthy again.
    RolledBack {
        healthy: bool,
    },
}

pub trait Progress: Send + Sync {
    fn phase(&self, service: &str, phase: &Phase);
}

/// Why a service did not become healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Exited { code: Option<i64>, oom: bool },
    Timeout { after: Duration },
    Blocked { dependency: String },
    Engine { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub service: String,
    pub reason: Reason,
    pub state: Option<RunState>,
    pub health: Option<Health>,
    pub last_probe: Option<String>,
    pub logs: Vec<String>,
    /// Set when the service was being upgraded: what became of the previous container.
    pub rollback: Option<Rollback>,
}

/// What became of the previous container of a failed upgrade (see [`roll_back`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// Back under its own name, running and healthy (or running, without a healthcheck).
    Restored { image: String },
    /// It could not be brought back; `why` says what failed. It keeps its data.
    Failed { why: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(Vec<Failure>),
    /// A signal: `waiting` were waiting for a dependency or for health; `not_started`
    /// were created (or kept) and not started, because the signal came first.
    Interrupted {
        waiting: Vec<String>,
        not_started: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Deadline per service, counted from its start.
    pub deadlines: BTreeMap<String, Duration>,
    pub default_deadline: Duration,
    /// How often to inspect as a fallback to events.
    pub poll: Duration,
    pub log_lines: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deadlines: BTreeMap::new(),
            default_deadline: Duration::from_secs(120),
            poll: Duration::from_secs(2),
            log_lines: 30,
        }
    }
}

impl Options {
    /// The service's deadline, never shorter than its healthcheck's own grace (start_period
    /// plus two probes): a slow JVM must not be failed before Docker itself would.
    pub fn deadline(&self, spec: &ServiceSpec) -> Duration {
        let base = self
            .deadlines
            .get(&spec.name)
            .copied()
            .unwrap_or(self.default_deadline);
        match &spec.healthcheck {
            Some(h) => base.max(h.start_period + h.interval * 2 + h.timeout),
            None => base,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ready {
    Pending,
    Started,
    Healthy,
    Failed,
}

/// The labels cdq puts on a service's container.
pub fn container_labels(
    project: &Project,
    spec: &ServiceSpec,
    hash: &str,
) -> BTreeMap<String, String> {
    let mut l = spec.labels.clone();
    let dir = project.dir.display().to_string();
    let project = project.name.as_str();
    for (k, v) in [
        (engine::LABEL_PROJECT, project),
        (engine::LABEL_SERVICE, spec.name.as_str()),
        (engine::LABEL_CONFIG_HASH, hash),
        (engine::COMPOSE_PROJECT, project),
        (engine::COMPOSE_SERVICE, spec.name.as_str()),
        (engine::COMPOSE_NUMBER, "1"),
        (engine::COMPOSE_ONEOFF, "False"),
        (engine::COMPOSE_CONFIG_HASH, hash),
        (engine::COMPOSE_WORKING_DIR, dir.as_str()),
    ] {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

pub fn network_labels(project: &str) -> BTreeMap<String, String> {
    [
        (engine::LABEL_PROJECT, project),
        (engine::COMPOSE_PROJECT, project),
        (engine::COMPOSE_NETWORK, "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

struct Shared<E> {
    engine: Arc<E>,
    project: Project,
    hashes: BTreeMap<String, String>,
    observed: BTreeMap<String, Container>,
    opts: Options,
    progress: Arc<dyn Progress>,
    events: broadcast::Sender<engine::Event>,
    ready: BTreeMap<String, watch::Sender<Ready>>,
    /// The engine allocates published ports non-atomically: starts that publish are serial.
    port_lock: Mutex<()>,
    /// Data directories are prepared one at a time (they may share parents).
    dir_lock: Mutex<()>,
    probes: tokio::sync::Semaphore,
    cancel: watch::Receiver<bool>,
    /// Services that stopped before their start because of a signal.
    not_started: std::sync::Mutex<Vec<String>>,
}

/// Runs the plan. `observed` is what `plan` was computed from (its health saves a wait).
#[allow(clippy::too_many_arguments)] // each is a distinct input of one pipeline step
pub async fn execute<E: Engine>(
    engine: Arc<E>,
    project: &Project,
    plan: &Plan,
    hashes: &BTreeMap<String, String>,
    observed: &[Container],
    opts: Options,
    progress: Arc<dyn Progress>,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome, EngineError> {
    // Subscribe before anything starts so no health event can be missed.
    let (tx, _) = broadcast::channel(1024);
    let mut stream = engine.events(&project.name);
    let pump_tx = tx.clone();
    let pump = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    let _ = pump_tx.send(ev);
                }
                // The stream broke (daemon restarting?): waits fall back to inspect.
                Err(_) => break,
            }
        }
    });

    // A signal before any service step: what is done stays done, nothing more starts.
    let stopped_early = || Outcome::Interrupted {
        waiting: vec![],
        not_started: vec![],
    };
    for r in &plan.removals {
        if *cancel.borrow() {
            pump.abort();
            return Ok(stopped_early());
        }
        engine
            .stop_container(&r.id, Duration::from_secs(10))
            .await?;
        engine.remove_container(&r.id).await?;
    }
    for d in &plan.duplicate_networks {
        for c in &d.containers {
            engine.force_disconnect(&d.id, c).await?;
        }
        engine.remove_network(&d.id).await?;
    }
    if *cancel.borrow() {
        pump.abort();
        return Ok(stopped_early());
    }
    if plan.create_network {
        engine
            .ensure_network(&plan.network, &network_labels(&project.name))
            .await?;
    }

    let ready: BTreeMap<String, watch::Sender<Ready>> = plan
        .steps
        .iter()
        .map(|s| (s.service.clone(), watch::channel(Ready::Pending).0))
        .collect();
    let shared = Arc::new(Shared {
        engine,
        project: project.clone(),
        hashes: hashes.clone(),
        observed: observed.iter().map(|c| (c.id.clone(), c.clone())).collect(),
        opts,
        progress,
        events: tx,
        ready,
        port_lock: Mutex::new(()),
        dir_lock: Mutex::new(()),
        probes: tokio::sync::Semaphore::new(PROBES_AT_ONCE),
        cancel: cancel.clone(),
        not_started: std::sync::Mutex::new(vec![]),
    });

    let mut tasks = tokio::task::JoinSet::new();
    for step in plan.steps.clone() {
        let sh = shared.clone();
        tasks.spawn(async move {
            let name = step.service.clone();
            let r = run_service(&sh, &step.service, &step.action, &step.after).await;
            let state = match &r {
                Ok(Some(Ready::Healthy)) => Ready::Healthy,
                Ok(Some(Ready::Started)) => Ready::Started,
                _ => Ready::Failed,
            };
            sh.ready[&name].send_replace(state);
            (name, r)
        });
    }
    let mut failures = Vec::new();
    let mut interrupted = Vec::new();
    let mut engine_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (name, r) = joined.expect("service tasks do not panic");
        match r {
            Ok(Some(_)) => {}
            Ok(None) => interrupted.push(name),
            Err(Step::Failed(f)) => failures.push(*f),
            Err(Step::Engine(e)) => {
                if engine_error.is_none() {
                    engine_error = Some(e);
                }
            }
        }
    }
    pump.abort();
    if let Some(e) = engine_error {
        return Err(e);
    }
    if *cancel.borrow() {
        let mut not_started = std::mem::take(&mut *shared.not_started.lock().unwrap());
        interrupted.retain(|s| !not_started.contains(s));
        interrupted.sort();
        not_started.sort();
        return Ok(Outcome::Interrupted {
            waiting: interrupted,
            not_started,
        });
    }
    if failures.is_empty() {
        Ok(Outcome::Done)
    } else {
        // Root causes first: a service blocked by another's failure is listed after it.
        failures.sort_by_key(|f| {
            (
                matches!(f.reason, Reason::Blocked { .. }),
                f.service.clone(),
            )
        });
        Ok(Outcome::Failed(failures))
    }
}

enum Step {
    Failed(Box<Failure>),
    Engine(EngineError),
}

impl From<EngineError> for Step {
    fn from(e: EngineError) -> Self {
        Step::Engine(e)
    }
}

fn blocked(service: &str, dependency: &str) -> Step {
    let reason = Reason::Blocked {
        dependency: dependency.to_string(),
    };
    early(service, reason, None)
}

/// A failure before the container ran, so there is no probe output or log to show.
fn early(service: &str, reason: Reason, state: Option<RunState>) -> Step {
    Step::Failed(Box::new(Failure {
        service: service.to_string(),
        reason,
        state,
        health: None,
        last_probe: None,
        logs: vec![],
        rollback: None,
    }))
}

/// Reports `why` as this service's failure and returns it.
fn refused<E: Engine>(sh: &Shared<E>, name: &str, why: String, state: Option<RunState>) -> Step {
    sh.progress.phase(name, &Phase::Failed { why: why.clone() });
    early(name, Reason::Engine { message: why }, state)
}

/// Ok(Some(ready)) when done, Ok(None) when interrupted.
async fn run_service<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    action: &Action,
    after: &[String],
) -> Result<Option<Ready>, Step> {
    let spec = &sh.project.services[name];
    let hash = sh.hashes.get(name).cloned().unwrap_or_default();
    // The container an upgrade replaces, while its successor is not yet healthy.
    let mut previous: Option<String> = None;

    // Containers are created (and their data directories prepared) at once, whatever the
    // state of their dependencies: only the start waits. That takes create latency off
    // every link of the dependency chain.
    let (mut id, keep) = match action {
        Action::Keep { id } => {
            if let Some(c) = sh.observed.get(id) {
                match (&spec.healthcheck, c.health) {
                    (_, Some(Health::Healthy)) => {
                        sh.progress.phase(name, &Phase::Kept);
                        return Ok(Some(Ready::Healthy));
                    }
                    (None, _) => {
                        sh.progress.phase(name, &Phase::Kept);
                        return Ok(Some(Ready::Started));
                    }
                    _ => {}
                }
            }
            (id.clone(), true)
        }
        Action::Wait { id } => (id.clone(), true),
        Action::Restart { id } => {
            // Stopped now, started again below once its dependencies are healthy, like any
            // stopped service.
            sh.progress.phase(name, &Phase::Restarting);
            let grace = spec.stop_grace_period.unwrap_or(Duration::from_secs(10));
            sh.engine.stop_container(id, grace).await?;
            (id.clone(), false)
        }
        Action::Start { id } => (id.clone(), false),
        Action::Create => (create(sh, name, spec, &hash).await?, false),
        Action::Recreate { id, reason } => {
            sh.progress.phase(name, &Phase::Removing);
            let grace = spec.stop_grace_period.unwrap_or(Duration::from_secs(10));
            sh.engine.stop_container(id, grace).await?;
            if is_upgrade(reason) {
                // Kept, stopped, under another name until the new one is healthy.
                sh.engine
                    .rename_container(id, &previous_name(&sh.project.name, name))
                    .await?;
                previous = Some(id.clone());
                match create(sh, name, spec, &hash).await {
                    Ok(new) => (new, false),
                    Err(step) => return Err(roll_back(sh, name, spec, None, id, step).await),
                }
            } else {
                sh.engine.remove_container(id).await?;
                (create(sh, name, spec, &hash).await?, false)
            }
        }
    };

    // Everything after the create is one block, so a failure anywhere in it (a dependency,
    // the start, the wait) reaches the rollback below.
    let r = async {
        if !after.is_empty() {
            sh.progress
                .phase(name, &Phase::Waiting { on: after.to_vec() });
        }
        let mut cancel = sh.cancel.clone();
        for dep in after {
            let want = spec
                .depends_on
                .get(dep)
                .copied()
                .unwrap_or(Condition::ServiceStarted);
            let mut rx = sh.ready[dep].subscribe();
            loop {
                let state = rx.borrow_and_update().clone();
                match (state, want) {
                    (Ready::Failed, _) => {
                        sh.progress.phase(
                            name,
                            &Phase::Failed {
                                why: format!("`{dep}` did not become healthy"),
                            },
                        );
                        return Err(blocked(name, dep));
                    }
                    (Ready::Healthy, _) | (Ready::Started, Condition::ServiceStarted) => break,
                    _ => {}
                }
                tokio::select! {
                    r = rx.changed() => { if r.is_err() { return Err(blocked(name, dep)); } }
                    _ = cancel.changed() => { if *cancel.borrow() { return Ok(None); } }
                }
                if *cancel.borrow() {
                    return Ok(None);
                }
            }
        }

        // A signal that came during the create (or a dependency's wait that just ended):
        // the created container is left as it is, not started.
        if !keep && *cancel.borrow() {
            sh.not_started.lock().unwrap().push(name.to_string());
            return Ok(None);
        }
        // Subscribe before starting so the start's health events are seen.
        let events = sh.events.subscribe();
        if !keep {
            start(sh, name, spec, &mut id, &hash).await?;
        }
        let deadline = sh.opts.deadline(spec);
        if !matches!(action, Action::Restart { .. } | Action::Start { .. }) {
            return wait_ready(sh, name, spec, &id, events, deadline).await;
        }
        // An unhealthy or stopped service gets half its deadline after a (re)start; if that
        // does not make it healthy, a new container (from the same rendered spec) gets the
        // other half.
        let half = deadline / 2;
        match wait_ready(sh, name, spec, &id, events, half).await {
            Err(Step::Failed(f))
                if matches!(f.reason, Reason::Timeout { .. } | Reason::Exited { .. }) =>
            {
                sh.progress.phase(name, &Phase::Removing);
                let grace = spec.stop_grace_period.unwrap_or(Duration::from_secs(10));
                sh.engine.stop_container(&id, grace).await?;
                sh.engine.remove_container(&id).await?;
                let mut id = create(sh, name, spec, &hash).await?;
                let events = sh.events.subscribe();
                start(sh, name, spec, &mut id, &hash).await?;
                wait_ready(sh, name, spec, &id, events, deadline - half).await
            }
            other => other,
        }
    }
    .await;
    let Some(prev) = previous else {
        return r;
    };
    match r {
        // Healthy: the previous container has done its job.
        Ok(Some(ready)) => {
            sh.engine.remove_container(&prev).await?;
            Ok(Some(ready))
        }
        Err(step @ Step::Failed(_)) => Err(roll_back(sh, name, spec, Some(&id), &prev, step).await),
        // Interrupted, or the daemon failed: the previous container stays, stopped, under
        // its other name; the next `up` plans from what it finds.
        other => other,
    }
}

async fn create<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    spec: &ServiceSpec,
    hash: &str,
) -> Result<String, Step> {
    sh.progress.phase(name, &Phase::Creating);
    if let Err(why) = prepare_binds(sh, spec).await {
        return Err(refused(sh, name, why, None));
    }
    let create = CreateSpec {
        name: container_name(&sh.project.name, name),
        service: spec,
        labels: container_labels(&sh.project, spec, hash),
        network: sh.project.network(),
        aliases: vec![name.to_string()],
    };
    let id = match sh.engine.create_container(&create).await {
        Ok(id) => id,
        Err(EngineError::NotFound(img)) => {
            return Err(refused(
                sh,
                name,
                format!("image `{img}` is not on this host"),
                None,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(id)
}

async fn start<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    spec: &ServiceSpec,
    id: &mut String,
    hash: &str,
) -> Result<(), Step> {
    sh.progress.phase(name, &Phase::Starting);
    let start = |id: String| async move {
        if spec.ports.is_empty() {
            sh.engine.start_container(&id).await
        } else {
            let _guard = sh.port_lock.lock().await;
            sh.engine.start_container(&id).await
        }
    };
    let mut r = start(id.clone()).await;
    if let Err(EngineError::Api { message, .. }) = &r
        && message.contains("already exists in network")
    {
        // The daemon kept an endpoint of an earlier container of this name (a Docker fault,
        // e.g. after a `down` that could not remove the network). Docker removes an endpoint
        // by name only when no container has that name: take ours away (it has not run),
        // remove the endpoint by force, create it again and start once more.
        sh.engine.remove_container(id).await?;
        sh.engine
            .force_disconnect(
                &sh.project.network(),
                &container_name(&sh.project.name, name),
            )
            .await?;
        *id = create(sh, name, spec, hash).await?;
        sh.progress.phase(name, &Phase::Starting);
        r = start(id.clone()).await;
    }
    match r {
        Ok(()) => Ok(()),
        // A port already taken is the user's to fix, not an engine fault: report it per service.
        Err(EngineError::Api { message, .. }) => {
            Err(refused(sh, name, message, Some(RunState::Created)))
        }
        Err(e) => Err(e.into()),
    }
}

/// How long a service without a healthcheck must keep running to count as started.
const SETTLE: Duration = Duration::from_secs(1);

/// When cdq probes a starting service itself: soon after the start, then every 2 s.
const PROBE_DELAYS: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// At most this many of cdq's own probes run at once: on a big stack and a small host they
/// must add little to the daemon's own probes.
const PROBES_AT_ONCE: usize = 4;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The healthcheck as a command to exec: `CMD a b` runs `a b`, `CMD-SHELL s` runs `sh -c s`.
fn probe_command(h: &crate::project::Healthcheck) -> Option<Vec<String>> {
    match h.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), cmd.clone()])
        }
        _ => None,
    }
}

/// Waits for the container to be healthy (or running, without a healthcheck), failing at
/// once if it exits and at its deadline otherwise.
async fn wait_ready<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    spec: &ServiceSpec,
    id: &str,
    mut events: broadcast::Receiver<engine::Event>,
    limit: Duration,
) -> Result<Option<Ready>, Step> {
    let started = Instant::now();
    let deadline = started + limit;
    let has_check = spec.healthcheck.as_ref().is_some_and(|h| !h.is_disabled());
    let mut cancel = sh.cancel.clone();
    let mut oom = false;
    // Without a healthcheck, "started" means still running a moment after the start: a
    // container that exits at once must fail, not count as up.
    let mut settled: Option<Instant> = None;
    let mut last_unhealthy_probe: Option<String> = None;
    let mut poll = tokio::time::interval(sh.opts.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if has_check {
        sh.progress.phase(name, &Phase::Checking);
    }
    // cdq runs the healthcheck itself while the service starts: the daemon's first probe
    // comes a whole `interval` after the start, and one passing probe is what makes the
    // daemon call it healthy too. A failing early probe is not a verdict: only the daemon's
    // health, an exit or the deadline end the wait.
    let mut probe = if has_check {
        spec.healthcheck.as_ref().and_then(probe_command)
    } else {
        None
    };
    let mut released = false;
    let probe_timeout = spec.healthcheck.as_ref().map_or(PROBE_TIMEOUT, |h| {
        h.timeout.clamp(Duration::from_secs(1), PROBE_TIMEOUT)
    });
    let mut probes = 0usize;
    let mut next_probe = Instant::now() + PROBE_DELAYS[0];
    loop {
        // `None` means: look at the container now.
        let look = tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) if ev.container_id == id => match ev.kind {
                    EventKind::Health(Health::Healthy) if has_check => return healthy(sh, name, started, released),
                    EventKind::Start if !has_check => {
                        settled.get_or_insert(Instant::now() + SETTLE);
                        false
                    }
                    EventKind::Oom => { oom = true; false }
                    // Fail on the event itself: with a restart policy the daemon restarts the
                    // container at once, and an inspect would find it running again.
                    EventKind::Die { exit_code } => {
                        return Err(fail(sh, name, id, Reason::Exited { code: exit_code, oom }).await);
                    }
                    EventKind::Destroy | EventKind::Health(_) => true,
                    _ => false,
                },
                Ok(_) => false,
                // Lagged or closed: the fallback inspect covers what was missed.
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => { tokio::time::sleep(sh.opts.poll).await; true }
            },
            _ = poll.tick() => true,
            _ = tokio::time::sleep_until(next_probe), if probe.is_some() => {
                let cmd = probe.as_deref().unwrap_or_default();
                probes += 1;
                next_probe = Instant::now() + PROBE_DELAYS[probes.min(PROBE_DELAYS.len() - 1)];
                let permit = sh.probes.acquire().await.expect("the semaphore is never closed");
                let result = sh.engine.exec(id, cmd, probe_timeout).await;
                drop(permit);
                match result {
                    // Its dependents may start now; `up` itself still waits for the daemon
                    // to agree, so `cdq status` right after says healthy too.
                    Ok((0, _)) => {
                        sh.ready[name].send_replace(Ready::Healthy);
                        sh.progress.phase(name, &Phase::Healthy { elapsed: started.elapsed() });
                        released = true;
                        probe = None;
                        false
                    }
                    Ok(_) => false,
                    // Not running (any more): the inspect below says why.
                    Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => true,
                    Err(e) => return Err(e.into()),
                }
            }
            _ = tokio::time::sleep_until(settled.unwrap_or(deadline)), if settled.is_some() => true,
            _ = tokio::time::sleep_until(deadline) => {
                return Err(fail(sh, name, id, Reason::Timeout { after: deadline - started }).await);
            }
            _ = cancel.changed() => {
                if *cancel.borrow() { return Ok(None); }
                false
            }
        };
        if !look {
            continue;
        }
        let c = match sh.engine.inspect_container(id).await {
            Ok(c) => c,
            Err(EngineError::NotFound(_)) => {
                return Err(fail(
                    sh,
                    name,
                    id,
                    Reason::Engine {
                        message: "the container was removed while cdq waited for it".into(),
                    },
                )
                .await);
            }
            Err(e) => return Err(e.into()),
        };
        match (c.state, c.health) {
            (RunState::Exited | RunState::Dead | RunState::Restarting, _) => {
                return Err(fail(
                    sh,
                    name,
                    id,
                    Reason::Exited {
                        code: c.exit_code,
                        oom: oom || c.oom_killed,
                    },
                )
                .await);
            }
            (RunState::Running, Some(Health::Healthy)) if has_check => {
                return healthy(sh, name, started, released);
            }
            (RunState::Running, _) if !has_check => match settled {
                Some(at) if Instant::now() >= at => return running(sh, name),
                _ => {
                    settled.get_or_insert(Instant::now() + SETTLE);
                }
            },
            (_, Some(Health::Unhealthy)) => {
                let probe = c.last_probe.clone().unwrap_or_default();
                if last_unhealthy_probe.as_ref() != Some(&probe) {
                    sh.progress.phase(
                        name,
                        &Phase::Unhealthy {
                            probe: probe.clone(),
                        },
                    );
                    last_unhealthy_probe = Some(probe);
                }
            }
            _ => {}
        }
    }
}

/// `reported`: cdq's own probe already said so (and released the dependents).
fn healthy<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    started: Instant,
    reported: bool,
) -> Result<Option<Ready>, Step> {
    if !reported {
        sh.progress.phase(
            name,
            &Phase::Healthy {
                elapsed: started.elapsed(),
            },
        );
    }
    Ok(Some(Ready::Healthy))
}

fn running<E: Engine>(sh: &Shared<E>, name: &str) -> Result<Option<Ready>, Step> {
    sh.progress.phase(name, &Phase::Running);
    Ok(Some(Ready::Started))
}

async fn fail<E: Engine>(sh: &Shared<E>, name: &str, id: &str, reason: Reason) -> Step {
    let c = sh.engine.inspect_container(id).await.ok();
    let logs = sh
        .engine
        .logs(id, sh.opts.log_lines)
        .await
        .unwrap_or_default();
    let why = match &reason {
        Reason::Exited { code: Some(c), .. } => format!("exited with code {c}"),
        Reason::Exited { code: None, .. } => "exited".to_string(),
        Reason::Timeout { after } => format!("not healthy after {}s", after.as_secs()),
        Reason::Blocked { dependency } => format!("`{dependency}` did not become healthy"),
        Reason::Engine { message } => message.clone(),
    };
    sh.progress.phase(name, &Phase::Failed { why });
    Step::Failed(Box::new(Failure {
        service: name.to_string(),
        reason,
        state: c.as_ref().map(|c| c.state),
        health: c.as_ref().and_then(|c| c.health),
        last_probe: c.and_then(|c| c.last_probe),
        logs,
        rollback: None,
    }))
}
