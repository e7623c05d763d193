//! Every signal in every phase (issue 18.3): SIGINT, SIGTERM and SIGHUP sent to the built
//! binary while `up`, `down`, `down --purge`, `bundle load` and `pull` are in a phase held
//! open by something the test controls — an engine that never answers ([`mute`]), a
//! request held at a Docker socket of the test's own ([`Gate`]), a container that ignores
//! SIGTERM, a healthcheck that waits for a file — never a sleep: the signal goes once the
//! phase is observably under way. Each test asserts the exit code (128 + n), the message
//! naming the signal and the phase, what is left, and that a re-run converges without
//! redoing what was fine. One helper per phase, one `#[test]` per signal and phase.
//!
//! A signal while `down --purge` deletes is proved on the purge itself
//! (`ops::down::tests::a_stopped_purge_finishes_the_deletion_under_way_and_the_rerun_the_rest`):
//! a deletion takes microseconds, so no outside stall can hold one open.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::stall::{Gate, mute};
use common::{
    Out, Sandbox, TWO_REDIS as TWO, compose, container, docker, docker_ok, free_ports, run,
    up_compose as up,
};

const KIT: &str = "cdq-local/redis:2-amd64";
const LONG: Duration = Duration::from_secs(120);

fn sandbox(test: &str) -> Sandbox {
    let s = Sandbox::new("cdqsg", test);
    s.write_config("");
    s
}

/// A sandbox that renders the kit's redis alone (`--images local`, or the kit's references
/// under `--registry PREFIX`), with free ports.
fn rendered(test: &str, registry: Option<&str>) -> Sandbox {
    let mut flags = vec!["--images", "local"];
    if let Some(r) = registry {
        flags.extend(["--registry", r]);
    }
    let s = Sandbox::new("cdqsg", test).flags(&flags).down_on_drop("5");
    let [server, ucenter, grafana, kafka] = free_ports();
    s.write_config(&format!(
        "services: [redis]\nports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka} }}\n"
    ));
    s
}

const UP_RENDERED: [&str; 6] = ["up", "--ip", "127.0.0.1", "--progress", "plain", "--yes"];

fn inspect(name: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, name])
}

fn image_id(reference: &str) -> Option<String> {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    (o.code == Some(0)).then(|| o.stdout.trim().to_string())
}

fn kill(pid: u32, sig: &str) {
    let k = run(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]));
    assert_eq!(k.code, Some(0), "{k}");
}

fn code_of(sig: &str) -> i32 {
    128 + match sig {
        "HUP" => 1,
        "INT" => 2,
        "TERM" => 15,
        _ => unreachable!(),
    }
}

/// Asserts exit 128+n and `error: interrupted by SIG<sig> while <doing>` followed by
/// `hint: <hint>` (the start of it).
fn assert_interrupted(o: &Out, sig: &str, doing: &str, hint: &str) {
    assert_eq!(o.code, Some(code_of(sig)), "{o}");
    let want = format!("error: interrupted by SIG{sig} while {doing}\nhint: {hint}");
    assert!(o.stderr.contains(&want), "wanted {want:?} in: {o}");
}

/// Runs `cdq ARGS` on a [`Gate`] holding the first request matching `hold`, sends `sig`
/// once it is held and returns the finished run. With `release`, the held request goes on
/// to the daemon once cdq has said it will stop (a Docker request under way completes).
fn signal_when_held(
    s: &Sandbox,
    args: &[&str],
    hold: &str,
    sig: &str,
    release: bool,
) -> (Out, Gate) {
    let gate = Gate::new(s.root(), hold);
    let host = gate.docker_host();
    let mut r = s.spawn_env(args, &[("DOCKER_HOST", &host)]);
    gate.wait_held(LONG);
    kill(r.pid(), sig);
    if release {
        r.wait_for_stderr(&format!("SIG{sig}: stopping at the next safe point"), LONG);
        gate.release();
    }
    (r.wait(), gate)
}

