//! `cdq pull`, and the pull step of `cdq up` and `cdq bundle save`: which images, the
//! credentials (the docker CLI's keychain), progress through `ui`. Signals are the
//! caller's: `cdq pull` and `cdq up` guard the pull with their [`Signals`].

use crate::cli::{ProgressMode, PullArg};
use crate::context::Context;
use crate::engine::Engine;
use crate::error::CdqError;
use crate::ops::transfer::{self, Policy, Retry, Want};
use crate::registry::Keychain;
use crate::services::Arch;
use crate::settings::Settings;
use crate::ui::{TransferProgress, Ui};

use super::signals::Signals;

pub fn policy(p: PullArg) -> Policy {
    match p {
        PullArg::Missing => Policy::Missing,
        PullArg::Always => Policy::Always,
        PullArg::Never => Policy::Never,
    }
}

/// The settings that produced the references, for the hints of a failed pull or push.
pub fn origin(s: &Settings) -> String {
    format!(
        "the image set `{}` (`--images`/`--registry`, `CDQ_IMAGES`/`CDQ_REGISTRY`, or `images:`/`registry:` in `{}`)",
        s.images,
        s.config_path.display()
    )
}

/// The enabled services' images, or those of `only` (which must be enabled ones).
pub fn wants(ctx: &Context, only: &[String]) -> anyhow::Result<Vec<Want>> {
    let all: Vec<Want> = ctx
        .images()?
        .into_iter()
        .map(|(s, r)| Want {
            service: s.name().to_string(),
            reference: r,
        })
        .collect();
    for name in only {
        if !all.iter().any(|w| w.service == *name) {
            let names: Vec<&str> = all.iter().map(|w| w.service.as_str()).collect();
            return Err(
                CdqError::usage(format!("`{name}` is not an enabled service"))
                    .hint(format!("name one of: {}", names.join(", ")))
                    .into(),
            );
        }
    }
    Ok(all
        .into_iter()
        .filter(|w| only.is_empty() || only.contains(&w.service))
        .collect())
}

/// Pulls what `policy` asks for among `wants`, for `arch`, with progress. Returns how many
/// images were pulled. Dropped mid-way (a signal), the daemon cancels the pull whose client
/// went away; finished layers and whole images stay.
pub async fn pull_images<E: Engine>(
    ctx: &Context,
    ui: &Ui,
    engine: &E,
    wants: &[Want],
    arch: Arch,
    policy: Policy,
    progress: ProgressMode,
) -> anyhow::Result<usize> {
    let todo = transfer::to_pull(engine, wants, arch, policy).await?;
    if todo.is_empty() {
        return Ok(0);
    }
    let keychain = Keychain::load()?;
    let reporter = TransferProgress::new(progress, "pull");
    ui.info(format!(
        "pulling {} image{} for {arch}",
        todo.len(),
        if todo.len() == 1 { "" } else { "s" }
    ));
    let origin = origin(&ctx.settings);
    transfer::pull(
        engine,
        &todo,
        arch,
        &keychain,
        Retry::default(),
        &reporter,
        &origin,
    )
    .await
    .map(|()| todo.len())
}

/// What a pull interrupted by a signal leaves, for the hint.
pub const PULL_LEFT: &str = "images pulled whole before the interruption stay, and so do finished layers; nothing else was changed";

/// `cdq pull [SERVICE…]`.
pub fn run(
    ctx: Context,
    ui: &Ui,
    services: Vec<String>,
    always: bool,
    progress: ProgressMode,
) -> anyhow::Result<i32> {
    let wants = wants(&ctx, &services)?;
    let policy = if always {
        Policy::Always
    } else {
        Policy::Missing
    };
    super::runtime()?.block_on(async {
        let sig = Signals::install()?;
        let engine = sig
            .guard(
                "connecting to the Docker daemon",
                "nothing was pulled; run `cdq pull` again",
                super::connect(),
            )
            .await?;
        let n = sig
            .guard(
                "pulling images",
                &format!("{PULL_LEFT}; run `cdq pull` again to pull the rest"),
                pull_images(&ctx, ui, &engine, &wants, ctx.arch, policy, progress),
            )
            .await?;
        ui.info(match n {
            0 => format!(
                "nothing to pull: the {} images are on this host for {}",
                wants.len(),
                ctx.arch
            ),
            n => format!("pulled {n} images for {}", ctx.arch),
        });
        Ok(0)
    })
}
