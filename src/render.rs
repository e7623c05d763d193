//! Rendering: settings, host facts and secrets in; the deploy kit's files out (the compose
//! file for one architecture, `.env`, `confd/<service>/...`). `render` is pure and
//! deterministic (same inputs, same bytes); `write` puts the files on disk atomically and
//! reports which changed. A file cdq did not write (no cdq header, see [`fsio::RENDER_MARKS`])
//! is never replaced, and no write goes through a symlink.
//!
//! Rendering is strict: an undefined variable is an error naming the template and line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::error::CdqError;
use crate::fsio;
use crate::secrets::Secrets;
use crate::services::{Arch, Service};
use crate::settings::Settings;

/// Everything a render depends on; nothing else is read.
pub struct Input<'a> {
    pub settings: &'a Settings,
    pub arch: Arch,
    pub host_ip: IpAddr,
    pub timezone: &'a str,
    pub catalog: &'a Catalog,
    pub secrets: &'a Secrets,
    pub assets: &'a Assets,
    /// Bind mounts get `:z` (SELinux relabelling), as `selinux_relabel` decided for this host.
    pub relabel: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the deploy directory.
    pub rel: PathBuf,
    pub contents: String,
    /// Holds a password: written 0600 and handed to `owner` (when cdq may chown).
    pub secret: bool,
    /// The uid of the service that reads it, for secret files under `confd/<service>/`.
    pub owner: Option<u32>,
}

pub fn compose_file_name(arch: Arch) -> String {
    format!("docker-compose.{arch}.yaml")
}

/// The path written into the compose file for the data directory: relative to the deploy
/// directory when inside it (so the directory can be moved), absolute otherwise.
fn data_dir_ref(s: &Settings) -> String {
    match s.data_dir.strip_prefix(&s.deploy_dir) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => s.data_dir.display().to_string(),
    }
}

pub(crate) fn context(i: &Input) -> serde_json::Value {
    let s = i.settings;
    let services: Vec<&str> = s.services.iter().map(|x| x.name()).collect();
    let images: BTreeMap<&str, &str> = Service::ALL
        .iter()
        .map(|x| (x.name(), i.catalog.image(*x)))
        .collect();
    let heap: BTreeMap<&str, u64> = s.heap_mb.iter().map(|(k, v)| (k.name(), *v)).collect();
    let needs: BTreeMap<&str, &crate::catalog::Needs> = i
        .catalog
        .images
        .iter()
        .map(|(k, v)| (k.name(), &v.needs))
        .collect();
    // `seccomp: unconfined` applies to the images that call clone3 (compose/<arch>.yaml),
    // not to all: the others keep the engine's default profile.
    let unconfined: Vec<&str> = match s.seccomp {
        crate::settings::Seccomp::Default => vec![],
        crate::settings::Seccomp::Unconfined => s
            .services
            .iter()
            .filter(|x| i.catalog.images[x].compat.clone3)
            .map(|x| x.name())
            .collect(),
    };
    let (ro, rw) = if i.relabel {
        (":ro,z", ":z")
    } else {
        (":ro", "")
    };
    json!({
        "cdq_version": env!("CARGO_PKG_VERSION"),
        "unconfined": unconfined,
        "ro": ro,
        "rw": rw,
        "project": s.project,
        "arch": i.arch.name(),
        "host_ip": i.host_ip.to_string(),
        "timezone": i.timezone,
        "data_dir": data_dir_ref(s),
        "services": services,
        "images": images,
        "heap": heap,
        "needs": needs,
        "kafka_cluster_id": kafka_cluster_id(&s.project),
        "ports": {
            "server": s.ports.server,
            "ucenter": s.ports.ucenter,
            "grafana": s.ports.grafana,
            "kafka": s.ports.kafka,
            "prometheus": s.ports.prometheus,
        },
        "secrets": i.secrets.map(),
    })
}

