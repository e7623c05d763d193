//! The `io.cdq.config-hash` of a service: what decides whether its container must be
//! recreated. It covers the resolved service spec and the contents of its read-only bind
//! mounts (the config files cdq rendered), so editing `redis.conf` recreates redis and
//! nothing else. Read-write mounts are data: only their path counts.
//!
//! The hash is cdq's own (not compose's), and versioned by `SCHEME`: a new cdq that hashes
//! the same inputs the same way never recreates an unchanged stack.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::project::{Project, ServiceSpec};

const SCHEME: &str = "cdq-config-hash-v1";

/// Files not yet on disk (a render held in memory for `--dry-run`), by absolute path; they
/// win over what is on disk.
pub type Overlay = BTreeMap<PathBuf, Vec<u8>>;

fn hash_path(h: &mut Sha256, p: &Path, overlay: &Overlay) -> anyhow::Result<()> {
    if let Some(bytes) = overlay.get(p) {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
        return Ok(());
    }
    let overlay_children: BTreeSet<OsString> = overlay
        .keys()
        .filter_map(|k| k.strip_prefix(p).ok())
        .filter_map(|rel| {
            rel.components()
                .next()
                .map(|c| c.as_os_str().to_os_string())
        })
        .filter(|c| !c.is_empty())
        .collect();
    let meta = match std::fs::metadata(p) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading `{}`", p.display()))),
    };
    let is_dir = meta.as_ref().is_some_and(|m| m.is_dir()) || !overlay_children.is_empty();
    if meta.is_none() && !is_dir {
        // A mount source that does not exist yet is created empty by the engine.
        h.update(b"missing\0");
        return Ok(());
    }
    if is_dir {
        let mut names: BTreeSet<OsString> = overlay_children;
        if meta.is_some() {
            for e in std::fs::read_dir(p)
                .with_context(|| format!("listing `{}`", p.display()))?
                .flatten()
            {
                names.insert(e.file_name());
            }
        }
        for n in names {
            h.update(n.as_encoded_bytes());
            h.update(b"\0");
            hash_path(h, &p.join(&n), overlay)?;
        }
    } else {
        let bytes = std::fs::read(p).with_context(|| format!("reading `{}`", p.display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(())
}

pub fn service_hash(s: &ServiceSpec, overlay: &Overlay) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(SCHEME.as_bytes());
    h.update(serde_json::to_vec(s)?);
    for b in s.binds.iter().filter(|b| b.read_only) {
        h.update(b.source.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        hash_path(&mut h, &b.source, overlay)?;
    }
    Ok(hex::encode(h.finalize()))
}

pub fn project_hashes(p: &Project, overlay: &Overlay) -> anyhow::Result<BTreeMap<String, String>> {
    p.services
        .iter()
        .map(|(n, s)| Ok((n.clone(), service_hash(s, overlay)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interpolate::Vars;

    #[test]
    fn config_file_contents_change_the_hash_data_does_not() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("conf")).unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("conf/a.conf"), "x=1").unwrap();
        let text = "services:\n  a:\n    image: img\n    volumes: [\"./conf:/etc/a:ro\", \"./data:/data\"]\n";
        let p = crate::project::parse(Path::new("c.yaml"), d.path(), text, &Vars::default(), "t")
            .unwrap();
        let none = Overlay::new();
        let h1 = service_hash(&p.services["a"], &none).unwrap();
        std::fs::write(d.path().join("data/db"), "rows").unwrap();
        assert_eq!(
            h1,
            service_hash(&p.services["a"], &none).unwrap(),
            "data must not count"
        );
        // An in-memory render predicts the hash the written files will have.
        let overlay: Overlay = [(d.path().join("conf/a.conf"), b"x=2".to_vec())]
            .into_iter()
            .collect();
        let predicted = service_hash(&p.services["a"], &overlay).unwrap();
        assert_ne!(h1, predicted);
        std::fs::write(d.path().join("conf/a.conf"), "x=2").unwrap();
        assert_eq!(
            predicted,
            service_hash(&p.services["a"], &none).unwrap(),
            "config must count"
        );
        // A file only in the overlay, inside a mounted directory, counts too.
        let overlay: Overlay = [(d.path().join("conf/new.conf"), b"y".to_vec())]
            .into_iter()
            .collect();
        assert_ne!(predicted, service_hash(&p.services["a"], &overlay).unwrap());
    }
}
