//! Real-daemon tests of the local image kit (`scripts/build-local-images.sh`).
//!
//! They run the kit images on the local Docker engine through the `docker` CLI, so they
//! need the images built first; a missing image is a failure that says how to build it,
//! never a skip. Every test makes its own containers and networks, named `cdq-kit-test-…`
//! and labelled `io.cdq.project=<unique project>`, and a `Cleanup` guard (a `tests/common`
//! `Sandbox`, for the name, the temp dir and the removal by label) removes everything
//! carrying that label (and its temp dirs) when the test ends, pass or fail.
//! Only std is used: `std::process::Command` runs `docker`.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

const KIT_VERSION: &str = "2";

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("unsupported host architecture {other}"),
    }
}

fn image(service: &str) -> String {
    image_arch(service, host_arch())
}

fn image_arch(service: &str, arch: &str) -> String {
    let img = format!("cdq-local/{service}:{KIT_VERSION}-{arch}");
    let out = docker_raw(&["image", "inspect", "-f", "{{.Id}}", &img]);
    assert!(
        out.status.success(),
        "kit image `{img}` is missing: run scripts/build-local-images.sh{} first",
        if arch == host_arch() {
            String::new()
        } else {
            format!(" --arch {arch} --only {service}")
        }
    );
    img
}

