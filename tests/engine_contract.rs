//! Contract tests of the `Engine` trait: every assertion is written once, generic over
//! `E: Engine`, and runs against the in-memory `FakeEngine` (paused clock) and against the
//! local Docker daemon (`Docker::connect()`), so the fake cannot drift from the daemon.
//!
//! The daemon side runs the local kit image `cdq-local/redis:2-<arch>` (built by
//! `scripts/build-local-images.sh --only redis`); a missing daemon or image fails the test
//! with the fix, never skips it. Each test has its own project name (`cdq-ct-<random>`),
//! labels everything it creates with it, and a guard removes exactly what carries that label
//! when the test ends, pass or fail. Where the daemon's behaviour comes from the command a
//! container runs (`exit 3`), the fake is scripted to the same behaviour: that script is the
//! claim the contract checks.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdq::engine::docker::Docker;
use cdq::engine::fake::{Behavior, FakeEngine};
use cdq::engine::{
    COMPOSE_PROJECT, CreateSpec, Engine, EngineError, EventKind, EventStream, Health, ImageInfo,
    LABEL_PROJECT, LABEL_SERVICE, MIN_API_VERSION, OneOff, RunState,
};
use cdq::project::{Healthcheck, Port, ServiceSpec};
use futures_util::StreamExt;

/// How long a real redis may take to reach each awaited event (1 s probes).
const WAIT: Duration = Duration::from_secs(30);

fn kit_image() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("unsupported host architecture {other}"),
    };
    format!("cdq-local/redis:2-{arch}")
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        _ => "arm64",
    }
}

fn unique_project() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = RandomState::new().hash_one((nanos, std::process::id()));
    format!("cdq-ct-{:012x}", h & 0xffff_ffff_ffff)
}

/// Removes every container and network labelled with the test's project, via the CLI so it
/// works from `Drop` during a panic. Touches nothing without the label.
struct Cleanup {
    project: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(project) = &self.project else {
            return;
        };
        let filter = format!("label={LABEL_PROJECT}={project}");
        let ids = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let containers = ids(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .output();
        }
        let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
        if !networks.is_empty() {
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&networks)
                .output();
        }
    }
}

struct Ctx<E: Engine> {
    e: E,
    project: String,
    network: String,
    image: String,
    /// Set on the fake side: lets a test script what the real command would do.
    fake: Option<FakeEngine>,
    _cleanup: Cleanup,
}

impl<E: Engine> Ctx<E> {
    /// Tells the fake to do what the daemon will do for this service's command.
    fn script(&self, service: &str, b: Behavior) {
        if let Some(f) = &self.fake {
            f.behave(service, b);
        }
    }

