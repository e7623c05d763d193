//! What the test files that run the built binary share: one [`Sandbox`] per test (a unique
//! project name, a temporary directory, a `cdq` with a clean environment, and removal by
//! label on drop, pass or fail), one [`clean_command`] that every file builds its commands
//! from, running commands into printable output, free ports, removing what a test labelled,
//! and reading preflight's JSON. One copy, so the files cannot drift apart on what they
//! isolate.

// Each test file uses its own subset.
#![allow(dead_code)]

pub mod stall;

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const CDQ: &str = env!("CARGO_BIN_EXE_cdq");

/// Variables outside the `CDQ_` namespace that cdq (or the docker and compose it stands in
/// for) reads as flags. Together with every `CDQ_*` variable, they are removed from every
/// command a test runs.
pub const FOREIGN_ENV: [&str; 3] = [
    "DOCKER_HOST",
    "DOCKER_DEFAULT_PLATFORM",
    "COMPOSE_PROJECT_NAME",
];

/// The names [`clean_command`] removes: every variable of this test process whose name
/// starts with `CDQ_` (whatever cdq reads today or adds tomorrow), and [`FOREIGN_ENV`].
pub fn leaking_env() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.as_encoded_bytes().starts_with(b"CDQ_"))
        .chain(FOREIGN_ENV.iter().map(OsString::from))
        .collect()
}

/// `program` with the developer's shell taken out: no `CDQ_*`, no [`FOREIGN_ENV`], stdin
/// from /dev/null. A test sets what it needs on the result (`.env` after this wins). The
/// one way every test file builds a command that runs cdq, directly or through a wrapper
/// (`ip netns exec`, `qemu-aarch64-static`), since the environment passes through those.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for k in leaking_env() {
        c.env_remove(k);
    }
    c.stdin(Stdio::null());
    c
}

/// The binary under test, with a clean environment ([`clean_command`]).
pub fn cdq_command() -> Command {
    clean_command(CDQ)
}

/// `<prefix>-<test>-<pid>-<n>-<nanos>`: unique across the tests of one process (`n`) and
/// across processes and reruns (pid, clock), lowercase so it is a valid compose project
/// name and image path component.
pub fn unique_name(prefix: &str, test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{test}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos & 0xffff
    )
}

/// One test's world: a unique project name, a temporary root holding the settings file
/// (`cdq.yaml`, outside the deploy directory so "nothing written" can be checked on the
/// deploy directory itself) and the deploy directory (`deploy`, not created here), and a
/// `cdq` that runs on exactly these. Dropping it (pass or fail) optionally runs `cdq down`,
/// then removes every container and network labelled `io.cdq.project=<project>` or
/// `com.docker.compose.project=<project>`, then the temporary root.
///
/// A file that needs more state (mounts, tags, objects outside the project) wraps it; the
/// wrapper's `Drop` runs first and may call [`Sandbox::teardown`] to keep its own order.
pub struct Sandbox {
    project: String,
    root: tempfile::TempDir,
    program: OsString,
    /// Arguments before cdq's own (the binary's path when `program` is an emulator).
    pre_args: Vec<OsString>,
    /// Global flags after `--dir`, `--config` and `-p` (e.g. `--images local`).
    flags: Vec<String>,
    env: Vec<(String, String)>,
    /// `cdq down --timeout <this>` on drop, before removal by label.
    down_timeout: Option<String>,
    /// Whether [`Sandbox::teardown`] ran (it runs `cdq down` once, not again on drop).
    torn_down: Cell<bool>,
}

impl Sandbox {
    /// A sandbox named `<prefix>-<test>-…` ([`unique_name`]) running the binary under test.
    pub fn new(prefix: &str, test: &str) -> Sandbox {
        let root = tempfile::Builder::new()
            .prefix(&format!("{prefix}-{test}-"))
            .tempdir()
            .expect("creating a temporary directory");
        Sandbox {
            project: unique_name(prefix, test),
            root,
            program: CDQ.into(),
            pre_args: vec![],
            flags: vec![],
            env: vec![],
            down_timeout: None,
            torn_down: Cell::new(false),
        }
    }

    /// Runs cdq as `program PRE_ARGS... <cdq's args>` (an emulator and the binary).
    pub fn program(mut self, program: impl Into<OsString>, pre_args: &[&OsStr]) -> Sandbox {
        self.program = program.into();
        self.pre_args = pre_args.iter().map(|a| a.to_os_string()).collect();
        self
    }

