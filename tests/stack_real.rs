//! Real-daemon tests of `cdq up`, `status`, `down` and `logs` (issue 4's "Must show" list).
//!
//! They drive the built binary against the local Docker engine on the local image kit
//! (`scripts/build-local-images.sh` builds `cdq-local/*`); a missing image shows up as a
//! failed `cdq up`, never as a skip. Every test has its own project name
//! (`cdqt-<test>-<pid>-<n>-<nanos>`), its own temporary deploy directory and its own published
//! ports, so they run in parallel with each other and with anything else on the host. A
//! [`Stack`] guard (a `tests/common` [`Sandbox`] plus objects made outside the project)
//! runs `cdq down` and then removes whatever still carries the project's label, pass or
//! fail, so no container or network outlives a test.
//!
//! Preflight is not what these tests are about (it has its own tests), so `up` runs with
//! `--skip-preflight`; the host IP is always `127.0.0.1` so kafka advertises loopback only.
//!
//! The full stack takes ~20 s to start here, so the scenarios that can share one stack do
//! (`full_stack_lifecycle`); the rest each start their own.

mod common;

use common::{Out, Sandbox, docker, docker_ok, free_ports, run};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVICES: [&str; 9] = [
    "elasticsearch",
    "grafana",
    "kafka",
    "mysql",
    "prometheus",
    "redis",
    "server",
    "ucenter",
    "zookeeper",
];

// ---- names, ports, time ---------------------------------------------------------------

/// Unix seconds of an RFC 3339 UTC time as Docker writes it (`2026-11-22T23:48:56.69Z`).
fn unix_seconds(s: &str) -> f64 {
    let bad = || -> ! { panic!("not an RFC 3339 UTC time: {s:?}") };
    let (date, time) = s.trim().split_once('T').unwrap_or_else(|| bad());
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let time = time.strip_suffix('Z').unwrap_or_else(|| bad());
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant), so the test needs no date crate.
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---- a stack under test ---------------------------------------------------------------

/// One project: a [`Sandbox`] from `tests/common` (project `cdqt-<test>-…`, a temp root
/// holding the settings file outside the deploy directory, so `up` really starts from an
/// empty one, and a `cdq` with a clean environment and `--images local`), plus objects a
/// test made outside the project. Dropping it runs `cdq down` and tears the project down by
/// label, whatever state the test left it in.
struct Stack {
    sb: Sandbox,
    /// Containers and networks a test made outside the project, removed by name at the end.
    extra_containers: Vec<String>,
    extra_networks: Vec<String>,
}

impl Deref for Stack {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Stack {
    /// A project on the local images with its own published ports. `extra` is appended to
    /// the settings file.
    fn new(test: &str, extra: &str) -> Stack {
        let s = Stack {
            sb: Sandbox::new("cdqt", test)
                .flags(&["--images", "local"])
                .down_on_drop("2"),
            extra_containers: vec![],
            extra_networks: vec![],
        };
        std::fs::create_dir(s.dir()).unwrap();
        let [server, ucenter, grafana, kafka] = free_ports::<4>();
        s.write_settings(&format!(
            "ports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka} }}\n{extra}"
        ));
        s
    }

    fn settings_path(&self) -> PathBuf {
        self.config()
    }