/// What is in the deploy directory (nothing, if it was never made).
fn deploy_files(s: &Sandbox) -> Vec<String> {
    std::fs::read_dir(s.dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---- up ---------------------------------------------------------------------------------

/// A service healthy only once the test says so (`docker exec … touch /tmp/ok`).
const WAITS: &str = r#"services:
  slow:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
      timeout: 1s
      retries: 1
  after:
    image: cdq-local/redis:2-amd64
    depends_on: { slow: { condition: service_healthy } }
"#;

/// The signal while `up` waits for health (`after` is created, not started): exit
/// 128+n, which signal, what is left, and a re-run that converges without recreating.
fn up_interrupted_while_waiting(sig: &str) {
    let s = sandbox(&format!("upwait{}", sig.to_lowercase()));
    let f = compose(&s, "app", WAITS);
    let mut r = s.spawn(&[
        "up",
        "--compose",
        &f,
        "--progress",
        "plain",
        "--deadline",
        "300s",
    ]);
    r.wait_for_stderr("slow: started, waiting for healthy", LONG);
    kill(r.pid(), sig);
    let o = r.wait();
    assert_interrupted(
        &o,
        sig,
        "waiting for after, slow",
        "containers were left as they are; run `cdq up` again to resume",
    );
    assert_eq!(
        inspect(&container(&s, "after"), "{{.State.Status}}"),
        "created"
    );

    docker_ok(&["exec", &container(&s, "slow"), "touch", "/tmp/ok"]);
    let again = up(&s, &f, &[]);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(!again.stderr.contains("recreate"), "{again}");
    assert_eq!(s.cdq(&["status", "--compose", &f]).code, Some(0));
}

#[test]
fn sigint_while_up_waits() {
    up_interrupted_while_waiting("INT");
}
#[test]
fn sigterm_while_up_waits() {
    up_interrupted_while_waiting("TERM");
}
#[test]
fn sighup_while_up_waits() {
    up_interrupted_while_waiting("HUP");
}

/// The signal while `up` runs preflight (its first question to the daemon, `/info`, held):
/// the phase, nothing written, nothing created; the re-run reaches healthy.
fn up_interrupted_in_preflight(sig: &str) {
    let s = rendered(&format!("uppre{}", sig.to_lowercase()), None);
    let (o, gate) = signal_when_held(&s, &UP_RENDERED, "/info", sig, false);
    assert_interrupted(
        &o,
        sig,
        "checking the host (preflight)",
        "nothing was changed; run `cdq up` again",
    );
    assert!(
        !gate.requests().iter().any(|r| r.starts_with("POST")),
        "nothing was asked of the daemon but questions: {:#?}",
        gate.requests()
    );
    assert_eq!(deploy_files(&s), Vec::<String>::new(), "nothing written");
    assert!(s.labelled().is_empty(), "nothing created");
    let again = s.cdq(&UP_RENDERED);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert_eq!(s.cdq(&["status"]).code, Some(0));
}

#[test]
fn sigint_while_up_checks_the_host() {
    up_interrupted_in_preflight("INT");
}
#[test]
fn sigterm_while_up_checks_the_host() {
    up_interrupted_in_preflight("TERM");
}
#[test]
fn sighup_while_up_checks_the_host() {
    up_interrupted_in_preflight("HUP");
}

/// The signal while `up` observes the stack to plan (`up --compose`, its container listing
/// held): the phase, nothing created; the re-run reaches healthy.
fn up_interrupted_while_planning(sig: &str) {
    let s = sandbox(&format!("upplan{}", sig.to_lowercase()));
    let f = compose(&s, "app", TWO);
    let args = ["up", "--compose", &f, "--progress", "plain"];
    let (o, _gate) = signal_when_held(&s, &args, "/containers/json", sig, false);
    assert_interrupted(
        &o,
        sig,
        "planning",
        "nothing was changed; run `cdq up` again",
    );
    assert!(s.labelled().is_empty(), "nothing created");
    let again = up(&s, &f, &[]);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert_eq!(s.cdq(&["status", "--compose", &f]).code, Some(0));
}

#[test]
fn sigint_while_up_plans() {
    up_interrupted_while_planning("INT");
}
#[test]
fn sigterm_while_up_plans() {
    up_interrupted_while_planning("TERM");
}
#[test]
fn sighup_while_up_plans() {
    up_interrupted_while_planning("HUP");
}

const ONE: &str = r#"services:
  a:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 2s
      retries: 3
"#;

/// The signal while `up` creates a container (the create held until cdq has said it will
/// stop, then let through): the create completes and the container is not started; the
/// re-run starts that same container (same id) and reaches healthy.
fn up_interrupted_while_creating(sig: &str) {
    let s = sandbox(&format!("upcreate{}", sig.to_lowercase()));
    let f = compose(&s, "app", ONE);
    let args = ["up", "--compose", &f, "--progress", "plain"];
    let (o, gate) = signal_when_held(&s, &args, "/containers/create", sig, true);
    assert_interrupted(
        &o,
        sig,
        "creating the containers",
        "`a` is created and not started; containers were left as they are; run `cdq up` again to resume",
    );
    assert!(
        !gate.requests().iter().any(|r| r.contains("/start")),
        "no container was started: {:#?}",
        gate.requests()
    );
    let a = container(&s, "a");
    assert_eq!(inspect(&a, "{{.State.Status}}"), "created");
    let id = inspect(&a, "{{.Id}}");
    let again = up(&s, &f, &[]);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(!again.stderr.contains("recreate"), "{again}");
    assert_eq!(inspect(&a, "{{.Id}}"), id, "the same container, started");
    assert_eq!(inspect(&a, "{{.State.Health.Status}}"), "healthy");
}

#[test]
fn sigint_while_up_creates() {
    up_interrupted_while_creating("INT");
}
#[test]
fn sigterm_while_up_creates() {
    up_interrupted_while_creating("TERM");
}
#[test]
fn sighup_while_up_creates() {
    up_interrupted_while_creating("HUP");
}

// ---- a registry to pull from -------------------------------------------------------------

/// One `docker-registry` on 127.0.0.1 for this test process (no auth: Docker trusts
/// loopback registries over plain HTTP), holding the kit's redis once; each test pushes it
/// again under a repository of its own (the blobs are mounted, not uploaded). A shell
/// watchdog stops the registry and removes its storage when this process ends and closes
/// its stdin.
struct SharedRegistry {
    port: u16,
    _watchdog: Child,
    _stdin: ChildStdin,
}

fn registry() -> &'static SharedRegistry {
    static R: OnceLock<SharedRegistry> = OnceLock::new();
    R.get_or_init(|| {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "`/usr/bin/docker-registry` is missing\nhint: scripts/setup.sh installs Debian's docker-registry"
        );
        let dir = tempfile::Builder::new()
            .prefix("cdqsg-registry-")
            .tempdir()
            .unwrap()
            .keep();
        let [port] = free_ports::<1>();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: 127.0.0.1:{port}, secret: cdq-test }}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                "\"$1\" serve \"$2\" 2>\"$3/registry.log\" & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p 2>/dev/null; rm -rf \"$3\"",
                "watchdog",
            ])
            .arg(bin)
            .arg(&config)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let stdin = watchdog.stdin.take().unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the registry did not listen on {port}: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let r = SharedRegistry {
            port,
            _watchdog: watchdog,
            _stdin: stdin,
        };
        let base = format!("127.0.0.1:{port}/base/{KIT}");
        push(&base);
        r
    })
}

