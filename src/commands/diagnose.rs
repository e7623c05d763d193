//! `cdq diagnose [-o FILE]`: one `.tar.gz` for the team at home. Works with the daemon down
//! (says so inside and as a warning, exit 0) and with no stack rendered yet; prints what it
//! wrote and its size.

use std::path::PathBuf;

use crate::context::Context;
use crate::engine::docker::Docker;
use crate::kit::{self, SecretsMode};
use crate::ops::diagnose::{self, Parts};
use crate::preflight::{self, report};
use crate::secrets::Scrubber;
use crate::settings::Settings;
use crate::ui::{self, Ui};

/// `settings_problem`: why the settings could not be loaded (the defaults are used then).
pub fn run(
    settings: Settings,
    ui: &Ui,
    output: Option<PathBuf>,
    settings_problem: Option<String>,
) -> anyhow::Result<i32> {
    let ctx = Context::new(settings)?;
    let s = &ctx.settings;
    let mut parts = Parts::default();
    if let Some(p) = &settings_problem {
        parts.text(
            "cdq/settings.error.txt",
            format!("{p}\n(the rest was collected with the default settings)\n"),
        );
        ui.warn(format!(
            "the settings could not be loaded, so the defaults were used (the error is in cdq/settings.error.txt):\n{p}"
        ));
    }
    parts.text(
        "cdq/version.txt",
        format!(
            "cdq {} ({} {})\nargs: {}\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::env::args().collect::<Vec<_>>().join(" ")
        ),
    );
    parts.text("cdq/settings.txt", format!("{s:#?}\n"));
    if let Ok(b) = std::fs::read(&s.config_path) {
        parts.0.insert("cdq/cdq.yaml".into(), b);
    }
    let env: String = std::env::vars()
        .filter(|(k, _)| k.starts_with("CDQ_") || k.starts_with("DOCKER_"))
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    parts.text("cdq/environment.txt", env);
    parts.rendered(&s.deploy_dir, &s.data_dir);
    let secrets = crate::secrets::path(&s.deploy_dir);
    parts.text(
        "cdq/secrets.txt",
        match std::fs::metadata(&secrets) {
            Ok(m) => {
                use std::os::unix::fs::PermissionsExt;
                format!(
                    "`{}` present, mode {:04o} (values not included)\n",
                    secrets.display(),
                    m.permissions().mode() & 0o7777
                )
            }
            Err(e) => format!("`{}`: {e}\n", secrets.display()),
        },
    );
    let scrubber = Scrubber::for_deploy_dir(&s.deploy_dir)?;
    diagnose::host_parts(&s.deploy_dir, &s.data_dir, &mut parts);

    let project = kit::on_disk(&ctx, None).ok().flatten();
    let name = kit::project_name(&ctx, project.as_ref());
    let expected: Vec<String> = match &project {
        Some(p) => p.start_order().into_iter().map(str::to_string).collect(),
        None => s.services.iter().map(|x| x.name().to_string()).collect(),
    };
    let unreachable = super::runtime()?.block_on(async {
        let engine = Docker::connect().await;
        let r = diagnose::engine_parts(engine.as_ref(), &name, &expected, &mut parts).await;
        preflight_part(&ctx, engine, &mut parts).await;
        r.err()
    });

    let path = kit::absolute(&output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "cdq-diagnose-{name}-{}.tar.gz",
            crate::ops::backup::now()
        ))
    }));
    let bytes = parts.write(&path, &scrubber)?;
    if let Some(why) = unreachable {
        ui.warn(format!(
            "{why}: the archive holds the host's side only (engine/UNREACHABLE.txt says so)"
        ));
    }
    ui.info(format!(
        "wrote {} ({}, {} parts, passwords masked)",
        path.display(),
        ui::human_bytes(bytes),
        parts.0.len()
    ));
    Ok(0)
}

/// `preflight --json`, when the host IP can be decided without asking (diagnose never
/// prompts); otherwise a note why it is missing.
async fn preflight_part(
    ctx: &Context,
    engine: Result<Docker, crate::engine::EngineError>,
    parts: &mut Parts,
) {
    let ip = match super::decide_ip(&ctx.settings, None, false, |_| {
        Err(anyhow::anyhow!("diagnose does not prompt"))
    }) {
        Ok(ip) => ip,
        Err(e) => {
            parts.text(
                "preflight.error.txt",
                format!("preflight not run: {}\n", crate::error::format(&e)),
            );
            return;
        }
    };
    let run = async {
        let ctx = Context::new(ctx.settings.clone())?.with_ip(ip);
        let (rendered, _) = kit::render(&ctx, SecretsMode::ReadOnly)?;
        let project = rendered.project(&ctx)?;
        let list = match engine {
            Ok(d) => preflight::findings(&ctx, Ok(&d), &rendered, &project).await?,
            Err(e) => preflight::findings::<Docker>(&ctx, Err(e), &rendered, &project).await?,
        };
        anyhow::Ok(report::json(&list, false)?)
    };
    match run.await {
        Ok(j) => parts.text("preflight.json", j),
        Err(e) => parts.text(
            "preflight.error.txt",
            format!("preflight failed to run: {}\n", crate::error::format(&e)),
        ),
    }
}
