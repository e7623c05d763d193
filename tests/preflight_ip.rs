//! Intranet IP detection against real interfaces: each test makes its own network
//! namespace with veth interfaces and bridges, runs `cdq render` inside it, and removes the
//! namespace when done (even on failure). Needs root and iproute2.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("cdq-ipt-{}-{nanos:x}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds an interface of `kind` (veth, bridge) with an address, up. A veth's peer gets
    /// no address. (Dummy interfaces would do, but the `dummy` module is often not loaded in
    /// containers, while Docker itself needs veth and bridge.)
    fn iface(&self, name: &str, kind: &str, cidr: &str) {
        if kind == "veth" {
            let peer = format!("p{name}");
            self.exec(&[
                "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
            ]);
        } else {
            self.exec(&["ip", "link", "add", name, "type", kind]);
        }
        self.exec(&["ip", "addr", "add", cidr, "dev", name]);
        self.exec(&["ip", "link", "set", name, "up"]);
    }

    /// `cdq render` inside the namespace; `ip netns exec` passes the environment on, so
    /// no `CDQ_*` variable of the developer's shell reaches cdq ([`common::clean_command`]).
    fn render(&self, dir: &Path) -> Output {
        common::clean_command("ip")
            .args(["netns", "exec", &self.0, common::CDQ, "--dir"])
            .arg(dir)
            .args(["render", "--json"])
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

fn host_ip_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["host_ip"].as_str().unwrap().to_string()
}

#[test]
fn one_candidate_is_picked_and_docker_bridges_are_ignored() {
    let ns = Netns::new();
    ns.iface("eth9", "veth", "10.77.0.5/24");
    ns.iface("docker0", "bridge", "172.17.0.1/16");
    ns.iface("br-1234abcd", "bridge", "172.18.0.1/16");
    let tmp = tempfile::tempdir().unwrap();
    let out = ns.render(tmp.path());
    assert_eq!(host_ip_of(&out), "10.77.0.5");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host IP 10.77.0.5 (detected)")
            || out.status.success()
    );
    // kept for the next run
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(".cdq/host-ip")).unwrap(),
        "10.77.0.5\n"
    );
}

#[test]
fn two_candidates_without_a_tty_fail_listing_both() {
    let ns = Netns::new();
    ns.iface("eth9", "veth", "10.77.0.5/24");
    ns.iface("eth8", "veth", "192.168.50.7/24");
    ns.iface("docker0", "bridge", "172.17.0.1/16");
    let tmp = tempfile::tempdir().unwrap();
    let out = ns.render(tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("10.77.0.5 (eth9)"), "{err}");
    assert!(err.contains("192.168.50.7 (eth8)"), "{err}");
    assert!(!err.contains("172.17.0.1"), "{err}");
    assert!(
        err.contains("hint: choose the one other machines reach this host on: `--ip "),
        "{err}"
    );
    // nothing was decided, so nothing was stored
    assert!(!tmp.path().join(".cdq/host-ip").exists());
}

#[test]
fn only_bridges_means_no_candidate() {
    let ns = Netns::new();
    ns.iface("docker0", "bridge", "172.17.0.1/16");
    ns.iface("br-1234abcd", "bridge", "172.18.0.1/16");
    let tmp = tempfile::tempdir().unwrap();
    let out = ns.render(tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no intranet IP found"), "{err}");
}

/// A first `cdq up` on a terminal with two candidate interfaces and no stored IP: the
/// question is asked once (before preflight's render), and the real render uses the same
/// answer. Runs cdq under `script` (a pseudo-terminal) inside the namespace, answers the
/// prompt with Enter (the first candidate) and leaves the terminal open: a second prompt
/// would wait for an answer that never comes, and `timeout` would end the run (exit 124).
#[test]
fn the_ip_prompt_is_asked_once_on_a_first_up_on_a_terminal() {
    use std::io::Write;

    let ns = Netns::new();
    ns.iface("eth9", "veth", "10.77.0.5/24");
    ns.iface("eth8", "veth", "192.168.50.7/24");
    let sb = common::Sandbox::new("cdqt", "ipprompt")
        .flags(&["--images", "local"])
        .down_on_drop("5");
    sb.write_config("services: [redis]\n");
    let up = sb.command(&["up", "--skip-preflight", "--progress", "plain"]);
    let line = std::iter::once(up.get_program())
        .chain(up.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = common::clean_command("timeout")
        .env_remove("CI")
        .envs(up.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .args([
            "60",
            "ip",
            "netns",
            "exec",
            &ns.0,
            "script",
            "-qefc",
            &line,
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    stdin.write_all(b"\r").unwrap();
    stdin.flush().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(124),
        "cdq still waited for an answer after the first: the IP was asked for twice\n{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Which IP do other machines reach this host on?"),
        "{text}"
    );
    let chosen = text
        .split("host IP ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `host IP` line\n{text}"));
    assert!(
        ["10.77.0.5", "192.168.50.7"].contains(&chosen),
        "{chosen}\n{text}"
    );
    assert!(
        text.contains(&format!("host IP {chosen} (selected)")),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.dir().join(".cdq/host-ip")).unwrap(),
        format!("{chosen}\n")
    );
}
