//! Xinchuang hosts (issue 14): the preflight checks `clone3`, `page-size`, `cgroup`,
//! `container-engine`, `nofile`/`memlock` on what a container is granted, and the settings
//! `seccomp: unconfined` and `selinux_relabel`.
//!
//! What this machine cannot be made into (Docker 19.03, 64K pages, cgroup v2 with an old
//! engine, iSulad) is a fake engine or hand-made facts (`src/preflight/hostcompat.rs` has
//! every outcome); what it can (the probes, both compose implementations reading the render)
//! runs for real here, on the local kit images, each in its own sandbox.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use cdq::assets::Assets;
use cdq::catalog::Catalog;
use cdq::context::Context;
use cdq::engine::docker::Docker;
use cdq::engine::fake::FakeEngine;
use cdq::engine::{EngineInfo, ImageInfo};
use cdq::hostip::{Decision, Source};
use cdq::kit::{self, SecretsMode};
use cdq::preflight::{self, Finding, Status, compat};
use cdq::project::Ulimit;
use cdq::services::{Arch, Service};
use cdq::settings::{self, ImageSet, Overrides};
use common::{Sandbox, preflight_check};

/// The kit image of a service as the catalogue names it (the kit's tag moves with it).
fn kit_image(service: Service) -> String {
    Catalog::load(
        &Assets::default(),
        Arch::Amd64,
        &ImageSet::Local,
        &cdq::imageref::Pins::default(),
    )
    .unwrap()
    .image(service)
    .to_string()
}

fn engine_info(product: &str, version: &str) -> EngineInfo {
    EngineInfo {
        product: product.into(),
        server_version: version.into(),
        api_version: "1.40".into(),
        arch: "x86_64".into(),
        os: "linux".into(),
        storage_driver: "overlay2".into(),
        root_dir: "/var/lib/docker".into(),
        cpus: 8,
        memory_bytes: 16 << 30,
    }
}

/// Preflight of the official amd64 set, rendered in memory from `settings_text`, against
/// `fake`. Every image is present (amd64), and `glibc` says what each one's `getconf` says.
fn preflight_on_fake(settings_text: &str, fake: &FakeEngine, glibc: &str) -> Vec<Finding> {
    preflight_on_fake_with(settings_text, fake, glibc, |_| {})
}

/// [`preflight_on_fake`], with `script` run on the fake after the defaults are set.
fn preflight_on_fake_with(
    settings_text: &str,
    fake: &FakeEngine,
    glibc: &str,
    script: impl Fn(&FakeEngine),
) -> Vec<Finding> {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("cdq.yaml"), settings_text).unwrap();
    let s = settings::load(
        d.path(),
        &Overrides {
            arch: Some(Arch::Amd64),
            ..Default::default()
        },
    )
    .unwrap();
    let ctx = Context::new(s).unwrap().with_ip(Decision {
        ip: "127.0.0.1".parse().unwrap(),
        source: Source::Flag,
        changed_from: None,
    });
    let (rendered, _) = kit::render(&ctx, SecretsMode::ReadOnly).unwrap();
    let project = rendered.project(&ctx).unwrap();
    for spec in project.services.values() {
        fake.add_image(
            &spec.image,
            ImageInfo {
                id: format!("sha256:{}", spec.name),
                arch: "amd64".into(),
                os: "linux".into(),
                user: String::new(),
                size: 1,
            },
        );
        fake.set_oneoff_result_for(&spec.image, "getconf", 0, glibc);
        fake.set_oneoff_result_for(&spec.image, "sh", 0, "65536\nunlimited\n");
    }
    script(fake);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt
        .block_on(preflight::findings(&ctx, Ok(fake), &rendered, &project))
        .unwrap();
    // Rendering in memory for preflight writes nothing.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    out
}

fn check<'a>(list: &'a [Finding], id: &str) -> &'a Finding {
    list.iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no `{id}` in {list:#?}"))
}

