//! The pure plan: what `cdq up` must do to turn what exists (observed containers and
//! networks, found by label) into the project (the rendered compose file). Its `Display` is
//! what `--dry-run` prints and what tests snapshot. No I/O here.

use std::collections::BTreeMap;
use std::fmt;

use crate::engine::{Container, Health, RunState};
use crate::project::{Project, ServiceSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No container yet.
    Create,
    /// A container exists but must be replaced; the reason says why.
    Recreate { id: String, reason: String },
    /// The container is current but not running: started, and recreated if that does not
    /// make it healthy within half its deadline.
    Start { id: String },
    /// The container is current and running: only its health is awaited.
    Keep { id: String },
    /// The container is current and running but its healthcheck has not passed yet:
    /// `up` waits for it (within its deadline).
    Wait { id: String },
    /// The container is current and running but unhealthy: `up` restarts it, and recreates
    /// it if a restart does not make it healthy within half its deadline.
    Restart { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub service: String,
    pub action: Action,
    /// Services that must be healthy (or started) first.
    pub after: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub id: String,
    pub name: String,
    pub reason: String,
}

/// A second network of the stack's name (two creates raced): removed before anything joins
/// the network, its containers taken off it first (their services are recreated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateNetwork {
    pub id: String,
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub project: String,
    pub network: String,
    pub create_network: bool,
    pub duplicate_networks: Vec<DuplicateNetwork>,
    /// In dependency order.
    pub steps: Vec<Step>,
    pub removals: Vec<Removal>,
}

impl Plan {
    /// True when executing it changes nothing on the engine.
    pub fn is_noop(&self) -> bool {
        !self.create_network
            && self.duplicate_networks.is_empty()
            && self.removals.is_empty()
            && self
                .steps
                .iter()
                .all(|s| matches!(s.action, Action::Keep { .. }))
    }
}

/// The container name cdq gives a service, as docker compose v2 names it.
pub fn container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}-1")
}

/// Computes the plan. `hashes` are the wanted config hashes per service.
pub fn plan(
    project: &Project,
    hashes: &BTreeMap<String, String>,
    observed: &[Container],
    networks: &[String],
) -> Plan {
    let network = project.network();
    let mut by_service: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    let mut removals = Vec::new();
    for c in observed {
        match c.service() {
            Some(s) if project.services.contains_key(s) => by_service.entry(s).or_default().push(c),
            other => removals.push(Removal {
                id: c.id.clone(),
                name: c.name.clone(),
                reason: match other {
                    Some(s) => format!("service `{s}` is no longer in the project"),
                    None => "it has no service label".to_string(),
                },
            }),
        }
    }

    let mut steps = Vec::new();
    for name in project.start_order() {
        let spec = &project.services[name];
        let want = hashes.get(name).map(String::as_str);
        let mut found = by_service.remove(name).unwrap_or_default();
        // Prefer the container named as cdq names it; any others are duplicates.
        let wanted_name = container_name(&project.name, name);
        found.sort_by_key(|c| (c.name != wanted_name, c.id.clone()));
        let mut rest = found.into_iter();
        let action = match rest.next() {
            None => Action::Create,
            Some(c) => {
                let reason = if c.image != spec.image {
                    Some(format!(
                        "image changed from `{}` to `{}`",
                        c.image, spec.image
                    ))
                } else if c.config_hash() != want {
                    Some(match c.config_hash() {
                        None => "it was not created by cdq".to_string(),
                        Some(_) => "its rendered config changed".to_string(),
                    })
                } else if c.name != wanted_name {
                    Some(format!("it is named `{}`, not `{wanted_name}`", c.name))
                } else if let Some(d) = drift_text(project, spec, c) {
                    Some(format!("changed outside cdq: {d}"))
                } else if matches!(
                    c.state,
                    RunState::Paused | RunState::Dead | RunState::Removing
                ) {
                    Some(format!("it is {}", state_word(c.state)))
                } else {
                    None
                };
                match reason {
                    Some(reason) => Action::Recreate {
                        id: c.id.clone(),
                        reason,
                    },
                    None if c.state == RunState::Running && c.health == Some(Health::Unhealthy) => {
                        Action::Restart { id: c.id.clone() }
                    }
                    None if c.state == RunState::Running && c.health == Some(Health::Starting) => {
                        Action::Wait { id: c.id.clone() }
                    }
                    None if matches!(c.state, RunState::Running | RunState::Restarting) => {
                        Action::Keep { id: c.id.clone() }
                    }
                    None => Action::Start { id: c.id.clone() },
                }
            }
        };
        for extra in rest {
            removals.push(Removal {
                id: extra.id.clone(),
                name: extra.name.clone(),
                reason: format!("a second container for `{name}`"),
            });
        }
        steps.push(Step {
            service: name.to_string(),
            action,
            after: spec.depends_on.keys().cloned().collect(),
        });
    }
    Plan {
        project: project.name.clone(),
        create_network: !networks.contains(&network),
        duplicate_networks: Vec::new(),
        network,
        steps,
        removals,
    }
}

