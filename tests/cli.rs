//! Tests of the built binary: exact stderr and exit codes for bad input, what `render`
//! writes and reports, and that no password ever reaches the terminal.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// cdq in `dir` (its default deploy directory), with no `CDQ_*` variable of the developer's
/// shell ([`common::cdq_command`]) and `CI=true`.
fn cdq(dir: &Path, args: &[&str]) -> Output {
    common::cdq_command()
        .current_dir(dir)
        .args(args)
        .env("CI", "true")
        .output()
        .expect("runs cdq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn secrets_of(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("secrets.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_string()))
        .collect()
}

#[test]
fn unknown_arch_exits_2_naming_both() {
    let d = tempfile::tempdir().unwrap();
    let o = cdq(d.path(), &["render", "--arch", "sparc", "--ip", "10.1.2.3"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: invalid value 'sparc' for '--arch <ARCH>'\n  [possible values: amd64, arm64]\n\nFor more information, try '--help'.\n"
    );
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "a rejected command wrote files"
    );
}

#[test]
fn bad_deadline_exits_2_with_the_spelling_to_use() {
    let d = tempfile::tempdir().unwrap();
    let o = cdq(d.path(), &["up", "--deadline", "5 minutes"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: invalid value '5 minutes' for '--deadline <DURATION>': `5 minutes` is not a duration: write it like `90s`, `5m` or `1m30s`\n\nFor more information, try '--help'.\n"
    );
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "a rejected command wrote files"
    );
}

#[test]
fn misspelt_settings_key_names_file_line_and_spelling() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("cdq.yaml"),
        "project: demo\nprots:\n  server: 80\n",
    )
    .unwrap();
    let o = cdq(d.path(), &["render", "--ip", "10.1.2.3"]);
    assert_eq!(o.status.code(), Some(2));
    let file = d.path().join("cdq.yaml");
    assert_eq!(
        stderr(&o),
        format!(
            "error: `{}` line 2: unknown key `prots`\nhint: did you mean `ports`? valid keys here: project, data_dir, host_ip, arch, images, timezone, services, versions, image_refs, registry, registry_layout, ports, heap, deadlines, seccomp, selinux_relabel, target, cluster\n",
            file.display()
        )
    );
}

