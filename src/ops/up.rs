//! `up` as engine-generic operations: observe what runs (by label), plan with pure code, and
//! execute the plan with health-gated start; then turn the outcome into the error the user
//! sees. Returns data and errors; never prints (the command layer does, through `ui`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::confighash::{self, Overlay};
use crate::engine::{Container, Engine, Health, explain};
use crate::error::{CdqError, Kind};
use crate::execute::{self, Failure, Options, Outcome, Progress, Reason};
use crate::plan::{self, Plan};
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
    /// Nothing to create, recreate or start, and no container still starting or unhealthy.
    pub fn is_current(&self) -> bool {
        self.plan.is_noop()
            && self
                .containers
                .iter()
                .all(|c| !matches!(c.health, Some(Health::Starting | Health::Unhealthy)))
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
    let plan = plan::plan(project, &hashes, &containers, &networks);
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
        Outcome::Interrupted { waiting } => Some(
            CdqError::new(
                Kind::Interrupted,
                format!(
                    "interrupted while waiting for {}",
                    if waiting.is_empty() {
                        "services".to_string()
                    } else {
                        waiting.join(", ")
                    }
                ),
            )
            .hint("containers were left as they are; run `cdq up` again to resume"),
        ),
        Outcome::Failed(failures) => Some(failed(failures)),
    }
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
    let names = roots
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    CdqError::new(Kind::Unhealthy, format!("{names} did not become healthy")).hint(hint)
}