#[test]
fn docker_19_03_fails_clone3_with_the_fix_naming_seccomp_unconfined() {
    let fake = FakeEngine::new();
    fake.set_info(engine_info("Docker", "19.03.15"));
    let list = preflight_on_fake("", &fake, "glibc 2.36\n");
    let c = check(&list, "clone3");
    assert_eq!(c.status, Status::Fail, "{c:#?}");
    assert!(
        c.found
            .starts_with("Docker 19.03.15 answers clone3 with EPERM: `mysql`"),
        "{c:#?}"
    );
    // Every image said glibc 2.36 when asked, so each is named, with its reference.
    for s in [
        "`redis` (`redis:7.2.5`, glibc 2.36)",
        "`kafka`",
        "`zookeeper`",
    ] {
        assert!(c.found.contains(s), "{s} not in {c:#?}");
    }
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .starts_with("set `seccomp: unconfined` in cdq.yaml"),
        "{c:#?}"
    );
    assert_eq!(check(&list, "cgroup").status, Status::Pass);
    assert_eq!(check(&list, "container-engine").found, "Docker 19.03.15");
    // The probes ran as one-offs: one `getconf` per image, one limits probe per image
    // with ulimits (kafka, elasticsearch).
    let calls = fake.calls();
    let oneoffs = calls.iter().filter(|c| c.starts_with("run_oneoff")).count();
    assert_eq!(oneoffs, 9 + 2, "{calls:?}");
}

#[test]
fn seccomp_unconfined_is_what_makes_clone3_pass_on_docker_19_03() {
    let fake = FakeEngine::new();
    fake.set_info(engine_info("Docker", "19.03.15"));
    // The catalogue's own data without probes: glibc the images do not report.
    let list = preflight_on_fake("seccomp: unconfined\n", &fake, "");
    let c = check(&list, "clone3");
    assert_eq!(c.status, Status::Pass, "{c:#?}");
    assert_eq!(
        c.found,
        "Docker 19.03.15 blocks clone3; seccomp=unconfined for redis, zookeeper, kafka, ucenter, server"
    );
}

#[test]
fn a_new_engine_asks_no_image_about_clone3() {
    let fake = FakeEngine::new();
    let list = preflight_on_fake("", &fake, "glibc 2.36\n");
    assert_eq!(check(&list, "clone3").status, Status::Pass);
    let calls = fake.calls();
    // Only the limits probes (kafka, elasticsearch) ran.
    let oneoffs = calls.iter().filter(|c| c.starts_with("run_oneoff")).count();
    assert_eq!(oneoffs, 2, "{calls:?}");
    let n = check(&list, "nofile");
    assert_eq!(n.status, Status::Pass, "{n:#?}");
    assert!(n.found.contains("65536 in a `kafka` container"), "{n:#?}");
    assert_eq!(check(&list, "memlock").status, Status::Pass);
}

#[test]
fn podman_is_named_as_the_engine_and_allows_clone3() {
    let fake = FakeEngine::new();
    fake.set_info(engine_info("Podman", "4.3.1"));
    let list = preflight_on_fake("", &fake, "glibc 2.36\n");
    let e = check(&list, "container-engine");
    assert_eq!(e.status, Status::Pass);
    assert!(
        e.found.starts_with("Podman 4.3.1 through its Docker API"),
        "{e:#?}"
    );
    assert_eq!(check(&list, "clone3").status, Status::Pass);
}

#[test]
fn limits_a_container_cannot_get_fail_nofile_with_the_engine_s_words() {
    let fake = FakeEngine::new();
    let why = "error setting rlimits for ready process: error setting rlimit type 7: operation not permitted";
    let list = preflight_on_fake_with("", &fake, "glibc 2.36\n", |f| {
        f.set_oneoff_result_for("elasticsearch:7.17.22", "sh", 127, why)
    });
    let n = check(&list, "nofile");
    assert_eq!(n.status, Status::Fail, "{n:#?}");
    assert!(n.found.contains(why), "{n:#?}");
    assert!(
        n.fix.as_deref().unwrap().contains("LimitNOFILE=65536"),
        "{n:#?}"
    );
    let m = check(&list, "memlock");
    assert_eq!(m.status, Status::Fail, "{m:#?}");
}

