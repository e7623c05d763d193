//! The fault matrix's rows that no other test file covers (README, "Fault matrix"): each
//! drives the built binary into one fault on this machine's real Docker engine and asserts
//! the message, the exit code, and that nothing was created or lost.
//!
//! Every test has its own [`Sandbox`] from `tests/common` (project `cdqf-<test>-…`, a
//! temporary deploy directory, a `cdq` with a clean environment); a [`Guard`] wraps it,
//! and on drop removes whatever carries the project's label and undoes the mounts and
//! image tags the test made, pass or fail. A missing prerequisite (no daemon,
//! no kit image, no root for `mount`) fails the test: none of them skips.

mod common;

use common::{Sandbox, docker, docker_ok, free_ports, preflight_check, remove_matching, run};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;

/// One test's [`Sandbox`] (`cdqf-<test>-…`, with `CI=true`), plus what else to undo: the
/// mounts and image tags the test made.
struct Guard {
    sb: Sandbox,
    mounts: Vec<PathBuf>,
    tags: Vec<String>,
}

impl Deref for Guard {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Guard {
    fn new(test: &str) -> Guard {
        let g = Guard {
            sb: Sandbox::new("cdqf", test).env("CI", "true"),
            mounts: vec![],
            tags: vec![],
        };
        let [server, ucenter, grafana, kafka] = free_ports();
        g.settings(&format!(
            "ports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka} }}\n"
        ));
        g
    }

    fn settings(&self, text: &str) {
        self.write_config(text);
    }

    /// A tmpfs of `size` at a new directory under the root, unmounted when dropped.
    fn tmpfs(&mut self, name: &str, options: &str) -> PathBuf {
        let at = self.root().join(name);
        std::fs::create_dir(&at).unwrap();
        let o = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at));
        assert_eq!(o.code, Some(0), "mounting a tmpfs needs root: {o}");
        self.mounts.push(at.clone());
        at
    }

    /// `docker tag source target`, untagged when dropped (never the source).
    fn tag(&mut self, source: &str, target: &str) {
        docker_ok(&["tag", source, target]);
        self.tags.push(target.to_string());
    }

    /// `cdq preflight --json --ip 127.0.0.1 FLAGS`, expected to fail (exit 3) on check
    /// `id`: that check, `status: fail` asserted.
    fn failed_check(&self, flags: &[&str], id: &str) -> serde_json::Value {
        let pf = self.cdq(&[&["preflight", "--json", "--ip", "127.0.0.1"][..], flags].concat());
        assert_eq!(pf.code, Some(3), "{pf}");
        let report: serde_json::Value =
            serde_json::from_str(&pf.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {pf}"));
        let c = preflight_check(&report, id).clone();
        assert_eq!(c["status"], "fail", "{c}");
        c
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Errors are ignored: this also runs while a failed assertion unwinds. Containers a
        // test made to stand for someone else's (no project label) go first, so the
        // project's network is free to go.
        remove_matching(&format!("label=io.cdq.test-owner={}", self.project()));
        self.sb.teardown();
        for t in &self.tags {
            let _ = docker(&["rmi", t]);
        }
        for m in self.mounts.iter().rev() {
            let _ = run(Command::new("umount").arg(m));
        }
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no kit images for {other}"),
    }
}

const UP: [&str; 5] = ["up", "--ip", "127.0.0.1", "--progress", "plain"];

// ---- the daemon ------------------------------------------------------------------------------

/// No daemon at `DOCKER_HOST`: `status` and `up` exit 1 naming the socket, with the way to
/// start Docker, and `up` writes nothing (not even the deploy directory).
#[test]
fn daemon_unreachable_at_start() {
    let g = Guard::new("nodaemon");
    let env = [("DOCKER_HOST", "unix:///nonexistent.sock")];
    let want = "error: cannot reach the Docker daemon at `/nonexistent.sock`\n\
                hint: start Docker (`sudo systemctl start docker`), or set `DOCKER_HOST`\n";
    let status = g.cdq_env(&["status"], &env);
    assert_eq!(status.code, Some(1), "{status}");
    assert_eq!(status.stderr, want, "{status}");
    let up = g.cdq_env(&["--images", "local", "up", "--ip", "127.0.0.1"], &env);
    assert_eq!(up.code, Some(1), "{up}");
    assert!(up.stderr.ends_with(want), "{up}");
    assert!(!g.dir().exists(), "nothing written: {up}");
    assert_eq!(g.labelled(), Vec::<String>::new());
}

