//! `cdq.yaml`, `CDQ_*` and flags resolved into `Settings`, and every refusal with its line.

use super::*;

fn parse(text: &str) -> Result<FileSettings, CdqError> {
    parse_file(Path::new("/d/cdq.yaml"), text)
}

fn load_text(text: &str) -> anyhow::Result<Settings> {
    let f = parse(text)?;
    resolve(
        PathBuf::from("/d"),
        PathBuf::from("/d/cdq.yaml"),
        true,
        f,
        &Overrides::default(),
    )
}

#[test]
fn empty_file_gives_defaults() {
    let s = load_text("").unwrap();
    assert_eq!(s.project, "cdq");
    assert_eq!(s.data_dir, PathBuf::from("/d/data"));
    assert_eq!(s.images, ImageSet::Official);
    assert_eq!(s.services.len(), 9);
    assert_eq!(s.ports.server, 8080);
    assert_eq!(s.heap_mb[&Service::Elasticsearch], 1024);
    assert_eq!(s.deadline(Service::Server), Duration::from_secs(300));
    assert_eq!(s.host_ip, None);
    assert_eq!(s.arch, None);
    assert_eq!(s.seccomp, Seccomp::Default);
    assert_eq!(s.selinux_relabel, Relabel::Auto);
}

#[test]
fn seccomp_and_relabel_parse_and_bad_values_name_the_choices() {
    let s = load_text("seccomp: unconfined\nselinux_relabel: true\n").unwrap();
    assert_eq!(s.seccomp, Seccomp::Unconfined);
    assert_eq!(s.selinux_relabel, Relabel::Always);
    let s = load_text("selinux_relabel: false\n").unwrap();
    assert_eq!(s.selinux_relabel, Relabel::Never);
    let s = load_text("selinux_relabel: auto\nseccomp: default\n").unwrap();
    assert_eq!(s.selinux_relabel, Relabel::Auto);
    let e = parse("seccomp: off\n").unwrap_err();
    assert!(
        e.message.contains("`off` is not a seccomp mode"),
        "{}",
        e.message
    );
    let e = parse("selinux_relabel: maybe\n").unwrap_err();
    assert!(
        e.message.contains("`maybe` is not a relabel mode"),
        "{}",
        e.message
    );
}

#[test]
fn misspelt_key_names_line_and_right_spelling() {
    let e = parse("project: demo\nprots:\n  server: 80\n").unwrap_err();
    assert_eq!(e.message, "`/d/cdq.yaml` line 2: unknown key `prots`");
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `ports`?"),
        "{:?}",
        e.hint
    );
}

#[test]
fn misspelt_nested_key() {
    let e = parse("heap:\n  elasticserch: 2g\n").unwrap_err();
    assert!(
        e.message
            .starts_with("`/d/cdq.yaml` line 2: unknown key `elasticserch`"),
        "{}",
        e.message
    );
    assert!(e.hint.unwrap().starts_with("did you mean `elasticsearch`?"));
}

#[test]
fn bad_ip_is_rejected_with_its_line() {
    let e = parse("project: x\nhost_ip: 10.1.2\n").unwrap_err();
    assert!(
        e.message.starts_with("`/d/cdq.yaml` line 2:"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("`10.1.2` is not an IP address"),
        "{}",
        e.message
    );
}

#[test]
fn bad_arch_names_both_valid_ones() {
    let e = parse("arch: sparc\n").unwrap_err();
    assert!(e.message.contains("`amd64`, `arm64`"), "{}", e.message);
}

#[test]
fn wrong_type_is_rejected() {
    let e = parse("ports:\n  server: eighty\n").unwrap_err();
    assert!(e.message.contains("line 2"), "{}", e.message);
    assert!(e.message.contains("invalid"), "{}", e.message);
}

#[test]
fn values_parse() {
    let s = load_text(
        "project: poc-1\nhost_ip: 10.1.2.3\narch: aarch64\nimages: harbor.local:5000/cd/\nheap:\n  kafka: 2g\ndeadlines:\n  server: 10m\nversions:\n  mysql: 8.0.40\n",
    )
    .unwrap();
    assert_eq!(s.project, "poc-1");
    assert_eq!(s.host_ip, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(s.arch, Some(Arch::Arm64));
    assert_eq!(s.images, ImageSet::Registry("harbor.local:5000/cd".into()));
    assert_eq!(s.versions.tags[&Service::Mysql], "8.0.40");
    assert_eq!(s.heap_mb[&Service::Kafka], 2048);
    assert_eq!(s.deadline(Service::Server), Duration::from_secs(600));
}

#[test]
fn services_must_include_dependencies() {
    let e = load_text("services: [server, redis]\n").unwrap_err();
    assert!(e.to_string().contains("`server` needs `mysql`"), "{e}");
    let e = load_text("services: [mysql, redsi]\n").unwrap_err();
    let c = e.downcast_ref::<CdqError>().unwrap();
    assert!(
        c.hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `redis`?")
    );
}

#[test]
fn duplicate_ports_rejected() {
    let e = load_text("ports:\n  grafana: 8080\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("port 8080 is also given to `server`"),
        "{e}"
    );
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("90").is_err());
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("5x").is_err());
    assert_eq!(MiB::parse("2g").unwrap(), MiB(2048));
    assert!(MiB::parse("2").is_err());
    assert!(MiB::parse("0m").is_err());
}

