//! Gathers one Swarm node's [`NodeFacts`] through its own engine: the engine's info, which
//! of the images the node needs are present (and their architecture), and a short probe
//! container for what the engine does not report: free space at its Docker root and
//! `vm.max_map_count` (not namespaced, so a container reads the node's value).
//!
//! Must not: judge (that is `nodes::evaluate`), pull, or leave the probe behind (`run_oneoff`
//! removes it whatever happens; it carries the project label like `up`'s helpers).

use std::collections::BTreeMap;

use crate::engine::{Engine, LABEL_PROJECT, OneOff, explain};

use super::nodes::{NodeEngine, NodeFacts, NodeNeeds, parse_probe};

/// Where the probe sees the node's Docker root.
const PROBE_MOUNT: &str = "/cdq-docker-root";

/// The node's facts; `engine` is None when the node has no endpoint, or the error of
/// connecting to it.
pub async fn gather<E: Engine>(
    need: &NodeNeeds,
    endpoint: Option<&str>,
    engine: Option<Result<&E, String>>,
    project: &str,
) -> NodeFacts {
    let engine = match engine {
        None => Err("no endpoint".to_string()),
        Some(Err(e)) => Err(e),
        Some(Ok(e)) => read(e, need, project).await,
    };
    NodeFacts {
        node: need.node.clone(),
        endpoint: endpoint.map(str::to_string),
        engine,
    }
}

async fn read<E: Engine>(e: &E, need: &NodeNeeds, project: &str) -> Result<NodeEngine, String> {
    let info = e.info().await.map_err(|x| explain(x).to_string())?;
    let mut images = BTreeMap::new();
    for image in need.images.keys() {
        if let Some(i) = e.image(image).await.map_err(|x| explain(x).to_string())? {
            images.insert(image.clone(), i.arch);
        }
    }
    // Any image the node has and needs will do: each has a shell, `cat` and `df`.
    let probe = match images.keys().next() {
        None => Err("no image of the stack on the node to probe with".to_string()),
        Some(image) => probe(e, image, &info.root_dir, project).await,
    };
    Ok(NodeEngine {
        version: info.server_version,
        api_version: info.api_version,
        arch: info.arch,
        memory_bytes: info.memory_bytes,
        root_dir: info.root_dir,
        images,
        probe,
    })
}

async fn probe<E: Engine>(
    e: &E,
    image: &str,
    root_dir: &str,
    project: &str,
) -> Result<super::nodes::Probe, String> {
    let spec = OneOff {
        image: image.to_string(),
        user: "0".into(),
        entrypoint: vec![
            "sh".into(),
            "-c".into(),
            format!("cat /proc/sys/vm/max_map_count && df -Pk {PROBE_MOUNT}"),
        ],
        binds: vec![format!("{root_dir}:{PROBE_MOUNT}:ro")],
        labels: BTreeMap::from([(LABEL_PROJECT.to_string(), project.to_string())]),
        ulimits: Vec::new(),
    };
    let (code, out) = e
        .run_oneoff(&spec)
        .await
        .map_err(|x| format!("the probe container failed: {}", explain(x)))?;
    if code != 0 {
        return Err(format!(
            "the probe exited {code}: {}",
            out.lines().last().unwrap_or("")
        ));
    }
    parse_probe(&out).ok_or_else(|| format!("unreadable probe output `{}`", out.trim()))
}
