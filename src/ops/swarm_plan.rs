//! What `cdq up` would do to a stack on Swarm, without doing it: the overlay network, the
//! config and secret objects it would create, and each service, wave by wave, created,
//! updated or left. `observe` reads the manager (by the project label, as `up` does); `plan`
//! is pure, and its `Display` is what `cdq up --dry-run` prints with `target: swarm`.
//! Each service's action comes from [`ops::swarm::action`](super::swarm::action), the
//! function `up` itself decides with, so the plan and the run cannot disagree.
//!
//! Must not: change anything on the manager, print.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::swarm::{Action, action, def_hash};
use crate::engine::EngineError;
use crate::engine::swarm::{SwarmEngine, SwarmService};
use crate::swarm::stack::{self, Stack};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmPlan {
    pub project: String,
    pub network: String,
    pub create_network: bool,
    /// (name, secret) of the objects to create, in the stack's order.
    pub objects: Vec<(String, bool)>,
    /// Each wave's services (short names) and what `up` would do to them.
    pub waves: Vec<Vec<(String, Action)>>,
}

impl SwarmPlan {
    pub fn is_noop(&self) -> bool {
        !self.create_network
            && self.objects.is_empty()
            && self
                .waves
                .iter()
                .flatten()
                .all(|(_, a)| *a == Action::Unchanged)
    }
}

/// Pure: the plan for `stack` given the project's services, its objects' names and whether
/// its network exists.
pub fn plan(
    stack: &Stack,
    services: &[SwarmService],
    objects: &BTreeSet<String>,
    network_exists: bool,
) -> SwarmPlan {
    let existing: BTreeMap<String, &SwarmService> =
        services.iter().map(|s| (s.name.clone(), s)).collect();
    let by_short: BTreeMap<&str, _> = stack
        .services
        .iter()
        .map(|s| (s.short.as_str(), s))
        .collect();
    let waves = stack::waves(stack)
        .into_iter()
        .map(|wave| {
            wave.into_iter()
                .map(|short| {
                    let hash = def_hash(by_short[short.as_str()]);
                    let a = action(existing.get(&stack.full_name(&short)).copied(), &hash);
                    (short, a)
                })
                .collect()
        })
        .collect();
    SwarmPlan {
        project: stack.name.clone(),
        network: stack.network.clone(),
        create_network: !network_exists,
        objects: stack
            .objects
            .iter()
            .filter(|o| !objects.contains(&o.name))
            .map(|o| (o.name.clone(), o.secret))
            .collect(),
        waves,
    }
}

/// Reads what the manager has for the project and plans `stack` against it.
pub async fn observe<E: SwarmEngine>(engine: &E, stack: &Stack) -> Result<SwarmPlan, EngineError> {
    let services = engine.services(&stack.name).await?;
    let objects: BTreeSet<String> = engine
        .objects(&stack.name)
        .await?
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let network = engine.overlays(&stack.name).await?.contains(&stack.network);
    Ok(plan(stack, &services, &objects, network))
}

impl fmt::Display for SwarmPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services = self.waves.iter().map(Vec::len).sum::<usize>();
        if self.is_noop() {
            return writeln!(
                f,
                "plan for `{}` on the swarm: nothing to change ({services} services current)",
                self.project
            );
        }
        writeln!(f, "plan for `{}` on the swarm:", self.project)?;
        if self.create_network {
            writeln!(f, "  create overlay network `{}`", self.network)?;
        }
        for (name, secret) in &self.objects {
            let kind = if *secret { "secret" } else { "config" };
            writeln!(f, "  create {kind} `{name}`")?;
        }
        for (i, wave) in self.waves.iter().enumerate() {
            let parts: Vec<String> = wave
                .iter()
                .map(|(s, a)| match a {
                    Action::Created => format!("create {s}"),
                    Action::Updated => format!("update {s}"),
                    Action::Unchanged => format!("{s} unchanged"),
                })
                .collect();
            writeln!(f, "  wave {}: {}", i + 1, parts.join(", "))?;
        }
        Ok(())
    }
}
