//! Preflight: everything on this host that would break the stack, found before anything is
//! created, each with the exact fix.
//!
//! Owns the flow `requirements (pure) -> facts (I/O, gathered once) -> evaluate (pure) ->
//! report (pure text)`, the `cdq preflight` command, and [`check_for_up`], the same checks
//! `cdq up` runs first.
//!
//! Must not: create or change anything (no directory, no file, no container, no network:
//! `cdq up` on a failing host must leave nothing behind), print other than through `ui`, or
//! import bollard (the engine is reached through the [`Engine`] trait only).

pub mod evaluate;
pub mod facts;
pub mod olddata;
pub mod report;

use serde::Serialize;

use crate::cli::Target;
use crate::commands::{self, Ctx, Rendered, SecretsMode};
use crate::engine::{Engine, EngineError};
use crate::error::CdqError;
use crate::interpolate::Vars;
use crate::project::{self, Project};

pub use evaluate::{Requirements, evaluate};
pub use facts::Facts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's outcome. `found` and `needed` are short; `fix` is the exact command or setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub status: Status,
    pub found: String,
    pub needed: String,
    pub fix: Option<String>,
}

/// Whether these findings stop the run: any FAIL, or any WARN under `--strict`.
pub fn failed(findings: &[Finding], strict: bool) -> bool {
    findings.iter().any(|f| match f.status {
        Status::Fail => true,
        Status::Warn => strict,
        Status::Pass => false,
    })
}

/// The error `cdq up` returns when preflight stops it (exit 3); the findings are printed
/// before it by the caller.
pub fn stopped(findings: &[Finding], strict: bool) -> CdqError {
    let ids: Vec<&str> = findings
        .iter()
        .filter(|f| f.status == Status::Fail || (strict && f.status == Status::Warn))
        .map(|f| f.id.as_str())
        .collect();
    CdqError::new(
        crate::error::Kind::Preflight,
        format!("preflight failed: {}", ids.join(", ")),
    )
    .hint("fix what the table above says, or pass `--skip-preflight` to start anyway")
}

/// Parses the rendered compose file in memory, with the rendered `.env` and the process
/// environment (as `project::load` does for a written one).
pub fn project_of(ctx: &Ctx, rendered: &Rendered) -> anyhow::Result<Project> {
    let dir = &ctx.settings.deploy_dir;
    let name = crate::render::compose_file_name(rendered.arch);
    let text_of = |rel: &str| {
        rendered
            .files
            .iter()
            .find(|f| f.rel.as_os_str() == rel)
            .map(|f| f.contents.as_str())
    };
    let compose = text_of(&name)
        .ok_or_else(|| CdqError::failure(format!("the render produced no `{name}`")))?;
    let vars = Vars::from_dotenv(text_of(".env").unwrap_or(""), std::env::vars());
    Ok(project::parse(
        &dir.join(&name),
        dir,
        compose,
        &vars,
        &ctx.settings.project,
    )?)
}

/// The checks `cdq up` runs before creating anything. Creates nothing itself.
pub async fn check_for_up<E: Engine>(
    ctx: &Ctx,
    engine: &E,
    rendered: &Rendered,
    project: &Project,
) -> anyhow::Result<Vec<Finding>> {
    Ok(findings(ctx, Ok(engine), rendered, project).await)
}

async fn findings<E: Engine>(
    ctx: &Ctx,
    engine: Result<&E, EngineError>,
    rendered: &Rendered,
    project: &Project,
) -> Vec<Finding> {
    let req = Requirements::derive(
        &ctx.settings,
        &rendered.catalog,
        rendered.arch,
        &rendered.ip,
        project,
    );
    let facts = facts::gather(engine, &req, &project.name).await;
    evaluate(&facts, &req)
}

/// `cdq preflight`: prints the findings (table, or JSON with `--json`) and returns the exit
/// code: 0 when nothing failed, 3 when something did (WARN too under `--strict`).
pub async fn run<E: Engine>(
    ctx: &Ctx,
    target: &Target,
    engine: Result<&E, EngineError>,
    json: bool,
    strict: bool,
) -> anyhow::Result<i32> {
    let (rendered, _) = commands::render_kit(ctx, target, SecretsMode::ReadOnly)?;
    let project = project_of(ctx, &rendered)?;
    let list = findings(ctx, engine, &rendered, &project).await;
    let stop = failed(&list, strict);
    if json {
        ctx.ui.out(report::json(&list, strict)?);
    } else {
        ctx.ui.out(report::table(&list));
        ctx.ui.info(report::summary(&list, strict));
    }
    Ok(if stop {
        crate::error::Kind::Preflight.exit_code()
    } else {
        0
    })
}

/// `cdq preflight` from the synchronous command dispatch: connects to the local Docker
/// daemon (a failure to connect is a finding, not an error) and runs [`run`].
pub fn preflight_cmd(ctx: &Ctx, target: &Target, json: bool, strict: bool) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match crate::engine::docker::Docker::connect().await {
            Ok(d) => run(ctx, target, Ok(&d), json, strict).await,
            Err(e) => run::<crate::engine::docker::Docker>(ctx, target, Err(e), json, strict).await,
        }
    })
}
