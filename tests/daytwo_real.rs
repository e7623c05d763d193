//! Day two on the real daemon and the local image kit (issue 16's "Must show"): a support
//! archive with every password masked (and one with the daemon unreachable), a backup of
//! MySQL and Redis brought back by `restore` + `up` into a new deploy directory, a truncated
//! backup refused before anything is written, and an upgrade of `server` to an image that
//! never becomes healthy rolled back to the previous, healthy container.
//!
//! Every test runs in its own `tests/common` [`Sandbox`] (unique project, temp dir, clean
//! `CDQ_*` environment, removal by label on drop). Image tags a test makes (the rollback
//! test's registry-prefix set) carry the test's unique name and are removed by its guard.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Out, Sandbox, docker, docker_ok, free_ports};

/// A project on `services` of the local kit with its own published ports.
fn kit_sandbox(test: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new("cdqd", test)
        .flags(&["--images", "local"])
        .down_on_drop("2");
    let [server, ucenter, grafana, kafka] = free_ports::<4>();
    sb.write_config(&format!(
        "services: [{services}]\nports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka} }}\n"
    ));
    sb
}

fn up(sb: &Sandbox) -> Out {
    sb.cdq(&[
        "up",
        "--skip-preflight",
        "--ip",
        "127.0.0.1",
        "--progress",
        "plain",
    ])
}

fn secret_values(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("secrets.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split_once('=').unwrap().1.to_string())
        .collect()
}

/// Every file of a `.tar.gz`, by path.
fn archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in a.entries().expect("a valid tar.gz") {
        let mut e = e.expect("a valid tar.gz entry");
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(p, b);
    }
    out
}

fn mysql(sb: &Sandbox, sql: &str) -> String {
    docker_ok(&[
        "exec",
        &format!("{}-mysql-1", sb.project()),
        "sh",
        "-c",
        &format!("MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" mysql -uroot -N -B -e \"{sql}\""),
    ])
}

fn redis(sb: &Sandbox, args: &[&str]) -> String {
    let name = format!("{}-redis-1", sb.project());
    let mut v = vec!["exec", name.as_str(), "redis-cli"];
    v.extend_from_slice(args);
    docker_ok(&v)
}

