//! [`SwarmEngine`] on bollard: services, tasks, nodes, config and secret objects and overlay
//! networks on a Swarm manager, translated into cdq's types. Part of the one module that
//! imports bollard.
//!
//! Must not: decide what to create or when, print, or touch an object it was not given by
//! id or by the project label.

use std::collections::{BTreeMap, HashMap};

use base64_engine::encode as b64;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, HealthConfig, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, NodeSpecAvailabilityEnum, NodeSpecRoleEnum,
    NodeState as WireNodeState, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    ListConfigsOptions, ListNodesOptions, ListSecretsOptions, ListServicesOptions,
    ListTasksOptions, UpdateServiceOptions,
};
use futures_util::TryStreamExt;

use super::Docker;
use super::wire::{frame_lines, label_filter, log_options, nanos};
use crate::engine::Result;
use crate::engine::swarm::{Node, NodeState, ServiceCreate, SwarmEngine, SwarmService, Task};
use crate::swarm::stack::Object;

/// Base64 for config and secret data (the API takes it that way); no crate for one function.
mod base64_engine {
    pub fn encode(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn service_spec(s: &ServiceCreate<'_>) -> ServiceSpec {
    let d = s.def;
    let labels: HashMap<String, String> = s.labels.clone().into_iter().collect();
    let mounts: Vec<Mount> = d
        .volumes
        .iter()
        .map(|(src, dst)| Mount {
            target: Some(dst.clone()),
            source: Some(src.clone()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let id = |name: &str| s.object_ids.get(name).cloned();
    let configs: Vec<TaskSpecContainerSpecConfigs> = d
        .files
        .iter()
        .filter(|m| !m.secret)
        .map(|m| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(m.target.clone()),
                uid: Some(m.uid.clone()),
                gid: Some(m.gid.clone()),
                mode: Some(m.mode),
            }),
            config_id: id(&m.object),
            config_name: Some(m.object.clone()),
            ..Default::default()
        })
        .collect();
    let secrets: Vec<TaskSpecContainerSpecSecrets> = d
        .files
        .iter()
        .filter(|m| m.secret)
        .map(|m| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(m.target.clone()),
                uid: Some(m.uid.clone()),
                gid: Some(m.gid.clone()),
                mode: Some(m.mode),
            }),
            secret_id: id(&m.object),
            secret_name: Some(m.object.clone()),
        })
        .collect();
    let health = d.health.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::try_from(h.retries).unwrap_or(i64::MAX)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    });
    let container = TaskSpecContainerSpec {
        image: Some(d.image.clone()),
        labels: Some(labels.clone()),
        // Compose's `command` is the image's CMD, which Swarm calls Args.
        args: d.command.clone(),
        hostname: d.hostname.clone(),
        env: Some(d.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        mounts: Some(mounts),
        stop_grace_period: d.stop_grace.map(nanos),
        health_check: health,
        configs: Some(configs),
        secrets: Some(secrets),
        ..Default::default()
    };
    let ports: Vec<EndpointPortConfig> = d
        .ports
        .iter()
        .map(|(published, target)| EndpointPortConfig {
            target_port: Some(i64::from(*target)),
            published_port: Some(i64::from(*published)),
            // The routing mesh needs IPVS, which many kernels (and this lab) lack: a port
            // is published on the node that runs the task.
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(s.name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(5_000_000_000),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(d.constraints.clone()),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(s.network.clone()),
                aliases: Some(vec![d.short.clone()]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::try_from(d.replicas).unwrap_or(1)),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(ports),
        }),
        ..Default::default()
    }
}

fn string_map(m: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}