/// How a container differs from its service as rendered in what cdq sets and someone can
/// change outside it (`docker network disconnect`, `docker update --restart`, a container
/// recreated by hand with cdq's labels): one phrase per difference, empty when it runs as
/// rendered. Values of environment variables are never shown (they may be passwords).
pub fn drift(project: &Project, spec: &ServiceSpec, c: &Container) -> Vec<String> {
    let mut out = Vec::new();
    if c.image != spec.image {
        out.push(format!("image is `{}`, not `{}`", c.image, spec.image));
    }
    let network = project.network();
    if !c.networks.contains(&network) {
        out.push(if c.networks.is_empty() {
            format!("not on the network `{network}` (on none)")
        } else {
            format!(
                "not on the network `{network}` (on {})",
                crate::error::quoted_list(&c.networks)
            )
        });
    }
    let want = normal_restart(spec.restart.as_deref().unwrap_or("no"));
    if normal_restart(&c.restart) != want {
        out.push(format!(
            "restart policy is `{}`, not `{want}`",
            normal_restart(&c.restart)
        ));
    }
    let binds: Vec<String> = spec.binds.iter().map(|b| b.docker_form()).collect();
    for b in &binds {
        if !c.binds.contains(b) {
            out.push(format!("mount `{b}` is missing"));
        }
    }
    for b in &c.binds {
        if !binds.contains(b) {
            out.push(format!("mount `{b}` was added"));
        }
    }
    let mut changed: Vec<&str> = spec
        .environment
        .iter()
        .filter(|(k, v)| !c.env.iter().any(|e| *e == format!("{k}={v}")))
        .map(|(k, _)| k.as_str())
        .collect();
    changed.sort();
    if !changed.is_empty() {
        out.push(format!(
            "environment {} differs",
            crate::error::quoted_list(changed)
        ));
    }
    out
}

fn drift_text(project: &Project, spec: &ServiceSpec, c: &Container) -> Option<String> {
    let d = drift(project, spec, c);
    (!d.is_empty()).then(|| d.join("; "))
}

/// `on-failure:0` is `on-failure`; an empty name is Docker's default, `no`.
fn normal_restart(s: &str) -> String {
    match s.trim() {
        "" => "no".into(),
        "on-failure:0" => "on-failure".into(),
        other => other.into(),
    }
}