/// The KRaft cluster id the Kafka image formats its storage with (`CLUSTER_ID`): 16 bytes
/// in URL-safe base64 without padding, as `kafka-storage.sh random-uuid` prints. Derived
/// from the project name so a re-render never changes it (a formatted data directory
/// refuses a different id) and two projects on one host do not share one.
pub fn kafka_cluster_id(project: &str) -> String {
    use sha2::{Digest, Sha256};
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digest = Sha256::digest(format!("cdq kafka cluster {project}").as_bytes());
    let bytes = &digest[..16];
    let mut out = String::with_capacity(22);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(B64[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B64[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        msg.push_str(&format!(" ({inner})"));
        src = inner.source();
    }
    msg
}

pub(crate) fn render_one(
    env: &Environment,
    name: &str,
    ctx: &serde_json::Value,
) -> anyhow::Result<String> {
    let t = env
        .get_template(name)
        .map_err(|e| template_error(name, &e))?;
    let mut out = t
        .render(minijinja::value::Serde(ctx))
        .map_err(|e| template_error(name, &e))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn template_error(name: &str, e: &minijinja::Error) -> anyhow::Error {
    let at = match e.line() {
        Some(l) => format!("template `{}` line {l}", e.name().unwrap_or(name)),
        None => format!("template `{}`", e.name().unwrap_or(name)),
    };
    CdqError::usage(format!("{at}: {}", describe(e)))
        .hint("fix the template (or remove it from `--templates` to use the built-in one)")
        .into()
}

/// The template environment every render uses: strict about undefined variables, blocks
/// trimmed.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env
}

/// Adds a template to `env`, or the error naming it.
pub(crate) fn add_template(
    env: &mut Environment<'static>,
    name: &str,
    src: String,
) -> anyhow::Result<()> {
    env.add_template_owned(name.to_string(), src)
        .map_err(|e| template_error(name, &e))
}

/// Renders every file of the deploy kit. Pure: reads only its input and the assets.
pub fn render(i: &Input) -> anyhow::Result<Vec<File>> {
    let mut env = environment();

    // (template name, output path, owning service)
    let mut jobs: Vec<(String, PathBuf, Option<Service>, bool)> = vec![
        (
            "templates/compose.yaml.j2".into(),
            PathBuf::from(compose_file_name(i.arch)),
            None,
            true,
        ),
        ("templates/env.j2".into(), PathBuf::from(".env"), None, true),
    ];
    for s in &i.settings.services {
        for rel in i.assets.list("confd", s.name()) {
            let (out, templated) = match rel.strip_suffix(".j2") {
                Some(o) => (o.to_string(), true),
                None => (rel.clone(), false),
            };
            jobs.push((
                format!("confd/{rel}"),
                PathBuf::from("confd").join(out),
                Some(*s),
                templated,
            ));
        }
    }
    let mut sources = Vec::new();
    for (name, _, _, _) in &jobs {
        let (top, rel) = name
            .split_once('/')
            .expect("asset names have a top directory");
        sources.push((name.clone(), i.assets.read(top, rel)?));
    }
    for (name, src) in &sources {
        if name.ends_with(".j2") {
            env.add_template_owned(name.clone(), src.clone())
                .map_err(|e| template_error(name, &e))?;
        }
    }

    let ctx = context(i);
    let mut files = Vec::new();
    for ((name, out, service, templated), (_, src)) in jobs.into_iter().zip(sources) {
        let contents = if templated {
            render_one(&env, &name, &ctx)?
        } else {
            src
        };
        let secret = i
            .secrets
            .values()
            .any(|v| !v.is_empty() && contents.contains(v));
        let owner = match service {
            Some(s) if secret => Some(i.catalog.images[&s].uid),
            _ => None,
        };
        files.push(File {
            rel: out,
            contents,
            secret,
            owner,
        });
    }
    Ok(files)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Changed,
    Unchanged,
}

/// cdq's record of what it rendered that no header can mark: the files that cannot carry
/// its header (JSON has no comments), as `<sha256> <path>` (a matching hash is their mark),
/// and the directories it created for its files, as `dir <path>` (a purge removes only
/// those, once empty).
pub const MANIFEST: &str = ".cdq/rendered";

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: std::collections::BTreeSet<(PathBuf, String)>,
    pub dirs: std::collections::BTreeSet<PathBuf>,
}

/// The manifest in `dir` (empty when there is none).
pub fn manifest(dir: &Path) -> Manifest {
    let mut m = Manifest::default();
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        match l.split_once(' ') {
            Some(("dir", p)) => {
                m.dirs.insert(PathBuf::from(p));
            }
            Some((h, p)) => {
                m.files.insert((PathBuf::from(p), h.to_string()));
            }
            None => {}
        }
    }
    m
}

/// Whether the file at `dir/rel` (its contents `bytes`) was written by cdq: its first line is
/// cdq's header, or the manifest records exactly these bytes.
pub fn written_by_cdq(dir: &Path, rel: &Path, bytes: &[u8]) -> bool {
    fsio::has_render_mark(bytes) || {
        let h = sha(bytes);
        manifest(dir).files.iter().any(|(p, x)| p == rel && *x == h)
    }
}

