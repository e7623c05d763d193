use super::*;
use crate::swarm::stack::testing;

fn engine(images: &[(&str, &str)]) -> NodeEngine {
    NodeEngine {
        version: "20.10.24+dfsg1".into(),
        api_version: "1.41".into(),
        arch: "x86_64".into(),
        memory_bytes: 16 << 30,
        root_dir: "/var/lib/docker".into(),
        images: images
            .iter()
            .map(|(r, a)| (r.to_string(), a.to_string()))
            .collect(),
        probe: Ok(Probe {
            docker_root_free_mb: 50 * 1024,
            vm_max_map_count: 262_144,
        }),
    }
}

/// Every node with all it needs: one fact per node.
fn healthy(needs: &[NodeNeeds]) -> Vec<NodeFacts> {
    needs
        .iter()
        .map(|n| {
            let imgs: Vec<(&str, &str)> = n.images.keys().map(|k| (k.as_str(), "amd64")).collect();
            NodeFacts {
                node: n.node.clone(),
                endpoint: Some(format!("unix:///lab/{}.sock", n.node)),
                engine: Ok(engine(&imgs)),
            }
        })
        .collect()
}

fn failed(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|f| f.status == Status::Fail).collect()
}

#[test]
fn each_node_needs_its_pinned_images_and_every_unpinned_one() {
    let (s, catalog, stack) = testing::rendered("");
    let cluster = s.cluster.clone().unwrap();
    let needs = needs(&stack, &cluster, &s, &catalog);
    assert_eq!(needs.len(), 3);
    let by = |node: &str| needs.iter().find(|n| n.node == node).unwrap();
    let image_of = |short: &str| {
        stack
            .services
            .iter()
            .find(|d| d.short == short)
            .unwrap()
            .image
            .clone()
    };
    // elasticsearch is pinned to slot 1: only node a needs its image and vm.max_map_count.
    assert!(by("a").images.contains_key(&image_of("elasticsearch")));
    assert!(!by("b").images.contains_key(&image_of("elasticsearch")));
    assert_eq!(
        by("a").vm_max_map_count.as_ref().map(|n| n.by.clone()),
        Some(vec!["elasticsearch".to_string()])
    );
    assert!(by("b").vm_max_map_count.is_none());
    // server and ucenter may land anywhere: every node needs them.
    for n in ["a", "b", "c"] {
        assert!(by(n).images.contains_key(&image_of("server")), "{n}");
        assert!(by(n).images.contains_key(&image_of("ucenter")), "{n}");
        assert!(
            by(n)
                .memory_by
                .iter()
                .any(|m| m.ends_with("(may move here)")),
            "{n}"
        );
    }
    // The redis master and a sentinel on slot 3 share one image, listed with both.
    let redis_on_c = &by("c").images[&image_of("redis")];
    assert!(
        redis_on_c.contains(&"redis".to_string()) && redis_on_c.contains(&"sentinel3".to_string())
    );
    assert!(
        by("a").memory_mb > by("b").memory_mb,
        "slot 1 carries the single services"
    );
    assert_eq!(all_images(&needs).len(), 9);
}

#[test]
fn nodes_with_what_they_need_pass() {
    let (s, catalog, stack) = testing::rendered("");
    let needs = needs(&stack, s.cluster.as_ref().unwrap(), &s, &catalog);
    let f = evaluate(&needs, &healthy(&needs), Arch::Amd64);
    assert!(failed(&f).is_empty(), "{f:#?}");
    assert!(f.iter().any(|f| f.id == "a/vm-max-map-count"));
    assert!(!f.iter().any(|f| f.id == "b/vm-max-map-count"));
}

/// Every FAIL names its node in its id, and the fix is for that node.
#[test]
fn each_failure_names_its_node() {
    let (s, catalog, stack) = testing::rendered("");
    let needs = needs(&stack, s.cluster.as_ref().unwrap(), &s, &catalog);
    let mut facts = healthy(&needs);
    let zk = stack
        .services
        .iter()
        .find(|d| d.short == "zookeeper2")
        .unwrap()
        .image
        .clone();
    // b: lacks the zookeeper image, is old and small; a: low vm.max_map_count and disk;
    // c: no endpoint.
    if let Ok(e) = &mut facts[1].engine {
        e.images.remove(&zk);
        e.version = "17.03.2-ce".into();
        e.memory_bytes = 512 << 20;
    }
    if let Ok(e) = &mut facts[0].engine {
        e.probe = Ok(Probe {
            docker_root_free_mb: 1024,
            vm_max_map_count: 65_530,
        });
    }
    facts[2].endpoint = None;
    facts[2].engine = Err("no endpoint".into());
    let f = evaluate(&needs, &facts, Arch::Amd64);
    let ids: Vec<&str> = failed(&f).iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "a/disk-docker",
            "a/vm-max-map-count",
            "b/docker-version",
            "b/memory",
            "b/images",
            "c/endpoint"
        ]
    );
    let images = f.iter().find(|f| f.id == "b/images").unwrap();
    assert_eq!(
        images.found,
        format!("missing `{zk}` (zookeeper2)"),
        "{images:?}"
    );
    let vm = f.iter().find(|f| f.id == "a/vm-max-map-count").unwrap();
    assert!(
        vm.fix
            .as_deref()
            .unwrap()
            .starts_with("on `a`: `sudo sysctl -w vm.max_map_count=262144`")
    );
    let ep = f.iter().find(|f| f.id == "c/endpoint").unwrap();
    assert_eq!(
        ep.fix.as_deref(),
        Some("set `cluster.endpoints.c` in cdq.yaml (`unix:///PATH` or `tcp://HOST:PORT`)")
    );
}

#[test]
fn a_node_of_another_arch_or_image_arch_fails_and_an_unreadable_probe_warns() {
    let (s, catalog, stack) = testing::rendered("");
    let needs = needs(&stack, s.cluster.as_ref().unwrap(), &s, &catalog);
    let mut facts = healthy(&needs);
    if let Ok(e) = &mut facts[0].engine {
        e.arch = "aarch64".into();
        e.probe = Err("the probe exited 1: df: not found".into());
        let first = e.images.keys().next().unwrap().clone();
        e.images.insert(first, "arm64".into());
    }
    let f = evaluate(&needs, &facts, Arch::Amd64);
    let st = |id: &str| f.iter().find(|f| f.id == id).unwrap().status;
    assert_eq!(st("a/arch"), Status::Fail);
    assert_eq!(st("a/images"), Status::Fail);
    assert_eq!(st("a/disk-docker"), Status::Warn);
    assert_eq!(st("a/vm-max-map-count"), Status::Warn);
}

#[test]
fn the_probe_output_is_read_and_garbage_is_refused() {
    let out = "262144\nFilesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/sda1 102400000 2000000 52428800 4% /cdq-docker-root\n";
    assert_eq!(
        parse_probe(out),
        Some(Probe {
            docker_root_free_mb: 51_200,
            vm_max_map_count: 262_144
        })
    );
    assert_eq!(parse_probe("sh: cat: not found"), None);
    assert_eq!(parse_probe("65530\n"), None);
}