/// diagnose on a running stack, backup, purge, a truncated backup refused, restore into a
/// new deploy directory, up: the row, the key and the passwords are back.
#[test]
fn backup_and_restore_bring_back_mysql_and_redis_with_the_same_passwords() {
    let a = kit_sandbox("backup", "mysql, redis");
    let o = up(&a);
    assert_eq!(o.code, Some(0), "{o}");
    mysql(
        &a,
        "CREATE DATABASE poc; CREATE TABLE poc.t (k VARCHAR(40)); INSERT INTO poc.t VALUES ('day-two-row')",
    );
    assert_eq!(redis(&a, &["SET", "daytwo", "day-two-key"]), "OK");
    let secrets = secret_values(&a.dir());
    assert_eq!(secrets.len(), 5);

    // The support archive of the running stack: its parts, and no password anywhere.
    let diag = a.root().join("diag.tar.gz");
    let o = a.cdq(&["diagnose", "-o", diag.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains(&format!("wrote {}", diag.display())),
        "{o}"
    );
    assert_eq!(
        std::fs::metadata(&diag).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let files = archive(&diag);
    let mysql_c = format!("{}-mysql-1", a.project());
    for part in [
        "cdq-diagnose/cdq/version.txt".to_string(),
        "cdq-diagnose/cdq/settings.txt".into(),
        "cdq-diagnose/cdq/cdq.yaml".into(),
        "cdq-diagnose/rendered/docker-compose.amd64.yaml".into(),
        "cdq-diagnose/rendered/.env".into(),
        "cdq-diagnose/rendered/confd/redis/redis.conf".into(),
        "cdq-diagnose/preflight.json".into(),
        "cdq-diagnose/status.json".into(),
        "cdq-diagnose/engine/version.json".into(),
        "cdq-diagnose/engine/info.json".into(),
        "cdq-diagnose/engine/events.jsonl".into(),
        format!("cdq-diagnose/containers/{mysql_c}/inspect.json"),
        format!("cdq-diagnose/containers/{mysql_c}/logs.txt"),
        "cdq-diagnose/host/facts.txt".into(),
        "cdq-diagnose/host/meminfo".into(),
    ] {
        assert!(files.contains_key(&part), "no {part} in {:?}", files.keys());
    }
    let inspect: serde_json::Value =
        serde_json::from_slice(&files[&format!("cdq-diagnose/containers/{mysql_c}/inspect.json")])
            .unwrap();
    let env = inspect["Config"]["Env"].to_string();
    assert!(env.contains("MYSQL_ROOT_PASSWORD=<redacted>"), "{env}");
    let facts = String::from_utf8_lossy(&files["cdq-diagnose/host/facts.txt"]).into_owned();
    for k in ["kernel:", "page size:", "cgroup:", "selinux:", "time sync:"] {
        assert!(facts.contains(k), "{k} missing from {facts}");
    }
    for (p, b) in &files {
        let text = String::from_utf8_lossy(b);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secrets.env value is in {p}");
        }
    }

    // The backup: private, with a manifest, the dump and the RDB.
    let backup = a.root().join("b.tar.gz");
    let o = a.cdq(&["backup", "-o", backup.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains(&format!("wrote {}", backup.display())),
        "{o}"
    );
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let parts = archive(&backup);
    for p in [
        "manifest.json",
        "mysql/dump.sql",
        "redis/dump.rdb",
        "secrets.env",
        "cdq.yaml",
    ] {
        assert!(parts.contains_key(p), "no {p} in {:?}", parts.keys());
    }
    assert!(String::from_utf8_lossy(&parts["mysql/dump.sql"]).contains("day-two-row"));

    let o = a.cdq(&["down", "--purge", "--yes", "--timeout", "2"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(a.labelled().is_empty());

    // A new deploy directory: a truncated backup is refused and writes nothing.
    let b = Sandbox::new("cdqd", "restore")
        .flags(&["--images", "local"])
        .down_on_drop("2");
    let bytes = std::fs::read(&backup).unwrap();
    let cut = b.root().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = b.cdq(&["restore", cut.to_str().unwrap()]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("is not a complete cdq backup"), "{o}");
    assert!(o.stderr.contains("hint: nothing was written"), "{o}");
    assert!(
        !b.dir().exists() && !b.config().exists(),
        "a refused restore wrote something"
    );

    let o = b.cdq(&["restore", backup.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(
        secret_values(&b.dir()),
        secrets,
        "secrets.env comes back as it was"
    );
    // Restoring again over what is there is refused without a confirmation.
    let o = b.cdq(&["restore", backup.to_str().unwrap()]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr
            .contains("refusing to restore over data that is there"),
        "{o}"
    );

    let o = up(&b);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(mysql(&b, "SELECT k FROM poc.t"), "day-two-row");
    assert_eq!(redis(&b, &["GET", "daytwo"]), "day-two-key");
    assert_eq!(
        std::fs::read(b.dir().join("secrets.env")).unwrap(),
        parts["secrets.env"],
        "secrets.env identical"
    );

    // Not under a running stack, even when confirmed.
    let o = b.cdq(&["restore", "--yes", backup.to_str().unwrap()]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr
            .contains("has 2 containers: restoring under a running stack would lose data"),
        "{o}"
    );
    // Stopped, and confirmed: what is there is moved aside, not deleted.
    let o = b.cdq(&["down", "--timeout", "2"]);
    assert_eq!(o.code, Some(0), "{o}");
    let o = b.cdq(&["restore", "--yes", backup.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o}");
    let aside: Vec<String> = std::fs::read_dir(b.dir().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".before-restore-"))
        .collect();
    assert_eq!(
        aside.len(),
        2,
        "mysql and redis moved aside: {aside:?}\n{o}"
    );
    assert!(
        o.stderr.contains("moved ") && o.stderr.contains(" aside to "),
        "{o}"
    );
}

/// With the daemon unreachable, diagnose still writes the host's side, says so inside and
/// as a warning, and exits 0.
#[test]
fn diagnose_with_the_daemon_unreachable_still_writes_an_archive() {
    let sb = Sandbox::new("cdqd", "diag-down");
    sb.write_config("services: [redis]\n");
    let out = sb.root().join("d.tar.gz");
    let sock = sb.root().join("closed.sock");
    let o = sb.cdq_env(
        &["diagnose", "-o", out.to_str().unwrap()],
        &[("DOCKER_HOST", &format!("unix://{}", sock.display()))],
    );
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains("warning: the Docker daemon could not be reached"),
        "{o}"
    );
    assert!(
        o.stderr.contains(&format!("wrote {}", out.display())),
        "{o}"
    );
    let files = archive(&out);
    assert!(
        files.contains_key("cdq-diagnose/engine/UNREACHABLE.txt"),
        "{:?}",
        files.keys()
    );
    assert!(files.contains_key("cdq-diagnose/host/facts.txt"));
    assert!(files.contains_key("cdq-diagnose/cdq/version.txt"));
}

/// Removes the image tags a test made, by exact reference, on drop.
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = docker(&["rmi", t]);
        }
    }
}

/// All nine on the local kit, then `server` upgraded (a `--templates` override of
/// `compose/amd64.yaml` naming another image for it) to an image that exits at once: exit 4
/// naming the rollback, and the previous server running and healthy, the same container.
#[test]
fn a_failed_server_upgrade_rolls_back_to_the_previous_healthy_container() {
    let sb = kit_sandbox(
        "rollback",
        "mysql, redis, zookeeper, kafka, elasticsearch, prometheus, grafana, ucenter, server",
    );
    let broken = format!("cdqd-{}:never-healthy", sb.project());
    docker_ok(&["tag", "cdq-local/base:2-amd64", &broken]);
    let _tags = Tags(vec![broken.clone()]);
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/amd64.yaml");
    let mut catalogue: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(compose).unwrap()).unwrap();
    catalogue["services"]["server"]["local"]["image"] = broken.clone().into();
    let templates = sb.root().join("templates");
    std::fs::create_dir_all(templates.join("compose")).unwrap();
    std::fs::write(
        templates.join("compose/amd64.yaml"),
        serde_yaml::to_string(&catalogue).unwrap(),
    )
    .unwrap();
    let ports: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(sb.config()).unwrap()).unwrap();
    let p = |k: &str| ports["ports"][k].as_u64().unwrap();

    let o = up(&sb);
    assert_eq!(o.code, Some(0), "{o}");
    // What `up` ends with: the three addresses and where the logins are, no password.
    let tail: Vec<&str> = o.stderr.lines().rev().take(5).collect();
    let tail = tail.join("\n");
    for k in ["server", "ucenter", "grafana"] {
        assert!(
            tail.contains(&format!("http://127.0.0.1:{}/", p(k))),
            "{tail}"
        );
    }
    assert!(tail.contains("`cdq logins`"), "{tail}");
    for s in secret_values(&sb.dir()) {
        assert!(
            !o.stderr.contains(&s) && !o.stdout.contains(&s),
            "up printed a password"
        );
    }
    let name = format!("{}-server-1", sb.project());
    let inspect = |n: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&docker_ok(&["inspect", n])).unwrap()[0].clone()
    };
    let before = inspect(&name);

    let o = sb.cdq(&[
        "up",
        "--skip-preflight",
        "--ip",
        "127.0.0.1",
        "--progress",
        "plain",
        "--templates",
        templates.to_str().unwrap(),
    ]);
    assert_eq!(o.code, Some(4), "{o}");
    assert!(
        o.stderr
            .contains("`server` did not become healthy; rolled back `server`"),
        "{o}"
    );
    assert!(
        o.stderr.contains("rolled back: the previous container"),
        "{o}"
    );
    let after = inspect(&name);
    assert_eq!(after["Id"], before["Id"], "the previous container is back");
    assert_eq!(after["State"]["Status"], "running");
    assert_eq!(after["State"]["Health"]["Status"], "healthy");
    assert_eq!(after["Config"], before["Config"], "same container config");
    assert_eq!(after["HostConfig"], before["HostConfig"]);
    // Nothing else of `server` is left: not the new one, not a `-previous`.
    let servers = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &sb.label(),
        "--filter",
        "label=io.cdq.service=server",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(servers, name);
    // Every service runs and is healthy, and `status` says honestly that `server` is not the
    // rendered one (issue 18: exit 0 means the stack runs as rendered): the next `cdq up`
    // tries the upgrade again.
    let o = sb.cdq(&["status"]);
    assert_eq!(o.code, Some(4), "{o}");
    assert!(
        o.stdout
            .lines()
            .filter(|l| l.contains("running"))
            .all(|l| l.contains("healthy")),
        "every service healthy after the rollback: {o}"
    );
    assert!(
        o.stdout.contains(&format!(
            "server: image is `cdq-local/server:2-amd64`, not `{broken}`"
        )),
        "{o}"
    );
}

