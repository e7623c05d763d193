//! `ops::swarm` against the in-memory Swarm manager (`FakeSwarm`) with a paused clock: the
//! stack is the one cdq renders for three nodes (17 services), deployed wave by wave; a
//! service that never becomes healthy; a worker lost and back; a second `up` with nothing to
//! do; a changed config file; `down` beside someone else's service; a node without its slot
//! label. The same operations run on the three-node lab in tests/swarm_real.rs, and the
//! fake's behaviour is held to a real manager by tests/swarm_contract.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cdq::assets::Assets;
use cdq::catalog::Catalog;
use cdq::engine::fake_swarm::{FakeSwarm, TaskBehavior};
use cdq::engine::swarm::{ServiceCreate, SwarmEngine};
use cdq::engine::{LABEL_PROJECT, LABEL_SERVICE};
use cdq::error::{CdqError, Kind};
use cdq::interpolate::Vars;
use cdq::ops::swarm::{self as ops, Action, Progress};
use cdq::ops::swarm_plan;
use cdq::render::Input;
use cdq::secrets::Secrets;
use cdq::services::Arch;
use cdq::settings::{self, Overrides, Settings};
use cdq::swarm::stack::{self, Object, SLOT_LABEL, Stack};
use tokio::time::Instant;

const PROJECT: &str = "demo";
const NODES: [&str; 3] = ["manager", "worker1", "worker2"];

/// The stack cdq renders for three nodes, parsed as `cdq up` parses it; `templates`
/// overrides the embedded templates (`--templates`).
fn render(templates: Option<&Path>) -> (Settings, Stack) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cdq.yaml"),
        format!(
            "project: {PROJECT}\ntarget: swarm\ncluster:\n  nodes: [{}]\n",
            NODES.join(", ")
        ),
    )
    .unwrap();
    let s = settings::load(
        dir.path(),
        &Overrides {
            dir: Some(dir.path().to_path_buf()),
            arch: Some(Arch::Amd64),
            templates: templates.map(Path::to_path_buf),
            ..Overrides::default()
        },
    )
    .unwrap();
    let assets = Assets::new(s.templates.clone());
    let catalog = Catalog::load(&assets, Arch::Amd64, &s.images, &s.versions).unwrap();
    let files = stack::render(&Input {
        settings: &s,
        arch: Arch::Amd64,
        host_ip: "10.0.0.5".parse().unwrap(),
        timezone: "Etc/UTC",
        catalog: &catalog,
        secrets: &Secrets::fixed(),
        assets: &assets,
        relabel: false,
    })
    .unwrap();
    let by_rel: BTreeMap<PathBuf, String> =
        files.into_iter().map(|f| (f.rel, f.contents)).collect();
    let text = &by_rel[Path::new(&stack::stack_file_name(Arch::Amd64))];
    let vars = Vars::from_dotenv(&by_rel[Path::new(".env")], []);
    let stack = stack::parse(PROJECT, text, &vars, Path::new("/d"), |p| {
        let rel = p.strip_prefix("/d").unwrap();
        Ok(by_rel[rel].clone().into_bytes())
    })
    .unwrap();
    (s, stack)
}

/// Three Ready nodes labelled with their slots, every image of the stack on each.
fn swarm(stack: &Stack) -> FakeSwarm {
    let f = FakeSwarm::new();
    for (i, n) in NODES.iter().enumerate() {
        f.add_node(n, i == 0);
        f.label_node(n, SLOT_LABEL, &(i + 1).to_string());
    }
    for s in &stack.services {
        f.add_image_everywhere(&s.image);
    }
    f
}

/// The deadlines `cdq up` gives each stack service (its catalogue service's).
fn deadlines(s: &Settings) -> impl Fn(&str) -> Duration + '_ {
    |short| ops::base_service(short).map_or(Duration::from_secs(120), |svc| s.deadline(svc))
}

async fn up(f: &FakeSwarm, s: &Settings, stack: &Stack) -> anyhow::Result<Vec<(String, Action)>> {
    let mut actions = Vec::new();
    ops::up(f, stack, deadlines(s), |p| {
        if let Progress::Service(short, a) = p {
            actions.push((short, a));
        }
    })
    .await?;
    Ok(actions)
}

fn shorts(stack: &Stack) -> Vec<String> {
    stack.services.iter().map(|s| s.short.clone()).collect()
}

