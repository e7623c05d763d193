//! Docker's wire format to cdq's types and back: request bodies, filters, log frames,
//! inspect results and events. Pure functions; no I/O.

use std::collections::HashMap;
use std::time::Duration;

use bollard::ClientVersion;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    EventMessage, HealthConfig, HealthStatusEnum, HostConfig, NetworkingConfig, PortBinding,
    PortMap, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::LogsOptions;

use super::super::{
    Container, CreateSpec, EngineError, Event, EventKind, Health, LABEL_PROJECT, LABEL_SERVICE,
    PublishedPort, RegistryAuth, Result, RunState, TransferEvent,
};

/// A bind as cdq writes it (`SRC:DST[:ro][,z|Z]`), from what an engine reports: Podman adds
/// the defaults it applied (`rw`, `rprivate`, `rbind`), which are not a difference.
pub(super) fn normal_bind(b: &str) -> String {
    let mut parts: Vec<&str> = b.splitn(3, ':').collect();
    let Some(opts) = (parts.len() == 3).then(|| parts.pop()).flatten() else {
        return b.to_string();
    };
    let kept: Vec<&str> = opts
        .split(',')
        .filter(|o| matches!(*o, "ro" | "z" | "Z"))
        .collect();
    let mut out = parts.join(":");
    if !kept.is_empty() {
        out.push(':');
        out.push_str(&kept.join(","));
    }
    out
}

/// Docker reports a never-started container's StartedAt as Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(super) fn parse_version(v: &str) -> Option<ClientVersion> {
    let (major, minor) = v.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

pub(super) fn label_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )])
}

pub(super) fn log_options(tail: Option<u64>, since: Option<i64>, follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        // bollard's field is i32; Unix seconds fit until 2038, clamp rather than wrap.
        since: since
            .map(|s| s.clamp(0, i32::MAX as i64) as i32)
            .unwrap_or(0),
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..Default::default()
    }
}

/// One frame of Docker's multiplexed log stream as lines. The json-file and journald drivers
/// store one line per entry, so a frame is one line with its newline; lines over 16 KiB come
/// as several frames and so as several lines, which is acceptable for cdq's tail and follow.
pub(super) fn frame_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

pub(super) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

pub(super) fn restart_policy(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((name, n)) => (
            name,
            Some(n.parse::<i64>().map_err(|_| {
                EngineError::Other(format!("restart policy `{s}`: `{n}` is not a number"))
            })?),
        ),
        None => (s, None),
    };
    let name = match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => {
            return Err(EngineError::Other(format!(
                "unknown restart policy `{other}`"
            )));
        }
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(EngineError::Other(format!(
            "restart policy `{s}`: only on-failure takes a retry count"
        )));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// The request body for a service container.
pub(super) fn create_body(spec: &CreateSpec<'_>) -> Result<ContainerCreateBody> {
    let svc = spec.service;
    let mut exposed = Vec::new();
    let mut bindings: PortMap = HashMap::new();
    for p in &svc.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                // Empty means every address, as in `docker run -p 6379:6379`.
                host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                // "" lets Docker pick a free port, as compose does for a bare container port.
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    let binds = svc
        .binds
        .iter()
        .map(|b| b.docker_form())
        .collect::<Vec<_>>();
    let ulimits = svc
        .ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect::<Vec<_>>();
    let healthcheck = svc.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    });
    let restart = svc.restart.as_deref().map(restart_policy).transpose()?;
    let endpoint = EndpointSettings {
        aliases: Some(spec.aliases.clone()),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(svc.image.clone()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        // A BTreeMap, so sorted: the same spec always makes the same request.
        env: Some(
            svc.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        stop_timeout: svc.stop_grace_period.map(|d| {
            i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
        }),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            restart_policy: restart,
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            security_opt: (!svc.security_opt.is_empty()).then(|| svc.security_opt.clone()),
            network_mode: Some(spec.network.clone()),
            // Init stays unset: the images run their own entrypoints as PID 1, as compose does.
            init: None,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    })
}

pub(super) fn run_state(s: Option<ContainerStateStatusEnum>) -> RunState {
    match s {
        // Newer engines say "stopping" while the stop signal is being handled: still running.
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            RunState::Running
        }
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY) | None => {
            RunState::Created
        }
    }
}