// ---- the data directory ------------------------------------------------------------------

/// A data dir that cannot be created (below a regular file, and on a read-only mount):
/// preflight FAILs `data-dir` with the fix and `up` stops at exit 3 having created
/// nothing; with `--skip-preflight`, `up` fails each service that needs it, naming the
/// directory and the reason, with exit 4.
#[test]
fn data_dir_not_writable() {
    let mut g = Guard::new("dataro");
    let file = g.root().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let below_file = file.join("data");
    // Large enough that `disk-data` passes (a tmpfs size is a limit, not an allocation):
    // only `data-dir` may fail here.
    let ro = g.tmpfs("ro", "size=20g,ro");
    let on_ro = ro.join("data");

    for (data, found) in [
        (
            &below_file,
            format!(
                "`{}` is a file, so `{}` cannot be created",
                file.display(),
                below_file.display()
            ),
        ),
        // Issue 18.4: a read-only mount is named as such (its fix is a remount, not chown).
        (
            &on_ro,
            format!("`{}` is on a read-only filesystem", ro.display()),
        ),
    ] {
        let d = data.to_str().unwrap();
        let c = g.failed_check(&["--images", "local", "--data-dir", d], "data-dir");
        assert_eq!(c["found"], found.as_str(), "{c}");
        assert!(
            c["fix"]
                .as_str()
                .unwrap()
                .contains("or put the data elsewhere: `--data-dir DIR`"),
            "{c}"
        );

        let up = g.cdq(&[&["--images", "local", "--data-dir", d][..], &UP[..]].concat());
        assert_eq!(up.code, Some(3), "{up}");
        assert!(up.stdout.contains(&found), "the table says why: {up}");
        assert_eq!(
            up.stderr,
            "error: preflight failed: data-dir\n\
             hint: fix what the table above says, or pass `--skip-preflight` to start anyway\n",
            "{up}"
        );
        assert!(!g.dir().exists(), "nothing written: {up}");
        assert!(!data.exists());
        assert_eq!(g.labelled(), Vec::<String>::new(), "nothing created: {up}");
    }

    // Past preflight, the executor names the directory and the OS's reason per service.
    let g2 = Guard::new("dataro-skip");
    g2.settings(&format!(
        "{}services: [redis]\n",
        std::fs::read_to_string(g.config()).unwrap()
    ));
    let d = below_file.to_str().unwrap();
    let up = g2.cdq(
        &[
            &["--images", "local", "--data-dir", d][..],
            &UP[..],
            &["--skip-preflight"],
        ]
        .concat(),
    );
    assert_eq!(up.code, Some(4), "{up}");
    assert!(
        up.stderr.contains(&format!(
            "`redis` cannot create data directory `{d}/redis`: Not a directory (os error 20)"
        )),
        "{up}"
    );
    assert!(
        up.stderr.contains("error: `redis` did not become healthy"),
        "{up}"
    );
    let names = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.cdq.project={}", g2.project()),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(names, "", "no container was created for redis: {up}");
}