/// Tags the kit image as `reference`, pushes it and removes the local tag again.
fn push(reference: &str) {
    docker_ok(&["tag", KIT, reference]);
    let o = docker(&["push", reference]);
    assert_eq!(o.code, Some(0), "{o}");
    docker_ok(&["rmi", reference]);
}

/// The kit's redis on the shared registry under a prefix of this test's own, absent here:
/// the rendered reference under `--registry <prefix>`. Untagged again on drop.
struct Pullable {
    prefix: String,
    reference: String,
}

impl Pullable {
    fn new(test: &str) -> Pullable {
        let prefix = format!(
            "127.0.0.1:{}/{}",
            registry().port,
            common::unique_name("cdqsg", test)
        );
        let reference = format!("{prefix}/{KIT}");
        push(&reference);
        assert_eq!(image_id(&reference), None);
        Pullable { prefix, reference }
    }
}

impl Drop for Pullable {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.reference]);
    }
}

/// The signal while `up` pulls (the pull request held before it reaches the daemon): the
/// phase, no image, nothing written or created; the re-run pulls and reaches healthy.
fn up_interrupted_while_pulling(sig: &str) {
    let name = format!("uppull{}", sig.to_lowercase());
    let image = Pullable::new(&name);
    let s = rendered(&name, Some(&image.prefix));
    let (o, _gate) = signal_when_held(&s, &UP_RENDERED, "/images/create", sig, false);
    assert_interrupted(
        &o,
        sig,
        "pulling images",
        "images pulled whole before the interruption stay, and so do finished layers; nothing else was changed, no container was created; run `cdq up` again",
    );
    assert_eq!(image_id(&image.reference), None, "not pulled");
    assert_eq!(deploy_files(&s), Vec::<String>::new(), "nothing written");
    assert!(s.labelled().is_empty(), "nothing created");
    let again = s.cdq(&UP_RENDERED);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(
        again
            .stderr
            .contains(&format!("pulled {}: done", image.reference)),
        "{again}"
    );
    assert_eq!(image_id(&image.reference), image_id(KIT));
    assert_eq!(s.cdq(&["status"]).code, Some(0));
}

