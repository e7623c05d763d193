//! Issue 12, through the built binary on this machine's Docker: a deploy directory holding
//! data written by cdq's old image set (MySQL 5.7 data, Bitnami Kafka's ZooKeeper-mode data)
//! stops `cdq up` in preflight (exit 3) before anything starts, says why and how to move the
//! data, and leaves every file as it was. Std + tempfile only; the project name is unique and
//! nothing is expected to be created (the test checks that by label and removes strays).

mod common;

use std::path::Path;
use std::process::Command;

fn host_ip() -> String {
    let c = cdq::hostip::candidates(&cdq::hostip::interfaces().unwrap());
    c.first()
        .map(|(_, ip)| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn cdq(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let ip = host_ip();
    let out = common::cdq_command()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .args(["--ip", &ip])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` with its contents, sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push((p.display().to_string(), Vec::new()));
            out.extend(snapshot(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn containers(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.cdq.project={project}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

struct Strays(String);
impl Drop for Strays {
    fn drop(&mut self) {
        let ids = containers(&self.0);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "prune", "-f", "--filter"])
            .arg(format!("label=io.cdq.project={}", self.0))
            .output();
    }
}

#[test]
fn up_on_mysql_57_and_zookeeper_mode_kafka_data_stops_in_preflight_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let project = format!("olddata{}", std::process::id());
    let _strays = Strays(project.clone());
    write(&dir.join("cdq.yaml"), &format!("project: {project}\n"));
    // what mysql:5.7.44 and bitnami/kafka:3.6.2 leave in a deploy directory of the old cdq
    let data = dir.join("data");
    write(&data.join("mysql/ibdata1"), "innodb");
    write(&data.join("mysql/auto.cnf"), "[auto]\nserver-uuid=1\n");
    write(&data.join("mysql/mysql/user.frm"), "frm");
    write(&data.join("mysql/cd_server/t.ibd"), "rows");
    write(
        &data.join("kafka/meta.properties"),
        "#\nbroker.id=1\nversion=0\ncluster.id=oldCluster\n",
    );
    write(
        &data.join("kafka/cd-events-0/00000000000000000000.log"),
        "msgs",
    );
    let before = snapshot(&data);

    // `--pull never`: the official set is not on this offline host, and issue 13's default
    // `--pull missing` would stop at the pull (exit 6) before preflight looks at the data.
    let (code, out, err) = cdq(dir, &["up", "--progress", "plain", "--pull", "never"]);
    let all = format!("{out}\n{err}");
    assert_eq!(code, 3, "preflight must stop `up` (exit 3):\n{all}");
    assert!(all.contains("data-format-mysql"), "{all}");
    assert!(all.contains("MySQL 5.7 data"), "{all}");
    assert!(
        all.contains("mysqldump"),
        "the fix says how to move the data:\n{all}"
    );
    assert!(all.contains("data-format-kafka"), "{all}");
    assert!(all.contains("ZooKeeper mode"), "{all}");
    assert!(all.contains("preflight failed"), "{all}");
    assert!(containers(&project).is_empty(), "nothing may start:\n{all}");
    assert_eq!(snapshot(&data), before, "the old data must be untouched");

    // the same answer from `cdq preflight --json`, as data
    let (code, out, err) = cdq(dir, &["preflight", "--json"]);
    assert_eq!(code, 3, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no `checks` in {v}"))
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no `{id}` in {v}"))
    };
    assert_eq!(status("data-format-mysql"), "fail");
    assert_eq!(status("data-format-kafka"), "fail");
    assert_eq!(snapshot(&data), before);
}

#[test]
fn data_written_by_the_new_set_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("cdq.yaml"), "project: olddatanew\n");
    let data = dir.join("data");
    write(
        &data.join("mysql/mysql_upgrade_history"),
        r#"{"file_format":"1","upgrade_history":[{"date":"2026-11-30 10:00:00","version":"8.4.10","maturity":"LTS","initialize":true}]}"#,
    );
    write(&data.join("mysql/mysql.ibd"), "dd");
    let id = cdq::render::kafka_cluster_id("olddatanew");
    write(
        &data.join("kafka/meta.properties"),
        &format!("node.id=1\ndirectory.id=x\nversion=1\ncluster.id={id}\n"),
    );
    // apache/kafka runs as 1000 and must be able to write its directory (as `cdq up` leaves
    // it); a directory another uid owns is its own FAIL, checked after this
    for p in [data.join("kafka"), data.join("kafka/meta.properties")] {
        std::os::unix::fs::chown(&p, Some(1000), Some(1000))
            .unwrap_or_else(|e| panic!("this test runs as root (chown {}: {e})", p.display()));
    }
    // Not made by this cdq (no mark): adopted, as a directory from before the marks would be.
    let adopt = ["--adopt-data", "mysql", "--adopt-data", "kafka"];
    let (_, out, err) = cdq(dir, &[&["preflight", "--json"][..], &adopt].concat());
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let text = v.to_string();
    for id in ["data-format-mysql", "data-format-kafka"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no `{id}` in {text}"));
        assert_eq!(c["status"], "pass", "{c}");
    }
    // the same KRaft data owned by root: apache/kafka (uid 1000) could not write it
    std::os::unix::fs::chown(data.join("kafka"), Some(0), Some(0)).unwrap();
    let (code, out, _) = cdq(dir, &["preflight", "--json"]);
    assert_eq!(code, 3, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "data-format-kafka")
        .unwrap()
        .clone();
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["fix"].as_str().unwrap().contains("chown -R 1000:1000"),
        "{c}"
    );
}
