//! `cdq up`: (bundle load) -> render in memory -> pull (`--pull`) -> preflight -> lock ->
//! render to disk -> observe and plan -> execute with health-gated start -> report.
//! Everything before the lock writes nothing to the deploy directory: a host that fails
//! preflight keeps no trace. The pull comes after the in-memory render (it needs the
//! references) and before preflight (which then checks the pulled images' architecture and
//! user) and the lock (pulling touches no deploy file, and another cdq pulling the same
//! images is harmless); a failed pull stops before anything is created.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::ProgressMode;
use crate::confighash::Overlay;
use crate::context::Context;
use crate::error::Kind;
use crate::execute::{Outcome, Progress};
use crate::kit::{self, SecretsMode};
use crate::ops::up as ops;
use crate::preflight;
use crate::project;
use crate::secrets::Scrubber;
use crate::settings::Settings;
use crate::ui::{self, Ui};

use super::signals::{self, Signals};

pub struct Args {
    pub ip: Option<IpAddr>,
    /// `--arch` (or `CDQ_ARCH`) was given, rather than read from the settings.
    pub explicit_arch: bool,
    pub dry_run: bool,
    pub skip_preflight: bool,
    pub progress: ProgressMode,
    pub compose: Option<PathBuf>,
    /// The deadline of services outside the catalogue (`--deadline`).
    pub deadline: Option<Duration>,
    /// An offline bundle to load before anything else.
    pub bundle: Option<PathBuf>,
    /// `--pull`.
    pub pull: crate::ops::transfer::Policy,
    /// Services whose foreign data directory the user adopts (`--adopt-data`).
    pub adopt: Vec<String>,
    /// `--no-backup`: no backup of a stateful service before its image is replaced.
    pub no_backup: bool,
}

pub fn run(settings: Settings, ui: &Ui, a: Args) -> anyhow::Result<i32> {
    // A given compose file is deployed as it is: nothing is rendered, no IP is needed.
    let ctx = match a.compose {
        Some(_) => Context::new(settings)?,
        None => super::rendering_context(settings, ui, a.ip)?,
    }
    .adopting(a.adopt.clone());
    super::runtime()?.block_on(up(&ctx, ui, a))
}