    fn labels(&self, service: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_PROJECT.to_string(), self.project.clone()),
            (LABEL_SERVICE.to_string(), service.to_string()),
            (COMPOSE_PROJECT.to_string(), self.project.clone()),
        ])
    }

    fn create_spec<'a>(&self, svc: &'a ServiceSpec) -> CreateSpec<'a> {
        CreateSpec {
            name: format!("{}-{}-1", self.project, svc.name),
            service: svc,
            labels: self.labels(&svc.name),
            network: self.network.clone(),
            aliases: vec![svc.name.clone()],
        }
    }

    fn service(&self, name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: self.image.clone(),
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            binds: vec![],
            ports: vec![],
            depends_on: BTreeMap::new(),
            healthcheck: None,
            restart: None,
            ulimits: BTreeMap::new(),
            user: None,
            working_dir: None,
            hostname: None,
            labels: BTreeMap::new(),
            stop_grace_period: Some(Duration::from_secs(2)),
            security_opt: vec![],
        }
    }

    /// A redis with a fast `redis-cli ping` healthcheck, publishing `host_port`.
    fn redis(&self, name: &str, host_port: u16) -> ServiceSpec {
        let mut s = self.service(name);
        s.environment.insert("CDQ_CONTRACT".into(), "1".into());
        s.healthcheck = Some(Healthcheck {
            test: vec!["CMD".into(), "redis-cli".into(), "ping".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::ZERO,
        });
        s.ports.push(Port {
            host_ip: None,
            host_port,
            container_port: 6379,
            protocol: "tcp".into(),
        });
        s.restart = Some("no".into());
        s
    }

    async fn network(&self) {
        self.e
            .ensure_network(&self.network, &self.labels("network"))
            .await
            .expect("ensure_network");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn fake_ctx() -> Ctx<FakeEngine> {
    let fake = FakeEngine::new();
    fake.add_image(
        &kit_image(),
        ImageInfo {
            id: "sha256:fa4e".into(),
            arch: docker_arch().into(),
            os: "linux".into(),
            user: String::new(),
            size: 120_000_000,
        },
    );
    let project = unique_project();
    Ctx {
        e: fake.clone(),
        network: format!("{project}_default"),
        project,
        image: kit_image(),
        fake: Some(fake),
        _cleanup: Cleanup { project: None },
    }
}

async fn docker_ctx() -> Ctx<Docker> {
    let e = match Docker::connect().await {
        Ok(e) => e,
        Err(err) => panic!(
            "the real-daemon contract tests need a running Docker engine: {err} \
             ({:?}); start dockerd or set DOCKER_HOST",
            std::error::Error::source(&err)
        ),
    };
    let image = kit_image();
    let present = e.image(&image).await.expect("inspect the kit image");
    assert!(
        present.is_some(),
        "kit image `{image}` is missing: run scripts/build-local-images.sh --only redis"
    );
    let project = unique_project();
    Ctx {
        e,
        network: format!("{project}_default"),
        project: project.clone(),
        image,
        fake: None,
        _cleanup: Cleanup {
            project: Some(project),
        },
    }
}

/// The next event of container `id`, skipping others, or a panic naming what was awaited.
async fn next_for(events: &mut EventStream, id: &str, what: &str) -> EventKind {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.next().await {
            let ev = ev.expect("event stream error");
            if ev.container_id == id {
                assert!(ev.time_nanos > 0, "events carry the daemon's time");
                return Some(ev.kind);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(kind)) => kind,
        Ok(None) => panic!("event stream ended while waiting for {what}"),
        Err(_) => panic!("no event within {WAIT:?} while waiting for {what}"),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn fake() {
                super::$name(super::fake_ctx().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn docker() {
                super::$name(super::docker_ctx().await).await;
            }
        }
    )*};
}

contract!(
    info,
    image,
    networks,
    network_in_use,
    lifecycle,
    exit_code,
    name_conflict,
    missing_image,
    port_taken,
    run_oneoff,
    exec,
    rename,
    support_facts,
    tag_and_unreachable_registry,
);

/// `docker rename`: the container keeps its id and state under the new name; a taken name
/// is a conflict that changes nothing; a missing container is not found.
async fn rename<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let a = ctx.service("a");
    let b = ctx.service("b");
    let ida = ctx.e.create_container(&ctx.create_spec(&a)).await.unwrap();
    let idb = ctx.e.create_container(&ctx.create_spec(&b)).await.unwrap();
    let new_name = format!("{}-a-1-previous", ctx.project);
    ctx.e.rename_container(&ida, &new_name).await.unwrap();
    let c = ctx.e.inspect_container(&ida).await.unwrap();
    assert_eq!(
        (c.id.as_str(), c.name.as_str()),
        (ida.as_str(), new_name.as_str())
    );
    // The old name is free again: a new container may take it.
    let again = ctx.e.create_container(&ctx.create_spec(&a)).await.unwrap();
    assert_ne!(again, ida);
    let taken = format!("{}-b-1", ctx.project);
    match ctx.e.rename_container(&ida, &taken).await {
        Err(EngineError::Conflict(_)) => {}
        other => panic!("renaming onto a taken name: {other:?}"),
    }
    assert_eq!(ctx.e.inspect_container(&idb).await.unwrap().name, taken);
    assert_eq!(ctx.e.inspect_container(&ida).await.unwrap().name, new_name);
    match ctx.e.rename_container("cdq-ct-absent-never", "x").await {
        Err(EngineError::NotFound(_)) => {}
        other => panic!("renaming a missing container: {other:?}"),
    }
}

/// What `cdq diagnose` reads: the daemon's version and info, every container of the project
/// inspected under its name (with its environment), and the project's events since a time.
async fn support_facts<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 5;
    let r = ctx.redis("r", free_port());
    let id = ctx.e.create_container(&ctx.create_spec(&r)).await.unwrap();
    ctx.e.start_container(&id).await.unwrap();
    let f = ctx.e.support_facts(&ctx.project, since).await.unwrap();
    assert!(
        f.version["Version"].as_str().is_some_and(|v| !v.is_empty()),
        "{}",
        f.version
    );
    assert!(f.version["ApiVersion"].is_string(), "{}", f.version);
    assert!(f.info["ServerVersion"].is_string(), "{}", f.info);
    let name = format!("{}-r-1", ctx.project);
    let inspect = f
        .inspects
        .get(&name)
        .unwrap_or_else(|| panic!("{:?}", f.inspects.keys()));
    assert_eq!(inspect["Id"], id.as_str());
    assert_eq!(inspect["State"]["Status"], "running");
    let env: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"CDQ_CONTRACT=1"), "{env:?}");
    assert!(
        f.events
            .iter()
            .any(|e| e["Action"] == "start" && e["Actor"]["ID"] == id.as_str()),
        "{:?}",
        f.events
    );
    // Another project's facts hold none of these.
    let other = ctx
        .e
        .support_facts("cdq-ct-absent-never", since)
        .await
        .unwrap();
    assert!(other.inspects.is_empty() && other.events.is_empty());
    ctx.e
        .stop_container(&id, Duration::from_secs(2))
        .await
        .unwrap();
}