/// 16 MiB free at the data dir (a tmpfs): preflight FAILs `disk-data` naming the
/// directory and the space needed, and `up` stops at exit 3 without writing there.
#[test]
fn disk_nearly_full_at_the_data_dir() {
    let mut g = Guard::new("diskfull");
    let small = g.tmpfs("small", "size=16m");
    let data = small.join("data");
    let d = data.to_str().unwrap();
    let c = g.failed_check(&["--images", "local", "--data-dir", d], "disk-data");
    assert_eq!(
        c["found"],
        format!("16 MiB free at `{}`", small.display()),
        "{c}"
    );
    assert_eq!(c["needed"], ">= 10.0 GiB free", "{c}");
    assert_eq!(
        c["fix"],
        format!(
            "free space at `{}`, or put the data elsewhere: `--data-dir /big/disk/cdq` (or `data_dir:` in cdq.yaml)",
            small.display()
        ),
        "{c}"
    );
    let up = g.cdq(&[&["--images", "local", "--data-dir", d][..], &UP[..]].concat());
    assert_eq!(up.code, Some(3), "{up}");
    assert!(
        up.stderr.starts_with("error: preflight failed: ") && up.stderr.contains("disk-data"),
        "{up}"
    );
    assert!(up.stdout.contains("16 MiB free at"), "{up}");
    assert!(!data.exists(), "nothing written on the small disk: {up}");
    assert!(!g.dir().exists());
    assert_eq!(g.labelled(), Vec::<String>::new());
}

// ---- images ------------------------------------------------------------------------------------

/// The image under the exact reference cdq uses, but built for the other architecture:
/// preflight FAILs that image naming the reference and both architectures.
#[test]
fn wrong_arch_image() {
    let mut g = Guard::new("wrongarch");
    let (host, other) = match host_arch() {
        "amd64" => ("amd64", "arm64"),
        _ => ("arm64", "amd64"),
    };
    // A unique registry prefix: `--images PREFIX` rewrites `redis:7.2.11` to
    // `PREFIX/library/redis:7.2.11`, so the tag touches no reference anyone else uses.
    let prefix = format!("cdqf-{}", g.project());
    let images = g.cdq(&["--images", &prefix, "images", "--arch", host]);
    assert_eq!(images.code, Some(0), "{images}");
    let reference = images
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{prefix}/library/redis:")))
        .unwrap_or_else(|| panic!("no redis reference: {images}"))
        .to_string();
    if other == "arm64" {
        common::ensure_arm64_kit(&["redis"]);
    }
    g.tag(&format!("cdq-local/redis:2-{other}"), &reference);

    let c = g.failed_check(&["--images", &prefix, "--arch", host], "image-redis");
    let all = c.to_string();
    assert!(all.contains(&reference), "names the reference: {c}");
    assert!(all.contains(other), "names the image's arch: {c}");
    assert!(all.contains(host), "names the arch needed: {c}");
    assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
    assert!(!g.dir().exists());
}

/// The official set with nothing loaded (no registry here): every image FAILs with the
/// offline fix, and `up` stops at exit 3 having created nothing.
#[test]
fn image_missing_offline() {
    let g = Guard::new("noimage");
    // A version no one has: the reference is certainly absent, whatever was loaded here.
    g.settings(&format!(
        "{}versions: {{ redis: 0.0.0-cdqf-absent }}\n",
        std::fs::read_to_string(g.config()).unwrap()
    ));
    let c = g.failed_check(&["--images", "official"], "image-redis");
    assert_eq!(c["found"], "not present", "{c}");
    assert_eq!(
        c["needed"],
        format!("`redis:0.0.0-cdqf-absent` for {}", host_arch()),
        "{c}"
    );
    assert_eq!(
        c["fix"],
        "load it from an offline archive: `cdq bundle load FILE` or `docker load -i FILE` (online: `cdq pull`, or `docker pull redis:0.0.0-cdqf-absent`)",
        "{c}"
    );
    // `--pull never` is the offline behaviour (issue 13 made `--pull missing` the default).
    let up = g.cdq(&[&["--images", "official"][..], &UP[..], &["--pull", "never"]].concat());
    assert_eq!(up.code, Some(3), "{up}");
    assert!(
        up.stdout
            .contains("load it from an offline archive: `cdq bundle load FILE`"),
        "{up}"
    );
    assert!(
        up.stderr.starts_with("error: preflight failed: ") && up.stderr.contains("image-redis"),
        "{up}"
    );
    assert!(!g.dir().exists(), "nothing written: {up}");
    assert_eq!(g.labelled(), Vec::<String>::new());

    // The default `--pull missing` asks Docker Hub, which this machine cannot reach: the
    // pull fails naming the registry and the fix, before preflight, having created nothing.
    let up = g.cdq(&[&["--images", "official"][..], &UP[..]].concat());
    assert_eq!(up.code, Some(7), "{up}");
    assert!(
        up.stderr.contains("`docker.io`") && up.stderr.contains("redis:0.0.0-cdqf-absent"),
        "{up}"
    );
    assert!(up.stderr.contains("\nhint: "), "{up}");
    assert!(!g.dir().exists(), "nothing written: {up}");
    assert_eq!(g.labelled(), Vec::<String>::new());
}