#[test]
fn sigint_while_up_pulls() {
    up_interrupted_while_pulling("INT");
}
#[test]
fn sigterm_while_up_pulls() {
    up_interrupted_while_pulling("TERM");
}
#[test]
fn sighup_while_up_pulls() {
    up_interrupted_while_pulling("HUP");
}

// ---- pull -------------------------------------------------------------------------------

/// The signal while `cdq pull` pulls: the phase, no image; the re-run pulls it (the same
/// image as pushed), and a third run has nothing to pull.
fn pull_interrupted_while_pulling(sig: &str) {
    let name = format!("pull{}", sig.to_lowercase());
    let image = Pullable::new(&name);
    let s = rendered(&name, Some(&image.prefix));
    let args = ["pull", "--progress", "plain"];
    let (o, _gate) = signal_when_held(&s, &args, "/images/create", sig, false);
    assert_interrupted(
        &o,
        sig,
        "pulling images",
        "images pulled whole before the interruption stay, and so do finished layers; nothing else was changed; run `cdq pull` again to pull the rest",
    );
    assert_eq!(image_id(&image.reference), None, "not pulled");
    let again = s.cdq(&args);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(
        again.stderr.contains("pulled 1 images for amd64"),
        "{again}"
    );
    assert_eq!(image_id(&image.reference), image_id(KIT));
    let third = s.cdq(&args);
    assert!(
        third
            .stderr
            .contains("nothing to pull: the 1 images are on this host"),
        "{third}"
    );
}

#[test]
fn sigint_while_pull_pulls() {
    pull_interrupted_while_pulling("INT");
}
#[test]
fn sigterm_while_pull_pulls() {
    pull_interrupted_while_pulling("TERM");
}
#[test]
fn sighup_while_pull_pulls() {
    pull_interrupted_while_pulling("HUP");
}

// ---- connecting (up, down, pull, bundle load) -------------------------------------------

/// The signal while `cmd` connects to an engine that never answers: exit 128+n, the
/// phase, nothing changed; then the same command on the real daemon converges.
fn interrupted_while_connecting(sig: &str, cmd: &str) {
    let s = match cmd {
        "pull" => rendered(&format!("connpull{}", sig.to_lowercase()), None),
        _ => sandbox(&format!("conn{cmd}{}", sig.to_lowercase())),
    };
    let f = compose(&s, "app", TWO);
    let m = mute();
    let host = format!("tcp://127.0.0.1:{}", m.port);
    let args: Vec<&str> = match cmd {
        "up" => vec!["up", "--compose", &f],
        "down" => vec!["down", "--compose", &f],
        "pull" => vec!["pull"],
        _ => unreachable!(),
    };
    if cmd == "down" {
        assert_eq!(up(&s, &f, &[]).code, Some(0));
    }
    let r = s.spawn_env(&args, &[("DOCKER_HOST", &host)]);
    m.accepted.recv_timeout(LONG).expect("cdq connects");
    kill(r.pid(), sig);
    let o = r.wait();
    let left = match cmd {
        "up" => "nothing was changed; run `cdq up` again",
        "down" => "nothing was removed; run `cdq down` again",
        _ => "nothing was pulled; run `cdq pull` again",
    };
    assert_interrupted(&o, sig, "connecting to the Docker daemon", left);
    let again = s.cdq(&args);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    match cmd {
        "down" => assert!(s.labelled().is_empty(), "down removed the stack"),
        "up" => assert_eq!(s.cdq(&["status", "--compose", &f]).code, Some(0)),
        _ => assert!(
            again
                .stderr
                .contains("nothing to pull: the 1 images are on this host"),
            "{again}"
        ),
    }
}

