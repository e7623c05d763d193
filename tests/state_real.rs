//! State that never drifts and names that have one owner (issues 17.6, 17.7, 18.2, 18.5),
//! on the real daemon and the local kit: drift reported by `status` and repaired by `up`,
//! an unhealthy service restarted then recreated, `--dry-run` printing what `up` runs, one
//! deploy directory per project name, networks and containers cdq did not make left alone,
//! two runs that never race, duplicate networks resolved, bounded engine waits, and output
//! write errors. Signals (18.3) are in `signals_real.rs`. Each test has its own project (a
//! [`Sandbox`]) and removes what it made.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::stall::mute;
use common::{
    Sandbox, TWO_REDIS as TWO, compose, container, docker, docker_ok, run, up_compose as up,
};

const IMAGE: &str = "cdq-local/redis:2-amd64";

fn sandbox(test: &str) -> Sandbox {
    let s = Sandbox::new("cdqst", test);
    s.write_config("");
    s
}

fn network(s: &Sandbox) -> String {
    format!("{}_default", s.project())
}

/// Ids of the networks named exactly `name`.
fn networks_named(name: &str) -> Vec<String> {
    docker_ok(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("name=^{name}$"),
    ])
    .lines()
    .map(str::to_string)
    .filter(|l| !l.is_empty())
    .collect()
}

fn inspect(name: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, name])
}