/// Published ports as `docker port` shows them, except that an all-addresses binding, which
/// Docker reports twice (0.0.0.0 and ::), is reported once as 0.0.0.0.
pub(super) fn published_ports(ports: Option<PortMap>) -> Vec<PublishedPort> {
    let mut out: Vec<PublishedPort> = Vec::new();
    for (key, bindings) in ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            let host_ip = b.host_ip.unwrap_or_default();
            out.push(PublishedPort {
                host_ip: if host_ip.is_empty() {
                    "0.0.0.0".into()
                } else {
                    host_ip
                },
                host_port,
                container_port,
                protocol: proto.to_string(),
            });
        }
    }
    let all_v4: Vec<(u16, u16, String)> = out
        .iter()
        .filter(|p| p.host_ip == "0.0.0.0")
        .map(|p| (p.host_port, p.container_port, p.protocol.clone()))
        .collect();
    out.retain(|p| {
        p.host_ip != "::" || !all_v4.contains(&(p.host_port, p.container_port, p.protocol.clone()))
    });
    out.sort_by(|a, b| {
        (a.container_port, &a.protocol, a.host_port, &a.host_ip).cmp(&(
            b.container_port,
            &b.protocol,
            b.host_port,
            &b.host_ip,
        ))
    });
    out
}

pub(super) fn container_from_inspect(r: ContainerInspectResponse) -> Container {
    let state = r.state.unwrap_or_default();
    let run = run_state(state.status);
    let health = state.health.as_ref().and_then(|h| match h.status {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    });
    let last_probe = state
        .health
        .and_then(|h| h.log)
        .and_then(|log| log.into_iter().last())
        .and_then(|r| r.output)
        .map(|o| o.trim().to_string());
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    let restart = host
        .restart_policy
        .map(|p| restart_name(&p))
        .unwrap_or_else(|| "no".to_string());
    let mut networks: Vec<String> = r
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    Container {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: run,
        health,
        last_probe,
        // Docker says 0 for containers that never ran; only an exit has an exit code.
        exit_code: matches!(run, RunState::Exited | RunState::Dead)
            .then_some(state.exit_code)
            .flatten(),
        oom_killed: state.oom_killed.unwrap_or(false),
        started_at: state.started_at.filter(|s| !s.is_empty() && s != ZERO_TIME),
        ports: published_ports(r.network_settings.and_then(|n| n.ports)),
        networks,
        restart,
        binds: host
            .binds
            .unwrap_or_default()
            .iter()
            .map(|b| normal_bind(b))
            .collect(),
        env: config.env.unwrap_or_default(),
    }
}

/// A restart policy as compose spells it (the inverse of [`restart_policy`]).
pub(super) fn restart_name(p: &RestartPolicy) -> String {
    match p.name {
        Some(RestartPolicyNameEnum::ALWAYS) => "always".into(),
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => "unless-stopped".into(),
        Some(RestartPolicyNameEnum::ON_FAILURE) => match p.maximum_retry_count {
            Some(n) if n > 0 => format!("on-failure:{n}"),
            _ => "on-failure".into(),
        },
        _ => "no".into(),
    }
}

pub(super) fn event_from_message(m: EventMessage) -> Option<Event> {
    let action = m.action?;
    let actor = m.actor.unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::Oom,
        // Podman says `remove` where Docker says `destroy`.
        "destroy" | "remove" => EventKind::Destroy,
        a => match a
            .strip_prefix("health_status")?
            .trim_start_matches(':')
            .trim()
        {
            "healthy" => EventKind::Health(Health::Healthy),
            "unhealthy" => EventKind::Health(Health::Unhealthy),
            "starting" => EventKind::Health(Health::Starting),
            _ => return None,
        },
    };
    Some(Event {
        container_id: actor.id.unwrap_or_default(),
        service: attrs.get(LABEL_SERVICE).cloned(),
        kind,
        time_nanos: m
            .time_nano
            .or_else(|| m.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or(0),
    })
}

/// `X-Registry-Auth` as bollard sends it.
pub(super) fn credentials(a: RegistryAuth) -> bollard::auth::DockerCredentials {
    match a.identity_token {
        Some(token) => bollard::auth::DockerCredentials {
            identitytoken: Some(token),
            serveraddress: Some(a.server),
            ..Default::default()
        },
        None => bollard::auth::DockerCredentials {
            username: Some(a.username),
            password: Some(a.password),
            serveraddress: Some(a.server),
            ..Default::default()
        },
    }
}

