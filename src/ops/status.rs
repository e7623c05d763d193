//! `status` as data: one row per service from what the engine reports, and the table that
//! shows them. Pure but for [`observe`], which only lists containers.

use std::collections::BTreeMap;

use crate::engine::{Container, Engine, Health, RunState};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub service: String,
    pub state: String,
    pub health: String,
    pub uptime_seconds: Option<u64>,
    pub ports: Vec<String>,
    pub image: String,
    pub ok: bool,
}

/// Seconds since the Unix epoch for an RFC 3339 UTC time as Docker writes it.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Pure: one row per expected service (missing ones included) and per extra container.
pub fn rows(expected: &[String], containers: &[Container], now: i64) -> Vec<Row> {
    let mut by: BTreeMap<&str, &Container> = BTreeMap::new();
    for c in containers {
        if let Some(s) = c.service() {
            by.entry(s).or_insert(c);
        }
    }
    let mut names: Vec<&str> = expected.iter().map(String::as_str).collect();
    for s in by.keys() {
        if !names.contains(s) {
            names.push(s);
        }
    }
    names
        .into_iter()
        .map(|name| match by.get(name) {
            None => Row {
                service: name.into(),
                state: "missing".into(),
                health: "-".into(),
                uptime_seconds: None,
                ports: vec![],
                image: "-".into(),
                ok: false,
            },
            Some(c) => {
                let running = c.state == RunState::Running;
                let uptime = if running {
                    c.started_at
                        .as_deref()
                        .and_then(parse_rfc3339)
                        .map(|t| (now - t).max(0) as u64)
                } else {
                    None
                };
                let health = match c.health {
                    Some(h) => format!("{h:?}").to_lowercase(),
                    None => "-".into(),
                };
                let state = match (c.state, c.exit_code) {
                    (RunState::Exited, Some(code)) => format!("exited ({code})"),
                    (s, _) => format!("{s:?}").to_lowercase(),
                };
                Row {
                    service: name.into(),
                    state,
                    health,
                    uptime_seconds: uptime,
                    ports: c
                        .ports
                        .iter()
                        .map(|p| {
                            let ip = if p.host_ip.is_empty() {
                                "0.0.0.0"
                            } else {
                                p.host_ip.as_str()
                            };
                            format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
                        })
                        .collect(),
                    image: c.image.clone(),
                    ok: running && matches!(c.health, Some(Health::Healthy) | None),
                }
            }
        })
        .collect()
}

pub fn table(rows: &[Row]) -> String {
    let header = ["SERVICE", "STATE", "HEALTH", "UPTIME", "PORTS", "IMAGE"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.service.clone(),
                r.state.clone(),
                r.health.clone(),
                r.uptime_seconds
                    .map(human_duration)
                    .unwrap_or_else(|| "-".into()),
                if r.ports.is_empty() {
                    "-".into()
                } else {
                    r.ports.join(", ")
                },
                r.image.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            width[i] = width[i].max(x.len());
        }
    }
    let line = |v: &[&str]| {
        let mut s = String::new();
        for (i, x) in v.iter().enumerate() {
            if i + 1 == v.len() {
                s.push_str(x);
            } else {
                s.push_str(&format!("{x:w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for c in &cells {
        out.push_str(&line(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// Lists the project's containers and turns them into rows for `expected` services.
pub async fn observe<E: Engine>(
    engine: &E,
    project: &str,
    expected: &[String],
) -> crate::engine::Result<Vec<Row>> {
    let containers = engine.list_containers(project).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(rows(expected, &containers, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T23:36:52.123456789Z"),
            Some(1795390612)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3725), "1h2m");
    }
}