fn docker_raw(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker`: {e}"))
}

/// Runs docker and panics with its stderr if it fails.
fn docker(args: &[&str]) -> String {
    let out = docker_raw(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn logs(container: &str) -> String {
    let out = docker_raw(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn exec(container: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    docker_raw(&args)
}

/// Polls `f` every 500 ms until it returns Some or the deadline passes.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// One test's namespace: a [`common::Sandbox`] (the unique project name, a temp root, and
/// removal of the containers and networks with its label on drop), plus the directories
/// made for containers to mount, which may hold files of a container's uid.
struct Cleanup {
    sb: common::Sandbox,
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    fn new(test: &str) -> Self {
        Cleanup {
            sb: common::Sandbox::new("cdq-kit-test", test),
            dirs: Vec::new(),
        }
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.sb.project())
    }

    fn label(&self) -> String {
        format!("io.cdq.project={}", self.sb.project())
    }

    fn tempdir(&mut self, what: &str) -> PathBuf {
        let dir = self.sb.root().join(self.name(what));
        fs::create_dir_all(&dir).unwrap();
        self.dirs.push(dir.clone());
        dir
    }

    fn network(&self) -> String {
        let net = self.name("net");
        docker(&["network", "create", "--label", &self.label(), &net]);
        net
    }

    /// `docker run -d` with the project label and name; `args` go between the two.
    fn run(&self, what: &str, args: &[&str]) -> String {
        let name = self.name(what);
        let label = self.label();
        let mut full = vec![
            "run",
            "-d",
            "--name",
            name.as_str(),
            "--label",
            label.as_str(),
        ];
        full.extend_from_slice(args);
        docker(&full);
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Containers first, so nothing holds the directories below.
        self.sb.teardown();
        for dir in &self.dirs {
            if fs::remove_dir_all(dir).is_err() && dir.exists() {
                // files written by a container uid we cannot delete as a normal user
                let base = format!("cdq-local/base:{KIT_VERSION}-{}", host_arch());
                let mount = format!("{}:/d", dir.display());
                let _ = docker_raw(&[
                    "run",
                    "--rm",
                    "-v",
                    &mount,
                    &base,
                    "sh",
                    "-c",
                    "rm -rf /d/* /d/.[!.]*",
                ]);
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
}

/// Writes a config file the way `cdq up` does: mode 0600, owned by the service's uid.
fn write_secret(path: &Path, content: &str, uid: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    if let Err(e) = std::os::unix::fs::chown(path, Some(uid), Some(uid)) {
        // not root: the file stays ours; make it readable so the test can still run
        eprintln!(
            "note: cannot chown {} to {uid} ({e}); making it world-readable",
            path.display()
        );
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn bind(host: &Path, container: &str) -> String {
    format!("{}:{container}:ro", host.display())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_exited(container: &str, timeout: Duration) -> i64 {
    wait_for(
        &format!("{container} to exit"),
        timeout,
        || {
            let s = docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                container,
            ]);
            let mut it = s.split_whitespace();
            (it.next() == Some("exited")).then(|| it.next().unwrap().parse().unwrap())
        },
        || logs(container),
    )
}

fn mysql_query(container: &str, password: &str, db: &str, sql: &str) -> Option<String> {
    let pw = format!("-p{password}");
    let out = exec(
        container,
        &[
            "mysql",
            "-h127.0.0.1",
            "-uroot",
            &pw,
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where apache/kafka reads a mounted config (KafkaDockerWrapper `--mounted-configs-dir`).
const KAFKA_CONFIG: &str = "/mnt/shared/config/server.properties";

/// A KRaft combined broker+controller config with cdq's listener layout (as
/// confd/kafka/server.properties.j2 renders it), EXTERNAL advertised as `external`.
fn kraft_properties(external: &str) -> String {
    format!(
        "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@localhost:9093\n\
         controller.listener.names=CONTROLLER\n\
         listeners=INTERNAL://:9092,EXTERNAL://:9094,CONTROLLER://localhost:9093\n\
         advertised.listeners=INTERNAL://kafka:9092,EXTERNAL://{external}\n\
         listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         inter.broker.listener.name=INTERNAL\nlog.dirs=/var/lib/kafka/data\n"
    )
}

// ------------------------------------------------------------------------------------------

#[test]
fn every_kit_image_is_labelled_and_runs_as_the_contract_uid() {
    // service, kind, image User (empty = root entrypoint that drops privileges)
    let expected = [
        ("mysql", "real", ""),
        ("redis", "real", ""),
        ("zookeeper", "real", ""),
        ("kafka", "real", "appuser"),
        ("elasticsearch", "stand-in", "1000:0"),
        ("prometheus", "real", "nobody"),
        ("grafana", "stand-in", "472"),
        ("server", "stand-in", "1000"),
        ("ucenter", "stand-in", "1000"),
    ];
    for (svc, kind, user) in expected {
        let img = image(svc);
        let f = "{{.Architecture}}|{{index .Config.Labels \"io.cdq.kit.kind\"}}|{{index .Config.Labels \"io.cdq.kit.arch\"}}|{{index .Config.Labels \"io.cdq.kit.recipe-hash\"}}|{{index .Config.Labels \"org.opencontainers.image.description\"}}|{{.Config.User}}";
        let out = docker(&["image", "inspect", "-f", f, &img]);
        let parts: Vec<&str> = out.split('|').collect();
        assert_eq!(parts[0], host_arch(), "{img}: architecture");
        assert_eq!(parts[1], kind, "{img}: io.cdq.kit.kind");
        assert_eq!(parts[2], host_arch(), "{img}: io.cdq.kit.arch");
        assert_eq!(
            parts[3].len(),
            64,
            "{img}: io.cdq.kit.recipe-hash should be a sha256, got {:?}",
            parts[3]
        );
        assert!(!parts[4].is_empty(), "{img}: description label is empty");
        if kind == "stand-in" {
            assert!(
                parts[4].contains("STAND-IN"),
                "{img}: description must say STAND-IN: {}",
                parts[4]
            );
        }
        assert_eq!(parts[5], user, "{img}: image User");
    }
}

#[test]
fn mysql_runs_init_sql_once_and_keeps_data_across_recreate() {
    let mut t = Cleanup::new("mysql");
    let img = image("mysql");
    let data = t.tempdir("data");
    let init = t.tempdir("init");
    write_secret(
        &init.join("01-init.sql"),
        "CREATE TABLE init_runs (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);\n\
         INSERT INTO init_runs () VALUES ();\n\
         CREATE TABLE kept (v VARCHAR(32));\n",
        999,
    );
    let pw = "r00t pw'with\"quotes";
    let start = |what: &str| -> String {
        let env = format!("MYSQL_ROOT_PASSWORD={pw}");
        let data_mount = format!("{}:/var/lib/mysql", data.display());
        let c = t.run(
            what,
            &[
                "-e",
                &env,
                "-e",
                "MYSQL_DATABASE=cd",
                "-v",
                &data_mount,
                "-v",
                &bind(&init, "/docker-entrypoint-initdb.d"),
                &img,
            ],
        );
        wait_for(
            "mysql to answer mysqladmin ping and a root query",
            Duration::from_secs(90),
            || {
                let ping = exec(&c, &["mysqladmin", "ping", "-h", "127.0.0.1", "--silent"]);
                if !ping.status.success() {
                    return None;
                }
                mysql_query(&c, pw, "cd", "SELECT 1")
            },
            || logs(&c),
        );
        c
    };

    let first = start("first");
    assert_eq!(
        mysql_query(&first, pw, "cd", "SELECT COUNT(*) FROM init_runs").unwrap(),
        "1"
    );
    mysql_query(&first, pw, "cd", "INSERT INTO kept VALUES ('survives')")
        .expect("insert into kept");
    let server_user = exec(&first, &["sh", "-c", "ps -o user= -p 1"]);
    assert_eq!(
        String::from_utf8_lossy(&server_user.stdout).trim(),
        "mysql",
        "server must run as mysql (uid 999)"
    );
    assert_eq!(docker(&["exec", &first, "id", "-u", "mysql"]), "999");
    assert!(
        logs(&first).contains("running /docker-entrypoint-initdb.d/01-init.sql"),
        "{}",
        logs(&first)
    );
    docker(&["rm", "-f", "-v", &first]);

    let second = start("second");
    assert_eq!(
        mysql_query(&second, pw, "cd", "SELECT COUNT(*) FROM init_runs").unwrap(),
        "1",
        "init SQL ran again on an initialised data dir"
    );
    assert_eq!(
        mysql_query(&second, pw, "cd", "SELECT v FROM kept").unwrap(),
        "survives"
    );
    let l = logs(&second);
    assert!(
        !l.contains("running /docker-entrypoint-initdb.d"),
        "init ran on the second start:\n{l}"
    );
    assert!(l.contains("skipping initialization"), "{l}");
}

/// The middleware the stand-in server needs, on one network, with passwords set.
struct Stack {
    net: String,
    mysql_pw: String,
    redis_pw: String,
}

fn start_middleware(t: &mut Cleanup) -> Stack {
    let net = t.network();
    let stack = Stack {
        net: net.clone(),
        mysql_pw: "cd-Pw-1".into(),
        redis_pw: "redis-Pw-2".into(),
    };
    let cfg = t.tempdir("cfg");
    let alias = |a: &str| format!("--network-alias={a}");
    let netarg = format!("--network={net}");

    write_secret(
        &cfg.join("redis.conf"),
        &format!("requirepass {}\nappendonly yes\n", stack.redis_pw),
        999,
    );
    write_secret(
        &cfg.join("zoo.cfg"),
        "dataDir=/data\ndataLogDir=/datalog\nclientPort=2181\ntickTime=2000\ninitLimit=5\nsyncLimit=2\n4lw.commands.whitelist=ruok,srvr\n",
        1000,
    );
    write_secret(
        &cfg.join("server.properties"),
        &kraft_properties("127.0.0.1:9094"),
        1000,
    );
    write_secret(
        &cfg.join("elasticsearch.yml"),
        "cluster.name: cd\nnetwork.host: 0.0.0.0\ndiscovery.type: single-node\n",
        1000,
    );

    let root_env = "MYSQL_ROOT_PASSWORD=root-pw";
    let user_pw = format!("MYSQL_PASSWORD={}", stack.mysql_pw);
    t.run(
        "mysql",
        &[
            &netarg,
            &alias("mysql"),
            "-e",
            root_env,
            "-e",
            "MYSQL_DATABASE=cd_server",
            "-e",
            "MYSQL_USER=cd_server",
            "-e",
            &user_pw,
            &image("mysql"),
        ],
    );
    t.run(
        "redis",
        &[
            &netarg,
            &alias("redis"),
            "-v",
            &bind(&cfg.join("redis.conf"), "/usr/local/etc/redis/redis.conf"),
            &image("redis"),
            "redis-server",
            "/usr/local/etc/redis/redis.conf",
        ],
    );
    t.run(
        "zookeeper",
        &[
            &netarg,
            &alias("zookeeper"),
            "-e",
            "ZOO_MY_ID=1",
            "-v",
            &bind(&cfg.join("zoo.cfg"), "/conf/zoo.cfg"),
            &image("zookeeper"),
        ],
    );
    t.run(
        "kafka",
        &[
            &netarg,
            &alias("kafka"),
            "-v",
            &bind(&cfg.join("server.properties"), KAFKA_CONFIG),
            &image("kafka"),
        ],
    );
    t.run(
        "elasticsearch",
        &[
            &netarg,
            &alias("elasticsearch"),
            "-v",
            &bind(
                &cfg.join("elasticsearch.yml"),
                "/usr/share/elasticsearch/config/elasticsearch.yml",
            ),
            &image("elasticsearch"),
        ],
    );
    stack
}

fn application_yml(stack: &Stack, redis_pw: &str) -> String {
    format!(
        "server:\n  port: 8080\nspring:\n  application:\n    name: cd-server\n  datasource:\n    url: jdbc:mysql://mysql:3306/cd_server?useSSL=false&characterEncoding=utf8\n    username: cd_server\n    password: \"{}\"\n  redis:\n    host: redis\n    port: 6379\n    password: \"{redis_pw}\"\n  kafka:\n    bootstrap-servers: kafka:9092\n  elasticsearch:\n    uris: http://elasticsearch:9200\nzookeeper:\n  connect-string: zookeeper:2181\nmanagement:\n  endpoints:\n    web:\n      exposure:\n        include: health,prometheus\n",
        stack.mysql_pw
    )
}

fn http_status(container: &str, path: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:8080{path}");
    let out = exec(
        container,
        &["curl", "-sS", "-o", "/tmp/body", "-w", "%{http_code}", &url],
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let body = exec(container, &["cat", "/tmp/body"]);
    (code, String::from_utf8_lossy(&body.stdout).to_string())
}

#[test]
fn standin_server_is_healthy_only_when_every_dependency_works() {
    let mut t = Cleanup::new("server");
    let stack = start_middleware(&mut t);
    let cfg = t.tempdir("app");
    write_secret(
        &cfg.join("good/application.yml"),
        &application_yml(&stack, &stack.redis_pw),
        1000,
    );
    write_secret(
        &cfg.join("bad/application.yml"),
        &application_yml(&stack, "wrong-redis-password"),
        1000,
    );
    let netarg = format!("--network={}", stack.net);
    let img = image("server");
    let good = t.run(
        "good",
        &[
            &netarg,
            "-e",
            "CDQ_STANDIN_CHECK_INTERVAL=2",
            "-v",
            &bind(
                &cfg.join("good/application.yml"),
                "/app/config/application.yml",
            ),
            &img,
        ],
    );
    let bad = t.run(
        "bad",
        &[
            &netarg,
            "-e",
            "CDQ_STANDIN_CHECK_INTERVAL=2",
            "-v",
            &bind(
                &cfg.join("bad/application.yml"),
                "/app/config/application.yml",
            ),
            &img,
        ],
    );

    let body = wait_for(
        "the stand-in server with a correct config to report healthy",
        Duration::from_secs(120),
        || {
            let (code, body) = http_status(&good, "/actuator/health");
            (code == "200").then_some(body)
        },
        || {
            format!(
                "last health: {:?}\nlogs:\n{}",
                http_status(&good, "/actuator/health"),
                logs(&good)
            )
        },
    );
    for dep in ["mysql", "redis", "kafka", "zookeeper", "elasticsearch"] {
        assert!(
            body.contains(&format!("\"{dep}\"")),
            "health does not name {dep}: {body}"
        );
    }
    let (code, alias) = http_status(&good, "/health");
    assert_eq!(code, "200", "{alias}");
    let (code, metrics) = http_status(&good, "/actuator/prometheus");
    assert_eq!(code, "200");
    assert!(
        metrics.contains(
            "cdq_standin_dependency_up{application=\"cd-server\",dependency=\"redis\"} 1"
        ),
        "{metrics}"
    );
    let (code, _) = http_status(&good, "/metrics");
    assert_eq!(code, "200");

    // The wrong-password server sees the same, now working, middleware: everything but redis
    // comes up, redis stays down, and the log names it.
    let metric = |dep: &str, v: u8| {
        format!("cdq_standin_dependency_up{{application=\"cd-server\",dependency=\"{dep}\"}} {v}")
    };
    wait_for(
        "the wrong-password server to see every other dependency up and redis down",
        Duration::from_secs(60),
        || {
            let (_, m) = http_status(&bad, "/metrics");
            let others_up = ["mysql", "kafka", "zookeeper", "elasticsearch"]
                .iter()
                .all(|d| m.contains(&metric(d, 1)));
            (others_up && m.contains(&metric("redis", 0))).then_some(())
        },
        || {
            format!(
                "metrics: {:?}\nlogs:\n{}",
                http_status(&bad, "/metrics"),
                logs(&bad)
            )
        },
    );
    let (code, body) = http_status(&bad, "/actuator/health");
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("\"status\": \"DOWN\""), "{body}");
    thread::sleep(Duration::from_secs(3));
    let (code, _) = http_status(&bad, "/actuator/health");
    assert_eq!(
        code, "503",
        "a wrong redis password must keep the server unhealthy"
    );
    let l = logs(&bad);
    assert!(
        l.lines()
            .any(|line| line.contains("dependency redis is DOWN") && line.contains("WRONGPASS")),
        "the log must name the failing dependency (redis) and the error:\n{l}"
    );
    assert!(
        l.contains("STAND-IN"),
        "the stand-in must say so at start:\n{l}"
    );
}

#[test]
fn kafka_produce_and_consume_through_both_advertised_listeners() {
    let mut t = Cleanup::new("kafka");
    let net = t.network();
    let cfg = t.tempdir("cfg");
    let port = free_port();
    write_secret(
        &cfg.join("server.properties"),
        &kraft_properties(&format!("127.0.0.1:{port}")),
        1000,
    );
    let publish = format!("127.0.0.1:{port}:9094");
    let netarg = format!("--network={net}");
    let kafka = t.run(
        "kafka",
        &[
            &netarg,
            "--network-alias=kafka",
            "-p",
            &publish,
            "-v",
            &bind(&cfg.join("server.properties"), KAFKA_CONFIG),
            &image("kafka"),
        ],
    );
    wait_for(
        "kafka's internal listener (bash </dev/tcp/127.0.0.1/9092)",
        Duration::from_secs(30),
        || {
            exec(&kafka, &["bash", "-c", "</dev/tcp/127.0.0.1/9092"])
                .status
                .success()
                .then_some(())
        },
        || logs(&kafka),
    );
    assert_eq!(docker(&["exec", &kafka, "id", "-u"]), "1000");

    // A real Kafka client (Debian's python3-kafka, shipped in the kit's server image) on the
    // host network, bootstrapping from the published EXTERNAL port: it must be told the
    // advertised EXTERNAL address and produce + consume through it.
    let client = |what: &str, net: &str, bootstrap: &str| -> String {
        let name = t.name(what);
        let out = docker_raw(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--label",
            &t.label(),
            net,
            "--entrypoint",
            "kafka-roundtrip",
            &image("server"),
            bootstrap,
            what,
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kafka round trip via {bootstrap} failed:\n{text}\nbroker logs:\n{}",
            logs(&kafka)
        );
        text
    };
    let external = client("external", "--network=host", &format!("127.0.0.1:{port}"));
    assert!(
        external.contains(&format!("advertised brokers: 127.0.0.1:{port}")),
        "{external}"
    );
    assert!(external.contains("consumed "), "{external}");

    let internal = client("internal", &netarg, "kafka:9092");
    assert!(
        internal.contains("advertised brokers: kafka:9092"),
        "{internal}"
    );
}

#[test]
fn prometheus_and_grafana_refuse_broken_config() {
    let mut t = Cleanup::new("cfgcheck");
    let dir = t.tempdir("cfg");

    // prometheus: a good file serves /-/healthy as nobody, a broken one exits non-zero
    fs::write(dir.join("good.yml"), "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:9090']\n").unwrap();
    fs::write(dir.join("bad.yml"), "global:\n  scrape_interval: [15s\n").unwrap();
    for f in ["good.yml", "bad.yml"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let prom_good = t.run(
        "prom-good",
        &[
            "-v",
            &bind(&dir.join("good.yml"), "/etc/prometheus/prometheus.yml"),
            &image("prometheus"),
        ],
    );
    let prom_bad = t.run(
        "prom-bad",
        &[
            "-v",
            &bind(&dir.join("bad.yml"), "/etc/prometheus/prometheus.yml"),
            &image("prometheus"),
        ],
    );

    // grafana stand-in: valid provisioning serves /api/health, a broken datasource exits 1
    let good_prov = dir.join("prov-good");
    let bad_prov = dir.join("prov-bad");
    write_secret(
        &good_prov.join("datasources/ds.yaml"),
        "apiVersion: 1\ndatasources:\n  - name: Prometheus\n    type: prometheus\n    url: http://prometheus:9090\n",
        472,
    );
    write_secret(
        &dir.join("dash/cd.json"),
        "{\"title\": \"cd\", \"panels\": []}",
        472,
    );
    write_secret(
        &bad_prov.join("datasources/ds.yaml"),
        "apiVersion: 1\ndatasources:\n  - name: [Prometheus\n",
        472,
    );
    let dash = bind(&dir.join("dash"), "/etc/grafana/dashboards");
    let graf_good = t.run(
        "graf-good",
        &[
            "-e",
            "GF_SECURITY_ADMIN_PASSWORD=x",
            "-v",
            &bind(&good_prov, "/etc/grafana/provisioning"),
            "-v",
            &dash,
            &image("grafana"),
        ],
    );
    let graf_bad = t.run(
        "graf-bad",
        &[
            "-v",
            &bind(&bad_prov, "/etc/grafana/provisioning"),
            "-v",
            &dash,
            &image("grafana"),
        ],
    );

    let code = wait_exited(&prom_bad, Duration::from_secs(30));
    assert_ne!(code, 0, "prometheus with a broken prometheus.yml must fail");
    assert!(
        logs(&prom_bad).contains("prometheus.yml"),
        "{}",
        logs(&prom_bad)
    );
    let code = wait_exited(&graf_bad, Duration::from_secs(30));
    assert_ne!(
        code, 0,
        "grafana stand-in with broken provisioning must fail"
    );
    assert!(
        logs(&graf_bad).contains("/etc/grafana/provisioning/datasources/ds.yaml"),
        "{}",
        logs(&graf_bad)
    );

    wait_for(
        "prometheus /-/healthy",
        Duration::from_secs(30),
        || {
            exec(
                &prom_good,
                &["wget", "-qO-", "http://127.0.0.1:9090/-/healthy"],
            )
            .status
            .success()
            .then_some(())
        },
        || logs(&prom_good),
    );
    assert_eq!(docker(&["exec", &prom_good, "id", "-u"]), "65534");
    wait_for(
        "grafana stand-in /api/health",
        Duration::from_secs(30),
        || {
            exec(
                &graf_good,
                &["wget", "-qO-", "http://127.0.0.1:3000/api/health"],
            )
            .status
            .success()
            .then_some(())
        },
        || logs(&graf_good),
    );
    assert_eq!(docker(&["exec", &graf_good, "id", "-u"]), "472");
}

#[test]
fn elasticsearch_standin_indexes_documents_and_refuses_unparsable_config() {
    let mut t = Cleanup::new("es");
    let dir = t.tempdir("cfg");
    write_secret(
        &dir.join("good.yml"),
        "cluster.name: cd\nhttp.port: 9200\n",
        1000,
    );
    write_secret(&dir.join("bad.yml"), "cluster.name: [cd\n", 1000);
    let target = "/usr/share/elasticsearch/config/elasticsearch.yml";
    let good = t.run(
        "good",
        &[
            "-v",
            &bind(&dir.join("good.yml"), target),
            &image("elasticsearch"),
        ],
    );
    let bad = t.run(
        "bad",
        &[
            "-v",
            &bind(&dir.join("bad.yml"), target),
            &image("elasticsearch"),
        ],
    );
    assert_ne!(
        wait_exited(&bad, Duration::from_secs(30)),
        0,
        "an unparsable elasticsearch.yml must fail"
    );
    assert!(logs(&bad).contains("elasticsearch.yml"), "{}", logs(&bad));
    wait_for(
        "elasticsearch stand-in cluster health",
        Duration::from_secs(30),
        || {
            exec(
                &good,
                &[
                    "curl",
                    "-fsS",
                    "http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=1s",
                ],
            )
            .status
            .success()
            .then_some(())
        },
        || logs(&good),
    );
    let put = docker(&[
        "exec",
        &good,
        "curl",
        "-fsS",
        "-XPUT",
        "-H",
        "Content-Type: application/json",
        "http://127.0.0.1:9200/cd/_doc/1",
        "-d",
        "{\"k\":\"v\"}",
    ]);
    assert!(put.contains("\"result\":\"created\""), "{put}");
    let got = docker(&[
        "exec",
        &good,
        "curl",
        "-fsS",
        "http://127.0.0.1:9200/cd/_doc/1",
    ]);
    assert!(
        got.contains("\"found\":true") && got.contains("\"k\":\"v\""),
        "{got}"
    );
    assert_eq!(docker(&["exec", &good, "id", "-u"]), "1000");
}

fn redis_answers_ping(arch: &str) {
    let img = image_arch("redis", arch);
    let f = "{{.Architecture}} {{index .Config.Labels \"io.cdq.kit.arch\"}}";
    assert_eq!(
        docker(&["image", "inspect", "-f", f, &img]),
        format!("{arch} {arch}")
    );
    let mut t = Cleanup::new(&format!("redis-{arch}"));
    let dir = t.tempdir("cfg");
    write_secret(&dir.join("redis.conf"), "requirepass s3cret\n", 999);
    let platform = format!("--platform=linux/{arch}");
    let c = t.run(
        "redis",
        &[
            &platform,
            "-e",
            "REDISCLI_AUTH=s3cret",
            "-v",
            &bind(&dir.join("redis.conf"), "/usr/local/etc/redis/redis.conf"),
            &img,
            "redis-server",
            "/usr/local/etc/redis/redis.conf",
        ],
    );
    wait_for(
        &format!("{img} to answer PING (healthcheck `redis-cli ping | grep -q PONG`)"),
        Duration::from_secs(60),
        || {
            exec(&c, &["sh", "-c", "redis-cli ping | grep -q PONG"])
                .status
                .success()
                .then_some(())
        },
        || logs(&c),
    );
    let noauth = exec(&c, &["sh", "-c", "REDISCLI_AUTH= redis-cli ping"]);
    assert!(
        String::from_utf8_lossy(&noauth.stdout).contains("NOAUTH"),
        "requirepass from the mounted config must apply"
    );
    assert_eq!(
        docker(&["exec", &c, "uname", "-m"]),
        if arch == "arm64" { "aarch64" } else { "x86_64" }
    );
    assert_eq!(
        docker(&["exec", &c, "sh", "-c", "ps -o user= -p 1"]),
        "redis"
    );
    assert_eq!(docker(&["exec", &c, "id", "-u", "redis"]), "999");
}

#[test]
fn redis_answers_ping_with_auth() {
    redis_answers_ping(host_arch());
}

#[test]
fn arm64_redis_is_arm64_and_answers_ping_under_emulation() {
    common::ensure_arm64_kit(&["redis"]);
    redis_answers_ping("arm64");
}

// --- issue 12: the kit follows the apache/kafka and mysql:8.4 contracts --------------------

/// Runs the kit kafka with `config` mounted where apache/kafka reads it (and `extra` docker
/// arguments), waits for it to exit, and returns (exit code, logs).
fn kafka_exit(t: &mut Cleanup, what: &str, config: &str, extra: &[&str]) -> (i64, String) {
    let cfg = t.tempdir(&format!("{what}-cfg"));
    write_secret(&cfg.join("server.properties"), config, 1000);
    let mount = bind(&cfg.join("server.properties"), KAFKA_CONFIG);
    let mut args = vec!["-v", mount.as_str()];
    args.extend_from_slice(extra);
    let img = image("kafka");
    args.push(&img);
    let c = t.run(what, &args);
    let code = wait_exited(&c, Duration::from_secs(30));
    (code, logs(&c))
}

#[test]
fn kafka_refuses_a_zookeeper_mode_config_like_the_apache_image() {
    let mut t = Cleanup::new("kafka-zk");
    // cdq's old render for bitnami/kafka 3.6: listeners plus zookeeper.connect, no roles
    let (code, out) = kafka_exit(
        &mut t,
        "zk",
        "broker.id=1\nlisteners=INTERNAL://:9092\ninter.broker.listener.name=INTERNAL\n\
         listener.security.protocol.map=INTERNAL:PLAINTEXT\nzookeeper.connect=zookeeper:2181\n",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("appears to be for a legacy cluster"),
        "StorageTool's message expected:\n{out}"
    );
    // KRaft roles next to a zookeeper.connect are refused too (no migration mode in 4.x)
    let mixed = format!(
        "{}zookeeper.connect=zookeeper:2181\n",
        kraft_properties("127.0.0.1:9094")
    );
    let (code, out) = kafka_exit(&mut t, "mixed", &mixed, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("legacy cluster"), "{out}");
}

#[test]
fn kafka_refuses_a_kraft_config_without_a_controller_quorum() {
    let mut t = Cleanup::new("kafka-quorum");
    let no_quorum = kraft_properties("127.0.0.1:9094")
        .replace("controller.quorum.voters=1@localhost:9093\n", "");
    let (code, out) = kafka_exit(&mut t, "noquorum", &no_quorum, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("controller.quorum.voters must contain a parseable set of controllers"),
        "{out}"
    );
    let no_node = kraft_properties("127.0.0.1:9094").replace("node.id=1\n", "");
    let (code, out) = kafka_exit(&mut t, "nonode", &no_node, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"node.id\""), "{out}");
    let advertised_controller = kraft_properties("127.0.0.1:9094").replace(
        "advertised.listeners=INTERNAL://kafka:9092,",
        "advertised.listeners=CONTROLLER://localhost:9093,INTERNAL://kafka:9092,",
    );
    let (code, out) = kafka_exit(&mut t, "advctl", &advertised_controller, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("must not contain KRaft controller listeners"),
        "{out}"
    );
}

#[test]
fn kafka_formats_its_data_dir_as_uid_1000_and_refuses_foreign_data() {
    let mut t = Cleanup::new("kafka-data");
    let cfg = t.tempdir("cfg");
    write_secret(
        &cfg.join("server.properties"),
        &kraft_properties("127.0.0.1:9094"),
        1000,
    );
    let data = t.tempdir("data");
    // as `cdq up` does for a new data directory: hand it to the image's user
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/d", data.display()),
        &format!("cdq-local/base:{KIT_VERSION}-{}", host_arch()),
        "chown",
        "1000:1000",
        "/d",
    ]);
    let conf = bind(&cfg.join("server.properties"), KAFKA_CONFIG);
    let vol = format!("{}:/var/lib/kafka/data", data.display());
    let kafka = t.run(
        "kafka",
        &[
            "-v",
            &conf,
            "-v",
            &vol,
            "-e",
            "CLUSTER_ID=cdqKitTestCluster0001A",
            &image("kafka"),
        ],
    );
    wait_for(
        "kafka to listen on 9092",
        Duration::from_secs(30),
        || {
            exec(&kafka, &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9092"])
                .status
                .success()
                .then_some(())
        },
        || logs(&kafka),
    );
    let meta = docker(&["exec", &kafka, "cat", "/var/lib/kafka/data/meta.properties"]);
    assert!(meta.contains("version=1"), "{meta}");
    assert!(meta.contains("cluster.id=cdqKitTestCluster0001A"), "{meta}");
    assert!(meta.contains("node.id=1"), "{meta}");
    assert_eq!(
        docker(&[
            "exec",
            &kafka,
            "stat",
            "-c",
            "%u",
            "/var/lib/kafka/data/meta.properties"
        ]),
        "1000"
    );
    // the final config is the mounted one, where the Apache image writes it
    let fin = docker(&["exec", &kafka, "cat", "/opt/kafka/config/server.properties"]);
    assert!(fin.contains("process.roles=broker,controller"), "{fin}");
    docker(&["rm", "-f", &kafka]);

    // the same data under another CLUSTER_ID: refused, as Kafka refuses it
    let again = t.run(
        "other",
        &[
            "-v",
            &conf,
            "-v",
            &vol,
            "-e",
            "CLUSTER_ID=anotherClusterId00000A",
            &image("kafka"),
        ],
    );
    assert_eq!(
        wait_exited(&again, Duration::from_secs(30)),
        1,
        "{}",
        logs(&again)
    );
    assert!(
        logs(&again).contains("Invalid cluster.id"),
        "{}",
        logs(&again)
    );

    // ZooKeeper-mode data (what bitnami/kafka 3.6 left): refused, data untouched
    let zk = "broker.id=1\nversion=0\ncluster.id=oldZkCluster\n";
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/d", data.display()),
        &format!("cdq-local/base:{KIT_VERSION}-{}", host_arch()),
        "sh",
        "-c",
        &format!("printf '{}' > /d/meta.properties", zk.replace('\n', "\\n")),
    ]);
    let old = t.run("zkdata", &["-v", &conf, "-v", &vol, &image("kafka")]);
    assert_eq!(
        wait_exited(&old, Duration::from_secs(30)),
        1,
        "{}",
        logs(&old)
    );
    assert!(logs(&old).contains("ZooKeeper mode"), "{}", logs(&old));
    assert_eq!(
        fs::read_to_string(data.join("meta.properties")).unwrap(),
        zk
    );
}

#[test]
fn kafka_builds_its_config_from_kafka_env_without_a_mounted_file() {
    let t = Cleanup::new("kafka-env");
    // apache/kafka's documented env-only setup (docker/examples, single-node plaintext)
    let kafka = t.run(
        "kafka",
        &[
            "-e",
            "KAFKA_NODE_ID=1",
            "-e",
            "KAFKA_PROCESS_ROLES=broker,controller",
            "-e",
            "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093",
            "-e",
            "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092",
            "-e",
            "KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER",
            "-e",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "-e",
            "KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093",
            "-e",
            "KAFKA_HEAP_OPTS=-Xmx256m",
            &image("kafka"),
        ],
    );
    wait_for(
        "kafka to listen on 9092",
        Duration::from_secs(30),
        || {
            exec(&kafka, &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9092"])
                .status
                .success()
                .then_some(())
        },
        || logs(&kafka),
    );
    let fin = docker(&["exec", &kafka, "cat", "/opt/kafka/config/server.properties"]);
    assert!(
        fin.contains("controller.quorum.voters=1@localhost:9093"),
        "{fin}"
    );
    assert!(
        fin.contains("listener.security.protocol.map=CONTROLLER:PLAINTEXT"),
        "{fin}"
    );
    // KAFKA_HEAP_OPTS is a JVM setting, excluded from the properties like upstream does
    assert!(!fin.contains("heap"), "{fin}");
}

#[test]
fn mysql_refuses_what_the_84_entrypoint_refuses() {
    let mut t = Cleanup::new("mysql84");
    let cfg = t.tempdir("cfg");
    // `default-authentication-plugin` was removed in MySQL 8.4: mysqld 8.4 exits on it
    write_secret(
        &cfg.join("cd.cnf"),
        "[mysqld]\ndefault-authentication-plugin = mysql_native_password\n",
        999,
    );
    let c = t.run(
        "removed",
        &[
            "-e",
            "MYSQL_ROOT_PASSWORD=pw",
            "-v",
            &bind(&cfg.join("cd.cnf"), "/etc/mysql/conf.d/cd.cnf"),
            &image("mysql"),
        ],
    );
    assert_ne!(wait_exited(&c, Duration::from_secs(60)), 0, "{}", logs(&c));
    assert!(
        logs(&c).contains("unknown variable 'default-authentication-plugin"),
        "{}",
        logs(&c)
    );
    // with `loose-` it starts (both servers skip an unknown loose option)
    let loose = cfg.join("loose");
    fs::create_dir_all(&loose).unwrap();
    write_secret(
        &loose.join("cd.cnf"),
        "[mysqld]\nloose-default-authentication-plugin = mysql_native_password\n",
        999,
    );
    let ok = t.run(
        "loose",
        &[
            "-e",
            "MYSQL_ROOT_PASSWORD=pw",
            "-v",
            &bind(&loose.join("cd.cnf"), "/etc/mysql/conf.d/cd.cnf"),
            &image("mysql"),
        ],
    );
    wait_for(
        "mysql with a loose- option to answer",
        Duration::from_secs(90),
        || mysql_query(&ok, "pw", "mysql", "SELECT 1"),
        || logs(&ok),
    );
    // MYSQL_USER=root is refused before initialising, as docker_verify_minimum_env does
    let root = t.run(
        "root",
        &[
            "-e",
            "MYSQL_ROOT_PASSWORD=pw",
            "-e",
            "MYSQL_USER=root",
            "-e",
            "MYSQL_PASSWORD=x",
            &image("mysql"),
        ],
    );
    assert_ne!(
        wait_exited(&root, Duration::from_secs(60)),
        0,
        "{}",
        logs(&root)
    );
    assert!(
        logs(&root).contains("MYSQL_USER and MYSQL_PASSWORD are for configuring a regular user"),
        "{}",
        logs(&root)
    );
}