async fn up(ctx: &Context, ui: &Ui, a: Args) -> anyhow::Result<i32> {
    let t0 = Instant::now();
    let s = &ctx.settings;
    let sig = Signals::install()?;
    const UNCHANGED: &str = "nothing was changed; run `cdq up` again";
    let engine = Arc::new(
        sig.guard(
            "connecting to the Docker daemon",
            UNCHANGED,
            super::connect(),
        )
        .await?,
    );
    if let Some(b) = &a.bundle {
        sig.guard(
            "loading the bundle",
            "images loaded before the interruption stay, nothing else was changed; run `cdq up --bundle FILE` again to load the rest",
            super::bundle::load_for_up(ctx, ui, &*engine, b, a.explicit_arch, a.dry_run),
        )
        .await?;
    }

    let rendered = match &a.compose {
        Some(_) => None,
        None => Some(kit::render(ctx, SecretsMode::ReadOnly)?.0),
    };
    let preview = match (&a.compose, &rendered) {
        (Some(f), _) => project::load(&kit::absolute(f), &s.project)?,
        (None, Some(r)) => r.project(ctx)?,
        (None, None) => unreachable!("either a compose file or a render"),
    };
    // A dry run changes nothing, images included: it says what it would pull.
    let wants: Vec<crate::ops::transfer::Want> = preview
        .services
        .iter()
        .map(|(name, spec)| crate::ops::transfer::Want {
            service: name.clone(),
            reference: spec.image.clone(),
        })
        .collect();
    if a.dry_run {
        let todo = sig
            .guard(
                "checking which images to pull",
                UNCHANGED,
                crate::ops::transfer::to_pull(&*engine, &wants, ctx.arch, a.pull),
            )
            .await?;
        for w in &todo {
            ui.info(format!("would pull `{}` for {}", w.reference, ctx.arch));
        }
    } else {
        sig.guard(
            "pulling images",
            &format!(
                "{}, no container was created; run `cdq up` again",
                super::pull::PULL_LEFT
            ),
            super::pull::pull_images(ctx, ui, &*engine, &wants, ctx.arch, a.pull, a.progress),
        )
        .await?;
    }

    if a.skip_preflight {
        ui.warn("preflight skipped (--skip-preflight): problems on this host will show up as failed services");
    } else if let Some(r) = &rendered {
        let findings = sig
            .guard(
                "checking the host (preflight)",
                UNCHANGED,
                preflight::findings(ctx, Ok(&*engine), r, &preview),
            )
            .await?;
        if preflight::failed(&findings, false) {
            ui.out(preflight::report::table(&findings));
            return Err(preflight::stopped(&findings, false).into());
        }
    }

    if a.dry_run {
        let overlay: Overlay = rendered
            .iter()
            .flat_map(|r| {
                r.files
                    .iter()
                    .map(|f| (s.deploy_dir.join(&f.rel), f.contents.as_bytes().to_vec()))
            })
            .collect();
        let observed = sig
            .guard(
                "planning",
                UNCHANGED,
                ops::observe(&*engine, &preview, &overlay),
            )
            .await?;
        ui.out(observed.plan.to_string());
        return Ok(0);
    }

    // Host-wide first: two directories using one project name must not race either.
    let _project_lock = crate::lock::acquire_project(&preview.name, &s.deploy_dir)?;
    let _lock = crate::lock::acquire(&s.deploy_dir)?;
    let project = match &a.compose {
        Some(f) => project::load(&kit::absolute(f), &s.project)?,
        None => {
            let (r, change) = kit::render(ctx, SecretsMode::Ensure)?;
            let report = kit::write(ctx, &r)?;
            super::render::report_render(ctx, ui, &change, &report);
            project::load(&r.compose_path, &s.project)?
        }
    };
    for (dir, to) in ops::adopt(&project, &ctx.adopt)? {
        ui.warn(format!("adopted `{}`: {to}", dir.display()));
    }
    sig.check(
        "writing the deploy kit",
        "the kit is written (each file whole); no container was changed; run `cdq up` again",
    )?;
    let observed = sig
        .guard(
            "planning",
            match a.compose {
                Some(_) => UNCHANGED,
                None => "the kit is written; no container was changed; run `cdq up` again",
            },
            ops::observe(&*engine, &project, &Overlay::new()),
        )
        .await?;
    // The same text `--dry-run` prints: what it says is what runs.
    ui.info(observed.plan.to_string().trim_end());
    if observed.is_current() {
        ui.info(format!(
            "nothing to change: {} services up to date ({:.2}s)",
            observed.plan.steps.len(),
            t0.elapsed().as_secs_f64()
        ));
        return Ok(0);
    }

    if !a.no_backup {
        sig.guard(
            "backing up before the upgrade",
            "no container was changed; an unfinished backup may be left as a hidden `.cdq-partial` file in `backups/` (it is not a backup: delete it); run `cdq up` again",
            super::backup::before_upgrade(
                &*engine,
                ctx,
                ui,
                &project,
                &observed.plan,
                &observed.containers,
            ),
        )
        .await?;
    }

    let names = observed.services();
    let scrubber = Scrubber::for_deploy_dir(&s.deploy_dir)?;
    let progress = progress_sink(a.progress, &names, scrubber.clone());
    let result = ops::converge(
        engine.clone(),
        &project,
        &observed,
        ops::options(s, a.deadline),
        progress.clone(),
        sig.cancel(),
    )
    .await;
    drop(progress);
    let outcome = result?;
    if let Outcome::Failed(failures) = &outcome {
        for f in failures {
            eprint!("{}", scrubber.scrub(&ui::failure_report(f)));
        }
    }
    match ops::outcome_error(&outcome) {
        None => {
            sig.check(
                "finishing",
                "every service is healthy; nothing is left to do",
            )?;
            ui.info(format!(
                "{} services healthy in {:.1}s",
                names.len(),
                t0.elapsed().as_secs_f64()
            ));
            if a.compose.is_none() {
                ui.info(super::logins::next_steps(ctx));
            }
            Ok(0)
        }
        Some(mut e) => {
            if let (Some(n), Kind::Interrupted) = (sig.received(), e.kind) {
                e.kind = Kind::Signal(n);
                e.message = e.message.replacen(
                    "interrupted",
                    &format!("interrupted by {}", signals::name(n)),
                    1,
                );
            }
            Err(e.into())
        }
    }
}

fn progress_sink(mode: ProgressMode, services: &[String], scrubber: Scrubber) -> Arc<dyn Progress> {
    use std::io::IsTerminal;
    match mode {
        ProgressMode::Json => Arc::new(ui::JsonProgress::new(scrubber)),
        ProgressMode::Plain => Arc::new(ui::PlainProgress::new(scrubber)),
        ProgressMode::Tty => Arc::new(ui::TtyProgress::new(services, scrubber)),
        ProgressMode::Auto if std::io::stderr().is_terminal() => {
            Arc::new(ui::TtyProgress::new(services, scrubber))
        }
        ProgressMode::Auto => Arc::new(ui::PlainProgress::new(scrubber)),
    }
}