fn state_word(s: RunState) -> &'static str {
    match s {
        RunState::Created => "created",
        RunState::Running => "running",
        RunState::Restarting => "restarting",
        RunState::Paused => "paused",
        RunState::Exited => "exited",
        RunState::Dead => "dead",
        RunState::Removing => "being removed",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() {
            return writeln!(
                f,
                "plan for `{}`: nothing to change ({} services current)",
                self.project,
                self.steps.len()
            );
        }
        writeln!(f, "plan for `{}`:", self.project)?;
        let width = self
            .steps
            .iter()
            .map(|s| s.service.len())
            .max()
            .unwrap_or(7)
            .max(7);
        if self.create_network {
            writeln!(
                f,
                "  {:width$}  create network `{}`",
                "network", self.network
            )?;
        }
        for d in &self.duplicate_networks {
            let short: String = d.id.chars().take(12).collect();
            writeln!(
                f,
                "  {:width$}  remove duplicate network `{}` (id {short}, left by two runs racing{})",
                "network",
                self.network,
                if d.containers.is_empty() {
                    String::new()
                } else {
                    format!("; detach {}", d.containers.join(", "))
                }
            )?;
        }
        for r in &self.removals {
            writeln!(
                f,
                "  {:width$}  remove `{}` ({})",
                "orphan", r.name, r.reason
            )?;
        }
        for s in &self.steps {
            let what = match &s.action {
                Action::Create => "create and start".to_string(),
                Action::Recreate { reason, .. } => format!("recreate ({reason})"),
                Action::Start { .. } => {
                    "start (stopped; replaced if not healthy at half its deadline)".to_string()
                }
                Action::Keep { .. } => "keep (current)".to_string(),
                Action::Wait { .. } => "wait (running, healthcheck not passed yet)".to_string(),
                Action::Restart { .. } => {
                    "restart (unhealthy; replaced if still unhealthy at half its deadline)"
                        .to_string()
                }
            };
            if s.after.is_empty() {
                writeln!(f, "  {:width$}  {what}", s.service)?;
            } else {
                writeln!(
                    f,
                    "  {:width$}  {what}, after {}",
                    s.service,
                    s.after.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LABEL_CONFIG_HASH, LABEL_PROJECT, LABEL_SERVICE};
    use crate::interpolate::Vars;
    use std::path::Path;

    fn project() -> Project {
        let text = "services:\n  db:\n    image: db:1\n    healthcheck: { test: [\"CMD\", \"true\"] }\n  app:\n    image: app:1\n    depends_on: { db: { condition: service_healthy } }\n  web:\n    image: web:1\n";
        crate::project::parse(
            Path::new("c.yaml"),
            Path::new("/d"),
            text,
            &Vars::default(),
            "demo",
        )
        .unwrap()
    }

    fn hashes() -> BTreeMap<String, String> {
        [("db", "h-db"), ("app", "h-app"), ("web", "h-web")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect()
    }

    fn container(service: &str, image: &str, hash: &str, state: RunState) -> Container {
        Container {
            id: format!("id-{service}"),
            name: container_name("demo", service),
            image: image.into(),
            labels: [
                (LABEL_PROJECT, "demo"),
                (LABEL_SERVICE, service),
                (LABEL_CONFIG_HASH, hash),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            state,
            health: None,
            last_probe: None,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            ports: vec![],
            networks: vec!["demo_default".into()],
            restart: "no".into(),
            binds: vec![],
            env: vec![],
        }
    }

    #[test]
    fn empty_engine_creates_everything_in_order() {
        let p = plan(&project(), &hashes(), &[], &[]);
        let order: Vec<&str> = p.steps.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(order, ["db", "web", "app"]);
        assert!(p.create_network);
        assert!(!p.is_noop());
        insta::assert_snapshot!(p.to_string(), @r"
        plan for `demo`:
          network  create network `demo_default`
          db       create and start
          web      create and start
          app      create and start, after db
        ");
    }

    #[test]
    fn unchanged_running_stack_is_a_noop() {
        let obs = vec![
            container("db", "db:1", "h-db", RunState::Running),
            container("app", "app:1", "h-app", RunState::Running),
            container("web", "web:1", "h-web", RunState::Running),
        ];
        let p = plan(&project(), &hashes(), &obs, &["demo_default".into()]);
        assert!(p.is_noop());
        assert_eq!(
            p.to_string(),
            "plan for `demo`: nothing to change (3 services current)\n"
        );
    }

    #[test]
    fn changes_stopped_and_orphans() {
        let obs = vec![
            container("db", "db:1", "old", RunState::Running),
            container("app", "app:1", "h-app", RunState::Exited),
            container("web", "web:0", "h-web", RunState::Running),
            container("gone", "x:1", "h", RunState::Running),
        ];
        let p = plan(&project(), &hashes(), &obs, &["demo_default".into()]);
        insta::assert_snapshot!(p.to_string(), @r"
        plan for `demo`:
          orphan   remove `demo-gone-1` (service `gone` is no longer in the project)
          db       recreate (its rendered config changed)
          web      recreate (image changed from `web:0` to `web:1`)
          app      start (stopped; replaced if not healthy at half its deadline), after db
        ");
    }

    #[test]
    fn duplicates_are_removed_and_foreign_containers_recreated() {
        let mut dup = container("web", "web:1", "h-web", RunState::Running);
        dup.id = "id-web-2".into();
        dup.name = "demo-web-2".into();
        let mut foreign = container("db", "db:1", "h-db", RunState::Running);
        foreign.labels.remove(LABEL_CONFIG_HASH);
        let obs = vec![
            foreign,
            container("app", "app:1", "h-app", RunState::Running),
            container("web", "web:1", "h-web", RunState::Running),
            dup,
        ];
        let p = plan(&project(), &hashes(), &obs, &["demo_default".into()]);
        assert_eq!(p.removals.len(), 1);
        assert_eq!(p.removals[0].name, "demo-web-2");
        assert_eq!(
            p.steps[0].action,
            Action::Recreate {
                id: "id-db".into(),
                reason: "it was not created by cdq".into()
            }
        );
        assert_eq!(
            p.steps[1].action,
            Action::Keep {
                id: "id-web".into()
            }
        );
    }

    #[test]
    fn unhealthy_is_restarted_starting_is_waited_for_and_drift_recreates() {
        let mut db = container("db", "db:1", "h-db", RunState::Running);
        db.health = Some(Health::Unhealthy);
        let mut app = container("app", "app:1", "h-app", RunState::Running);
        app.health = Some(Health::Starting);
        let mut web = container("web", "web:1", "h-web", RunState::Running);
        web.networks.clear();
        web.restart = "always".into();
        let p = plan(
            &project(),
            &hashes(),
            &[db, app, web],
            &["demo_default".into()],
        );
        assert!(!p.is_noop());
        insta::assert_snapshot!(p.to_string(), @r"
        plan for `demo`:
          db       restart (unhealthy; replaced if still unhealthy at half its deadline)
          web      recreate (changed outside cdq: not on the network `demo_default` (on none); restart policy is `always`, not `no`)
          app      wait (running, healthcheck not passed yet), after db
        ");
    }

    #[test]
    fn drift_names_mounts_and_environment_without_values() {
        let pr = project();
        let mut spec = pr.services["web"].clone();
        spec.environment.insert("PASSWORD".into(), "s3cret".into());
        let mut c = container("web", "web:1", "h", RunState::Running);
        c.env = vec!["PASSWORD=old".into()];
        c.binds = vec!["/x:/y".into()];
        let d = drift(&pr, &spec, &c);
        assert_eq!(
            d,
            ["mount `/x:/y` was added", "environment `PASSWORD` differs"]
        );
        assert!(!d.join(" ").contains("s3cret") && !d.join(" ").contains("old"));
        c.env = vec!["PASSWORD=s3cret".into(), "PATH=/bin".into()];
        c.binds.clear();
        assert!(drift(&pr, &spec, &c).is_empty());
    }
}
