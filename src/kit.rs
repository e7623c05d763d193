//! The deploy kit: the files cdq renders for a [`Context`] (the compose file, `.env`,
//! `confd/<service>/...`), in memory and on disk, and the project parsed from them.
//!
//! Must not: prompt or print (the host IP is already decided in the context), or reach the
//! engine. A render in [`SecretsMode::ReadOnly`] writes nothing at all.

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::context::Context;
use crate::error::CdqError;
use crate::hostip;
use crate::interpolate::Vars;
use crate::project::{self, Project};
use crate::render::{self, Change};
use crate::secrets::{self, Secrets};
use crate::settings::Relabel;
use crate::settings::Target;

/// What a render produced, in memory.
pub struct Rendered {
    pub catalog: Catalog,
    pub files: Vec<render::File>,
    /// The compose file, or the stack file for the Swarm target.
    pub compose_path: PathBuf,
}

/// Where a render's passwords come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsMode {
    /// Load the secrets file, creating it if absent (the passwords must be stable before
    /// anything uses them).
    Ensure,
    /// Write nothing: use the existing file, or placeholders when there is none (for
    /// preflight and `--dry-run`, which must not create anything).
    ReadOnly,
}

/// Renders the deploy kit in memory for the context's architecture and host IP.
pub fn render(ctx: &Context, mode: SecretsMode) -> anyhow::Result<(Rendered, secrets::FileChange)> {
    let s = &ctx.settings;
    let ip = ctx.ip.as_ref().ok_or_else(|| {
        CdqError::failure("internal: the host IP was not decided before rendering")
    })?;
    if mode == SecretsMode::Ensure {
        // Before `secrets.env` is created or appended to: a deploy directory holding files
        // cdq did not write (someone's own compose project) gets nothing from cdq at all.
        let (preview, _) = render(ctx, SecretsMode::ReadOnly)?;
        render::check_writable(&s.deploy_dir, &preview.files)?;
    }
    let (secrets, change) = match mode {
        SecretsMode::Ensure => secrets::ensure(&s.deploy_dir, &initialised(ctx))?,
        SecretsMode::ReadOnly => {
            match secrets::load_existing_checked(&s.deploy_dir, &initialised(ctx))? {
                // A key the file lacks (and may be generated) is a placeholder here, as
                // when there is no file: the real render appends it.
                Some(x) => (x.or_placeholders(), secrets::FileChange::Kept),
                None => (Secrets::placeholders(), secrets::FileChange::Kept),
            }
        }
    };
    let catalog = ctx.catalog()?;
    let tz = s.timezone.clone().unwrap_or_else(crate::host::timezone);
    let input = render::Input {
        settings: s,
        arch: ctx.arch,
        host_ip: ip.ip,
        timezone: &tz,
        catalog: &catalog,
        secrets: &secrets,
        assets: &ctx.assets,
        relabel: match s.selinux_relabel {
            Relabel::Always => true,
            Relabel::Never => false,
            Relabel::Auto => crate::host::selinux_enforcing(),
        },
    };
    // The Swarm target renders its own kit (the stack file and the cluster's configs).
    let (files, main_file) = match s.target {
        Target::Host => (render::render(&input)?, render::compose_file_name(ctx.arch)),
        Target::Swarm => (
            crate::swarm::stack::render(&input)?,
            crate::swarm::stack::stack_file_name(ctx.arch),
        ),
    };
    let compose_path = s.deploy_dir.join(main_file);
    Ok((
        Rendered {
            catalog,
            files,
            compose_path,
        },
        change,
    ))
}

/// The services whose data directory (`data_dir/<service>`) cdq made for this project and
/// that already holds data: their passwords are fixed by it. A foreign directory is not
/// this stack's data (preflight refuses it), so it fixes nothing.
pub fn initialised(ctx: &Context) -> secrets::Initialised {
    let s = &ctx.settings;
    ["mysql", "grafana"]
        .into_iter()
        .map(|svc| (svc.to_string(), s.data_dir.join(svc)))
        .filter(|(_, d)| {
            crate::fsio::classify(d, &s.project).state == crate::fsio::DirState::Ours
                && crate::fsio::non_empty_dir(d)
        })
        .collect()
}

/// Writes a render to the deploy directory and remembers the IP.
pub fn write(ctx: &Context, r: &Rendered) -> anyhow::Result<Vec<(PathBuf, Change)>> {
    let dir = &ctx.settings.deploy_dir;
    let report = render::write(dir, &r.files, true)?;
    if let Some(ip) = &ctx.ip {
        hostip::store(dir, ip.ip)?;
    }
    Ok(report)
}

impl Rendered {
    fn text(&self, rel: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.rel.as_os_str() == rel)
            .map(|f| f.contents.as_str())
    }

    /// Parses the rendered compose file in memory, with the rendered `.env` and the process
    /// environment (as [`project::load`] does for a written one).
    pub fn project(&self, ctx: &Context) -> anyhow::Result<Project> {
        let dir = &ctx.settings.deploy_dir;
        let name = render::compose_file_name(ctx.arch);
        let compose = self
            .text(&name)
            .ok_or_else(|| CdqError::failure(format!("the render produced no `{name}`")))?;
        let vars = Vars::from_dotenv(self.text(".env").unwrap_or(""), std::env::vars());
        Ok(project::parse(
            &dir.join(&name),
            dir,
            compose,
            &vars,
            &ctx.settings.project,
        )?)
    }
}

/// The project as last rendered (or given with `--compose`), if there is one on disk.
pub fn on_disk(ctx: &Context, compose: Option<&Path>) -> anyhow::Result<Option<Project>> {
    if let Some(f) = compose {
        return Ok(Some(project::load(&absolute(f), &ctx.settings.project)?));
    }
    let path = ctx
        .settings
        .deploy_dir
        .join(render::compose_file_name(ctx.arch));
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(project::load(&path, &ctx.settings.project)?))
}

/// The project's name: the compose file's `name:` when there is one on disk, else the
/// settings' project (what `status`, `down` and `logs` act on).
pub fn project_name(ctx: &Context, project: Option<&Project>) -> String {
    project
        .map(|p| p.name.clone())
        .unwrap_or_else(|| ctx.settings.project.clone())
}

/// A path given on the command line, made absolute against the current directory.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Arch;
    use crate::settings::{self, Overrides};

    /// `status`, `down` and `logs` all act on the compose file's `name:` when it has one.
    #[test]
    fn the_project_name_on_disk_beats_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings::load(
            dir.path(),
            &Overrides {
                dir: Some(dir.path().to_path_buf()),
                arch: Some(Arch::Amd64),
                ..Overrides::default()
            },
        )
        .unwrap();
        let ctx = Context::new(settings).unwrap();
        assert_eq!(
            project_name(&ctx, on_disk(&ctx, None).unwrap().as_ref()),
            "cdq"
        );
        std::fs::write(
            dir.path().join("docker-compose.amd64.yaml"),
            "name: renamed\nservices:\n  app:\n    image: app:1\n",
        )
        .unwrap();
        let p = on_disk(&ctx, None).unwrap();
        assert_eq!(project_name(&ctx, p.as_ref()), "renamed");
    }
}
