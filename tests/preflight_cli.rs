//! `cdq preflight` on this machine, through the built binary: the JSON lists every check,
//! a lowered `vm.max_map_count` and a held port FAIL with their fixes (exit 3), and nothing
//! is created. Needs root for the sysctl test (CI and developer machines run as root).

use std::path::Path;

use serde_json::Value;

mod common;
use common::{cdq_command, preflight_check as check};

fn host_ip() -> String {
    // Pass the address explicitly so the run does not depend on how many interfaces this
    // machine has (detection itself is tested in `preflight_ip.rs`).
    let c = cdq::hostip::candidates(&cdq::hostip::interfaces().unwrap());
    c.first()
        .map(|(_, ip)| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn preflight(dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let ip = host_ip();
    // No `CDQ_*` variable of the developer's shell reaches it.
    let out = cdq_command()
        .args(["--dir"])
        .arg(dir)
        .args(["preflight", "--json", "--ip", &ip])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap(), v, stderr)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path().display().to_string());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn json_lists_every_check_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    let (code, v, _) = preflight(&deploy, &[]);
    let checks = v["checks"].as_array().unwrap();
    for c in checks {
        assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
        assert!(
            ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    for id in [
        "docker",
        "docker-version",
        "docker-arch",
        "docker-storage",
        "compose",
        "disk-docker",
        "host-arch",
        "cpu",
        "memory",
        "disk-data",
        "vm-max-map-count",
        "nofile",
        "swap",
        "thp",
        "selinux",
        "port-8080",
        "port-8081",
        "port-3000",
        "port-9094",
        "data-dir",
        "data-dir-owner",
        "clock",
        "timezone",
        "image-elasticsearch",
        "image-server",
        "host-ip",
    ] {
        check(&v, id);
    }
    assert_eq!(check(&v, "host-ip")["status"], "pass");
    let ok = v["ok"].as_bool().unwrap();
    assert_eq!(code, if ok { 0 } else { 3 });
    // neither the deploy directory nor anything in it (secrets, host-ip, data) was created
    assert!(!deploy.exists());
    assert!(listing(tmp.path()).is_empty());

    // an existing deploy directory stays untouched too
    std::fs::create_dir(&deploy).unwrap();
    preflight(&deploy, &[]);
    assert!(listing(&deploy).is_empty(), "{:?}", listing(&deploy));
}

#[test]
fn an_ip_on_no_interface_fails_host_ip() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cdq_command()
        .arg("--dir")
        .arg(tmp.path())
        .args(["preflight", "--json", "--ip", "203.0.113.77"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = check(&v, "host-ip");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["found"]
            .as_str()
            .unwrap()
            .contains("203.0.113.77 is on no interface")
    );
    assert!(c["fix"].as_str().unwrap().contains("--ip "));
    assert_eq!(out.status.code(), Some(3));
}

/// Sets `vm.max_map_count` and puts the old value back when dropped, even if the test fails.
struct MaxMapCount(String);

const MAP: &str = "/proc/sys/vm/max_map_count";

impl MaxMapCount {
    fn set(v: u64) -> MaxMapCount {
        let old = std::fs::read_to_string(MAP).unwrap().trim().to_string();
        std::fs::write(MAP, v.to_string()).expect("writing vm.max_map_count needs root");
        MaxMapCount(old)
    }
}

impl Drop for MaxMapCount {
    fn drop(&mut self) {
        std::fs::write(MAP, &self.0).unwrap();
    }
}

#[test]
fn a_low_max_map_count_fails_with_the_sysctl_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = MaxMapCount::set(65530);
    let (code, v, _) = preflight(tmp.path(), &["--images", "official"]);
    drop(guard);
    let c = check(&v, "vm-max-map-count");
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(c["found"], "65530");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("sudo sysctl -w vm.max_map_count=262144"),
        "{c}"
    );
    assert_eq!(code, 3);

    // the local kit's elasticsearch does not need it: not a failure there
    let _guard = MaxMapCount::set(65530);
    let (_, v, _) = preflight(tmp.path(), &["--images", "local"]);
    assert_eq!(check(&v, "vm-max-map-count")["status"], "pass");
}

#[test]
fn a_held_port_fails_naming_the_port_and_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    std::fs::write(
        tmp.path().join("cdq.yaml"),
        format!("ports:\n  grafana: {port}\n"),
    )
    .unwrap();
    let (code, v, _) = preflight(tmp.path(), &[]);
    let c = check(&v, &format!("port-{port}"));
    assert_eq!(c["status"], "fail", "{c}");
    let found = c["found"].as_str().unwrap();
    assert!(found.contains(&format!("port {port} in use")), "{c}");
    // the test binary holds it: named by pid
    assert!(
        found.contains(&format!("pid {}", std::process::id())),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("ports: { grafana:"),
        "{c}"
    );
    assert_eq!(code, 3);
    drop(held);
}