fn mutations(f: &FakeSwarm) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| !c.starts_with("ensure_overlay"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn up_creates_each_wave_only_once_its_dependencies_are_healthy() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    // Slow members make the ordering visible: the server waits for all three brokers.
    f.behave(
        "kafka3",
        TaskBehavior::HealthyAfter(Duration::from_secs(40)),
    );
    f.behave("mysql", TaskBehavior::HealthyAfter(Duration::from_secs(25)));
    let deps: BTreeMap<String, Vec<String>> = stack
        .services
        .iter()
        .map(|d| (d.short.clone(), d.depends_on.clone()))
        .collect();
    let mut created = Vec::new();
    let mut early = Vec::new();
    let start = Instant::now();
    ops::up(&f, &stack, deadlines(&s), |p| {
        if let Progress::Service(short, Action::Created) = p {
            for d in &deps[&short] {
                if f.running(d).is_empty() {
                    early.push(format!("{short} created before {d} was healthy"));
                }
            }
            created.push(short);
        }
    })
    .await
    .unwrap();
    assert_eq!(early, Vec::<String>::new());
    let mut all = shorts(&stack);
    all.sort();
    created.sort();
    assert_eq!(created, all, "every service created once");
    assert!(
        start.elapsed() >= Duration::from_secs(40),
        "up returned before kafka3 was healthy: {:?}",
        start.elapsed()
    );
    for short in shorts(&stack) {
        assert_eq!(f.running(&short).len(), 1, "{short} has one running task");
    }
    // Placement: each member on its slot's node, the singletons on slot 1.
    for i in 1..=3 {
        for m in ["kafka", "zookeeper", "sentinel"] {
            assert_eq!(
                f.running(&format!("{m}{i}")),
                vec![(1, NODES[i - 1].to_string())]
            );
        }
    }
    assert_eq!(f.running("mysql"), vec![(1, "manager".to_string())]);
    assert_eq!(f.running("redis-replica"), vec![(1, "worker1".to_string())]);
}

/// The never-healthy row of the fault matrix: kafka2's probes always fail, so Swarm fails
/// and replaces its task again and again; `up` gives up at kafka's deadline naming the
/// task, its node, its state, the error Swarm recorded and the last log lines; exit 4;
/// nothing after kafka's wave is created.
#[tokio::test(start_paused = true)]
async fn a_service_never_healthy_fails_at_its_deadline_naming_task_node_error_and_logs() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    // A JVM stopped by Swarm exits 143 (SIGTERM).
    f.behave("kafka2", TaskBehavior::NeverHealthy { stop_exit: 143 });
    f.start_lines(
        "kafka2",
        &[
            "[KafkaRaftServer nodeId=2] Starting",
            "ERROR unable to reach the controller quorum at kafka1:9093",
        ],
    );
    let start = Instant::now();
    let err = up(&f, &s, &stack).await.unwrap_err();
    let waited = start.elapsed();
    let c = err.downcast_ref::<CdqError>().expect("a typed error");
    assert_eq!(c.kind, Kind::Unhealthy);
    assert_eq!(cdq::error::exit_code(&err), 4);
    let kafka_deadline = s.deadline(cdq::services::Service::Kafka);
    assert!(
        waited >= kafka_deadline && waited < kafka_deadline + Duration::from_secs(60),
        "gave up after {waited:?}, the deadline is {kafka_deadline:?}"
    );
    let m = &c.message;
    assert!(
        m.starts_with("`kafka2` did not become healthy in time\n  `kafka2`:\n"),
        "{m}"
    );
    // The current task first, then the ones Swarm failed, each with its node and error.
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(
        lines[2], "    task 1 on `worker1`: starting (desired running)",
        "the current task, its node and state, once: {m}"
    );
    assert!(
        m.contains(
            "    task 1 on `worker1`: failed (desired shutdown): task: non-zero exit (143)\n"
        ),
        "{m}"
    );
    assert!(
        m.contains("    | ERROR unable to reach the controller quorum at kafka1:9093"),
        "{m}"
    );
    assert!(
        c.hint.as_deref().is_some_and(|h| h.contains("cdq logs")),
        "{:?}",
        c.hint
    );
    let names = f.service_names();
    assert!(!names.contains(&"demo_server".to_string()), "{names:?}");
}

#[tokio::test(start_paused = true)]
async fn status_marks_the_tasks_of_a_down_node_and_names_the_degraded_services() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    up(&f, &s, &stack).await.unwrap();
    let expected = shorts(&stack);
    let healthy = ops::status(&f, PROJECT, &expected).await.unwrap();
    assert!(healthy.healthy(), "{}", ops::table(&healthy));

    f.node_down("worker2");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let r = ops::status(&f, PROJECT, &expected).await.unwrap();
    assert!(!r.healthy());
    let t = ops::table(&r);
    assert!(t.contains("worker2       down DOWN"), "{t}");
    let degraded: BTreeSet<&str> = r
        .services
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(
        degraded,
        BTreeSet::from(["kafka3", "sentinel3", "zookeeper3"]),
        "the members pinned to slot 3; the server and ucenter moved:\n{t}"
    );
    for m in ["kafka3", "sentinel3", "zookeeper3"] {
        let line = t.lines().find(|l| l.starts_with(&format!("{m} "))).unwrap();
        assert!(
            line.contains("0/1      degraded   1@worker2 (running, node down)"),
            "{line}"
        );
        assert!(line.contains("1@(unassigned) (pending)"), "{line}");
    }

    f.node_up("worker2");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let back = ops::status(&f, PROJECT, &expected).await.unwrap();
    assert!(back.healthy(), "{}", ops::table(&back));
}