#[test]
fn bad_ip_and_bad_arch_in_settings() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("cdq.yaml");
    std::fs::write(&file, "project: demo\nhost_ip: 10.1.2\n").unwrap();
    let o = cdq(d.path(), &["render"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!(
            "error: `{}` line 2: `10.1.2` is not an IP address (write one like `10.1.2.3`, or `auto`)\n",
            file.display()
        )),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, "arch: sparc\n").unwrap();
    let o = cdq(d.path(), &["render", "--ip", "10.1.2.3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("unknown architecture `sparc`, expected one of `amd64`, `arm64`, `auto`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn render_writes_the_kit_and_a_rerender_keeps_secrets() {
    let d = tempfile::tempdir().unwrap();
    let o = cdq(
        d.path(),
        &["render", "--arch", "arm64", "--ip", "10.1.2.3", "--yes"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let compose = std::fs::read_to_string(d.path().join("docker-compose.arm64.yaml")).unwrap();
    assert!(compose.contains("image: mysql:8.4.10"), "arm64 images");
    let kafka = std::fs::read_to_string(d.path().join("confd/kafka/server.properties")).unwrap();
    assert!(kafka.contains("advertised.listeners=INTERNAL://kafka:9092,EXTERNAL://10.1.2.3:9094"));
    for f in [
        "secrets.env",
        ".env",
        "confd/redis/redis.conf",
        "confd/server/application.yml",
    ] {
        let mode = std::fs::metadata(d.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let secrets = std::fs::read(d.path().join("secrets.env")).unwrap();
    assert!(
        stderr(&o).contains("15 created, 0 changed, 0 unchanged"),
        "{}",
        stderr(&o)
    );

    // Same inputs: nothing changes, and the secrets file is byte-identical.
    let o = cdq(d.path(), &["render", "--arch", "arm64", "--ip", "10.1.2.3"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("0 created, 0 changed, 15 unchanged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        secrets,
        std::fs::read(d.path().join("secrets.env")).unwrap()
    );

    // Without --ip the stored IP is kept (kafka never moves silently).
    let o = cdq(d.path(), &["render", "--arch", "arm64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("host IP 10.1.2.3 (kept from the last run)"),
        "{}",
        stderr(&o)
    );

    // A new IP changes exactly the files that use it, and says so.
    let o = cdq(d.path(), &["render", "--arch", "arm64", "--ip", "10.9.9.9"]);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("warning: host IP changed from 10.1.2.3 to 10.9.9.9 (from --ip)"),
        "{err}"
    );
    let changed: Vec<&str> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("changed   "))
        .collect();
    assert_eq!(
        changed,
        [
            "docker-compose.arm64.yaml",
            "confd/kafka/server.properties",
            "confd/server/application.yml"
        ],
        "{err}"
    );
    assert_eq!(
        secrets,
        std::fs::read(d.path().join("secrets.env")).unwrap()
    );
}

#[test]
fn rendered_file_is_valid_for_docker_compose() {
    let d = tempfile::tempdir().unwrap();
    let o = cdq(d.path(), &["render", "--arch", "arm64", "--ip", "10.1.2.3"]);
    assert_eq!(o.status.code(), Some(0));
    for compose in [&["compose"][..], &[][..]] {
        let (prog, args): (&str, Vec<&str>) = if compose.is_empty() {
            (
                "docker-compose",
                vec!["-f", "docker-compose.arm64.yaml", "config", "--services"],
            )
        } else {
            (
                "docker",
                vec![
                    "compose",
                    "-f",
                    "docker-compose.arm64.yaml",
                    "config",
                    "--services",
                ],
            )
        };
        let out = Command::new(prog)
            .current_dir(d.path())
            .args(&args)
            .output()
            .expect("compose is installed (see .ci/run)");
        assert!(
            out.status.success(),
            "{prog}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut services: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        services.sort();
        assert_eq!(
            services,
            [
                "elasticsearch",
                "grafana",
                "kafka",
                "mysql",
                "prometheus",
                "redis",
                "server",
                "ucenter",
                "zookeeper"
            ],
            "{prog}"
        );
    }
}

#[test]
fn no_password_is_ever_printed() {
    let d = tempfile::tempdir().unwrap();
    let mut outputs = vec![cdq(d.path(), &["render", "--ip", "10.1.2.3", "-v"])];
    outputs.push(cdq(d.path(), &["render", "--ip", "10.1.2.3", "--json"]));
    outputs.push(cdq(d.path(), &["images", "--json"]));
    outputs.push(cdq(d.path(), &["down", "--purge"]));
    let secrets = secrets_of(d.path());
    assert_eq!(secrets.len(), 5);
    for o in &outputs {
        let all = format!("{}{}", stdout(o), stderr(o));
        for s in &secrets {
            assert!(!all.contains(s.as_str()), "a password was printed:\n{all}");
        }
    }
}

#[test]
fn purge_without_terminal_or_yes_refuses() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("data/mysql")).unwrap();
    let o = cdq(d.path(), &["down", "--purge"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: `cdq down --purge` needs a confirmation and there is no terminal to ask on\nhint: run it in a terminal, or add `--yes` if you really mean to delete the data\n"
    );
    assert!(d.path().join("data/mysql").is_dir());
}

#[test]
fn images_lists_the_chosen_set() {
    let d = tempfile::tempdir().unwrap();
    let o = cdq(
        d.path(),
        &["--images", "local", "images", "--arch", "arm64"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o)
            .lines()
            .all(|l| l.starts_with("cdq-local/") && l.ends_with(":2-arm64")),
        "{}",
        stdout(&o)
    );
    let o = cdq(
        d.path(),
        &[
            "--images",
            "harbor.example.com:5000/cd",
            "images",
            "--arch",
            "amd64",
        ],
    );
    // a prefix keeps the upstream path (what a Docker Hub mirror or a Harbor proxy cache serves)
    assert!(
        stdout(&o).contains("harbor.example.com:5000/cd/apache/kafka:4.3.1\n"),
        "{}",
        stdout(&o)
    );
    let o = cdq(
        d.path(),
        &[
            "--images",
            "mirror.example.com",
            "images",
            "--arch",
            "amd64",
        ],
    );
    assert!(
        stdout(&o).contains("mirror.example.com/library/mysql:8.4.10\n"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("bitnami"), "{}", stdout(&o));
    // a hand-filled registry: `registry_layout: flat`
    std::fs::write(
        d.path().join("cdq.yaml"),
        "images: harbor.example.com:5000/cd\nregistry_layout: flat\n",
    )
    .unwrap();
    let o = cdq(d.path(), &["images", "--arch", "amd64"]);
    assert!(
        stdout(&o).contains("harbor.example.com:5000/cd/kafka:4.3.1\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn images_json_gives_one_version_per_service_on_both_arches() {
    let d = tempfile::tempdir().unwrap();
    let json = |arch: &str| -> serde_json::Value {
        let o = cdq(d.path(), &["images", "--arch", arch, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["images"].clone()
    };
    let (amd, arm) = (json("amd64"), json("arm64"));
    for (svc, img) in amd.as_object().unwrap() {
        if svc != "server" && svc != "ucenter" {
            assert_eq!(img, &arm[svc], "{svc}");
        }
        assert!(!img.as_str().unwrap().contains("bitnami/"), "{img}");
    }
    assert_eq!(amd["mysql"], "mysql:8.4.10");
    assert_eq!(amd["redis"], "redis:7.2.11");
    assert!(amd["zookeeper"].as_str().unwrap().starts_with("zookeeper:"));
    // image_refs replaces the whole reference, and `cdq images` shows it
    std::fs::write(
        d.path().join("cdq.yaml"),
        "image_refs:\n  mysql: harbor.example.com/dba/mysql:8.4.10\n",
    )
    .unwrap();
    assert_eq!(
        json("arm64")["mysql"],
        "harbor.example.com/dba/mysql:8.4.10"
    );
}