/// Before `up` replaces a stateful service's image it backs that service up and says where;
/// `--no-backup` skips it. Redis's image is "upgraded" to another tag of the same kit image
/// (a `--templates` override of `compose/amd64.yaml`), so the new container is healthy.
#[test]
fn an_image_upgrade_of_a_stateful_service_is_backed_up_first() {
    let sb = kit_sandbox("preupgrade", "redis");
    let o = up(&sb);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(redis(&sb, &["SET", "before", "upgrade"]), "OK");
    let mut tags = Tags(vec![]);
    let mut templates = Vec::new();
    for n in ["a", "b"] {
        let tag = format!("cdqd-{}:{n}", sb.project());
        docker_ok(&["tag", "cdq-local/redis:2-amd64", &tag]);
        tags.0.push(tag.clone());
        let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/amd64.yaml");
        let mut catalogue: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(compose).unwrap()).unwrap();
        catalogue["services"]["redis"]["local"]["image"] = tag.into();
        let dir = sb.root().join(format!("templates-{n}"));
        std::fs::create_dir_all(dir.join("compose")).unwrap();
        std::fs::write(
            dir.join("compose/amd64.yaml"),
            serde_yaml::to_string(&catalogue).unwrap(),
        )
        .unwrap();
        templates.push(dir);
    }
    let upgrade = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "up",
            "--skip-preflight",
            "--ip",
            "127.0.0.1",
            "--progress",
            "plain",
            "--templates",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        sb.cdq(&args)
    };
    let o = upgrade(&templates[0], &[]);
    assert_eq!(o.code, Some(0), "{o}");
    let backups = sb.dir().join("backups");
    let files: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let f = &files[0];
    let name = f.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("pre-upgrade-redis-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert!(
        o.stderr
            .contains(&format!("backed up redis to {}", f.display())),
        "{o}"
    );
    assert_eq!(
        std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(archive(f).contains_key("redis/dump.rdb"));
    assert_eq!(
        redis(&sb, &["GET", "before"]),
        "upgrade",
        "the data survived the upgrade"
    );

    let o = upgrade(&templates[1], &["--no-backup"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(!o.stderr.contains("backed up"), "{o}");
    assert_eq!(std::fs::read_dir(&backups).unwrap().count(), 1);
}
