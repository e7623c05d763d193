//! Every check and outcome of `evaluate`, over hand-made facts; the table and JSON snapshots.

use super::super::facts::{DirProbe, ImageProbe, IpProbe, PortProbe};
use super::super::report;
use super::super::requirements::{HostNeed, PortNeed};
use super::*;
use crate::engine::EngineInfo;
use crate::hostip::Decision;
use crate::hostip::Source;
use std::collections::BTreeSet;

pub(in crate::preflight) fn req() -> Requirements {
    Requirements {
        arch: Arch::Amd64,
        services: vec!["elasticsearch".into(), "kafka".into(), "server".into()],
        image_set: "official".into(),
        registry: false,
        memory_mb: 4096,
        vm_max_map_count: Some(HostNeed {
            value: 262144,
            by: vec!["elasticsearch".into()],
        }),
        nofile: Some(HostNeed {
            value: 65536,
            by: vec!["elasticsearch".into(), "kafka".into()],
        }),
        ports: vec![],
        uids: [1000, 1001].into_iter().collect(),
        images: vec![],
        data_dir: "/srv/cdq/data".into(),
        deploy_dir: "/srv/cdq".into(),
        project: "cdq".into(),
        service_dirs: vec![],
        adopt: BTreeSet::new(),
        host_ip: Decision {
            ip: "10.1.2.3".parse().unwrap(),
            source: Source::Detected,
            changed_from: None,
        },
        explicit_arch: false,
        data: vec![],
        compat: crate::preflight::hostcompat::tests::needs(),
    }
}

fn port(service: &str, p: u16, state: PortState) -> PortProbe {
    PortProbe {
        need: PortNeed {
            service: service.into(),
            addr: "0.0.0.0".into(),
            port: p,
            protocol: "tcp".into(),
        },
        state,
    }
}

fn image(service: &str, reference: &str, state: ImageState) -> ImageProbe {
    ImageProbe {
        service: service.into(),
        reference: reference.into(),
        state,
    }
}

/// A host where every check passes.
pub(in crate::preflight) fn good() -> Facts {
    Facts {
        host_arch: "x86_64".into(),
        docker: Ok(EngineInfo {
            product: "Docker".into(),
            server_version: "20.10.24+dfsg1".into(),
            api_version: "1.41".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            storage_driver: "overlay2".into(),
            root_dir: "/var/lib/docker".into(),
            cpus: 8,
            memory_bytes: 16 << 30,
        }),
        compose_plugin: Some("2.24.0".into()),
        compose_standalone: None,
        cpus: 8,
        memory_total_mb: 16384,
        memory_available_mb: 12000,
        swap_total_mb: 0,
        data_dir: DirProbe {
            path: "/srv/cdq/data".into(),
            exists: false,
            is_dir: false,
            nearest: "/srv".into(),
            nearest_is_dir: true,
            writable: true,
            free_mb: Some(100 * 1024),
            read_only: false,
        },
        deploy_dir: DirProbe {
            path: "/srv/cdq".into(),
            exists: true,
            is_dir: true,
            nearest: "/srv/cdq".into(),
            nearest_is_dir: true,
            writable: true,
            free_mb: Some(100 * 1024),
            read_only: false,
        },
        service_dirs: vec![],
        docker_root_free_mb: Some(50 * 1024),
        vm_max_map_count: Some(262144),
        nofile: Some(1048576),
        thp: Some("madvise".into()),
        ports: vec![port("server", 8080, PortState::Free)],
        chown: Chown::Root,
        selinux_enforcing: None,
        clock_synchronized: Some(true),
        timezone: "Asia/Shanghai".into(),
        images: vec![image(
            "elasticsearch",
            "elasticsearch:7.17.22",
            ImageState::Present {
                arch: "amd64".into(),
            },
        )],
        host_ip: IpProbe {
            ip: "10.1.2.3".parse().unwrap(),
            source: "detected",
            interface: Some(("eth0".into(), false)),
            candidates: vec!["10.1.2.3 (eth0)".into()],
        },
        old_data: vec![],
        compat: crate::preflight::hostcompat::tests::facts(),
    }
}

