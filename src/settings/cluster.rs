//! `cluster:` in `cdq.yaml` for `target: swarm`: the three nodes cdq places on (slot order)
//! and each node's own Docker endpoint, through which cdq loads images onto it and checks it
//! (the manager's API shows neither a node's images nor its disk).
//!
//! Must not: connect to anything (the command layer does), or accept an endpoint form the
//! engine cannot open: a bad value is refused here, with the file, line and key (exit 2).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::error::CdqError;

/// `cluster:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    nodes: Option<Vec<String>>,
    /// Node hostname -> its Docker endpoint (`unix:///path`, `tcp://host:port`).
    endpoints: Option<BTreeMap<String, String>>,
}

/// One node's Docker endpoint, as `DOCKER_HOST` would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
}

/// The swarm nodes cdq places on, by hostname; `nodes[i]` carries the node label
/// `cdq.slot=i+1` (slot 1 holds the single-instance stateful services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: Vec<String>,
    /// The nodes' own Docker endpoints (`cluster.endpoints`); a node may have none, and
    /// what needs one (loading a bundle, the per-node checks) says so naming the node.
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl Cluster {
    /// The setting a node's endpoint is read from, for messages.
    pub fn endpoint_key(node: &str) -> String {
        format!("cluster.endpoints.{node}")
    }
}

/// How many nodes the highly available services span (three: a ZooKeeper ensemble, a
/// KRaft quorum and Sentinel each need a majority that survives one loss).
pub const CLUSTER_NODES: usize = 3;

/// Validates `cluster:` for `target: swarm`. `in_file(key)` names the file, line and key.
pub(super) fn resolve(
    f: Option<ClusterFile>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Cluster, CdqError> {
    let f = f.unwrap_or_default();
    let nodes = f.nodes.unwrap_or_default();
    let distinct: BTreeSet<&String> = nodes.iter().collect();
    if nodes.len() != CLUSTER_NODES
        || distinct.len() != CLUSTER_NODES
        || nodes.iter().any(|n| n.trim().is_empty())
    {
        return Err(CdqError::usage(format!(
            "{}: `target: swarm` needs three distinct node names, got {}",
            in_file("cluster.nodes"),
            nodes.len()
        ))
        .hint("list the hostnames `docker node ls` shows, slot 1 first: `cluster: { nodes: [manager, worker1, worker2] }`"));
    }
    let mut endpoints = BTreeMap::new();
    for (node, host) in f.endpoints.unwrap_or_default() {
        let key = Cluster::endpoint_key(&node);
        if !nodes.contains(&node) {
            return Err(CdqError::usage(format!(
                "{}: `{node}` is not one of `cluster.nodes`",
                in_file(&key)
            ))
            .hint(format!(
                "give endpoints for the nodes listed: {}",
                crate::error::quoted_list(&nodes)
            )));
        }
        if let Some(problem) = endpoint_problem(&host) {
            return Err(CdqError::usage(format!("{}: {problem}", in_file(&key))).hint(
                "write the node's Docker endpoint as `DOCKER_HOST` would: `unix:///var/run/docker.sock` (a socket reachable from here) or `tcp://10.0.0.12:2375`",
            ));
        }
        endpoints.insert(node, Endpoint { host });
    }
    Ok(Cluster { nodes, endpoints })
}

/// Why `host` is not an endpoint cdq can open, if it is not.
fn endpoint_problem(host: &str) -> Option<String> {
    if let Some(path) = host.strip_prefix("unix://") {
        return (!path.starts_with('/'))
            .then(|| format!("`{host}` needs an absolute socket path (`unix:///…`)"));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let ok = addr.rsplit_once(':').is_some_and(|(h, port)| {
            !h.is_empty() && !addr.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        return (!ok).then(|| format!("`{host}` is not `tcp://HOST:PORT`"));
    }
    Some(format!(
        "`{host}` is not a Docker endpoint: write `unix:///PATH` or `tcp://HOST:PORT`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(endpoints: &[(&str, &str)]) -> ClusterFile {
        ClusterFile {
            nodes: Some(vec!["manager".into(), "worker1".into(), "worker2".into()]),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    fn at(key: &str) -> String {
        format!("`cdq.yaml`: `{key}`")
    }

    #[test]
    fn endpoints_of_listed_nodes_are_kept() {
        let c = resolve(
            Some(file(&[
                ("manager", "unix:///run/m.sock"),
                ("worker1", "tcp://10.0.0.12:2375"),
            ])),
            &at,
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints["worker1"].host, "tcp://10.0.0.12:2375");
        assert!(!c.endpoints.contains_key("worker2"));
    }

    #[test]
    fn an_endpoint_for_a_node_not_listed_is_refused_naming_the_key() {
        let e = resolve(Some(file(&[("worker3", "unix:///x.sock")])), &at).unwrap_err();
        assert_eq!(
            e.message,
            "`cdq.yaml`: `cluster.endpoints.worker3`: `worker3` is not one of `cluster.nodes`"
        );
    }

    #[test]
    fn a_malformed_endpoint_is_refused_with_the_forms_that_work() {
        for (bad, says) in [
            ("ssh://root@node", "is not a Docker endpoint"),
            ("unix://run/x.sock", "needs an absolute socket path"),
            ("tcp://10.0.0.12", "is not `tcp://HOST:PORT`"),
            ("tcp://10.0.0.12:http", "is not `tcp://HOST:PORT`"),
            ("tcp://:2375", "is not `tcp://HOST:PORT`"),
        ] {
            let e = resolve(Some(file(&[("worker1", bad)])), &at).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
            assert!(
                e.message
                    .starts_with("`cdq.yaml`: `cluster.endpoints.worker1`: "),
                "{}",
                e.message
            );
            assert!(e.hint.unwrap().contains("unix:///var/run/docker.sock"));
        }
    }
}
