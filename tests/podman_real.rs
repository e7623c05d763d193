//! cdq on Podman (issue 14): a real `podman system service` (Debian's podman, installed if
//! missing) on a socket, storage, run root and network config of the test's own, so neither
//! Docker nor any other Podman user is touched; the kit images loaded into it from Docker
//! (`docker save | podman load`); then `cdq up`, `status`, `logs` and `down` through
//! `DOCKER_HOST` to healthy for mysql, redis, zookeeper and kafka.
//!
//! What it proves beyond "the API answers" (../shared/notes/podman.md): health reaches
//! `healthy` although no systemd runs Podman's checks (cdq runs them through libpod), the
//! containers start although Podman would ask runc for limits above the host's, a stop
//! timeout is set (Podman 4.3 otherwise kills at once), and a second `up` changes nothing
//! although Podman reports `localhost/`-qualified image names.
//!
//! Everything the test started is stopped by pid when it ends, pass or fail: the service,
//! and the conmon processes of its runs (found by the test's own run root in their command
//! line); its directory is removed.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdq::assets::Assets;
use cdq::catalog::Catalog;
use cdq::services::{Arch, Service};
use cdq::settings::ImageSet;
use common::{Out, Sandbox, free_ports, preflight_check, run};

const SERVICES: [Service; 4] = [
    Service::Mysql,
    Service::Redis,
    Service::Zookeeper,
    Service::Kafka,
];

/// The kit image of a service for this host, as the catalogue names it.
fn kit_image(service: Service) -> String {
    let arch = Arch::host().expect("an amd64 or arm64 host");
    Catalog::load(
        &Assets::default(),
        arch,
        &ImageSet::Local,
        &cdq::imageref::Pins::default(),
    )
    .unwrap()
    .image(service)
    .to_string()
}

