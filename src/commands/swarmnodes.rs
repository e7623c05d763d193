//! The Swarm nodes through their own Docker endpoints (`cluster.endpoints`): connecting to
//! each (API version negotiated as for the manager), loading a bundle onto every node
//! (verified once, then loaded onto the nodes in parallel: on each only the images its tasks
//! run and it lacks, with progress per node), and the per-node preflight.
//!
//! Must not: load or probe before the bundle is verified whole, or reach a node other than
//! through the endpoint the settings give for it.

use std::collections::BTreeSet;
use std::path::Path;

use futures_util::future::join_all;

use crate::bundle::{self, LoadReport, Want};
use crate::engine::docker::Docker;
use crate::engine::explain;
use crate::error::CdqError;
use crate::preflight::nodes::{NodeFacts, NodeNeeds};
use crate::preflight::{Finding, nodefacts, nodes};
use crate::settings::Cluster;
use crate::ui::{Ui, human_bytes};

/// One node and its engine: None when it has no endpoint, else the connection or why not.
pub struct NodeConn {
    pub node: String,
    pub endpoint: Option<String>,
    pub engine: Option<Result<Docker, String>>,
}

/// Connects to every node that has an endpoint, all at once.
pub async fn connect_all(cluster: &Cluster) -> Vec<NodeConn> {
    join_all(cluster.nodes.iter().map(|node| async move {
        let endpoint = cluster.endpoints.get(node).map(|e| e.host.clone());
        let engine = match &endpoint {
            None => None,
            Some(host) => Some(
                Docker::connect_to(host)
                    .await
                    .map_err(|e| explain(e).message),
            ),
        };
        NodeConn {
            node: node.clone(),
            endpoint,
            engine,
        }
    }))
    .await
}

/// Loading onto every node needs every node's endpoint: the error names the nodes without
/// one and the setting.
pub fn require_endpoints(cluster: &Cluster, what: &str) -> Result<(), CdqError> {
    let missing: Vec<&String> = cluster
        .nodes
        .iter()
        .filter(|n| !cluster.endpoints.contains_key(*n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = missing.iter().map(|n| Cluster::endpoint_key(n)).collect();
    Err(CdqError::usage(format!(
        "{what} needs each node's own Docker endpoint, and {}",
        if missing.len() == 1 {
            format!("node `{}` has none", missing[0])
        } else {
            format!("nodes {} have none", crate::error::quoted_list(&missing))
        },
    ))
    .hint(format!(
        "set {} in cdq.yaml, e.g. `cluster: {{ endpoints: {{ {}: tcp://NODE-IP:2375 }} }}` (or `unix:///PATH` for a socket reachable from here)",
        crate::error::quoted_list(&keys),
        missing[0]
    )))
}

/// Verifies the bundle once, then loads onto each node, in parallel, the images its tasks
/// need and it lacks. A node that cannot be reached is named with its endpoint; nothing is
/// loaded anywhere before the bundle passed every check.
pub async fn load_bundle(
    ui: &Ui,
    conns: &[NodeConn],
    needs: &[NodeNeeds],
    file: &Path,
    want: &Want,
) -> anyhow::Result<()> {
    let mut engines = Vec::new();
    let mut unreachable = Vec::new();
    for c in conns {
        match &c.engine {
            Some(Ok(e)) => engines.push((c, e)),
            Some(Err(why)) => unreachable.push(format!(
                "`{}` at `{}`: {why}",
                c.node,
                c.endpoint.as_deref().unwrap_or("")
            )),
            None => unreachable.push(format!("`{}` has no endpoint", c.node)),
        }
    }
    if !unreachable.is_empty() {
        return Err(CdqError::failure(format!(
            "cannot load the bundle onto every node: {}",
            unreachable.join("; ")
        ))
        .hint("start Docker on those nodes, or fix their `cluster.endpoints` in cdq.yaml")
        .into());
    }
    let bundle = bundle::open_verified(file, want, ui)?;
    let held: BTreeSet<&str> = bundle
        .manifest
        .images
        .iter()
        .map(|i| i.reference.as_str())
        .collect();
    let group = ui.transfer_group();
    let loads = engines.iter().map(|(c, e)| {
        let only: BTreeSet<String> = needs
            .iter()
            .find(|n| n.node == c.node)
            .map(|n| n.images.keys().cloned().collect())
            .unwrap_or_default();
        let meters = ui.transfers(&group, &c.node);
        let bundle = &bundle;
        async move {
            let r = bundle::load_verified(*e, bundle, Some(&only), false, &meters).await;
            (c.node.clone(), only, r)
        }
    });
    let mut failed = Vec::new();
    for (node, only, r) in join_all(loads).await {
        match r {
            Ok(r) => ui.info(describe(&node, &r)),
            Err(e) => failed.push(format!("`{node}`: {e:#}")),
        }
        let absent: Vec<&String> = only.iter().filter(|i| !held.contains(i.as_str())).collect();
        if !absent.is_empty() {
            ui.warn(format!(
                "the bundle does not hold {} that `{node}` needs (preflight checks whether it has them)",
                crate::error::quoted_list(absent)
            ));
        }
    }
    if !failed.is_empty() {
        return Err(CdqError::failure(format!(
            "loading the bundle failed on {}",
            failed.join("; ")
        ))
        .hint("what loaded stays (Docker keeps only whole images); run the same command again to load the rest")
        .into());
    }
    Ok(())
}

fn describe(node: &str, r: &LoadReport) -> String {
    if r.loaded.is_empty() {
        format!(
            "{node}: all {} images it needs already present; nothing loaded",
            r.present.len()
        )
    } else {
        format!(
            "{node}: loaded {} images ({}), {} already present, in {:.1}s",
            r.loaded.len(),
            human_bytes(r.bytes),
            r.present.len(),
            r.elapsed.as_secs_f64()
        )
    }
}

/// Every node's facts through its endpoint, gathered in parallel, then judged.
pub async fn findings(
    conns: &[NodeConn],
    needs: &[NodeNeeds],
    project: &str,
    arch: crate::services::Arch,
) -> Vec<Finding> {
    let facts: Vec<NodeFacts> = join_all(needs.iter().map(|n| async move {
        let c = conns.iter().find(|c| c.node == n.node);
        let engine = c.and_then(|c| c.engine.as_ref()).map(|r| match r {
            Ok(e) => Ok(e),
            Err(why) => Err(why.clone()),
        });
        nodefacts::gather(n, c.and_then(|c| c.endpoint.as_deref()), engine, project).await
    }))
    .await;
    nodes::evaluate(needs, &facts, arch)
}