#[test]
fn sigint_while_up_connects() {
    interrupted_while_connecting("INT", "up");
}
#[test]
fn sigterm_while_up_connects() {
    interrupted_while_connecting("TERM", "up");
}
#[test]
fn sighup_while_up_connects() {
    interrupted_while_connecting("HUP", "up");
}
#[test]
fn sigint_while_down_connects() {
    interrupted_while_connecting("INT", "down");
}
#[test]
fn sigterm_while_down_connects() {
    interrupted_while_connecting("TERM", "down");
}
#[test]
fn sighup_while_down_connects() {
    interrupted_while_connecting("HUP", "down");
}
#[test]
fn sigint_while_pull_connects() {
    interrupted_while_connecting("INT", "pull");
}
#[test]
fn sigterm_while_pull_connects() {
    interrupted_while_connecting("TERM", "pull");
}
#[test]
fn sighup_while_pull_connects() {
    interrupted_while_connecting("HUP", "pull");
}

// ---- down -------------------------------------------------------------------------------

/// The signal while `down` stops a container that ignores SIGTERM (so the stop takes its
/// whole timeout): exit 128+n naming the phase; a re-run of `down` removes the stack.
fn down_interrupted_while_stopping(sig: &str) {
    let s = sandbox(&format!("downstop{}", sig.to_lowercase()));
    let f = compose(
        &s,
        "app",
        r#"services:
  stubborn:
    image: cdq-local/redis:2-amd64
    entrypoint: ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
"#,
    );
    assert_eq!(up(&s, &f, &[]).code, Some(0));
    // Docker's `kill` event is the stop's SIGTERM: from then on, down is in its stop phase.
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            &format!("container={}", container(&s, "stubborn")),
            "--filter",
            "event=kill",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let r = s.spawn(&["down", "--compose", &f, "--timeout", "120"]);
    let mut byte = [0u8; 1];
    events
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut byte)
        .expect("docker reports the stop's kill");
    let _ = events.kill();
    let _ = events.wait();
    kill(r.pid(), sig);
    let o = r.wait();
    assert_interrupted(
        &o,
        sig,
        "stopping and removing the stack's containers",
        "what was removed stays removed and the rest is as it was (data kept); run `cdq down` again to finish",
    );
    let again = s.cdq(&["down", "--compose", &f, "--timeout", "1"]);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(s.labelled().is_empty(), "nothing of the stack is left");
}

#[test]
fn sigint_while_down_stops() {
    down_interrupted_while_stopping("INT");
}
#[test]
fn sigterm_while_down_stops() {
    down_interrupted_while_stopping("TERM");
}
#[test]
fn sighup_while_down_stops() {
    down_interrupted_while_stopping("HUP");
}

/// The data directories cdq made (their marks under `data/`) and `secrets.env`.
fn purgeable(s: &Sandbox) -> Vec<PathBuf> {
    let mut v = vec![];
    let data = s.dir().join("data");
    for e in std::fs::read_dir(&data).into_iter().flatten().flatten() {
        v.push(e.path());
    }
    let secrets = s.dir().join("secrets.env");
    if secrets.exists() {
        v.push(secrets);
    }
    v.sort();
    v
}

/// The signal while `down --purge --yes` stops the stack (the stop held): the purge never
/// starts, so the data and the passwords are all there and the message says so; the re-run
/// removes the stack and deletes them.
fn purge_interrupted_while_stopping(sig: &str) {
    let s = rendered(&format!("purgestop{}", sig.to_lowercase()), None);
    let o = s.cdq(&UP_RENDERED);
    assert_eq!(o.code, Some(0), "{o}");
    let before = purgeable(&s);
    assert!(before.len() >= 2, "redis data and secrets.env: {before:?}");
    let args = ["down", "--purge", "--yes", "--timeout", "5"];
    let (o, _gate) = signal_when_held(&s, &args, "/stop", sig, false);
    assert_interrupted(
        &o,
        sig,
        "stopping and removing the stack's containers",
        "what was removed stays removed and the rest is as it was (data kept); run `cdq down` again to finish",
    );
    assert!(!o.stderr.contains("deleted"), "{o}");
    assert_eq!(purgeable(&s), before, "nothing deleted");
    assert!(!s.labelled().is_empty(), "the stack is still there");
    let again = s.cdq(&args);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(s.labelled().is_empty(), "nothing of the stack is left");
    assert_eq!(purgeable(&s), Vec::<PathBuf>::new(), "{again}");
}