#[test]
fn preflight_json_has_the_xinchuang_checks() {
    let sb = Sandbox::new("cdqx", "json").flags(&["--images", "local"]);
    sb.write_config("");
    let o = sb.cdq(&["preflight", "--json", "--ip", "127.0.0.1"]);
    let v: serde_json::Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    for id in [
        "page-size",
        "clone3",
        "cgroup",
        "container-engine",
        "memlock",
    ] {
        let c = preflight_check(&v, id);
        assert!(
            ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    // This machine: Docker 20.10.24 lets clone3 through, and its pages are 4 KiB.
    assert_eq!(preflight_check(&v, "clone3")["status"], "pass", "{o}");
    assert_eq!(preflight_check(&v, "page-size")["found"], "4 KiB", "{o}");
    assert!(
        preflight_check(&v, "container-engine")["found"]
            .as_str()
            .unwrap()
            .starts_with("Docker "),
        "{o}"
    );
    // Nothing was left behind: preflight on the kit asks no probe container.
    assert!(sb.labelled().is_empty(), "{:?}", sb.labelled());
}

/// The `docker-compose` that is 1.29 (Debian's), wherever PATH puts Compose v2's shim.
fn compose_v1() -> String {
    for c in ["/usr/bin/docker-compose", "docker-compose"] {
        let out = Command::new(c).arg("version").output();
        if let Ok(o) = out
            && String::from_utf8_lossy(&o.stdout).contains("version 1.29")
        {
            return c.to_string();
        }
    }
    panic!("docker-compose 1.29 is not installed (scripts/setup.sh installs Debian's)");
}

#[test]
fn seccomp_and_relabel_render_and_both_compose_implementations_read_them() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("cdq.yaml"),
        "seccomp: unconfined\nselinux_relabel: true\n",
    )
    .unwrap();
    let o = common::run(
        common::cdq_command()
            .current_dir(d.path())
            .args(["render", "--arch", "amd64", "--ip", "10.1.2.3"]),
    );
    assert_eq!(o.code, Some(0), "{o}");
    let file = "docker-compose.amd64.yaml";
    let text = std::fs::read_to_string(d.path().join(file)).unwrap();
    // The official images on glibc >= 2.34, and only they, run unconfined.
    let unconfined = text
        .matches("security_opt: [\"seccomp=unconfined\"]")
        .count();
    assert_eq!(unconfined, 5, "{text}");
    assert!(text.contains("/etc/mysql/conf.d/cd.cnf:ro,z"), "{text}");
    assert!(text.contains("./data/redis:/data:z"), "{text}");
    let binds = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- ./"))
        .count();
    let relabelled = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- ./") && (l.ends_with(":z") || l.ends_with(",z")))
        .count();
    assert_eq!(binds, relabelled, "every bind mount gets :z\n{text}");

    for (prog, pre) in [("docker", vec!["compose"]), (compose_v1().as_str(), vec![])] {
        let out = Command::new(prog)
            .current_dir(d.path())
            .args(&pre)
            .args(["-f", file, "config"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{prog}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = String::from_utf8_lossy(&out.stdout);
        assert!(cfg.contains("seccomp=unconfined"), "{prog}: {cfg}");
        // v2 writes the long form (`selinux: z`), 1.29 the short one (`:z`).
        assert!(
            cfg.contains("selinux: z") || cfg.contains(":z"),
            "{prog}: {cfg}"
        );
    }

    // `false` and the default on a host without SELinux: no `:z`, no security_opt.
    std::fs::write(d.path().join("cdq.yaml"), "selinux_relabel: false\n").unwrap();
    let o = common::run(
        common::cdq_command()
            .current_dir(d.path())
            .args(["render", "--arch", "amd64", "--ip", "10.1.2.3"]),
    );
    assert_eq!(o.code, Some(0), "{o}");
    let text = std::fs::read_to_string(d.path().join(file)).unwrap();
    assert!(
        !text.contains(":z") && !text.contains("security_opt"),
        "{text}"
    );
}

fn docker_rt() -> (tokio::runtime::Runtime, Docker) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt
        .block_on(Docker::connect())
        .expect("the local Docker daemon");
    (rt, d)
}

#[test]
fn probe_containers_read_an_image_s_glibc_and_the_limits_it_is_granted() {
    let sb = Sandbox::new("cdqx", "probe");
    let labels = BTreeMap::from([
        ("io.cdq.project".to_string(), sb.project().to_string()),
        ("com.docker.compose.oneoff".to_string(), "True".to_string()),
    ]);
    let (rt, docker) = docker_rt();
    let image = kit_image(Service::Redis);
    // The kit is Debian bookworm: glibc 2.36, which calls clone3.
    match rt.block_on(compat::glibc_of(&docker, &image, &labels)) {
        compat::Glibc::Version(v) => assert!(compat::glibc_calls_clone3(&v), "{v}"),
        other => panic!("{other:?}"),
    }
    let ask = |n: i64| BTreeMap::from([("nofile".to_string(), Ulimit { soft: n, hard: n })]);
    let got = rt.block_on(compat::granted_limits(&docker, &image, &ask(4096), &labels));
    assert_eq!(got.map(|g| g.0), Ok(Some(4096)));
    // `ulimit -l` answers in KiB.
    let memlock = BTreeMap::from([(
        "memlock".to_string(),
        Ulimit {
            soft: 65536,
            hard: 65536,
        },
    )]);
    let got = rt.block_on(compat::granted_limits(&docker, &image, &memlock, &labels));
    assert_eq!(got.map(|g| g.1), Ok(Some(64)));
    // Above the kernel's nr_open no engine can grant it: runc refuses to start.
    let nr_open: i64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let got = rt.block_on(compat::granted_limits(
        &docker,
        &image,
        &ask(nr_open * 2),
        &labels,
    ));
    let err = got.expect_err("a limit above nr_open cannot be granted");
    assert!(err.contains("rlimit") || err.contains("ulimit"), "{err}");
    // Every probe removed itself.
    assert!(sb.labelled().is_empty(), "{:?}", sb.labelled());
}

/// The nine services on the kit with `seccomp: unconfined` and `selinux_relabel: true`: the
/// containers run unconfined and with relabelled mounts, and all reach healthy.
#[test]
fn nine_services_reach_healthy_with_seccomp_unconfined_and_relabelling() {
    let sb = Sandbox::new("cdqx", "nine")
        .flags(&["--images", "local"])
        .down_on_drop("5");
    let [server, ucenter, grafana, kafka] = common::free_ports::<4>();
    sb.write_config(&format!(
        "seccomp: unconfined\nselinux_relabel: true\nports: {{ server: {server}, ucenter: {ucenter}, grafana: {grafana}, kafka: {kafka} }}\n"
    ));
    let up = sb.cdq(&["up", "--ip", "127.0.0.1", "--progress", "plain"]);
    assert_eq!(up.code, Some(0), "{up}");
    let st = sb.cdq(&["status", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&st.stdout).unwrap_or_else(|e| panic!("{e}: {st}"));
    assert_eq!(v["healthy"], true, "{st}");
    let rows = v["services"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "{st}");
    for r in rows {
        assert_eq!(r["health"], "healthy", "{r}");
    }
    // What the daemon was asked for: every kit image (glibc 2.36) unconfined, every bind `:z`.
    for svc in ["redis", "mysql", "kafka"] {
        let name = format!("{}-{svc}-1", sb.project());
        let sec = common::docker_ok(&[
            "inspect",
            &name,
            "--format",
            "{{json .HostConfig.SecurityOpt}}",
        ]);
        assert!(sec.contains("seccomp=unconfined"), "{svc}: {sec}");
        let binds =
            common::docker_ok(&["inspect", &name, "--format", "{{json .HostConfig.Binds}}"]);
        let list: Vec<String> = serde_json::from_str(binds.trim()).unwrap();
        assert!(
            !list.is_empty() && list.iter().all(|b| b.ends_with(":z") || b.ends_with(",z")),
            "{svc}: {binds}"
        );
    }
}
