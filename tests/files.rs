//! What cdq writes, deletes and mounts on a host that is not empty (issues 17 and 18), through
//! the built binary on this machine: every case ends with the foreign files unchanged
//! (content, owner, mode) and a message naming the path and the fix. Cases that need running
//! containers use the local kit (`--images local`) and a one- or two-service stack. Runs as
//! root (chown to other uids, tmpfs and read-only bind mounts), as CI does.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{Out, Sandbox, docker_ok, free_ports, preflight_check, run};

/// (kind, uid, gid, mode, content or link target) of each path: what "unchanged" compares.
fn snap(paths: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p)
                .unwrap_or_else(|e| panic!("foreign `{}` is gone: {e}", p.display()));
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!("file {:?}", std::fs::read(p).unwrap())
            };
            (
                p.clone(),
                format!("{} {} {:o} {what}", m.uid(), m.gid(), m.mode() & 0o7777),
            )
        })
        .collect()
}

/// A file that is not cdq's: `text`, owned by uid/gid 1234, mode 0640.
fn foreign_file(p: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
    std::os::unix::fs::chown(p, Some(1234), Some(1234)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640)).unwrap();
    p.to_path_buf()
}

/// A sandbox with free ports for the services that publish, and `services` enabled.
fn sandbox(test: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new("cdqfiles", test).env("CI", "true");
    let [server, ucenter, grafana, kafka, prometheus] = free_ports();
    sb.write_config(&format!(
        "ports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka}, prometheus: {prometheus} }}\nservices: [{services}]\n"
    ));
    sb
}

const RENDER: [&str; 5] = ["render", "--arch", "amd64", "--ip", "10.1.2.3"];
const UP: [&str; 7] = [
    "--images",
    "local",
    "up",
    "--ip",
    "127.0.0.1",
    "--progress",
    "plain",
];

fn secrets(sb: &Sandbox) -> PathBuf {
    sb.dir().join("secrets.env")
}

// ---- render (issue 17.5, 17.8) -------------------------------------------------------

#[test]
fn render_never_overwrites_a_compose_project_it_did_not_write() {
    let sb = sandbox("foreign-render", "redis");
    let compose = foreign_file(
        &sb.dir().join("docker-compose.amd64.yaml"),
        "services:\n  mine:\n    image: nginx\n",
    );
    let env = foreign_file(&sb.dir().join(".env"), "MY_TOKEN=abc\n");
    let before = snap(&[compose.clone(), env.clone()]);
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert_eq!(
        o.stderr,
        format!(
            "error: `{}` was not written by cdq (its first line is not cdq's `# Rendered by cdq` header): refusing to overwrite it\n\
             hint: render into another directory (`--dir DIR`), or move the file away and run this again\n",
            compose.display()
        )
    );
    assert_eq!(snap(&[compose.clone(), env.clone()]), before);
    assert!(!secrets(&sb).exists(), "nothing written: {o}");

    // The same for `.env` alone, once the compose file is moved aside.
    std::fs::rename(&compose, sb.root().join("moved.yaml")).unwrap();
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.starts_with(&format!(
            "error: `{}` was not written by cdq",
            env.display()
        )),
        "{o}"
    );
    assert_eq!(snap(std::slice::from_ref(&env))[&env], before[&env]);
}

#[test]
fn render_writes_through_no_symlink() {
    let sb = sandbox("symlinks", "redis");
    let target = foreign_file(&sb.root().join("elsewhere/passwords"), "KEEP=1\n");
    std::fs::create_dir_all(sb.dir()).unwrap();
    let link = secrets(&sb);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = snap(&[target.clone(), link.clone()]);
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert_eq!(
        o.stderr,
        format!(
            "error: `{l}` is a symlink to `{t}`: cdq does not write through links it did not create\n\
             hint: replace the link with the file itself (`cp --remove-destination {t} {l}`), or use another directory (`--dir`)\n",
            l = link.display(),
            t = target.display()
        )
    );
    assert_eq!(snap(&[target.clone(), link.clone()]), before);

    // A rendered file that is a link (here `.env`) is refused the same way.
    std::fs::remove_file(&link).unwrap();
    let env = sb.dir().join(".env");
    std::os::unix::fs::symlink(&target, &env).unwrap();
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.contains(&format!(
            "`{}` is a symlink to `{}`",
            env.display(),
            target.display()
        )),
        "{o}"
    );
    assert_eq!(
        snap(std::slice::from_ref(&target))[&target],
        before[&target]
    );
}

// ---- system paths (issue 17.4) ---------------------------------------------------------

