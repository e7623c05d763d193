//! `up`, `status`, `down`, `logs`, `preflight` and `bundle load` when the settings say
//! `target: swarm`: the same commands, on the Swarm cluster whose manager `DOCKER_HOST`
//! names (and each node's own endpoint, `swarmnodes`, for images and the per-node checks).
//! Renders the stack kit (`kit`), checks the nodes, and calls `ops::swarm`; prints through
//! `ui`.
//!
//! Must not: reach a single-host container, or change the swarm's nodes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle::Want;
use crate::cli::{BundleAction, Command};
use crate::context::Context;
use crate::engine::explain;
use crate::engine::swarm::SwarmEngine;
use crate::error::{CdqError, Kind};
use crate::interpolate::Vars;
use crate::kit::{self, Rendered, SecretsMode};
use crate::ops::swarm::{self as ops, Action, Progress};
use crate::ops::swarm_plan;
use crate::preflight::{self, Finding, nodes, report};
use crate::secrets::Scrubber;
use crate::settings::{Cluster, Settings};
use crate::swarm::stack::{self, Stack};
use crate::ui::Ui;

use super::swarmnodes;

/// Runs `command` on the swarm; None when the command has no Swarm form (it then runs as
/// on a single host: `render`, `images`, `bundle save` do not depend on the target, `render`
/// because the kit renders the stack file itself).
pub fn dispatch(command: &Command, settings: &Settings, ui: &Ui) -> Option<anyhow::Result<i32>> {
    let unsupported = |flag: &str| {
        Some(Err(CdqError::usage(format!(
            "`{flag}` is not supported with `target: swarm`"
        ))
        .hint("drop the flag, or deploy on one host (`target: host`)")
        .into()))
    };
    match command {
        Command::Up {
            target,
            dry_run,
            compose,
            bundle,
            skip_preflight,
            ..
        } => {
            if compose.is_some() {
                return unsupported("--compose");
            }
            if *dry_run {
                return Some(plan_up(settings.clone(), ui, target.ip));
            }
            Some(up(
                settings.clone(),
                ui,
                target.ip,
                bundle.as_deref(),
                *skip_preflight,
            ))
        }
        Command::Status {
            json,
            compose,
            watch,
            ..
        } => {
            if compose.is_some() {
                return unsupported("--compose");
            }
            if *watch {
                return unsupported("--watch");
            }
            Some(status(settings.clone(), ui, *json))
        }
        Command::Down { purge, compose, .. } => {
            if *purge {
                return unsupported("--purge");
            }
            if compose.is_some() {
                return unsupported("--compose");
            }
            Some(down(settings.clone(), ui))
        }
        Command::Logs {
            services,
            follow,
            tail,
            since,
        } => {
            if *follow {
                return unsupported("--follow");
            }
            if since.is_some() {
                return unsupported("--since");
            }
            Some(logs(settings.clone(), ui, services, tail.unwrap_or(100)))
        }
        Command::Preflight {
            target,
            json,
            strict,
            ..
        } => Some(preflight(settings.clone(), ui, target.ip, *json, *strict)),
        Command::Bundle {
            action: BundleAction::Load { file, arch },
        } => Some(bundle_load(settings.clone(), ui, file, *arch)),
        _ => None,
    }
}

fn cluster(ctx: &Context) -> &Cluster {
    ctx.settings
        .cluster
        .as_ref()
        .expect("settings validate a cluster for target swarm")
}

/// The stack file on disk, parsed (with `.env` and the process environment for `${...}`).
fn load_stack(ctx: &Context) -> anyhow::Result<Stack> {
    let dir = &ctx.settings.deploy_dir;
    let path = dir.join(stack::stack_file_name(ctx.arch));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::Error::new(e).context(
            CdqError::usage(format!("cannot read the stack file `{}`", path.display()))
                .hint("run `cdq up` (or `cdq render`) with `target: swarm` first"),
        )
    })?;
    let dotenv = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    let vars = Vars::from_dotenv(&dotenv, std::env::vars());
    stack::parse(&ctx.settings.project, &text, &vars, dir, |p| {
        std::fs::read(p)
            .map_err(|e| anyhow::Error::new(e).context(format!("reading `{}`", p.display())))
    })
}