#[tokio::test(start_paused = true)]
async fn a_second_up_of_an_unchanged_stack_changes_nothing() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    up(&f, &s, &stack).await.unwrap();
    let before = task_ids(&f).await;
    f.clear_calls();
    let actions = up(&f, &s, &stack).await.unwrap();
    assert_eq!(mutations(&f), Vec::<String>::new());
    assert!(
        actions.iter().all(|(_, a)| *a == Action::Unchanged),
        "{actions:?}"
    );
    assert_eq!(task_ids(&f).await, before, "no task replaced");
    // A stack rendered again from the same settings is the same stack.
    let (_, again) = render(None);
    up(&f, &s, &again).await.unwrap();
    assert_eq!(mutations(&f), Vec::<String>::new());
}

async fn task_ids(f: &FakeSwarm) -> BTreeSet<String> {
    let ids: Vec<String> = f
        .services(PROJECT)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    f.tasks(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect()
}

/// A customised `zoo.cfg` (`--templates`) is a new config object: the three ZooKeeper
/// members are updated to it, nothing else; `up` returns once their new tasks are healthy,
/// not on the old tasks still running when the update was sent.
#[tokio::test(start_paused = true)]
async fn a_changed_config_updates_only_the_services_that_mount_it() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    up(&f, &s, &stack).await.unwrap();
    let old_tasks = task_ids(&f).await;

    let templates = zoo_override();
    let (s2, changed) = render(Some(templates.path()));
    let new_objects: Vec<&Object> = changed
        .objects
        .iter()
        .filter(|o| !stack.objects.iter().any(|x| x.name == o.name))
        .collect();
    assert_eq!(new_objects.len(), 1, "only zoo.cfg changed");
    // The new tasks take a while to become healthy: up must wait for them.
    for i in 1..=3 {
        f.behave(
            &format!("zookeeper{i}"),
            TaskBehavior::HealthyAfter(Duration::from_secs(15)),
        );
    }
    f.clear_calls();
    let actions = up(&f, &s2, &changed).await.unwrap();
    let updated: BTreeSet<String> = actions
        .iter()
        .filter(|(_, a)| *a == Action::Updated)
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(
        updated,
        BTreeSet::from([
            "zookeeper1".into(),
            "zookeeper2".into(),
            "zookeeper3".into()
        ])
    );
    assert_eq!(
        mutations(&f),
        vec![
            format!("create_object {}", new_objects[0].name),
            "update_service demo_zookeeper1".to_string(),
            "update_service demo_zookeeper2".to_string(),
            "update_service demo_zookeeper3".to_string(),
        ]
    );
    let def = f.service_def("demo_zookeeper1").unwrap();
    assert!(def.files.iter().any(|m| m.object == new_objects[0].name));
    // When up returned, each member's running task was a new one.
    let services = f.services(PROJECT).await.unwrap();
    let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    let tasks = f.tasks(&ids).await.unwrap();
    for s in services
        .iter()
        .filter(|s| s.name.starts_with("demo_zookeeper"))
    {
        let running: Vec<&str> = tasks
            .iter()
            .filter(|t| t.service_id == s.id && t.wants_running() && t.state == "running")
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(running.len(), 1, "{}: {running:?}", s.name);
        assert!(
            !old_tasks.contains(running[0]),
            "{}: up returned on the task from before the update",
            s.name
        );
    }
}

/// A `--templates` directory whose `zoo.cfg` has one more line than the embedded one.
fn zoo_override() -> tempfile::TempDir {
    let templates = tempfile::tempdir().unwrap();
    let zoo = Assets::new(None)
        .read("templates", "swarm/zoo.cfg.j2")
        .unwrap();
    std::fs::create_dir_all(templates.path().join("templates/swarm")).unwrap();
    std::fs::write(
        templates.path().join("templates/swarm/zoo.cfg.j2"),
        format!("{zoo}maxClientCnxns=200\n"),
    )
    .unwrap();
    templates
}

