//! The Swarm target on a real three-node cluster (issue 15's "Must show"): the lab of
//! `scripts/swarm-lab.sh` (a manager and two workers, each a Debian docker.io engine in a
//! container of the host), started by the first test that finds it missing. cdq talks to
//! the manager through the socket the lab exposes (`DOCKER_HOST`), and to each node through
//! its own socket (`cluster.endpoints`): the nodes start with no images, and cdq loads them
//! from a bundle of the kit that the first test saves from this host.
//!
//! The tests share the lab, so they run one at a time (`LAB`). Each has its own project
//! (a tests/common [`Sandbox`]); its guard runs `cdq down` and removes the project's volumes
//! from every node, pass or fail. They set the node labels the stack places by
//! (`cdq.slot`) and leave them set (the lab is the tests' own).
//!
//! What the kit cannot prove: its kafka (tansu) keeps topics in memory and does not
//! replicate, so the three brokers are three independent brokers to a client; the tests
//! show a round trip through the brokers that remain and that a message on a surviving
//! broker is kept, not that replication moved it (see compose/CONTRACT.md).

mod common;

use std::ops::Deref;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Out, Sandbox, run};

static LAB: Mutex<()> = Mutex::new(());
const NODES: [&str; 3] = ["manager", "worker1", "worker2"];

fn lab_dir() -> String {
    std::env::var("CDQ_SWARM_LAB_DIR").unwrap_or_else(|_| "/tmp/cdq-swarm-lab".into())
}

fn sock(node: &str) -> String {
    format!("unix://{}/{node}/docker.sock", lab_dir())
}

/// `docker ARGS` on one lab node.
fn on(node: &str, args: &[&str]) -> Out {
    run(Command::new("docker").arg("-H").arg(sock(node)).args(args))
}

/// `docker ARGS` on this host's daemon (where the lab's node containers are), whatever
/// `DOCKER_HOST` the test was started with.
fn host(args: &[&str]) -> Out {
    run(common::clean_command("docker").args(args))
}

fn on_ok(node: &str, args: &[&str]) -> String {
    let o = on(node, args);
    assert_eq!(
        o.code,
        Some(0),
        "`docker {}` on {node}: {o}",
        args.join(" ")
    );
    o.stdout.trim().to_string()
}

/// Starts the lab when the manager does not answer, then labels the nodes by slot.
fn ensure_lab() {
    let ready = on("manager", &["node", "ls", "--format", "{{.Status}}"]);
    let up = ready.code == Some(0) && ready.stdout.lines().filter(|l| *l == "Ready").count() == 3;
    if !up {
        eprintln!("swarm lab not running: starting it (scripts/swarm-lab.sh up; ~4 min cold)");
        let o = run(
            Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/swarm-lab.sh")).arg("up"),
        );
        assert_eq!(o.code, Some(0), "scripts/swarm-lab.sh up: {o}");
    }
    for (i, n) in NODES.iter().enumerate() {
        on_ok(
            "manager",
            &[
                "node",
                "update",
                "--label-add",
                &format!("cdq.slot={}", i + 1),
                n,
            ],
        );
    }
}

/// `target: swarm` on the lab's nodes, with the endpoints of `with_endpoint`.
fn config(with_endpoint: &[&str]) -> String {
    let mut c = String::from(
        "target: swarm\ncluster:\n  nodes: [manager, worker1, worker2]\n  endpoints:\n",
    );
    for n in with_endpoint {
        c.push_str(&format!("    {n}: {}\n", sock(n)));
    }
    c
}

/// A bundle of the amd64 kit, saved once per run from this host's images (where the kit
/// is built; the lab's nodes start without images). One file, replaced by each run.
fn kit_bundle() -> &'static std::path::Path {
    static BUNDLE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cdq-swarm-real-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("save")).unwrap();
        let file = std::env::temp_dir().join("cdq-swarm-real-kit-amd64.bundle");
        let o = run(common::clean_command(cdq_copy())
            .args(["--images", "local", "--dir"])
            .arg(dir.join("save"))
            .args(["bundle", "save", "--arch", "amd64", "-o"])
            .arg(&file));
        assert_eq!(o.code, Some(0), "cdq bundle save: {o}");
        file
    })
}

