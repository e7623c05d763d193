//! Contract tests of the `SwarmEngine` trait: every assertion is written once, generic over
//! `E: SwarmEngine`, and runs against the in-memory `FakeSwarm` (paused clock) and against a
//! real Swarm manager, so the fake `tests/swarm_fake.rs` relies on cannot drift from Swarm.
//!
//! The real side needs a manager, which CI does not have: set `CDQ_SWARM_MANAGER` to its
//! Docker endpoint (the lab's: `CDQ_SWARM_MANAGER=unix:///tmp/cdq-swarm-lab/manager/docker.sock
//! cargo test --test swarm_contract`, after `scripts/swarm-lab.sh up`). Every node must hold
//! `CDQ_SWARM_IMAGE` (default: the kit's `cdq-local/redis:2-<arch>`, which the lab loads).
//! Unset, each real test says it was skipped and how to run it. One real test needs no
//! swarm: the local daemon, not in swarm mode, answers as a non-manager does.
//!
//! Each test has its own project name (`cdq-sc-<random>`), labels everything it creates with
//! it, and a guard removes what carries that label from the manager when it ends, pass or
//! fail. Where the real behaviour comes from the command a task runs (`exit 3`), the fake is
//! scripted to the same behaviour: that script is the claim the contract checks.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdq::engine::docker::Docker;
use cdq::engine::fake_swarm::{FakeSwarm, TaskBehavior};
use cdq::engine::swarm::{ServiceCreate, SwarmEngine, Task};
use cdq::engine::{EngineError, LABEL_PROJECT, LABEL_SERVICE};
use cdq::swarm::stack::{Health, Mount, Object, ServiceDef};

/// How long a real manager may take to reach each awaited state.
const WAIT: Duration = Duration::from_secs(90);
const MANAGER_VAR: &str = "CDQ_SWARM_MANAGER";

fn image() -> String {
    std::env::var("CDQ_SWARM_IMAGE").unwrap_or_else(|_| {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => panic!("unsupported host architecture {other}"),
        };
        format!("cdq-local/redis:2-{arch}")
    })
}

fn unique_project() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = RandomState::new().hash_one((nanos, std::process::id()));
    format!("cdq-sc-{:012x}", h & 0xffff_ffff_ffff)
}

/// Removes every service, config, secret and network labelled with the test's project from
/// the manager, via the CLI so it works from `Drop` during a panic.
struct Cleanup {
    host: Option<String>,
    project: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(host) = &self.host else {
            return;
        };
        let filter = format!("label={LABEL_PROJECT}={}", self.project);
        let docker = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .arg("-H")
                .arg(host)
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
        for kind in ["service", "config", "secret", "network"] {
            let ids = docker(&[kind, "ls", "-q", "--filter", &filter]);
            if ids.is_empty() {
                continue;
            }
            let mut args = vec![kind, "rm"];
            args.extend(ids.iter().map(String::as_str));
            // A network still leaving its tasks: the manager deletes it once they are gone.
            for _ in 0..30 {
                if Command::new("docker")
                    .arg("-H")
                    .arg(host)
                    .args(&args)
                    .output()
                    .is_ok_and(|o| o.status.success())
                {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

struct Ctx<E: SwarmEngine> {
    e: E,
    project: String,
    network: String,
    image: String,
    /// Set on the fake side: lets a test script what the real command would do.
    fake: Option<FakeSwarm>,
    _cleanup: Cleanup,
}

impl<E: SwarmEngine> Ctx<E> {
    fn labels(&self, service: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_PROJECT.to_string(), self.project.clone()),
            (LABEL_SERVICE.to_string(), service.to_string()),
        ])
    }

    fn name(&self, short: &str) -> String {
        format!("{}_{short}", self.project)
    }

    /// A redis task with a fast `redis-cli ping` healthcheck, on `constraints`.
    fn redis(&self, short: &str, constraints: &[&str]) -> ServiceDef {
        ServiceDef {
            short: short.into(),
            image: self.image.clone(),
            hostname: None,
            command: None,
            env: BTreeMap::from([("CDQ_CONTRACT".to_string(), "1".to_string())]),
            volumes: vec![],
            files: vec![],
            health: Some(Health {
                test: vec!["CMD".into(), "redis-cli".into(), "ping".into()],
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                retries: 3,
                start_period: Duration::ZERO,
            }),
            stop_grace: Some(Duration::from_secs(2)),
            replicas: 1,
            constraints: constraints.iter().map(|c| (*c).to_string()).collect(),
            ports: vec![],
            depends_on: vec![],
        }
    }

    fn spec<'a>(
        &self,
        def: &'a ServiceDef,
        objects: &'a BTreeMap<String, String>,
    ) -> ServiceCreate<'a> {
        ServiceCreate {
            name: self.name(&def.short),
            def,
            labels: self.labels(&def.short),
            network: self.network.clone(),
            object_ids: objects,
        }
    }

    async fn network(&self) {
        self.e
            .ensure_overlay(&self.network, &self.labels("net"))
            .await
            .expect("ensure_overlay");
    }

    fn script(&self, service: &str, b: TaskBehavior) {
        if let Some(f) = &self.fake {
            f.behave(service, b);
        }
    }

    async fn tasks_of(&self, id: &str) -> Vec<Task> {
        self.e.tasks(&[id.to_string()]).await.expect("tasks")
    }
}

