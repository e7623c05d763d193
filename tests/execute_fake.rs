//! The executor's logic against the in-memory engine with tokio's paused clock: what starts
//! when, what fails how fast, and what a re-run touches. Seconds of simulated time cost
//! nothing here; the same behaviours on real containers are in `stack_real.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdq::confighash::{self, Overlay};
use cdq::engine::fake::{Behavior, FakeEngine};
use cdq::engine::{Engine, EngineError, ImageInfo};
use cdq::execute::{self, Options, Outcome, Phase, Progress, Reason};
use cdq::interpolate::Vars;
use cdq::plan;
use cdq::project::{self, Project};
use tokio::time::Instant;

#[derive(Default)]
struct Record {
    start: Option<Instant>,
    events: Mutex<Vec<(Duration, String, Phase)>>,
}

impl Progress for Record {
    fn phase(&self, service: &str, phase: &Phase) {
        let t = self.start.expect("set").elapsed();
        self.events
            .lock()
            .unwrap()
            .push((t, service.to_string(), phase.clone()));
    }
}

impl Record {
    fn first(&self, service: &str, pred: impl Fn(&Phase) -> bool) -> Option<Duration> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s, p)| s == service && pred(p))
            .map(|(t, _, _)| *t)
    }
}

fn project(dir: &Path, text: &str) -> Project {
    project::parse(&dir.join("c.yaml"), dir, text, &Vars::default(), "demo").unwrap()
}

fn engine_with(images: &[&str], user: &str) -> FakeEngine {
    let e = FakeEngine::new();
    for i in images {
        e.add_image(
            i,
            ImageInfo {
                id: format!("sha256:{i}"),
                arch: "amd64".into(),
                os: "linux".into(),
                user: user.into(),
                size: 1,
            },
        );
    }
    e
}

async fn run(
    e: &FakeEngine,
    p: &Project,
    opts: Options,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> (Result<Outcome, EngineError>, Arc<Record>) {
    let hashes = confighash::project_hashes(p, &Overlay::new()).unwrap();
    let observed = e.list_containers(&p.name).await.unwrap();
    let networks = e.list_networks(&p.name).await.unwrap();
    let pl = plan::plan(p, &hashes, &observed, &networks);
    let rec = Arc::new(Record {
        start: Some(Instant::now()),
        ..Default::default()
    });
    let r = execute::execute(
        Arc::new(e.clone()),
        p,
        &pl,
        &hashes,
        &observed,
        opts,
        rec.clone(),
        cancel,
    )
    .await;
    (r, rec)
}

fn no_cancel() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

const HC: &str =
    "healthcheck: { test: [\"CMD\", \"true\"], interval: 1s, timeout: 1s, retries: 3 }";

#[tokio::test(start_paused = true)]
async fn a_service_starts_when_its_own_dependencies_are_healthy() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!(
            "services:\n  fast:\n    image: img\n    {HC}\n  slow:\n    image: img\n    {HC}\n  child:\n    image: img\n    {HC}\n    depends_on: {{ fast: {{ condition: service_healthy }} }}\n"
        ),
    );
    let e = engine_with(&["img"], "");
    e.behave("slow", Behavior::HealthyAfter(Duration::from_secs(10)));
    let (r, rec) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let child_created = rec.first("child", |p| *p == Phase::Starting).unwrap();
    let slow_healthy = rec
        .first("slow", |p| matches!(p, Phase::Healthy { .. }))
        .unwrap();
    assert!(
        child_created < Duration::from_secs(3),
        "child waited for the whole level: {child_created:?}"
    );
    assert!(slow_healthy >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn an_exit_fails_at_once_and_blocks_its_dependents() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!(
            "services:\n  db:\n    image: img\n    {HC}\n  app:\n    image: img\n    {HC}\n    depends_on: {{ db: {{ condition: service_healthy }} }}\n  other:\n    image: img\n    {HC}\n"
        ),
    );
    let e = engine_with(&["img"], "");
    e.behave("db", Behavior::ExitAfter(Duration::from_secs(2), 3));
    let (r, rec) = run(&e, &p, Options::default(), no_cancel()).await;
    let Outcome::Failed(f) = r.unwrap() else {
        panic!("expected a failure")
    };
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].service, "db");
    assert_eq!(
        f[0].reason,
        Reason::Exited {
            code: Some(3),
            oom: false
        }
    );
    assert_eq!(f[1].service, "app");
    assert_eq!(
        f[1].reason,
        Reason::Blocked {
            dependency: "db".into()
        }
    );
    let failed_at = rec
        .first("db", |p| matches!(p, Phase::Failed { .. }))
        .unwrap();
    assert!(
        failed_at < Duration::from_secs(3),
        "an exit must fail at once, not at the deadline: {failed_at:?}"
    );
    // The healthy independent service stays up; the blocked one was created (creation does
    // not wait for dependencies) but never started.
    assert!(
        rec.first("other", |p| matches!(p, Phase::Healthy { .. }))
            .is_some()
    );
    let containers = e.list_containers("demo").await.unwrap();
    let app = containers
        .iter()
        .find(|c| c.service() == Some("app"))
        .unwrap();
    assert_eq!(app.state, cdq::engine::RunState::Created);
}

