//! Day two commands of the built binary that need no running stack: shell completions,
//! `logins` (a password only when asked for by name), and `status --watch` redrawn in place
//! under a pseudo-terminal (`script`, util-linux) and appended otherwise.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;

use common::{Sandbox, cdq_command, run};

#[test]
fn completions_print_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _cdq"),
        ("zsh", "#compdef cdq"),
        ("fish", "complete -c cdq"),
    ] {
        let o = run(cdq_command().args(["completions", shell]));
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stdout.contains(marker), "{shell}: {o}");
        for sub in ["backup", "restore", "diagnose", "status"] {
            assert!(o.stdout.contains(sub), "{shell} completes `{sub}`");
        }
    }
    let o = run(cdq_command().args(["completions", "tcsh"]));
    assert_eq!(o.code, Some(2), "{o}");
}

/// Completions work where the settings file is broken: a shell loads them at every start.
#[test]
fn completions_need_no_settings() {
    let sb = Sandbox::new("cdqc", "compl");
    sb.write_config("servcies: [redis]\n");
    let o = sb.cdq(&["completions", "bash"]);
    assert_eq!(o.code, Some(0), "{o}");
}

#[test]
fn logins_name_where_passwords_are_and_print_one_only_by_name() {
    let sb = Sandbox::new("cdqc", "logins");
    sb.write_config("services: [mysql, redis, prometheus, grafana]\n");
    let o = sb.cdq(&["render", "--ip", "127.0.0.1", "--arch", "amd64"]);
    assert_eq!(o.code, Some(0), "{o}");
    let secrets = std::fs::read_to_string(sb.dir().join("secrets.env")).unwrap();
    let value = |k: &str| {
        secrets
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let o = sb.cdq(&["logins"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.contains("`cdq logins grafana`"), "{o}");
    for l in secrets.lines().filter(|l| l.contains('=')) {
        let v = l.split_once('=').unwrap().1;
        assert!(!o.stdout.contains(v) && !o.stderr.contains(v), "{o}");
    }
    let o = sb.cdq(&["logins", "grafana"]);
    assert_eq!(o.code, Some(0), "{o}");
    assert_eq!(o.stdout.trim(), value("GRAFANA_ADMIN_PASSWORD"));
    let o = sb.cdq(&["logins", "grafna"]);
    assert_eq!(o.code, Some(2), "{o}");
    assert_eq!(
        o.stderr,
        "error: no login named `grafna`\nhint: did you mean `grafana`?\n"
    );
}

/// Reads `r` until `needle` has appeared `n` times; returns what was read.
fn read_until(r: &mut impl Read, needle: &str, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.matches(needle).count() >= n {
            return text;
        }
        let k = r.read(&mut buf).expect("reading cdq's output");
        assert!(k > 0, "cdq ended before {n} x {needle:?}:\n{text}");
        got.extend_from_slice(&buf[..k]);
    }
}

/// On a terminal each table replaces the last (cursor home, clear to the end); in a pipe
/// they follow each other. Both keep going until stopped.
#[test]
fn status_watch_redraws_in_place_on_a_terminal_and_appends_otherwise() {
    let sb = Sandbox::new("cdqc", "watch");
    sb.write_config("services: [redis]\n");
    let args = ["status", "--watch", "--interval", "1"];

    // A pseudo-terminal: `script` runs cdq on one and copies what it draws to our pipe.
    let cmd = sb.command(&args);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tty = common::clean_command("script");
    tty.args(["-qfec", &line, "/dev/null"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = tty.spawn().expect("running script(1)");
    let text = read_until(child.stdout.as_mut().unwrap(), "\x1b[H\x1b[J", 2);
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("SERVICE"), "{text:?}");
    assert!(
        text.contains("redis") && text.contains("missing"),
        "{text:?}"
    );

    let mut pipe = sb.command(&args);
    pipe.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = pipe.spawn().unwrap();
    let text = read_until(child.stdout.as_mut().unwrap(), "SERVICE", 2);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains('\x1b'),
        "no terminal codes in a pipe: {text:?}"
    );
    assert!(text.contains("Ctrl-C to stop"), "{text}");
}

/// A broken `cdq.yaml` is what diagnose is for: it still writes the archive (with the file
/// and the error), warns, and exits 0.
#[test]
fn diagnose_with_a_broken_settings_file_still_writes_an_archive() {
    let sb = Sandbox::new("cdqc", "diag-yaml");
    sb.write_config("services: [redis\n");
    let out = sb.root().join("d.tar.gz");
    let sock = sb.root().join("closed.sock");
    let o = sb.cdq_env(
        &["diagnose", "-o", out.to_str().unwrap()],
        &[("DOCKER_HOST", &format!("unix://{}", sock.display()))],
    );
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains("warning: the settings could not be loaded, so the defaults were used"),
        "{o}"
    );
    let f = std::fs::File::open(&out).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut names = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut b = String::new();
        e.read_to_string(&mut b).unwrap();
        names.insert(e.path().unwrap().to_string_lossy().into_owned(), b);
    }
    assert_eq!(names["cdq-diagnose/cdq/cdq.yaml"], "services: [redis\n");
    assert!(
        names["cdq-diagnose/cdq/settings.error.txt"].contains(&sb.config().display().to_string()),
        "{names:?}"
    );
}
