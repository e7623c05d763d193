//! `cdq logs`: the services' log lines, merged and masked, on stdout.

use futures_util::StreamExt;

use crate::context::Context;
use crate::error::CdqError;
use crate::kit;
use crate::ops::logs::{self, Query};
use crate::secrets::Scrubber;
use crate::ui::Ui;

pub fn run(
    ctx: Context,
    ui: &Ui,
    services: Vec<String>,
    follow: bool,
    tail: Option<u64>,
    since: Option<String>,
) -> anyhow::Result<i32> {
    let since = since.as_deref().map(parse_since).transpose()?;
    let project = kit::on_disk(&ctx, None)?;
    let name = kit::project_name(&ctx, project.as_ref());
    let scrubber = Scrubber::for_deploy_dir(&ctx.settings.deploy_dir)?;
    let q = Query {
        services,
        follow,
        tail,
        since,
    };
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        let mut lines = std::pin::pin!(logs::lines(&engine, &name, &q, scrubber).await?);
        while let Some(line) = lines.next().await {
            ui.out(line?);
        }
        Ok(0)
    })
}

/// `--since`: Unix seconds, or a duration back from now (`10m`).
fn parse_since(x: &str) -> anyhow::Result<i64> {
    if let Ok(t) = x.parse::<i64>() {
        return Ok(t);
    }
    let d = crate::settings::parse_duration(x)
        .map_err(|m| CdqError::usage(format!("`--since`: {m}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    Ok(now - d.as_secs() as i64)
}
