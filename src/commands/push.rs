//! `cdq push`: copies the current image set from this host (or from a bundle loaded first)
//! into the registry, under the names cdq renders for it. One architecture per run; a
//! multi-arch tag is assembled from two pushes by the registry's tools (see the README).

use std::path::PathBuf;

use crate::bundle::{self, Want as BundleWant};
use crate::catalog::Catalog;
use crate::cli::ProgressMode;
use crate::context::Context;
use crate::error::{CdqError, Kind};
use crate::ops::transfer::{self, Copy, Retry};
use crate::registry::Keychain;
use crate::ui::{TransferProgress, Ui};

pub fn run(
    ctx: Context,
    ui: &Ui,
    bundle_file: Option<PathBuf>,
    progress: ProgressMode,
) -> anyhow::Result<i32> {
    let s = &ctx.settings;
    if s.images.registry().is_none() {
        return Err(CdqError::usage(format!(
            "the image set `{}` has no registry to push to",
            s.images
        ))
        .hint("name one: `--registry harbor.example.com:5000/cd` (or `registry:` in cdq.yaml, `CDQ_REGISTRY`)")
        .into());
    }
    let targets = ctx.catalog()?;
    let sources = Catalog::load(
        &ctx.assets,
        ctx.arch,
        &s.images.without_registry(),
        &s.versions,
    )?;
    let copies: Vec<Copy> = s
        .services
        .iter()
        .map(|svc| Copy {
            service: svc.name().to_string(),
            source: sources.image(*svc).to_string(),
            target: targets.image(*svc).to_string(),
        })
        .collect();
    let origin = super::pull::origin(s);
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        if let Some(file) = &bundle_file {
            let want = BundleWant {
                arch: ctx.arch,
                because: format!("the push is for {}", ctx.arch),
            };
            let report = bundle::load(&engine, file, &want, false, ui).await?;
            for l in super::bundle::describe_load(&report, false) {
                ui.info(l);
            }
        }
        let keychain = Keychain::load()?;
        let reporter = TransferProgress::new(progress, "push");
        let work = transfer::push(
            &engine,
            &copies,
            ctx.arch,
            &keychain,
            Retry::default(),
            &reporter,
            &origin,
        );
        tokio::select! {
            r = work => r?,
            _ = tokio::signal::ctrl_c() => return Err(CdqError::new(Kind::Interrupted, "interrupted: the push was stopped")
                .hint("run `cdq push` again: layers the registry has are not sent twice")
                .into()),
        }
        ui.info(format!(
            "pushed {} {} images to `{}`",
            copies.len(),
            ctx.arch,
            s.images.registry().map(|r| r.prefix.as_str()).unwrap_or("")
        ));
        Ok(0)
    })
}
