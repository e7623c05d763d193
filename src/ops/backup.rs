//! `backup` as an engine-generic operation: a consistent copy of a running stack's state in
//! one `.tar.gz` (mode 0600) with a manifest of checksums. MySQL is dumped logically from
//! inside its container, Redis saves a fresh RDB, and the data directories of the other
//! stateful services (ZooKeeper, Kafka, Elasticsearch, Prometheus, Grafana: whatever the
//! rendered compose file binds read-write under the data directory) are copied file by file,
//! with their owners. `secrets.env` and `cdq.yaml` go in too, so a restore brings back the
//! same passwords. Returns what it wrote; never prints (steps go to a callback, bytes to a
//! [`Meter`]).
//!
//! # Format (`cdq-backup/1`)
//!
//! ```text
//! cdq.yaml            the settings file, when there is one
//! secrets.env         the stack's passwords
//! mysql/dump.sql      application databases (not `mysql`, `sys`, the schemas); the users and
//!                     their passwords come back from the rendered init SQL and `secrets.env`
//! redis/dump.rdb      a fresh `SAVE`
//! data/<path>         files under the data directory, relative to it, owners kept
//! manifest.json       last: format, cdq version, project, time, images, and per file its
//!                     size and sha256; `restore` checks every one before writing anything
//! ```
//!
//! The MySQL dump and the RDB are written by the server into its own bind-mounted data
//! directory (a hidden `.cdq-backup.*` file, removed once read): `exec` output is text with
//! stderr mixed in, which would corrupt a binary RDB, and this needs no new engine method.
//! Reading those files needs root on the host (data directories belong to the services'
//! uids), as `cdq up` does to hand them over.
//!
//! Must not: print, prompt, or stop anything; copies of Prometheus's and Grafana's files are
//! taken while they run (their own writes are crash-safe, so a copy is what a power cut would
//! leave; the README says so).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::Meter;
use crate::engine::{Container, Engine, RunState, explain};
use crate::error::CdqError;
use crate::project::Project;
use crate::settings::Settings;

pub const FORMAT: &str = "cdq-backup/1";
pub const MANIFEST: &str = "manifest.json";
pub const MYSQL_DUMP: &str = "mysql/dump.sql";
pub const REDIS_RDB: &str = "redis/dump.rdb";
pub const SETTINGS: &str = "cdq.yaml";
pub const SECRETS: &str = "secrets.env";
/// Files under the data directory are stored under this prefix.
pub const DATA: &str = "data/";

/// Services whose state is copied as files of their data directory.
pub const FILE_COPIED: [&str; 5] = [
    "zookeeper",
    "kafka",
    "elasticsearch",
    "prometheus",
    "grafana",
];

/// How long a dump or a save may take inside the container.
const DUMP_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub cdq_version: String,
    pub project: String,
    /// Unix seconds.
    pub created: u64,
    /// The image each backed-up service ran.
    pub images: BTreeMap<String, String>,
    /// What each service's part holds (`logical dump`, `rdb`, `files`).
    pub parts: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
}

/// One step of a backup, for the command to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Dumping(String),
    Copying { service: String, dir: PathBuf },
    Skipped { service: String, why: String },
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
}

/// A `.tar.gz` being written under a temporary name (mode 0600 from the first byte), moved
/// into place by [`Writer::finish`] only once complete: an interrupted backup leaves no file
/// that looks whole.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    tar: tar::Builder<flate2::write::GzEncoder<Counting>>,
    entries: Vec<Entry>,
}

