//! `down` as engine-generic operations: stop and remove the stack's containers in reverse
//! dependency order, remove its networks (with the retries Docker's endpoint faults need),
//! and, on a purge, delete what carries cdq's mark for this project on disk (and nothing
//! else: what it leaves, it lists with the reason). Returns what it did; never prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Container, Engine, EngineError, explain};
use crate::error::CdqError;
use crate::fsio;
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
            let names = crate::error::quoted_list(&foreign);
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

/// What a purge did: what it deleted, and what it left with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    pub deleted: Vec<PathBuf>,
    pub left: Vec<(PathBuf, String)>,
    /// The purge stopped early (a signal): `deleted` is what it did, the rest is untouched
    /// and `left` is not filled in.
    pub interrupted: bool,
}

/// How deep under `data_dir` a purge looks for marks (`data/zookeeper/.data.cdq-mark` is 2).
const MARK_DEPTH: usize = 3;

/// Deletes what carries cdq's mark for `project`: each data directory cdq made (its mark
/// beside it, see `fsio::write_mark`) and the parents it made for them once empty, the
/// rendered `.env` and `confd/` files (cdq's header, or the render manifest), `secrets.env`
/// (cdq's header); then `data_dir` itself only if it is left empty. Everything else stays,
/// listed with the reason. Nothing is followed through a symlink. Errors name the path.
pub fn purge(s: &Settings, project: &str) -> anyhow::Result<Purged> {
    purge_until(s, project, &|| false)
}

/// [`purge`], asking `stop` before each deletion: once it says yes, the deletion under way
/// has finished (a data directory goes whole, with its mark) and nothing more is deleted;
/// the result says `interrupted`, with what was deleted. A re-run deletes the rest.
pub fn purge_until(s: &Settings, project: &str, stop: &dyn Fn() -> bool) -> anyhow::Result<Purged> {
    let mut out = Purged::default();
    purge_data(&s.data_dir, project, &mut out, stop)?;
    if !out.interrupted {
        purge_rendered(&s.deploy_dir, &mut out, stop)?;
    }
    if out.interrupted {
        out.left.clear();
    }
    Ok(out)
}

/// True (and `out` marked interrupted) when the purge must stop before its next deletion.
fn halted(out: &mut Purged, stop: &dyn Fn() -> bool) -> bool {
    if !out.interrupted && stop() {
        out.interrupted = true;
    }
    out.interrupted
}

