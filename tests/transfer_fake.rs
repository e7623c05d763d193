//! `ops::transfer` against the fake engine with tokio's paused clock: which images a policy
//! pulls, parallel pulls for the asked platform, retries with doubling backoff on a dropped
//! connection (and none on a refusal), credentials sent per registry host, the failure
//! classified with the registry and its fix, and pushes that tag and copy into the registry
//! and report the manifest digest.

use std::sync::Mutex;
use std::time::Duration;

use cdq::engine::fake::{FakeEngine, Op};
use cdq::engine::{EngineError, ImageInfo, RegistryAuth, TransferEvent};
use cdq::error::{self, CdqError};
use cdq::ops::transfer::{self, Copy, Credentials, Policy, Reporter, Retry, Want};
use cdq::services::Arch;

fn info(id: &str, arch: &str) -> ImageInfo {
    ImageInfo {
        id: format!("sha256:{id:0<64}"),
        arch: arch.into(),
        os: "linux".into(),
        user: String::new(),
        size: 1000,
    }
}

fn want(service: &str, reference: &str) -> Want {
    Want {
        service: service.into(),
        reference: reference.into(),
    }
}

/// What the reporter saw, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Reporter for Seen {
    fn start(&self, r: &str, attempt: u32) {
        self.0.lock().unwrap().push(format!("start {r} {attempt}"));
    }
    fn event(&self, _: &str, _: &TransferEvent) {}
    fn retry(&self, r: &str, attempt: u32, delay: Duration, _: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("retry {r} {attempt} {}s", delay.as_secs()));
    }
    fn done(&self, r: &str) {
        self.0.lock().unwrap().push(format!("done {r}"));
    }
}