// ---- bad input files -----------------------------------------------------------------------

/// YAML that does not parse (a tab in the indentation, an unclosed bracket): exit 2 with
/// the file and the line, and nothing written.
#[test]
fn malformed_yaml_in_settings() {
    let g = Guard::new("badyaml");
    let file = g.config();
    for (text, line, what) in [
        (
            "project: demo\n\tarch: amd64\n",
            2,
            "found a tab character that violates indentation",
        ),
        (
            // libyaml notices the missing `]` at the next key, on line 3.
            "project: demo\nservices: [mysql, redis\nheap: {}\n",
            3,
            "did not find expected ',' or ']'",
        ),
    ] {
        g.settings(text);
        let o = g.cdq(&["render", "--ip", "10.1.2.3"]);
        assert_eq!(o.code, Some(2), "{o}");
        assert_eq!(
            o.stderr,
            format!(
                "error: `{f}` line {line}: {what}\nhint: every setting is listed in the README; fix `{f}` and run again\n",
                f = file.display()
            ),
            "{o}"
        );
        assert!(!g.dir().exists(), "nothing written: {o}");
    }
}

/// `--compose FILE` with keys outside cdq's subset: refused with exit 2 naming the key,
/// before anything is created.
#[test]
fn compose_file_with_an_unsupported_key() {
    let g = Guard::new("composekey");
    for (key, extra) in [
        ("privileged", "    privileged: true\n"),
        ("networks", "    networks: [backend]\n"),
    ] {
        let f = g.root().join(format!("{key}.yaml"));
        std::fs::write(
            &f,
            format!(
                "services:\n  app:\n    image: cdq-local/redis:2-{}\n{extra}",
                host_arch()
            ),
        )
        .unwrap();
        let o = g.cdq(&[
            "up",
            "--compose",
            f.to_str().unwrap(),
            "--progress",
            "plain",
        ]);
        assert_eq!(o.code, Some(2), "{o}");
        assert!(
            o.stderr.starts_with(&format!(
                "error: `{}` line 4: unknown key `{key}` in `services.app`\n\
                 hint: cdq supports a subset of the compose format (the README lists it); \
                 valid keys here: image, ",
                f.display()
            )),
            "{o}"
        );
        assert_eq!(g.labelled(), Vec::<String>::new(), "nothing created: {o}");
    }
}

// ---- down ------------------------------------------------------------------------------------

