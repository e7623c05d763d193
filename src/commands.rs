//! One function per command: each resolves what it needs and hands results to `ui`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::assets::Assets;
use crate::catalog::Catalog;
use crate::cli::{ArchArg, Cli, Command, Target};
use crate::error::CdqError;
use crate::hostip::{self, Need};
use crate::render::{self, Change};
use crate::secrets;
use crate::services::Arch;
use crate::settings::{self, Overrides, Settings};
use crate::ui::Ui;

pub struct Ctx {
    pub settings: Settings,
    pub assets: Assets,
    pub ui: Ui,
}

pub fn arch_of(a: ArchArg) -> Arch {
    match a {
        ArchArg::Amd64 => Arch::Amd64,
        ArchArg::Arm64 => Arch::Arm64,
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    let target_arch = match &cli.command {
        Command::Up { target, .. }
        | Command::Render { target, .. }
        | Command::Preflight { target, .. } => target.arch,
        Command::Images { arch, .. } => *arch,
        Command::Bundle {
            action: crate::cli::BundleAction::Save { arch, .. },
        } => *arch,
        _ => None,
    };
    let overrides = Overrides {
        dir: g.dir.clone(),
        config: g.config.clone(),
        project: g.project.clone(),
        images: g.images.clone(),
        arch: target_arch.map(arch_of),
        host_ip: None,
        data_dir: g.data_dir.clone(),
        templates: g.templates.clone(),
    };
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let settings = settings::load(&cwd, &overrides)?;
    let ctx = Ctx {
        assets: Assets::new(settings.templates.clone()),
        settings,
        ui: Ui {
            verbose: g.verbose,
            yes: g.yes,
        },
    };
    match cli.command {
        Command::Render { target, json } => render_cmd(&ctx, &target, json),
        Command::Images { json, .. } => images_cmd(&ctx, json),
        Command::Up {
            target,
            dry_run,
            skip_preflight,
            progress,
            compose,
            deadline,
            bundle,
        } => crate::stack::up(
            &ctx,
            crate::stack::UpArgs {
                target,
                dry_run,
                skip_preflight,
                progress,
                compose,
                deadline,
                bundle,
            },
        ),
        Command::Down {
            purge,
            timeout,
            compose,
        } => crate::stack::down(&ctx, purge, timeout, compose),
        Command::Status { json, compose } => crate::stack::status(&ctx, json, compose),
        Command::Logs {
            services,
            follow,
            tail,
            since,
        } => crate::stack::logs(&ctx, services, follow, tail, since),
        Command::Preflight {
            target,
            json,
            strict,
        } => crate::preflight::preflight_cmd(&ctx, &target, json, strict),
        Command::Bundle { action } => crate::bundle::command(&ctx, action),
    }
}

/// The architecture to render for: flag or settings, else the host's.
pub fn resolve_arch(s: &Settings) -> anyhow::Result<Arch> {
    if let Some(a) = s.arch {
        return Ok(a);
    }
    Arch::host().ok_or_else(|| {
        CdqError::usage(format!(
            "this host's architecture `{}` is not one cdq deploys to",
            std::env::consts::ARCH
        ))
        .hint("cdq deploys to amd64 (x86_64) and arm64 (aarch64) hosts")
        .into()
    })
}

/// Decides the host IP, asking on a TTY when there are several candidates.
pub fn resolve_ip(ctx: &Ctx, flag: Option<IpAddr>) -> anyhow::Result<hostip::Decision> {
    let s = &ctx.settings;
    let stored = hostip::load_stored(&s.deploy_dir)?;
    // Interfaces are only listed when nothing explicit or stored settles it.
    let cands = if flag.or(s.host_ip).or(stored).is_none() {
        hostip::candidates(&hostip::interfaces()?)
    } else {
        Vec::new()
    };
    match hostip::decide(flag, s.host_ip, stored, &cands)? {
        Need::Decided(d) => Ok(d),
        Need::Choose(c) => {
            if !ctx.ui.interactive() {
                return Err(hostip::ambiguous(&c).into());
            }
            let i = ctx.ui.select_ip(&c)?;
            Ok(hostip::Decision {
                ip: IpAddr::V4(c[i].1),
                source: hostip::Source::Selected,
                changed_from: None,
            })
        }
    }
}

/// What a render produced, in memory.
pub struct Rendered {
    pub arch: Arch,
    pub ip: hostip::Decision,
    pub catalog: Catalog,
    pub files: Vec<render::File>,
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

/// Renders the deploy kit in memory.
pub fn render_kit(
    ctx: &Ctx,
    target: &Target,
    mode: SecretsMode,
) -> anyhow::Result<(Rendered, secrets::Outcome)> {
    let s = &ctx.settings;
    let arch = match target.arch {
        Some(a) => arch_of(a),
        None => resolve_arch(s)?,
    };
    let ip = resolve_ip(ctx, target.ip)?;
    let (secrets, outcome) = match mode {
        SecretsMode::Ensure => secrets::ensure(&s.deploy_dir)?,
        SecretsMode::ReadOnly => match secrets::load_existing(&s.deploy_dir)? {
            Some(x) => (x, secrets::Outcome::Kept),
            None => (secrets::Secrets::placeholders(), secrets::Outcome::Kept),
        },
    };
    let catalog = Catalog::load(&ctx.assets, arch, &s.images, &s.versions)?;
    let tz = s.timezone.clone().unwrap_or_else(crate::host::timezone);
    let files = render::render(&render::Input {
        settings: s,
        arch,
        host_ip: ip.ip,
        timezone: &tz,
        catalog: &catalog,
        secrets: &secrets,
        assets: &ctx.assets,
    })?;
    let compose_path = s.deploy_dir.join(render::compose_file_name(arch));
    Ok((
        Rendered {
            arch,
            ip,
            catalog,
            files,
            compose_path,
        },
        outcome,
    ))
}

/// Writes a render to the deploy directory and remembers the IP.
pub fn write_kit(ctx: &Ctx, r: &Rendered) -> anyhow::Result<Vec<(PathBuf, Change)>> {
    let dir = &ctx.settings.deploy_dir;
    let report = render::write(dir, &r.files, true)?;
    hostip::store(dir, r.ip.ip)?;
    Ok(report)
}

fn render_cmd(ctx: &Ctx, target: &Target, json: bool) -> anyhow::Result<i32> {
    let (r, outcome) = render_kit(ctx, target, SecretsMode::Ensure)?;
    let report = write_kit(ctx, &r)?;
    if json {
        let files: Vec<serde_json::Value> = report
            .iter()
            .map(|(p, c)| {
                serde_json::json!({"path": p, "change": match c { Change::Created => "created", Change::Changed => "changed", Change::Unchanged => "unchanged" }})
            })
            .collect();
        ctx.ui.out(serde_json::to_string_pretty(&serde_json::json!({
            "arch": r.arch.name(),
            "host_ip": r.ip.ip.to_string(),
            "compose_file": r.compose_path,
            "files": files,
        }))?);
    } else {
        report_render(ctx, &r, &outcome, &report);
    }
    Ok(0)
}

/// Tells the user what a render did: the IP and where it came from, secrets, changed files.
pub fn report_render(
    ctx: &Ctx,
    r: &Rendered,
    outcome: &secrets::Outcome,
    report: &[(PathBuf, Change)],
) {
    let ui = &ctx.ui;
    if let Some(old) = r.ip.changed_from {
        ui.warn(format!(
            "host IP changed from {old} to {} ({}): kafka now advertises the new one",
            r.ip.ip,
            r.ip.source.describe()
        ));
    }
    match outcome {
        secrets::Outcome::Created => ui.info(format!(
            "generated passwords in {} (mode 0600; back it up with the data)",
            secrets::FILE
        )),
        secrets::Outcome::Appended(k) => {
            ui.info(format!("added {} to {}", k.join(", "), secrets::FILE))
        }
        secrets::Outcome::Kept => {}
    }
    ui.info(format!(
        "rendered for {}, host IP {} ({})",
        r.arch,
        r.ip.ip,
        r.ip.source.describe()
    ));
    ui.render_report(&ctx.settings.deploy_dir, report);
}

fn images_cmd(ctx: &Ctx, json: bool) -> anyhow::Result<i32> {
    let s = &ctx.settings;
    let arch = resolve_arch(s)?;
    let catalog = Catalog::load(&ctx.assets, arch, &s.images, &s.versions)?;
    let list: Vec<(&str, &str)> = s
        .services
        .iter()
        .map(|svc| (svc.name(), catalog.image(*svc)))
        .collect();
    if json {
        let m: serde_json::Map<String, serde_json::Value> = list
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        ctx.ui.out(serde_json::to_string_pretty(
            &serde_json::json!({"arch": arch.name(), "images": m}),
        )?);
    } else {
        for (_, img) in list {
            ctx.ui.out(img);
        }
    }
    Ok(0)
}