#[test]
fn system_paths_are_refused_for_the_data_and_deploy_directories() {
    let sb = sandbox("syspaths", "redis");
    let o = sb.cdq(&[&["--data-dir", "/var/lib"][..], &RENDER[..]].concat());
    assert_eq!(o.code, Some(2), "{o}");
    assert_eq!(
        o.stderr,
        "error: `data_dir` `/var/lib` is refused: it is a system directory, and cdq creates (and `down --purge` deletes) its own directories there\n\
         hint: give cdq a directory of its own, e.g. `--data-dir /srv/cdq/data`\n"
    );
    assert!(!sb.dir().exists(), "nothing written: {o}");
    let o = run(common::cdq_command().args(["--dir", "/etc", "status"]));
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr
            .starts_with("error: `dir` `/etc` is refused: it is a system directory"),
        "{o}"
    );
    assert!(
        o.stderr
            .contains("hint: give cdq a directory of its own, e.g. `--dir /srv/cdq`")
    );
}

// ---- secrets.env (issue 18.1) ----------------------------------------------------------

fn without_line(text: &str, key: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(&format!("{key}=")))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn a_missing_key_under_initialised_data_is_refused_not_generated() {
    let sb = sandbox("missing-key", "mysql");
    assert_eq!(sb.cdq(&RENDER).code, Some(0));
    // MySQL's data exists, made by cdq for this project (its mark beside it), initialised
    // with the password now removed from the file.
    let data = sb.dir().join("data/mysql");
    foreign_file(&data.join("ibdata1"), "innodb");
    let mark = format!(
        "project={}\ndeploy_dir={}\n",
        sb.project(),
        sb.dir().display()
    );
    std::fs::write(sb.dir().join("data/.mysql.cdq-mark"), mark).unwrap();
    let edited = without_line(
        &std::fs::read_to_string(secrets(&sb)).unwrap(),
        "MYSQL_ROOT_PASSWORD",
    );
    std::fs::write(secrets(&sb), &edited).unwrap();
    let want = format!(
        "error: `{s}` has no `MYSQL_ROOT_PASSWORD`, and mysql's data in `{d}` was initialised with that password: cdq will not generate a new one\n\
         hint: restore `secrets.env` from your backup, or add the line `MYSQL_ROOT_PASSWORD=<value>` with the value the mysql container still holds (`docker inspect -f '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' PROJECT-mysql-1 | grep MYSQL_ROOT_PASSWORD`); to start mysql from scratch instead, move `{d}` aside\n",
        s = secrets(&sb).display(),
        d = data.display()
    );
    for cmd in [&RENDER[..], &["preflight", "--ip", "10.1.2.3"][..]] {
        let o = sb.cdq(cmd);
        assert_eq!(o.code, Some(2), "{o}");
        assert_eq!(o.stderr, want, "{cmd:?}");
        assert_eq!(std::fs::read_to_string(secrets(&sb)).unwrap(), edited);
    }
    // With no secrets.env at all, the same: nothing is generated.
    std::fs::remove_file(secrets(&sb)).unwrap();
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.starts_with(&format!(
            "error: `{}` is missing, and mysql's data in `{}` was initialised",
            secrets(&sb).display(),
            data.display()
        )),
        "{o}"
    );
    assert!(!secrets(&sb).exists());
}

#[test]
fn a_missing_key_without_data_is_appended_and_the_rest_kept() {
    let sb = sandbox("missing-key-nodata", "mysql");
    assert_eq!(sb.cdq(&RENDER).code, Some(0));
    let full = std::fs::read_to_string(secrets(&sb)).unwrap();
    let edited = without_line(&full, "REDIS_PASSWORD");
    std::fs::write(secrets(&sb), &edited).unwrap();
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains("added REDIS_PASSWORD to secrets.env"),
        "{o}"
    );
    let now = std::fs::read_to_string(secrets(&sb)).unwrap();
    assert!(now.starts_with(&edited));
}

#[test]
fn a_duplicate_key_is_refused_naming_both_lines() {
    let sb = sandbox("dup-key", "redis");
    assert_eq!(sb.cdq(&RENDER).code, Some(0));
    let mut text = std::fs::read_to_string(secrets(&sb)).unwrap();
    let first = text
        .lines()
        .position(|l| l.starts_with("REDIS_PASSWORD="))
        .unwrap()
        + 1;
    text.push_str("REDIS_PASSWORD=another\n");
    std::fs::write(secrets(&sb), &text).unwrap();
    let last = text.lines().count();
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(
        o.stderr.starts_with(&format!(
            "error: `{}` line {last}: `REDIS_PASSWORD` is set again (first on line {first})\nhint: keep the line that holds the password the data was created with and delete the other",
            secrets(&sb).display()
        )),
        "{o}"
    );
    assert_eq!(std::fs::read_to_string(secrets(&sb)).unwrap(), text);
}

