//! `restore`: checks a `cdq-backup/1` file whole (every entry against the manifest's size
//! and sha256, nothing missing, nothing extra) before anything is written, then puts its
//! parts where the next `cdq up` finds them:
//!
//! - `cdq.yaml` and `secrets.env` back in place (0600), so the same passwords are rendered;
//! - the MySQL dump as `confd/mysql/init/90-cdq-restore.sql`: the image's entrypoint runs
//!   init SQL once, on an empty data directory, after cdq's own `01-cd.sql` has made the
//!   users with those passwords (one file in the init directory, no new code path in `up`);
//! - Redis's RDB as `dump.rdb` in its data directory, and as the base of its AOF (with
//!   `appendonly yes` Redis 7 reads only the AOF directory);
//! - the other data directories' files, with their owners and modes.
//!
//! What is already there is never overwritten: [`occupied`] lists it, the command refuses
//! unless confirmed, and then [`move_aside`] renames it (`<name>.before-restore-<time>`).
//!
//! Must not: print, prompt, or reach the engine.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::backup::{self, DATA, MANIFEST, MYSQL_DUMP, Manifest, REDIS_RDB, SECRETS, SETTINGS};
use crate::error::CdqError;

/// Where the MySQL dump goes, relative to the deploy directory.
pub const MYSQL_INIT: &str = "confd/mysql/init/90-cdq-restore.sql";
pub const MYSQL_INIT_NAME: &str = "90-cdq-restore.sql";

/// The base file of Redis's multi-part AOF (Redis 7's default names).
const AOF_BASE: &str = "appendonly.aof.1.base.rdb";

/// Where a restore puts things.
#[derive(Debug, Clone)]
pub struct Targets {
    pub deploy_dir: PathBuf,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    /// The uid each service's files are handed to (mysql's init SQL, redis's RDB).
    pub uids: BTreeMap<String, u32>,
    /// The project the restored data directories are marked for (`up` mounts only what
    /// carries this project's mark).
    pub project: String,
}

fn damaged(file: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    CdqError::usage(format!(
        "`{}` is not a complete cdq backup: {why}",
        file.display()
    ))
    .hint("nothing was written; use another copy of the backup (`cdq backup` makes one)")
    .into()
}

fn entries(file: &Path) -> anyhow::Result<tar::Archive<flate2::read::GzDecoder<BufReader<File>>>> {
    let f = File::open(file).with_context(|| format!("opening `{}`", file.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(
        BufReader::new(f),
    )))
}