/// Counts compressed bytes into the meter as they reach the file.
struct Counting {
    inner: BufWriter<File>,
    meter: Arc<dyn Meter>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        self.meter.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Writer {
    pub fn create(path: &Path, meter: Arc<dyn Meter>) -> anyhow::Result<Writer> {
        let (tmp, f) = crate::fsio::create_partial(path)?;
        let counting = Counting {
            inner: BufWriter::new(f),
            meter,
            written: 0,
        };
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            counting,
            flate2::Compression::default(),
        ));
        tar.mode(tar::HeaderMode::Complete);
        Ok(Writer {
            path: path.to_path_buf(),
            tmp,
            tar,
            entries: Vec::new(),
        })
    }

    /// Adds a file with these bytes, private (0600, root) unless `meta` says otherwise.
    pub fn add_bytes(
        &mut self,
        path: &str,
        bytes: &[u8],
        meta: Option<&std::fs::Metadata>,
    ) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        match meta {
            Some(m) => {
                h.set_mode(m.mode() & 0o7777);
                h.set_uid(m.uid() as u64);
                h.set_gid(m.gid() as u64);
                h.set_mtime(m.mtime().max(0) as u64);
            }
            None => {
                h.set_mode(0o600);
                h.set_mtime(now());
            }
        }
        self.tar
            .append_data(&mut h, path, bytes)
            .with_context(|| format!("writing `{path}` into `{}`", self.tmp.display()))?;
        self.entries.push(Entry {
            path: path.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        Ok(())
    }

    /// Adds everything under `dir` as `prefix/<relative path>`: directories, files and
    /// symlinks with their modes and owners. Files that vanish while the walk runs (a
    /// rotated WAL segment) are skipped: they were not part of the state a moment later.
    pub fn add_tree(&mut self, dir: &Path, prefix: &str) -> anyhow::Result<()> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let rel = rel_name(dir, &d, prefix);
            let meta = std::fs::symlink_metadata(&d)
                .with_context(|| format!("reading `{}`", d.display()))?;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            set_meta(&mut h, &meta);
            h.set_size(0);
            self.tar
                .append_data(&mut h, format!("{rel}/"), std::io::empty())?;
            let mut children: Vec<_> = std::fs::read_dir(&d)
                .with_context(|| format!("reading `{}`", d.display()))?
                .filter_map(Result::ok)
                .collect();
            children.sort_by_key(|e| e.file_name());
            for c in children {
                let p = c.path();
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                let name = rel_name(dir, &p, prefix);
                if m.is_dir() {
                    stack.push(p);
                } else if m.file_type().is_symlink() {
                    let target = std::fs::read_link(&p)?;
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    set_meta(&mut h, &m);
                    h.set_size(0);
                    self.tar.append_link(&mut h, &name, &target)?;
                } else if m.is_file() {
                    let bytes = match std::fs::read(&p) {
                        Ok(b) => b,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(
                                anyhow::Error::new(e).context(format!("reading `{}`", p.display()))
                            );
                        }
                    };
                    self.add_bytes(&name, &bytes, Some(&m))?;
                }
                // Sockets and fifos are not state.
            }
        }
        Ok(())
    }

    /// Writes the manifest last, closes the gzip stream, syncs and moves the file into place.
    pub fn finish(mut self, mut manifest: Manifest) -> anyhow::Result<(Manifest, u64)> {
        manifest.entries = std::mem::take(&mut self.entries);
        let json = serde_json::to_vec_pretty(&manifest)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(json.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now());
        self.tar.append_data(&mut h, MANIFEST, json.as_slice())?;
        let gz = self.tar.into_inner()?;
        let mut counting = gz.finish()?;
        counting.flush()?;
        let bytes = counting.written;
        counting
            .inner
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("moving the backup to `{}`", self.path.display()))?;
        Ok((manifest, bytes))
    }

    /// Removes the partial file (after a failure).
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn set_meta(h: &mut tar::Header, m: &std::fs::Metadata) {
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(m.mtime().max(0) as u64);
}