#[test]
fn a_secrets_file_owned_by_another_user_is_a_warning() {
    let sb = sandbox("secrets-owner", "redis");
    assert_eq!(sb.cdq(&RENDER).code, Some(0));
    std::os::unix::fs::chown(secrets(&sb), Some(1234), Some(1234)).unwrap();
    let before = snap(&[secrets(&sb)]);
    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(0), "{o}");
    let s = secrets(&sb).display().to_string();
    assert!(
        o.stderr.contains(&format!(
            "warning: `{s}` is owned by uid 1234, not by this user (uid 0): another user can read and change the stack's passwords; hand it over with `sudo chown 0 {s}`"
        )),
        "{o}"
    );
    assert_eq!(snap(&[secrets(&sb)]), before);
}

// ---- disk faults (issue 18.4) ------------------------------------------------------------

/// A mount made by a test, unmounted when dropped (pass or fail).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let o = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at));
        assert_eq!(o.code, Some(0), "mounting a tmpfs needs root: {o}");
        Mount(at.to_path_buf())
    }

    /// `at` bound onto itself, read-only.
    fn read_only(at: &Path) -> Mount {
        let o = run(Command::new("mount").args(["--bind"]).arg(at).arg(at));
        assert_eq!(o.code, Some(0), "{o}");
        let m = Mount(at.to_path_buf());
        let o = run(Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(at));
        assert_eq!(o.code, Some(0), "{o}");
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg(&self.0));
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_full_deploy_dir_fails_preflight_and_render_leaves_no_empty_file() {
    let sb = sandbox("full", "redis, mysql");
    let _m = Mount::tmpfs(&sb.dir(), "size=4k");
    let pf = sb.cdq(&["preflight", "--json", "--ip", "127.0.0.1"]);
    assert_eq!(pf.code, Some(3), "{pf}");
    let report: serde_json::Value = serde_json::from_str(&pf.stdout).unwrap();
    let c = preflight_check(&report, "deploy-dir");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("df -h {}", sb.dir().display())),
        "{c}"
    );

    let o = sb.cdq(&RENDER);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("no space left on the device"), "{o}");
    assert!(
        o.stderr.contains(&format!("`{}/", sb.dir().display())),
        "{o}"
    );
    assert!(o.stderr.contains("hint: free space there (`df -h "), "{o}");
    for f in files_under(&sb.dir()) {
        assert!(
            std::fs::metadata(&f).unwrap().len() > 0,
            "a 0-byte `{}` was left",
            f.display()
        );
    }
    let kept = std::fs::read(secrets(&sb)).unwrap();
    let text = String::from_utf8(kept.clone()).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains('=')).count(),
        5,
        "complete"
    );
    let again = sb.cdq(&RENDER);
    assert_eq!(again.code, Some(1), "{again}");
    assert_eq!(std::fs::read(secrets(&sb)).unwrap(), kept);
}

/// `up` a redis, make the deploy directory read-only: preflight fails with the remount fix,
/// render names the path, and `down` still stops and removes the stack.
#[test]
fn a_read_only_deploy_dir_fails_preflight_and_down_still_works() {
    let sb = sandbox("readonly", "redis");
    let up = sb.cdq(&UP);
    assert_eq!(up.code, Some(0), "{up}");
    let secrets_before = std::fs::read(secrets(&sb)).unwrap();
    let _m = Mount::read_only(&sb.dir());

    let pf = sb.cdq(&[
        "--images",
        "local",
        "preflight",
        "--json",
        "--ip",
        "127.0.0.1",
    ]);
    let report: serde_json::Value = serde_json::from_str(&pf.stdout).unwrap();
    let c = preflight_check(&report, "deploy-dir");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .starts_with("remount it read-write (`sudo mount -o remount,rw $(stat -c %m "),
        "{c}"
    );
    assert_eq!(pf.code, Some(3), "{pf}");

    // A changed setting makes render write: it names the path and the remount.
    let o = sb.cdq(&["render", "--arch", "amd64", "--ip", "10.9.9.9"]);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("the filesystem is read-only"), "{o}");
    assert!(
        o.stderr.contains(&format!("`{}/", sb.dir().display())),
        "{o}"
    );
    assert!(o.stderr.contains("hint: remount it read-write"), "{o}");

    let down = sb.cdq(&["down", "--timeout", "5"]);
    assert_eq!(down.code, Some(0), "{down}");
    assert_eq!(sb.labelled(), Vec::<String>::new(), "{down}");
    assert_eq!(std::fs::read(secrets(&sb)).unwrap(), secrets_before);
}