async fn info<E: Engine>(ctx: Ctx<E>) {
    let i = ctx.e.info().await.unwrap();
    let (major, minor) = i.api_version.split_once('.').expect("api version is N.M");
    let v: (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
    let (min_major, min_minor) = MIN_API_VERSION.split_once('.').unwrap();
    assert!(
        v >= (min_major.parse().unwrap(), min_minor.parse().unwrap()),
        "{i:?}"
    );
    assert!(!i.server_version.is_empty(), "{i:?}");
    assert_eq!(
        i.arch,
        std::env::consts::ARCH,
        "Docker spells arch as uname does"
    );
    assert_eq!(i.os, "linux");
    assert!(i.cpus > 0 && i.memory_bytes > 0, "{i:?}");
    assert!(
        !i.storage_driver.is_empty() && i.root_dir.starts_with('/'),
        "{i:?}"
    );
}

async fn image<E: Engine>(ctx: Ctx<E>) {
    let i = ctx.e.image(&ctx.image).await.unwrap().expect("kit image");
    assert!(i.id.starts_with("sha256:"), "{i:?}");
    assert_eq!((i.arch.as_str(), i.os.as_str()), (docker_arch(), "linux"));
    assert!(i.size > 0);
    assert_eq!(ctx.e.image("cdq-local/absent:never").await.unwrap(), None);
}

async fn networks<E: Engine>(ctx: Ctx<E>) {
    let labels = ctx.labels("network");
    assert!(
        ctx.e.ensure_network(&ctx.network, &labels).await.unwrap(),
        "created"
    );
    assert!(
        !ctx.e.ensure_network(&ctx.network, &labels).await.unwrap(),
        "existed"
    );
    assert_eq!(
        ctx.e.list_networks(&ctx.project).await.unwrap(),
        vec![ctx.network.clone()]
    );
    ctx.e.remove_network(&ctx.network).await.unwrap();
    assert!(ctx.e.list_networks(&ctx.project).await.unwrap().is_empty());
    ctx.e
        .remove_network(&ctx.network)
        .await
        .expect("a missing network is fine");
}

/// A network with a running container refuses removal as `NetworkInUse`, lists the
/// container, and lets `force_disconnect` take it off; absent endpoints and networks are fine.
async fn network_in_use<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let mut svc = ctx.service("holder");
    svc.entrypoint = Some(vec!["sleep".into()]);
    svc.command = Some(vec!["300".into()]);
    let spec = ctx.create_spec(&svc);
    let id = ctx.e.create_container(&spec).await.unwrap();
    ctx.e.start_container(&id).await.unwrap();

    match ctx.e.remove_network(&ctx.network).await {
        Err(EngineError::NetworkInUse(n)) => assert_eq!(n, ctx.network),
        other => panic!("removing a network in use must be NetworkInUse, got {other:?}"),
    }
    assert_eq!(
        ctx.e.network_endpoints(&ctx.network).await.unwrap(),
        vec![spec.name.clone()]
    );
    ctx.e
        .force_disconnect(&ctx.network, &format!("{}-absent-1", ctx.project))
        .await
        .expect("an absent endpoint is fine");
    ctx.e
        .force_disconnect(&ctx.network, &spec.name)
        .await
        .unwrap();
    assert!(
        ctx.e
            .network_endpoints(&ctx.network)
            .await
            .unwrap()
            .is_empty()
    );
    ctx.e.remove_network(&ctx.network).await.unwrap();
    assert!(
        ctx.e
            .network_endpoints(&ctx.network)
            .await
            .unwrap()
            .is_empty(),
        "a missing network has no endpoints"
    );
    ctx.e
        .force_disconnect(&ctx.network, &spec.name)
        .await
        .expect("a missing network is fine");
    ctx.e
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
}

