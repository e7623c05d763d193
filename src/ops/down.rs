//! `down` as engine-generic operations: stop and remove the stack's containers in reverse
//! dependency order, remove its networks (with the retries Docker's endpoint faults need),
//! and, on a purge, delete what cdq made on disk. Returns what it did; never prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Container, Engine, EngineError, explain};
use crate::error::CdqError;
use crate::plan;
use crate::project::Project;
use crate::settings::Settings;

/// One thing [`teardown`] removed (or left), as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Container(String),
    Network(String, NetworkRemoval),
}

/// Stops and removes every container labelled with `name` (the services in reverse
/// dependency order, in waves), telling `done` about each as it goes. Returns every endpoint
/// name the stack may have left on its networks (its containers, listed or planned), for
/// [`remove_networks`]. Stops at the first engine error.
pub async fn remove_containers<E: Engine>(
    engine: &E,
    name: &str,
    project: Option<&Project>,
    grace: Duration,
    done: &mut impl FnMut(Removed),
) -> Result<Vec<String>, CdqError> {
    let containers = engine.list_containers(name).await.map_err(explain)?;
    let present: Vec<String> = containers
        .iter()
        .filter_map(|c| c.service().map(str::to_string))
        .collect();
    for wave in stop_waves(project, &present) {
        let jobs = containers
            .iter()
            .filter(|c| c.service().is_some_and(|x| wave.iter().any(|w| w == x)))
            .map(|c| remove(engine, c, grace));
        for n in futures_util::future::try_join_all(jobs)
            .await
            .map_err(explain)?
        {
            done(Removed::Container(n));
        }
    }
    // Containers without a service label (one-offs) that carry our project label.
    for c in containers.iter().filter(|c| c.service().is_none()) {
        remove(engine, c, grace).await.map_err(explain)?;
    }
    // Every endpoint name this stack may have left: its containers, listed or planned.
    let mut ours: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
    if let Some(p) = project {
        ours.extend(p.services.keys().map(|s| plan::container_name(name, s)));
    }
    ours.sort();
    ours.dedup();
    Ok(ours)
}

/// Removes the project's networks once its containers are gone ([`remove_network`] each).
pub async fn remove_networks<E: Engine>(
    engine: &E,
    name: &str,
    ours: &[String],
    done: &mut impl FnMut(Removed),
) -> Result<(), CdqError> {
    for n in engine.list_networks(name).await.map_err(explain)? {
        let r = remove_network(engine, &n, ours).await?;
        done(Removed::Network(n, r));
    }
    Ok(())
}

async fn remove<E: Engine>(
    engine: &E,
    c: &Container,
    grace: Duration,
) -> Result<String, EngineError> {
    engine.stop_container(&c.id, grace).await?;
    engine.remove_container(&c.id).await?;
    Ok(c.name.clone())
}

/// Waves of services to stop: containers the project does not know first, then the
/// project's start waves in reverse, each holding only the services present.
pub fn stop_waves(project: Option<&Project>, present: &[String]) -> Vec<Vec<String>> {
    let known: Vec<Vec<String>> = project
        .map(|p| {
            p.start_waves()
                .into_iter()
                .rev()
                .map(|w| {
                    w.into_iter()
                        .filter(|s| present.iter().any(|x| x == s))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .filter(|w| !w.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let unknown: Vec<String> = present
        .iter()
        .filter(|s| !known.iter().flatten().any(|k| k == *s))
        .cloned()
        .collect();
    let mut waves = Vec::new();
    if !unknown.is_empty() {
        waves.push(unknown);
    }
    waves.extend(known);
    waves
}

/// How long `down` keeps retrying a network the daemon says still has endpoints, after
/// force-removing the stack's own: long enough for an endpoint released a moment late, short
/// enough not to stall on the lost count (moby/moby#42119) that no wait clears.
const NETWORK_RETRY: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// What became of a stack's network at `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkRemoval {
    Removed,
    /// The daemon counts endpoints on it that nothing holds (a Docker fault, moby/moby#42119,
    /// seen here with about 100 containers): it stays until Docker restarts. Harmless: the
    /// next `up` uses it again.
    LeftByDocker,
}

/// Removes a stack's network once its containers are gone. When the daemon refuses ("has
/// active endpoints"), a container that is not the stack's may still be attached (the user
/// connected it: an error naming it, the container left alone); or the daemon kept endpoints
/// of removed containers (a Docker fault): those of the stack's names (`ours`) are
/// force-disconnected and the removal retried for a few seconds. What is still refused then
/// is a count the daemon keeps wrong, which only a restart of Docker clears.
pub async fn remove_network<E: Engine>(
    engine: &E,
    network: &str,
    ours: &[String],
) -> Result<NetworkRemoval, CdqError> {
    let mut delays = NETWORK_RETRY.iter();
    loop {
        match engine.remove_network(network).await {
            Ok(()) => return Ok(NetworkRemoval::Removed),
            Err(EngineError::NetworkInUse(_)) => {}
            Err(e) => return Err(explain(e)),
        }
        let attached = engine.network_endpoints(network).await.map_err(explain)?;
        let foreign: Vec<&String> = attached.iter().filter(|a| !ours.contains(a)).collect();
        if !foreign.is_empty() {
            let names = foreign
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CdqError::failure(format!(
                "network `{network}` is still used by {names}, not part of this stack"
            ))
            .hint(format!(
                "disconnect it (`docker network disconnect {network} {}`) and run `cdq down` again",
                foreign[0]
            )));
        }
        // What is attached is ours now; endpoints left under our names are removed once,
        // at the first refusal (no retry has been used yet).
        if delays.len() == NETWORK_RETRY.len() {
            for e in ours {
                engine.force_disconnect(network, e).await.map_err(explain)?;
            }
        }
        let Some(d) = delays.next() else {
            return Ok(NetworkRemoval::LeftByDocker);
        };
        tokio::time::sleep(*d).await;
    }
}

/// What a purge deletes: the data directory, the passwords, and the rendered `.env` and
/// `confd/`.
pub fn purge_targets(s: &Settings) -> Vec<PathBuf> {
    vec![
        s.data_dir.clone(),
        crate::secrets::path(&s.deploy_dir),
        s.deploy_dir.join(".env"),
        s.deploy_dir.join("confd"),
    ]
}

/// Deletes `targets`; returns those that existed. Errors name the path.
pub fn purge(targets: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut deleted = Vec::new();
    for p in targets {
        match delete(p) {
            Ok(()) => deleted.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("deleting `{}`", p.display())));
            }
        }
    }
    Ok(deleted)
}

