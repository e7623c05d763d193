//! Operations on a stack deployed to Docker Swarm: `check_nodes` (the cluster cdq places on:
//! present, Ready, labelled, the right architecture), `up` (objects, network, then services
//! wave by wave, each wave only once what it depends on has healthy tasks), `status` (nodes,
//! and each service's tasks, marking tasks on a down node), `down` (services, network,
//! configs and secrets of the project; volumes stay on their nodes), `logs`.
//!
//! Works on any [`SwarmEngine`], returns data or typed errors, never prints. Must not touch
//! anything without the project label, or change node labels (that is the user's call; the
//! error says the command).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::swarm::{Node, NodeState, ServiceCreate, SwarmEngine, SwarmService, Task};
use crate::engine::{EngineError, LABEL_CONFIG_HASH, LABEL_PROJECT, LABEL_SERVICE};
use crate::error::{CdqError, Kind};
use crate::services::Arch;
use crate::settings::Cluster;
use crate::swarm::stack::{self, SLOT_LABEL, STACK_NAMESPACE, ServiceDef, Stack};

/// The labels every object cdq creates in the swarm carries.
pub fn labels(project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (STACK_NAMESPACE.to_string(), project.to_string()),
    ])
}

pub use crate::swarm::stack::base_service;

/// Checks the nodes named in `cluster.nodes`: each is in the swarm, Ready, active, of the
/// stack's architecture, and carries `cdq.slot=<its position>`; and no other node claims a
/// slot. Every problem is named with its node and the fix, in one error.
pub fn check_nodes(nodes: &[Node], cluster: &Cluster, arch: Arch) -> Result<(), CdqError> {
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for (i, name) in cluster.nodes.iter().enumerate() {
        let slot = (i + 1).to_string();
        let Some(n) = nodes.iter().find(|n| &n.hostname == name) else {
            problems.push(format!("node `{name}` is not in the swarm"));
            fixes.push(
                "list the nodes with `docker node ls` and fix `cluster.nodes` in cdq.yaml"
                    .to_string(),
            );
            continue;
        };
        if n.state != NodeState::Ready {
            problems.push(format!("node `{name}` is {:?}", n.state).to_lowercase());
            fixes.push(format!(
                "start Docker on `{name}` (or replace it in `cluster.nodes`)"
            ));
        }
        if n.availability != "active" {
            problems.push(format!("node `{name}` is `{}`", n.availability));
            fixes.push(format!("docker node update --availability active {name}"));
        }
        if Arch::from_any(&n.arch) != Some(arch) {
            problems.push(format!(
                "node `{name}` is `{}`, the stack is rendered for `{arch}`",
                n.arch
            ));
            fixes.push("render for the nodes' architecture (`--arch`)".to_string());
        }
        match n.labels.get(SLOT_LABEL) {
            Some(v) if *v == slot => {}
            Some(v) => {
                problems.push(format!(
                    "node `{name}` has label `{SLOT_LABEL}={v}`, cdq.yaml puts it in slot {slot}"
                ));
                fixes.push(format!(
                    "docker node update --label-add {SLOT_LABEL}={slot} {name}"
                ));
            }
            None => {
                problems.push(format!("node `{name}` has no label `{SLOT_LABEL}={slot}`"));
                fixes.push(format!(
                    "docker node update --label-add {SLOT_LABEL}={slot} {name}"
                ));
            }
        }
    }
    for n in nodes {
        if !cluster.nodes.contains(&n.hostname)
            && let Some(v) = n.labels.get(SLOT_LABEL)
        {
            problems.push(format!(
                "node `{}` is not in `cluster.nodes` but has label `{SLOT_LABEL}={v}`",
                n.hostname
            ));
            fixes.push(format!(
                "docker node update --label-rm {SLOT_LABEL} {}",
                n.hostname
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CdqError::usage(format!(
        "the swarm is not ready for the stack: {}",
        problems.join("; ")
    ))
    .hint(format!("on the manager: {}", fixes.join("; "))))
}

/// The hash of a service definition as rendered: unchanged definitions are left alone.
pub fn def_hash(d: &ServiceDef) -> String {
    hex::encode(&Sha256::digest(format!("{d:?}").as_bytes())[..16])
}

/// What `up` did to each service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// What `up` does to a service the manager has as `existing` (by name), whose rendered
/// definition hashes to `hash`; `swarm_plan` shows the same decision for `--dry-run`.
pub fn action(existing: Option<&SwarmService>, hash: &str) -> Action {
    match existing {
        None => Action::Created,
        Some(s) if s.labels.get(LABEL_CONFIG_HASH).map(String::as_str) == Some(hash) => {
            Action::Unchanged
        }
        Some(_) => Action::Updated,
    }
}

/// Progress of `up`, for the command layer to show.
#[derive(Debug, Clone)]
pub enum Progress {
    Wave(Vec<String>),
    Service(String, Action),
    Healthy(String),
}

/// How many of a service's tasks count as healthy: desired running, running (with a
/// healthcheck, Swarm moves a task to `running` only once it is healthy), on a Ready node.
pub fn healthy_tasks(tasks: &[Task], service_id: &str, nodes: &BTreeMap<String, Node>) -> u64 {
    tasks
        .iter()
        .filter(|t| t.service_id == service_id && t.wants_running() && t.state == "running")
        .filter(|t| {
            nodes
                .get(&t.node_id)
                .is_some_and(|n| n.state == NodeState::Ready)
        })
        .count() as u64
}

/// Deploys the stack: network and objects, then services wave by wave; a wave starts only
/// once every service before it has all its tasks healthy. `deadline` gives each service
/// its time.
pub async fn up<E: SwarmEngine>(
    engine: &E,
    stack: &Stack,
    deadline: impl Fn(&str) -> Duration,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<()> {
    let base = labels(&stack.name);
    engine
        .ensure_overlay(&stack.network, &base)
        .await
        .map_err(crate::engine::explain)?;
    let mut ids: BTreeMap<String, String> = engine
        .objects(&stack.name)
        .await
        .map_err(crate::engine::explain)?
        .into_iter()
        .map(|(name, id, _)| (name, id))
        .collect();
    for o in &stack.objects {
        if !ids.contains_key(&o.name) {
            let id = engine
                .create_object(o, &base)
                .await
                .map_err(crate::engine::explain)?;
            ids.insert(o.name.clone(), id);
        }
    }
    let existing: BTreeMap<String, SwarmService> = engine
        .services(&stack.name)
        .await
        .map_err(crate::engine::explain)?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let by_short: BTreeMap<&str, &ServiceDef> = stack
        .services
        .iter()
        .map(|s| (s.short.as_str(), s))
        .collect();
    // Tasks of the services updated, from before their update.
    let mut replaced = BTreeSet::new();
    for wave in stack::waves(stack) {
        progress(Progress::Wave(wave.clone()));
        let mut wave_ids = Vec::new();
        for short in &wave {
            let def = by_short[short.as_str()];
            let name = stack.full_name(short);
            let hash = def_hash(def);
            let mut l = base.clone();
            l.insert(LABEL_SERVICE.into(), short.clone());
            l.insert(LABEL_CONFIG_HASH.into(), hash.clone());
            let spec = ServiceCreate {
                name: name.clone(),
                def,
                labels: l,
                network: stack.network.clone(),
                object_ids: &ids,
            };
            let (id, action) = match (existing.get(&name), action(existing.get(&name), &hash)) {
                (None, _) => (
                    engine
                        .create_service(&spec)
                        .await
                        .map_err(crate::engine::explain)?,
                    Action::Created,
                ),
                (Some(s), Action::Unchanged) => (s.id.clone(), Action::Unchanged),
                (Some(s), _) => {
                    // Swarm replaces the tasks after the update returns: the ones running
                    // now run the old spec and must not count as the new one healthy.
                    let old = engine
                        .tasks(std::slice::from_ref(&s.id))
                        .await
                        .map_err(crate::engine::explain)?;
                    replaced.extend(old.into_iter().map(|t| t.id));
                    engine
                        .update_service(&s.id, s.version, &spec)
                        .await
                        .map_err(crate::engine::explain)?;
                    (s.id.clone(), Action::Updated)
                }
            };
            progress(Progress::Service(short.clone(), action));
            wave_ids.push((short.clone(), id, def.replicas));
        }
        wait_healthy(engine, &wave_ids, &replaced, &deadline, &mut progress).await?;
    }
    Ok(())
}

async fn wait_healthy<E: SwarmEngine>(
    engine: &E,
    wave: &[(String, String, u64)],
    replaced: &BTreeSet<String>,
    deadline: &impl Fn(&str) -> Duration,
    progress: &mut impl FnMut(Progress),
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let mut done = BTreeSet::new();
    loop {
        let nodes = node_map(engine).await?;
        let ids: Vec<String> = wave.iter().map(|(_, id, _)| id.clone()).collect();
        let mut tasks = engine.tasks(&ids).await.map_err(crate::engine::explain)?;
        tasks.retain(|t| !replaced.contains(&t.id));
        let mut late = Vec::new();
        for (short, id, replicas) in wave {
            if done.contains(short) {
                continue;
            }
            if healthy_tasks(&tasks, id, &nodes) >= *replicas {
                done.insert(short.clone());
                progress(Progress::Healthy(short.clone()));
            } else if start.elapsed() >= deadline(short) {
                late.push((short.clone(), id.clone()));
            }
        }
        if done.len() == wave.len() {
            return Ok(());
        }
        if !late.is_empty() {
            let mut report = Vec::new();
            for (short, id) in &late {
                report.push(explain_service(engine, short, id, &tasks, &nodes).await);
            }
            return Err(CdqError::new(
                Kind::Unhealthy,
                format!(
                    "{} did not become healthy in time\n{}",
                    crate::error::quoted_list(late.iter().map(|(s, _)| s)),
                    report.join("\n")
                ),
            )
            .hint("the task lines say which node and why; `cdq logs SERVICE` shows more, `cdq status` the nodes")
            .into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Which task on which node is not healthy and why: task state, error, exit code, and the
/// service's last log lines.
async fn explain_service<E: SwarmEngine>(
    engine: &E,
    short: &str,
    id: &str,
    tasks: &[Task],
    nodes: &BTreeMap<String, Node>,
) -> String {
    let mut lines = vec![format!("  `{short}`:")];
    let mut mine: Vec<&Task> = tasks.iter().filter(|t| t.service_id == id).collect();
    mine.sort_by_key(|t| (!t.wants_running(), t.slot));
    for t in mine.iter().take(4) {
        lines.push(format!("    {}", task_line(t, nodes)));
    }
    if mine.is_empty() {
        lines
            .push("    no task was scheduled (no node satisfies the placement constraint?)".into());
    }
    if let Ok(logs) = engine.service_logs(id, 10).await {
        for l in logs.iter().rev().take(10).rev() {
            lines.push(format!("    | {l}"));
        }
    }
    lines.join("\n")
}

fn task_line(t: &Task, nodes: &BTreeMap<String, Node>) -> String {
    let node = nodes.get(&t.node_id);
    let host = node.map_or("(unassigned)", |n| n.hostname.as_str());
    let down = node.is_some_and(|n| n.state != NodeState::Ready);
    let mut s = format!(
        "task {} on `{host}`: {}{} (desired {})",
        t.slot,
        t.state,
        if down { ", node down" } else { "" },
        t.desired
    );
    // Swarm's message often repeats the state (`starting`): shown only when it adds to it.
    if let Some(e) = &t.error {
        s.push_str(&format!(": {e}"));
    } else if !t.message.is_empty() && t.message != t.state {
        s.push_str(&format!(": {}", t.message));
    }
    // Swarm's error for an exit already names the code (`task: non-zero exit (143)`).
    if let Some(c) = t.exit_code.filter(|c| {
        *c != 0
            && !t
                .error
                .as_ref()
                .is_some_and(|e| e.contains(&format!("({c})")))
    }) {
        s.push_str(&format!(" (exit {c})"));
    }
    s
}

async fn node_map<E: SwarmEngine>(engine: &E) -> anyhow::Result<BTreeMap<String, Node>> {
    Ok(engine
        .nodes()
        .await
        .map_err(crate::engine::explain)?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub slot: u64,
    pub node: String,
    pub state: String,
    /// The node is not Ready: the task's last reported state is stale.
    pub node_down: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub desired: u64,
    pub running: u64,
    pub tasks: Vec<TaskRow>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub state: NodeState,
    pub availability: String,
    pub slot: Option<String>,
    pub manager: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub nodes: Vec<NodeRow>,
    pub services: Vec<ServiceRow>,
}

impl StatusReport {
    pub fn healthy(&self) -> bool {
        !self.services.is_empty() && self.services.iter().all(|s| s.ok)
    }
}

/// Pure: the status of `expected` services (short names) from what the manager reports.
pub fn status_rows(
    project: &str,
    expected: &[String],
    nodes: &[Node],
    services: &[SwarmService],
    tasks: &[Task],
) -> StatusReport {
    let by_id: BTreeMap<String, Node> = nodes.iter().map(|n| (n.id.clone(), n.clone())).collect();
    let mut rows = Vec::new();
    for short in expected {
        let name = format!("{project}_{short}");
        let Some(s) = services.iter().find(|s| s.name == name) else {
            rows.push(ServiceRow {
                service: short.clone(),
                desired: 0,
                running: 0,
                tasks: vec![],
                ok: false,
            });
            continue;
        };
        let running = healthy_tasks(tasks, &s.id, &by_id);
        // The tasks meant to run, and the ones a down node last reported running (the
        // manager has given up on them, but the node may still run them unseen).
        let mut t: Vec<TaskRow> = tasks
            .iter()
            .filter(|t| t.service_id == s.id)
            .filter(|t| {
                let down = by_id
                    .get(&t.node_id)
                    .is_some_and(|n| n.state != NodeState::Ready);
                t.wants_running() || (down && t.state == "running")
            })
            .map(|t| {
                let n = by_id.get(&t.node_id);
                TaskRow {
                    slot: t.slot,
                    node: n.map_or("(unassigned)".to_string(), |n| n.hostname.clone()),
                    state: t.state.clone(),
                    node_down: n.is_some_and(|n| n.state != NodeState::Ready),
                }
            })
            .collect();
        t.sort_by_key(|r| r.slot);
        rows.push(ServiceRow {
            service: short.clone(),
            desired: s.replicas,
            running,
            ok: running >= s.replicas && s.replicas > 0,
            tasks: t,
        });
    }
    let mut node_rows: Vec<NodeRow> = nodes
        .iter()
        .map(|n| NodeRow {
            node: n.hostname.clone(),
            state: n.state,
            availability: n.availability.clone(),
            slot: n.labels.get(SLOT_LABEL).cloned(),
            manager: n.manager,
        })
        .collect();
    node_rows.sort_by(|a, b| a.slot.cmp(&b.slot).then(a.node.cmp(&b.node)));
    StatusReport {
        nodes: node_rows,
        services: rows,
    }
}

pub async fn status<E: SwarmEngine>(
    engine: &E,
    project: &str,
    expected: &[String],
) -> Result<StatusReport, EngineError> {
    let nodes = engine.nodes().await?;
    let services = engine.services(project).await?;
    let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    let tasks = engine.tasks(&ids).await?;
    Ok(status_rows(project, expected, &nodes, &services, &tasks))
}

/// The status as a table: nodes, then services with their tasks.
pub fn table(r: &StatusReport) -> String {
    let mut out = String::from("NODE          STATE          SLOT  ROLE\n");
    for n in &r.nodes {
        let state = match n.state {
            NodeState::Ready => "ready".to_string(),
            s => format!("{s:?} (DOWN)")
                .to_lowercase()
                .replace("(down)", "DOWN"),
        };
        out.push_str(&format!(
            "{:<13} {:<14} {:<5} {}\n",
            n.node,
            state,
            n.slot.as_deref().unwrap_or("-"),
            if n.manager { "manager" } else { "worker" }
        ));
    }
    out.push_str("\nSERVICE          RUNNING  STATE      TASKS\n");
    for s in &r.services {
        let state = if s.ok {
            "healthy"
        } else if s.desired == 0 {
            "missing"
        } else {
            "degraded"
        };
        let tasks: Vec<String> = s
            .tasks
            .iter()
            .map(|t| {
                if t.node_down {
                    format!("{}@{} ({}, node down)", t.slot, t.node, t.state)
                } else {
                    format!("{}@{} ({})", t.slot, t.node, t.state)
                }
            })
            .collect();
        out.push_str(&format!(
            "{:<16} {:<8} {:<10} {}\n",
            s.service,
            format!("{}/{}", s.running, s.desired),
            state,
            tasks.join(", ")
        ));
    }
    out
}

/// What `down` removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Removed {
    pub services: Vec<String>,
    pub networks: Vec<String>,
    pub objects: Vec<String>,
    /// Networks the manager still refused after the wait (tasks still detaching).
    pub left: Vec<String>,
}

/// Removes the project's services, then (once their tasks are gone) its networks and its
/// config and secret objects. Named volumes stay on their nodes with the data.
pub async fn down<E: SwarmEngine>(
    engine: &E,
    project: &str,
    wait: Duration,
) -> Result<Removed, EngineError> {
    let mut r = Removed::default();
    let services = engine.services(project).await?;
    for s in &services {
        engine.remove_service(&s.id).await?;
        r.services.push(s.name.clone());
    }
    let start = tokio::time::Instant::now();
    let mut pending = engine.overlays(project).await?;
    loop {
        let mut still = Vec::new();
        for n in pending {
            match engine.remove_overlay(&n).await {
                // Accepted again while its tasks leave: counted once.
                Ok(()) if r.networks.contains(&n) => {}
                Ok(()) => r.networks.push(n),
                Err(
                    EngineError::NetworkInUse(_)
                    | EngineError::Api { .. }
                    | EngineError::Conflict(_),
                ) => still.push(n),
                Err(e) => return Err(e),
            }
        }
        // The manager accepts the removal of a network its tasks are still leaving and
        // deletes it once they are gone: wait for it to be gone from the list too.
        let listed = engine.overlays(project).await?;
        if still.is_empty() && listed.is_empty() {
            break;
        }
        if start.elapsed() >= wait {
            for n in listed {
                if !still.contains(&n) {
                    still.push(n);
                }
            }
            r.networks.retain(|n| !still.contains(n));
            r.left = still;
            break;
        }
        pending = if still.is_empty() { listed } else { still };
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // An object still referenced by a task being removed is refused; retried in the same
    // window as the networks.
    let mut objects = engine.objects(project).await?;
    loop {
        let mut still = Vec::new();
        for (name, id, secret) in objects {
            match engine.remove_object(&id, secret).await {
                Ok(()) => r.objects.push(name),
                Err(EngineError::Api { .. } | EngineError::Conflict(_)) => {
                    still.push((name, id, secret))
                }
                Err(e) => return Err(e),
            }
        }
        if still.is_empty() || start.elapsed() >= wait {
            r.left.extend(still.into_iter().map(|(n, _, _)| n));
            break;
        }
        objects = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(r)
}

/// The last `tail` lines of each named service (all when empty), prefixed with its name.
pub async fn logs<E: SwarmEngine>(
    engine: &E,
    project: &str,
    only: &[String],
    tail: u64,
) -> Result<Vec<String>, EngineError> {
    let mut services = engine.services(project).await?;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let prefix = format!("{project}_");
    let mut out = Vec::new();
    for s in services {
        let short = s.name.strip_prefix(&prefix).unwrap_or(&s.name).to_string();
        if !only.is_empty() && !only.contains(&short) {
            continue;
        }
        for l in engine.service_logs(&s.id, tail).await? {
            out.push(format!("{short:<14}| {l}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Service;

    fn node(id: &str, host: &str, state: NodeState, slot: Option<&str>) -> Node {
        Node {
            id: id.into(),
            hostname: host.into(),
            state,
            availability: "active".into(),
            manager: id == "n1",
            labels: slot
                .map(|s| BTreeMap::from([(SLOT_LABEL.to_string(), s.to_string())]))
                .unwrap_or_default(),
            engine_version: "20.10.24".into(),
            arch: "x86_64".into(),
            memory_bytes: 1 << 30,
        }
    }

    fn task(service: &str, slot: u64, node: &str, state: &str) -> Task {
        Task {
            id: format!("{service}-{slot}-{node}"),
            service_id: service.into(),
            slot,
            node_id: node.into(),
            desired: "running".into(),
            state: state.into(),
            message: String::new(),
            error: None,
            exit_code: None,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            nodes: vec!["manager".into(), "worker1".into(), "worker2".into()],
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn a_node_missing_its_label_is_named_with_the_command_that_fixes_it() {
        let nodes = [
            node("n1", "manager", NodeState::Ready, Some("1")),
            node("n2", "worker1", NodeState::Ready, None),
            node("n3", "worker2", NodeState::Ready, Some("3")),
        ];
        let e = check_nodes(&nodes, &cluster(), Arch::Amd64).unwrap_err();
        assert_eq!(
            e.message,
            "the swarm is not ready for the stack: node `worker1` has no label `cdq.slot=2`"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("on the manager: docker node update --label-add cdq.slot=2 worker1")
        );
    }

    #[test]
    fn labelled_ready_nodes_pass_and_a_down_or_absent_one_is_named() {
        let mut nodes = vec![
            node("n1", "manager", NodeState::Ready, Some("1")),
            node("n2", "worker1", NodeState::Ready, Some("2")),
            node("n3", "worker2", NodeState::Ready, Some("3")),
        ];
        check_nodes(&nodes, &cluster(), Arch::Amd64).unwrap();
        nodes[2].state = NodeState::Down;
        let e = check_nodes(&nodes, &cluster(), Arch::Amd64).unwrap_err();
        assert!(
            e.message.contains("node `worker2` is down"),
            "{}",
            e.message
        );
        nodes.pop();
        let e = check_nodes(&nodes, &cluster(), Arch::Amd64).unwrap_err();
        assert!(
            e.message.contains("node `worker2` is not in the swarm"),
            "{}",
            e.message
        );
    }

    /// A down node's old task still reports `running`: it is not counted, and status
    /// marks it.
    #[test]
    fn tasks_on_a_down_node_are_not_counted_and_are_marked() {
        let nodes = [
            node("n1", "manager", NodeState::Ready, Some("1")),
            node("n2", "worker1", NodeState::Ready, Some("2")),
            node("n3", "worker2", NodeState::Down, Some("3")),
        ];
        let services = [
            SwarmService {
                id: "k3".into(),
                name: "p_kafka3".into(),
                version: 1,
                labels: BTreeMap::new(),
                replicas: 1,
            },
            SwarmService {
                id: "k1".into(),
                name: "p_kafka1".into(),
                version: 1,
                labels: BTreeMap::new(),
                replicas: 1,
            },
        ];
        // The manager has given up on the task on the down node (desired shutdown) and
        // queued a replacement that cannot be placed: both are shown.
        let mut stale = task("k3", 1, "n3", "running");
        stale.desired = "shutdown".into();
        let pending = task("k3", 1, "", "pending");
        let tasks = [stale, pending, task("k1", 1, "n1", "running")];
        let r = status_rows(
            "p",
            &["kafka1".into(), "kafka3".into(), "mysql".into()],
            &nodes,
            &services,
            &tasks,
        );
        assert!(r.services[0].ok);
        assert!(!r.services[1].ok);
        assert!(r.services[1].tasks[0].node_down);
        assert!(!r.services[2].ok, "a missing service is not ok");
        let t = table(&r);
        assert!(t.contains("worker2       down DOWN"), "{t}");
        assert!(
            t.contains("kafka3           0/1      degraded   1@worker2 (running, node down), 1@(unassigned) (pending)"),
            "{t}"
        );
    }

    #[test]
    fn stack_services_map_to_their_catalogue_service() {
        assert_eq!(base_service("kafka2"), Some(Service::Kafka));
        assert_eq!(base_service("sentinel3"), Some(Service::Redis));
        assert_eq!(base_service("redis-replica"), Some(Service::Redis));
        assert_eq!(base_service("zookeeper1"), Some(Service::Zookeeper));
        assert_eq!(base_service("server"), Some(Service::Server));
    }
}