/// Polls `f` every half second until it returns Some, at most [`WAIT`] (on the fake's
/// paused clock the wait costs nothing).
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn fake_ctx() -> Ctx<FakeSwarm> {
    let f = FakeSwarm::new();
    f.add_node("manager", true);
    f.add_node("worker1", false);
    f.add_image_everywhere(&image());
    let project = unique_project();
    Ctx {
        e: f.clone(),
        network: format!("{project}_net"),
        image: image(),
        fake: Some(f),
        _cleanup: Cleanup {
            host: None,
            project: project.clone(),
        },
        project,
    }
}

async fn real_ctx() -> Option<Ctx<Docker>> {
    let Ok(host) = std::env::var(MANAGER_VAR) else {
        eprintln!(
            "skipped on a real manager: set {MANAGER_VAR} to a swarm manager's endpoint \
             (after `scripts/swarm-lab.sh up`: {MANAGER_VAR}=unix:///tmp/cdq-swarm-lab/manager/docker.sock) \
             whose nodes hold `{}` to run it there",
            image()
        );
        return None;
    };
    let e = Docker::connect_to(&host)
        .await
        .unwrap_or_else(|err| panic!("{MANAGER_VAR}={host}: {err}"));
    let project = unique_project();
    Some(Ctx {
        e,
        network: format!("{project}_net"),
        image: image(),
        fake: None,
        _cleanup: Cleanup {
            host: Some(host),
            project: project.clone(),
        },
        project,
    })
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn fake() {
                super::$name(super::fake_ctx()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                if let Some(ctx) = super::real_ctx().await {
                    super::$name(ctx).await;
                }
            }
        }
    )*};
}

contract!(
    nodes,
    objects,
    overlays,
    healthy_service,
    unplaceable,
    exit_code,
    update,
    missing_image,
    never_healthy,
);

/// The manager lists itself among the nodes, Ready and active, with its facts.
async fn nodes<E: SwarmEngine>(ctx: Ctx<E>) {
    let nodes = ctx.e.nodes().await.expect("nodes");
    let managers: Vec<_> = nodes.iter().filter(|n| n.manager).collect();
    assert!(!managers.is_empty(), "{nodes:?}");
    for n in &nodes {
        assert!(!n.id.is_empty() && !n.hostname.is_empty(), "{n:?}");
        assert!(["x86_64", "aarch64"].contains(&n.arch.as_str()), "{n:?}");
        assert!(!n.engine_version.is_empty() && n.memory_bytes > 0, "{n:?}");
        assert!(["active", "pause", "drain"].contains(&n.availability.as_str()));
    }
    assert!(
        managers
            .iter()
            .any(|m| m.state == cdq::engine::swarm::NodeState::Ready),
        "{nodes:?}"
    );
}

