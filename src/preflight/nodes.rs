//! Preflight of every Swarm node, through the node's own Docker endpoint
//! (`cluster.endpoints`): what each node needs ([`needs`], from the stack's placement: a
//! service pinned to a slot needs its node, an unpinned one may land on any), what each node
//! has ([`NodeFacts`], gathered by `nodefacts`), and the pure judgement ([`evaluate`]):
//! engine version, architecture, memory, free disk at the Docker root, `vm.max_map_count`
//! where elasticsearch runs, and the images its tasks run. Every finding's id starts with
//! the node's name, so each FAIL names its node.
//!
//! Must not: do I/O (facts come in), or judge what the manager alone can say (presence,
//! Ready, labels: `ops::swarm::check_nodes`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::catalog::Catalog;
use crate::services::Arch;
use crate::settings::{Cluster, Settings};
use crate::swarm::stack::{Stack, base_service, pinned_slot};

use super::evaluate::{DOCKER_FAIL_MB, DOCKER_WARN_MB, MIN_ENGINE, finding, major_minor, pass};
use super::requirements::HostNeed;
use super::{Finding, Status};

/// What one node must provide for the tasks that may run on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeNeeds {
    pub node: String,
    pub slot: usize,
    /// Image reference -> the stack services that run it there.
    pub images: BTreeMap<String, Vec<String>>,
    /// The services pinned here plus the largest that may move here (catalogue memory and
    /// heap).
    pub memory_mb: u64,
    pub memory_by: Vec<String>,
    pub vm_max_map_count: Option<HostNeed>,
}

/// Per node, from the stack: slot `i+1` is `cluster.nodes[i]`.
pub fn needs(
    stack: &Stack,
    cluster: &Cluster,
    settings: &Settings,
    catalog: &Catalog,
) -> Vec<NodeNeeds> {
    let mem = |short: &str| {
        base_service(short).map_or(0, |s| {
            catalog.images.get(&s).map_or(0, |i| i.memory_mb)
                + settings.heap_mb.get(&s).copied().unwrap_or(0)
        })
    };
    let floating: Vec<&str> = stack
        .services
        .iter()
        .filter(|d| pinned_slot(d).is_none())
        .map(|d| d.short.as_str())
        .collect();
    let biggest_floating = floating.iter().max_by_key(|s| mem(s)).copied();
    cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let slot = i + 1;
            let here: Vec<&crate::swarm::stack::ServiceDef> = stack
                .services
                .iter()
                .filter(|d| pinned_slot(d).is_none_or(|s| s == slot))
                .collect();
            let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for d in &here {
                images
                    .entry(d.image.clone())
                    .or_default()
                    .push(d.short.clone());
            }
            let pinned: Vec<&str> = here
                .iter()
                .filter(|d| pinned_slot(d).is_some())
                .map(|d| d.short.as_str())
                .collect();
            let mut memory_by: Vec<String> = pinned.iter().map(|s| s.to_string()).collect();
            let mut memory_mb: u64 = pinned.iter().map(|s| mem(s)).sum();
            if let Some(f) = biggest_floating {
                memory_mb += mem(f);
                memory_by.push(format!("{f} (may move here)"));
            }
            let es: Vec<String> = pinned
                .iter()
                .filter(|s| {
                    base_service(s).is_some_and(|b| {
                        catalog
                            .images
                            .get(&b)
                            .is_some_and(|i| i.needs.vm_max_map_count.is_some())
                    })
                })
                .map(|s| s.to_string())
                .collect();
            let vm_max_map_count = es
                .iter()
                .filter_map(|s| {
                    catalog
                        .images
                        .get(&base_service(s)?)?
                        .needs
                        .vm_max_map_count
                })
                .max()
                .map(|value| HostNeed {
                    value,
                    by: es.clone(),
                });
            NodeNeeds {
                node: node.clone(),
                slot,
                images,
                memory_mb,
                memory_by,
                vm_max_map_count,
            }
        })
        .collect()
}

/// What one node's engine says, read through its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    pub node: String,
    /// The endpoint, or None when `cluster.endpoints` has none for the node.
    pub endpoint: Option<String>,
    /// The engine's answer, or why there is none.
    pub engine: Result<NodeEngine, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEngine {
    pub version: String,
    pub api_version: String,
    /// Docker's spelling (`x86_64`, `aarch64`).
    pub arch: String,
    pub memory_bytes: u64,
    pub root_dir: String,
    /// Image reference -> its architecture, for every needed image present.
    pub images: BTreeMap<String, String>,
    /// From the probe container: free MiB at the Docker root and `vm.max_map_count`, or why
    /// it could not run.
    pub probe: Result<Probe, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub docker_root_free_mb: u64,
    pub vm_max_map_count: u64,
}

/// Reads the probe's output: `vm.max_map_count` on the first line, then `df -Pk`'s last line
/// (filesystem, 1K-blocks, used, available, ...).
pub fn parse_probe(out: &str) -> Option<Probe> {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let vm_max_map_count = lines.next()?.parse().ok()?;
    let df = lines.next_back()?;
    let avail_kb: u64 = df.split_whitespace().nth(3)?.parse().ok()?;
    Some(Probe {
        docker_root_free_mb: avail_kb / 1024,
        vm_max_map_count,
    })
}