// ---- data directories (issue 17.1-3) ---------------------------------------------------------

#[test]
fn a_foreign_service_data_dir_fails_preflight_and_is_never_mounted() {
    let sb = sandbox("foreign-data", "mysql, redis");
    let data = sb.dir().join("data");
    let a = foreign_file(&data.join("mysql/a.txt"), "someone's database");
    let b = foreign_file(&data.join("mysql/sub/b"), "more");
    // data/redis: a link to someone else's non-empty directory.
    let elsewhere = foreign_file(&sb.root().join("theirs/dump.rdb"), "REDIS0009");
    std::os::unix::fs::symlink(sb.root().join("theirs"), data.join("redis")).unwrap();
    let all = vec![
        a.clone(),
        b.clone(),
        data.join("mysql"),
        data.join("mysql/sub"),
        elsewhere.clone(),
        data.join("redis"),
    ];
    std::os::unix::fs::chown(data.join("mysql"), Some(1234), Some(1234)).unwrap();
    let before = snap(&all);

    let pf = sb.cdq(&[
        "--images",
        "local",
        "preflight",
        "--json",
        "--ip",
        "127.0.0.1",
    ]);
    assert_eq!(pf.code, Some(3), "{pf}");
    let report: serde_json::Value = serde_json::from_str(&pf.stdout).unwrap();
    let m = preflight_check(&report, "data-mysql");
    assert_eq!(m["status"], "fail", "{m}");
    assert_eq!(
        m["found"],
        format!(
            "`{}` is owned by uid 1234 and holds `a.txt`, `sub`, not made by cdq",
            data.join("mysql").display()
        )
    );
    let fix = m["fix"].as_str().unwrap();
    for part in [
        "use another data directory (`--data-dir DIR`)",
        &format!(
            "move it aside (`mv {d}/mysql {d}/mysql.before-cdq`)",
            d = data.display()
        ),
        "`--adopt-data mysql` (its files become uid 999's, and `down --purge` deletes it)",
    ] {
        assert!(fix.contains(part), "`{part}` not in {fix}");
    }
    let r = preflight_check(&report, "data-redis");
    assert_eq!(r["status"], "fail", "{r}");
    assert!(
        r["found"].as_str().unwrap().starts_with(&format!(
            "`{}` (a symlink to `{}`) is owned by",
            data.join("redis").display(),
            sb.root().join("theirs").display()
        )),
        "{r}"
    );

    // Adopting mysql turns its FAIL into a WARN that says what happens.
    let pf = sb.cdq(&[
        "--images",
        "local",
        "preflight",
        "--json",
        "--ip",
        "127.0.0.1",
        "--adopt-data",
        "mysql",
    ]);
    let report: serde_json::Value = serde_json::from_str(&pf.stdout).unwrap();
    let m = preflight_check(&report, "data-mysql");
    assert_eq!(m["status"], "warn", "{m}");
    assert!(
        m["fix"].as_str().unwrap().contains("handed to uid 999"),
        "{m}"
    );

    // `up` stops at preflight (exit 3); past it, the executor refuses too.
    let up = sb.cdq(&UP);
    assert_eq!(up.code, Some(3), "{up}");
    assert!(up.stderr.contains("preflight failed: "), "{up}");
    assert!(
        up.stderr.contains("data-mysql") && up.stderr.contains("data-redis"),
        "{up}"
    );
    let up = sb.cdq(&[&UP[..], &["--skip-preflight"]].concat());
    assert_eq!(up.code, Some(4), "{up}");
    assert!(
        up.stderr.contains(&format!(
            "`{}` is owned by uid 1234 and holds `a.txt`, `sub`, not made by cdq: cdq does not mount a data directory it did not make",
            data.join("mysql").display()
        )),
        "{up}"
    );
    assert_eq!(snap(&all), before);
    let running = docker_ok(&["ps", "-q", "--filter", &sb.label()]);
    assert_eq!(running, "", "nothing runs on a foreign directory");
}

