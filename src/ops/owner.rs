//! Who a project name belongs to, asked of the engine before `up`, `down` or `status` act on
//! it: one stack has one owner (the deploy directory its containers' labels name), and a
//! network or container that carries the stack's name but not its labels is someone else's.
//! Also finds the duplicate networks two racing creates can leave (Docker allows several of
//! one name) and says which one to keep.
//!
//! Must not: remove, join or adopt anything (callers act on what it returns), or print.

use std::path::Path;

use crate::engine::{
    COMPOSE_PROJECT, COMPOSE_WORKING_DIR, Container, Engine, EngineError, LABEL_PROJECT,
    NetworkInfo, explain,
};
use crate::error::{CdqError, Kind};

/// Refuses when the project's containers were started from another deploy directory
/// (their `com.docker.compose.project.working_dir` label). Containers without that label
/// (made by a cdq before it was set) are taken as this directory's.
pub fn check_owner(name: &str, dir: &Path, containers: &[Container]) -> Result<(), CdqError> {
    let here = canonical(dir);
    let mut others: Vec<(&str, &str)> = containers
        .iter()
        .filter_map(|c| {
            let d = c.labels.get(COMPOSE_WORKING_DIR)?;
            (canonical(Path::new(d)) != here).then_some((d.as_str(), c.name.as_str()))
        })
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    others.sort();
    let owner = others[0].0;
    let names: Vec<String> = others
        .iter()
        .filter(|(d, _)| *d == owner)
        .map(|(_, n)| format!("`{n}`"))
        .collect();
    Err(CdqError::new(
        Kind::Owned,
        format!(
            "project `{name}` belongs to the deploy directory `{owner}`, not `{}`: its containers ({}) were started from there",
            dir.display(),
            names.join(", ")
        ),
    )
    .hint(format!(
        "run cdq for that stack from its own directory (`--dir {owner}`), or give this one its own name: `-p NAME` (or `project:` in cdq.yaml)"
    )))
}

fn canonical(p: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The networks named `network`: cdq's for `project` (oldest first), or the error naming a
/// network of that name cdq did not make for it, and who uses it.
pub async fn networks<E: Engine>(
    engine: &E,
    project: &str,
    network: &str,
) -> Result<Vec<NetworkInfo>, CdqError> {
    let all = engine.networks_named(network).await.map_err(explain)?;
    if let Some(f) = all
        .iter()
        .find(|n| n.labels.get(LABEL_PROJECT).map(String::as_str) != Some(project))
    {
        let used = if f.containers.is_empty() {
            "no container is attached to it".to_string()
        } else {
            format!("it is used by {}", crate::error::quoted_list(&f.containers))
        };
        let whose = match (f.labels.get(LABEL_PROJECT), f.labels.get(COMPOSE_PROJECT)) {
            (Some(p), _) => format!(" (it is cdq project `{p}`'s)"),
            (None, Some(p)) => format!(" (it is compose project `{p}`'s)"),
            _ => String::new(),
        };
        return Err(CdqError::new(
            Kind::Owned,
            format!(
                "network `{network}` exists but cdq did not create it for project `{project}`{whose}; {used}"
            ),
        )
        .hint(format!(
            "cdq never joins a network it did not make: give this stack another name (`-p NAME`), or remove that network if nothing needs it (`docker network rm {network}`)"
        )));
    }
    Ok(all)
}

/// The networks named `network` that cdq made for `project` (others are left alone).
pub async fn ours_named<E: Engine>(
    engine: &E,
    project: &str,
    network: &str,
) -> Result<Vec<NetworkInfo>, CdqError> {
    let mut all = engine.networks_named(network).await.map_err(explain)?;
    all.retain(|n| n.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project));
    Ok(all)
}

/// Of several networks of the stack's name (left by two creates racing), the one to keep:
/// the one with the most containers attached, the oldest on a tie. The rest are duplicates.
pub fn keep_and_duplicates(mut nets: Vec<NetworkInfo>) -> (Option<NetworkInfo>, Vec<NetworkInfo>) {
    if nets.is_empty() {
        return (None, nets);
    }
    // Stable: among equals the oldest (first) wins.
    let best = nets
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| a.containers.len().cmp(&b.containers.len()).then(ib.cmp(ia)))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let keep = nets.remove(best);
    (Some(keep), nets)
}

/// Refuses when a container the plan would create has its name taken by a container cdq
/// did not make for this project (compose and `docker run` refuse the same).
pub async fn check_names<E: Engine>(
    engine: &E,
    project: &str,
    names: &[String],
) -> Result<(), CdqError> {
    for n in names {
        let c = match engine.inspect_container(n).await {
            Ok(c) => c,
            Err(EngineError::NotFound(_)) => continue,
            Err(e) => return Err(explain(e)),
        };
        if c.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project) {
            continue;
        }
        let whose = match (c.labels.get(LABEL_PROJECT), c.labels.get(COMPOSE_PROJECT)) {
            (Some(p), _) => format!("; it is cdq project `{p}`'s"),
            (None, Some(p)) => format!("; it is compose project `{p}`'s"),
            _ => String::new(),
        };
        return Err(CdqError::new(
            Kind::Owned,
            format!(
                "a container named `{n}` exists but cdq did not create it for project `{project}` (image `{}`, {}{whose})",
                c.image,
                format!("{:?}", c.state).to_lowercase()
            ),
        )
        .hint(format!(
            "cdq never adopts or removes a container it did not make: give this stack another name (`-p NAME`), or remove that container if nothing needs it (`docker rm -f {n}`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, containers: &[&str]) -> NetworkInfo {
        NetworkInfo {
            id: id.into(),
            name: "p_default".into(),
            labels: Default::default(),
            containers: containers.iter().map(|c| c.to_string()).collect(),
            created: id.into(),
        }
    }

    #[test]
    fn the_network_with_containers_is_kept_else_the_oldest() {
        let (k, d) = keep_and_duplicates(vec![net("a", &[]), net("b", &["x"])]);
        assert_eq!(k.unwrap().id, "b");
        assert_eq!(d.len(), 1);
        let (k, d) = keep_and_duplicates(vec![net("a", &[]), net("b", &[])]);
        assert_eq!(k.unwrap().id, "a");
        assert_eq!(d[0].id, "b");
        let (k, d) = keep_and_duplicates(vec![]);
        assert!(k.is_none() && d.is_empty());
    }

    #[test]
    fn containers_from_another_directory_are_refused_naming_it() {
        let mut c = crate::engine::Container {
            id: "1".into(),
            name: "p-redis-1".into(),
            image: "redis".into(),
            labels: [(COMPOSE_WORKING_DIR.to_string(), "/elsewhere".to_string())]
                .into_iter()
                .collect(),
            state: crate::engine::RunState::Running,
            health: None,
            last_probe: None,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            ports: vec![],
            networks: vec![],
            restart: "no".into(),
            binds: vec![],
            env: vec![],
        };
        let e = check_owner("p", Path::new("/here"), std::slice::from_ref(&c)).unwrap_err();
        assert_eq!(e.kind, Kind::Owned);
        assert!(e.message.contains("`/elsewhere`"), "{}", e.message);
        assert!(e.message.contains("`p-redis-1`"), "{}", e.message);
        assert!(e.hint.unwrap().contains("-p NAME"));
        c.labels.clear();
        assert!(check_owner("p", Path::new("/here"), &[c]).is_ok());
    }
}