/// Judges every node. A node without an endpoint or whose engine does not answer is one
/// FAIL naming the node and the setting; its other checks cannot run.
pub fn evaluate(needs: &[NodeNeeds], facts: &[NodeFacts], arch: Arch) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in needs {
        let id = |check: &str| format!("{}/{check}", n.node);
        let key = Cluster::endpoint_key(&n.node);
        let Some(f) = facts.iter().find(|f| f.node == n.node) else {
            continue;
        };
        let Some(endpoint) = &f.endpoint else {
            out.push(finding(
                id("endpoint"),
                Status::Fail,
                "no endpoint",
                format!(
                    "node `{}`'s Docker endpoint, to check it and load its images",
                    n.node
                ),
                Some(format!(
                    "set `{key}` in cdq.yaml (`unix:///PATH` or `tcp://HOST:PORT`)"
                )),
            ));
            continue;
        };
        let e = match &f.engine {
            Ok(e) => e,
            Err(why) => {
                out.push(finding(
                    id("endpoint"),
                    Status::Fail,
                    format!("`{endpoint}`: {why}"),
                    format!("node `{}`'s Docker engine answering", n.node),
                    Some(format!(
                        "start Docker on `{}`, or fix `{key}` in cdq.yaml",
                        n.node
                    )),
                ));
                continue;
            }
        };
        out.push(pass(
            &id("endpoint"),
            endpoint.clone(),
            "a reachable Docker engine",
        ));

        let needed = format!("Docker >= {}.{:02}", MIN_ENGINE.0, MIN_ENGINE.1);
        let found = format!("Docker {}, API {}", e.version, e.api_version);
        out.push(if major_minor(&e.version).is_some_and(|v| v >= MIN_ENGINE) {
            pass(&id("docker-version"), found, needed)
        } else {
            finding(
                id("docker-version"),
                Status::Fail,
                found,
                needed,
                Some(format!(
                    "upgrade Docker on `{}` to 18.09 or newer (the distribution's `docker.io` package is enough)",
                    n.node
                )),
            )
        });

        let needed = format!("{arch}, as the stack is rendered");
        out.push(if Arch::from_any(&e.arch) == Some(arch) {
            pass(&id("arch"), e.arch.clone(), needed)
        } else {
            finding(
                id("arch"),
                Status::Fail,
                e.arch.clone(),
                needed,
                Some("render for the nodes' architecture (`--arch`), or use nodes of one architecture".into()),
            )
        });

        let have = e.memory_bytes / (1024 * 1024);
        let needed = format!(">= {} MiB for {}", n.memory_mb, n.memory_by.join(", "));
        let found = format!("{have} MiB");
        out.push(if have >= n.memory_mb {
            pass(&id("memory"), found, needed)
        } else {
            finding(
                id("memory"),
                Status::Fail,
                found,
                needed,
                Some(format!(
                    "give `{}` more memory, or lower `heap:` in cdq.yaml",
                    n.node
                )),
            )
        });

        match &e.probe {
            Err(why) => out.push(finding(
                id("disk-docker"),
                Status::Warn,
                format!("unknown: {why}"),
                format!(">= {} MiB free at `{}`", DOCKER_WARN_MB, e.root_dir),
                Some(format!("check with `df -h {}` on `{}`", e.root_dir, n.node)),
            )),
            Ok(p) => {
                let found = format!("{} MiB free at `{}`", p.docker_root_free_mb, e.root_dir);
                let needed = format!(">= {DOCKER_WARN_MB} MiB free");
                let fix = Some(format!(
                    "free space under `{}` on `{}`: `docker system prune` there removes unused images and containers",
                    e.root_dir, n.node
                ));
                let mb = p.docker_root_free_mb;
                out.push(if mb < DOCKER_FAIL_MB {
                    finding(id("disk-docker"), Status::Fail, found, needed, fix)
                } else if mb < DOCKER_WARN_MB {
                    finding(id("disk-docker"), Status::Warn, found, needed, fix)
                } else {
                    pass(&id("disk-docker"), found, needed)
                });
            }
        }

        if let Some(need) = &n.vm_max_map_count {
            let needed = format!(">= {} for {}", need.value, need.by.join(", "));
            let fix = Some(format!(
                "on `{}`: `sudo sysctl -w vm.max_map_count={v}`; to persist: `echo vm.max_map_count={v} | sudo tee /etc/sysctl.d/99-cdq.conf`",
                n.node,
                v = need.value
            ));
            out.push(match &e.probe {
                Err(why) => finding(
                    id("vm-max-map-count"),
                    Status::Warn,
                    format!("unknown: {why}"),
                    needed,
                    fix,
                ),
                Ok(p) if p.vm_max_map_count < need.value => finding(
                    id("vm-max-map-count"),
                    Status::Fail,
                    p.vm_max_map_count.to_string(),
                    needed,
                    fix,
                ),
                Ok(p) => pass(
                    &id("vm-max-map-count"),
                    p.vm_max_map_count.to_string(),
                    needed,
                ),
            });
        }

        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        for (image, by) in &n.images {
            match e.images.get(image) {
                None => missing.push(format!("`{image}` ({})", by.join(", "))),
                Some(a) if Arch::from_any(a) != Some(arch) => {
                    wrong.push(format!("`{image}` is {a}"))
                }
                Some(_) => {}
            }
        }
        let needed = format!("the {} images its tasks run, for {arch}", n.images.len());
        out.push(if missing.is_empty() && wrong.is_empty() {
            pass(&id("images"), format!("{} present", n.images.len()), needed)
        } else {
            let found = [
                (!missing.is_empty()).then(|| format!("missing {}", missing.join(", "))),
                (!wrong.is_empty()).then(|| wrong.join(", ")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
            finding(
                id("images"),
                Status::Fail,
                found,
                needed,
                Some("load them onto every node from a bundle: `cdq bundle load FILE` (or `cdq up --bundle FILE`)".into()),
            )
        });
    }
    out
}

/// The image references of every node's needs, deduplicated: what a bundle must hold.
pub fn all_images(needs: &[NodeNeeds]) -> BTreeSet<String> {
    needs
        .iter()
        .flat_map(|n| n.images.keys().cloned())
        .collect()
}

#[cfg(test)]
mod tests;