/// The must-show of issue 17: `down --purge --yes` on a stack whose `data_dir` also holds
/// foreign files deletes the stack's data and leaves the foreign files and the data dir.
#[test]
fn purge_deletes_only_what_cdq_made() {
    let sb = sandbox("purge", "redis");
    let data = sb.root().join("shared");
    let other = foreign_file(&data.join("other.txt"), "keep me");
    let unrelated = foreign_file(&data.join("unrelated/f"), "me too");
    let notes = foreign_file(&sb.dir().join("confd/notes.txt"), "my notes");
    let d = data.to_str().unwrap();
    let all = vec![
        other.clone(),
        unrelated.clone(),
        data.join("unrelated"),
        notes.clone(),
    ];
    let before = snap(&all);
    let up = sb.cdq(&[&["--data-dir", d][..], &UP[..]].concat());
    assert_eq!(up.code, Some(0), "{up}");
    assert!(data.join("redis").is_dir());
    assert!(
        data.join(".redis.cdq-mark").is_file(),
        "the mark is beside the directory"
    );

    let o = sb.cdq(&[
        "--data-dir",
        d,
        "--yes",
        "down",
        "--purge",
        "--timeout",
        "5",
    ]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(!data.join("redis").exists(), "{o}");
    assert!(!data.join(".redis.cdq-mark").exists(), "{o}");
    assert!(
        data.is_dir(),
        "the data directory stays while it holds foreign files"
    );
    assert_eq!(snap(&all), before);
    assert!(!secrets(&sb).exists(), "{o}");
    assert!(!sb.dir().join(".env").exists(), "{o}");
    assert!(!sb.dir().join("confd/redis").exists(), "{o}");
    for line in [
        format!("deleted {}/redis", d),
        format!(
            "warning: left {}: not made by cdq for this project",
            other.display()
        ),
        format!(
            "warning: left {}: not made by cdq for this project",
            data.join("unrelated").display()
        ),
        format!("warning: left {d}: the data directory still holds what is listed above"),
    ] {
        assert!(o.stderr.contains(&line), "`{line}` not in {o}");
    }
    assert_eq!(sb.labelled(), Vec::<String>::new());

    // With nothing foreign left in it, the next purge removes the data directory too.
    std::fs::remove_file(&other).unwrap();
    std::fs::remove_dir_all(data.join("unrelated")).unwrap();
    assert_eq!(
        sb.cdq(&[&["--data-dir", d][..], &UP[..]].concat()).code,
        Some(0)
    );
    let o = sb.cdq(&[
        "--data-dir",
        d,
        "--yes",
        "down",
        "--purge",
        "--timeout",
        "5",
    ]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(!data.exists(), "{o}");
}

/// Issue 18.1 on MySQL itself: a key deleted by hand (or duplicated) is refused by `render`
/// and `up`, `secrets.env` stays byte-identical, and MySQL still takes the stored password.
#[test]
fn mysql_keeps_its_password_when_secrets_env_is_damaged() {
    let sb = sandbox("mysql-pw", "mysql");
    let up = sb.cdq(&UP);
    assert_eq!(up.code, Some(0), "{up}");
    let full = std::fs::read_to_string(secrets(&sb)).unwrap();
    let pw = full
        .lines()
        .find_map(|l| l.strip_prefix("MYSQL_ROOT_PASSWORD="))
        .unwrap()
        .to_string();
    let container = format!("{}-mysql-1", sb.project());
    let accepts = |pw: &str| -> Out {
        run(Command::new("docker").args([
            "exec",
            &container,
            "mysql",
            "-uroot",
            &format!("-p{pw}"),
            "-h127.0.0.1",
            "-N",
            "-e",
            "SELECT 1",
        ]))
    };
    assert_eq!(accepts(&pw).code, Some(0));

    let missing = without_line(&full, "MYSQL_ROOT_PASSWORD");
    let duplicate = format!("{full}MYSQL_ROOT_PASSWORD=rotated\n");
    for (case, text, msg) in [
        (
            "missing",
            &missing,
            "has no `MYSQL_ROOT_PASSWORD`, and mysql's data in",
        ),
        (
            "duplicate",
            &duplicate,
            "`MYSQL_ROOT_PASSWORD` is set again (first on line",
        ),
    ] {
        std::fs::write(secrets(&sb), text).unwrap();
        for cmd in [&RENDER[..], &UP[..]] {
            let o = sb.cdq(cmd);
            assert_eq!(o.code, Some(2), "{case} {cmd:?}: {o}");
            assert!(o.stderr.contains(msg), "{case}: {o}");
            assert_eq!(
                &std::fs::read_to_string(secrets(&sb)).unwrap(),
                text,
                "{case}"
            );
        }
    }
    std::fs::write(secrets(&sb), &full).unwrap();
    assert_eq!(
        accepts(&pw).code,
        Some(0),
        "MySQL still takes the stored password"
    );
    let again = sb.cdq(&UP);
    assert_eq!(again.code, Some(0), "{again}");
    assert!(again.stderr.contains("nothing to change"), "{again}");
}