/// Configs and secrets are listed by the project label, with their kind; a second object
/// of one name conflicts; removal is by id, and a missing one is fine.
async fn objects<E: SwarmEngine>(ctx: Ctx<E>) {
    let labels = ctx.labels("obj");
    let cfg = Object {
        name: format!("{}_conf", ctx.project),
        secret: false,
        data: b"port 6379\n".to_vec(),
    };
    let sec = Object {
        name: format!("{}_pass", ctx.project),
        secret: true,
        data: b"s3cret\n".to_vec(),
    };
    let cfg_id = ctx.e.create_object(&cfg, &labels).await.expect("config");
    let sec_id = ctx.e.create_object(&sec, &labels).await.expect("secret");
    let mut listed = ctx.e.objects(&ctx.project).await.unwrap();
    listed.sort();
    let mut expected = vec![
        (cfg.name.clone(), cfg_id.clone(), false),
        (sec.name.clone(), sec_id.clone(), true),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(
        ctx.e
            .objects(&format!("{}-other", ctx.project))
            .await
            .unwrap()
            .is_empty()
    );
    let again = ctx.e.create_object(&cfg, &labels).await.unwrap_err();
    assert!(matches!(again, EngineError::Conflict(_)), "{again:?}");
    ctx.e.remove_object(&cfg_id, false).await.unwrap();
    ctx.e.remove_object(&sec_id, true).await.unwrap();
    assert!(ctx.e.objects(&ctx.project).await.unwrap().is_empty());
    ctx.e.remove_object(&cfg_id, false).await.unwrap();
}

/// An overlay network is created once, listed by the project label, removed, and a missing
/// one is fine to remove.
async fn overlays<E: SwarmEngine>(ctx: Ctx<E>) {
    let labels = ctx.labels("net");
    assert!(ctx.e.ensure_overlay(&ctx.network, &labels).await.unwrap());
    assert!(!ctx.e.ensure_overlay(&ctx.network, &labels).await.unwrap());
    assert_eq!(
        ctx.e.overlays(&ctx.project).await.unwrap(),
        vec![ctx.network.clone()]
    );
    ctx.e.remove_overlay(&ctx.network).await.unwrap();
    assert!(ctx.e.overlays(&ctx.project).await.unwrap().is_empty());
    ctx.e.remove_overlay(&ctx.network).await.unwrap();
}

/// A service with a healthcheck and a mounted config: listed by the project label; its
/// one task reaches `running` on a node its constraint allows (a manager); a second
/// service of the name conflicts; its logs are readable; its config and network are
/// refused while it lives; removed, it is gone and its network can go.
async fn healthy_service<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    if let Some(f) = &ctx.fake {
        f.start_lines("db", &["Ready to accept connections tcp"]);
    }
    let conf = Object {
        name: format!("{}_conf", ctx.project),
        secret: false,
        data: b"# contract\n".to_vec(),
    };
    let conf_id = ctx
        .e
        .create_object(&conf, &ctx.labels("obj"))
        .await
        .unwrap();
    let objects = BTreeMap::from([(conf.name.clone(), conf_id.clone())]);
    let mut def = ctx.redis("db", &["node.role == manager"]);
    def.files.push(Mount {
        object: conf.name.clone(),
        secret: false,
        target: "/etc/contract.conf".into(),
        uid: "0".into(),
        gid: "0".into(),
        mode: 0o444,
    });
    let id = ctx
        .e
        .create_service(&ctx.spec(&def, &objects))
        .await
        .unwrap();
    let listed = ctx.e.services(&ctx.project).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].name, ctx.name("db"));
    assert_eq!(listed[0].replicas, 1);
    assert_eq!(listed[0].labels.get(LABEL_SERVICE).unwrap(), "db");
    assert!(listed[0].version > 0);

    let managers: Vec<String> = ctx
        .e
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.manager)
        .map(|n| n.id)
        .collect();
    let task = until("the task running", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.wants_running() && t.state == "running")
    })
    .await;
    assert_eq!(task.slot, 1);
    assert!(
        managers.contains(&task.node_id),
        "{task:?} not on a manager"
    );
    assert_eq!(task.error, None);

    let dup = ctx
        .e
        .create_service(&ctx.spec(&def, &objects))
        .await
        .unwrap_err();
    assert!(matches!(dup, EngineError::Conflict(_)), "{dup:?}");
    let logs = until("the start line in the service logs", || async {
        let l = ctx.e.service_logs(&id, 50).await.unwrap();
        l.iter()
            .any(|l| l.contains("Ready to accept connections"))
            .then_some(l)
    })
    .await;
    assert!(logs.len() <= 50);
    let in_use = ctx.e.remove_object(&conf_id, false).await.unwrap_err();
    assert!(
        matches!(in_use, EngineError::Api { status: 400, .. }),
        "{in_use:?}"
    );
    assert!(ctx.e.remove_overlay(&ctx.network).await.is_err());

    ctx.e.remove_service(&id).await.unwrap();
    assert!(ctx.e.services(&ctx.project).await.unwrap().is_empty());
    ctx.e.remove_service(&id).await.unwrap();
    until("the network gone once the task left", || async {
        let _ = ctx.e.remove_overlay(&ctx.network).await;
        ctx.e
            .overlays(&ctx.project)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    ctx.e.remove_object(&conf_id, false).await.unwrap();
}

/// A task no node can take stays pending, on no node, saying why.
async fn unplaceable<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    let def = ctx.redis("nowhere", &["node.labels.cdq-contract-none == 1"]);
    let id = ctx
        .e
        .create_service(&ctx.spec(&def, &BTreeMap::new()))
        .await
        .unwrap();
    let task = until("the scheduler's reason", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.error.is_some())
    })
    .await;
    assert_eq!(task.state, "pending");
    assert_eq!(task.node_id, "");
    assert!(task.wants_running());
    let err = task.error.unwrap();
    assert!(
        err.starts_with("no suitable node (scheduling constraints not satisfied on "),
        "{err}"
    );
}