/// The stack as a render in memory holds it (nothing read from or written to disk): for
/// what needs only its images and placement.
fn stack_in_memory(ctx: &Context, r: &Rendered) -> anyhow::Result<Stack> {
    let dir = &ctx.settings.deploy_dir;
    let text = |rel: &Path| {
        r.files
            .iter()
            .find(|f| f.rel == rel)
            .map(|f| f.contents.clone())
    };
    let name = stack::stack_file_name(ctx.arch);
    let stack_text = text(Path::new(&name))
        .ok_or_else(|| CdqError::failure(format!("internal: `{name}` was not rendered")))?;
    let vars = Vars::from_dotenv(
        &text(Path::new(".env")).unwrap_or_default(),
        std::env::vars(),
    );
    stack::parse(&ctx.settings.project, &stack_text, &vars, dir, |p| {
        p.strip_prefix(dir)
            .ok()
            .and_then(text)
            .map(String::into_bytes)
            .ok_or_else(|| anyhow::anyhow!("internal: `{}` was not rendered", p.display()))
    })
}

async fn check<E: SwarmEngine>(engine: &E, ctx: &Context) -> anyhow::Result<()> {
    let nodes = engine.nodes().await.map_err(|e| {
        anyhow::Error::new(explain(e)).context(
            CdqError::usage("the Docker engine cdq talks to is not a swarm manager")
                .hint("point `DOCKER_HOST` at a manager (`docker node ls` works there), or use `target: host`"),
        )
    })?;
    ops::check_nodes(&nodes, cluster(ctx), ctx.arch)?;
    Ok(())
}

/// The per-node checks of `up` and `preflight`; None when no node has an endpoint (the
/// checks need them; the manager's checks still run).
async fn node_checks(
    ctx: &Context,
    r: &Rendered,
    stack: &Stack,
    conns: &[swarmnodes::NodeConn],
) -> Option<Vec<Finding>> {
    let c = cluster(ctx);
    if c.endpoints.is_empty() {
        return None;
    }
    let needs = nodes::needs(stack, c, &ctx.settings, &r.catalog);
    Some(swarmnodes::findings(conns, &needs, &ctx.settings.project, ctx.arch).await)
}

const NO_ENDPOINTS: &str = "the nodes' memory, disk, `vm.max_map_count` and images were not checked: `cluster.endpoints` names no node's Docker endpoint";

fn up(
    settings: Settings,
    ui: &Ui,
    ip: Option<IpAddr>,
    bundle: Option<&Path>,
    skip_preflight: bool,
) -> anyhow::Result<i32> {
    let ctx = super::rendering_context(settings, ui, ip)?;
    if bundle.is_some() {
        swarmnodes::require_endpoints(cluster(&ctx), "`cdq up --bundle` on a swarm")?;
    }
    let _lock = crate::lock::acquire(&ctx.settings.deploy_dir)?;
    let (r, change) = kit::render(&ctx, SecretsMode::Ensure)?;
    let report = kit::write(&ctx, &r)?;
    super::render::report_render(&ctx, ui, &change, &report);
    let stack = load_stack(&ctx)?;
    let started = std::time::Instant::now();
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        check(&engine, &ctx).await?;
        let conns = swarmnodes::connect_all(cluster(&ctx)).await;
        if let Some(file) = bundle {
            let needs = nodes::needs(&stack, cluster(&ctx), &ctx.settings, &r.catalog);
            let want = Want {
                arch: ctx.arch,
                because: format!("the stack is rendered for {}", ctx.arch),
            };
            swarmnodes::load_bundle(ui, &conns, &needs, file, &want).await?;
        }
        if skip_preflight {
            ui.warn("per-node preflight skipped (`--skip-preflight`)");
        } else {
            match node_checks(&ctx, &r, &stack, &conns).await {
                None => ui.warn(NO_ENDPOINTS),
                Some(list) if preflight::failed(&list, false) => {
                    ui.out(report::table(&list));
                    return Err(preflight::stopped(&list, false).into());
                }
                Some(list) => ui.info(format!(
                    "nodes {}: {}",
                    cluster(&ctx).nodes.join(", "),
                    report::summary(&list, false)
                )),
            }
        }
        let s = &ctx.settings;
        let deadline = |short: &str| {
            ops::base_service(short).map_or(Duration::from_secs(120), |svc| s.deadline(svc))
        };
        let result = ops::up(&engine, &stack, deadline, |p| match p {
            Progress::Wave(w) => ui.info(format!("starting {}", w.join(", "))),
            Progress::Service(name, Action::Created) => ui.info(format!("  {name}: created")),
            Progress::Service(name, Action::Updated) => ui.info(format!("  {name}: updated")),
            Progress::Service(_, Action::Unchanged) => {}
            Progress::Healthy(name) => ui.info(format!("  {name} healthy")),
        })
        .await;
        if let Err(e) = result {
            // Task errors and log lines can carry a password: masked before printing.
            let scrub = Scrubber::for_deploy_dir(&s.deploy_dir)?;
            let msg = scrub.scrub(&format!("{e:#}"));
            let kind = e
                .downcast_ref::<CdqError>()
                .map_or(Kind::Failure, |c| c.kind);
            let hint = e.downcast_ref::<CdqError>().and_then(|c| c.hint.clone());
            let mut err = CdqError::new(kind, msg);
            if let Some(h) = hint {
                err = err.hint(h);
            }
            return Err(err.into());
        }
        ui.info(format!(
            "{} services healthy on the swarm in {:.1}s",
            stack.services.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(0)
    })
}

