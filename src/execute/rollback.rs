//! The rollback of a failed upgrade, kept apart from the executor it hooks into: when `up`
//! recreates a service because its image or rendered config changed, the previous container
//! waits, stopped, under [`previous_name`] until the new one is healthy; if the new one
//! fails, [`roll_back`] puts the previous one back under its own name and waits for it.
//!
//! Must not: print (phases go to the [`Progress`](super::Progress) sink) or touch another
//! service's containers.

use std::time::Duration;

use tokio::sync::broadcast;

use super::{Phase, Rollback, Shared, Step, wait_ready};
use crate::engine::{Engine, EngineError, EventKind};
use crate::plan::container_name;
use crate::project::ServiceSpec;

/// Aborts a helper task when the function that spawned it returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A recreate that replaces a container cdq made with a newer image or config: the kind
/// that rolls back when its successor fails.
pub(super) fn is_upgrade(reason: &str) -> bool {
    reason.starts_with("image changed") || reason == "its rendered config changed"
}

/// The name the previous container of an upgrade waits under.
pub fn previous_name(project: &str, service: &str) -> String {
    format!("{}-previous", container_name(project, service))
}

/// Puts the previous container of a failed upgrade back: the new one (if created) is
/// stopped and removed, the previous one gets its name back, starts, and is waited for like
/// any start. Returns `failed` with what became of it in [`Failure::rollback`]. Its data
/// directories are the ones it had: the new container shared them.
pub(super) async fn roll_back<E: Engine>(
    sh: &Shared<E>,
    name: &str,
    spec: &ServiceSpec,
    new: Option<&str>,
    previous: &str,
    failed: Step,
) -> Step {
    let Step::Failed(mut f) = failed else {
        return failed;
    };
    sh.progress.phase(name, &Phase::RollingBack);
    let result: Result<Rollback, EngineError> = async {
        if let Some(n) = new {
            let grace = spec.stop_grace_period.unwrap_or(Duration::from_secs(10));
            sh.engine.stop_container(n, grace).await?;
            sh.engine.remove_container(n).await?;
        }
        sh.engine
            .rename_container(previous, &container_name(&sh.project.name, name))
            .await?;
        // The `die` of the stop before the upgrade may still be on its way through the event
        // pump: only what follows this start counts.
        let mut raw = sh.events.subscribe();
        let (tx, events) = broadcast::channel(256);
        let prev_id = previous.to_string();
        let relay = tokio::spawn(async move {
            let mut started = false;
            loop {
                match raw.recv().await {
                    Ok(ev) if ev.container_id == prev_id => {
                        started |= ev.kind == EventKind::Start;
                        if started && tx.send(ev).is_err() {
                            break;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let _relay = AbortOnDrop(relay);
        {
            let _guard = if spec.ports.is_empty() {
                None
            } else {
                Some(sh.port_lock.lock().await)
            };
            sh.engine.start_container(previous).await?;
        }
        let image = sh
            .engine
            .inspect_container(previous)
            .await
            .map(|c| c.image)
            .unwrap_or_default();
        Ok(
            match wait_ready(sh, name, spec, previous, events, sh.opts.deadline(spec)).await {
                Ok(Some(_)) => Rollback::Restored { image },
                Ok(None) => Rollback::Failed {
                    why: "interrupted while the previous container started".into(),
                },
                Err(Step::Failed(g)) => Rollback::Failed {
                    why: format!(
                        "the previous container did not become healthy either: {:?}",
                        g.reason
                    ),
                },
                Err(Step::Engine(e)) => return Err(e),
            },
        )
    }
    .await;
    let rollback = result.unwrap_or_else(|e| Rollback::Failed {
        why: format!("the Docker daemon failed during the rollback: {e}"),
    });
    sh.progress.phase(
        name,
        &Phase::RolledBack {
            healthy: matches!(rollback, Rollback::Restored { .. }),
        },
    );
    f.rollback = Some(rollback);
    Step::Failed(f)
}