fn is_dir_nofollow(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn purge_data(
    data_dir: &Path,
    project: &str,
    out: &mut Purged,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    if !data_dir.exists() {
        return Ok(());
    }
    let mut parents: Vec<PathBuf> = Vec::new();
    for mark_file in fsio::find_marks(data_dir, MARK_DEPTH) {
        let (Some(dir), Some(mark)) = (
            fsio::marked_by(&mark_file),
            fsio::read_mark_file(&mark_file),
        ) else {
            continue;
        };
        if mark.project != project {
            if dir.exists() {
                out.left.push((
                    dir,
                    format!(
                        "made by cdq for project `{}` (deploy directory `{}`), not this one",
                        mark.project,
                        mark.deploy_dir.display()
                    ),
                ));
            }
            continue;
        }
        if halted(out, stop) {
            return Ok(());
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                // An adopted link: the link is cdq's to remove, what it points to is not.
                let target = std::fs::read_link(&dir).unwrap_or_default();
                remove_path(&dir, false)?;
                out.deleted.push(dir.clone());
                out.left.push((
                    target,
                    format!(
                        "the data `{}` pointed to (a symlink cdq was told to adopt): delete it yourself if you mean to",
                        dir.display()
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {
                remove_path(&dir, true)?;
                out.deleted.push(dir.clone());
            }
            Ok(_) => out
                .left
                .push((dir.clone(), "not a directory, so not cdq's".into())),
            Err(_) => {}
        }
        remove_path(&mark_file, false)?;
        parents.extend(mark.created);
    }
    // Parents cdq made for its directories, deepest first, only once empty.
    parents.sort();
    parents.dedup();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in parents
        .iter()
        .filter(|p| p.starts_with(data_dir) && *p != data_dir)
    {
        if halted(out, stop) {
            return Ok(());
        }
        rmdir_if_empty(p, out)?;
    }
    if halted(out, stop) {
        return Ok(());
    }
    if fsio::non_empty_dir(data_dir) {
        let mut names: Vec<String> = std::fs::read_dir(data_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            let p = data_dir.join(&n);
            if !out.left.iter().any(|(l, _)| *l == p || l.starts_with(&p)) {
                out.left
                    .push((p, "not made by cdq for this project".into()));
            }
        }
        out.left.push((
            data_dir.to_path_buf(),
            "the data directory still holds what is listed above".into(),
        ));
    } else {
        rmdir_if_empty(data_dir, out)?;
    }
    Ok(())
}

fn rmdir_if_empty(p: &Path, out: &mut Purged) -> anyhow::Result<()> {
    if !is_dir_nofollow(p) {
        return Ok(());
    }
    match std::fs::remove_dir(p) {
        Ok(()) => {
            out.deleted.push(p.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(fsio::io_error("deleting", p, &e).into()),
    }
}

fn remove_path(p: &Path, dir: bool) -> anyhow::Result<()> {
    let r = if dir {
        // remove_dir_all does not follow symlinks inside the tree.
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fsio::io_error("deleting", p, &e).into()),
    }
}

/// Every regular file under `dir` (not following symlinks), with symlinks listed apart.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, links: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_symlink() {
            links.push(p);
        } else if t.is_dir() {
            walk(&p, files, links);
        } else if t.is_file() {
            files.push(p);
        }
    }
}

fn purge_rendered(
    deploy_dir: &Path,
    out: &mut Purged,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let secrets = crate::secrets::path(deploy_dir);
    let header = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
            && std::fs::read(p).is_ok_and(|b| b.starts_with(crate::secrets::HEADER.as_bytes()))
    };
    if halted(out, stop) {
        return Ok(());
    }
    if std::fs::symlink_metadata(&secrets).is_ok() {
        if header(&secrets) {
            remove_path(&secrets, false)?;
            out.deleted.push(secrets);
        } else {
            out.left.push((
                secrets,
                "not generated by cdq (no cdq header), or a symlink".into(),
            ));
        }
    }
    let mut files = vec![deploy_dir.join(".env")];
    let mut links = Vec::new();
    let confd = deploy_dir.join("confd");
    if is_dir_nofollow(&confd) {
        walk(&confd, &mut files, &mut links);
    } else if std::fs::symlink_metadata(&confd).is_ok() {
        links.push(confd.clone());
    }
    for f in files {
        // Only regular files are read: a fifo named `.env` would block the read for good.
        if !std::fs::symlink_metadata(&f).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        if halted(out, stop) {
            return Ok(());
        }
        let rel = f.strip_prefix(deploy_dir).unwrap_or(&f);
        if crate::render::written_by_cdq(deploy_dir, rel, &bytes) {
            remove_path(&f, false)?;
            out.deleted.push(f);
        } else {
            out.left
                .push((f, "not written by cdq (no cdq header)".into()));
        }
    }
    for l in links {
        out.left.push((l, "a symlink cdq did not create".into()));
    }
    // Only the directories the render recorded creating, deepest first, once empty: an
    // empty directory someone else made under `confd/` stays.
    let mut dirs: Vec<PathBuf> = crate::render::manifest(deploy_dir)
        .dirs
        .into_iter()
        .map(|d| deploy_dir.join(d))
        .filter(|d| d.starts_with(deploy_dir) && *d != deploy_dir)
        .collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in dirs {
        if halted(out, stop) {
            return Ok(());
        }
        rmdir_if_empty(&d, out)?;
    }
    Ok(())
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

    /// Two data directories cdq made for `demo` (`a` and `b`, with files in them) and a
    /// `secrets.env` of cdq's, in a deploy directory of their own.
    fn purgeable() -> (tempfile::TempDir, crate::settings::Settings) {
        let d = tempfile::tempdir().unwrap();
        let s = crate::settings::load(
            d.path(),
            &crate::settings::Overrides {
                dir: Some(d.path().join("deploy")),
                project: Some("demo".into()),
                ..Default::default()
            },
        )
        .unwrap();
        for svc in ["a", "b"] {
            let dir = s.data_dir.join(svc);
            std::fs::create_dir_all(dir.join("inner")).unwrap();
            std::fs::write(dir.join("inner/file"), "data").unwrap();
            crate::fsio::write_mark(
                &dir,
                &crate::fsio::Mark {
                    project: "demo".into(),
                    deploy_dir: s.deploy_dir.clone(),
                    created: vec![s.data_dir.clone()],
                },
            )
            .unwrap();
        }
        std::fs::write(
            crate::secrets::path(&s.deploy_dir),
            format!("{}\nREDIS_PASSWORD=x\n", crate::secrets::HEADER),
        )
        .unwrap();
        (d, s)
    }

    /// A signal during a purge (`stop` says yes once the first deletion began): that
    /// deletion finishes — the directory and its mark go whole — and nothing more is
    /// deleted; the result says so. The re-run deletes the rest.
    #[test]
    fn a_stopped_purge_finishes_the_deletion_under_way_and_the_rerun_the_rest() {
        let (_d, s) = purgeable();
        let asked = std::cell::Cell::new(0);
        // Asked before each deletion: no at the first, yes from then on.
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 1
        };
        let p = super::purge_until(&s, "demo", &stop).unwrap();
        assert!(p.interrupted);
        assert_eq!(p.deleted.len(), 1, "{p:?}");
        let (gone, kept) = if p.deleted[0] == s.data_dir.join("a") {
            ("a", "b")
        } else {
            ("b", "a")
        };
        assert_eq!(p.deleted, vec![s.data_dir.join(gone)], "{p:?}");
        assert!(p.left.is_empty(), "{p:?}");
        assert!(!s.data_dir.join(gone).exists());
        assert!(!crate::fsio::mark_path(&s.data_dir.join(gone)).exists());
        let kept = s.data_dir.join(kept);
        assert!(kept.join("inner/file").exists(), "the other untouched");
        assert!(crate::fsio::read_mark(&kept).is_some());
        assert!(crate::secrets::path(&s.deploy_dir).exists());

        let again = super::purge(&s, "demo").unwrap();
        assert!(!again.interrupted);
        assert!(again.deleted.contains(&kept), "{again:?}");
        assert!(!s.data_dir.exists(), "{again:?}");
        assert!(!crate::secrets::path(&s.deploy_dir).exists());
    }

    /// A signal before the purge began: nothing at all is deleted.
    #[test]
    fn a_purge_stopped_before_it_began_deletes_nothing() {
        let (_d, s) = purgeable();
        let p = super::purge_until(&s, "demo", &|| true).unwrap();
        assert!(p.interrupted && p.deleted.is_empty(), "{p:?}");
        assert!(s.data_dir.join("a/inner/file").exists());
        assert!(s.data_dir.join("b/inner/file").exists());
        assert!(crate::secrets::path(&s.deploy_dir).exists());
    }

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