fn rel_name(root: &Path, p: &Path, prefix: &str) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        prefix.trim_end_matches('/').to_string()
    } else {
        format!("{}/{rel}", prefix.trim_end_matches('/'))
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The read-write data directories `service` binds under `data_dir`, with their mount points.
pub fn data_binds<'a>(
    project: &'a Project,
    data_dir: &Path,
    service: &str,
) -> Vec<(&'a Path, &'a str)> {
    project
        .services
        .get(service)
        .map(|s| {
            s.binds
                .iter()
                .filter(|b| !b.read_only && b.source.starts_with(data_dir))
                .map(|b| (b.source.as_path(), b.target.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// The path under `data/` a host directory is stored at.
fn data_prefix(data_dir: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(data_dir).unwrap_or(dir);
    format!("{DATA}{}", rel.to_string_lossy())
}

/// The shell that dumps MySQL's application databases into `file` (inside the container).
/// The password comes from the container's own environment, never from cdq's arguments.
fn mysql_dump_script(file: &str) -> String {
    format!(
        r#"set -e
export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"
client=$(command -v mariadb || command -v mysql)
dump=$(command -v mariadb-dump || command -v mysqldump)
dbs=$("$client" -uroot -h127.0.0.1 -N -B -e 'SHOW DATABASES' | grep -Ev '^(information_schema|performance_schema|mysql|sys)$' || true)
if [ -z "$dbs" ]; then : > "{file}.tmp"; else
"$dump" -uroot -h127.0.0.1 --single-transaction --routines --events --triggers --hex-blob --databases $dbs > "{file}.tmp"
fi
mv "{file}.tmp" "{file}""#
    )
}

/// Backs up the stack of `project` into `out`. `only`: the services to include (empty: every
/// stateful one the project has). Services that are not running are an error naming them
/// (a dump needs the server), except when `only` is empty and the service has no container
/// yet (nothing to back up: skipped and said).
pub async fn backup<E: Engine>(
    engine: &E,
    project: &Project,
    settings: &Settings,
    only: &[String],
    mut w: Writer,
    step: &mut impl FnMut(Step),
) -> anyhow::Result<Report> {
    let r = run(engine, project, settings, only, &mut w, step).await;
    match r {
        Ok(manifest) => {
            let path = w.path.clone();
            let (manifest, bytes) = w.finish(manifest)?;
            Ok(Report {
                path,
                bytes,
                manifest,
            })
        }
        Err(e) => {
            w.abandon();
            Err(e)
        }
    }
}

async fn run<E: Engine>(
    engine: &E,
    project: &Project,
    settings: &Settings,
    only: &[String],
    w: &mut Writer,
    step: &mut impl FnMut(Step),
) -> anyhow::Result<Manifest> {
    let containers = engine
        .list_containers(&project.name)
        .await
        .map_err(explain)?;
    let by_service: BTreeMap<&str, &Container> = containers
        .iter()
        .filter_map(|c| c.service().map(|s| (s, c)))
        .collect();
    let wanted = |s: &str| {
        project.services.contains_key(s) && (only.is_empty() || only.iter().any(|o| o == s))
    };
    let mut manifest = Manifest {
        format: FORMAT.into(),
        cdq_version: env!("CARGO_PKG_VERSION").into(),
        project: project.name.clone(),
        created: now(),
        images: BTreeMap::new(),
        parts: BTreeMap::new(),
        entries: vec![],
    };
    let data_dir = &settings.data_dir;
    let running = |s: &str| -> anyhow::Result<Option<&Container>> {
        match by_service.get(s) {
            Some(c) if c.state == RunState::Running => Ok(Some(c)),
            Some(c) => Err(CdqError::failure(format!(
                "`{s}` is {}: a backup needs it running",
                format!("{:?}", c.state).to_lowercase()
            ))
            .hint("start the stack with `cdq up`, then run `cdq backup` again")
            .into()),
            None if only.is_empty() => Ok(None),
            None => Err(
                CdqError::failure(format!("`{s}` has no container to back up"))
                    .hint("start the stack with `cdq up`, then run `cdq backup` again")
                    .into(),
            ),
        }
    };

    for (service, part, target, name) in [
        ("mysql", MYSQL_DUMP, "/var/lib/mysql", "mysql dump"),
        ("redis", REDIS_RDB, "/data", "redis rdb"),
    ] {
        if !wanted(service) {
            continue;
        }
        let Some(c) = running(service)? else {
            step(Step::Skipped {
                service: service.into(),
                why: "no container yet".into(),
            });
            continue;
        };
        let host_dir = data_binds(project, data_dir, service)
            .into_iter()
            .find(|(_, t)| t.trim_end_matches('/') == target)
            .map(|(s, _)| s.to_path_buf())
            .ok_or_else(|| {
                CdqError::failure(format!(
                    "`{service}` binds no data directory at `{target}`: cdq cannot read its {name}"
                ))
            })?;
        step(Step::Dumping(service.into()));
        let bytes = if service == "mysql" {
            let inside = format!("{target}/.cdq-backup.sql");
            let cmd = vec!["sh".into(), "-c".into(), mysql_dump_script(&inside)];
            run_in(engine, service, &c.id, &cmd).await?;
            take(&host_dir.join(".cdq-backup.sql"))?
        } else {
            // SAVE (not BGSAVE): the reply comes once the file is complete.
            let cmd = vec!["redis-cli".into(), "SAVE".into()];
            let out = run_in(engine, service, &c.id, &cmd).await?;
            if !out.contains("OK") {
                return Err(
                    CdqError::failure(format!("`redis` refused to save: {}", out.trim()))
                        .hint("see `cdq logs redis`")
                        .into(),
                );
            }
            read(&host_dir.join("dump.rdb"))?
        };
        w.add_bytes(part, &bytes, None)?;
        manifest.images.insert(service.into(), c.image.clone());
        manifest.parts.insert(
            service.into(),
            if service == "mysql" {
                "logical dump"
            } else {
                "rdb"
            }
            .into(),
        );
    }

    for service in FILE_COPIED {
        if !wanted(service) {
            continue;
        }
        let c = by_service.get(service);
        for (dir, _) in data_binds(project, data_dir, service) {
            if !dir.exists() {
                continue;
            }
            step(Step::Copying {
                service: service.into(),
                dir: dir.to_path_buf(),
            });
            w.add_tree(dir, &data_prefix(data_dir, dir))?;
            manifest.parts.insert(service.into(), "files".into());
        }
        if let Some(c) = c {
            manifest.images.insert(service.into(), c.image.clone());
        }
    }

    if settings.config_found {
        let b = read(&settings.config_path)?;
        w.add_bytes(SETTINGS, &b, None)?;
    }
    let secrets = crate::secrets::path(&settings.deploy_dir);
    if secrets.exists() {
        w.add_bytes(SECRETS, &read(&secrets)?, None)?;
    }
    Ok(manifest)
}

/// Runs `cmd` in the service's container; a non-zero exit is an error with its output.
async fn run_in<E: Engine>(
    engine: &E,
    service: &str,
    id: &str,
    cmd: &[String],
) -> anyhow::Result<String> {
    let (code, out) = engine.exec(id, cmd, DUMP_TIMEOUT).await.map_err(explain)?;
    if code != 0 {
        return Err(CdqError::failure(format!(
            "backing up `{service}` failed (exit {code}): {}",
            out.trim()
        ))
        .hint(format!("see `cdq logs {service}`; nothing was written"))
        .into());
    }
    Ok(out)
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = File::open(p).with_context(|| format!("reading `{}`", p.display()))?;
    let mut b = Vec::new();
    f.read_to_end(&mut b)
        .with_context(|| format!("reading `{}`", p.display()))?;
    Ok(b)
}

/// Reads and removes a file the server wrote for cdq.
fn take(p: &Path) -> anyhow::Result<Vec<u8>> {
    let b = read(p)?;
    let _ = std::fs::remove_file(p);
    Ok(b)
}

/// The default file name: `cdq-backup-<project>-<unix seconds>.tar.gz`.
pub fn default_name(project: &str) -> String {
    format!("cdq-backup-{project}-{}.tar.gz", now())
}
