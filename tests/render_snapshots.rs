//! Snapshot tests of every file `cdq render` writes, for amd64 and arm64, from fixed inputs
//! (fixed secrets, IP and timezone), plus the properties the snapshots alone do not show:
//! each compose file parses back into the project model with the real dependencies, and the
//! two architectures differ only in image references.

use std::collections::BTreeMap;
use std::path::Path;

use cdq::assets::Assets;
use cdq::catalog::Catalog;
use cdq::interpolate::Vars;
use cdq::project::{self, Condition};
use cdq::render::{self, File};
use cdq::secrets::Secrets;
use cdq::services::Arch;
use cdq::settings::{self, ImageSet, Overrides};

fn render_for(arch: Arch, images: &str) -> Vec<File> {
    let s = settings::load(
        Path::new("/srv/cdq"),
        &Overrides {
            images: Some(images.into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.images, ImageSet::parse(images).unwrap());
    let assets = Assets::default();
    let catalog = Catalog::load(&assets, arch, &s.images, &s.versions).unwrap();
    render::render(&render::Input {
        settings: &s,
        arch,
        host_ip: "10.1.2.3".parse().unwrap(),
        timezone: "Asia/Shanghai",
        catalog: &catalog,
        secrets: &Secrets::fixed(),
        assets: &assets,
        relabel: false,
    })
    .unwrap()
}

fn snapshot_name(arch: Arch, f: &File) -> String {
    format!("{arch}__{}", f.rel.display()).replace('/', "__")
}

#[test]
fn every_rendered_file_amd64_and_arm64() {
    for arch in [Arch::Amd64, Arch::Arm64] {
        let files = render_for(arch, "official");
        assert_eq!(
            files.len(),
            15,
            "{:?}",
            files.iter().map(|f| &f.rel).collect::<Vec<_>>()
        );
        for f in &files {
            insta::assert_snapshot!(snapshot_name(arch, f), &f.contents);
        }
    }
}

#[test]
fn the_local_kit_compose_file() {
    let files = render_for(Arch::Amd64, "local");
    insta::assert_snapshot!("local__amd64__compose", &files[0].contents);
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(
        render_for(Arch::Arm64, "official"),
        render_for(Arch::Arm64, "official")
    );
}

#[test]
fn compose_files_parse_back_with_the_real_dependencies() {
    for arch in [Arch::Amd64, Arch::Arm64] {
        let files = render_for(arch, "official");
        let get = |rel: &str| {
            files
                .iter()
                .find(|f| f.rel == Path::new(rel))
                .unwrap()
                .contents
                .clone()
        };
        let vars = Vars::from_dotenv(&get(".env"), []);
        let compose = get(&render::compose_file_name(arch));
        let p = project::parse(
            Path::new("c.yaml"),
            Path::new("/srv/cdq"),
            &compose,
            &vars,
            "cdq",
        )
        .unwrap();
        assert_eq!(p.services.len(), 9);
        let deps = |s: &str| -> Vec<&str> {
            p.services[s]
                .depends_on
                .keys()
                .map(String::as_str)
                .collect()
        };
        assert_eq!(
            deps("server"),
            ["elasticsearch", "kafka", "mysql", "redis", "zookeeper"]
        );
        assert_eq!(deps("ucenter"), ["mysql", "redis"]);
        assert!(deps("kafka").is_empty(), "KRaft: kafka needs no zookeeper");
        assert_eq!(deps("grafana"), ["prometheus"]);
        for s in p.services.values() {
            assert!(s.healthcheck.is_some(), "{} has no healthcheck", s.name);
            assert_eq!(s.restart.as_deref(), Some("unless-stopped"));
            assert!(
                s.depends_on
                    .values()
                    .all(|c| *c == Condition::ServiceHealthy)
            );
            assert_eq!(
                s.environment.get("TZ").map(String::as_str),
                Some("Asia/Shanghai"),
                "{}",
                s.name
            );
        }
        // JVM services get a longer start_period than the rest.
        let sp = |s: &str| {
            p.services[s]
                .healthcheck
                .as_ref()
                .unwrap()
                .start_period
                .as_secs()
        };
        assert!(sp("server") >= 90 && sp("elasticsearch") >= 60 && sp("redis") <= 10);
        // Secrets come through .env, never written into the compose file.
        for v in Secrets::fixed().values() {
            assert!(!compose.contains(v), "a password is in the compose file");
        }
        assert_eq!(
            p.services["mysql"].environment["MYSQL_ROOT_PASSWORD"],
            Secrets::fixed().get("MYSQL_ROOT_PASSWORD")
        );
        // Only what people open or connect to is published; kafka only on the intranet IP.
        let published: BTreeMap<&str, Vec<String>> = p
            .services
            .iter()
            .filter(|(_, s)| !s.ports.is_empty())
            .map(|(n, s)| {
                (
                    n.as_str(),
                    s.ports
                        .iter()
                        .map(|x| format!("{}:{}", x.host_ip.as_deref().unwrap_or("*"), x.host_port))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            published,
            BTreeMap::from([
                ("grafana", vec!["*:3000".to_string()]),
                ("kafka", vec!["10.1.2.3:9094".to_string()]),
                ("server", vec!["*:8080".to_string()]),
                ("ucenter", vec!["*:8081".to_string()]),
            ])
        );
        // Official Elasticsearch needs its ulimits; the file says so.
        assert_eq!(p.services["elasticsearch"].ulimits["nofile"].soft, 65536);
        assert_eq!(p.services["elasticsearch"].ulimits["memlock"].soft, -1);
    }
}

#[test]
fn amd64_and_arm64_differ_only_in_images() {
    let a = render_for(Arch::Amd64, "official");
    let b = render_for(Arch::Arm64, "official");
    assert_eq!(a.len(), b.len());
    for (fa, fb) in a.iter().zip(&b) {
        let la: Vec<&str> = fa.contents.lines().collect();
        let lb: Vec<&str> = fb.contents.lines().collect();
        assert_eq!(
            la.len(),
            lb.len(),
            "{} and {}",
            fa.rel.display(),
            fb.rel.display()
        );
        for (x, y) in la.iter().zip(&lb) {
            if x != y {
                let image_line =
                    x.trim_start().starts_with("image:") && y.trim_start().starts_with("image:");
                let header = x.starts_with('#') && x.replace("amd64", "arm64") == *y;
                assert!(image_line || header, "{}: `{x}` vs `{y}`", fa.rel.display());
            }
        }
    }
}

#[test]
fn secret_files_are_marked_and_owned_by_their_service() {
    let files = render_for(Arch::Amd64, "official");
    let secret: BTreeMap<String, Option<u32>> = files
        .iter()
        .filter(|f| f.secret)
        .map(|f| (f.rel.display().to_string(), f.owner))
        .collect();
    assert_eq!(
        secret,
        BTreeMap::from([
            (".env".to_string(), None),
            ("confd/mysql/init/01-cd.sql".to_string(), Some(999)),
            ("confd/redis/redis.conf".to_string(), Some(999)),
            ("confd/server/application.yml".to_string(), Some(1000)),
            ("confd/ucenter/application.yml".to_string(), Some(1000)),
        ])
    );
}

#[test]
fn disabled_services_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cdq.yaml"),
        "services: [mysql, redis, ucenter]\n",
    )
    .unwrap();
    let s = settings::load(dir.path(), &Overrides::default()).unwrap();
    let assets = Assets::default();
    let catalog = Catalog::load(&assets, Arch::Amd64, &s.images, &s.versions).unwrap();
    let files = render::render(&render::Input {
        settings: &s,
        arch: Arch::Amd64,
        host_ip: "10.1.2.3".parse().unwrap(),
        timezone: "UTC",
        catalog: &catalog,
        secrets: &Secrets::fixed(),
        assets: &assets,
        relabel: false,
    })
    .unwrap();
    let names: Vec<String> = files.iter().map(|f| f.rel.display().to_string()).collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("kafka") && !n.contains("server/")),
        "{names:?}"
    );
    let compose = &files[0].contents;
    let vars = Vars::from_dotenv(&files[1].contents, []);
    let p = project::parse(Path::new("c.yaml"), dir.path(), compose, &vars, "cdq").unwrap();
    assert_eq!(
        p.services.keys().collect::<Vec<_>>(),
        ["mysql", "redis", "ucenter"]
    );
    let sql = &files
        .iter()
        .find(|f| f.rel.ends_with("01-cd.sql"))
        .unwrap()
        .contents;
    assert!(sql.contains("'ucenter'@'%'") && !sql.contains("cd_server"));
}

#[test]
fn undefined_variables_are_errors_naming_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("confd/redis")).unwrap();
    std::fs::write(
        dir.path().join("confd/redis/redis.conf.j2"),
        "port 6379\nmaxmemory {{ redis_maxmemory }}\n",
    )
    .unwrap();
    let s = settings::load(
        dir.path(),
        &Overrides {
            templates: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap();
    let assets = Assets::new(s.templates.clone());
    let catalog = Catalog::load(&assets, Arch::Amd64, &s.images, &s.versions).unwrap();
    let err = render::render(&render::Input {
        settings: &s,
        arch: Arch::Amd64,
        host_ip: "10.1.2.3".parse().unwrap(),
        timezone: "UTC",
        catalog: &catalog,
        secrets: &Secrets::fixed(),
        assets: &assets,
        relabel: false,
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("template `confd/redis/redis.conf.j2` line 2: undefined value"),
        "{msg}"
    );
}