/// Credentials for one host.
struct One(&'static str, &'static str, &'static str);

impl Credentials for One {
    fn for_host(&self, host: &str) -> Result<Option<RegistryAuth>, CdqError> {
        Ok((host == self.0).then(|| RegistryAuth {
            server: host.into(),
            username: self.1.into(),
            password: self.2.into(),
            identity_token: None,
        }))
    }
}

const R: &str = "127.0.0.1:5000/cd/cdq-local/redis:2-amd64";
const M: &str = "127.0.0.1:5000/cd/cdq-local/mysql:2-amd64";

#[tokio::test(start_paused = true)]
async fn missing_pulls_what_is_absent_or_of_the_other_arch_never_pulls_nothing() {
    let e = FakeEngine::new();
    e.add_image(R, info("a", "amd64"));
    e.add_image(M, info("b", "arm64"));
    let wants = [
        want("redis", R),
        want("mysql", M),
        want("kafka", "127.0.0.1:5000/cd/k:1"),
    ];
    let todo = transfer::to_pull(&e, &wants, Arch::Amd64, Policy::Missing)
        .await
        .unwrap();
    let refs: Vec<&str> = todo.iter().map(|w| w.reference.as_str()).collect();
    assert_eq!(refs, [M, "127.0.0.1:5000/cd/k:1"]);
    assert_eq!(
        transfer::to_pull(&e, &wants, Arch::Amd64, Policy::Always)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        transfer::to_pull(&e, &wants, Arch::Amd64, Policy::Never)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn pulls_run_for_the_asked_platform_with_the_hosts_credentials() {
    let e = FakeEngine::new();
    e.require_auth("127.0.0.1:5000", "cd", "pw");
    e.registry_put(R, info("a", "amd64"));
    e.registry_put(R, info("c", "arm64"));
    e.registry_put(M, info("b", "arm64"));
    let seen = Seen::default();
    transfer::pull(
        &e,
        &[want("redis", R), want("mysql", M)],
        Arch::Arm64,
        &One("127.0.0.1:5000", "cd", "pw"),
        Retry::default(),
        &seen,
        "`--registry`",
    )
    .await
    .unwrap();
    use cdq::engine::Engine;
    assert_eq!(e.image(R).await.unwrap().unwrap().id, info("c", "arm64").id);
    assert_eq!(e.image(M).await.unwrap().unwrap().arch, "arm64");
    let seen = seen.0.lock().unwrap().clone();
    assert!(seen.contains(&format!("done {R}")) && seen.contains(&format!("done {M}")));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_retried_with_doubling_backoff() {
    let e = FakeEngine::new();
    e.registry_put(R, info("a", "amd64"));
    for _ in 0..2 {
        e.fail_next(
            Op::Pull,
            EngineError::Registry {
                status: None,
                message: "unexpected EOF".into(),
            },
        );
    }
    let seen = Seen::default();
    let t0 = tokio::time::Instant::now();
    transfer::pull(
        &e,
        &[want("redis", R)],
        Arch::Amd64,
        &One("-", "", ""),
        Retry::default(),
        &seen,
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            format!("start {R} 1"),
            format!("retry {R} 2 1s"),
            format!("start {R} 2"),
            format!("retry {R} 3 2s"),
            format!("start {R} 3"),
            format!("done {R}"),
        ]
    );
    // The paused clock advanced exactly by the backoff: 1s + 2s.
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert_eq!(
        e.calls().iter().filter(|c| c.starts_with("pull ")).count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_give_up_after_the_attempts_with_the_fix() {
    let e = FakeEngine::new();
    e.registry_put(R, info("a", "amd64"));
    for _ in 0..4 {
        e.fail_next(
            Op::Pull,
            EngineError::Registry {
                status: None,
                message: "read: connection reset by peer".into(),
            },
        );
    }
    let err = transfer::pull(
        &e,
        &[want("redis", R)],
        Arch::Amd64,
        &One("-", "", ""),
        Retry::default(),
        &Seen::default(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(error::exit_code(&err), 7);
    assert_eq!(
        error::format(&err),
        format!(
            "error: the connection to the registry `127.0.0.1:5000` kept failing during the pull of `{R}`\ncaused by: read: connection reset by peer\nhint: run cdq again (finished layers are kept); if it persists, check the network to the registry"
        )
    );
    assert_eq!(e.calls().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_not_retried_and_names_docker_login() {
    let e = FakeEngine::new();
    e.require_auth("127.0.0.1:5000", "cd", "pw");
    e.registry_put(R, info("a", "amd64"));
    let err = transfer::pull(
        &e,
        &[want("redis", R)],
        Arch::Amd64,
        &One("127.0.0.1:5000", "cd", "hunter2-bad"),
        Retry::default(),
        &Seen::default(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(error::exit_code(&err), 7);
    let text = error::format(&err);
    assert!(
        text.contains("`127.0.0.1:5000`") && text.contains("docker login 127.0.0.1:5000"),
        "{text}"
    );
    assert!(!text.contains("hunter2-bad"), "{text}");
    assert_eq!(e.calls().len(), 1, "no retry on a 401");
}

#[tokio::test(start_paused = true)]
async fn a_missing_arch_names_the_arches_the_registry_has() {
    let e = FakeEngine::new();
    e.registry_put(R, info("a", "amd64"));
    let err = transfer::pull(
        &e,
        &[want("redis", R)],
        Arch::Arm64,
        &One("-", "", ""),
        Retry::default(),
        &Seen::default(),
        "",
    )
    .await
    .unwrap_err();
    assert!(
        error::format(&err).starts_with(&format!(
            "error: `{R}` on the registry `127.0.0.1:5000` has no linux/arm64 variant (it has: linux/amd64)"
        )),
        "{}",
        error::format(&err)
    );
}

#[tokio::test(start_paused = true)]
async fn push_tags_and_copies_each_image_and_refuses_one_of_the_other_arch() {
    let e = FakeEngine::new();
    e.add_image("cdq-local/redis:2-amd64", info("a", "amd64"));
    let pushed = transfer::push(
        &e,
        &[Copy {
            service: "redis".into(),
            source: "cdq-local/redis:2-amd64".into(),
            target: R.into(),
        }],
        Arch::Amd64,
        &One("-", "", ""),
        Retry::default(),
        &Seen::default(),
        "",
    )
    .await
    .unwrap();
    // The digest comes from the push's closing message, the platform from the image.
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].reference, R);
    assert_eq!(
        (pushed[0].os.as_str(), pushed[0].arch.as_str()),
        ("linux", "amd64")
    );
    let digest = pushed[0].digest.as_deref().expect("a digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        e.registry_get(R),
        [("amd64".to_string(), info("a", "amd64"))]
    );
    assert_eq!(
        e.calls(),
        [
            format!("tag cdq-local/redis:2-amd64 {R}"),
            format!("push {R}")
        ]
    );

    e.add_image("cdq-local/redis:2-arm64", info("c", "arm64"));
    let err = transfer::push(
        &e,
        &[Copy {
            service: "redis".into(),
            source: "cdq-local/redis:2-arm64".into(),
            target: R.into(),
        }],
        Arch::Amd64,
        &One("-", "", ""),
        Retry::default(),
        &Seen::default(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(
        error::format(&err),
        "error: `cdq-local/redis:2-arm64` on this host is built for arm64, not amd64\nhint: push the arm64 images with `--arch arm64`, or load the amd64 ones first"
    );
}
