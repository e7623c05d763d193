//! What the real-daemon test files share: the binary under test, the environment a
//! developer's shell must not leak into it, running commands into printable output, free
//! ports, removing what a test labelled, and reading preflight's JSON. One copy, so the files cannot drift apart on what they isolate.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CDQ: &str = env!("CARGO_BIN_EXE_cdq");

/// Variables cdq or docker read as flags: removed from every cdq a test runs, so a
/// developer's shell cannot change what the test drives (a test sets what it needs after).
pub const CDQ_ENV: [&str; 11] = [
    "CDQ_DIR",
    "CDQ_CONFIG",
    "CDQ_PROJECT_NAME",
    "CDQ_IMAGES",
    "CDQ_DATA_DIR",
    "CDQ_TEMPLATES",
    "CDQ_ARCH",
    "CDQ_HOST_IP",
    "DOCKER_HOST",
    "DOCKER_DEFAULT_PLATFORM",
    "COMPOSE_PROJECT_NAME",
];

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