/// A project on the lab: the sandbox (whose drop runs `cdq down`), then the project's
/// volumes on every node.
struct Lab {
    sb: Sandbox,
}

/// The binary under test, copied once when the tests start: the build directory is
/// shared with other worktrees on this machine, and a build there while these minutes-long
/// tests run would swap the binary under them.
fn cdq_copy() -> &'static std::path::Path {
    static COPY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cdq-swarm-real-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("cdq");
        std::fs::copy(common::CDQ, &to).unwrap();
        to
    })
}

impl Lab {
    fn new(test: &str) -> Lab {
        let sb = Sandbox::new("sw", test)
            .program(cdq_copy(), &[])
            .env("DOCKER_HOST", &sock("manager"))
            .flags(&["--images", "local"])
            .down_on_drop("30");
        sb.write_config(&config(&NODES));
        Lab { sb }
    }

    /// The container of the service's running task: (node, id).
    fn task(&self, service: &str) -> Option<(String, String)> {
        let filter = format!(
            "label=com.docker.swarm.service.name={}_{service}",
            self.project()
        );
        NODES.iter().find_map(|n| {
            let o = on(
                n,
                &[
                    "ps",
                    "-q",
                    "--filter",
                    &filter,
                    "--filter",
                    "status=running",
                ],
            );
            let id = o.stdout.lines().next()?.trim().to_string();
            (o.code == Some(0) && !id.is_empty()).then(|| (n.to_string(), id))
        })
    }

    fn exec(&self, service: &str, env: &[&str], cmd: &[&str]) -> Out {
        let (node, id) = self
            .task(service)
            .unwrap_or_else(|| panic!("no running task of `{service}`"));
        let mut args = vec!["exec"];
        for e in env {
            args.extend(["-e", e]);
        }
        args.push(&id);
        args.extend(cmd);
        on(&node, &args)
    }

    fn secret(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir().join("secrets.env")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not in secrets.env"))
            .to_string()
    }

    fn status_json(&self) -> (Option<i32>, serde_json::Value) {
        let o = self.cdq(&["status", "--json"]);
        let v = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("status json: {e}: {o}"));
        (o.code, v)
    }

    /// Polls `cdq status --json` until `ok` holds of it; the deadline is a failure bound.
    fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(Option<i32>, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let (code, v) = self.status_json();
            if ok(code, &v) {
                return v;
            }
            assert!(
                t0.elapsed() < limit,
                "{what}: not reached in {limit:?}; last status:\n{}",
                self.cdq(&["status"])
            );
            std::thread::sleep(Duration::from_secs(3));
        }
    }
}