#[tokio::test(start_paused = true)]
async fn never_healthy_times_out_at_a_start_period_aware_deadline() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        "services:\n  jvm:\n    image: img\n    healthcheck: { test: [\"CMD\", \"false\"], interval: 2s, timeout: 1s, retries: 3, start_period: 30s }\n  quick:\n    image: img\n    healthcheck: { test: [\"CMD\", \"false\"], interval: 1s, timeout: 1s, retries: 3 }\n",
    );
    let e = engine_with(&["img"], "");
    e.behave(
        "jvm",
        Behavior::NeverHealthy {
            probe_output: "connection refused".into(),
        },
    );
    e.behave(
        "quick",
        Behavior::NeverHealthy {
            probe_output: "nope".into(),
        },
    );
    let opts = Options {
        default_deadline: Duration::from_secs(10),
        ..Options::default()
    };
    let (r, _) = run(&e, &p, opts, no_cancel()).await;
    let Outcome::Failed(f) = r.unwrap() else {
        panic!("expected a failure")
    };
    let by: BTreeMap<&str, &execute::Failure> = f.iter().map(|x| (x.service.as_str(), x)).collect();
    // 30s start_period + 2 probes of 2s + 1s timeout beats the 10s deadline.
    assert_eq!(
        by["jvm"].reason,
        Reason::Timeout {
            after: Duration::from_secs(35)
        }
    );
    assert_eq!(
        by["quick"].reason,
        Reason::Timeout {
            after: Duration::from_secs(10)
        }
    );
    assert_eq!(by["quick"].last_probe.as_deref(), Some("nope"));
}

#[tokio::test(start_paused = true)]
async fn a_rerun_touches_nothing_and_a_changed_config_recreates_only_its_service() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("conf")).unwrap();
    std::fs::write(d.path().join("conf/a.conf"), "v=1").unwrap();
    let text = format!(
        "services:\n  a:\n    image: img\n    {HC}\n    volumes: [\"./conf/a.conf:/etc/a.conf:ro\"]\n  b:\n    image: img\n    {HC}\n    depends_on: {{ a: {{ condition: service_healthy }} }}\n"
    );
    let p = project(d.path(), &text);
    let e = engine_with(&["img"], "");
    assert_eq!(
        run(&e, &p, Options::default(), no_cancel())
            .await
            .0
            .unwrap(),
        Outcome::Done
    );

    e.clear_calls();
    let hashes = confighash::project_hashes(&p, &Overlay::new()).unwrap();
    let observed = e.list_containers("demo").await.unwrap();
    let pl = plan::plan(
        &p,
        &hashes,
        &observed,
        &e.list_networks("demo").await.unwrap(),
    );
    assert!(pl.is_noop(), "{pl}");
    let (r, _) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    assert_eq!(
        e.calls(),
        Vec::<String>::new(),
        "a re-run of an unchanged stack must not touch the engine"
    );

    std::fs::write(d.path().join("conf/a.conf"), "v=2").unwrap();
    let (r, _) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let calls = e.calls();
    assert!(calls.iter().any(|c| c == "create demo-a-1"), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.contains("demo-b-1")),
        "b must not be touched: {calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_stops_waiting_and_leaves_containers() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  slow:\n    image: img\n    {HC}\n"),
    );
    let e = engine_with(&["img"], "");
    e.behave("slow", Behavior::HealthyAfter(Duration::from_secs(60)));
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(true).unwrap();
        std::mem::forget(tx);
    });
    let (r, _) = run(&e, &p, Options::default(), rx).await;
    assert_eq!(
        r.unwrap(),
        Outcome::Interrupted {
            waiting: vec!["slow".into()],
            not_started: vec![],
        }
    );
    assert!(
        !e.calls()
            .iter()
            .any(|c| c.starts_with("stop") || c.starts_with("remove")),
        "{:?}",
        e.calls()
    );
    assert_eq!(e.list_containers("demo").await.unwrap().len(), 1);
}