async fn lifecycle<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let port = free_port();
    let svc = ctx.redis("redis", port);
    let spec = ctx.create_spec(&svc);
    let id = ctx.e.create_container(&spec).await.unwrap();

    let listed = ctx.e.list_containers(&ctx.project).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let c = &listed[0];
    assert_eq!(
        (c.id.as_str(), c.name.as_str()),
        (id.as_str(), spec.name.as_str())
    );
    assert_eq!(c.image, ctx.image);
    assert_eq!(c.service(), Some("redis"));
    for (k, v) in &spec.labels {
        assert_eq!(c.labels.get(k), Some(v), "label {k}");
    }
    assert_eq!(c.state, RunState::Created);
    assert_eq!(
        (c.health, c.exit_code, c.started_at.as_deref()),
        (None, None, None)
    );
    assert!(
        c.ports.is_empty(),
        "ports are published on start: {:?}",
        c.ports
    );

    let mut events = ctx.e.events(&ctx.project);
    ctx.e.start_container(&id).await.unwrap();
    assert_eq!(next_for(&mut events, &id, "start").await, EventKind::Start);
    assert_eq!(
        next_for(&mut events, &id, "healthy").await,
        EventKind::Health(Health::Healthy)
    );

    let c = ctx.e.inspect_container(&id).await.unwrap();
    assert_eq!(
        (c.state, c.health),
        (RunState::Running, Some(Health::Healthy))
    );
    assert!(
        c.last_probe.as_deref().is_some_and(|p| !p.is_empty()),
        "{c:?}"
    );
    assert!(
        c.started_at.as_deref().is_some_and(|s| s.ends_with('Z')),
        "{c:?}"
    );
    assert!(
        c.ports.iter().any(|p| p.host_port == port
            && p.container_port == 6379
            && p.protocol == "tcp"
            && p.host_ip == "0.0.0.0"),
        "{:?}",
        c.ports
    );
    let logs = ctx.e.logs(&id, 50).await.unwrap();
    assert!(!logs.is_empty() && logs.len() <= 50, "{logs:?}");
    assert!(logs.iter().all(|l| !l.ends_with('\n')));
    assert_eq!(ctx.e.logs(&id, 1).await.unwrap().len(), 1);

    match ctx.e.remove_container(&id).await {
        Err(EngineError::Conflict(_)) => {}
        other => panic!("removing a running container must conflict, got {other:?}"),
    }
    ctx.e
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        next_for(&mut events, &id, "die on stop").await,
        EventKind::Die { .. }
    ));
    let c = ctx.e.inspect_container(&id).await.unwrap();
    assert_eq!(c.state, RunState::Exited);
    assert!(c.ports.is_empty(), "{:?}", c.ports);
    ctx.e
        .stop_container(&id, Duration::from_secs(5))
        .await
        .expect("stopping a stopped container is fine");
    ctx.e.remove_container(&id).await.unwrap();
    assert_eq!(
        next_for(&mut events, &id, "destroy").await,
        EventKind::Destroy
    );
    assert!(
        ctx.e
            .list_containers(&ctx.project)
            .await
            .unwrap()
            .is_empty()
    );
    ctx.e
        .remove_container(&id)
        .await
        .expect("a missing container is fine");
    assert!(matches!(
        ctx.e.inspect_container(&id).await,
        Err(EngineError::NotFound(_))
    ));
}