/// Objects made outside cdq by a test, removed on drop (pass or fail) after the sandbox's.
struct Foreign {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Foreign {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

// ---- drift -----------------------------------------------------------------------------

/// A container taken off the project network and one whose restart policy was changed
/// outside cdq: `status` exits 4 naming both and what differs; `up` says it recreates both
/// (as `--dry-run` said it would) and `status` is 0 again.
#[test]
fn drift_off_the_network_and_a_changed_restart_policy_fail_status_and_up_repairs_both() {
    let s = sandbox("drift");
    let f = compose(&s, "app", TWO);
    let o = up(&s, &f, &[]);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(s.cdq(&["status", "--compose", &f]).code, Some(0));

    docker_ok(&["network", "disconnect", &network(&s), &container(&s, "a")]);
    docker_ok(&["update", "--restart", "always", &container(&s, "b")]);

    let st = s.cdq(&["status", "--compose", &f]);
    assert_eq!(st.code, Some(4), "drift is not healthy: {st}");
    assert!(
        st.stdout.contains(&format!(
            "  a: not on the network `{}` (on none)",
            network(&s)
        )),
        "{st}"
    );
    assert!(
        st.stdout
            .contains("  b: restart policy is `always`, not `no`"),
        "{st}"
    );
    let (_, json) = {
        let o = s.cdq(&["status", "--compose", &f, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        (o, v)
    };
    assert_eq!(json["healthy"], false);

    let dry = s.cdq(&["up", "--compose", &f, "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(
        dry.stdout
            .contains("recreate (changed outside cdq: not on the network"),
        "{dry}"
    );
    let fixed = up(&s, &f, &[]);
    assert_eq!(fixed.code, Some(0), "{fixed}");
    assert!(
        fixed.stderr.contains(dry.stdout.trim_end()),
        "up runs what --dry-run printed:\n{}\n{fixed}",
        dry.stdout
    );
    let st = s.cdq(&["status", "--compose", &f]);
    assert_eq!(st.code, Some(0), "repaired: {st}");
    assert!(!st.stdout.contains("changed outside cdq"), "{st}");
    // Docker stores compose's default `no` as an empty name.
    assert!(matches!(
        inspect(&container(&s, "b"), "{{.HostConfig.RestartPolicy.Name}}").as_str(),
        "" | "no"
    ));
    assert!(
        inspect(&container(&s, "a"), "{{json .NetworkSettings.Networks}}").contains(&network(&s))
    );
}

/// An unhealthy service: `--dry-run` says it is restarted (not "nothing to change"), `up`
/// prints the same plan, restarts it, and (a restart keeps the container's files, so it is
/// still unhealthy) recreates it within its deadline; then all is healthy.
#[test]
fn an_unhealthy_service_is_restarted_then_recreated_as_dry_run_says() {
    let s = sandbox("unhealthy");
    let f = compose(
        &s,
        "app",
        r#"services:
  sick:
    image: cdq-local/redis:2-amd64
    healthcheck:
      test: ["CMD", "sh", "-c", "! test -f /tmp/sick"]
      interval: 1s
      timeout: 1s
      retries: 1
"#,
    );
    assert_eq!(up(&s, &f, &["--deadline", "12s"]).code, Some(0));
    let before = inspect(&container(&s, "sick"), "{{.Id}}");
    docker_ok(&["exec", &container(&s, "sick"), "touch", "/tmp/sick"]);
    // Docker's own probe marks it unhealthy within an interval or two.
    let mut health = String::new();
    for _ in 0..100 {
        health = inspect(&container(&s, "sick"), "{{.State.Health.Status}}");
        if health == "unhealthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(health, "unhealthy");

    let dry = s.cdq(&["up", "--compose", &f, "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(dry.stdout.contains("sick     restart (unhealthy"), "{dry}");
    let o = up(&s, &f, &["--deadline", "12s"]);
    assert_eq!(o.code, Some(0), "restarted, then recreated: {o}");
    assert!(
        o.stderr.contains(dry.stdout.trim_end()),
        "up runs what --dry-run printed:\n{}\n{o}",
        dry.stdout
    );
    assert!(
        o.stderr.contains("sick: restarting (it was unhealthy)"),
        "{o}"
    );
    assert!(
        o.stderr
            .contains("sick: stopping the old container to replace it"),
        "{o}"
    );
    assert_ne!(inspect(&container(&s, "sick"), "{{.Id}}"), before);
    assert_eq!(s.cdq(&["status", "--compose", &f]).code, Some(0));
    let again = s.cdq(&["up", "--compose", &f, "--dry-run"]);
    assert!(again.stdout.contains("nothing to change"), "{again}");
}

// ---- bounded waits and output ----------------------------------------------------------

/// An endpoint that accepts and never answers: `status` gives up after the connect
/// timeout (not bollard's 120 s request timeout) naming the address and `DOCKER_HOST`.
#[test]
fn an_engine_that_never_answers_fails_status_naming_docker_host() {
    let s = sandbox("mute");
    let m = mute();
    let host = format!("tcp://127.0.0.1:{}", m.port);
    let o = s.cdq_env(&["status"], &[("DOCKER_HOST", &host)]);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "error: the Docker daemon at `tcp://127.0.0.1:{}` did not answer within 10s",
            m.port
        )),
        "{o}"
    );
    assert!(o.stderr.contains("hint: check that `DOCKER_HOST`"), "{o}");
    eprintln!("status gave up after {:.1}s", o.took.as_secs_f64());
}

/// Output to a full device: exit 1 and the reason, not exit 0 with nothing written.
#[test]
fn output_to_dev_full_exits_1() {
    let s = sandbox("devfull");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = run(s
        .command(&["images", "--arch", "amd64"])
        .stdout(Stdio::from(full)));
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr
            .contains("error: cannot write the output to standard output: No space left on device"),
        "{o}"
    );
}

/// 200 KB of nested brackets in cdq.yaml: refused at once with the file, the line and
/// exit 2, nothing written (it took 36 s to parse).
#[test]
fn deeply_nested_settings_are_refused_before_parsing() {
    let s = sandbox("deepyaml");
    s.write_config(&format!(
        "project: x\nports: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    let o = s.cdq(&["render", "--arch", "amd64", "--ip", "127.0.0.1"]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "`{}` line 2: nesting deeper than 32 levels",
            s.config().display()
        )),
        "{o}"
    );
    assert!(!s.dir().exists(), "nothing written");
    eprintln!("refused in {:.2}s", o.took.as_secs_f64());
}

// ---- ownership -------------------------------------------------------------------------

fn states(s: &Sandbox) -> String {
    docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &s.label(),
        "--format",
        "{{.ID}} {{.Names}} {{.Status}}",
    ])
}

/// One stack, one owner: the project's containers say which directory started them; `up`,
/// `status` and `down` from another directory refuse (exit 6) naming it and the `-p` fix,
/// and change nothing.
#[test]
fn a_project_name_is_held_by_one_deploy_directory() {
    let s = sandbox("owner");
    let first = compose(&s, "first", TWO);
    let second = compose(&s, "second", TWO);
    assert_eq!(up(&s, &first, &[]).code, Some(0));
    let before = states(&s);
    let owner = Path::new(&first).parent().unwrap().display().to_string();
    for cmd in ["up", "status", "down"] {
        let o = s.cdq(&[cmd, "--compose", &second]);
        assert_eq!(o.code, Some(6), "`{cmd}` from another directory: {o}");
        assert!(
            o.stderr.contains(&format!(
                "error: project `{}` belongs to the deploy directory `{owner}`",
                s.project()
            )),
            "{o}"
        );
        assert!(o.stderr.contains("`-p NAME`"), "{o}");
    }
    // Statuses end in "Up N seconds (healthy)": compare the ids and names only.
    let ids = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(ids(&states(&s)), ids(&before), "nothing was touched");
    assert_eq!(s.cdq(&["status", "--compose", &first]).code, Some(0));
    assert_eq!(s.cdq(&["down", "--compose", &first]).code, Some(0));
}

/// A network named like the project's that cdq did not make (and someone's container on
/// it): `up` refuses naming both, joins nothing, creates nothing; `down` leaves them.
#[test]
fn a_foreign_network_of_the_stacks_name_is_never_joined() {
    let s = sandbox("foreignnet");
    let f = compose(&s, "app", TWO);
    let net = network(&s);
    let other = format!("{}-someone", s.project());
    let _g = Foreign {
        containers: vec![other.clone()],
        networks: vec![net.clone()],
    };
    docker_ok(&["network", "create", &net]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &other,
        "--network",
        &net,
        "--entrypoint",
        "sleep",
        IMAGE,
        "600",
    ]);
    let o = up(&s, &f, &[]);
    assert_eq!(o.code, Some(6), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "error: network `{net}` exists but cdq did not create it for project `{}`; it is used by `{other}`",
            s.project()
        )),
        "{o}"
    );
    assert!(
        o.stderr.contains(&format!("docker network rm {net}")),
        "{o}"
    );
    assert!(
        s.labelled().is_empty(),
        "nothing created: {:?}",
        s.labelled()
    );
    let d = s.cdq(&["down", "--compose", &f]);
    assert_eq!(d.code, Some(0), "{d}");
    assert_eq!(networks_named(&net).len(), 1, "the network is still there");
    assert_eq!(inspect(&other, "{{.State.Status}}"), "running");
}