fn foreign() -> crate::fsio::DirState {
    crate::fsio::DirState::Foreign {
        owner: "uid 1234".into(),
        entries: vec!["ibdata1".into()],
        total: 1,
    }
}

fn service_dir(state: crate::fsio::DirState) -> super::super::facts::ServiceDir {
    super::super::facts::ServiceDir {
        service: "mysql".into(),
        uid: Some(999),
        check: crate::fsio::DirCheck {
            path: "/srv/cdq/data/mysql".into(),
            link: None,
            state,
        },
    }
}

pub(in crate::preflight) fn outcome(f: &Facts, r: &Requirements, id: &str) -> Finding {
    evaluate(f, r)
        .into_iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no finding `{id}`"))
}

#[test]
fn a_good_host_passes_every_check() {
    let all = evaluate(&good(), &req());
    let bad: Vec<_> = all.iter().filter(|f| f.status != Status::Pass).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    // 22 before the Xinchuang checks (container-engine, clone3, cgroup, page-size, memlock)
    // and issue 18's `deploy-dir` (service data dirs add one each when present).
    assert_eq!(all.len(), 28);
}

type Row = (
    &'static str,
    &'static str,
    Status,
    &'static str,
    fn(&mut Facts, &mut Requirements),
);

/// One row per check and outcome: (label, check id, status, text the finding must
/// contain in found or fix, how the host differs from `good`).
const ROWS: &[Row] = &[
    ("docker ok", "docker", Status::Pass, "20.10.24", |_, _| {}),
    (
        "docker denied",
        "docker",
        Status::Fail,
        "sudo usermod -aG docker $USER",
        |f, _| {
            f.docker = Err(DockerProblem::PermissionDenied {
                socket: "/var/run/docker.sock".into(),
            })
        },
    ),
    (
        "docker down",
        "docker",
        Status::Fail,
        "sudo systemctl start docker",
        |f, _| {
            f.docker = Err(DockerProblem::Unreachable {
                socket: "/var/run/docker.sock".into(),
                detail: "connection refused".into(),
            })
        },
    ),
    (
        "engine old",
        "docker-version",
        Status::Fail,
        "upgrade Docker",
        |f, _| {
            if let Ok(i) = &mut f.docker {
                i.server_version = "17.03.2-ce".into()
            }
        },
    ),
    (
        "api old",
        "docker-version",
        Status::Fail,
        "API 1.38",
        |f, _| {
            if let Ok(i) = &mut f.docker {
                i.api_version = "1.38".into()
            }
        },
    ),
    (
        "daemon arch",
        "docker-arch",
        Status::Fail,
        "daemon aarch64",
        |f, _| {
            if let Ok(i) = &mut f.docker {
                i.arch = "aarch64".into()
            }
        },
    ),
    (
        "storage ok",
        "docker-storage",
        Status::Pass,
        "overlay2",
        |_, _| {},
    ),
    (
        "storage vfs",
        "docker-storage",
        Status::Warn,
        "daemon.json",
        |f, _| {
            if let Ok(i) = &mut f.docker {
                i.storage_driver = "vfs".into()
            }
        },
    ),
    (
        "compose none",
        "compose",
        Status::Warn,
        "compose plugin",
        |f, _| f.compose_plugin = None,
    ),
    (
        "compose standalone",
        "compose",
        Status::Pass,
        "docker-compose 1.29.2",
        |f, _| {
            f.compose_plugin = None;
            f.compose_standalone = Some("1.29.2".into())
        },
    ),
    (
        "docker disk low",
        "disk-docker",
        Status::Fail,
        "docker system prune",
        |f, _| f.docker_root_free_mb = Some(1024),
    ),
    (
        "docker disk tight",
        "disk-docker",
        Status::Warn,
        "docker system prune",
        |f, _| f.docker_root_free_mb = Some(4096),
    ),
    (
        "docker disk unknown",
        "disk-docker",
        Status::Warn,
        "df -h /var/lib/docker",
        |f, _| f.docker_root_free_mb = None,
    ),
    (
        "arch other",
        "host-arch",
        Status::Fail,
        "amd64 (x86_64) and arm64",
        |f, _| f.host_arch = "riscv64".into(),
    ),
    (
        "arch mismatch",
        "host-arch",
        Status::Fail,
        "drop `--arch`",
        |_, r| {
            r.arch = Arch::Arm64;
            r.explicit_arch = true
        },
    ),
    ("cpu few", "cpu", Status::Fail, "1 cores", |f, _| f.cpus = 1),
    ("cpu some", "cpu", Status::Warn, "2 cores", |f, _| {
        f.cpus = 2
    }),
    ("memory short", "memory", Status::Fail, "heap:", |f, _| {
        f.memory_total_mb = 2048;
        f.memory_available_mb = 1500
    }),
    (
        "memory busy",
        "memory",
        Status::Warn,
        "memory-hungry",
        |f, _| f.memory_available_mb = 3000,
    ),
    (
        "data disk low",
        "disk-data",
        Status::Fail,
        "--data-dir",
        |f, _| f.data_dir.free_mb = Some(1000),
    ),
    (
        "data disk tight",
        "disk-data",
        Status::Warn,
        "--data-dir",
        |f, _| f.data_dir.free_mb = Some(5000),
    ),
    (
        "map count low",
        "vm-max-map-count",
        Status::Fail,
        "sudo sysctl -w vm.max_map_count=262144",
        |f, _| f.vm_max_map_count = Some(65530),
    ),
    (
        "map count unread",
        "vm-max-map-count",
        Status::Warn,
        "99-cdq.conf",
        |f, _| f.vm_max_map_count = None,
    ),
    (
        "map count not needed",
        "vm-max-map-count",
        Status::Pass,
        "not checked",
        |f, r| {
            f.vm_max_map_count = None;
            r.vm_max_map_count = None
        },
    ),
    (
        "nofile low",
        "nofile",
        Status::Warn,
        "LimitNOFILE=65536",
        |f, _| f.nofile = Some(1024),
    ),
    (
        "swap on",
        "swap",
        Status::Warn,
        "sudo swapoff -a",
        |f, _| f.swap_total_mb = 2048,
    ),
    ("thp always", "thp", Status::Warn, "echo madvise", |f, _| {
        f.thp = Some("always".into())
    }),
    ("selinux", "selinux", Status::Warn, "`:z`", |f, _| {
        f.selinux_enforcing = Some(true)
    }),
    (
        "selinux relabelled",
        "selinux",
        Status::Pass,
        "relabelled",
        |f, r| {
            f.selinux_enforcing = Some(true);
            r.compat.relabelled = true;
        },
    ),
    // The Xinchuang checks: one row each here, every outcome in hostcompat's tests.
    (
        "engine docker",
        "container-engine",
        Status::Pass,
        "Docker 20.10.24",
        |_, _| {},
    ),
    (
        "clone3 ok",
        "clone3",
        Status::Pass,
        "allows clone3",
        |_, _| {},
    ),
    ("cgroup v2", "cgroup", Status::Pass, "v2", |_, _| {}),
    ("4k pages", "page-size", Status::Pass, "4 KiB", |_, _| {}),
    (
        "memlock unasked",
        "memlock",
        Status::Pass,
        "no image present",
        |_, _| {},
    ),
    (
        "data dir read-only",
        "data-dir",
        Status::Fail,
        "sudo mount -o remount,rw",
        |f, _| f.data_dir.read_only = true,
    ),
    (
        "deploy dir ok",
        "deploy-dir",
        Status::Pass,
        "writable",
        |_, _| {},
    ),
    (
        "deploy dir read-only",
        "deploy-dir",
        Status::Fail,
        "sudo mount -o remount,rw $(stat -c %m /srv/cdq)",
        |f, _| f.deploy_dir.read_only = true,
    ),
    (
        "deploy dir full",
        "deploy-dir",
        Status::Fail,
        "df -h /srv/cdq",
        |f, _| f.deploy_dir.free_mb = Some(0),
    ),
    (
        "deploy dir not writable",
        "deploy-dir",
        Status::Fail,
        "sudo chown $USER /srv/cdq",
        |f, _| f.deploy_dir.writable = false,
    ),
    (
        "deploy dir a file",
        "deploy-dir",
        Status::Fail,
        "move the file away",
        |f, _| f.deploy_dir.is_dir = false,
    ),
    (
        "service dir empty",
        "data-mysql",
        Status::Pass,
        "is empty",
        |f, _| f.service_dirs = vec![service_dir(crate::fsio::DirState::Empty)],
    ),
    (
        "service dir foreign",
        "data-mysql",
        Status::Fail,
        "`--adopt-data mysql` (its files become uid 999's",
        |f, _| f.service_dirs = vec![service_dir(foreign())],
    ),
    (
        "service dir foreign, adopted",
        "data-mysql",
        Status::Warn,
        "handed to uid 999",
        |f, r| {
            f.service_dirs = vec![service_dir(foreign())];
            r.adopt.insert("mysql".into());
        },
    ),
    ("port free", "port-8080", Status::Pass, "free", |_, _| {}),
    (
        "port held",
        "port-8080",
        Status::Fail,
        "pid 42 (nginx)",
        |f, _| {
            f.ports = vec![port(
                "server",
                8080,
                PortState::Held {
                    holder: Some("pid 42 (nginx)".into()),
                },
            )]
        },
    ),
    (
        "port held by docker",
        "port-8080",
        Status::Fail,
        "docker ps --filter publish=8080",
        |f, _| {
            f.ports = vec![port(
                "server",
                8080,
                PortState::Held {
                    holder: Some("pid 7 (docker-proxy)".into()),
                },
            )]
        },
    ),
    (
        "port ours",
        "port-8080",
        Status::Pass,
        "this stack's `server`",
        |f, _| {
            f.ports = vec![port(
                "server",
                8080,
                PortState::Ours {
                    service: "server".into(),
                },
            )]
        },
    ),
    (
        "port unbindable",
        "port-8080",
        Status::Fail,
        "not an address",
        |f, _| {
            f.ports = vec![port(
                "server",
                8080,
                PortState::Unbindable {
                    reason: "`10.9.9.9` is not an address of this host".into(),
                },
            )]
        },
    ),
    (
        "data dir will be made",
        "data-dir",
        Status::Pass,
        "will be created in `/srv`",
        |_, _| {},
    ),
    (
        "data dir readonly",
        "data-dir",
        Status::Fail,
        "sudo mkdir -p /srv/cdq/data",
        |f, _| f.data_dir.writable = false,
    ),
    (
        "data dir is a file",
        "data-dir",
        Status::Fail,
        "is a file",
        |f, _| f.data_dir.exists = true,
    ),
    (
        "data dir below a file",
        "data-dir",
        Status::Fail,
        "`/srv` is a file, so `/srv/cdq/data` cannot be created",
        |f, _| f.data_dir.nearest_is_dir = false,
    ),
    (
        "owner cap",
        "data-dir-owner",
        Status::Pass,
        "CAP_CHOWN",
        |f, _| f.chown = Chown::CapChown,
    ),
    (
        "owner helper",
        "data-dir-owner",
        Status::Warn,
        "helper container",
        |f, _| f.chown = Chown::No,
    ),
    (
        "clock off",
        "clock",
        Status::Warn,
        "set-ntp true",
        |f, _| f.clock_synchronized = Some(false),
    ),
    ("clock unknown", "clock", Status::Warn, "unknown", |f, _| {
        f.clock_synchronized = None
    }),
    (
        "timezone",
        "timezone",
        Status::Pass,
        "Asia/Shanghai",
        |_, _| {},
    ),
    (
        "image present",
        "image-elasticsearch",
        Status::Pass,
        "present (amd64)",
        |_, _| {},
    ),
    (
        "image missing offline",
        "image-elasticsearch",
        Status::Fail,
        "docker load -i FILE",
        |f, _| {
            f.images = vec![image(
                "elasticsearch",
                "elasticsearch:7.17.22",
                ImageState::Missing,
            )]
        },
    ),
    (
        "image missing kit",
        "image-elasticsearch",
        Status::Fail,
        "scripts/build-local-images.sh",
        |f, r| {
            r.image_set = "local".into();
            f.images = vec![image(
                "elasticsearch",
                "cdq-local/elasticsearch:2-amd64",
                ImageState::Missing,
            )]
        },
    ),
    (
        "image missing mirror",
        "image-elasticsearch",
        Status::Warn,
        "pull it from the registry: `cdq pull`",
        |f, r| {
            r.registry = true;
            f.images = vec![image(
                "elasticsearch",
                "h:5000/cd/elasticsearch:7.17.22",
                ImageState::Missing,
            )]
        },
    ),
    (
        "image wrong arch",
        "image-elasticsearch",
        Status::Fail,
        "is arm64, not amd64",
        |f, _| {
            f.images = vec![image(
                "elasticsearch",
                "elasticsearch:7.17.22",
                ImageState::Present {
                    arch: "arm64".into(),
                },
            )]
        },
    ),
    ("ip on eth0", "host-ip", Status::Pass, "on eth0", |_, _| {}),
    (
        "ip elsewhere",
        "host-ip",
        Status::Fail,
        "--ip 10.1.2.3",
        |f, _| {
            f.host_ip.ip = "10.9.9.9".parse().unwrap();
            f.host_ip.source = "from --ip";
            f.host_ip.interface = None
        },
    ),
    (
        "ip on bridge",
        "host-ip",
        Status::Warn,
        "cannot reach",
        |f, _| f.host_ip.interface = Some(("docker0".into(), true)),
    ),
];