/// A task whose command exits 3 fails with swarm's words and the code, is given up
/// (desired shutdown), and the restart policy puts a new task in its slot.
async fn exit_code<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    ctx.script(
        "crash",
        TaskBehavior::ExitAfter(Duration::from_millis(200), 3),
    );
    let mut def = ctx.redis("crash", &["node.role == manager"]);
    def.health = None;
    def.command = Some(vec!["sh".into(), "-c".into(), "sleep 0.2; exit 3".into()]);
    let id = ctx
        .e
        .create_service(&ctx.spec(&def, &BTreeMap::new()))
        .await
        .unwrap();
    let failed = until("the failed task", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.state == "failed")
    })
    .await;
    assert_eq!(failed.error.as_deref(), Some("task: non-zero exit (3)"));
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.desired, "shutdown");
    assert_eq!(failed.slot, 1);
    let next = until("a replacement in slot 1", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.slot == 1 && t.id != failed.id)
    })
    .await;
    assert_eq!(
        next.desired, "ready",
        "waiting out the restart delay: {next:?}"
    );
    // Released after the delay: it runs (and exits 3 again, so it may already be over).
    until("the replacement released", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.id == next.id && t.desired != "ready")
    })
    .await;
}

/// An update at the current version bumps it and replaces the task; one at a stale
/// version is refused.
async fn update<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    let def = ctx.redis("up", &["node.role == manager"]);
    let none = BTreeMap::new();
    let id = ctx.e.create_service(&ctx.spec(&def, &none)).await.unwrap();
    let first = until("the first task running", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.wants_running() && t.state == "running")
    })
    .await;
    let v1 = ctx.e.services(&ctx.project).await.unwrap()[0].version;
    let mut changed = def.clone();
    changed.env.insert("CDQ_CONTRACT".into(), "2".into());
    ctx.e
        .update_service(&id, v1, &ctx.spec(&changed, &none))
        .await
        .unwrap();
    let v2 = ctx.e.services(&ctx.project).await.unwrap()[0].version;
    assert!(v2 > v1, "{v1} -> {v2}");
    let stale = ctx
        .e
        .update_service(&id, v1, &ctx.spec(&changed, &none))
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, EngineError::Api { message, .. } if message.contains("update out of sequence")),
        "{stale:?}"
    );
    let second = until("the updated task running", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.wants_running() && t.state == "running" && t.id != first.id)
    })
    .await;
    assert_eq!(second.slot, 1);
    let old = ctx
        .tasks_of(&id)
        .await
        .into_iter()
        .find(|t| t.id == first.id)
        .expect("the old task is kept in the history");
    assert_eq!(old.desired, "shutdown");
}