async fn exit_code<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let mut svc = ctx.service("exiter");
    svc.entrypoint = Some(vec!["sh".into(), "-c".into()]);
    svc.command = Some(vec!["echo going; exit 3".into()]);
    ctx.script("exiter", Behavior::ExitAfter(Duration::from_millis(200), 3));
    let id = ctx
        .e
        .create_container(&ctx.create_spec(&svc))
        .await
        .unwrap();
    let mut events = ctx.e.events(&ctx.project);
    ctx.e.start_container(&id).await.unwrap();
    assert_eq!(next_for(&mut events, &id, "start").await, EventKind::Start);
    assert_eq!(
        next_for(&mut events, &id, "die").await,
        EventKind::Die { exit_code: Some(3) }
    );
    let c = ctx.e.inspect_container(&id).await.unwrap();
    assert_eq!(
        (c.state, c.exit_code, c.health),
        (RunState::Exited, Some(3), None)
    );
    assert!(!c.oom_killed);
    assert!(!ctx.e.logs(&id, 10).await.unwrap().is_empty());
}

/// `exec` answers as the healthcheck would (the probe cdq runs itself), and refuses a
/// container that is not running.
async fn exec<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let svc = ctx.redis("prober", free_port());
    let id = ctx
        .e
        .create_container(&ctx.create_spec(&svc))
        .await
        .unwrap();
    let ping = vec!["redis-cli".to_string(), "ping".to_string()];
    let refused = ctx.e.exec(&id, &ping, Duration::from_secs(5)).await;
    assert!(
        matches!(refused, Err(EngineError::Conflict(_))),
        "{refused:?}"
    );
    ctx.e.start_container(&id).await.unwrap();
    // redis answers within moments of its start; the daemon's own first probe is a whole
    // interval later.
    let mut answer = (1, String::new());
    for _ in 0..50 {
        answer = ctx
            .e
            .exec(&id, &ping, Duration::from_secs(5))
            .await
            .unwrap();
        if answer.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer.0, 0, "{answer:?}");
    ctx.e
        .stop_container(&id, Duration::from_secs(2))
        .await
        .unwrap();
    ctx.e.remove_container(&id).await.unwrap();
}