#[test]
fn every_check_and_outcome() {
    let mut seen = BTreeSet::new();
    for (label, id, status, text, change) in ROWS {
        let (mut f, mut r) = (good(), req());
        change(&mut f, &mut r);
        let got = outcome(&f, &r, id);
        assert_eq!(got.status, *status, "{label}: {got:#?}");
        let hay = format!("{} {}", got.found, got.fix.clone().unwrap_or_default());
        assert!(hay.contains(text), "{label}: `{text}` not in {got:#?}");
        if *status != Status::Pass {
            assert!(got.fix.is_some(), "{label}: a non-pass needs a fix");
        }
        seen.insert((id.to_string(), *status));
    }
    // every check id of a full evaluation appears in the table at least once
    for f in evaluate(&good(), &req()) {
        assert!(
            seen.iter().any(|(id, _)| *id == f.id),
            "no row for `{}`",
            f.id
        );
    }
}

#[test]
fn without_docker_the_engine_checks_are_left_out_but_host_checks_remain() {
    let mut f = good();
    f.docker = Err(DockerProblem::Other("boom".into()));
    let ids: Vec<String> = evaluate(&f, &req()).into_iter().map(|x| x.id).collect();
    assert!(ids.contains(&"docker".to_string()) && ids.contains(&"memory".to_string()));
    assert!(
        !ids.iter()
            .any(|i| i.starts_with("image-") || i == "docker-version")
    );
}

#[test]
fn strict_turns_warnings_into_failure() {
    let mut f = good();
    f.swap_total_mb = 1024;
    let list = evaluate(&f, &req());
    assert!(!super::super::failed(&list, false));
    assert!(super::super::failed(&list, true));
}

fn mixed() -> Vec<Finding> {
    let (mut f, r) = (good(), req());
    f.vm_max_map_count = Some(65530);
    f.swap_total_mb = 2048;
    f.ports = vec![
        port("grafana", 3000, PortState::Free),
        port(
            "server",
            8080,
            PortState::Held {
                holder: Some("pid 4242 (nginx)".into()),
            },
        ),
    ];
    evaluate(&f, &r)
}

#[test]
fn table_snapshot() {
    insta::assert_snapshot!(report::table(&mixed()));
    assert_eq!(
        report::summary(&mixed(), false),
        "preflight failed: 2 failed, 1 warnings, 26 passed"
    );
}

#[test]
fn json_snapshot() {
    let text = report::json(&mixed(), false).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], false);
    insta::assert_snapshot!(text);
}
