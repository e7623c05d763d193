//! The command layer: one file per command, the only code that sees clap values, builds the
//! async runtime, connects to the engine, prompts and prints (through `ui`). Each command
//! resolves its [`Context`] once (settings, architecture, host IP), then calls the layers
//! below (`kit`, `preflight`, `ops`, `bundle`), which return data.
//!
//! Nothing below this module imports it; only `lib.rs` does.

mod backup;
mod bundle;
mod completions;
mod diagnose;
mod down;
mod images;
mod logins;
mod logs;
mod preflight;
mod pull;
mod push;
mod render;
mod restore;
mod signals;
mod status;
mod swarm;
mod swarmnodes;
mod up;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;

use crate::cli::{ArchArg, BundleAction, Cli, Command};
use crate::context::Context;
use crate::engine::docker::Docker;
use crate::engine::explain;
use crate::hostip::{self, Choice, Decision};
use crate::services::Arch;
use crate::settings::{self, Overrides, Settings};
use crate::ui::Ui;

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    // Completions need no settings: a broken cdq.yaml must not stop a shell from loading them.
    if let Command::Completions { shell } = &cli.command {
        return completions::run(*shell);
    }
    // Nor does the release check of the bundle codec (run on a build machine, under qemu).
    if let Command::Bundle {
        action: BundleAction::SelfCheck,
    } = &cli.command
    {
        return bundle::self_check();
    }
    let target_arch = match &cli.command {
        Command::Up { target, .. }
        | Command::Render { target, .. }
        | Command::Preflight { target, .. } => target.arch,
        Command::Images { arch, .. } | Command::Pull { arch, .. } => *arch,
        // Several architectures are decided per architecture by the push itself.
        Command::Push { arch, .. } => match arch.as_slice() {
            [one] => Some(*one),
            _ => None,
        },
        Command::Bundle {
            action: BundleAction::Save { arch, .. },
        } => *arch,
        _ => None,
    };
    let overrides = Overrides {
        dir: g.dir.clone(),
        config: g.config.clone(),
        project: g.project.clone(),
        images: g.images.clone(),
        registry: g.registry.clone(),
        arch: target_arch.map(arch_of),
        data_dir: g.data_dir.clone(),
        templates: g.templates.clone(),
        target: g.target,
    };
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let ui = Ui {
        verbose: g.verbose,
        yes: g.yes,
    };
    // A restore may bring the settings file itself: one named with `--config` that is not
    // there yet is where it goes, not an error.
    if let Command::Restore { file } = &cli.command {
        return restore::run(&ui, file, || {
            let missing = overrides.config.as_ref().filter(|c| !c.exists());
            match missing {
                None => settings::load(&cwd, &overrides),
                Some(c) => {
                    let mut s = settings::load(
                        &cwd,
                        &Overrides {
                            config: None,
                            ..overrides.clone()
                        },
                    )?;
                    s.config_path = settings::absolute(&cwd, c);
                    s.config_found = false;
                    Ok(s)
                }
            }
        });
    }
    // A broken `cdq.yaml` is what diagnose is for: it goes on with the defaults and says so.
    if let Command::Diagnose { output } = &cli.command {
        let (s, problem) = match settings::load(&cwd, &overrides) {
            Ok(s) => (s, None),
            Err(e) => {
                let mut s = settings::load(
                    &cwd,
                    &Overrides {
                        config: Some("/dev/null".into()),
                        ..overrides.clone()
                    },
                )?;
                s.config_path = match &overrides.config {
                    Some(c) => settings::absolute(&cwd, c),
                    None => s.deploy_dir.join("cdq.yaml"),
                };
                s.config_found = s.config_path.exists();
                (s, Some(crate::error::format(&e)))
            }
        };
        return diagnose::run(s, &ui, output.clone(), problem);
    }
    let settings = settings::load(&cwd, &overrides)?;
    if settings.target == settings::Target::Swarm
        && let Some(result) = swarm::dispatch(&cli.command, &settings, &ui)
    {
        return result;
    }
    match cli.command {
        Command::Render { target, json } => render::run(settings, &ui, target.ip, json),
        Command::Images { json, .. } => images::run(Context::new(settings)?, &ui, json),
        Command::Up {
            target,
            dry_run,
            skip_preflight,
            progress,
            compose,
            deadline,
            bundle,
            pull,
            adopt_data,
            no_backup,
        } => up::run(
            settings,
            &ui,
            up::Args {
                ip: target.ip,
                explicit_arch: target.arch.is_some(),
                dry_run,
                skip_preflight,
                progress,
                compose,
                deadline,
                bundle,
                pull: pull::policy(pull),
                adopt: adopt_data,
                no_backup,
            },
        ),
        Command::Pull {
            services,
            always,
            progress,
            ..
        } => pull::run(Context::new(settings)?, &ui, services, always, progress),
        Command::Push {
            arch,
            bundle,
            progress,
        } => push::run(
            Context::new(settings)?,
            &ui,
            arch.into_iter().map(arch_of).collect(),
            bundle,
            progress,
        ),
        Command::Down {
            purge,
            timeout,
            compose,
        } => down::run(Context::new(settings)?, &ui, purge, timeout, compose),
        Command::Status {
            json,
            compose,
            watch,
            interval,
        } => {
            let watch = watch.then(|| std::time::Duration::from_secs(interval));
            status::run(Context::new(settings)?, &ui, json, compose, watch)
        }
        Command::Logs {
            services,
            follow,
            tail,
            since,
        } => logs::run(Context::new(settings)?, &ui, services, follow, tail, since),
        Command::Preflight {
            target,
            json,
            strict,
            adopt_data,
        } => preflight::run(settings, &ui, target.ip, json, strict, adopt_data),
        Command::Bundle { action } => bundle::run(settings, &ui, action),
        Command::Diagnose { .. } => unreachable!("handled before the settings are loaded"),
        Command::Backup { output } => backup::run(Context::new(settings)?, &ui, output),
        Command::Restore { .. } => unreachable!("handled before the settings are loaded"),
        Command::Logins { name } => logins::run(Context::new(settings)?, &ui, name),
        Command::Completions { .. } => unreachable!("handled before the settings are loaded"),
    }
}