/// `up --dry-run`: renders in memory (nothing written, no secrets file created), checks the
/// nodes, and prints what `up` would create, update or leave (`ops::swarm_plan`).
fn plan_up(settings: Settings, ui: &Ui, ip: Option<IpAddr>) -> anyhow::Result<i32> {
    let ctx = super::rendering_context(settings, ui, ip)?;
    let (r, _) = kit::render(&ctx, SecretsMode::ReadOnly)?;
    let dir = &ctx.settings.deploy_dir;
    let files: BTreeMap<PathBuf, Vec<u8>> = r
        .files
        .iter()
        .map(|f| (dir.join(&f.rel), f.contents.as_bytes().to_vec()))
        .collect();
    let text = |rel: &str| {
        String::from_utf8_lossy(files.get(&dir.join(rel)).map_or(&[][..], Vec::as_slice))
            .into_owned()
    };
    let vars = Vars::from_dotenv(&text(".env"), std::env::vars());
    let stack = stack::parse(
        &ctx.settings.project,
        &text(&stack::stack_file_name(ctx.arch)),
        &vars,
        dir,
        |p| {
            files.get(p).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "the stack file names `{}`, which the kit did not render",
                    p.display()
                )
            })
        },
    )?;
    super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        check(&engine, &ctx).await?;
        let plan = swarm_plan::observe(&engine, &stack)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))?;
        ui.out(plan.to_string());
        Ok(0)
    })
}

fn status(settings: Settings, ui: &Ui, json: bool) -> anyhow::Result<i32> {
    let ctx = Context::new(settings)?;
    let stack = load_stack(&ctx)?;
    let expected: Vec<String> = stack.services.iter().map(|s| s.short.clone()).collect();
    let report = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        ops::status(&engine, &ctx.settings.project, &expected)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))
    })?;
    let healthy = report.healthy();
    if json {
        ui.out(serde_json::to_string_pretty(&serde_json::json!({
            "project": ctx.settings.project,
            "target": "swarm",
            "healthy": healthy,
            "nodes": report.nodes,
            "services": report.services,
        }))?);
    } else {
        ui.out(ops::table(&report));
    }
    Ok(if healthy {
        0
    } else {
        Kind::Unhealthy.exit_code()
    })
}

fn down(settings: Settings, ui: &Ui) -> anyhow::Result<i32> {
    let ctx = Context::new(settings)?;
    let _lock = crate::lock::acquire(&ctx.settings.deploy_dir)?;
    let project = ctx.settings.project.clone();
    let removed = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        ops::down(&engine, &project, Duration::from_secs(90))
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))
    })?;
    ui.info(format!(
        "removed {} services, {} networks, {} configs and secrets of `{project}`; volumes (the data) stay on their nodes",
        removed.services.len(),
        removed.networks.len(),
        removed.objects.len()
    ));
    if !removed.left.is_empty() {
        ui.warn(format!(
            "still in use after 90 s, left in place: {} (run `cdq down` again once the tasks are gone)",
            removed.left.join(", ")
        ));
        return Ok(Kind::Failure.exit_code());
    }
    Ok(0)
}