    fn write_settings(&self, text: &str) {
        self.write_config(text);
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn secrets_path(&self) -> PathBuf {
        self.dir().join("secrets.env")
    }

    /// `cdq up` with plain progress (stable, timestamped lines to match on).
    fn up(&self) -> Out {
        self.cdq(&UP)
    }

    fn up_ok(&self) -> Out {
        let o = self.up();
        assert_eq!(o.code, Some(0), "`cdq up` should reach all healthy: {o}");
        o
    }

    /// service -> full container id, for every container carrying the project's label.
    fn container_ids(&self) -> BTreeMap<String, String> {
        let out = docker_ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &self.label(),
            "--format",
            "{{.Label \"io.cdq.service\"}}\t{{.ID}}",
        ]);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (s, id) = l.split_once('\t').unwrap();
                (s.to_string(), id.to_string())
            })
            .collect()
    }

    /// `name state` of every container with the project's label (for messages).
    fn container_states(&self) -> String {
        docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &self.label(),
            "--format",
            "{{.Names}} {{.State}} {{.Status}}",
        ])
    }

    /// Everything left with the project's label, by cdq's label or by compose's.
    fn leftovers(&self) -> Vec<String> {
        let mut left = vec![];
        for label in [
            self.label(),
            format!("label=com.docker.compose.project={}", self.project()),
        ] {
            for l in docker_ok(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
                .lines()
                .chain(
                    docker_ok(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])
                        .lines(),
                )
            {
                if !l.is_empty() && !left.iter().any(|x| x == l) {
                    left.push(l.to_string());
                }
            }
        }
        left
    }

    fn status_json(&self) -> (Out, serde_json::Value) {
        let o = self.cdq(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("`cdq status --json` printed no JSON ({e}): {o}"));
        (o, v)
    }

    fn mysql_password(&self) -> String {
        let text = std::fs::read_to_string(self.secrets_path()).expect("reading secrets.env");
        text.lines()
            .find_map(|l| l.strip_prefix("MYSQL_ROOT_PASSWORD="))
            .expect("secrets.env has MYSQL_ROOT_PASSWORD")
            .trim()
            .trim_matches(['"', '\''])
            .to_string()
    }

    /// Runs SQL in the project's mysql container as root. The password goes through the
    /// environment (`docker exec -e MYSQL_PWD`), never on a command line or in a message.
    fn sql(&self, db: &str, sql: &str) -> Out {
        run(Command::new("docker")
            .env("MYSQL_PWD", self.mysql_password())
            .args(["exec", "-e", "MYSQL_PWD"])
            .arg(format!("{}-mysql-1", self.project()))
            .args(["mysql", "-uroot", "-N", "-B", db, "-e", sql]))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The sandbox first (`cdq down`, which knows the stop order, then whatever cdq
        // left or could not reach, by label); then the objects made outside the project.
        // Errors are ignored: this runs during a panic too.
        self.sb.teardown();
        for c in &self.extra_containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.extra_networks {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

const UP: [&str; 6] = [
    "up",
    "--ip",
    "127.0.0.1",
    "--skip-preflight",
    "--progress",
    "plain",
];

fn nine() -> BTreeSet<String> {
    SERVICES.iter().map(|s| s.to_string()).collect()
}

/// Asserts `cdq status --json` says all nine services run and are healthy.
fn assert_status_all_healthy(s: &Stack) {
    let (o, v) = s.status_json();
    assert_eq!(
        o.code,
        Some(0),
        "`cdq status` exits 0 on a healthy stack: {o}"
    );
    assert_eq!(v["healthy"], true, "{o}");
    assert_eq!(v["project"], s.project(), "{o}");
    let rows = v["services"].as_array().expect("services is a list");
    let names: BTreeSet<String> = rows
        .iter()
        .map(|r| r["service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, nine(), "status lists exactly the nine services: {o}");
    assert_eq!(rows.len(), 9, "one row per service: {o}");
    for r in rows {
        assert_eq!(r["state"], "running", "{r}");
        assert_eq!(r["health"], "healthy", "{r}");
        assert_eq!(r["ok"], true, "{r}");
    }
}

/// Lines of a plan print that name `service` in the first column.
fn plan_line<'a>(out: &'a str, service: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(service) && l.starts_with("  "))
}

// ---- the full stack, from empty to purged ---------------------------------------------

/// Issue 4's must-shows that need a running stack, on one stack to save start-ups:
/// empty dir -> nine healthy (and the deploy lock while it starts), status, compose ps,
/// logs, convergence, one changed setting, persistence across down/up, down --purge
/// refusals, down leaving unrelated objects alone, down --purge --yes.
#[test]
fn full_stack_lifecycle() {
    let mut s = Stack::new("life", "");
    let t_all = Instant::now();

    // --- up from an empty deploy dir, and a rival cdq while it runs -------------------
    assert_eq!(std::fs::read_dir(s.dir()).unwrap().count(), 0);
    let mut first = s.spawn(&UP);
    // The plan is printed after the lock is taken: from here a rival must be refused.
    first.wait_for_stderr("plan for", Duration::from_secs(60));
    let rival = s.up();
    assert_eq!(rival.code, Some(5), "a second cdq on the same dir: {rival}");
    assert!(
        rival.stderr.contains("another cdq is working on"),
        "the refusal says why: {rival}"
    );
    assert!(
        first.is_running(),
        "the rival must fail at once, not wait for the first `up` to finish (it took {:.1}s)",
        rival.took.as_secs_f64()
    );
    let o = first.wait();
    assert_eq!(o.code, Some(0), "`cdq up` from an empty dir: {o}");
    assert!(o.stderr.contains("9 services healthy"), "{o}");
    eprintln!("first up: {:.1}s", o.took.as_secs_f64());

    assert_status_all_healthy(&s);
    let compose = docker(&["compose", "-p", s.project(), "ps", "--format", "json"]);
    assert_eq!(compose.code, Some(0), "docker compose ps: {compose}");
    // Compose v2 prints one object per line (2.21+) or one array (older): accept both.
    let rows: Vec<serde_json::Value> = match serde_json::from_str(&compose.stdout) {
        Ok(serde_json::Value::Array(a)) => a,
        _ => compose
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect(),
    };
    let listed: BTreeSet<String> = rows
        .iter()
        .map(|r| r["Service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        nine(),
        "docker compose ps lists the nine: {compose}"
    );
    for r in &rows {
        assert_eq!(r["State"], "running", "{r}");
        assert_eq!(r["Health"], "healthy", "{r}");
        assert_eq!(r["Project"], s.project(), "{r}");
    }

    // --- logs ---------------------------------------------------------------------------
    let logs = s.cdq(&["logs", "redis", "--tail", "5"]);
    assert_eq!(logs.code, Some(0), "{logs}");
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "--tail 5 prints five lines: {logs}");
    for l in &lines {
        assert!(l.starts_with("redis | "), "every line is prefixed: {logs}");
    }
    assert!(
        logs.stdout.contains("Ready to accept connections"),
        "the tail of a healthy redis log: {logs}"
    );

    // --- convergence: an unchanged stack is left alone --------------------------------
    let before = s.container_ids();
    assert_eq!(
        before.keys().cloned().collect::<BTreeSet<_>>(),
        nine(),
        "one container per service, and nothing else with the label"
    );
    let again = s.up_ok();
    eprintln!(
        "second up (nothing to change): {:.2}s",
        again.took.as_secs_f64()
    );
    assert!(again.stderr.contains("nothing to change"), "{again}");
    assert_eq!(s.container_ids(), before, "a no-op up touches no container");

    // --- one changed setting recreates only its service --------------------------------
    let settings = std::fs::read_to_string(s.settings_path()).unwrap();
    s.write_settings(&format!("{settings}heap: {{ ucenter: 256m }}\n"));
    let changed = s.up_ok();
    eprintln!("up after a heap change: {:.1}s", changed.took.as_secs_f64());
    let after = s.container_ids();
    for svc in SERVICES {
        if svc == "ucenter" {
            assert_ne!(after[svc], before[svc], "ucenter is recreated: {changed}");
        } else {
            assert_eq!(after[svc], before[svc], "{svc} is left alone: {changed}");
        }
    }
    let line = plan_line(&changed.stderr, "ucenter")
        .unwrap_or_else(|| panic!("the plan names ucenter: {changed}"));
    let reason = line
        .split_once("recreate (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("ucenter's plan line says `recreate (<why>)`: {line:?}"));
    assert!(!reason.trim().is_empty(), "with a reason: {line:?}");
    for svc in SERVICES.iter().filter(|s| **s != "ucenter") {
        let l = plan_line(&changed.stderr, svc).unwrap_or("");
        assert!(
            !l.contains("recreate"),
            "only ucenter is recreated: {changed}"
        );
    }
    assert_status_all_healthy(&s);

    // --- persistence: a row and the passwords survive down/up -------------------------
    let token = format!("row-{}", s.project());
    let w = s.sql(
        "cd_server",
        &format!(
            "CREATE TABLE cdqt_probe (id INT PRIMARY KEY, v VARCHAR(120)); \
             INSERT INTO cdqt_probe VALUES (1, '{token}');"
        ),
    );
    assert_eq!(w.code, Some(0), "writing a row: {w}");
    let secrets = std::fs::read(s.secrets_path()).unwrap();
    let data_before = dir_names(&s.data_dir());

    let down = s.cdq(&["down"]);
    assert_eq!(down.code, Some(0), "`cdq down`: {down}");
    assert_eq!(
        s.leftovers(),
        Vec::<String>::new(),
        "down removes all: {down}"
    );
    assert_eq!(dir_names(&s.data_dir()), data_before, "data dir intact");
    assert!(
        s.data_dir().join("mysql").read_dir().unwrap().count() > 0,
        "mysql's data is still there"
    );
    assert_eq!(
        std::fs::read(s.secrets_path()).unwrap(),
        secrets,
        "secrets.env is byte-identical after down"
    );

    let back = s.up_ok();
    eprintln!("up after down: {:.1}s", back.took.as_secs_f64());
    assert_status_all_healthy(&s);
    assert_eq!(
        std::fs::read(s.secrets_path()).unwrap(),
        secrets,
        "secrets.env is byte-identical after up"
    );
    // The old root password still logs in (it was never changed) and the row is there.
    let r = s.sql("cd_server", "SELECT v FROM cdqt_probe WHERE id = 1;");
    assert_eq!(r.code, Some(0), "reading the row back: {r}");
    assert_eq!(r.stdout.trim(), token, "the row survived down/up: {r}");

    // --- down --purge without --yes and without a terminal refuses --------------------
    let ids = s.container_ids();
    let refused = s.cdq(&["down", "--purge"]);
    assert_eq!(
        refused.code,
        Some(2),
        "purge without --yes, no TTY: {refused}"
    );
    assert!(refused.stderr.contains("--yes"), "says how: {refused}");
    assert_eq!(s.container_ids(), ids, "a refused purge stops nothing");
    assert_eq!(dir_names(&s.data_dir()), data_before, "and deletes nothing");
    assert_eq!(std::fs::read(s.secrets_path()).unwrap(), secrets);

    // --- down removes the project's objects and nothing else --------------------------
    // Look-alikes: a name starting with the project's, our label keys with another
    // project's value, compose's label with another value.
    let other = format!("{}-other", s.project());
    let bystander = format!("{}-redis-2", s.project());
    s.extra_containers.push(bystander.clone());
    docker_ok(&[
        "create",
        "--name",
        &bystander,
        "--label",
        &format!("io.cdq.project={other}"),
        "--label",
        "io.cdq.service=redis",
        "--label",
        &format!("com.docker.compose.project={other}"),
        "cdq-local/redis:2-amd64",
    ]);
    let other_net = format!("{}_default-other", s.project());
    s.extra_networks.push(other_net.clone());
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("io.cdq.project={other}"),
        &other_net,
    ]);
    let down = s.cdq(&["down"]);
    assert_eq!(down.code, Some(0), "`cdq down`: {down}");
    assert_eq!(
        s.leftovers(),
        Vec::<String>::new(),
        "down removes all: {down}"
    );
    for (kind, name) in [("container", &bystander), ("network", &other_net)] {
        let o = docker(&[kind, "inspect", name]);
        assert_eq!(
            o.code,
            Some(0),
            "down must not touch {kind} `{name}`: {down}"
        );
    }
    assert_eq!(dir_names(&s.data_dir()), data_before, "data dir intact");

    // --- down --purge --yes deletes the data and the passwords -------------------------
    let purged = s.cdq(&["--yes", "down", "--purge"]);
    assert_eq!(purged.code, Some(0), "{purged}");
    assert!(!s.data_dir().exists(), "data dir deleted: {purged}");
    assert!(!s.secrets_path().exists(), "secrets.env deleted: {purged}");
    eprintln!(
        "full_stack_lifecycle: {:.1}s",
        t_all.elapsed().as_secs_f64()
    );
}

fn dir_names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("reading {}: {e}", d.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---- interrupted runs ------------------------------------------------------------------

/// SIGINT while services are still starting: cdq stops waiting, exits 130 and says how to
/// resume; the containers it left are reused (not recreated) by the next `up`.
#[test]
fn sigint_mid_up_leaves_a_resumable_stack() {
    let s = Stack::new("sigint", "");
    let mut up = s.spawn(&UP);
    // Mid-up: something started, nothing like "all healthy" yet.
    up.wait_for_stderr("started, waiting for healthy", Duration::from_secs(60));
    let k = run(Command::new("kill").args(["-INT", &up.pid().to_string()]));
    assert_eq!(k.code, Some(0), "{k}");
    let o = up.wait();
    assert_eq!(o.code, Some(130), "SIGINT exits 130: {o}");
    assert!(o.stderr.contains("interrupted"), "{o}");
    assert!(
        o.stderr.contains("run `cdq up` again to resume"),
        "says how to resume: {o}"
    );
    assert!(!o.stderr.contains("services healthy in"), "{o}");
    eprintln!("states after SIGINT:\n{}", s.container_states());

    let again = s.up_ok();
    assert!(
        !again.stderr.contains("recreate"),
        "containers left by the interrupted run are current: {again}"
    );
    assert_status_all_healthy(&s);
}

/// `kill -9` while containers are being created and started (some may be left in the
/// Created state, or a data directory half prepared): the next `up` reaches all healthy.
#[test]
fn kill_9_mid_up_leaves_a_resumable_stack() {
    let s = Stack::new("kill9", "");
    let mut up = s.spawn(&UP);
    // The first start: the other first-wave containers are being created or wait to start.
    up.wait_for_stderr(": starting", Duration::from_secs(60));
    up.child.kill().expect("SIGKILL");
    let o = up.wait();
    assert_eq!(o.code, None, "killed by a signal: {o}");
    let states = s.container_states();
    eprintln!(
        "states after kill -9 ({} created):\n{states}",
        states.lines().filter(|l| l.contains(" created ")).count()
    );

    let again = s.up_ok();
    assert!(
        !again.stderr.contains("recreate"),
        "containers left by the killed run are current: {again}"
    );
    assert_status_all_healthy(&s);
}

// ---- failures --------------------------------------------------------------------------

fn write_compose(s: &Stack, text: &str) -> PathBuf {
    let f = s.root().join("compose.yaml");
    std::fs::write(&f, text).unwrap();
    f
}

/// A service that exits at once fails `up` within 2 s of the exit, with exit 4, its exit
/// code and its last log lines.
#[test]
fn service_that_exits_fails_up_at_once() {
    let s = Stack::new("exit", "");
    // A healthcheck that would pass, so only the exit can fail it.
    let f = write_compose(
        &s,
        r#"services:
  quitter:
    image: cdq-local/redis:2-amd64
    entrypoint: ["sh", "-c", "echo quitter-last-words; exit 3"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
"#,
    );
    let o = s.cdq(&[
        "up",
        "--compose",
        f.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    let ended = now_unix();
    assert_eq!(o.code, Some(4), "an exited service: {o}");
    assert!(o.stderr.contains("`quitter` exited with code 3"), "{o}");
    assert!(
        o.stderr.contains("quitter-last-words"),
        "its last log lines: {o}"
    );
    assert!(o.stderr.contains("`quitter` did not become healthy"), "{o}");
    let finished = docker_ok(&[
        "inspect",
        "-f",
        "{{.State.FinishedAt}}",
        &format!("{}-quitter-1", s.project()),
    ]);
    let lag = ended - unix_seconds(&finished);
    eprintln!("cdq ended {lag:.2}s after the container exited");
    assert!(
        lag < 2.0,
        "cdq must fail within 2 s of the exit, took {lag:.2}s: {o}"
    );
}

/// The same for a service without a healthcheck: "running" for a moment is not success
/// when it is gone a moment later.
#[test]
fn service_without_healthcheck_that_exits_fails_up() {
    let s = Stack::new("exitnohc", "");
    let f = write_compose(
        &s,
        r#"services:
  noprobe:
    image: cdq-local/redis:2-amd64
    entrypoint: ["sh", "-c", "echo noprobe-last-words; exit 3"]
"#,
    );
    let o = s.cdq(&[
        "up",
        "--compose",
        f.to_str().unwrap(),
        "--progress",
        "plain",
    ]);
    assert_eq!(
        o.code,
        Some(4),
        "a service that exits at once fails up: {o}"
    );
    assert!(o.stderr.contains("`noprobe` exited with code 3"), "{o}");
    assert!(o.stderr.contains("noprobe-last-words"), "{o}");
}

/// A healthcheck that never passes: exit 4 at the service's deadline (not before), with
/// the last probe output and the last log lines.
#[test]
fn never_healthy_service_fails_up_at_its_deadline() {
    // The deadline in settings applies to the catalogue's services only, so the failing
    // service is called `redis`; 5 s keeps the test short. `other` is not in the catalogue:
    // `--deadline` gives it 6 s.
    let s = Stack::new("unhealthy", "deadlines: { redis: 5s }\n");
    // The probe prints, so there is probe output to show; start_period 0 and a 1 s interval
    // keep the healthcheck's own grace (start_period + 2 intervals + timeout) under 5 s.
    let f = write_compose(
        &s,
        r#"services:
  redis:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "sh", "-c", "echo probe-says-no; exit 1"]
      interval: 1s
      timeout: 2s
      retries: 1
  other:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      timeout: 2s
      retries: 1
"#,
    );
    let o = s.cdq(&[
        "up",
        "--compose",
        f.to_str().unwrap(),
        "--progress",
        "plain",
        "--deadline",
        "6s",
    ]);
    assert_eq!(o.code, Some(4), "never healthy: {o}");
    assert!(o.stderr.contains("`redis` was not healthy after 5s"), "{o}");
    assert!(o.stderr.contains("`other` was not healthy after 6s"), "{o}");
    assert!(o.stderr.contains("last healthcheck output:"), "{o}");
    assert!(
        o.stderr.contains("probe-says-no"),
        "the probe's output: {o}"
    );
    assert!(
        o.stderr.contains("Ready to accept connections"),
        "its last log lines: {o}"
    );
    assert!(
        o.stderr
            .contains("error: `other`, `redis` did not become healthy\nhint: see `cdq logs other`"),
        "a hint: {o}"
    );
    assert!(
        o.took >= Duration::from_secs(6),
        "not failed before its deadline: {o}"
    );
}
