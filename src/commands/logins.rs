//! `cdq logins [NAME]`: who logs in where. Without a name, the users and where their
//! passwords live, never a password; with a name (`grafana`, `mysql`, ...), that one password
//! on stdout, because it was asked for by name. `up` ends by pointing here.

use crate::context::Context;
use crate::error::CdqError;
use crate::services::Service;
use crate::ui::Ui;

/// name, what it is, user, the key in `secrets.env`.
const LOGINS: [(&str, &str, &str, &str); 5] = [
    (
        "grafana",
        "Grafana web UI",
        "admin",
        "GRAFANA_ADMIN_PASSWORD",
    ),
    (
        "mysql",
        "MySQL administrator",
        "root",
        "MYSQL_ROOT_PASSWORD",
    ),
    (
        "mysql-server",
        "MySQL user of the CD server",
        "cd_server",
        "SERVER_DB_PASSWORD",
    ),
    (
        "mysql-ucenter",
        "MySQL user of ucenter",
        "ucenter",
        "UCENTER_DB_PASSWORD",
    ),
    ("redis", "Redis (requirepass)", "-", "REDIS_PASSWORD"),
];

pub fn run(ctx: Context, ui: &Ui, name: Option<String>) -> anyhow::Result<i32> {
    let dir = &ctx.settings.deploy_dir;
    let secrets = crate::secrets::load_existing(dir)?.ok_or_else(|| {
        CdqError::usage(format!("`{}` holds no `secrets.env` yet", dir.display()))
            .hint("run `cdq up` (or `cdq render`) first: the passwords are generated then")
    })?;
    let Some(name) = name else {
        let mut t =
            String::from("NAME           WHAT                          USER       PASSWORD\n");
        for (n, what, user, _) in LOGINS {
            t.push_str(&format!("{n:14} {what:29} {user:10} `cdq logins {n}`\n"));
        }
        ui.out(t);
        ui.info(format!(
            "passwords are printed only when asked for by name; all are in `{}` (mode 0600)",
            crate::secrets::path(dir).display()
        ));
        return Ok(0);
    };
    let names: Vec<&str> = LOGINS.iter().map(|l| l.0).collect();
    let Some((_, _, _, key)) = LOGINS.iter().find(|l| l.0 == name) else {
        let e = CdqError::usage(format!("no login named `{name}`"));
        return Err(match crate::settings::closest(&name, &names) {
            Some(c) => e.hint(format!("did you mean `{c}`?")),
            None => e.hint(format!("logins: {}", names.join(", "))),
        }
        .into());
    };
    ui.out(secrets.get(key));
    Ok(0)
}

/// The lines a finished `up` ends with: the three addresses on the host IP and the command
/// that shows the logins. Never a password.
pub fn next_steps(ctx: &Context) -> String {
    let s = &ctx.settings;
    let ip = ctx
        .ip
        .as_ref()
        .map(|d| d.ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut out = String::from("open:\n");
    for (svc, what, port, path) in [
        (Service::Server, "CD server", s.ports.server, "/"),
        (Service::Ucenter, "ucenter  ", s.ports.ucenter, "/"),
        (Service::Grafana, "Grafana  ", s.ports.grafana, "/"),
    ] {
        if s.services.contains(&svc) {
            out.push_str(&format!("  {what}  http://{ip}:{port}{path}\n"));
        }
    }
    out.push_str(
        "logins: `cdq logins` (a password is shown only by name, e.g. `cdq logins grafana`)",
    );
    out
}
