//! The fake manager's clock and scheduler: placement constraints, where a task goes, and
//! every transition of a task's life (start, health, end, restart, update, leaving), applied
//! in time order up to "now" whenever the fake is called. See the parent module for what is
//! modelled and why.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    DEFAULT_INTERVAL, DEFAULT_RETRIES, FakeNode, FakeTask, HISTORY, RESTART_DELAY, START_LAG,
    State, TaskBehavior, Timer, bad_request, key_of,
};
use crate::engine::swarm::{Node, NodeState, ServiceCreate, Task};
use crate::engine::{EngineError, Result};

/// One placement constraint, parsed as swarmkit does: `KEY == VALUE` or `KEY != VALUE`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

pub(super) fn parse_constraint(c: &str) -> std::result::Result<Constraint, EngineError> {
    let (key, equal, value) = if let Some((k, v)) = c.split_once("==") {
        (k, true, v)
    } else if let Some((k, v)) = c.split_once("!=") {
        (k, false, v)
    } else {
        return Err(bad_request(format!("invalid constraint: `{c}`")));
    };
    let key = key.trim();
    let known = [
        "node.id",
        "node.hostname",
        "node.role",
        "node.platform.arch",
    ];
    if !(known.contains(&key)
        || key == "node.platform.os"
        || key
            .strip_prefix("node.labels.")
            .is_some_and(|l| !l.is_empty())
        || key
            .strip_prefix("engine.labels.")
            .is_some_and(|l| !l.is_empty()))
    {
        return Err(bad_request(format!("invalid constraint key: `{key}`")));
    }
    Ok(Constraint {
        key: key.to_string(),
        equal,
        value: value.trim().to_string(),
    })
}

impl Constraint {
    fn matches(&self, n: &Node) -> bool {
        let actual = match self.key.as_str() {
            "node.id" => Some(n.id.clone()),
            "node.hostname" => Some(n.hostname.clone()),
            "node.role" => Some(if n.manager { "manager" } else { "worker" }.to_string()),
            "node.platform.arch" => Some(n.arch.clone()),
            "node.platform.os" => Some("linux".to_string()),
            k => k
                .strip_prefix("node.labels.")
                .and_then(|l| n.labels.get(l).cloned()),
        };
        let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        same == self.equal
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

impl State {
    pub(super) fn next_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}{:021x}", self.serial)
    }