/// `--dry-run`'s plan is what `up` then does: on an empty swarm, after a changed config,
/// and when nothing changed (the objects it creates, and each service's action).
#[tokio::test(start_paused = true)]
async fn the_dry_run_plan_is_what_up_then_does() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    let templates = zoo_override();
    let (s2, changed) = render(Some(templates.path()));
    for (round, (settings, st)) in [(&s, &stack), (&s2, &changed)].into_iter().enumerate() {
        let plan = swarm_plan::observe(&f, st).await.unwrap();
        assert_eq!(plan.create_network, round == 0, "{plan}");
        if round == 1 {
            let text = plan.to_string();
            assert!(
                text.starts_with("plan for `demo` on the swarm:\n  create config `demo_zoo-cfg_"),
                "{text}"
            );
            assert!(
                text.contains("update zookeeper1, update zookeeper2, update zookeeper3"),
                "{text}"
            );
            assert!(text.contains("mysql unchanged"), "{text}");
        }
        f.clear_calls();
        let actions = up(&f, settings, st).await.unwrap();
        let planned: Vec<(String, Action)> = plan.waves.iter().flatten().cloned().collect();
        assert_eq!(planned, actions, "{plan}");
        let created: Vec<String> = f
            .calls()
            .iter()
            .filter_map(|c| c.strip_prefix("create_object ").map(str::to_string))
            .collect();
        let planned_objects: Vec<String> = plan.objects.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(created, planned_objects, "{plan}");
    }
    let plan = swarm_plan::observe(&f, &changed).await.unwrap();
    assert_eq!(
        plan.to_string(),
        "plan for `demo` on the swarm: nothing to change (17 services current)\n"
    );
}

/// `down` removes the services, the network and the configs and secrets carrying the
/// project's label, each once; a service, config and network of another project in the
/// same swarm stay.
#[tokio::test(start_paused = true)]
async fn down_removes_only_what_carries_the_projects_labels() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    up(&f, &s, &stack).await.unwrap();
    let other = BTreeMap::from([(LABEL_PROJECT.to_string(), "other".to_string())]);
    f.ensure_overlay("other_net", &other).await.unwrap();
    let cfg = Object {
        name: "other_web-conf".into(),
        secret: false,
        data: b"listen 80".to_vec(),
    };
    let cfg_id = f.create_object(&cfg, &other).await.unwrap();
    let mut web = stack.services[0].clone();
    web.short = "web".into();
    web.files.clear();
    web.depends_on.clear();
    let mut labels = other.clone();
    labels.insert(LABEL_SERVICE.into(), "web".into());
    let no_objects = BTreeMap::from([(cfg.name.clone(), cfg_id)]);
    f.create_service(&ServiceCreate {
        name: "other_web".into(),
        def: &web,
        labels,
        network: "other_net".into(),
        object_ids: &no_objects,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let removed = ops::down(&f, PROJECT, Duration::from_secs(90))
        .await
        .unwrap();
    let mut services = removed.services.clone();
    services.sort();
    let mut expected: Vec<String> = shorts(&stack)
        .iter()
        .map(|s| format!("{PROJECT}_{s}"))
        .collect();
    expected.sort();
    assert_eq!(services, expected);
    assert_eq!(removed.networks, vec![stack.network.clone()]);
    assert_eq!(removed.left, Vec::<String>::new());
    let mut objects = removed.objects.clone();
    objects.sort();
    let mut ours: Vec<String> = stack.objects.iter().map(|o| o.name.clone()).collect();
    ours.sort();
    assert_eq!(objects, ours);

    assert_eq!(f.service_names(), vec!["other_web".to_string()]);
    assert_eq!(f.object_names(), vec![cfg.name.clone()]);
    assert_eq!(f.network_names(), vec!["other_net".to_string()]);
    assert_eq!(f.running("web"), vec![(1, "manager".to_string())]);
}

/// A node without its `cdq.slot` label: the node check names it with the command that
/// fixes it; an `up` that went ahead anyway would leave its members pending, and the
/// deadline error says no node could take them.
#[tokio::test(start_paused = true)]
async fn a_node_missing_its_slot_label_is_named() {
    let (s, stack) = render(None);
    let f = swarm(&stack);
    f.unlabel_node("worker1", SLOT_LABEL);
    let nodes = f.nodes().await.unwrap();
    let e = ops::check_nodes(&nodes, s.cluster.as_ref().unwrap(), Arch::Amd64).unwrap_err();
    assert_eq!(
        e.message,
        "the swarm is not ready for the stack: node `worker1` has no label `cdq.slot=2`"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("on the manager: docker node update --label-add cdq.slot=2 worker1")
    );
    assert_eq!(e.kind.exit_code(), 2);

    let err = up(&f, &s, &stack).await.unwrap_err();
    let m = format!("{err:#}");
    assert!(
        m.contains("`zookeeper2` did not become healthy in time"),
        "{m}"
    );
    assert!(
        m.contains("task 1 on `(unassigned)`: pending (desired running): no suitable node (scheduling constraints not satisfied on 3 nodes)"),
        "{m}"
    );
}
