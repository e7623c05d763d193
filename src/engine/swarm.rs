//! The Swarm operations cdq needs from a manager, as a trait of its own beside [`Engine`]:
//! nodes, services, tasks, config and secret objects, overlay networks, service logs.
//! Separate so the single-host `Engine` (and its fake) stay as they are; the Docker
//! implementation is `docker/swarm.rs` (bollard), the in-memory one `fake_swarm.rs`.
//!
//! Must not: decide what to create (that is `ops::swarm`), print.
//!
//! [`Engine`]: super::Engine

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

use super::Result;
use crate::swarm::stack::{Object, ServiceDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ready,
    Down,
    Disconnected,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub state: NodeState,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub manager: bool,
    pub labels: BTreeMap<String, String>,
    pub engine_version: String,
    /// Docker's spelling (`x86_64`, `aarch64`).
    pub arch: String,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmService {
    pub id: String,
    pub name: String,
    /// The spec version, for updates.
    pub version: u64,
    pub labels: BTreeMap<String, String>,
    pub replicas: u64,
}

/// One task as the manager reports it. A task on a node that went down still reports its
/// last state (`running`): readers must check the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    pub slot: u64,
    pub node_id: String,
    /// `running`, `shutdown`, ...
    pub desired: String,
    /// `new` ... `starting`, `running` (with a healthcheck: healthy), `failed`, `rejected`...
    pub state: String,
    pub message: String,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
}

impl Task {
    pub fn wants_running(&self) -> bool {
        self.desired == "running"
    }
}

/// What to create: a service of the stack with cdq's names and labels resolved.
#[derive(Debug, Clone)]
pub struct ServiceCreate<'a> {
    /// `<project>_<short>`.
    pub name: String,
    pub def: &'a ServiceDef,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    /// Object name -> id, for the configs and secrets it mounts.
    pub object_ids: &'a BTreeMap<String, String>,
}

pub trait SwarmEngine: Send + Sync + 'static {
    /// Every node of the swarm (this engine must be a manager).
    fn nodes(&self) -> impl Future<Output = Result<Vec<Node>>> + Send;
    /// Services labelled `io.cdq.project=<project>`.
    fn services(&self, project: &str) -> impl Future<Output = Result<Vec<SwarmService>>> + Send;
    /// Every task of these services (any desired state).
    fn tasks(&self, service_ids: &[String]) -> impl Future<Output = Result<Vec<Task>>> + Send;
    fn create_service(
        &self,
        spec: &ServiceCreate<'_>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Replaces the spec of service `id` at `version`.
    fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceCreate<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Config and secret objects labelled with the project: (name, id, secret).
    fn objects(
        &self,
        project: &str,
    ) -> impl Future<Output = Result<Vec<(String, String, bool)>>> + Send;
    /// Creates a config or secret object; returns its id.
    fn create_object(
        &self,
        o: &Object,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn remove_object(&self, id: &str, secret: bool) -> impl Future<Output = Result<()>> + Send;
    /// Creates the overlay network unless it exists; true when created.
    fn ensure_overlay(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Names of the networks labelled `io.cdq.project=<project>`.
    fn overlays(&self, project: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Removes the network `name`; a missing one is fine. A manager accepts the removal of
    /// a network whose tasks are still leaving and deletes it once they are gone, so it may
    /// stay listed a while; it refuses one a service still uses.
    fn remove_overlay(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// The last `tail` lines of every task of the service, oldest first.
    fn service_logs(&self, id: &str, tail: u64)
    -> impl Future<Output = Result<Vec<String>>> + Send;
}