    pub(super) fn node_id(&self, hostname: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.node.hostname == hostname)
            .map(|n| n.node.id.clone())
    }

    pub(super) fn node_mut(&mut self, id: &str) -> &mut FakeNode {
        self.nodes
            .iter_mut()
            .find(|n| n.node.id == id)
            .expect("a node id the fake handed out")
    }

    pub(super) fn node_ready(&self, id: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.node.id == id && n.node.state == NodeState::Ready)
    }

    /// Applies every transition due at or before `now`, earliest first.
    pub(super) fn advance(&mut self, now: Instant) {
        loop {
            let mut next: Option<(Instant, usize, bool)> = None; // (when, index, is_timer)
            let mut consider = |when: Instant, i: usize, timer: bool| {
                if when <= now && next.is_none_or(|(w, _, _)| when < w) {
                    next = Some((when, i, timer));
                }
            };
            for (i, t) in self.tasks.iter().enumerate() {
                if let Some(g) = t.gone_at {
                    consider(g, i, false);
                }
                if !t.t.wants_running() || t.terminal() || !self.node_ready(&t.t.node_id) {
                    continue;
                }
                match t.t.state.as_str() {
                    "assigned" | "ready" => {
                        t.starts_at.into_iter().for_each(|s| consider(s, i, false));
                    }
                    "starting" | "running" => {
                        if t.t.state == "starting"
                            && let Some(h) = t.healthy_at
                        {
                            consider(h, i, false);
                        }
                        if let Some((e, _)) = t.ends_at {
                            consider(e, i, false);
                        }
                    }
                    _ => {}
                }
            }
            for (i, (when, _)) in self.timers.iter().enumerate() {
                consider(*when, i, true);
            }
            let Some((when, i, timer)) = next else {
                break;
            };
            if timer {
                let (_, t) = self.timers.remove(i);
                self.fire(t, when);
            } else {
                self.step_task(i, when);
            }
        }
    }

    pub(super) fn step_task(&mut self, i: usize, at: Instant) {
        let t = &self.tasks[i];
        if t.gone_at.is_some_and(|g| g <= at) {
            let network = t.network.clone();
            self.tasks.remove(i);
            self.drop_removed_networks(&network);
            return;
        }
        match t.t.state.as_str() {
            "assigned" | "ready" => self.start(i, at),
            "starting" if t.healthy_at.is_some_and(|h| h <= at) => {
                let t = &mut self.tasks[i];
                t.t.state = "running".into();
                t.t.message = "started".into();
            }
            _ => {
                let (_, code) = t.ends_at.expect("an end was due");
                self.end(i, at, code);
            }
        }
    }

    pub(super) fn start(&mut self, i: usize, at: Instant) {
        let node = self.tasks[i].t.node_id.clone();
        let image = self.tasks[i].image.clone();
        let has_image = self
            .nodes
            .iter()
            .any(|n| n.node.id == node && n.images.contains(&image));
        if !has_image {
            let t = &mut self.tasks[i];
            t.t.state = "rejected".into();
            t.t.message = "preparing".into();
            t.t.error = Some(format!("No such image: {image}"));
            t.t.desired = "shutdown".into();
            let (s, slot) = (t.t.service_id.clone(), t.t.slot);
            self.replace(&s, slot, at);
            return;
        }
        let behavior = self
            .behaviors
            .get(&self.tasks[i].key)
            .cloned()
            .unwrap_or(TaskBehavior::HealthyAfter(Duration::ZERO));
        let lines = self
            .start_lines
            .get(&self.tasks[i].key)
            .cloned()
            .unwrap_or_default();
        let t = &mut self.tasks[i];
        self.logs
            .entry(t.t.service_id.clone())
            .or_default()
            .extend(lines);
        let Some(h) = t.health.clone() else {
            t.t.state = "running".into();
            t.t.message = "started".into();
            if let TaskBehavior::ExitAfter(d, code) = behavior {
                t.ends_at = Some((at + d, code));
            }
            return;
        };
        t.t.state = "starting".into();
        t.t.message = "starting".into();
        let interval = if h.interval.is_zero() {
            DEFAULT_INTERVAL
        } else {
            h.interval
        };
        let retries = if h.retries == 0 {
            DEFAULT_RETRIES
        } else {
            h.retries
        };
        // Probe k runs at k * interval after start (k >= 1).
        let probe = |k: u64| at + interval * u32::try_from(k).unwrap_or(u32::MAX);
        let first_at_or_after =
            |d: Duration| -> u64 { (d.as_nanos().div_ceil(interval.as_nanos()) as u64).max(1) };
        match behavior {
            TaskBehavior::HealthyAfter(d) => t.healthy_at = Some(probe(first_at_or_after(d))),
            TaskBehavior::NeverHealthy { stop_exit } => {
                let first_counted = first_at_or_after(h.start_period);
                t.ends_at = Some((probe(first_counted + retries - 1), stop_exit));
            }
            TaskBehavior::ExitAfter(d, code) => t.ends_at = Some((at + d, code)),
        }
    }

    /// The task's container exited with `code` at `at`: the task's final state, and its
    /// replacement.
    pub(super) fn end(&mut self, i: usize, at: Instant, code: i64) {
        let t = &mut self.tasks[i];
        t.t.desired = "shutdown".into();
        t.ends_at = None;
        t.healthy_at = None;
        t.t.exit_code = Some(code);
        if code == 0 {
            t.t.state = "complete".into();
            t.t.message = "finished".into();
        } else {
            t.t.state = "failed".into();
            t.t.message = "started".into();
            t.t.error = Some(format!("task: non-zero exit ({code})"));
        }
        let (s, slot) = (t.t.service_id.clone(), t.t.slot);
        self.replace(&s, slot, at);
    }

    /// The restart policy: a new task in the slot at once, desired `ready`, released to
    /// `running` after the delay.
    pub(super) fn replace(&mut self, service_id: &str, slot: u64, at: Instant) {
        let Some(s) = self.services.iter().find(|s| s.svc.id == service_id) else {
            return;
        };
        let busy = self.tasks.iter().any(|t| {
            t.t.service_id == service_id
                && t.t.slot == slot
                && matches!(t.t.desired.as_str(), "running" | "ready")
        });
        if slot > s.svc.replicas || busy {
            return;
        }
        let id = self.new_task(service_id, slot, "ready", at);
        self.timers.push((at + RESTART_DELAY, Timer::Release(id)));
    }

    pub(super) fn fire(&mut self, timer: Timer, at: Instant) {
        match timer {
            Timer::Release(task_id) => {
                let Some(t) = self.tasks.iter_mut().find(|t| t.t.id == task_id) else {
                    return;
                };
                if t.t.desired == "ready" {
                    t.t.desired = "running".into();
                    if t.t.state == "ready" {
                        t.starts_at = Some(at);
                    }
                }
            }
            Timer::Update(service_id) => {
                let Some(s) = self.services.iter().find(|s| s.svc.id == service_id) else {
                    return;
                };
                let replicas = s.svc.replicas;
                for t in &mut self.tasks {
                    let live = matches!(t.t.desired.as_str(), "running" | "ready");
                    if t.t.service_id == service_id && live {
                        t.t.desired = "shutdown".into();
                        if !t.terminal() {
                            t.t.state = "shutdown".into();
                            t.t.message = "shutdown".into();
                        }
                        t.ends_at = None;
                        t.healthy_at = None;
                    }
                }
                for slot in 1..=replicas {
                    self.new_task(&service_id, slot, "running", at);
                }
            }
        }
    }

    /// A new task of the service in `slot` with that desired state, placed now if a node
    /// can take it; returns its id.
    pub(super) fn new_task(
        &mut self,
        service_id: &str,
        slot: u64,
        desired: &str,
        at: Instant,
    ) -> String {
        let id = self.next_id("task");
        let s = self
            .services
            .iter()
            .find(|s| s.svc.id == service_id)
            .expect("a live service");
        self.tasks.push(FakeTask {
            t: Task {
                id: id.clone(),
                service_id: service_id.to_string(),
                slot,
                node_id: String::new(),
                desired: desired.into(),
                state: "pending".into(),
                message: "pending task scheduling".into(),
                error: None,
                exit_code: None,
            },
            key: key_of(&s.svc),
            network: s.network.clone(),
            image: s.def.image.clone(),
            health: s.def.health.clone(),
            starts_at: None,
            healthy_at: None,
            ends_at: None,
            gone_at: None,
        });
        self.prune_history(service_id, slot);
        self.schedule_pending(at);
        id
    }

    pub(super) fn prune_history(&mut self, service_id: &str, slot: u64) {
        loop {
            let ended: Vec<usize> = (0..self.tasks.len())
                .filter(|&i| {
                    let t = &self.tasks[i];
                    t.t.service_id == service_id && t.t.slot == slot && t.terminal()
                })
                .collect();
            if ended.len() <= HISTORY {
                return;
            }
            self.tasks.remove(ended[0]);
        }
    }

    /// Places every pending task a node can take now; the others say why not.
    pub(super) fn schedule_pending(&mut self, at: Instant) {
        for i in 0..self.tasks.len() {
            let t = &self.tasks[i];
            if t.t.state != "pending" || !matches!(t.t.desired.as_str(), "running" | "ready") {
                continue;
            }
            let Some(s) = self.services.iter().find(|s| s.svc.id == t.t.service_id) else {
                continue;
            };
            let constraints: Vec<Constraint> = s
                .def
                .constraints
                .iter()
                .filter_map(|c| parse_constraint(c).ok())
                .collect();
            let (mut unavailable, mut unsatisfied) = (0, 0);
            let mut best: Option<(usize, usize, usize)> = None; // (same service, all, node index)
            for (ni, n) in self.nodes.iter().enumerate() {
                if n.node.state != NodeState::Ready || n.node.availability != "active" {
                    unavailable += 1;
                    continue;
                }
                if !constraints.iter().all(|c| c.matches(&n.node)) {
                    unsatisfied += 1;
                    continue;
                }
                let active = |same: bool| {
                    self.tasks
                        .iter()
                        .filter(|o| o.t.node_id == n.node.id && o.t.wants_running())
                        .filter(|o| !same || o.t.service_id == t.t.service_id)
                        .count()
                };
                let load = (active(true), active(false), ni);
                if best.is_none_or(|b| load < b) {
                    best = Some(load);
                }
            }
            let t = &mut self.tasks[i];
            match best {
                // A replacement waiting out the restart delay is prepared, not started.
                Some((_, _, ni)) if t.t.desired == "ready" => {
                    t.t.node_id = self.nodes[ni].node.id.clone();
                    t.t.state = "ready".into();
                    t.t.message = "prepared".into();
                    t.t.error = None;
                }
                Some((_, _, ni)) => {
                    t.t.node_id = self.nodes[ni].node.id.clone();
                    t.t.state = "assigned".into();
                    t.t.message = "assigned".into();
                    t.t.error = None;
                    t.starts_at = Some(at + START_LAG);
                }
                None => {
                    let mut why = Vec::new();
                    if unsatisfied > 0 {
                        why.push(format!(
                            "scheduling constraints not satisfied on {}",
                            plural(unsatisfied)
                        ));
                    }
                    if unavailable > 0 {
                        why.push(format!(
                            "{} not available for new tasks",
                            plural(unavailable)
                        ));
                    }
                    t.t.error = Some(format!("no suitable node ({})", why.join("; ")));
                }
            }
        }
    }

    /// Deletes the networks whose removal was accepted once no task is on them.
    pub(super) fn drop_removed_networks(&mut self, network: &str) {
        let used = self.tasks.iter().any(|t| t.network == network);
        if !used
            && self
                .networks
                .get(network)
                .is_some_and(|(_, removed)| *removed)
        {
            self.networks.remove(network);
        }
    }

    pub(super) fn check_spec(&self, spec: &ServiceCreate<'_>) -> Result<()> {
        if !self.networks.contains_key(&spec.network) {
            // The Docker implementation reports a 404 by the service it was creating.
            return Err(EngineError::NotFound(spec.name.clone()));
        }
        for c in &spec.def.constraints {
            parse_constraint(c)?;
        }
        for m in &spec.def.files {
            let kind = if m.secret { "secret" } else { "config" };
            let known = spec
                .object_ids
                .get(&m.object)
                .and_then(|id| self.objects.get(id))
                .is_some_and(|o| o.secret == m.secret && o.name == m.object);
            if !known {
                return Err(bad_request(format!("{kind} not found: {}", m.object)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], manager: bool) -> Node {
        Node {
            id: "n1".into(),
            hostname: "Worker1".into(),
            state: NodeState::Ready,
            availability: "active".into(),
            manager,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            engine_version: "20.10.24".into(),
            arch: "x86_64".into(),
            memory_bytes: 1,
        }
    }

    #[test]
    fn constraints_match_as_swarmkit_reads_them() {
        let n = node(&[("cdq.slot", "2")], false);
        let m = |c: &str| parse_constraint(c).unwrap().matches(&n);
        assert!(m("node.labels.cdq.slot == 2"));
        assert!(!m("node.labels.cdq.slot == 1"));
        assert!(m("node.labels.cdq.slot != 1"));
        assert!(!m("node.labels.other == 2"), "a missing label never equals");
        assert!(m("node.labels.other != 2"));
        assert!(
            m("node.hostname == worker1"),
            "values compare case-insensitively"
        );
        assert!(m("node.role == worker"));
        assert!(m("node.platform.arch == x86_64"));
        assert!(parse_constraint("node.labels.cdq.slot = 2").is_err());
        assert!(parse_constraint("node.colour == red").is_err());
    }
}
