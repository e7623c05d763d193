//! Preflight: everything on this host that would break the stack, found before anything is
//! created, each with the exact fix.
//!
//! Owns the flow `requirements (pure) -> facts (I/O, gathered once) -> evaluate (pure) ->
//! report (pure text)`; `cdq preflight` and `cdq up` both call [`findings`].
//!
//! Must not: create or change anything (no directory, no file, no network: `cdq up` on a
//! failing host must leave nothing behind; the only containers are `compat`'s short probes,
//! which `run_oneoff` removes whatever happens), print other than through `ui`, or import
//! bollard (the engine is reached through the [`Engine`] trait only).

pub mod compat;
pub mod evaluate;
pub mod facts;
pub mod hostcompat;
pub mod nodefacts;
pub mod nodes;
pub mod olddata;
pub mod report;
pub mod requirements;

use serde::Serialize;

use crate::context::Context;
use crate::engine::{Engine, EngineError};
use crate::error::CdqError;
use crate::kit::Rendered;
use crate::project::Project;

pub use evaluate::evaluate;
pub use facts::Facts;
pub use requirements::Requirements;

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

/// Every check for the rendered stack on this host. An engine that cannot be reached is a
/// finding, not an error. Creates nothing.
pub async fn findings<E: Engine>(
    ctx: &Context,
    engine: Result<&E, EngineError>,
    rendered: &Rendered,
    project: &Project,
) -> anyhow::Result<Vec<Finding>> {
    let ip = ctx.ip.as_ref().ok_or_else(|| {
        CdqError::failure("internal: the host IP was not decided before preflight")
    })?;
    let mut req = Requirements::derive(&ctx.settings, &rendered.catalog, ctx.arch, ip, project);
    req.adopt = ctx.adopt.clone();
    let facts = facts::gather(engine, &req, &project.name).await;
    Ok(evaluate(&facts, &req))
}
