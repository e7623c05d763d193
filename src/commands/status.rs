//! `cdq status`: one row per service; exit 0 only when every service is up, healthy and as
//! rendered (a container changed outside cdq is reported with what differs). `--watch` shows
//! it again every interval until Ctrl-C (redrawn in place on a terminal).

use std::path::PathBuf;
use std::time::Duration;

use crate::context::Context;
use crate::error::Kind;
use crate::kit;
use crate::ops::status;
use crate::ui::Ui;

pub fn run(
    ctx: Context,
    ui: &Ui,
    json: bool,
    compose: Option<PathBuf>,
    watch: Option<Duration>,
) -> anyhow::Result<i32> {
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
    let dir = project
        .as_ref()
        .map_or(ctx.settings.deploy_dir.clone(), |p| p.dir.clone());
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        loop {
            let rows = status::observe(&engine, &name, &dir, project.as_ref(), &expected).await?;
            let healthy = rows.iter().all(|r| r.ok);
            let text = if json {
                serde_json::to_string(
                    &serde_json::json!({ "project": name, "healthy": healthy, "services": rows }),
                )? + "\n"
            } else {
                status::table(&rows)
            };
            let Some(every) = watch else {
                if json {
                    ui.out(serde_json::to_string_pretty(&serde_json::json!({
                        "project": name, "healthy": healthy, "services": rows
                    }))?);
                } else {
                    ui.out(text);
                }
                return Ok(if healthy {
                    0
                } else {
                    Kind::Unhealthy.exit_code()
                });
            };
            let when = crate::ops::backup::now();
            ui.redraw(if json {
                text
            } else {
                format!(
                    "{name}: {} (every {}s, Ctrl-C to stop; unix time {when})\n{text}",
                    if healthy {
                        "all healthy"
                    } else {
                        "NOT all healthy"
                    },
                    every.as_secs()
                )
            });
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(0),
            }
        }
    })
}