#[test]
fn sigint_while_down_purge_stops() {
    purge_interrupted_while_stopping("INT");
}
#[test]
fn sigterm_while_down_purge_stops() {
    purge_interrupted_while_stopping("TERM");
}
#[test]
fn sighup_while_down_purge_stops() {
    purge_interrupted_while_stopping("HUP");
}

// ---- bundle load ------------------------------------------------------------------------

/// One bundle of the kit's redis for this test process, saved once under a reference of
/// its own (`<prefix>/library/redis:7.2.11`), whose local tag is then removed. The tests
/// that load it take [`BUNDLE_LOCK`], since they load (and untag) the same reference.
struct SharedBundle {
    path: PathBuf,
    reference: String,
}

static BUNDLE_LOCK: Mutex<()> = Mutex::new(());

fn bundle() -> &'static SharedBundle {
    static B: OnceLock<SharedBundle> = OnceLock::new();
    B.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Bundles of earlier runs of this file.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("signals-real-") && n.ends_with(".bundle") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let path = dir.join(format!("signals-real-{}.bundle", std::process::id()));
        let prefix = common::unique_name("cdqsg", "bundle");
        let reference = format!("{prefix}/library/redis:7.2.11");
        docker_ok(&["tag", KIT, &reference]);
        let s = Sandbox::new("cdqsg", "bundlesave").flags(&["--images", &prefix]);
        s.write_config("services: [redis]\n");
        let o = s.cdq(&[
            "bundle",
            "save",
            "--arch",
            "amd64",
            "-o",
            path.to_str().unwrap(),
        ]);
        docker_ok(&["rmi", &reference]);
        assert_eq!(o.code, Some(0), "{o}");
        SharedBundle { path, reference }
    })
}

/// Untags the shared bundle's reference on drop (a load made it).
struct Untag<'a>(&'a str);

impl Drop for Untag<'_> {
    fn drop(&mut self) {
        let _ = docker(&["rmi", self.0]);
    }
}

/// The signal while `bundle load` connects, or while it sends the images to the daemon
/// (its `/images/load` held): the phase, the image not loaded; the re-run loads it with
/// the kit's id.
fn bundle_load_interrupted(sig: &str, phase: &str) {
    let b = bundle();
    let _lock = BUNDLE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _untag = Untag(&b.reference);
    assert_eq!(image_id(&b.reference), None);
    let s = sandbox(&format!("bundle{phase}{}", sig.to_lowercase()));
    let args = ["bundle", "load", b.path.to_str().unwrap()];
    let o = match phase {
        "connect" => {
            let m = mute();
            let host = format!("tcp://127.0.0.1:{}", m.port);
            let r = s.spawn_env(&args, &[("DOCKER_HOST", &host)]);
            m.accepted.recv_timeout(LONG).expect("cdq connects");
            kill(r.pid(), sig);
            r.wait()
        }
        _ => signal_when_held(&s, &args, "/images/load", sig, false).0,
    };
    match phase {
        "connect" => assert_interrupted(
            &o,
            sig,
            "connecting to the Docker daemon",
            "nothing was loaded; run `cdq bundle load` again",
        ),
        _ => {
            assert!(o.stderr.contains("verifying"), "verified first: {o}");
            assert_interrupted(
                &o,
                sig,
                "loading the bundle",
                "images loaded before the interruption stay (Docker keeps only whole images); run `cdq bundle load` again to load the rest",
            )
        }
    }
    assert_eq!(image_id(&b.reference), None, "not loaded");
    let again = s.cdq(&args);
    assert_eq!(again.code, Some(0), "the re-run converges: {again}");
    assert!(again.stderr.contains("loaded 1 images"), "{again}");
    assert_eq!(image_id(&b.reference), image_id(KIT));
}

#[test]
fn sigint_while_bundle_load_connects() {
    bundle_load_interrupted("INT", "connect");
}
#[test]
fn sigterm_while_bundle_load_connects() {
    bundle_load_interrupted("TERM", "connect");
}
#[test]
fn sighup_while_bundle_load_connects() {
    bundle_load_interrupted("HUP", "connect");
}
#[test]
fn sigint_while_bundle_loads() {
    bundle_load_interrupted("INT", "load");
}
#[test]
fn sigterm_while_bundle_loads() {
    bundle_load_interrupted("TERM", "load");
}
#[test]
fn sighup_while_bundle_loads() {
    bundle_load_interrupted("HUP", "load");
}