    /// Global flags every `cdq` of this sandbox gets, after `--dir`, `--config` and `-p`.
    pub fn flags(mut self, flags: &[&str]) -> Sandbox {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// A variable every `cdq` of this sandbox gets (after the clean-up, so it may be `CDQ_*`).
    pub fn env(mut self, key: &str, value: &str) -> Sandbox {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `cdq down --timeout SECONDS` on drop, before the removal by label (cdq knows the
    /// stop order; the label sweep takes what it left).
    pub fn down_on_drop(mut self, seconds: &str) -> Sandbox {
        self.down_timeout = Some(seconds.into());
        self
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The deploy directory (`--dir`), not created until cdq or the test creates it.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("deploy")
    }

    /// The settings file (`--config`).
    pub fn config(&self) -> PathBuf {
        self.root.path().join("cdq.yaml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    /// `label=io.cdq.project=<project>`, a `--filter` for docker.
    pub fn label(&self) -> String {
        format!("label=io.cdq.project={}", self.project)
    }

    /// The command `cdq ARGS` would run, not started: clean environment, the sandbox's
    /// variables, `--dir`, `--config`, `-p` and its flags.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_env(args, &[])
    }

    pub fn command_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut c = clean_command(&self.program);
        c.args(&self.pre_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().copied())
            .arg("--dir")
            .arg(self.dir())
            .arg("--config")
            .arg(self.config())
            .args(["-p", &self.project])
            .args(&self.flags)
            .args(args);
        c
    }

    pub fn cdq(&self, args: &[&str]) -> Out {
        self.cdq_env(args, &[])
    }

    /// `cdq ARGS` with `extra_env` set on top of the clean environment.
    pub fn cdq_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Out {
        run(&mut self.command_env(args, extra_env))
    }

    /// `cdq ARGS` started in the background, its output collected as it arrives.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_env(args, &[])
    }

    /// [`Sandbox::spawn`] with `extra_env` on top of the clean environment.
    pub fn spawn_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Running {
        let mut child = self
            .command_env(args, extra_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning cdq");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
            t0: Instant::now(),
        }
    }

    /// IDs of the containers and networks carrying the project's label.
    pub fn labelled(&self) -> Vec<String> {
        let label = self.label();
        let mut v: Vec<String> = docker_ok(&["ps", "-aq", "--filter", &label])
            .lines()
            .chain(docker_ok(&["network", "ls", "-q", "--filter", &label]).lines())
            .map(str::to_string)
            .collect();
        v.retain(|s| !s.is_empty());
        v
    }

    /// `cdq down` if asked for, then every container and network with the project's label
    /// (cdq's or compose's). Errors are ignored: this also runs while a failed assertion
    /// unwinds. Runs once: a wrapper may call it first to order its own clean-up around it.
    pub fn teardown(&self) {
        if self.torn_down.replace(true) {
            return;
        }
        if let Some(t) = &self.down_timeout {
            let _ = self.cdq(&["down", "--timeout", t]);
        }
        remove_matching(&self.label());
        remove_matching(&format!(
            "label=com.docker.compose.project={}",
            self.project
        ));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A finished command, printable in assertion messages.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1}s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

pub fn run(cmd: &mut Command) -> Out {
    let t0 = Instant::now();
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

pub fn docker(args: &[&str]) -> Out {
    run(Command::new("docker").args(args))
}

/// Runs docker and panics with its output unless it succeeds.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert_eq!(o.code, Some(0), "`docker {}` failed: {o}", args.join(" "));
    o.stdout.trim().to_string()
}

/// Ports the kernel just handed out (for `ports:` in cdq.yaml), so preflight's port checks
/// and the tests' own stacks never collide with whatever else runs on this host.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("0.0.0.0:0").expect("binding an ephemeral port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Removes every container (with its anonymous volumes), then every network, that matches
/// `filter` (`label=KEY=VALUE`). Errors are ignored: guards call this while a test panics.
pub fn remove_matching(filter: &str) {
    for id in docker(&["ps", "-aq", "--filter", filter])
        .stdout
        .split_whitespace()
    {
        let _ = docker(&["rm", "-f", "-v", id]);
    }
    for id in docker(&["network", "ls", "-q", "--filter", filter])
        .stdout
        .split_whitespace()
    {
        let _ = docker(&["network", "rm", id]);
    }
}

/// The check `id` of a `cdq preflight --json` report, or a panic showing the report.
pub fn preflight_check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("`checks` is a list")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check `{id}` in {report:#}"))
}

/// A cdq process running in the background whose output is collected as it arrives, so a
/// test can act at a known point of its progress (send a signal, start a rival).
pub struct Running {
    pub child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
    t0: Instant,
}

fn collect(r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until stderr contains `needle`; panics (with the output so far) at `limit` or
    /// if the process ends first.
    pub fn wait_for_stderr(&mut self, needle: &str, limit: Duration) {
        let t0 = Instant::now();
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if !self.is_running() {
                // Let the readers drain what the process wrote last.
                thread::sleep(Duration::from_millis(100));
                if self.stderr().contains(needle) {
                    return;
                }
                panic!("cdq ended before printing {needle:?}:\n{}", self.stderr());
            }
            assert!(
                t0.elapsed() < limit,
                "cdq did not print {needle:?} within {limit:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait(mut self) -> Out {
        let status = self.child.wait().expect("waiting for cdq");
        let took = self.t0.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Out {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            took,
        }
    }
}

// ---- the arm64 kit, built by what needs it ---------------------------------------------

pub fn arm64_kit_image(service: &str) -> String {
    format!("cdq-local/{service}:2-arm64")
}

/// The services among `services` whose arm64 kit image is absent; fails if one is present
/// but not arm64 (a mistag the build would not fix, since it skips a matching recipe).
fn missing_arm64_kit<'a>(services: &[&'a str]) -> Vec<&'a str> {
    let mut missing = vec![];
    for s in services.iter().copied() {
        let image = arm64_kit_image(s);
        let o = docker(&["image", "inspect", "--format", "{{.Architecture}}", &image]);
        match o.code {
            Some(0) => assert_eq!(o.stdout.trim(), "arm64", "{image} is not an arm64 image"),
            _ => missing.push(s),
        }
    }
    missing
}

/// Builds the arm64 kit images of `services` when any is missing (`scripts/setup.sh`
/// builds only the host's kit): `scripts/build-local-images.sh --arch arm64 --only <them>`,
/// its output going straight to the terminal, since it runs for many minutes. Fails with
/// the build's exit status, or if an image is still missing after it.
pub fn ensure_arm64_kit(services: &[&str]) {
    let missing = missing_arm64_kit(services);
    if missing.is_empty() {
        return;
    }
    let names: Vec<String> = missing.iter().map(|s| arm64_kit_image(s)).collect();
    eprintln!(
        "arm64 kit images missing ({}): building them under emulation, ~10-20 minutes on \
         2 cores (scripts/build-local-images.sh --arch arm64 --only {})",
        names.join(", "),
        missing.join(",")
    );
    let t0 = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-local-images.sh");
    let status = Command::new(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--arch", "arm64", "--only", &missing.join(",")])
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "building the arm64 kit images failed ({status}); its output is above\n\
         hint: it needs root, debootstrap and qemu-user-static (scripts/setup.sh installs \
         them); run `scripts/build-local-images.sh --arch arm64 --only {}` by hand to see why",
        missing.join(",")
    );
    eprintln!(
        "arm64 kit images built in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let still = missing_arm64_kit(services);
    assert!(
        still.is_empty(),
        "the kit build succeeded but these arm64 images are still missing: {}",
        still
            .iter()
            .map(|s| arm64_kit_image(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A compose file of two redis services, `b` waiting for `a` to be healthy: the smallest
/// stack with an order, for the drift and signal tests.
pub const TWO_REDIS: &str = r#"services:
  a:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 2s
      retries: 3
  b:
    image: cdq-local/redis:2-amd64
    depends_on: { a: { condition: service_healthy } }
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 2s
      retries: 3
"#;

/// Writes `text` as `<root>/<sub>/compose.yaml` of the sandbox and returns its path.
pub fn compose(s: &Sandbox, sub: &str, text: &str) -> String {
    let d = s.root().join(sub);
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("compose.yaml");
    std::fs::write(&f, text).unwrap();
    f.to_str().unwrap().to_string()
}

/// `cdq up --compose FILE --progress plain` plus `extra`, in the sandbox.
pub fn up_compose(s: &Sandbox, f: &str, extra: &[&str]) -> Out {
    let mut a = vec!["up", "--compose", f, "--progress", "plain"];
    a.extend_from_slice(extra);
    s.cdq(&a)
}

/// The container cdq names for `service` of the sandbox's project (replica 1).
pub fn container(s: &Sandbox, service: &str) -> String {
    format!("{}-{service}-1", s.project())
}
