//! The up and down orchestration (`cdq::ops`) against the fake engine with a paused clock:
//! observe -> plan -> converge, a second `up` that has nothing to do, the error a failed
//! service ends in, `down` in reverse dependency order, and `logs` masking passwords.
//! The same paths run on the real daemon in tests/stack_real.rs and tests/faults.rs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cdq::confighash::Overlay;
use cdq::engine::fake::{Behavior, FakeEngine};
use cdq::engine::{Engine, ImageInfo};
use cdq::error::Kind;
use cdq::execute::{Outcome, Phase, Progress};
use cdq::interpolate::Vars;
use cdq::ops::down::{self, NetworkRemoval, Removed};
use cdq::ops::logs::{self, Query};
use cdq::ops::up;
use cdq::project::{self, Project};
use cdq::secrets::{self, Scrubber};
use futures_util::StreamExt;

struct Quiet;
impl Progress for Quiet {
    fn phase(&self, _: &str, _: &Phase) {}
}

const HC: &str =
    "healthcheck: { test: [\"CMD\", \"true\"], interval: 1s, timeout: 1s, retries: 3 }";

fn project(dir: &Path) -> Project {
    let text = format!(
        "services:\n  db:\n    image: img\n    {HC}\n  cache:\n    image: img\n    {HC}\n  app:\n    image: img\n    {HC}\n    depends_on: {{ db: {{ condition: service_healthy }}, cache: {{ condition: service_healthy }} }}\n"
    );
    project::parse(&dir.join("c.yaml"), dir, &text, &Vars::default(), "demo").unwrap()
}

fn engine() -> Arc<FakeEngine> {
    let e = FakeEngine::new();
    e.add_image(
        "img",
        ImageInfo {
            id: "sha256:img".into(),
            arch: "amd64".into(),
            os: "linux".into(),
            user: String::new(),
            size: 1,
        },
    );
    Arc::new(e)
}

fn no_cancel() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

fn options() -> cdq::execute::Options {
    cdq::execute::Options {
        default_deadline: Duration::from_secs(30),
        ..Default::default()
    }
}

async fn converge(e: &Arc<FakeEngine>, p: &Project) -> Outcome {
    let observed = up::observe(&**e, p, &Overlay::new()).await.unwrap();
    up::converge(
        e.clone(),
        p,
        &observed,
        options(),
        Arc::new(Quiet),
        no_cancel(),
    )
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn up_converges_then_has_nothing_to_do_and_down_removes_in_reverse_order() {
    let d = tempfile::tempdir().unwrap();
    let p = project(d.path());
    let e = engine();
    e.behave("db", Behavior::HealthyAfter(Duration::from_secs(3)));

    let first = up::observe(&*e, &p, &Overlay::new()).await.unwrap();
    assert!(!first.is_current());
    assert_eq!(first.services(), ["cache", "db", "app"]);
    assert_eq!(converge(&e, &p).await, Outcome::Done);
    assert!(up::outcome_error(&Outcome::Done).is_none());

    let again = up::observe(&*e, &p, &Overlay::new()).await.unwrap();
    assert!(again.is_current(), "{}", again.plan);

    e.clear_calls();
    let mut seen = Vec::new();
    let mut note = |r: Removed| seen.push(r);
    let ours = down::remove_containers(&*e, "demo", Some(&p), Duration::from_secs(1), &mut note)
        .await
        .unwrap();
    down::remove_networks(&*e, "demo", &ours, &mut note)
        .await
        .unwrap();
    assert_eq!(seen[0], Removed::Container("demo-app-1".into()));
    assert_eq!(
        seen.last(),
        Some(&Removed::Network(
            "demo_default".into(),
            NetworkRemoval::Removed
        ))
    );
    assert_eq!(seen.len(), 4, "{seen:?}");
    let mut then: Vec<&Removed> = seen[1..3].iter().collect();
    then.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        then,
        [
            &Removed::Container("demo-cache-1".into()),
            &Removed::Container("demo-db-1".into())
        ],
        "what app depends on stops after it"
    );
    let stops = e.calls().iter().filter(|c| c.starts_with("stop ")).count();
    assert_eq!(stops, 3);
    assert!(e.list_containers("demo").await.unwrap().is_empty());
    assert!(e.list_networks("demo").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_service_that_exits_ends_up_in_exit_4_naming_it_and_blocking_its_dependent() {
    let d = tempfile::tempdir().unwrap();
    let p = project(d.path());
    let e = engine();
    e.behave("db", Behavior::ExitAfter(Duration::from_secs(2), 1));
    let outcome = converge(&e, &p).await;
    let Outcome::Failed(failures) = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failures.len(), 2, "{failures:?}");
    let err = up::outcome_error(&outcome).unwrap();
    assert_eq!(err.kind, Kind::Unhealthy);
    assert_eq!(err.message, "`db` did not become healthy");
    assert_eq!(
        err.hint.as_deref(),
        Some("see `cdq logs db`; fix the cause and run `cdq up` again (healthy services stay up)")
    );
    // The healthy one stays; a re-run plans only what is not healthy.
    let again = up::observe(&*e, &p, &Overlay::new()).await.unwrap();
    assert!(!again.is_current());
}

#[tokio::test(start_paused = true)]
async fn logs_mask_every_password_a_service_prints() {
    let d = tempfile::tempdir().unwrap();
    let (stored, _) = secrets::ensure(d.path(), &Default::default()).unwrap();
    let root = stored.get("MYSQL_ROOT_PASSWORD").to_string();
    let p = project(d.path());
    let e = engine();
    assert_eq!(converge(&e, &p).await, Outcome::Done);
    e.push_log("demo-db-1", &format!("[Note] root password is {root}"));
    let q = Query {
        services: vec!["db".into()],
        follow: false,
        tail: None,
        since: None,
    };
    let scrubber = Scrubber::for_deploy_dir(d.path()).unwrap();
    let lines: Vec<String> = logs::lines(&*e, "demo", &q, scrubber)
        .await
        .unwrap()
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert!(
        lines
            .iter()
            .any(|l| l == "db | [Note] root password is <redacted>"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains(&root)));

    let bad = Query {
        services: vec!["dbb".into()],
        ..q
    };
    let err = match logs::lines(&*e, "demo", &bad, Scrubber::default()).await {
        Err(e) => e,
        Ok(_) => panic!("an unknown service must be refused"),
    };
    assert_eq!(
        err.message,
        "no container for service `dbb` in project `demo`"
    );
    assert_eq!(err.hint.as_deref(), Some("did you mean `db`?"));
}