impl SwarmEngine for Docker {
    async fn nodes(&self) -> Result<Vec<Node>> {
        let list = self
            .client
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| self.map_err(e, "nodes"))?;
        Ok(list
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let desc = n.description.unwrap_or_default();
                let state = match n.status.and_then(|s| s.state) {
                    Some(WireNodeState::READY) => NodeState::Ready,
                    Some(WireNodeState::DOWN) => NodeState::Down,
                    Some(WireNodeState::DISCONNECTED) => NodeState::Disconnected,
                    _ => NodeState::Unknown,
                };
                Node {
                    id: n.id.unwrap_or_default(),
                    hostname: desc.hostname.unwrap_or_default(),
                    state,
                    availability: match spec.availability {
                        Some(NodeSpecAvailabilityEnum::PAUSE) => "pause",
                        Some(NodeSpecAvailabilityEnum::DRAIN) => "drain",
                        _ => "active",
                    }
                    .to_string(),
                    manager: spec.role == Some(NodeSpecRoleEnum::MANAGER),
                    labels: string_map(spec.labels),
                    engine_version: desc
                        .engine
                        .and_then(|e| e.engine_version)
                        .unwrap_or_default(),
                    arch: desc
                        .platform
                        .and_then(|p| p.architecture)
                        .unwrap_or_default(),
                    memory_bytes: desc
                        .resources
                        .and_then(|r| r.memory_bytes)
                        .and_then(|m| u64::try_from(m).ok())
                        .unwrap_or(0),
                }
            })
            .collect())
    }

    async fn services(&self, project: &str) -> Result<Vec<SwarmService>> {
        let opts = ListServicesOptions {
            filters: Some(label_filter(project)),
            ..Default::default()
        };
        let list = self
            .client
            .list_services(Some(opts))
            .await
            .map_err(|e| self.map_err(e, "services"))?;
        Ok(list
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                SwarmService {
                    id: s.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    version: s.version.and_then(|v| v.index).unwrap_or(0),
                    labels: string_map(spec.labels),
                    replicas: spec
                        .mode
                        .and_then(|m| m.replicated)
                        .and_then(|r| r.replicas)
                        .and_then(|r| u64::try_from(r).ok())
                        .unwrap_or(0),
                }
            })
            .collect())
    }

    async fn tasks(&self, service_ids: &[String]) -> Result<Vec<Task>> {
        if service_ids.is_empty() {
            return Ok(Vec::new());
        }
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                service_ids.to_vec(),
            )])),
        };
        let list = self
            .client
            .list_tasks(Some(opts))
            .await
            .map_err(|e| self.map_err(e, "tasks"))?;
        Ok(list
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                Task {
                    id: t.id.unwrap_or_default(),
                    service_id: t.service_id.unwrap_or_default(),
                    slot: t.slot.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    node_id: t.node_id.unwrap_or_default(),
                    desired: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    message: status.message.unwrap_or_default(),
                    error: status.err.filter(|e| !e.is_empty()),
                    exit_code: status.container_status.and_then(|c| c.exit_code),
                }
            })
            .collect())
    }

    async fn create_service(&self, spec: &ServiceCreate<'_>) -> Result<String> {
        let r = self
            .client
            .create_service(service_spec(spec), None)
            .await
            .map_err(|e| self.map_err(e, &spec.name))?;
        Ok(r.id.unwrap_or_default())
    }

    async fn update_service(&self, id: &str, version: u64, spec: &ServiceCreate<'_>) -> Result<()> {
        let opts = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        self.client
            .update_service(id, service_spec(spec), opts, None)
            .await
            .map_err(|e| self.map_err(e, &spec.name))?;
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> Result<()> {
        match self.client.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.map_err(e, id)),
        }
    }

    async fn objects(&self, project: &str) -> Result<Vec<(String, String, bool)>> {
        let configs = self
            .client
            .list_configs(Some(ListConfigsOptions {
                filters: Some(label_filter(project)),
            }))
            .await
            .map_err(|e| self.map_err(e, "configs"))?;
        let secrets = self
            .client
            .list_secrets(Some(ListSecretsOptions {
                filters: Some(label_filter(project)),
            }))
            .await
            .map_err(|e| self.map_err(e, "secrets"))?;
        let mut out: Vec<(String, String, bool)> = configs
            .into_iter()
            .map(|c| {
                let name = c.spec.and_then(|s| s.name).unwrap_or_default();
                (name, c.id.unwrap_or_default(), false)
            })
            .collect();
        out.extend(secrets.into_iter().map(|s| {
            let name = s.spec.and_then(|s| s.name).unwrap_or_default();
            (name, s.id.unwrap_or_default(), true)
        }));
        Ok(out)
    }

    async fn create_object(&self, o: &Object, labels: &BTreeMap<String, String>) -> Result<String> {
        let labels: HashMap<String, String> = labels.clone().into_iter().collect();
        let r = if o.secret {
            self.client
                .create_secret(SecretSpec {
                    name: Some(o.name.clone()),
                    labels: Some(labels),
                    data: Some(b64(&o.data)),
                    ..Default::default()
                })
                .await
        } else {
            self.client
                .create_config(ConfigSpec {
                    name: Some(o.name.clone()),
                    labels: Some(labels),
                    data: Some(b64(&o.data)),
                    ..Default::default()
                })
                .await
        };
        Ok(r.map_err(|e| self.map_err(e, &o.name))?.id)
    }

    async fn remove_object(&self, id: &str, secret: bool) -> Result<()> {
        let r = if secret {
            self.client.delete_secret(id).await
        } else {
            self.client.delete_config(id).await
        };
        match r {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.map_err(e, id)),
        }
    }

    async fn ensure_overlay(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        self.ensure_network_with(name, "overlay", labels).await
    }

    async fn overlays(&self, project: &str) -> Result<Vec<String>> {
        crate::engine::Engine::list_networks(self, project).await
    }

    async fn remove_overlay(&self, name: &str) -> Result<()> {
        crate::engine::Engine::remove_network(self, name).await
    }

    async fn service_logs(&self, id: &str, tail: u64) -> Result<Vec<String>> {
        let chunks: Vec<_> = self
            .client
            .service_logs(id, Some(log_options(Some(tail), None, false)))
            .try_collect()
            .await
            .map_err(|e| self.map_err(e, id))?;
        Ok(chunks
            .iter()
            .flat_map(|c| frame_lines(c.as_ref()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::b64(b""), "");
        assert_eq!(super::b64(b"f"), "Zg==");
        assert_eq!(super::b64(b"fo"), "Zm8=");
        assert_eq!(super::b64(b"foo"), "Zm9v");
        assert_eq!(super::b64(b"foob"), "Zm9vYg==");
    }
}
