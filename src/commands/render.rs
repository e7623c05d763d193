//! `cdq render`: writes the deploy kit and says what changed.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::context::Context;
use crate::kit::{self, SecretsMode};
use crate::render::Change;
use crate::secrets::{self, FileChange};
use crate::settings::Settings;
use crate::ui::Ui;

pub fn run(settings: Settings, ui: &Ui, ip: Option<IpAddr>, json: bool) -> anyhow::Result<i32> {
    let ctx = super::rendering_context(settings, ui, ip)?;
    let (r, change) = kit::render(&ctx, SecretsMode::Ensure)?;
    let report = kit::write(&ctx, &r)?;
    if json {
        let files: Vec<serde_json::Value> = report
            .iter()
            .map(|(p, c)| {
                let change = match c {
                    Change::Created => "created",
                    Change::Changed => "changed",
                    Change::Unchanged => "unchanged",
                };
                serde_json::json!({"path": p, "change": change})
            })
            .collect();
        let ip = ctx.ip.as_ref().map(|d| d.ip.to_string());
        ui.out(serde_json::to_string_pretty(&serde_json::json!({
            "arch": ctx.arch.name(),
            "host_ip": ip,
            "compose_file": r.compose_path,
            "files": files,
        }))?);
    } else {
        report_render(&ctx, ui, &change, &report);
    }
    Ok(0)
}

/// Tells the user what a render did: the IP and where it came from, secrets, changed files.
pub fn report_render(ctx: &Context, ui: &Ui, change: &FileChange, report: &[(PathBuf, Change)]) {
    if let Some(ip) = &ctx.ip
        && let Some(old) = ip.changed_from
    {
        ui.warn(format!(
            "host IP changed from {old} to {} ({}): kafka now advertises the new one",
            ip.ip,
            ip.source.describe()
        ));
    }
    if let Some(w) = secrets::foreign_owner(&ctx.settings.deploy_dir) {
        ui.warn(w);
    }
    match change {
        FileChange::Created => ui.info(format!(
            "generated passwords in {} (mode 0600; back it up with the data)",
            secrets::FILE
        )),
        FileChange::Appended(k) => ui.info(format!("added {} to {}", k.join(", "), secrets::FILE)),
        FileChange::Kept => {}
    }
    if let Some(ip) = &ctx.ip {
        ui.info(format!(
            "rendered for {}, host IP {} ({})",
            ctx.arch,
            ip.ip,
            ip.source.describe()
        ));
    }
    ui.render_report(&ctx.settings.deploy_dir, report);
}