fn logs(settings: Settings, ui: &Ui, services: &[String], tail: u64) -> anyhow::Result<i32> {
    let ctx = Context::new(settings)?;
    let scrub = Scrubber::for_deploy_dir(&ctx.settings.deploy_dir)?;
    let lines = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        ops::logs(&engine, &ctx.settings.project, services, tail)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))
    })?;
    for l in lines {
        ui.out(scrub.scrub(&l));
    }
    Ok(0)
}

/// Swarm preflight: the nodes as the manager sees them (present, Ready, active,
/// architecture, labels: `swarm-nodes`), then each node through its own endpoint (engine,
/// arch, memory, disk, `vm.max_map_count`, images), each finding named by its node.
fn preflight(
    settings: Settings,
    ui: &Ui,
    ip: Option<IpAddr>,
    json: bool,
    strict: bool,
) -> anyhow::Result<i32> {
    let ctx = super::rendering_context(settings, ui, ip)?;
    let (r, _) = kit::render(&ctx, SecretsMode::ReadOnly)?;
    let stack = stack_in_memory(&ctx, &r)?;
    let list = super::runtime()?.block_on(async {
        let engine = super::connect().await?;
        let mut list = vec![match check(&engine, &ctx).await {
            Ok(()) => Finding {
                id: "swarm-nodes".into(),
                status: preflight::Status::Pass,
                found: format!("{} Ready and labelled", cluster(&ctx).nodes.join(", ")),
                needed: "the nodes of `cluster.nodes` Ready, active, with their `cdq.slot`".into(),
                fix: None,
            },
            Err(e) => Finding {
                id: "swarm-nodes".into(),
                status: preflight::Status::Fail,
                found: format!("{e:#}"),
                needed: "the nodes of `cluster.nodes` Ready, active, with their `cdq.slot`".into(),
                fix: e.downcast_ref::<CdqError>().and_then(|c| c.hint.clone()),
            },
        }];
        let conns = swarmnodes::connect_all(cluster(&ctx)).await;
        match node_checks(&ctx, &r, &stack, &conns).await {
            Some(more) => list.extend(more),
            None => list.push(Finding {
                id: "swarm-endpoints".into(),
                status: preflight::Status::Warn,
                found: "none".into(),
                needed: "each node's Docker endpoint, for the per-node checks".into(),
                fix: Some(format!(
                    "set `cluster.endpoints` in cdq.yaml, e.g. `{}: tcp://NODE-IP:2375`",
                    cluster(&ctx).nodes[0]
                )),
            }),
        }
        anyhow::Ok(list)
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

/// `cdq bundle load FILE` on a swarm: onto every node, the images its tasks run.
fn bundle_load(
    settings: Settings,
    ui: &Ui,
    file: &Path,
    arch: Option<crate::cli::ArchArg>,
) -> anyhow::Result<i32> {
    let ctx = Context::new(settings)?;
    swarmnodes::require_endpoints(cluster(&ctx), "`cdq bundle load` on a swarm")?;
    let want = match arch {
        Some(a) => Want {
            arch: super::arch_of(a),
            because: format!("`--arch {}` was given", super::arch_of(a)),
        },
        None => Want {
            arch: ctx.arch,
            because: format!("the stack is rendered for {}", ctx.arch),
        },
    };
    // Which node needs which image depends on the placement alone, not on the host IP the
    // render also takes: a stored or configured one if there is, else loopback.
    let ip = match (
        ctx.settings.host_ip,
        crate::hostip::load_stored(&ctx.settings.deploy_dir)?,
    ) {
        (Some(ip), _) | (None, Some(ip)) => ip,
        (None, None) => IpAddr::from([127, 0, 0, 1]),
    };
    let ctx = ctx.with_ip(crate::hostip::Decision {
        ip,
        source: crate::hostip::Source::Settings,
        changed_from: None,
    });
    let (r, _) = kit::render(&ctx, SecretsMode::ReadOnly)?;
    let stack = stack_in_memory(&ctx, &r)?;
    let needs = nodes::needs(&stack, cluster(&ctx), &ctx.settings, &r.catalog);
    super::runtime()?.block_on(async {
        let conns = swarmnodes::connect_all(cluster(&ctx)).await;
        swarmnodes::load_bundle(ui, &conns, &needs, file, &want).await
    })?;
    Ok(0)
}
