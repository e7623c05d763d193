//! The property of issue 17: for randomly generated trees of foreign files, directories and
//! symlinks (owners, modes) under the deploy directory and `data_dir`, `render`, `up` (on the
//! fake engine, paused clock), `down` and `down --purge` leave every foreign entry
//! byte-identical, with the same owner and mode, whether cdq proceeds or refuses.
//!
//! CI runs `PROPTEST_CASES` (default 32) cases; `scripts/fuzz.sh` runs it longer
//! (`CDQ_FUZZ_SECONDS`). cdq's own reserved names (`.<name>.cdq-tmp`, `.<name>.cdq-new`) are
//! left out of the generated names: they are cdq's temp files by definition.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdq::confighash::Overlay;
use cdq::context::Context;
use cdq::engine::ImageInfo;
use cdq::engine::fake::FakeEngine;
use cdq::execute::{Options, Phase, Progress};
use cdq::hostip::{Decision, Source};
use cdq::kit::{self, SecretsMode};
use cdq::ops::{down, up};
use cdq::services::Arch;
use cdq::settings::{self, Overrides};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Names a customer's tree may hold, many of them cdq's own (so that cdq meets them).
const NAMES: [&str; 16] = [
    "mysql",
    "redis",
    "zookeeper",
    "grafana",
    "data",
    "confd",
    ".env",
    "secrets.env",
    "docker-compose.amd64.yaml",
    "other.txt",
    "unrelated",
    ".cdq",
    ".mysql.cdq-mark",
    "rendered",
    "my.cnf",
    "f",
];
const UIDS: [u32; 3] = [0, 999, 1234];
const MODES: [u32; 6] = [0o600, 0o644, 0o755, 0o700, 0o444, 0o000];

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    /// A link to one of [`link_targets`].
    Link(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Under the deploy directory (false) or `data_dir` (true).
    in_data: bool,
    path: Vec<usize>,
    kind: Kind,
    uid: usize,
    mode: usize,
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Kind::File),
        Just(Kind::Dir),
        (0usize..4).prop_map(Kind::Link),
    ];
    (
        any::<bool>(),
        prop::collection::vec(0..NAMES.len(), 1..4),
        kind,
        0..UIDS.len(),
        0..MODES.len(),
    )
        .prop_map(|(in_data, path, kind, uid, mode)| Entry {
            in_data,
            path,
            kind,
            uid,
            mode,
        })
}

fn link_targets(root: &Path) -> [PathBuf; 4] {
    [
        root.join("outside"),
        root.join("outside/keep"),
        PathBuf::from("../nowhere"),
        root.join("outside/empty"),
    ]
}

/// Builds the foreign tree; returns every foreign path (entries and the parents made for
/// them). An entry whose place is taken, or below a non-directory, is skipped.
fn build(root: &Path, entries: &[Entry]) -> Vec<PathBuf> {
    let outside = root.join("outside");
    std::fs::create_dir_all(outside.join("empty")).unwrap();
    std::fs::write(outside.join("keep"), "theirs").unwrap();
    std::os::unix::fs::chown(outside.join("keep"), Some(1234), Some(1234)).unwrap();
    let mut made = vec![outside.clone(), outside.join("keep"), outside.join("empty")];
    let deploy = root.join("deploy");
    let data = deploy.join("data");
    for e in entries {
        let base = if e.in_data { &data } else { &deploy };
        let mut p = base.clone();
        let mut ok = true;
        for (i, n) in e.path.iter().enumerate() {
            p.push(NAMES[*n]);
            if i + 1 < e.path.len() {
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        ok = false;
                        break;
                    }
                    // Fails when `deploy` or `data` itself is a foreign file: skipped.
                    Err(_) if std::fs::create_dir_all(&p).is_ok() => made.push(p.clone()),
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if !ok
            || std::fs::symlink_metadata(&p).is_ok()
            || std::fs::create_dir_all(p.parent().unwrap()).is_err()
        {
            continue;
        }
        match &e.kind {
            Kind::File(b) => std::fs::write(&p, b).unwrap(),
            Kind::Dir => std::fs::create_dir(&p).unwrap(),
            Kind::Link(t) => std::os::unix::fs::symlink(&link_targets(root)[*t], &p).unwrap(),
        }
        if !matches!(e.kind, Kind::Link(_)) {
            std::os::unix::fs::chown(&p, Some(UIDS[e.uid]), Some(UIDS[e.uid])).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(MODES[e.mode])).unwrap();
        }
        made.push(p);
    }
    // Parents made above keep their default mode and owner; they are foreign all the same.
    let mut with_ancestors = made.clone();
    for p in &made {
        for a in p.ancestors().skip(1) {
            if a == root || !a.starts_with(root) || a == deploy || a == data {
                break;
            }
            with_ancestors.push(a.to_path_buf());
        }
    }
    with_ancestors.sort();
    with_ancestors.dedup();
    with_ancestors
}

fn snap(paths: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    paths
        .iter()
        .map(|p| {
            let what = match std::fs::symlink_metadata(p) {
                Err(e) => format!("gone: {e}"),
                Ok(m) => {
                    let kind = if m.file_type().is_symlink() {
                        format!("link {}", std::fs::read_link(p).unwrap().display())
                    } else if m.is_dir() {
                        "dir".into()
                    } else {
                        format!("file {:?}", std::fs::read(p).unwrap())
                    };
                    format!("{} {} {:o} {kind}", m.uid(), m.gid(), m.mode() & 0o7777)
                }
            };
            (p.clone(), what)
        })
        .collect()
}

