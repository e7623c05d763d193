//! The data directories a service mounts read-write, prepared before its container is
//! created: made under a temporary name, handed to the uid the image runs as (directly as
//! root, else through a one-off container of that image), marked as this project's, then
//! renamed into place. A directory cdq did not make is never mounted or changed.
//!
//! Must not: print, or touch a directory that is neither missing, empty, marked by this
//! project nor adopted.

use std::collections::BTreeMap;
use std::path::Path;

use super::Shared;
use crate::engine::{self, Engine, OneOff};
use crate::fsio;
use crate::project::ServiceSpec;

/// Creates missing bind-mount sources for read-write mounts (data directories), owned by the
/// user the image runs as, read from the image's config, and marks each as made by cdq for
/// this project (`fsio::write_mark`). An existing directory is mounted only when it is
/// empty or carries that mark (or the user adopted it, which writes the mark): a foreign
/// one would be chowned and written into by the service's entrypoint.
pub(super) async fn prepare_binds<E: Engine>(
    sh: &Shared<E>,
    spec: &ServiceSpec,
) -> Result<(), String> {
    let _guard = sh.dir_lock.lock().await;
    for b in &spec.binds {
        if b.read_only {
            if !b.source.exists() {
                return Err(format!(
                    "mount source `{}` does not exist (run `cdq render`)",
                    b.source.display()
                ));
            }
            continue;
        }
        // No directory is made, and nothing marked, through a link someone else put on the
        // way (the service directory itself is judged below, by `classify`'s rule).
        if let Some(parent) = b.source.parent() {
            fsio::refuse_symlinks_below(&sh.project.dir, parent).map_err(|e| e.to_string())?;
        }
        let check = fsio::classify(&b.source, &sh.project.name);
        match check.state {
            fsio::DirState::Missing if check.link.is_none() => {}
            _ if check.usable() => continue,
            _ => {
                return Err(format!(
                    "{}: cdq does not mount a data directory it did not make (run `cdq preflight` for the fixes)",
                    check.describe()
                ));
            }
        }
        // Made under a temporary name and renamed into place only once it has its owner and
        // its mark: a cdq killed in between leaves a temp dir (redone next time), never a
        // data directory with the wrong owner that the next run would take as finished.
        let parent = b
            .source
            .parent()
            .ok_or_else(|| format!("`{}` has no parent", b.source.display()))?;
        let leaf = b
            .source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut created = fsio::create_dirs_io(parent).map_err(|(_, e)| {
            format!("cannot create data directory `{}`: {e}", b.source.display())
        })?;
        // A mark left by a run killed before its rename still knows the parents it made.
        if let Some(old) = fsio::read_mark(&b.source).filter(|m| m.project == sh.project.name) {
            created.splice(0..0, old.created);
        }
        let tmp = parent.join(format!(".{leaf}.cdq-new"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)
            .map_err(|e| format!("cannot create data directory `{}`: {e}", b.source.display()))?;
        if let Some((uid, gid)) = image_owner(sh, &spec.image).await? {
            hand_over(sh, &spec.image, &tmp, uid, gid).await?;
        }
        let mark = fsio::Mark {
            project: sh.project.name.clone(),
            deploy_dir: sh.project.dir.clone(),
            created,
        };
        fsio::write_mark(&b.source, &mark)
            .map_err(|e| format!("cannot mark data directory `{}`: {e}", b.source.display()))?;
        std::fs::rename(&tmp, &b.source)
            .map_err(|e| format!("cannot create data directory `{}`: {e}", b.source.display()))?;
    }
    Ok(())
}

/// The (uid, gid) the image runs as; None for root (its entrypoint drops privileges itself).
async fn image_owner<E: Engine>(sh: &Shared<E>, image: &str) -> Result<Option<(u32, u32)>, String> {
    let info = sh
        .engine
        .image(image)
        .await
        .map_err(|e| format!("inspecting image `{image}`: {e}"))?
        .ok_or_else(|| format!("image `{image}` is not on this host"))?;
    let user = info.user.trim();
    if user.is_empty()
        || user == "root"
        || user == "0"
        || user.starts_with("0:")
        || user.starts_with("root:")
    {
        return Ok(None);
    }
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    if let Ok(uid) = u.parse::<u32>() {
        let gid = g.and_then(|g| g.parse().ok()).unwrap_or(uid);
        return Ok(Some((uid, gid)));
    }
    // A user name: ask the image itself what it maps to.
    let (code, out) = sh
        .engine
        .run_oneoff(&OneOff {
            image: image.to_string(),
            user: user.to_string(),
            entrypoint: vec!["sh".into(), "-c".into(), "id -u; id -g".into()],
            binds: vec![],
            labels: oneoff_labels(&sh.project.name),
            ulimits: vec![],
        })
        .await
        .map_err(|e| format!("resolving user `{user}` of `{image}`: {e}"))?;
    let nums: Vec<u32> = out
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match (code, nums.as_slice()) {
        (0, [uid, gid, ..]) => Ok(Some((*uid, *gid))),
        _ => Err(format!(
            "cannot resolve user `{user}` of image `{image}`: {}",
            out.trim()
        )),
    }
}

fn oneoff_labels(project: &str) -> BTreeMap<String, String> {
    [
        (engine::LABEL_PROJECT, project),
        (engine::COMPOSE_ONEOFF, "True"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn hand_over<E: Engine>(
    sh: &Shared<E>,
    image: &str,
    dir: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    if crate::host::is_root() {
        return std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot hand `{}` to uid {uid}: {e}", dir.display()));
    }
    // Without root, the image's own root user does it (the engine runs as root).
    let (code, out) = sh
        .engine
        .run_oneoff(&OneOff {
            image: image.to_string(),
            user: "0".into(),
            entrypoint: vec!["chown".into(), format!("{uid}:{gid}"), "/cdq-target".into()],
            binds: vec![format!("{}:/cdq-target", dir.display())],
            labels: oneoff_labels(&sh.project.name),
            ulimits: vec![],
        })
        .await
        .map_err(|e| format!("handing `{}` to uid {uid}: {e}", dir.display()))?;
    if code != 0 {
        return Err(format!(
            "cannot hand `{}` to uid {uid}: {}",
            dir.display(),
            out.trim()
        ));
    }
    Ok(())
}
