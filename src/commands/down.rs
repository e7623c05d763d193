//! `cdq down`: removes the stack's containers and networks; with `--purge` (confirmed), its
//! data and passwords too.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::context::Context;
use crate::engine::Engine as _;
use crate::error::CdqError;
use crate::kit;
use crate::ops::down::{self, NetworkRemoval, Removed};
use crate::ops::owner;
use crate::ui::Ui;

use super::signals::Signals;

pub fn run(
    ctx: Context,
    ui: &Ui,
    purge: bool,
    timeout: u64,
    compose: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let s = &ctx.settings;
    if purge {
        down::guard_purge(s)?;
        let what = format!(
            "this deletes the data cdq made in `{}` and the passwords in `{}`: the data cannot be recovered",
            s.data_dir.display(),
            crate::secrets::path(&s.deploy_dir).display()
        );
        let confirmed = if ui.yes {
            true
        } else if ui.interactive() {
            ui.confirm_typed(&what, &s.project)?
        } else {
            return Err(CdqError::usage(
                "`cdq down --purge` needs a confirmation and there is no terminal to ask on",
            )
            .hint("run it in a terminal, or add `--yes` if you really mean to delete the data")
            .into());
        };
        if !confirmed {
            return Err(CdqError::usage("purge not confirmed: nothing was deleted").into());
        }
    }
    let project = kit::on_disk(&ctx, compose.as_deref())?;
    let name = kit::project_name(&ctx, project.as_ref());
    let _project_lock = crate::lock::acquire_project(&name, &s.deploy_dir)?;
    let _lock = crate::lock::acquire(&s.deploy_dir)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let sig = Signals::install()?;
        let engine = sig
            .guard(
                "connecting to the Docker daemon",
                "nothing was removed; run `cdq down` again",
                super::connect(),
            )
            .await?;
        let dir = project
            .as_ref()
            .map_or(s.deploy_dir.clone(), |p| p.dir.clone());
        let listed = sig
            .guard(
                "listing the stack's containers",
                "nothing was removed; run `cdq down` again",
                async {
                    engine
                        .list_containers(&name)
                        .await
                        .map_err(|e| anyhow::Error::new(crate::engine::explain(e)))
                },
            )
            .await?;
        owner::check_owner(&name, &dir, &listed)?;
        const LEFT: &str = "what was removed stays removed and the rest is as it was (data kept); run `cdq down` again to finish";
        let grace = Duration::from_secs(timeout);
        let mut say = |r: Removed| match r {
            Removed::Container(n) => ui.info(format!("removed {n}")),
            Removed::Network(n, NetworkRemoval::Removed) => ui.info(format!("removed network {n}")),
            Removed::Network(n, NetworkRemoval::LeftByDocker) => ui.warn(format!(
                "network `{n}` is left in place: Docker counts endpoints on it that no \
                 container holds (a Docker fault, moby/moby#42119). It is harmless and the \
                 next `cdq up` uses it again; to remove it, restart Docker \
                 (`sudo systemctl restart docker`) and run `cdq down` again"
            )),
        };
        let ours = sig
            .guard(
                "stopping and removing the stack's containers",
                LEFT,
                async {
                    Ok(down::remove_containers(&engine, &name, project.as_ref(), grace, &mut say)
                        .await?)
                },
            )
            .await?;
        sig.guard("removing the stack's network", LEFT, async {
            // Duplicates of the network (two creates raced): all but one go by id, so the
            // removal by name below is not ambiguous.
            let (_, duplicates) = owner::keep_and_duplicates(
                owner::ours_named(&engine, &name, &format!("{name}_default")).await?,
            );
            for d in duplicates {
                engine
                    .remove_network(&d.id)
                    .await
                    .map_err(crate::engine::explain)?;
            }
            down::remove_networks(&engine, &name, &ours, &mut say)
            .await
            .map_err(|mut e| {
                e.message.push_str(if purge {
                    "; the containers are removed, nothing was deleted"
                } else {
                    "; the containers are removed and the data kept"
                });
                anyhow::Error::new(e)
            })
        })
        .await?;
        if !purge {
            return anyhow::Ok(());
        }
        // The purge deletes on a blocking thread so the signal task keeps running; it asks
        // the flag before each deletion, so a signal lets the one under way finish (a data
        // directory goes whole) and nothing more is deleted.
        let flag = sig.flag();
        let settings = s.clone();
        let project = name.clone();
        let purged = tokio::task::spawn_blocking(move || {
            down::purge_until(&settings, &project, &|| flag.load(Ordering::SeqCst))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the purge thread failed: {e}"))??;
        for p in &purged.deleted {
            ui.info(format!("deleted {}", p.display()));
        }
        for (p, why) in &purged.left {
            ui.warn(format!("left {}: {why}", p.display()));
        }
        if purged.interrupted {
            let done = match purged.deleted.len() {
                0 => "nothing was deleted".to_string(),
                n => format!("the {n} paths listed above were deleted, each whole"),
            };
            sig.check(
                "purging the data",
                &format!(
                    "the containers and network are removed; {done}; everything else is as it was; run `cdq down --purge` again to delete the rest"
                ),
            )?;
        }
        anyhow::Ok(())
    })?;
    if !purge {
        ui.info(format!("data kept in {}", s.data_dir.display()));
    }
    Ok(0)
}
