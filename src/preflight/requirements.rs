//! What the enabled stack needs from the host ([`Requirements`]), derived from the
//! settings, the image catalogue and the rendered project. Pure: no I/O.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::hostip::Decision;
use crate::project::Project;
use crate::services::{Arch, Service};
use crate::settings::{ImageSet, Settings};

/// A port the rendered project publishes, on the address it binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortNeed {
    pub service: String,
    pub addr: String,
    pub port: u16,
    pub protocol: String,
}

/// A host setting some enabled images need, with the services that need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostNeed {
    pub value: u64,
    pub by: Vec<String>,
}

/// What the enabled stack needs from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    pub arch: Arch,
    pub services: Vec<String>,
    pub image_set: String,
    /// A registry to pull from is configured (a registry prefix image set).
    pub registry: bool,
    /// Catalogue memory plus heap, summed over the enabled services.
    pub memory_mb: u64,
    pub vm_max_map_count: Option<HostNeed>,
    pub nofile: Option<HostNeed>,
    pub ports: Vec<PortNeed>,
    pub uids: BTreeSet<u32>,
    /// (service, image reference), as the rendered file runs them.
    pub images: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub deploy_dir: PathBuf,
    /// The project's name, which a data directory's mark must carry.
    pub project: String,
    /// (service, read-write bind source, the uid the service's image runs as if known).
    pub service_dirs: Vec<(String, PathBuf, Option<u32>)>,
    /// Services whose foreign data directory the user adopts (`--adopt-data`).
    pub adopt: BTreeSet<String>,
    pub host_ip: Decision,
    pub explicit_arch: bool,
    /// Data directories whose contents the chosen images must be able to read.
    pub data: Vec<super::olddata::DataNeed>,
    /// What the Xinchuang checks need (clone3, page size, granted limits, relabelling).
    pub compat: super::compat::CompatNeeds,
}

fn max_need(
    services: &BTreeSet<Service>,
    catalog: &Catalog,
    pick: impl Fn(&crate::catalog::Needs) -> Option<u64>,
) -> Option<HostNeed> {
    let with: Vec<(Service, u64)> = services
        .iter()
        .filter_map(|s| pick(&catalog.images.get(s)?.needs).map(|v| (*s, v)))
        .collect();
    let value = with.iter().map(|(_, v)| *v).max()?;
    Some(HostNeed {
        value,
        by: with.iter().map(|(s, _)| s.name().to_string()).collect(),
    })
}

impl Requirements {
    pub fn derive(
        s: &Settings,
        catalog: &Catalog,
        arch: Arch,
        host_ip: &Decision,
        project: &Project,
    ) -> Requirements {
        let memory_mb = s
            .services
            .iter()
            .map(|svc| {
                catalog.images.get(svc).map_or(0, |i| i.memory_mb)
                    + s.heap_mb.get(svc).copied().unwrap_or(0)
            })
            .sum();
        let ports = project
            .services
            .iter()
            .flat_map(|(name, spec)| {
                spec.ports.iter().map(move |p| PortNeed {
                    service: name.clone(),
                    addr: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                    port: p.host_port,
                    protocol: p.protocol.clone(),
                })
            })
            .collect();
        Requirements {
            arch,
            services: s.services.iter().map(|x| x.name().to_string()).collect(),
            image_set: s.images.to_string(),
            registry: matches!(s.images, ImageSet::Registry(_) | ImageSet::LocalRegistry(_)),
            memory_mb,
            vm_max_map_count: max_need(&s.services, catalog, |n| n.vm_max_map_count),
            nofile: max_need(&s.services, catalog, |n| n.nofile),
            ports,
            uids: s
                .services
                .iter()
                .filter_map(|svc| catalog.images.get(svc).map(|i| i.uid))
                .collect(),
            images: project
                .services
                .iter()
                .map(|(n, spec)| (n.clone(), spec.image.clone()))
                .collect(),
            data_dir: s.data_dir.clone(),
            deploy_dir: s.deploy_dir.clone(),
            project: project.name.clone(),
            service_dirs: project
                .services
                .iter()
                .flat_map(|(name, spec)| {
                    let uid = Service::ALL
                        .iter()
                        .find(|x| x.name() == name)
                        .and_then(|x| catalog.images.get(x))
                        .map(|i| i.uid);
                    spec.binds
                        .iter()
                        .filter(|b| !b.read_only)
                        .map(move |b| (name.clone(), b.source.clone(), uid))
                })
                .collect(),
            adopt: BTreeSet::new(),
            host_ip: host_ip.clone(),
            explicit_arch: s.arch.is_some(),
            data: super::olddata::needs(s, catalog, project),
            compat: super::compat::CompatNeeds::derive(s, catalog, project),
        }
    }
}