/// `repo[:tag]` split where Docker splits it: the last `:` after the last `/` (a registry
/// port is not a tag); `latest` when there is none. A digest reference keeps its digest.
pub(super) fn split_tag(reference: &str) -> (&str, &str) {
    if let Some(at) = reference.find('@') {
        return (&reference[..at], &reference[at + 1..]);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

pub(super) fn transfer_event(
    id: Option<String>,
    status: Option<String>,
    detail: Option<bollard::models::ProgressDetail>,
) -> TransferEvent {
    let (current, total) = match detail {
        Some(d) => (
            d.current.filter(|c| *c >= 0).map(|c| c as u64),
            d.total.filter(|t| *t > 0).map(|t| t as u64),
        ),
        None => (None, None),
    };
    TransferEvent {
        // The daemon puts the tag or `latest` in `id` for image-level messages; layers are
        // 12 hex digits.
        layer: id.filter(|i| i.len() == 12 && i.bytes().all(|b| b.is_ascii_hexdigit())),
        status: status.unwrap_or_default(),
        current,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        let p = restart_policy("on-failure:5").unwrap();
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(p.maximum_retry_count, Some(5));
        assert_eq!(
            restart_policy("unless-stopped").unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            restart_policy("no").unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert!(restart_policy("sometimes").is_err());
        // Inspect's policy reads back as compose spells it, so drift compares like with like.
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:5",
        ] {
            assert_eq!(restart_name(&restart_policy(s).unwrap()), s);
        }
        assert!(restart_policy("always:3").is_err());
    }

    #[test]
    fn health_events_parse_with_and_without_the_colon() {
        let msg = |action: &str| EventMessage {
            action: Some(action.to_string()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    (LABEL_SERVICE.to_string(), "redis".to_string()),
                    ("exitCode".to_string(), "3".to_string()),
                ])),
            }),
            time_nano: Some(7),
            ..Default::default()
        };
        let e = event_from_message(msg("health_status: healthy")).unwrap();
        assert_eq!(e.kind, EventKind::Health(Health::Healthy));
        assert_eq!(e.service.as_deref(), Some("redis"));
        assert_eq!(e.time_nanos, 7);
        let e = event_from_message(msg("die")).unwrap();
        assert_eq!(e.kind, EventKind::Die { exit_code: Some(3) });
        assert!(event_from_message(msg("exec_start: sh")).is_none());
        // Podman: a removal is `remove`; `health_status` alone has no status to read here.
        assert_eq!(
            event_from_message(msg("remove")).unwrap().kind,
            EventKind::Destroy
        );
        assert!(event_from_message(msg("health_status")).is_none());
    }

    #[test]
    fn all_address_bindings_are_reported_once() {
        let ports = HashMap::from([(
            "6379/tcp".to_string(),
            Some(vec![
                PortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some("16379".into()),
                },
                PortBinding {
                    host_ip: Some("::".into()),
                    host_port: Some("16379".into()),
                },
            ]),
        )]);
        let p = published_ports(Some(ports));
        assert_eq!(
            p,
            vec![PublishedPort {
                host_ip: "0.0.0.0".into(),
                host_port: 16379,
                container_port: 6379,
                protocol: "tcp".into()
            }]
        );
    }

    #[test]
    fn frames_become_lines_without_their_newline() {
        assert_eq!(frame_lines(b"a\n"), vec!["a"]);
        assert_eq!(frame_lines(b"a\r\nb\n"), vec!["a", "b"]);
        assert_eq!(frame_lines(b"partial"), vec!["partial"]);
    }

    #[test]
    fn podman_default_bind_options_are_not_drift() {
        assert_eq!(normal_bind("/a:/b:ro,rprivate,rbind"), "/a:/b:ro");
        assert_eq!(normal_bind("/a:/b:rw,rprivate,rbind"), "/a:/b");
        assert_eq!(normal_bind("/a:/b:ro,z"), "/a:/b:ro,z");
        assert_eq!(normal_bind("/a:/b:z"), "/a:/b:z");
        assert_eq!(normal_bind("/a:/b"), "/a:/b");
    }
}
