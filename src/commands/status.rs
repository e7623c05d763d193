//! `cdq status`: one row per service; exit 0 only when every service is up and healthy.

use std::path::PathBuf;

use crate::context::Context;
use crate::engine::explain;
use crate::error::Kind;
use crate::kit;
use crate::ops::status;
use crate::ui::Ui;

pub fn run(ctx: Context, ui: &Ui, json: bool, compose: Option<PathBuf>) -> anyhow::Result<i32> {
    let project = kit::on_disk(&ctx, compose.as_deref())?;
    let name = kit::project_name(&ctx, project.as_ref());
    let expected: Vec<String> = match &project {
        Some(p) => p.start_order().into_iter().map(str::to_string).collect(),
        None => ctx
            .settings
            .services
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
    };
    let rows = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        status::observe(&engine, &name, &expected)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))
    })?;
    let healthy = rows.iter().all(|r| r.ok);
    if json {
        ui.out(serde_json::to_string_pretty(
            &serde_json::json!({ "project": name, "healthy": healthy, "services": rows }),
        )?);
    } else {
        ui.out(status::table(&rows));
    }
    Ok(if healthy {
        0
    } else {
        Kind::Unhealthy.exit_code()
    })
}