/// Reads the whole file and checks it against its manifest; returns the manifest.
pub fn verify(file: &Path, meter: &dyn crate::bundle::Meter) -> anyhow::Result<Manifest> {
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut a = entries(file)?;
    let iter = a.entries().map_err(|e| damaged(file, e))?;
    for e in iter {
        let mut e = e.map_err(|e| damaged(file, e))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e
            .path()
            .map_err(|x| damaged(file, x))?
            .to_string_lossy()
            .into_owned();
        if path == MANIFEST {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).map_err(|x| damaged(file, x))?;
            meter.inc(bytes.len() as u64);
            manifest = Some(
                serde_json::from_slice(&bytes)
                    .map_err(|x| damaged(file, format!("its manifest does not parse: {x}")))?,
            );
        } else {
            // Hashed as it streams: a data file may be larger than memory.
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = e.read(&mut buf).map_err(|x| damaged(file, x))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
                meter.inc(n as u64);
            }
            seen.insert(path, (size, hex::encode(h.finalize())));
        }
    }
    // The tar stream ends before the gzip trailer: read to the end so its CRC and length are
    // checked too (a file cut in its last bytes is truncated all the same).
    std::io::copy(&mut a.into_inner(), &mut std::io::sink()).map_err(|x| damaged(file, x))?;
    meter.finish();
    let m = manifest.ok_or_else(|| damaged(file, "it has no manifest (truncated?)"))?;
    if m.format != backup::FORMAT {
        return Err(CdqError::usage(format!(
            "`{}` is a `{}` file; this cdq restores `{}`",
            file.display(),
            m.format,
            backup::FORMAT
        ))
        .hint("restore it with the cdq version that made it")
        .into());
    }
    for en in &m.entries {
        match seen.remove(&en.path) {
            None => return Err(damaged(file, format!("`{}` is missing", en.path))),
            Some((size, sum)) if size != en.size || sum != en.sha256 => {
                return Err(damaged(
                    file,
                    format!("`{}` does not match its checksum", en.path),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(damaged(file, format!("`{extra}` is not in its manifest")));
    }
    if !m.entries.iter().any(|e| e.path == SECRETS) {
        return Err(damaged(file, "it holds no `secrets.env`"));
    }
    Ok(m)
}

/// The paths a restore of `m` would write that already hold something.
pub fn occupied(m: &Manifest, t: &Targets) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut check = |p: PathBuf| {
        let full = match std::fs::read_dir(&p) {
            Ok(mut d) => d.next().is_some(),
            Err(_) => p.exists(),
        };
        if full && !out.contains(&p) {
            out.push(p);
        }
    };
    for e in &m.entries {
        match e.path.as_str() {
            SETTINGS => {
                // The same settings file is not in the way.
                let same = std::fs::read(&t.config_path)
                    .map(|b| hex::encode(Sha256::digest(&b)) == e.sha256)
                    .unwrap_or(false);
                if !same {
                    check(t.config_path.clone());
                }
            }
            SECRETS => check(crate::secrets::path(&t.deploy_dir)),
            MYSQL_DUMP => {
                check(t.deploy_dir.join(MYSQL_INIT));
                check(t.data_dir.join("mysql"));
            }
            REDIS_RDB => check(t.data_dir.join("redis")),
            p => {
                if let Some(rel) = p.strip_prefix(DATA)
                    && let Some(top) = Path::new(rel).components().next()
                {
                    check(t.data_dir.join(top.as_os_str()));
                }
            }
        }
    }
    out
}

/// Renames each path to `<name>.before-restore-<time>`; returns the new names.
pub fn move_aside(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let stamp = backup::now();
    let mut moved = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = p.with_file_name(format!("{name}.before-restore-{stamp}"));
        std::fs::rename(p, &to)
            .with_context(|| format!("moving `{}` aside to `{}`", p.display(), to.display()))?;
        moved.push((p.clone(), to));
    }
    Ok(moved)
}

/// Writes only the settings file of a (verified) backup to `to`; false when it has none.
pub fn extract_settings(file: &Path, to: &Path) -> anyhow::Result<bool> {
    let mut a = entries(file)?;
    for e in a.entries()? {
        let mut e = e?;
        if e.path()?.to_string_lossy() == SETTINGS {
            write_private(&mut e, to, None)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes the (verified) backup's parts; returns the paths written, in archive order.
pub fn extract(file: &Path, t: &Targets) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // The service data directories the restore made (marked for the project at the end).
    let mut made: Vec<PathBuf> = Vec::new();
    let mut a = entries(file)?;
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        match path.as_str() {
            MANIFEST => continue,
            SETTINGS => {
                write_private(&mut e, &t.config_path, None)?;
                written.push(t.config_path.clone());
            }
            SECRETS => {
                let p = crate::secrets::path(&t.deploy_dir);
                write_private(&mut e, &p, None)?;
                written.push(p);
            }
            MYSQL_DUMP => {
                let p = t.deploy_dir.join(MYSQL_INIT);
                write_private(&mut e, &p, t.uids.get("mysql").copied())?;
                written.push(p);
            }
            REDIS_RDB => {
                let uid = t.uids.get("redis").copied();
                let dir = t.data_dir.join("redis");
                make_owned_dir(&dir, uid)?;
                let mut rdb = Vec::new();
                e.read_to_end(&mut rdb)?;
                let p = dir.join("dump.rdb");
                write_private(&mut rdb.as_slice(), &p, uid)?;
                // With `appendonly yes` (as cdq renders it) Redis 7 loads only its AOF
                // directory and ignores `dump.rdb`: the RDB becomes the base of a multi-part
                // AOF, the layout Redis itself writes on a rewrite.
                let aof = dir.join("appendonlydir");
                make_owned_dir(&aof, uid)?;
                write_private(&mut rdb.as_slice(), &aof.join(AOF_BASE), uid)?;
                let manifest = format!("file {AOF_BASE} seq 1 type b\n");
                write_private(
                    &mut manifest.as_bytes(),
                    &aof.join("appendonly.aof.manifest"),
                    uid,
                )?;
                written.push(p);
                made.push(dir);
            }
            p => {
                let Some(rel) = p.strip_prefix(DATA) else {
                    continue;
                };
                let rel = rel.trim_end_matches('/');
                // Only plain relative paths: a crafted `../` never leaves the data directory.
                if rel.is_empty()
                    || Path::new(rel)
                        .components()
                        .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(CdqError::usage(format!(
                        "`{}` holds an unsafe path `{p}`",
                        file.display()
                    ))
                    .into());
                }
                let dest = t.data_dir.join(rel);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                e.set_preserve_permissions(true);
                e.set_unpack_xattrs(false);
                e.unpack(&dest)
                    .with_context(|| format!("writing `{}`", dest.display()))?;
                if crate::host::is_root() && kind != tar::EntryType::Symlink {
                    let (uid, gid) = (e.header().uid()? as u32, e.header().gid()? as u32);
                    std::os::unix::fs::chown(&dest, Some(uid), Some(gid))?;
                }
                if kind == tar::EntryType::Directory && dest.parent() == Some(&t.data_dir) {
                    made.push(dest.clone());
                    written.push(dest);
                }
            }
        }
    }
    // Every service data directory the restore made is this project's, as if `up` had made it.
    made.sort();
    made.dedup();
    for d in &made {
        crate::fsio::write_mark(
            d,
            &crate::fsio::Mark {
                project: t.project.clone(),
                deploy_dir: t.deploy_dir.clone(),
                created: vec![],
            },
        )?;
    }
    Ok(written)
}

fn make_owned_dir(dir: &Path, uid: Option<u32>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    if let (true, Some(u)) = (crate::host::is_root(), uid) {
        std::os::unix::fs::chown(dir, Some(u), Some(u))?;
    }
    Ok(())
}

/// Writes an entry to `p` (0600, handed to `uid` when we are root) through a temp file.
fn write_private(r: &mut impl Read, p: &Path, uid: Option<u32>) -> anyhow::Result<()> {
    let parent = p.parent().expect("targets live in a directory");
    std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.cdq-tmp",
        p.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing `{}`", tmp.display()))?;
    std::io::copy(r, &mut f).with_context(|| format!("writing `{}`", tmp.display()))?;
    f.sync_all()?;
    drop(f);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    if let (true, Some(u)) = (crate::host::is_root(), uid) {
        std::os::unix::fs::chown(&tmp, Some(u), Some(u))?;
    }
    std::fs::rename(&tmp, p).with_context(|| format!("writing `{}`", p.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ops::backup::Writer;

    struct Quiet;
    impl crate::bundle::Meter for Quiet {
        fn inc(&self, _: u64) {}
        fn finish(&self) {}
    }

    fn manifest() -> Manifest {
        Manifest {
            format: backup::FORMAT.into(),
            cdq_version: "test".into(),
            project: "demo".into(),
            created: 0,
            images: BTreeMap::new(),
            parts: BTreeMap::new(),
            entries: vec![],
        }
    }

    fn sample(dir: &Path) -> PathBuf {
        let data = dir.join("src-data/prometheus");
        std::fs::create_dir_all(data.join("wal")).unwrap();
        std::fs::write(data.join("wal/00000001"), b"samples").unwrap();
        let out = dir.join("b.tar.gz");
        let mut w = Writer::create(&out, Arc::new(Quiet)).unwrap();
        w.add_bytes(SECRETS, b"REDIS_PASSWORD=abcdefgh12345678\n", None)
            .unwrap();
        w.add_bytes(REDIS_RDB, b"REDIS0009...", None).unwrap();
        w.add_tree(&data, "data/prometheus").unwrap();
        w.finish(manifest()).unwrap();
        out
    }

    fn targets(dir: &Path) -> Targets {
        Targets {
            deploy_dir: dir.join("deploy"),
            config_path: dir.join("deploy/cdq.yaml"),
            data_dir: dir.join("deploy/data"),
            uids: BTreeMap::new(),
            project: "cdq".into(),
        }
    }

    #[test]
    fn a_backup_round_trips_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let m = verify(&f, &Quiet).unwrap();
        assert_eq!(m.entries.len(), 3, "{m:?}");
        let t = targets(d.path());
        assert!(occupied(&m, &t).is_empty());
        extract(&f, &t).unwrap();
        assert_eq!(
            std::fs::read(t.data_dir.join("prometheus/wal/00000001")).unwrap(),
            b"samples"
        );
        assert_eq!(
            std::fs::read(t.data_dir.join("redis/dump.rdb")).unwrap(),
            b"REDIS0009..."
        );
        let s = crate::secrets::path(&t.deploy_dir);
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Now everything is there: a second restore is refused, naming what is in the way.
        let busy = occupied(&m, &t);
        assert!(busy.contains(&s), "{busy:?}");
        assert!(busy.contains(&t.data_dir.join("prometheus")), "{busy:?}");
    }

    #[test]
    fn a_truncated_backup_is_refused_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        let bytes = std::fs::read(&f).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 10, 30] {
            let g = d.path().join(format!("cut-{cut}.tar.gz"));
            std::fs::write(&g, &bytes[..cut]).unwrap();
            let e = verify(&g, &Quiet).unwrap_err();
            let text = format!("{e:#}");
            assert!(text.contains("is not a complete cdq backup"), "{text}");
            assert_eq!(crate::error::exit_code(&e), 2);
        }
    }

    #[test]
    fn a_flipped_byte_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&f, &bytes).unwrap();
        let e = verify(&f, &Quiet).unwrap_err();
        assert!(
            format!("{e:#}").contains("is not a complete cdq backup"),
            "{e:#}"
        );
    }
}