struct Quiet;
impl Progress for Quiet {
    fn phase(&self, _: &str, _: &Phase) {}
}

/// render, up on the fake engine, down, down --purge: each may refuse; none may touch a
/// foreign entry.
fn lifecycle(root: &Path) -> Option<(Option<cdq::execute::Outcome>, down::Purged)> {
    let deploy = root.join("deploy");
    let config = root.join("cdq.yaml");
    std::fs::write(
        &config,
        "services: [mysql, redis, zookeeper, grafana, prometheus]\n",
    )
    .unwrap();
    let loaded = settings::load(
        root,
        &Overrides {
            dir: Some(deploy.clone()),
            config: Some(config),
            project: Some("prop".into()),
            images: Some("local".into()),
            arch: Some(Arch::Amd64),
            ..Overrides::default()
        },
    );
    // Settings that do not load (a foreign `cdq.yaml` cannot be here: it is outside) end
    // the run before anything is written; the fixed test below checks they load.
    let Ok(s) = loaded else {
        return None;
    };
    let ctx = Context::new(s).unwrap().with_ip(Decision {
        ip: "10.1.2.3".parse::<IpAddr>().unwrap(),
        source: Source::Flag,
        changed_from: None,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let rendered = kit::render(&ctx, SecretsMode::Ensure)
        .and_then(|(r, _)| kit::write(&ctx, &r).map(|_| r))
        .and_then(|r| r.project(&ctx));
    let engine = Arc::new(FakeEngine::new());
    let mut outcome = None;
    if let Ok(project) = &rendered {
        for spec in project.services.values() {
            engine.add_image(
                &spec.image,
                ImageInfo {
                    id: format!("sha256:{}", spec.image),
                    arch: "amd64".into(),
                    os: "linux".into(),
                    user: String::new(),
                    size: 1,
                },
            );
        }
        rt.block_on(async {
            if let Ok(observed) = up::observe(&*engine, project, &Overlay::new()).await {
                let (_tx, rx) = tokio::sync::watch::channel(false);
                let opts = Options {
                    default_deadline: Duration::from_secs(30),
                    ..Options::default()
                };
                outcome = up::converge(
                    engine.clone(),
                    project,
                    &observed,
                    opts,
                    Arc::new(Quiet),
                    rx,
                )
                .await
                .ok();
            }
        });
    }
    rt.block_on(async {
        let project = rendered.as_ref().ok();
        let mut say = |_| {};
        if let Ok(ours) =
            down::remove_containers(&*engine, "prop", project, Duration::from_secs(1), &mut say)
                .await
        {
            let _ = down::remove_networks(&*engine, "prop", &ours, &mut say).await;
        }
    });
    down::purge(&ctx.settings, "prop")
        .ok()
        .map(|p| (outcome, p))
}

fn check(entries: Vec<Entry>) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let foreign = build(root.path(), &entries);
    let before = snap(&foreign);
    let _ = lifecycle(root.path());
    let after = snap(&foreign);
    for (p, was) in &before {
        prop_assert_eq!(&after[p], was, "`{}` changed", p.display());
    }
    Ok(())
}

fn run(cases: u32, seconds: Option<u64>) {
    let t0 = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&prop::collection::vec(entry(), 0..24), check) {
            panic!("after {total} passing cases: {e}");
        }
        total += u64::from(cases);
        match seconds {
            Some(s) if t0.elapsed() < Duration::from_secs(s) => {}
            _ => break,
        }
    }
    eprintln!(
        "fuzz files::foreign_trees: {total} cases in {:.1}s, no foreign entry changed",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn foreign_trees_survive_render_up_down_and_purge() {
    assert!(
        cdq::host::is_root(),
        "owners and modes of foreign entries need root (CI runs as root)"
    );
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let seconds = std::env::var("CDQ_FUZZ_SECONDS")
        .ok()
        .map(|v| v.parse().expect("CDQ_FUZZ_SECONDS is a number of seconds"));
    run(cases, seconds);
}

/// The case the property is about, fixed: a purge after a full lifecycle deletes the
/// stack's files and leaves a foreign file in `data_dir` and in `confd/`.
#[test]
fn a_fixed_foreign_tree_survives_and_the_stack_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let entries = vec![
        Entry {
            in_data: true,
            path: vec![9],
            kind: Kind::File(b"keep".to_vec()),
            uid: 2,
            mode: 0,
        },
        Entry {
            in_data: false,
            path: vec![5, 10, 15],
            kind: Kind::File(b"mine".to_vec()),
            uid: 1,
            mode: 1,
        },
    ];
    let foreign = build(root.path(), &entries);
    let before = snap(&foreign);
    let (outcome, purged) = lifecycle(root.path()).expect("the lifecycle ran");
    assert_eq!(outcome, Some(cdq::execute::Outcome::Done));
    assert_eq!(snap(&foreign), before);
    let deploy = root.path().join("deploy");
    assert!(
        purged.deleted.contains(&deploy.join("data/mysql")),
        "{purged:?}"
    );
    assert!(
        purged.left.contains(&(
            deploy.join("data/other.txt"),
            "not made by cdq for this project".into()
        )),
        "{purged:?}"
    );
    assert!(!deploy.join("data/mysql").exists());
    assert!(!deploy.join("secrets.env").exists());
    assert!(!deploy.join("confd/mysql").exists());
    assert!(deploy.join("data/other.txt").exists());
}