/// A container with a service's name that cdq did not make: `up` refuses naming it (it is
/// never removed or adopted), and `down` does not touch it.
#[test]
fn a_foreign_container_with_a_services_name_is_never_adopted_or_removed() {
    let s = sandbox("foreignctr");
    let f = compose(&s, "app", TWO);
    let name = container(&s, "a");
    let _g = Foreign {
        containers: vec![name.clone()],
        networks: vec![],
    };
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--entrypoint",
        "sleep",
        IMAGE,
        "600",
    ]);
    let id = inspect(&name, "{{.Id}}");
    let o = up(&s, &f, &[]);
    assert_eq!(o.code, Some(6), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "error: a container named `{name}` exists but cdq did not create it for project `{}` (image `{IMAGE}`, running)",
            s.project()
        )),
        "{o}"
    );
    assert!(o.stderr.contains(&format!("docker rm -f {name}")), "{o}");
    assert!(s.labelled().is_empty(), "nothing created");
    assert_eq!(s.cdq(&["down", "--compose", &f]).code, Some(0));
    assert_eq!(
        inspect(&name, "{{.Id}}"),
        id,
        "the same container, untouched"
    );
    assert_eq!(inspect(&name, "{{.State.Status}}"), "running");
}

/// Two networks of the stack's name (what two racing creates left before the project
/// lock): `up` removes the duplicate (as its plan says) instead of failing every service,
/// and `down` then removes the stack.
#[test]
fn a_duplicate_network_left_by_a_race_is_resolved() {
    let s = sandbox("dupnet");
    let f = compose(&s, "app", TWO);
    let net = network(&s);
    // The API creates a second network of one name when asked not to check (the CLI
    // always checks), as two racing creates do.
    for _ in 0..2 {
        let body = format!(
            r#"{{"Name":"{net}","CheckDuplicate":false,"Driver":"bridge","Labels":{{"io.cdq.project":"{p}","com.docker.compose.project":"{p}","com.docker.compose.network":"default"}}}}"#,
            p = s.project()
        );
        let o = run(Command::new("curl").args([
            "-sf",
            "--unix-socket",
            "/var/run/docker.sock",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            "http://localhost/v1.41/networks/create",
        ]));
        assert_eq!(o.code, Some(0), "{o}");
    }
    assert_eq!(networks_named(&net).len(), 2);
    let o = up(&s, &f, &[]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains(&format!("remove duplicate network `{net}`")),
        "{o}"
    );
    assert_eq!(networks_named(&net).len(), 1);
    let d = s.cdq(&["down", "--compose", &f]);
    assert_eq!(d.code, Some(0), "{d}");
    assert!(networks_named(&net).is_empty());
}