#[test]
fn project_names() {
    assert!(validate_project("cd-poc_1").is_ok());
    assert!(validate_project("CD").is_err());
    assert!(validate_project("-x").is_err());
    assert!(validate_project("").is_err());
}

#[test]
fn overrides_beat_the_file() {
    let f = parse("project: fromfile\nimages: official\n").unwrap();
    let o = Overrides {
        project: Some("fromflag".into()),
        images: Some("local".into()),
        ..Default::default()
    };
    let s = resolve(
        PathBuf::from("/d"),
        PathBuf::from("/d/cdq.yaml"),
        true,
        f,
        &o,
    )
    .unwrap();
    assert_eq!(s.project, "fromflag");
    assert_eq!(s.images, ImageSet::Local);
}

#[test]
fn a_registry_applies_to_the_chosen_set_and_refuses_a_second_one() {
    let s = load_text("registry: 127.0.0.1:5000/cd/\n").unwrap();
    assert_eq!(s.images, ImageSet::Registry("127.0.0.1:5000/cd".into()));
    let s =
        load_text("images: local\nregistry: 127.0.0.1:5000/cd\nregistry_layout: flat\n").unwrap();
    assert_eq!(
        s.images,
        ImageSet::LocalRegistry(Registry {
            prefix: "127.0.0.1:5000/cd".into(),
            layout: Layout::Flat
        })
    );
    assert_eq!(s.images.without_registry(), ImageSet::Local);
    let o = Overrides {
        registry: Some("harbor.example.com/cd".into()),
        ..Overrides::default()
    };
    let s = resolve(
        PathBuf::from("/d"),
        PathBuf::from("/d/cdq.yaml"),
        true,
        parse("images: local\n").unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!(s.images.registry().unwrap().prefix, "harbor.example.com/cd");
    let e = load_text("images: mirror.example.com\nregistry: h:5000/cd\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "two registries: the image set `mirror.example.com` and the registry `h:5000/cd`"
    );
    assert_eq!(crate::error::exit_code(&e), 2);
    let e = load_text("registry: local\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("is an image set, not a registry prefix"),
        "{e}"
    );
}

#[test]
fn image_refs_and_registry_layout() {
    let s = load_text(
        "images: harbor.example.com/cd\nregistry_layout: flat\nimage_refs:\n  mysql: harbor.example.com/dba/mysql:8.4.10\n",
    )
    .unwrap();
    assert_eq!(
        s.images,
        ImageSet::Registry(Registry {
            prefix: "harbor.example.com/cd".into(),
            layout: Layout::Flat
        })
    );
    assert_eq!(
        s.versions.refs[&Service::Mysql],
        "harbor.example.com/dba/mysql:8.4.10"
    );
    let e = load_text("registry_layout: nested\n").unwrap_err();
    assert!(
        e.to_string().contains("`nested` is not a registry layout"),
        "{e}"
    );
    let e = load_text("image_refs:\n  mysql: harbor.example.com/dba/mysql\n").unwrap_err();
    assert!(e.to_string().contains("`image_refs.mysql`"), "{e}");
    assert!(e.to_string().contains("has no tag"), "{e}");
    let e = load_text("versions:\n  mysql: 8.4.10\nimage_refs:\n  mysql: m/mysql:8.4.10\n")
        .unwrap_err();
    assert!(e.to_string().contains("also has `versions.mysql`"), "{e}");
    let e = load_text("versions:\n  kafka: apache/kafka:4.3.1\n").unwrap_err();
    let c = e.downcast_ref::<CdqError>().unwrap();
    assert!(
        c.hint.as_deref().unwrap().contains("`image_refs.kafka`"),
        "{c:?}"
    );
}
