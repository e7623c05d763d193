//! The catalogue of the nine services cdq knows: names, real dependencies, and the defaults
//! that belong to a service rather than to an image (start deadline, heap). Image references
//! and per-image facts are data under `compose/`, not here.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Mysql,
    Redis,
    Zookeeper,
    Kafka,
    Elasticsearch,
    Prometheus,
    Grafana,
    Ucenter,
    Server,
}

impl Service {
    /// Every service, dependencies before dependents.
    pub const ALL: [Service; 9] = [
        Service::Mysql,
        Service::Redis,
        Service::Zookeeper,
        Service::Kafka,
        Service::Elasticsearch,
        Service::Prometheus,
        Service::Grafana,
        Service::Ucenter,
        Service::Server,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Redis => "redis",
            Service::Zookeeper => "zookeeper",
            Service::Kafka => "kafka",
            Service::Elasticsearch => "elasticsearch",
            Service::Prometheus => "prometheus",
            Service::Grafana => "grafana",
            Service::Ucenter => "ucenter",
            Service::Server => "server",
        }
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What this service needs healthy before it starts (the real dependencies).
    pub fn depends_on(self) -> &'static [Service] {
        match self {
            Service::Server => &[
                Service::Mysql,
                Service::Redis,
                Service::Kafka,
                Service::Zookeeper,
                Service::Elasticsearch,
            ],
            Service::Ucenter => &[Service::Mysql, Service::Redis],
            // KRaft: Kafka keeps its metadata itself; ZooKeeper stays for the CD server.
            Service::Grafana => &[Service::Prometheus],
            _ => &[],
        }
    }

    /// JVM services start slowly: their healthcheck start_period and deadline are longer.
    pub fn is_jvm(self) -> bool {
        matches!(
            self,
            Service::Server
                | Service::Ucenter
                | Service::Kafka
                | Service::Elasticsearch
                | Service::Zookeeper
        )
    }

    /// Default heap in MiB for the services whose heap is a setting.
    pub fn default_heap_mb(self) -> Option<u64> {
        match self {
            Service::Elasticsearch => Some(1024),
            Service::Kafka => Some(1024),
            Service::Server => Some(1024),
            Service::Ucenter => Some(512),
            _ => None,
        }
    }

    /// How long `cdq up` waits for this service to become healthy after it starts.
    pub fn default_deadline(self) -> Duration {
        Duration::from_secs(match self {
            Service::Redis | Service::Prometheus | Service::Grafana => 60,
            Service::Mysql | Service::Zookeeper => 120,
            Service::Kafka | Service::Ucenter => 180,
            Service::Elasticsearch | Service::Server => 300,
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Host architectures cdq deploys to. Docker and `uname` spell them differently; both map here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(alias = "x86_64")]
    Amd64,
    #[serde(alias = "aarch64")]
    Arm64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Maps the names `uname -m`, Rust and Docker use (x86_64, aarch64, amd64, arm64).
    pub fn from_any(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" | "x86-64" => Some(Arch::Amd64),
            "arm64" | "aarch64" | "arm64v8" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The architecture this cdq binary runs on, if it is one cdq deploys to.
    pub fn host() -> Option<Arch> {
        Arch::from_any(std::env::consts::ARCH)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_dependencies_first() {
        for (i, s) in Service::ALL.iter().enumerate() {
            for d in s.depends_on() {
                let j = Service::ALL.iter().position(|x| x == d).unwrap();
                assert!(j < i, "{d} must come before {s}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
        }
        assert_eq!(Service::from_name("mongo"), None);
    }

    #[test]
    fn arch_aliases() {
        assert_eq!(Arch::from_any("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::from_any("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::from_any("sparc"), None);
    }
}