impl Deref for Lab {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A worker the test stopped comes back, so its tasks and volumes can be removed.
        for n in NODES {
            let _ = host(&["start", &format!("cdq-lab-{n}")]);
        }
        self.sb.teardown();
        let filter = format!("label=io.cdq.project={}", self.project());
        for n in NODES {
            let t0 = Instant::now();
            // A volume is busy until the node has removed the task's container.
            while t0.elapsed() < Duration::from_secs(60) {
                let ids = on(n, &["volume", "ls", "-q", "--filter", &filter]).stdout;
                if ids.trim().is_empty() {
                    break;
                }
                for id in ids.split_whitespace() {
                    let _ = on(n, &["volume", "rm", id]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn services(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["services"].as_array().cloned().unwrap_or_default()
}

fn node_of(v: &serde_json::Value, service: &str) -> String {
    services(v)
        .iter()
        .find(|s| s["service"] == service)
        .and_then(|s| s["tasks"][0]["node"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no task of `{service}` in {v}"))
}

fn row_ok(v: &serde_json::Value, service: &str) -> bool {
    services(v)
        .iter()
        .any(|s| s["service"] == service && s["ok"] == true)
}

/// The stack file cdq renders is one `docker stack deploy` accepts and runs to healthy on
/// the lab (the benchmark's peer, scripts/bench-swarm.sh, times the same thing).
#[test]
fn the_rendered_stack_file_runs_under_docker_stack_deploy() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    ensure_lab();
    let lab = Lab::new("stackdeploy");
    // `docker stack deploy` cannot load images: cdq puts them on the nodes first.
    let o = lab.cdq(&["bundle", "load", kit_bundle().to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o}");
    let o = lab.cdq(&["render", "--ip", "127.0.0.1"]);
    assert_eq!(o.code, Some(0), "{o}");
    let dir = lab.dir();
    let env_text = std::fs::read_to_string(dir.join(".env")).unwrap();
    let mut cmd = Command::new("docker");
    cmd.current_dir(&dir)
        .args([
            "-H",
            &sock("manager"),
            "stack",
            "deploy",
            "--resolve-image",
            "never",
        ])
        .args(["-c", "docker-stack.amd64.yaml", lab.project()]);
    for l in env_text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = l.split_once('=') {
            cmd.env(k, v);
        }
    }
    let o = run(&mut cmd);
    assert_eq!(
        o.code,
        Some(0),
        "docker stack deploy refused the rendered file: {o}"
    );
    // cdq status reads the same services: all 17 healthy once the restarts settle.
    let v = lab.wait_status(
        "docker stack deploy to healthy",
        Duration::from_secs(420),
        |c, _| c == Some(0),
    );
    assert_eq!(services(&v).len(), 17, "{v}");
}

/// Up on the cluster, a worker lost and brought back, then down (the "Must show").
#[test]
fn up_survives_a_worker_loss_and_down_removes_only_its_own() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    ensure_lab();
    let lab = Lab::new("failover");

    // ---- up from a bundle: each node gets (or has) the images its tasks run, then the
    // nine services (17 swarm services) healthy, placed by slot ----
    let bundle = kit_bundle().to_str().unwrap().to_string();
    let o = lab.cdq(&["up", "--ip", "127.0.0.1", "--bundle", &bundle]);
    assert_eq!(o.code, Some(0), "{o}");
    for n in NODES {
        assert!(
            o.stderr.contains(&format!("{n}: loaded ")) || o.stderr.contains(&format!("{n}: all ")),
            "no load report for {n}: {o}"
        );
    }
    assert!(
        o.stderr
            .contains("nodes manager, worker1, worker2: preflight passed: 0 failed"),
        "{o}"
    );
    assert!(o.stderr.contains("17 services healthy on the swarm"), "{o}");
    let (code, v) = lab.status_json();
    assert_eq!(code, Some(0), "{v}");
    for group in [
        ["kafka1", "kafka2", "kafka3"],
        ["zookeeper1", "zookeeper2", "zookeeper3"],
        ["sentinel1", "sentinel2", "sentinel3"],
    ] {
        let nodes: std::collections::BTreeSet<String> =
            group.iter().map(|s| node_of(&v, s)).collect();
        assert_eq!(
            nodes.len(),
            3,
            "{group:?} not spread over three nodes: {nodes:?}"
        );
    }
    for (i, n) in NODES.iter().enumerate() {
        assert_eq!(node_of(&v, &format!("kafka{}", i + 1)), *n);
    }
    for stateful in ["mysql", "elasticsearch", "prometheus", "grafana"] {
        assert_eq!(
            node_of(&v, stateful),
            "manager",
            "{stateful} is not on its slot-1 node"
        );
    }
    // The redis master on slot 3 (the worker this test kills), its replica on slot 2.
    assert_eq!(node_of(&v, "redis"), "worker2");
    assert_eq!(node_of(&v, "redis-replica"), "worker1");

    // A second up changes nothing.
    let o = lab.cdq(&["up", "--ip", "127.0.0.1"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        !o.stderr.contains(": created") && !o.stderr.contains(": updated"),
        "{o}"
    );

    // ---- data: a MySQL row, a Redis key, a Kafka message ----
    let root = format!("MYSQL_PWD={}", lab.secret("MYSQL_ROOT_PASSWORD"));
    let o = lab.exec("mysql", &[&root], &["mysql", "-uroot", "-e",
        "CREATE DATABASE IF NOT EXISTS swarmt; CREATE TABLE IF NOT EXISTS swarmt.k (v VARCHAR(64)); INSERT INTO swarmt.k VALUES ('kept')"]);
    assert_eq!(o.code, Some(0), "{o}");
    let o = lab.exec("redis", &[], &["redis-cli", "SET", "swarmt", "kept"]);
    assert_eq!(o.stdout.trim(), "OK", "{o}");
    let produce = "from kafka import KafkaProducer; p=KafkaProducer(bootstrap_servers='kafka1:9092'); p.send('swarmt', b'kept').get(timeout=30); p.flush(); print('sent')";
    let o = lab.exec("server", &[], &["python3", "-c", produce]);
    assert_eq!(o.code, Some(0), "{o}");
    // The replica has the key (replication from the master works across nodes).
    let t0 = Instant::now();
    loop {
        let o = lab.exec("redis-replica", &[], &["redis-cli", "GET", "swarmt"]);
        if o.stdout.trim() == "kept" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "replica never got the key: {o}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // ---- a worker dies ----
    let o = host(&["kill", "cdq-lab-worker2"]);
    assert_eq!(o.code, Some(0), "{o}");
    let v = lab.wait_status("worker2 marked down", Duration::from_secs(90), |_, v| {
        v["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["node"] == "worker2" && n["state"] != "ready")
        })
    });
    let o = lab.cdq(&["status"]);
    assert_eq!(o.code, Some(4), "a degraded stack is exit 4: {o}");
    assert!(
        o.stdout.contains("worker2") && o.stdout.contains("DOWN"),
        "{o}"
    );
    for degraded in ["kafka3", "zookeeper3", "sentinel3"] {
        assert!(
            !row_ok(&v, degraded),
            "{degraded} still counted healthy on a down node: {v}"
        );
        let line = o
            .stdout
            .lines()
            .find(|l| l.starts_with(degraded))
            .unwrap_or_default();
        assert!(
            line.contains("degraded") && line.contains("node down"),
            "{line}\n{o}"
        );
    }

    // ZooKeeper keeps a quorum with two of three.
    let o = lab.exec(
        "zookeeper1",
        &[],
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/2181; echo srvr >&3; cat <&3",
        ],
    );
    assert!(
        o.stdout.contains("Mode: leader") || o.stdout.contains("Mode: follower"),
        "zookeeper1 lost its quorum: {o}"
    );
    // Redis: the master died with worker2. The sentinels that remain (2 of 3, quorum 2)
    // promote the replica; the key written before is on it.
    let master_addr = || {
        lab.exec(
            "sentinel1",
            &[],
            &[
                "redis-cli",
                "-p",
                "26379",
                "sentinel",
                "get-master-addr-by-name",
                "cdq",
            ],
        )
    };
    let t0 = Instant::now();
    loop {
        let o = master_addr();
        if o.stdout.starts_with("redis-replica") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the sentinels did not fail over to the replica: {o}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let o = lab.exec("redis-replica", &[], &["redis-cli", "INFO", "replication"]);
    assert!(
        o.stdout.contains("role:master"),
        "replica not promoted: {o}"
    );
    let o = lab.exec("redis-replica", &[], &["redis-cli", "GET", "swarmt"]);
    assert_eq!(o.stdout.trim(), "kept", "{o}");
    let o = lab.exec(
        "redis-replica",
        &[],
        &["redis-cli", "SET", "swarmt-after", "new"],
    );
    assert_eq!(
        o.stdout.trim(),
        "OK",
        "the promoted master refuses writes: {o}"
    );
    // The server stays healthy, or Swarm moves it off the dead node by itself.
    lab.wait_status(
        "server healthy with a node down",
        Duration::from_secs(240),
        |_, v| row_ok(v, "server") && row_ok(v, "ucenter"),
    );
    // ... and its Redis is the promoted master, found through Sentinel (the kit stand-in
    // follows `spring.redis.sentinel` as Spring Boot does).
    let t0 = Instant::now();
    loop {
        let o = lab.exec(
            "server",
            &[],
            &["curl", "-sS", "http://127.0.0.1:8080/actuator/health"],
        );
        if o.stdout.contains("\"host\": \"redis-replica:6379\"")
            && o.stdout.contains("\"role\": \"master\"")
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server does not use the promoted master: {o}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // Kafka keeps serving with kafka3 down: a produce and consume round trip through each
    // broker that remains (the client runs in the server container). One at a time: the kit's
    // brokers do not replicate, so a client given both could produce to one and read the
    // other (compose/CONTRACT.md); with the official image one bootstrap list would do.
    for broker in ["kafka1:9092", "kafka2:9092"] {
        let o = lab.exec(
            "server",
            &[],
            &["kafka-roundtrip", broker, "swarmt-degraded"],
        );
        assert_eq!(
            o.code,
            Some(0),
            "kafka round trip through {broker} with kafka3 down: {o}"
        );
    }

    // ---- the worker comes back; the cluster converges ----
    let o = host(&["start", "cdq-lab-worker2"]);
    assert_eq!(o.code, Some(0), "{o}");
    lab.wait_status(
        "all healthy after the worker returned",
        Duration::from_secs(300),
        |c, _| c == Some(0),
    );

    // No data lost.
    let o = lab.exec(
        "mysql",
        &[&root],
        &["mysql", "-uroot", "-N", "-e", "SELECT v FROM swarmt.k"],
    );
    assert_eq!(o.stdout.trim(), "kept", "{o}");
    // The old master came back as a replica of the promoted one, with both keys.
    let t0 = Instant::now();
    loop {
        let o = lab.exec("redis", &[], &["redis-cli", "INFO", "replication"]);
        if o.stdout.contains("role:slave") && o.stdout.contains("master_link_status:up") {
            assert!(o.stdout.contains("master_host:redis-replica"), "{o}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the old master did not rejoin as a replica: {o}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for (key, value) in [("swarmt", "kept"), ("swarmt-after", "new")] {
        let o = lab.exec("redis", &[], &["redis-cli", "GET", key]);
        assert_eq!(o.stdout.trim(), value, "{key} on the old master: {o}");
    }
    let o = master_addr();
    assert!(o.stdout.starts_with("redis-replica"), "{o}");
    let consume = "from kafka import KafkaConsumer; c=KafkaConsumer('swarmt', bootstrap_servers='kafka1:9092', auto_offset_reset='earliest', consumer_timeout_ms=20000); print([m.value.decode() for m in c])";
    let o = lab.exec("server", &[], &["python3", "-c", consume]);
    assert!(
        o.stdout.contains("'kept'"),
        "the kafka message is gone: {o}"
    );

    // ---- down removes cdq's services, network, configs and secrets; nothing else ----
    let foreign = format!("{}-not-cdqs", lab.project());
    let data = lab.root().join("foreign.txt");
    std::fs::write(&data, "not cdq's").unwrap();
    let o = on(
        "manager",
        &["config", "create", &foreign, data.to_str().unwrap()],
    );
    assert_eq!(o.code, Some(0), "{o}");
    let o = lab.cdq(&["down"]);
    assert_eq!(o.code, Some(0), "{o}");
    let label = format!("label=io.cdq.project={}", lab.project());
    assert_eq!(
        on_ok("manager", &["service", "ls", "-q", "--filter", &label]),
        ""
    );
    assert_eq!(
        on_ok("manager", &["network", "ls", "-q", "--filter", &label]),
        ""
    );
    assert_eq!(
        on_ok("manager", &["config", "ls", "-q", "--filter", &label]),
        ""
    );
    assert_eq!(
        on_ok("manager", &["secret", "ls", "-q", "--filter", &label]),
        ""
    );
    assert!(
        !on_ok("manager", &["volume", "ls", "-q", "--filter", &label]).is_empty(),
        "down removed the data volumes"
    );
    assert_eq!(
        on_ok(
            "manager",
            &["config", "ls", "-q", "--filter", &format!("name={foreign}")]
        )
        .lines()
        .count(),
        1,
        "down removed a config that was not cdq's"
    );
    on_ok("manager", &["config", "rm", &foreign]);
    assert_eq!(
        on_ok("manager", &["node", "ls", "-q"]).lines().count(),
        3,
        "down touched the nodes"
    );
}

/// A node without its slot label is named, with the command that labels it; nothing is
/// created.
#[test]
fn a_node_missing_its_label_is_named_with_the_fix() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    ensure_lab();
    let lab = Lab::new("nolabel");
    on_ok(
        "manager",
        &["node", "update", "--label-rm", "cdq.slot", "worker1"],
    );
    let o = lab.cdq(&["up", "--ip", "127.0.0.1"]);
    on_ok(
        "manager",
        &["node", "update", "--label-add", "cdq.slot=2", "worker1"],
    );
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains(
            "error: the swarm is not ready for the stack: node `worker1` has no label `cdq.slot=2`"
        ) && o
            .stderr
            .contains("hint: on the manager: docker node update --label-add cdq.slot=2 worker1"),
        "{o}"
    );
    let label = format!("label=io.cdq.project={}", lab.project());
    assert_eq!(
        on_ok("manager", &["service", "ls", "-q", "--filter", &label]),
        ""
    );
}

/// Per-node preflight through each node's endpoint: a node missing an image its tasks run
/// is named with the image and the services; `cdq bundle load` loads onto that node only
/// what it lacks, and preflight passes. `--bundle` without a node's endpoint names the node
/// and the setting.
#[test]
fn a_node_missing_an_image_is_named_and_bundle_load_fills_it() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    ensure_lab();
    let lab = Lab::new("noimage");
    let bundle = kit_bundle().to_str().unwrap().to_string();
    let o = lab.cdq(&["bundle", "load", &bundle]);
    assert_eq!(o.code, Some(0), "{o}");

    let zk = "cdq-local/zookeeper:2-amd64";
    on_ok("worker1", &["image", "rm", zk]);
    let o = lab.cdq(&["preflight", "--ip", "127.0.0.1"]);
    assert_eq!(o.code, Some(3), "{o}");
    let row = o
        .stdout
        .lines()
        .find(|l| l.starts_with("worker1/images"))
        .unwrap_or_else(|| panic!("no worker1/images row: {o}"));
    assert!(
        row.contains("FAIL") && row.contains(&format!("missing `{zk}` (zookeeper2)")),
        "{row}"
    );
    for other in ["manager/images", "worker2/images", "swarm-nodes"] {
        let line = o
            .stdout
            .lines()
            .find(|l| l.starts_with(other))
            .unwrap_or_default();
        assert!(line.contains("PASS"), "{other}: {line}\n{o}");
    }
    for check in [
        "endpoint",
        "docker-version",
        "arch",
        "memory",
        "disk-docker",
    ] {
        let line = o
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("worker1/{check}")))
            .unwrap_or_default();
        assert!(line.contains("PASS"), "worker1/{check}: {line}\n{o}");
    }

    let o = lab.cdq(&["bundle", "load", &bundle]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stderr.contains("worker1: loaded 1 images"), "{o}");
    assert!(o.stderr.contains("manager: all "), "{o}");
    assert!(o.stderr.contains("worker2: all "), "{o}");
    on_ok("worker1", &["image", "inspect", zk]);
    let o = lab.cdq(&["preflight", "--ip", "127.0.0.1"]);
    assert_eq!(o.code, Some(0), "{o}");

    // No endpoint for worker2: `up --bundle` stops before anything, naming it.
    lab.write_config(&config(&["manager", "worker1"]));
    let o = lab.cdq(&["up", "--ip", "127.0.0.1", "--bundle", &bundle]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains(
            "error: `cdq up --bundle` on a swarm needs each node's own Docker endpoint, and node `worker2` has none"
        ) && o.stderr.contains("hint: set `cluster.endpoints.worker2` in cdq.yaml"),
        "{o}"
    );
    let label = format!("label=io.cdq.project={}", lab.project());
    assert_eq!(
        on_ok("manager", &["service", "ls", "-q", "--filter", &label]),
        ""
    );
}
