//! `cdq down`: removes the stack's containers and networks; with `--purge` (confirmed), its
//! data and passwords too.

use std::path::PathBuf;
use std::time::Duration;

use crate::context::Context;
use crate::error::CdqError;
use crate::kit;
use crate::ops::down::{self, NetworkRemoval, Removed};
use crate::ui::Ui;

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
    let _lock = crate::lock::acquire(&s.deploy_dir)?;
    let project = kit::on_disk(&ctx, compose.as_deref())?;
    let name = kit::project_name(&ctx, project.as_ref());
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
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
        let ours =
            down::remove_containers(&engine, &name, project.as_ref(), grace, &mut say).await?;
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
    })?;
    if purge {
        let purged = down::purge(s, &name)?;
        for p in &purged.deleted {
            ui.info(format!("deleted {}", p.display()));
        }
        for (p, why) in &purged.left {
            ui.warn(format!("left {}: {why}", p.display()));
        }
    } else {
        ui.info(format!("data kept in {}", s.data_dir.display()));
    }
    Ok(0)
}