/// Someone attached a container of their own to the stack's network: `down` removes the
/// stack's containers, leaves theirs alone, and names it with the command that frees the
/// network (exit 1); once it is disconnected, `down` finishes.
#[test]
fn down_with_a_foreign_container_on_the_network() {
    let g = Guard::new("foreignnet");
    let f = g.root().join("compose.yaml");
    std::fs::write(
        &f,
        format!(
            "services:\n  app:\n    image: cdq-local/redis:2-{}\n    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n      interval: 1s\n",
            host_arch()
        ),
    )
    .unwrap();
    let compose = f.to_str().unwrap();
    let o = g.cdq(&["up", "--compose", compose, "--progress", "plain"]);
    assert_eq!(o.code, Some(0), "{o}");
    let network = format!("{}_default", g.project());
    let toolbox = format!("{}-toolbox", g.project());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &toolbox,
        "--network",
        &network,
        "--label",
        &format!("io.cdq.test-owner={}", g.project()),
        "--entrypoint",
        "sleep",
        &format!("cdq-local/redis:2-{}", host_arch()),
        "300",
    ]);

    let o = g.cdq(&["down", "--compose", compose]);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.ends_with(&format!(
            "error: network `{network}` is still used by `{toolbox}`, not part of this stack; \
             the containers are removed and the data kept\n\
             hint: disconnect it (`docker network disconnect {network} {toolbox}`) and run \
             `cdq down` again\n"
        )),
        "{o}"
    );
    assert_eq!(
        g.labelled(),
        vec![docker_ok(&["network", "inspect", "-f", "{{.Id}}", &network])[..12].to_string()],
        "only the network is left: {o}"
    );
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &toolbox]),
        "true",
        "the foreign container is left running"
    );

    docker_ok(&["network", "disconnect", &network, &toolbox]);
    let o = g.cdq(&["down", "--compose", compose]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains(&format!("removed network {network}")),
        "{o}"
    );
    assert_eq!(g.labelled(), Vec::<String>::new(), "{o}");
}

// ---- secrets ---------------------------------------------------------------------------------

/// `.env` deleted (by hand, or by a clean-up script): the next render writes it again with
/// the same passwords, taken from `secrets.env`, which stays byte-identical.
#[test]
fn rerender_after_deleting_env_keeps_the_passwords() {
    let g = Guard::new("envgone");
    let o = g.cdq(&["render", "--ip", "10.1.2.3"]);
    assert_eq!(o.code, Some(0), "{o}");
    let env_path = g.dir().join(".env");
    let secrets_path = g.dir().join("secrets.env");
    let env = std::fs::read(&env_path).unwrap();
    let secrets = std::fs::read(&secrets_path).unwrap();
    let passwords: Vec<String> = String::from_utf8_lossy(&secrets)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_string()))
        .collect();
    assert!(passwords.len() >= 5, "{passwords:?}");

    std::fs::remove_file(&env_path).unwrap();
    let o = g.cdq(&["render", "--ip", "10.1.2.3"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stderr.contains("created   .env"), "reported: {o}");
    assert!(
        o.stderr.contains("1 created, 0 changed, 14 unchanged"),
        "only .env: {o}"
    );
    assert_eq!(std::fs::read(&env_path).unwrap(), env, "same .env");
    assert_eq!(
        std::fs::read(&secrets_path).unwrap(),
        secrets,
        "same secrets"
    );
    let text = String::from_utf8_lossy(&env).into_owned();
    for p in &passwords {
        assert!(text.contains(p.as_str()), ".env holds every password");
        assert!(!o.stderr.contains(p.as_str()) && !o.stdout.contains(p.as_str()));
    }
}

// ---- the sandbox itself ------------------------------------------------------------------

/// A test that fails still leaves nothing behind: a sandbox dropped while a panic unwinds
/// removes the containers and networks with its project's label, and its temp dir.
#[test]
fn a_failing_test_leaves_nothing_labelled() {
    let outcome = std::panic::catch_unwind(|| {
        let g = Guard::new("panics");
        let label = format!("io.cdq.project={}", g.project());
        let net = format!("{}_default", g.project());
        docker_ok(&["network", "create", "--label", &label, &net]);
        let image = format!("cdq-local/redis:2-{}", host_arch());
        docker_ok(&["create", "--label", &label, "--network", &net, &image]);
        assert_eq!(g.labelled().len(), 2, "a container and a network");
        std::panic::panic_any((g.label(), g.root().to_path_buf()));
    });
    let payload = outcome.expect_err("the closure panics");
    let (label, root) = payload
        .downcast_ref::<(String, PathBuf)>()
        .expect("the payload names the sandbox")
        .clone();
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &label]), "", "{label}");
    assert_eq!(
        docker_ok(&["network", "ls", "-q", "--filter", &label]),
        "",
        "{label}"
    );
    assert!(!root.exists(), "temp dir removed: {}", root.display());
}