async fn name_conflict<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let svc = ctx.service("dup");
    let spec = ctx.create_spec(&svc);
    ctx.e.create_container(&spec).await.unwrap();
    match ctx.e.create_container(&spec).await {
        Err(EngineError::Conflict(m)) => assert!(m.contains(&spec.name), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
}

async fn missing_image<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let mut svc = ctx.service("ghost");
    svc.image = "cdq-local/absent:never".into();
    match ctx.e.create_container(&ctx.create_spec(&svc)).await {
        Err(EngineError::NotFound(what)) => assert_eq!(what, svc.image),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        ctx.e
            .list_containers(&ctx.project)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn port_taken<E: Engine>(ctx: Ctx<E>) {
    ctx.network().await;
    let port = free_port();
    let (a, b) = (ctx.redis("first", port), ctx.redis("second", port));
    let ia = ctx.e.create_container(&ctx.create_spec(&a)).await.unwrap();
    let ib = ctx.e.create_container(&ctx.create_spec(&b)).await.unwrap();
    ctx.e.start_container(&ia).await.unwrap();
    match ctx.e.start_container(&ib).await {
        Err(EngineError::Api { message, .. }) => {
            assert!(message.contains("port is already allocated"), "{message}")
        }
        other => panic!("expected the daemon's port conflict, got {other:?}"),
    }
    assert_ne!(
        ctx.e.inspect_container(&ib).await.unwrap().state,
        RunState::Running
    );
}

async fn run_oneoff<E: Engine>(ctx: Ctx<E>) {
    if let Some(f) = &ctx.fake {
        f.set_oneoff_result(&ctx.image, 5, "hello from uid 0");
    }
    let (code, output) = ctx
        .e
        .run_oneoff(&OneOff {
            image: ctx.image.clone(),
            user: "0".into(),
            entrypoint: vec![
                "sh".into(),
                "-c".into(),
                "echo hello from uid $(id -u); exit 5".into(),
            ],
            binds: vec![],
            labels: ctx.labels("oneoff"),
            ulimits: vec![],
        })
        .await
        .unwrap();
    assert_eq!((code, output.trim_end()), (5, "hello from uid 0"));
    assert!(
        ctx.e
            .list_containers(&ctx.project)
            .await
            .unwrap()
            .is_empty(),
        "a one-off is removed"
    );
}

// ---- connecting: only the real implementation connects ----------------------------------

#[tokio::test]
async fn connect_negotiates_the_daemons_api_version() {
    let e = docker_ctx().await.e;
    let cli = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .expect("docker CLI");
    let server = String::from_utf8_lossy(&cli.stdout).trim().to_string();
    // bollard speaks a newer API than any engine here; negotiation settles on the engine's.
    assert_eq!(e.api_version(), server);
    assert_eq!(e.info().await.unwrap().api_version, server);
}

#[tokio::test]
async fn a_missing_socket_or_closed_port_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    match Docker::connect_to(&format!("unix://{}", sock.display())).await {
        Err(EngineError::Unreachable { socket, .. }) => {
            assert_eq!(socket, sock.display().to_string())
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let port = free_port();
    match Docker::connect_to(&format!("tcp://127.0.0.1:{port}")).await {
        Err(EngineError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// A daemon older than cdq's minimum answers the negotiation request as Docker does.
#[tokio::test]
async fn an_engine_older_than_the_minimum_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("old.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        // The connect probe, then the version request.
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                continue;
            }
            let body = format!(
                r#"{{"message":"client version {MIN_API_VERSION} is too new. Maximum supported API version is 1.38"}}"#
            );
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            s.shutdown().await.ok();
        }
    });
    match Docker::connect_to(&format!("unix://{}", sock.display())).await {
        Err(EngineError::TooOld { version }) => assert_eq!(version, "1.38"),
        other => panic!("expected TooOld, got {other:?}"),
    }
    server.abort();
}

/// `tag_image` makes a second name for the same image (a missing source is `NotFound`); a
/// pull from a registry nobody listens on ends its stream with `Registry`, whose words
/// `ops::transfer` classifies as unreachable.
async fn tag_and_unreachable_registry<E: Engine>(ctx: Ctx<E>) {
    let tag = format!("{}-tag/redis:contract", ctx.project);
    ctx.e.tag_image(&ctx.image, &tag).await.expect("tag");
    let a = ctx.e.image(&ctx.image).await.unwrap().unwrap();
    let b = ctx.e.image(&tag).await.unwrap().unwrap();
    if ctx.fake.is_none() {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &tag])
            .output();
    }
    assert_eq!(a.id, b.id);
    match ctx.e.tag_image("cdq-local/absent:never", &tag).await {
        Err(EngineError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    let reference = format!("127.0.0.1:{}/cd/redis:1", free_port());
    let mut pull = ctx.e.pull_image(&reference, Some("linux/amd64"), None);
    let mut last = None;
    while let Some(item) = pull.next().await {
        if let Err(e) = item {
            last = Some(e);
            break;
        }
    }
    match last {
        Some(EngineError::Registry { message, .. }) => assert_eq!(
            cdq::ops::transfer::classify(&message),
            cdq::ops::transfer::Problem::Unreachable,
            "{message}"
        ),
        other => panic!("expected a Registry error, got {other:?}"),
    }
    assert_eq!(ctx.e.image(&reference).await.unwrap(), None);
}