/// Debian's podman, installed when missing (as scripts/setup.sh does).
fn ensure_podman() {
    let have = Command::new("podman").arg("--version").output();
    if have.is_ok_and(|o| o.status.success()) {
        return;
    }
    eprintln!("podman_real: installing Debian's podman (apt-get install -y podman)");
    let o = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "podman"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if o.code != Some(0) {
        let u = run(Command::new("apt-get").args(["update", "-q"]));
        assert_eq!(u.code, Some(0), "apt-get update: {u}");
        let o = run(Command::new("apt-get")
            .args(["install", "-y", "-q", "podman"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
        assert_eq!(o.code, Some(0), "apt-get install podman: {o}");
    }
}

/// A `podman system service` of the test's own; stopped and cleaned on drop.
struct PodmanService {
    dir: tempfile::TempDir,
    child: Child,
    /// `iptables -S` of the filter and nat tables before the service started: netavark
    /// leaves its chains and rules after a network is removed, and what it added for this
    /// test is removed at the end.
    firewall_before: Vec<(String, String)>,
}

impl PodmanService {
    fn start() -> PodmanService {
        ensure_podman();
        let dir = tempfile::Builder::new()
            .prefix("cdq-podman-")
            .tempdir()
            .unwrap();
        for d in ["root", "runroot", "run", "networks"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("service.log")).unwrap();
        let mut cmd = Command::new("podman");
        cmd.args(global_flags(dir.path()))
            .args(["system", "service", "--time=0"])
            .arg(format!(
                "unix://{}",
                dir.path().join("run/podman.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let firewall_before = firewall();
        let child = cmd.spawn().expect("starting podman system service");
        let s = PodmanService {
            dir,
            child,
            firewall_before,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s.pings() {
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer within 60 s: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/podman.sock")
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }

    /// `podman` on this service's storage.
    fn podman(&self, args: &[&str]) -> Out {
        run(Command::new("podman")
            .args(global_flags(self.dir.path()))
            .args(args))
    }

    /// `docker save IMAGE | podman load`: the kit moves from Docker's store into this one.
    fn load(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("podman")
            .args(global_flags(self.dir.path()))
            .args(["load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image}");
        assert!(
            load.status.success(),
            "podman load {image}: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    /// Processes whose command line names this service's run root (its conmons), by pid.
    fn conmons(&self) -> Vec<u32> {
        let runroot = self.dir.path().join("runroot");
        let needle = runroot.to_string_lossy().into_owned();
        let mut pids = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == self.child.id() {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() == "conmon" && String::from_utf8_lossy(&cmdline).contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

/// (table, rule) for every line of `iptables -t TABLE -S` in filter and nat.
fn firewall() -> Vec<(String, String)> {
    let mut out = vec![];
    for table in ["filter", "nat"] {
        let o = run(Command::new("iptables").args(["-t", table, "-S"]));
        out.extend(o.stdout.lines().map(|l| (table.to_string(), l.to_string())));
    }
    out
}

/// Removes the netavark rules and chains that appeared since `before`: rules first (last
/// added first), then the chains, which must be empty to go.
fn remove_netavark_additions(before: &[(String, String)]) {
    let added: Vec<(String, String)> = firewall()
        .into_iter()
        .filter(|x| !before.contains(x))
        .filter(|(_, l)| l.contains("NETAVARK") || l.contains("podman"))
        .collect();
    for (table, rule) in added.iter().rev() {
        if let Some(spec) = rule.strip_prefix("-A ") {
            // `iptables -S` quotes comments; the shell splits them as iptables wrote them.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -t {table} -D {spec}"))
                .output();
        }
    }
    for (table, rule) in &added {
        if let Some(chain) = rule.strip_prefix("-N ") {
            let _ = Command::new("iptables")
                .args(["-t", table, "-X", chain])
                .output();
        }
    }
}

/// Unmounts what Podman left mounted under `dir` (its service mounts the overlay store onto
/// itself), deepest first, lazily, until nothing is left (mounts may be stacked).
fn unmount_under(dir: &Path) {
    for _ in 0..10 {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(dir))
            .map(str::to_string)
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", &p]).output();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn global_flags(dir: &Path) -> Vec<String> {
    vec![
        "--root".into(),
        dir.join("root").display().to_string(),
        "--runroot".into(),
        dir.join("runroot").display().to_string(),
        "--network-config-dir".into(),
        dir.join("networks").display().to_string(),
    ]
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        // What cdq left (on a failed run), then the images: all of it is this test's store.
        let _ = self.podman(&["rm", "-af", "-t", "2"]);
        let _ = self.podman(&["network", "prune", "-f"]);
        let _ = self.podman(&["rmi", "-af"]);
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Each exec leaves its conmon for a while: they are ours, ended by pid.
        for pid in self.conmons() {
            let _ = Command::new("kill").args([&pid.to_string()]).status();
        }
        // The overlay store unmounts with `podman system reset`'s help if anything stayed.
        let _ = Command::new("podman")
            .args(global_flags(self.dir.path()))
            .args(["system", "reset", "-f"])
            .output();
        unmount_under(self.dir.path());
        remove_netavark_additions(&self.firewall_before);
    }
}

fn json(o: &Out) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {o}"))
}

#[test]
fn podman_runs_the_stack_to_healthy_through_its_docker_api() {
    let pm = PodmanService::start();
    for s in SERVICES {
        pm.load(&kit_image(s));
    }
    let sb = Sandbox::new("cdqp", "podman")
        .flags(&["--images", "local"])
        .env("DOCKER_HOST", &pm.docker_host())
        .down_on_drop("10");
    let [kafka] = free_ports::<1>();
    sb.write_config(&format!(
        "services: [mysql, redis, zookeeper, kafka]\nports: {{ kafka: {kafka} }}\n"
    ));

    // Preflight names the engine it found.
    let o = sb.cdq(&["preflight", "--json", "--ip", "127.0.0.1"]);
    let v = json(&o);
    let engine = preflight_check(&v, "container-engine");
    assert_eq!(engine["status"], "pass", "{o}");
    assert!(
        engine["found"].as_str().unwrap().starts_with("Podman 4."),
        "{o}"
    );
    assert_eq!(
        preflight_check(&v, "docker-version")["status"],
        "pass",
        "{o}"
    );

    let up = sb.cdq(&["up", "--ip", "127.0.0.1", "--progress", "plain"]);
    assert_eq!(up.code, Some(0), "`cdq up` on Podman: {up}\n{}", pm.log());
    for s in SERVICES {
        assert!(
            up.stderr.contains(&format!("{}: healthy", s.name())),
            "{s} never said healthy: {up}"
        );
    }

    // `status` reads health Podman itself now holds (cdq ran the checks through libpod).
    let st = sb.cdq(&["status", "--json"]);
    assert_eq!(st.code, Some(0), "{st}");
    let v = json(&st);
    assert_eq!(v["healthy"], true, "{st}");
    let rows = v["services"].as_array().unwrap();
    assert_eq!(rows.len(), SERVICES.len(), "{st}");
    for r in rows {
        assert_eq!(
            (&r["state"], &r["health"]),
            (&"running".into(), &"healthy".into()),
            "{r}"
        );
    }
    let name = |s: &str| format!("{}-{s}-1", sb.project());
    let health = pm.podman(&[
        "inspect",
        &name("redis"),
        "--format",
        "{{.State.Health.Status}}",
    ]);
    assert_eq!(health.stdout.trim(), "healthy", "{health}");
    // Podman 4.3 would stop with no grace at all: cdq gave Docker's default, or the file's.
    for (svc, secs) in [("redis", "10"), ("mysql", "30"), ("kafka", "30")] {
        let t = pm.podman(&["inspect", &name(svc), "--format", "{{.Config.StopTimeout}}"]);
        assert_eq!(t.stdout.trim(), secs, "{svc}: {t}");
    }

    let logs = sb.cdq(&["logs", "redis", "--tail", "50"]);
    assert_eq!(logs.code, Some(0), "{logs}");
    assert!(
        logs.stdout.contains("Ready to accept connections"),
        "{logs}"
    );

    // Podman reports `localhost/cdq-local/...`: the plan must still see nothing to change.
    let again = sb.cdq(&["up", "--ip", "127.0.0.1", "--progress", "plain"]);
    assert_eq!(again.code, Some(0), "{again}");
    assert!(again.stderr.contains("nothing to change"), "{again}");

    let down = sb.cdq(&["down"]);
    assert_eq!(down.code, Some(0), "{down}");
    let label = sb.label();
    let left = pm.podman(&["ps", "-aq", "--filter", &label]);
    assert_eq!(left.stdout.trim(), "", "containers left in Podman: {left}");
    let nets = pm.podman(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}", sb.project()),
    ]);
    assert_eq!(nets.stdout.trim(), "", "networks left in Podman: {nets}");
    // Docker was never touched.
    assert!(sb.labelled().is_empty(), "{:?}", sb.labelled());
    drop(sb);
    drop(pm);
}
