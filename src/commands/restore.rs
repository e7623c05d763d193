//! `cdq restore FILE`: checks the whole backup first (nothing is written for a damaged or
//! truncated file), refuses to put it over data that is there unless confirmed (then moves
//! that data aside, never deletes it), and refuses while the stack runs. `cdq up` afterwards
//! brings back the same data and the same passwords.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bundle::Meters;
use crate::context::Context;
use crate::error::CdqError;
use crate::kit;
use crate::ops::backup::SETTINGS;
use crate::ops::restore::{self, Targets};
use crate::services::Service;
use crate::settings::Settings;
use crate::ui::Ui;

pub fn run(
    ui: &Ui,
    file: &Path,
    load: impl Fn() -> anyhow::Result<Settings>,
) -> anyhow::Result<i32> {
    let ctx = Context::new(load()?)?;
    let file = kit::absolute(file);
    let size = std::fs::metadata(&file)
        .map_err(|e| {
            CdqError::usage(format!("cannot read `{}`: {e}", file.display()))
                .hint("give the path of a file `cdq backup` wrote")
        })?
        .len();
    let meter = ui.start("verifying", Some(size));
    let manifest = restore::verify(&file, &*meter)?;
    ui.info(format!(
        "`{}`: a backup of project `{}` by cdq {}, {} files, all checksums match",
        file.display(),
        manifest.project,
        manifest.cdq_version,
        manifest.entries.len()
    ));

    // Refused while the stack runs: its servers would overwrite what is restored.
    let name = kit::project_name(&ctx, kit::on_disk(&ctx, None).ok().flatten().as_ref());
    let running = super::runtime()?.block_on(async {
        match super::connect().await {
            Ok(e) => crate::engine::Engine::list_containers(&e, &name)
                .await
                .map(|c| c.len())
                .unwrap_or(0),
            Err(_) => 0,
        }
    });
    if running > 0 {
        return Err(CdqError::usage(format!(
            "project `{name}` has {running} containers: restoring under a running stack would lose data"
        ))
        .hint("stop it first with `cdq down` (data is kept; it is moved aside by a confirmed restore)")
        .into());
    }

    let mut t = targets(&ctx)?;
    let busy = restore::occupied(&manifest, &t);
    let has_settings = manifest.entries.iter().any(|e| e.path == SETTINGS);
    if !busy.is_empty() {
        confirm(ui, &busy)?;
        for (from, to) in restore::move_aside(&busy)? {
            ui.info(format!(
                "moved {} aside to {}",
                from.display(),
                to.display()
            ));
        }
    }
    let _lock = crate::lock::acquire(&ctx.settings.deploy_dir)?;
    // The backup's settings may put the data elsewhere: read them before the data goes in.
    if has_settings && !t.config_path.exists() {
        // Restore the settings file first, then read it, so the data lands where `up` looks.
        let written = restore::extract_settings(&file, &t.config_path)?;
        if written {
            let ctx2 = Context::new(load()?)?;
            t = targets(&ctx2)?;
            let busy = restore::occupied(&manifest, &t);
            let busy: Vec<_> = busy.into_iter().filter(|p| *p != t.config_path).collect();
            if !busy.is_empty() {
                confirm(ui, &busy)?;
                for (from, to) in restore::move_aside(&busy)? {
                    ui.info(format!(
                        "moved {} aside to {}",
                        from.display(),
                        to.display()
                    ));
                }
            }
        }
    }
    let written = restore::extract(&file, &t)?;
    for p in &written {
        ui.info(format!("  restored {}", p.display()));
    }
    ui.info(format!(
        "restored into {}; run `cdq up` to start the stack on it (same passwords, same data)",
        t.deploy_dir.display()
    ));
    Ok(0)
}

fn targets(ctx: &Context) -> anyhow::Result<Targets> {
    let s = &ctx.settings;
    let catalog = ctx.catalog()?;
    let uids: BTreeMap<String, u32> = [Service::Mysql, Service::Redis]
        .into_iter()
        .filter_map(|svc| {
            catalog
                .images
                .get(&svc)
                .map(|f| (svc.name().to_string(), f.uid))
        })
        .collect();
    Ok(Targets {
        deploy_dir: s.deploy_dir.clone(),
        config_path: s.config_path.clone(),
        data_dir: s.data_dir.clone(),
        uids,
        project: s.project.clone(),
    })
}

fn confirm(ui: &Ui, busy: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let names = busy
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let what = format!(
        "these already hold data: {names}; a restore moves them aside (to `<name>.before-restore-<time>`)"
    );
    let ok = if ui.yes {
        true
    } else if ui.interactive() {
        ui.confirm_typed(&what, "restore")?
    } else {
        return Err(CdqError::usage(format!(
            "refusing to restore over data that is there: {names}"
        ))
        .hint("restore into an empty deploy directory (`--dir NEW`), or add `--yes` to move what is there aside first")
        .into());
    };
    if !ok {
        return Err(CdqError::usage("restore not confirmed: nothing was changed").into());
    }
    Ok(())
}
