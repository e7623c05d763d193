//! `up` as engine-generic operations: observe what runs (by label), plan with pure code, and
//! execute the plan with health-gated start; then turn the outcome into the error the user
//! sees. Returns data and errors; never prints (the command layer does, through `ui`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::confighash::{self, Overlay};
use crate::engine::{Container, Engine, explain};
use crate::error::{CdqError, Kind};
use crate::execute::{self, Failure, Options, Outcome, Progress, Reason, Rollback};
use crate::ops::owner;
use crate::plan::{self, Action, Plan};
use crate::project::Project;
use crate::services::Service;
use crate::settings::Settings;

/// What runs now and what `up` would do about it.
#[derive(Debug)]
pub struct Observed {
    pub plan: Plan,
    pub hashes: BTreeMap<String, String>,
    pub containers: Vec<Container>,
}

impl Observed {
    /// Nothing to create, recreate, start, restart or wait for: the plan (what `--dry-run`
    /// prints) is the whole truth.
    pub fn is_current(&self) -> bool {
        self.plan.is_noop()
    }

    /// The services the plan touches, in plan order.
    pub fn services(&self) -> Vec<String> {
        self.plan.steps.iter().map(|s| s.service.clone()).collect()
    }
}

/// Lists the project's containers and networks and plans against them. `overlay` stands in
/// for rendered files not written yet (a dry run hashes what it would write).
pub async fn observe<E: Engine>(
    engine: &E,
    project: &Project,
    overlay: &Overlay,
) -> anyhow::Result<Observed> {
    let hashes = confighash::project_hashes(project, overlay)?;
    let (containers, networks) = tokio::try_join!(
        engine.list_containers(&project.name),
        engine.list_networks(&project.name)
    )
    .map_err(explain)?;
    owner::check_owner(&project.name, &project.dir, &containers)?;
    let network = project.network();
    let (_, duplicates) =
        owner::keep_and_duplicates(owner::networks(engine, &project.name, &network).await?);
    let mut plan = plan::plan(project, &hashes, &containers, &networks);
    // A container on a duplicate network is taken off it and made again on the one kept.
    for d in &duplicates {
        for step in &mut plan.steps {
            let wanted = plan::container_name(&project.name, &step.service);
            if let Action::Keep { id }
            | Action::Wait { id }
            | Action::Start { id }
            | Action::Restart { id } = &step.action
                && d.containers.contains(&wanted)
            {
                step.action = Action::Recreate {
                    id: id.clone(),
                    reason: format!("it is on a duplicate network `{network}`"),
                };
            }
        }
    }
    plan.duplicate_networks = duplicates
        .into_iter()
        .map(|d| plan::DuplicateNetwork {
            id: d.id,
            containers: d.containers,
        })
        .collect();
    let creating: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Create))
        .map(|s| plan::container_name(&project.name, &s.service))
        .collect();
    owner::check_names(engine, &project.name, &creating).await?;
    Ok(Observed {
        plan,
        hashes,
        containers,
    })
}