/// A task whose probes always fail is never `running` (Swarm reports `running` only once
/// the healthcheck passes: `ops::swarm` counts on it). After its retries Swarm stops the
/// container and the task ends by its exit code, with no word of health (redis exits 0 on
/// SIGTERM: `complete`, `finished`); the replacement waits out the restart delay as
/// desired `ready`.
async fn never_healthy<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    ctx.script("sick", TaskBehavior::NeverHealthy { stop_exit: 0 });
    let mut def = ctx.redis("sick", &["node.role == manager"]);
    def.health = Some(Health {
        test: vec!["CMD".into(), "false".into()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 2,
        start_period: Duration::ZERO,
    });
    let id = ctx
        .e
        .create_service(&ctx.spec(&def, &BTreeMap::new()))
        .await
        .unwrap();
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ended = until("the task stopped as unhealthy", || async {
        let tasks = ctx.tasks_of(&id).await;
        seen.lock()
            .unwrap()
            .extend(tasks.iter().map(|t| t.state.clone()));
        tasks.into_iter().find(|t| t.desired == "shutdown")
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(!seen.contains("running"), "{seen:?}");
    assert_eq!(
        (
            ended.state.as_str(),
            ended.message.as_str(),
            ended.error,
            ended.exit_code
        ),
        ("complete", "finished", None, Some(0))
    );
    let next = until("a replacement in slot 1", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.slot == 1 && t.id != ended.id)
    })
    .await;
    assert_eq!(next.desired, "ready", "{next:?}");
}

/// A task whose image its node lacks is rejected naming the image.
async fn missing_image<E: SwarmEngine>(ctx: Ctx<E>) {
    ctx.network().await;
    let mut def = ctx.redis("ghost", &["node.role == manager"]);
    def.image = "cdq-contract/absent:1".into();
    let id = ctx
        .e
        .create_service(&ctx.spec(&def, &BTreeMap::new()))
        .await
        .unwrap();
    let task = until("the rejected task", || async {
        ctx.tasks_of(&id)
            .await
            .into_iter()
            .find(|t| t.state == "rejected")
    })
    .await;
    let err = task.error.unwrap_or_default();
    assert!(
        err.contains("No such image: cdq-contract/absent:1"),
        "{err}"
    );
}

/// A daemon that is not a swarm manager (the local one: it is never put in swarm mode)
/// refuses the swarm calls with 503 and says so; the fake, having left its swarm, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_is_not_a_manager_says_so() {
    let f = FakeSwarm::new();
    f.leave_swarm();
    let local = Docker::connect()
        .await
        .expect("the local Docker engine (start it: `sudo systemctl start docker`)");
    for err in [
        f.nodes().await.unwrap_err(),
        SwarmEngine::nodes(&local).await.unwrap_err(),
    ] {
        match err {
            EngineError::Api { status, message } => {
                assert_eq!(status, 503, "{message}");
                assert!(
                    message.contains("This node is not a swarm manager."),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
