//! Rendering: settings, host facts and secrets in; the deploy kit's files out (the compose
//! file for one architecture, `.env`, `confd/<service>/...`). `render` is pure and
//! deterministic (same inputs, same bytes); `write` puts the files on disk atomically and
//! reports which changed.
//!
//! Rendering is strict: an undefined variable is an error naming the template and line.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::error::CdqError;
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
    json!({
        "cdq_version": env!("CARGO_PKG_VERSION"),
        "project": s.project,
        "arch": i.arch.name(),
        "host_ip": i.host_ip.to_string(),
        "timezone": i.timezone,
        "data_dir": data_dir_ref(s),
        "services": services,
        "images": images,
        "heap": heap,
        "needs": needs,
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

/// Writes files under `dir` atomically (temp file in the same directory, fsync, rename).
/// Secret files get mode 0600 and, when `chown` and we are root, their service's uid.
pub fn write(dir: &Path, files: &[File], chown: bool) -> anyhow::Result<Vec<(PathBuf, Change)>> {
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
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
            let tmp = parent.join(format!(
                ".{}.cdq-tmp",
                path.file_name()
                    .expect("rendered files have a name")
                    .to_string_lossy()
            ));
            let _ = std::fs::remove_file(&tmp);
            let mut h = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .with_context(|| format!("writing `{}`", tmp.display()))?;
            h.write_all(f.contents.as_bytes())?;
            h.sync_all()?;
            drop(h);
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("replacing `{}`", path.display()))?;
        }
        // Mode and owner are re-asserted even for unchanged files: a loosened secret is fixed.
        let meta = std::fs::metadata(&path)?;
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        if let (true, Some(uid)) = (chown && crate::host::is_root(), f.owner) {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid))
                .with_context(|| format!("handing `{}` to uid {uid}", path.display()))?;
        }
        report.push((f.rel.clone(), change));
    }
    Ok(report)
}