/// Two `up`s of one project name from two directories at the same moment: one deploys,
/// the other is refused (the project lock, or the owner check once the first has
/// containers); never two networks, never a mix of the two directories' containers.
#[test]
fn two_ups_of_one_project_from_two_directories_never_race() {
    let s = sandbox("race");
    let a = compose(&s, "a", TWO);
    let b = compose(&s, "b", TWO);
    // Each from its own deploy directory: only the host-wide project lock is shared.
    let start = |f: &str, dir: &str| {
        let d = s.root().join(dir);
        common::cdq_command()
            .arg("--dir")
            .arg(&d)
            .arg("--config")
            .arg(s.config())
            .args(["-p", s.project(), "up", "--compose", f])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (start(&a, "deploy-a"), start(&b, "deploy-b"));
    let out = |c: std::process::Child| {
        let o = c.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (oa, ob) = (out(ca), out(cb));
    assert!(
        oa.0 == Some(0) || ob.0 == Some(0),
        "one deploys:\n{oa:?}\n{ob:?}"
    );
    let (lost, won_dir) = if oa.0 == Some(0) {
        (&ob, &a)
    } else {
        (&oa, &b)
    };
    assert!(
        matches!(lost.0, Some(5) | Some(6)),
        "the other is refused: {lost:?}"
    );
    assert!(
        lost.1.contains(&format!(
            "another cdq is working on project `{}`",
            s.project()
        )) || lost.1.contains("belongs to the deploy directory"),
        "{lost:?}"
    );
    assert_eq!(networks_named(&network(&s)).len(), 1);
    let dir: PathBuf = Path::new(won_dir).parent().unwrap().to_path_buf();
    for svc in ["a", "b"] {
        assert_eq!(
            inspect(
                &container(&s, svc),
                "{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}"
            ),
            dir.display().to_string()
        );
    }
}

// ---- bad values ------------------------------------------------------------------------

/// Values that parse but cannot work — an empty or doubled service list, a data directory
/// Docker cannot mount or that would interpolate in the compose file, a tag Docker
/// refuses, an invalid project name even under `-p`, a timezone with `$` — are refused before anything is
/// written, with the file, the line, the key and exit 2. (A zero heap or deadline was
/// already refused by the parser.)
#[test]
fn every_bad_value_is_refused_with_file_line_key_and_exit_2() {
    let cases: [(&str, &str); 7] = [
        ("services: []\n", "line 1: `services`: the list is empty"),
        (
            "services:\n  - redis\n  - redis\n",
            "line 1: `services`: `redis` is listed twice",
        ),
        (
            "project: x\ndata_dir: /srv/a:b\n",
            "line 2: `data_dir`: `/srv/a:b` holds `:`",
        ),
        (
            "data_dir: /srv/${HOME}\n",
            "line 1: `data_dir`: `/srv/${HOME}` holds `$`",
        ),
        (
            "versions:\n  redis: \"7$x\"\n",
            "line 2: `versions.redis`: `7$x` is not an image tag",
        ),
        (
            "data_dir: d\nproject: Bad_Name\n",
            "line 2: `project`: project name `Bad_Name` is not valid",
        ),
        (
            "timezone: Asia/$HOME\n",
            "line 1: `timezone`: `Asia/$HOME` is not a timezone name",
        ),
    ];
    for (text, want) in cases {
        let s = sandbox("badvalue");
        s.write_config(text);
        let o = s.cdq(&["render", "--arch", "amd64", "--ip", "127.0.0.1"]);
        assert_eq!(o.code, Some(2), "{text}: {o}");
        assert!(
            o.stderr
                .contains(&format!("error: `{}` {want}", s.config().display())),
            "{text}: {o}"
        );
        assert!(o.stderr.contains("\nhint: "), "{o}");
        assert!(!s.dir().exists(), "nothing written for {text}");
    }
    // A flag too.
    let s = sandbox("badflag");
    let o = s.cdq(&[
        "--data-dir",
        "/srv/a:b",
        "render",
        "--arch",
        "amd64",
        "--ip",
        "127.0.0.1",
    ]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr
            .contains("error: `--data-dir` (or `CDQ_DATA_DIR`): `/srv/a:b` holds `:`"),
        "{o}"
    );
    assert!(!s.dir().exists());
}