fn delete(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

/// Refuses a purge that would delete more than the stack's own data.
pub fn guard_purge(s: &Settings) -> Result<(), CdqError> {
    let d = &s.data_dir;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if d.parent().is_none() || s.deploy_dir.starts_with(d) || home.as_deref() == Some(d.as_path()) {
        return Err(CdqError::usage(format!(
            "refusing to purge `{}`: it holds more than this stack's data",
            d.display()
        ))
        .hint("set `data_dir` to a directory of its own"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::engine::fake::FakeEngine;
    use crate::engine::{CreateSpec, Engine, ImageInfo, LABEL_PROJECT};
    use crate::error::Kind;
    use crate::project::{ServiceSpec, parse};

    const NET: &str = "demo_default";

    async fn engine() -> FakeEngine {
        let e = FakeEngine::new();
        let labels = BTreeMap::from([(LABEL_PROJECT.to_string(), "demo".to_string())]);
        e.ensure_network(NET, &labels).await.unwrap();
        e
    }

    fn ours() -> Vec<String> {
        vec!["demo-db-1".into(), "demo-app-1".into()]
    }

    use super::{NetworkRemoval, remove_network};

    #[tokio::test(start_paused = true)]
    async fn an_unused_network_goes_at_once() {
        let e = engine().await;
        let r = remove_network(&e, NET, &ours()).await.unwrap();
        assert_eq!(r, NetworkRemoval::Removed);
        assert!(e.list_networks("demo").await.unwrap().is_empty());
        assert!(!e.calls().iter().any(|c| c.starts_with("force_disconnect")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_endpoint_of_ours_is_removed_by_force() {
        let e = engine().await;
        e.leave_stale_endpoint(NET, "demo-db-1");
        let t = tokio::time::Instant::now();
        let r = remove_network(&e, NET, &ours()).await.unwrap();
        assert_eq!(r, NetworkRemoval::Removed);
        assert!(e.list_networks("demo").await.unwrap().is_empty());
        assert!(
            e.calls()
                .contains(&"force_disconnect demo_default demo-db-1".to_string())
        );
        assert!(
            t.elapsed() <= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }

    /// The fault seen on this machine: nothing to disconnect, so after 3.75 s of retries
    /// the network is reported as left by Docker (`down` warns and exits 0).
    #[tokio::test(start_paused = true)]
    async fn a_leaked_endpoint_count_leaves_the_network_after_retrying() {
        let e = engine().await;
        e.leak_endpoint_count(NET);
        let t = tokio::time::Instant::now();
        let r = remove_network(&e, NET, &ours()).await.unwrap();
        assert_eq!(r, NetworkRemoval::LeftByDocker);
        assert_eq!(t.elapsed(), Duration::from_millis(3750));
        let tries = e
            .calls()
            .iter()
            .filter(|c| c.starts_with("remove_network"))
            .count();
        assert_eq!(tries, 5);
        assert_eq!(
            e.list_networks("demo").await.unwrap(),
            vec![NET.to_string()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_that_is_not_ours_is_named_and_left_alone() {
        let e = engine().await;
        e.add_image(
            "img",
            ImageInfo {
                id: "sha256:1".into(),
                arch: "amd64".into(),
                os: "linux".into(),
                user: String::new(),
                size: 1,
            },
        );
        let d = std::path::Path::new("/nonexistent");
        let p = parse(
            &d.join("c.yaml"),
            d,
            "services:\n  debug:\n    image: img\n",
            &Default::default(),
            "other",
        )
        .unwrap();
        let svc: &ServiceSpec = &p.services["debug"];
        let id = e
            .create_container(&CreateSpec {
                name: "toolbox".into(),
                service: svc,
                labels: BTreeMap::new(),
                network: NET.into(),
                aliases: vec![],
            })
            .await
            .unwrap();
        e.start_container(&id).await.unwrap();
        let err = remove_network(&e, NET, &ours()).await.unwrap_err();
        assert_eq!(err.kind, Kind::Failure);
        assert_eq!(
            err.message,
            "network `demo_default` is still used by `toolbox`, not part of this stack"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some(
                "disconnect it (`docker network disconnect demo_default toolbox`) and run \
                 `cdq down` again"
            )
        );
        assert!(!e.calls().iter().any(|c| c.starts_with("force_disconnect")));
        assert_eq!(
            e.network_endpoints(NET).await.unwrap(),
            vec!["toolbox".to_string()]
        );
    }
}
