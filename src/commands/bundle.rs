//! `cdq bundle save|load` and the load step of `cdq up --bundle`: what they print.

use std::path::{Path, PathBuf};

use crate::bundle::{self, LoadReport, SaveReport, Want, short};
use crate::cli::BundleAction;
use crate::context::{Context, host_arch};
use crate::engine::Engine;
use crate::services::Arch;
use crate::settings::Settings;
use crate::ui::{Ui, human_bytes};

/// `cdq bundle save|load`.
pub fn run(settings: Settings, ui: &Ui, action: BundleAction) -> anyhow::Result<i32> {
    let rt = super::runtime()?;
    match action {
        BundleAction::Save { output, .. } => {
            let ctx = Context::new(settings)?;
            let arch = ctx.arch;
            let images: Vec<(String, String)> = ctx
                .images()?
                .into_iter()
                .map(|(svc, image)| (svc.name().to_string(), image))
                .collect();
            let out = output.unwrap_or_else(|| PathBuf::from(format!("cdq-images-{arch}.bundle")));
            let wants = super::pull::wants(&ctx, &[])?;
            let report = rt.block_on(async {
                let engine = super::connect().await?;
                // What the bundle needs and this host lacks for `arch` comes from the
                // registry first (an amd64 office machine filling a bundle for arm64).
                let pulling = super::pull::pull_images(
                    &ctx,
                    ui,
                    &engine,
                    &wants,
                    arch,
                    crate::ops::transfer::Policy::Missing,
                    crate::cli::ProgressMode::Auto,
                );
                // Ctrl-C as the save itself takes it (`bundle::save`): exit 130.
                let pulled = tokio::select! {
                    r = pulling => r?,
                    _ = tokio::signal::ctrl_c() => {
                        return Err(crate::error::CdqError::new(
                            crate::error::Kind::Interrupted,
                            "interrupted: the pulls were stopped; no bundle was written",
                        )
                        .hint(format!("{}; run `cdq bundle save` again", super::pull::PULL_LEFT))
                        .into());
                    }
                };
                if pulled > 0 {
                    ui.info(format!("pulled {pulled} {arch} images for the bundle"));
                }
                bundle::save(&engine, &images, arch, &out, ui).await
            })?;
            for l in describe_save(&report) {
                ui.info(l);
            }
            if ui.verbose > 0 {
                ui.info(profile_save(&report.profile));
            }
            Ok(0)
        }
        BundleAction::SelfCheck => self_check(),
        BundleAction::Load { file, arch } => {
            let want = want(arch.map(super::arch_of), "was given")?;
            let report = rt.block_on(async {
                let sig = super::signals::Signals::install()?;
                let engine = sig
                    .guard(
                        "connecting to the Docker daemon",
                        "nothing was loaded; run `cdq bundle load` again",
                        super::connect(),
                    )
                    .await?;
                sig.guard(
                    "loading the bundle",
                    "images loaded before the interruption stay (Docker keeps only whole images); run `cdq bundle load` again to load the rest",
                    bundle::load(&engine, &file, &want, false, ui),
                )
                .await
            })?;
            for l in describe_load(&report, false) {
                ui.info(l);
            }
            if ui.verbose > 0 && !report.loaded.is_empty() {
                ui.info(profile_load(&report.profile));
            }
            Ok(0)
        }
    }
}

/// `cdq bundle self-check`: one line on stdout, or the error.
pub fn self_check() -> anyhow::Result<i32> {
    let line = bundle::self_check()?;
    Ui {
        verbose: 0,
        yes: false,
    }
    .out(line);
    Ok(0)
}

/// The architecture a bundle must hold: the flag's, else the host's.
fn want(flag: Option<Arch>, how: &str) -> anyhow::Result<Want> {
    if let Some(a) = flag {
        return Ok(Want {
            arch: a,
            because: format!("`--arch {a}` {how}"),
        });
    }
    let host = host_arch()?;
    Ok(Want {
        arch: host,
        because: format!("this host is {host}"),
    })
}

/// `cdq up --bundle FILE`: loads (or, on a dry run, verifies) before anything else.
pub async fn load_for_up<E: Engine>(
    ctx: &Context,
    ui: &Ui,
    engine: &E,
    file: &Path,
    explicit_arch: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let want = match explicit_arch {
        true => want(Some(ctx.arch), "was given")?,
        false => match ctx.settings.arch {
            Some(a) => Want {
                arch: a,
                because: format!("the deploy is for {a} (`arch` in the settings)"),
            },
            None => want(None, "")?,
        },
    };
    let report = bundle::load(engine, file, &want, dry_run, ui).await?;
    for l in describe_load(&report, dry_run) {
        ui.info(l);
    }
    Ok(())
}

/// One line per image for `cdq bundle save`.
pub fn describe_save(r: &SaveReport) -> Vec<String> {
    let mut lines: Vec<String> = r
        .manifest
        .images
        .iter()
        .map(|i| {
            format!(
                "  {}  {}  {}",
                i.reference,
                short(&i.id),
                human_bytes(i.size)
            )
        })
        .collect();
    lines.push(format!(
        "saved {} {} images to `{}`: {} ({} as a docker save tar; {} distinct blobs) in {:.1}s",
        r.manifest.images.len(),
        r.manifest.arch,
        r.path.display(),
        human_bytes(r.bytes),
        human_bytes(r.tar_bytes),
        r.manifest.blobs.len(),
        r.elapsed.as_secs_f64()
    ));
    lines
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `cdq -v bundle save`: where the time went (the stages overlap).
pub fn profile_save(p: &bundle::SaveProfile) -> String {
    format!(
        "time: export {} (waiting for the daemon {}), sha256 {}, waiting for compression {}, compressing {} over {} workers, writing {}, finishing the file {}",
        secs(p.export),
        secs(p.export_wait),
        secs(p.hashing),
        secs(p.compress_wait),
        secs(p.compress),
        p.workers,
        secs(p.write),
        secs(p.finish)
    )
}

/// `cdq -v bundle load`: where the time went (decompression overlaps the import).
pub fn profile_load(p: &bundle::LoadProfile) -> String {
    format!(
        "time: verify {}, import {} (waiting for decompression {}, for the daemon {}), decompressing {} over {} workers",
        secs(p.verify),
        secs(p.import),
        secs(p.decompress_wait),
        secs(p.send_wait),
        secs(p.decompress),
        p.workers
    )
}

/// What `cdq bundle load` prints.
pub fn describe_load(r: &LoadReport, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for i in &r.present {
        lines.push(format!("  present  {}  {}", i.reference, short(&i.id)));
    }
    let verb = if dry_run { "would load" } else { "loaded" };
    for i in &r.loaded {
        let note = if r.replaced.contains(&i.reference) {
            " (the tag pointed at another image before)"
        } else {
            ""
        };
        lines.push(format!(
            "  {verb:<8} {}  {}{note}",
            i.reference,
            short(&i.id)
        ));
    }
    if r.loaded.is_empty() {
        lines.push(format!(
            "all {} images already present; nothing loaded ({:.2}s)",
            r.present.len(),
            r.elapsed.as_secs_f64()
        ));
    } else {
        lines.push(format!(
            "{verb} {} images ({}), {} already present, in {:.1}s",
            r.loaded.len(),
            human_bytes(r.bytes),
            r.present.len(),
            r.elapsed.as_secs_f64()
        ));
    }
    lines
}