/// Marks the data directories of the services the user adopts (`--adopt-data`) as this
/// project's, so `up` mounts them and `down --purge` deletes them. Returns each directory
/// marked, with what happens to it. A name that is no service of the project is refused.
pub fn adopt(
    project: &Project,
    services: &std::collections::BTreeSet<String>,
) -> Result<Vec<(std::path::PathBuf, String)>, CdqError> {
    let mut out = Vec::new();
    for svc in services {
        let spec = project.services.get(svc).ok_or_else(|| {
            CdqError::usage(format!(
                "`--adopt-data {svc}`: the stack has no service `{svc}`"
            ))
            .hint(format!(
                "name one of: {}",
                project
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        for b in spec.binds.iter().filter(|b| !b.read_only) {
            let check = crate::fsio::classify(&b.source, &project.name);
            if check.usable() {
                continue;
            }
            let was = check.describe();
            crate::fsio::write_mark(
                &b.source,
                &crate::fsio::Mark {
                    project: project.name.clone(),
                    deploy_dir: project.dir.clone(),
                    created: vec![],
                },
            )?;
            out.push((
                b.source.clone(),
                format!(
                    "{was}; it is now mounted into `{svc}` (whose entrypoint hands it to the uid `{svc}` runs as) and `down --purge` deletes it"
                ),
            ));
        }
    }
    Ok(out)
}

/// The health deadlines: each catalogue service's own, `default` for the rest.
pub fn options(settings: &Settings, default: Option<Duration>) -> Options {
    let deadlines = Service::ALL
        .iter()
        .map(|s| (s.name().to_string(), settings.deadline(*s)))
        .collect();
    let defaults = Options::default();
    Options {
        deadlines,
        default_deadline: default.unwrap_or(defaults.default_deadline),
        ..defaults
    }
}

/// Executes the observed plan; an engine failure midway is an error naming the daemon.
pub async fn converge<E: Engine>(
    engine: Arc<E>,
    project: &Project,
    observed: &Observed,
    options: Options,
    progress: Arc<dyn Progress>,
    cancel: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    execute::execute(
        engine,
        project,
        &observed.plan,
        &observed.hashes,
        &observed.containers,
        options,
        progress,
        cancel,
    )
    .await
    .map_err(|e| {
        anyhow::Error::new(explain(e))
            .context("the Docker daemon failed while cdq was starting the stack")
    })
}

/// The error for an outcome that is not `Done` (exit 4 or 130), with the fix.
pub fn outcome_error(outcome: &Outcome) -> Option<CdqError> {
    match outcome {
        Outcome::Done => None,
        Outcome::Interrupted {
            waiting,
            not_started,
        } => Some(interrupted(waiting, not_started)),
        Outcome::Failed(failures) => Some(failed(failures)),
    }
}

/// `interrupted while waiting for …` when services were waiting, else `… while creating the
/// containers`; the hint names what was left created and not started.
fn interrupted(waiting: &[String], not_started: &[String]) -> CdqError {
    if waiting.is_empty() && not_started.is_empty() {
        return CdqError::new(
            Kind::Interrupted,
            "interrupted while preparing to create the containers",
        )
        .hint("no container was created or started; run `cdq up` again to resume");
    }
    let message = if waiting.is_empty() {
        "interrupted while creating the containers".to_string()
    } else {
        format!("interrupted while waiting for {}", waiting.join(", "))
    };
    let left = match not_started.len() {
        0 => String::new(),
        1 => format!("`{}` is created and not started; ", not_started[0]),
        _ => format!(
            "{} are created and not started; ",
            crate::error::quoted_list(not_started)
        ),
    };
    CdqError::new(Kind::Interrupted, message).hint(format!(
        "{left}containers were left as they are; run `cdq up` again to resume"
    ))
}

fn failed(failures: &[Failure]) -> CdqError {
    let roots: Vec<&str> = failures
        .iter()
        .filter(|f| !matches!(f.reason, Reason::Blocked { .. }))
        .map(|f| f.service.as_str())
        .collect();
    let first = roots
        .first()
        .copied()
        .unwrap_or(failures[0].service.as_str());
    // A service that never ran has no logs to point at.
    let ran = failures
        .iter()
        .any(|f| f.service == first && f.state.is_some());
    let hint = if ran {
        format!(
            "see `cdq logs {first}`; fix the cause and run `cdq up` again (healthy services stay up)"
        )
    } else {
        "fix the cause above and run `cdq up` again (healthy services stay up)".to_string()
    };
    let names = crate::error::quoted_list(roots);
    let rolled: Vec<String> = failures
        .iter()
        .filter(|f| matches!(f.rollback, Some(Rollback::Restored { .. })))
        .map(|f| format!("`{}`", f.service))
        .collect();
    if rolled.is_empty() {
        return CdqError::new(Kind::Unhealthy, format!("{names} did not become healthy"))
            .hint(hint);
    }
    // `cdq logs` would show the previous container now: the failed one's lines are above.
    CdqError::new(
        Kind::Unhealthy,
        format!(
            "{names} did not become healthy; rolled back {}: the previous container is running and healthy",
            rolled.join(", ")
        ),
    )
    .hint(
        "the new container's last log lines are above; fix the image or the settings and run          `cdq up` again (the previous container keeps serving until then)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(rollback: Option<Rollback>) -> Failure {
        Failure {
            service: "server".into(),
            reason: Reason::Exited {
                code: Some(1),
                oom: false,
            },
            state: Some(crate::engine::RunState::Exited),
            health: None,
            last_probe: None,
            logs: vec![],
            rollback,
        }
    }

    #[test]
    fn a_rolled_back_upgrade_says_so_and_exits_4() {
        let e = outcome_error(&Outcome::Failed(vec![failure(Some(Rollback::Restored {
            image: "cd-server:3.2.0".into(),
        }))]))
        .unwrap();
        assert_eq!(e.kind.exit_code(), 4);
        assert_eq!(
            e.message,
            "`server` did not become healthy; rolled back `server`: the previous container is running and healthy"
        );
        assert!(
            e.hint
                .unwrap()
                .starts_with("the new container's last log lines are above")
        );
        // A rollback that failed is not reported as one.
        let e = outcome_error(&Outcome::Failed(vec![failure(Some(Rollback::Failed {
            why: "x".into(),
        }))]))
        .unwrap();
        assert_eq!(e.message, "`server` did not become healthy");
    }
}