/// Refuses to replace a file cdq did not write (or to write through a symlink), before
/// anything is written: a render into someone's own compose project stops, naming the file.
pub fn check_writable(dir: &Path, files: &[File]) -> Result<(), CdqError> {
    for f in files {
        let path = dir.join(&f.rel);
        fsio::refuse_symlinks_below(dir, &path)?;
        let Ok(old) = std::fs::read(&path) else {
            if path.is_dir() {
                return Err(CdqError::usage(format!(
                    "`{}` is a directory, where cdq renders a file",
                    path.display()
                ))
                .hint("move it away, or render into another directory (`--dir DIR`)"));
            }
            continue;
        };
        if old != f.contents.as_bytes() && !written_by_cdq(dir, &f.rel, &old) {
            return Err(CdqError::usage(format!(
                "`{}` was not written by cdq (its first line is not cdq's `{}` header): refusing to overwrite it",
                path.display(),
                fsio::RENDER_MARKS[0]
            ))
            .hint("render into another directory (`--dir DIR`), or move the file away and run this again"));
        }
    }
    Ok(())
}

/// Writes files under `dir` through [`fsio::write_atomic`] (temp file, fsync, rename,
/// directory fsync), after [`check_writable`] has passed for all of them. Secret files get
/// mode 0600 and, when `chown` and we are root, their service's uid.
pub fn write(dir: &Path, files: &[File], chown: bool) -> anyhow::Result<Vec<(PathBuf, Change)>> {
    check_writable(dir, files)?;
    let headerless = |f: &&File| !fsio::has_render_mark(f.contents.as_bytes());
    // Recorded before anything is written, old entries kept until the files are: a cdq
    // killed in between still knows every version and directory it may have left.
    let mut record = manifest(dir);
    let before = record.clone();
    record.files.extend(
        files
            .iter()
            .filter(headerless)
            .map(|f| (f.rel.clone(), sha(f.contents.as_bytes()))),
    );
    for f in files {
        for a in f.rel.ancestors().skip(1) {
            if a.as_os_str().is_empty() {
                break;
            }
            if std::fs::symlink_metadata(dir.join(a)).is_err() {
                record.dirs.insert(a.to_path_buf());
            }
        }
    }
    if record != before {
        write_manifest(dir, &record)?;
    }
    let mut report = Vec::new();
    for f in files {
        let path = dir.join(&f.rel);
        let old = std::fs::read(&path).ok();
        let change = match &old {
            None => Change::Created,
            Some(b) if b == f.contents.as_bytes() => Change::Unchanged,
            Some(_) => Change::Changed,
        };
        let mode = if f.secret { 0o600 } else { 0o644 };
        if change != Change::Unchanged {
            let parent = path.parent().expect("rendered files live in a directory");
            fsio::create_dirs(parent)?;
            fsio::write_atomic(&path, f.contents.as_bytes(), mode)?;
        }
        // Mode and owner are re-asserted even for unchanged files: a loosened secret is fixed.
        let meta = std::fs::metadata(&path).map_err(|e| fsio::io_error("reading", &path, &e))?;
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fsio::io_error("changing the mode of", &path, &e))?;
        }
        if let (true, Some(uid)) = (chown && crate::host::is_root(), f.owner) {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid))
                .with_context(|| format!("handing `{}` to uid {uid}", path.display()))?;
        }
        report.push((f.rel.clone(), change));
    }
    let now = Manifest {
        files: files
            .iter()
            .filter(headerless)
            .map(|f| (f.rel.clone(), sha(f.contents.as_bytes())))
            .collect(),
        dirs: record.dirs,
    };
    if now != before {
        write_manifest(dir, &now)?;
    }
    Ok(report)
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), CdqError> {
    let mut text = String::from(
        "# What cdq rendered that carries no header: `<sha256> <file>`, `dir <directory it created>`\n",
    );
    for (p, h) in &m.files {
        text.push_str(&format!("{h} {}\n", p.display()));
    }
    for d in &m.dirs {
        text.push_str(&format!("dir {}\n", d.display()));
    }
    let path = dir.join(MANIFEST);
    fsio::refuse_symlinks_below(dir, &path)?;
    fsio::create_dirs(path.parent().expect("has a parent"))?;
    fsio::write_atomic(&path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_cluster_id_is_a_stable_base64_uuid() {
        let a = kafka_cluster_id("cdq");
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert_eq!(a, kafka_cluster_id("cdq"));
        assert_ne!(a, kafka_cluster_id("poc-2"));
    }
}