/// A signal before the executor's first step (while `up` planned): nothing is created,
/// no network either, and the outcome says so (no service waiting, none created).
#[tokio::test(start_paused = true)]
async fn a_signal_before_the_first_step_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  a:\n    image: img\n    {HC}\n"),
    );
    let e = engine_with(&["img"], "");
    let (tx, rx) = tokio::sync::watch::channel(true);
    std::mem::forget(tx);
    let (r, _) = run(&e, &p, Options::default(), rx).await;
    assert_eq!(
        r.unwrap(),
        Outcome::Interrupted {
            waiting: vec![],
            not_started: vec![],
        }
    );
    assert!(
        !e.calls()
            .iter()
            .any(|c| c.starts_with("create") || c.starts_with("ensure_network")),
        "{:?}",
        e.calls()
    );
    assert!(e.list_containers("demo").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn losing_the_daemon_mid_up_is_an_engine_error() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!(
            "services:\n  a:\n    image: img\n    {HC}\n  b:\n    image: img\n    {HC}\n    depends_on: {{ a: {{ condition: service_healthy }} }}\n"
        ),
    );
    let e = engine_with(&["img"], "");
    e.behave("a", Behavior::HealthyAfter(Duration::from_secs(20)));
    let lost = e.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        lost.set_unreachable(true);
    });
    let (r, _) = run(&e, &p, Options::default(), no_cancel()).await;
    assert!(matches!(r, Err(EngineError::Unreachable { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn data_directories_are_created_for_the_image_user() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  a:\n    image: img\n    {HC}\n    volumes: [\"./data/a:/data\"]\n"),
    );
    let e = engine_with(&["img"], "4321:4322");
    let (r, _) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let meta = std::fs::metadata(d.path().join("data/a")).unwrap();
    use std::os::unix::fs::MetadataExt;
    if cdq::host::is_root() {
        assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
    } else {
        assert!(
            e.calls().iter().any(|c| c.starts_with("run_oneoff")),
            "{:?}",
            e.calls()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_fails_that_service_naming_the_image() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  a:\n    image: nowhere:1\n    {HC}\n"),
    );
    let e = engine_with(&[], "");
    let (r, _) = run(&e, &p, Options::default(), no_cancel()).await;
    let Outcome::Failed(f) = r.unwrap() else {
        panic!("expected a failure")
    };
    assert_eq!(
        f[0].reason,
        Reason::Engine {
            message: "image `nowhere:1` is not on this host".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_without_healthcheck_that_exits_at_once_fails() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        "services:\n  quitter:\n    image: img\n  runner:\n    image: img\n",
    );
    let e = engine_with(&["img"], "");
    e.behave(
        "quitter",
        Behavior::ExitAfter(Duration::from_millis(200), 4),
    );
    let (r, rec) = run(&e, &p, Options::default(), no_cancel()).await;
    let Outcome::Failed(f) = r.unwrap() else {
        panic!("an exited service must not count as started")
    };
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].reason,
        Reason::Exited {
            code: Some(4),
            oom: false
        }
    );
    assert!(rec.first("runner", |p| *p == Phase::Running).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_leftover_temp_data_dir_is_redone_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    // What a cdq killed between mkdir and chown leaves behind.
    std::fs::create_dir_all(d.path().join("data/.a.cdq-new")).unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  a:\n    image: img\n    {HC}\n    volumes: [\"./data/a:/data\"]\n"),
    );
    let e = engine_with(&["img"], "4321");
    assert_eq!(
        run(&e, &p, Options::default(), no_cancel())
            .await
            .0
            .unwrap(),
        Outcome::Done
    );
    assert!(d.path().join("data/a").is_dir());
    assert!(!d.path().join("data/.a.cdq-new").exists());
    if cdq::host::is_root() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(d.path().join("data/a")).unwrap().uid(),
            4321
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cdq_probes_a_starting_service_itself_instead_of_waiting_an_interval() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        "services:\n  a:\n    image: img\n    healthcheck: { test: [\"CMD\", \"true\"], interval: 10s, timeout: 1s, retries: 3 }\n",
    );
    let e = engine_with(&["img"], "");
    let (r, rec) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let healthy = rec
        .first("a", |p| matches!(p, Phase::Healthy { .. }))
        .unwrap();
    assert!(
        healthy < Duration::from_secs(1),
        "waited for the daemon's first probe: {healthy:?}"
    );
}

/// A stale endpoint named like a container (the daemon kept it after a failed `down`) fails
/// the start with "already exists in network": cdq removes its never-started container,
/// removes the endpoint by force, creates the container again and starts it.
#[tokio::test(start_paused = true)]
async fn a_stale_endpoint_of_the_same_name_is_cleared_and_the_service_starts() {
    let d = tempfile::tempdir().unwrap();
    let p = project(
        d.path(),
        &format!("services:\n  db:\n    image: img\n    {HC}\n  app:\n    image: img\n    {HC}\n"),
    );
    let e = engine_with(&["img"], "");
    let labels = BTreeMap::from([("io.cdq.project".to_string(), "demo".to_string())]);
    e.ensure_network("demo_default", &labels).await.unwrap();
    e.leave_stale_endpoint("demo_default", "demo-db-1");
    e.clear_calls();
    let (r, rec) = run(&e, &p, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    assert!(e.stale_endpoints("demo_default").is_empty());
    assert!(
        rec.first("db", |p| matches!(p, Phase::Healthy { .. }))
            .is_some()
    );
    // Only `db` needed the recovery, and the endpoint went after its container did.
    let calls = e.calls();
    let at = |c: &str| calls.iter().position(|x| x.starts_with(c));
    let fd = at("force_disconnect demo_default demo-db-1").expect("endpoint removed");
    let creates: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == "create demo-db-1")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(creates.len(), 2, "{calls:?}");
    assert!(creates[0] < fd && fd < creates[1], "{calls:?}");
    assert!(at("remove ").is_some_and(|r| r < fd), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("force_disconnect"))
            .count(),
        1,
        "{calls:?}"
    );
    let listed = e.list_containers("demo").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

/// An upgrade whose new container never becomes healthy: the previous container (kept,
/// stopped, under another name) is put back under its own name, running and healthy, with
/// the same id, image and config; the failure says so.
#[tokio::test(start_paused = true)]
async fn a_failed_upgrade_rolls_back_to_the_previous_container() {
    let d = tempfile::tempdir().unwrap();
    let v1 = project(
        d.path(),
        &format!(
            "services:\n  server:\n    image: img:1\n    {HC}\n    environment: {{ A: one }}\n"
        ),
    );
    let e = engine_with(&["img:1", "img:2"], "");
    let (r, _) = run(&e, &v1, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let before = e.list_containers("demo").await.unwrap();
    assert_eq!(before.len(), 1);
    let spec_before = e.created_spec(&before[0].id).unwrap();

    for (what, behavior) in [
        ("exits", Behavior::ExitAfter(Duration::from_secs(2), 1)),
        (
            "never healthy",
            Behavior::NeverHealthy {
                probe_output: "connection refused".into(),
            },
        ),
    ] {
        e.behave_image("img:2", behavior);
        let v2 = project(
            d.path(),
            &format!(
                "services:\n  server:\n    image: img:2\n    {HC}\n    environment: {{ A: one }}\n"
            ),
        );
        let (r, rec) = run(&e, &v2, Options::default(), no_cancel()).await;
        let Outcome::Failed(f) = r.unwrap() else {
            panic!("{what}: the upgrade must fail")
        };
        assert_eq!(f.len(), 1, "{what}: {f:?}");
        assert_eq!(
            f[0].rollback,
            Some(execute::Rollback::Restored {
                image: "img:1".into()
            }),
            "{what}"
        );
        let after = e.list_containers("demo").await.unwrap();
        assert_eq!(
            after.len(),
            1,
            "{what}: only the previous container is left: {after:?}"
        );
        let c = &after[0];
        assert_eq!(
            (c.id.as_str(), c.name.as_str()),
            (before[0].id.as_str(), "demo-server-1")
        );
        assert_eq!(c.image, "img:1");
        assert_eq!(c.state, cdq::engine::RunState::Running);
        assert_eq!(c.health, Some(cdq::engine::Health::Healthy), "{what}");
        assert_eq!(
            c.labels, before[0].labels,
            "{what}: same config hash and labels"
        );
        assert_eq!(e.created_spec(&c.id).unwrap(), spec_before);
        assert!(
            rec.first("server", |p| *p == Phase::RolledBack { healthy: true })
                .is_some(),
            "{what}"
        );
    }
    // An image that is not on the host: the create fails and the previous container is back.
    let v3 = project(
        d.path(),
        &format!(
            "services:\n  server:\n    image: img:3\n    {HC}\n    environment: {{ A: one }}\n"
        ),
    );
    let (r, _) = run(&e, &v3, Options::default(), no_cancel()).await;
    let Outcome::Failed(f) = r.unwrap() else {
        panic!("a missing image must fail")
    };
    assert!(
        matches!(f[0].rollback, Some(execute::Rollback::Restored { .. })),
        "{f:?}"
    );
    let after = e.list_containers("demo").await.unwrap();
    assert_eq!(
        (after.len(), after[0].id.as_str()),
        (1, before[0].id.as_str())
    );
    assert_eq!(after[0].name, "demo-server-1");

    // A good upgrade replaces it and the previous container goes.
    e.behave_image("img:2", Behavior::HealthyAfter(Duration::ZERO));
    let v2 = project(
        d.path(),
        &format!(
            "services:\n  server:\n    image: img:2\n    {HC}\n    environment: {{ A: one }}\n"
        ),
    );
    let (r, _) = run(&e, &v2, Options::default(), no_cancel()).await;
    assert_eq!(r.unwrap(), Outcome::Done);
    let after = e.list_containers("demo").await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (after[0].image.as_str(), after[0].name.as_str()),
        ("img:2", "demo-server-1")
    );
}
