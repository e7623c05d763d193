//! `cdq backup [-o FILE]`: the running stack's state in one file (mode 0600), with progress
//! on the long steps and one closing line naming the file and its size.

use std::path::{Path, PathBuf};

use crate::bundle::Meters;
use crate::context::Context;
use crate::error::CdqError;
use crate::kit;
use crate::ops::backup::{self, Report, Step, Writer};
use crate::project::Project;
use crate::ui::{self, Ui};

pub fn run(ctx: Context, ui: &Ui, output: Option<PathBuf>) -> anyhow::Result<i32> {
    let project = kit::on_disk(&ctx, None)?.ok_or_else(|| {
        CdqError::usage(format!(
            "nothing to back up: `{}` holds no rendered stack",
            ctx.settings.deploy_dir.display()
        ))
        .hint("run `cdq up` first, or point `--dir` at the stack's deploy directory")
    })?;
    let path = kit::absolute(
        &output.unwrap_or_else(|| PathBuf::from(backup::default_name(&project.name))),
    );
    // Not while another cdq changes the stack: a container replaced mid-backup would mix
    // two states.
    let _lock = crate::lock::acquire(&ctx.settings.deploy_dir)?;
    let report = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        take(&engine, &ctx, ui, &project, &[], &path).await
    })?;
    ui.info(format!(
        "wrote {} ({}, {} files; restore it with `cdq restore {}`)",
        report.path.display(),
        ui::human_bytes(report.bytes),
        report.manifest.entries.len(),
        report.path.display()
    ));
    Ok(0)
}

/// Takes a backup of `only` (empty: every stateful service) into `path`, refusing to
/// overwrite a file that is there. Used by `cdq backup` and by `cdq up` before an upgrade.
pub async fn take<E: crate::engine::Engine>(
    engine: &E,
    ctx: &Context,
    ui: &Ui,
    project: &Project,
    only: &[String],
    path: &Path,
) -> anyhow::Result<Report> {
    if path.exists() {
        return Err(
            CdqError::usage(format!("`{}` already exists", path.display()))
                .hint("choose another file with `-o`; cdq never overwrites a backup")
                .into(),
        );
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meter = ui.start("writing backup", None);
    let w = Writer::create(path, meter.clone())?;
    let mut say = |s: Step| match s {
        Step::Dumping(svc) => ui.info(format!("{svc}: dumping from inside its container")),
        Step::Copying { service, dir } => ui.info(format!("{service}: copying {}", dir.display())),
        Step::Skipped { service, why } => ui.info(format!("{service}: skipped ({why})")),
    };
    let r = backup::backup(engine, project, &ctx.settings, only, w, &mut say).await;
    meter.finish();
    r
}

/// Services whose data an image change may migrate: backed up before `up` replaces their
/// image (server and ucenter keep only logs).
const STATEFUL: [&str; 7] = [
    "mysql",
    "redis",
    "zookeeper",
    "kafka",
    "elasticsearch",
    "prometheus",
    "grafana",
];

/// Before `up` replaces the image of a running stateful service: a backup of those services
/// into `<deploy dir>/backups/`, and a line saying where.
pub async fn before_upgrade<E: crate::engine::Engine>(
    engine: &E,
    ctx: &Context,
    ui: &Ui,
    project: &Project,
    plan: &crate::plan::Plan,
    containers: &[crate::engine::Container],
) -> anyhow::Result<()> {
    // Only a running server can be dumped; a stopped one has nothing newer than its files.
    let running = |svc: &str| {
        containers
            .iter()
            .any(|c| c.service() == Some(svc) && c.state == crate::engine::RunState::Running)
    };
    let upgraded: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| STATEFUL.contains(&s.service.as_str()) && running(&s.service))
        .filter(|s| {
            matches!(&s.action, crate::plan::Action::Recreate { reason, .. }
                if reason.starts_with("image changed"))
        })
        .map(|s| s.service.clone())
        .collect();
    if upgraded.is_empty() {
        return Ok(());
    }
    let path = ctx.settings.deploy_dir.join("backups").join(format!(
        "pre-upgrade-{}-{}.tar.gz",
        upgraded.join("-"),
        backup::now()
    ));
    ui.info(format!(
        "backing up {} before replacing the image (skip with `--no-backup`)",
        upgraded.join(", ")
    ));
    let r = take(engine, ctx, ui, project, &upgraded, &path)
        .await
        .map_err(|e| {
            e.context(format!(
                "the backup before upgrading {} failed; nothing was replaced (`--no-backup` skips it)",
                upgraded.join(", ")
            ))
        })?;
    ui.info(format!(
        "backed up {} to {} ({})",
        upgraded.join(", "),
        r.path.display(),
        ui::human_bytes(r.bytes)
    ));
    Ok(())
}
