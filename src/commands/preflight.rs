//! `cdq preflight`: the findings as a table (or JSON) and exit 3 when something failed.

use std::net::IpAddr;

use crate::engine::docker::Docker;
use crate::error::Kind;
use crate::kit::{self, SecretsMode};
use crate::preflight::{self, report};
use crate::settings::Settings;
use crate::ui::Ui;

pub fn run(
    settings: Settings,
    ui: &Ui,
    ip: Option<IpAddr>,
    json: bool,
    strict: bool,
    adopt: Vec<String>,
) -> anyhow::Result<i32> {
    let ctx = super::rendering_context(settings, ui, ip)?.adopting(adopt);
    let (rendered, _) = kit::render(&ctx, SecretsMode::ReadOnly)?;
    let project = rendered.project(&ctx)?;
    let list = super::runtime()?.block_on(async {
        // A daemon that cannot be reached is a finding, not an error.
        match Docker::connect().await {
            Ok(d) => preflight::findings(&ctx, Ok(&d), &rendered, &project).await,
            Err(e) => preflight::findings::<Docker>(&ctx, Err(e), &rendered, &project).await,
        }
    })?;
    if json {
        ui.out(report::json(&list, strict)?);
    } else {
        ui.out(report::table(&list));
        ui.info(report::summary(&list, strict));
    }
    Ok(if preflight::failed(&list, strict) {
        Kind::Preflight.exit_code()
    } else {
        0
    })
}