pub fn arch_of(a: ArchArg) -> Arch {
    match a {
        ArchArg::Amd64 => Arch::Amd64,
        ArchArg::Arm64 => Arch::Arm64,
    }
}

/// The context of a command that renders: settings, architecture, and the host IP decided
/// here, once (asking on a terminal when several interfaces qualify).
fn rendering_context(settings: Settings, ui: &Ui, flag: Option<IpAddr>) -> anyhow::Result<Context> {
    let ctx = Context::new(settings)?;
    let ip = decide_ip(&ctx.settings, flag, ui.interactive(), |c| ui.select_ip(c))?;
    Ok(ctx.with_ip(ip))
}

/// Decides the host IP: flag, settings, stored, the only candidate, else `ask` (when
/// `interactive`) or the error listing the candidates.
fn decide_ip(
    s: &Settings,
    flag: Option<IpAddr>,
    interactive: bool,
    ask: impl FnOnce(&[(String, Ipv4Addr)]) -> anyhow::Result<usize>,
) -> anyhow::Result<Decision> {
    let stored = hostip::load_stored(&s.deploy_dir)?;
    // Interfaces are only listed when nothing explicit or stored settles it.
    let cands = if flag.or(s.host_ip).or(stored).is_none() {
        hostip::candidates(&hostip::interfaces()?)
    } else {
        Vec::new()
    };
    decide_among(flag, s.host_ip, stored, &cands, interactive, ask)
}

fn decide_among(
    flag: Option<IpAddr>,
    setting: Option<IpAddr>,
    stored: Option<IpAddr>,
    cands: &[(String, Ipv4Addr)],
    interactive: bool,
    ask: impl FnOnce(&[(String, Ipv4Addr)]) -> anyhow::Result<usize>,
) -> anyhow::Result<Decision> {
    match hostip::decide(flag, setting, stored, cands)? {
        Choice::Decided(d) => Ok(d),
        Choice::Choose(c) => {
            if !interactive {
                return Err(hostip::ambiguous(&c).into());
            }
            let i = ask(&c)?;
            Ok(Decision {
                ip: IpAddr::V4(c[i].1),
                source: hostip::Source::Selected,
                changed_from: None,
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn connect() -> anyhow::Result<Docker> {
    Docker::connect()
        .await
        .map_err(|e| anyhow::Error::new(explain(e)))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::kit::{self, SecretsMode};

    /// A first `up` with several candidate interfaces on a terminal: the IP is asked for
    /// once, when the context is made, and preflight's render and the real one both use it.
    #[test]
    fn the_ip_prompt_is_reached_once_for_both_renders() {
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
        let cands = vec![
            ("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 5)),
            ("eth1".to_string(), Ipv4Addr::new(192, 168, 7, 9)),
        ];
        let asked = Cell::new(0);
        let ip = decide_among(None, None, None, &cands, true, |c| {
            asked.set(asked.get() + 1);
            assert_eq!(c.len(), 2);
            Ok(1)
        })
        .unwrap();
        let ctx = Context::new(settings).unwrap().with_ip(ip);
        let (preview, _) = kit::render(&ctx, SecretsMode::ReadOnly).unwrap();
        let (real, _) = kit::render(&ctx, SecretsMode::Ensure).unwrap();
        assert_eq!(asked.get(), 1);
        for r in [&preview, &real] {
            let kafka = r
                .files
                .iter()
                .find(|f| f.rel.ends_with("server.properties"))
                .expect("kafka config rendered");
            assert!(kafka.contents.contains("192.168.7.9"), "{}", kafka.contents);
        }
    }

    #[test]
    fn several_candidates_without_a_terminal_is_an_error_naming_them() {
        let cands = vec![
            ("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 5)),
            ("eth1".to_string(), Ipv4Addr::new(192, 168, 7, 9)),
        ];
        let e = decide_among(None, None, None, &cands, false, |_| {
            panic!("must not ask without a terminal")
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("10.0.0.5"), "{e:#}");
    }
}
