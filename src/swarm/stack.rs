//! The Swarm deploy kit: the stack file (`templates/stack.yaml.j2`), the per-cluster configs
//! (`templates/swarm/*.j2` → `confd/swarm/`), the single-host configs the stack reuses
//! (`confd/<service>/` of mysql, elasticsearch, prometheus, grafana), and `.env`; and the
//! stack file parsed into [`Stack`], the subset cdq deploys through the Engine API.
//!
//! Pure: text in, text or values out. Must not: touch the engine or the disk (the kit's
//! `write` does), print, or decide the host IP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::CdqError;
use crate::interpolate::{self, Vars};
use crate::render::{self, File, Input};
use crate::services::{Arch, Service};
use crate::settings::parse_duration;

/// The Sentinel name of the redis master (what clients ask Sentinel for).
pub const REDIS_MASTER_NAME: &str = "cdq";
/// The node label the stack's placement constraints read.
pub const SLOT_LABEL: &str = "cdq.slot";
/// The label `docker stack deploy` puts on what it creates; cdq sets it too, so `docker
/// stack ls|ps|rm` see a stack cdq deployed.
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// The catalogue service a stack service belongs to (`kafka2` → kafka, `sentinel1` → redis),
/// for its deadline, memory and host needs.
pub fn base_service(short: &str) -> Option<Service> {
    let stem = short.trim_end_matches(|c: char| c.is_ascii_digit());
    match stem {
        "redis-replica" | "sentinel" => Some(Service::Redis),
        s => Service::from_name(s),
    }
}

/// The slot a service is pinned to by its placement constraint (`node.labels.cdq.slot ==
/// 2` → 2); None when Swarm may put it on any node.
pub fn pinned_slot(def: &ServiceDef) -> Option<usize> {
    let prefix = format!("node.labels.{SLOT_LABEL}");
    def.constraints.iter().find_map(|c| {
        let rest = c.replace(' ', "");
        rest.strip_prefix(&prefix)?.strip_prefix("==")?.parse().ok()
    })
}

pub fn stack_file_name(arch: Arch) -> String {
    format!("docker-stack.{arch}.yaml")
}

/// Services whose single-host config templates the stack mounts unchanged; the others have
/// cluster versions under `templates/swarm/`.
const REUSED_CONFD: [Service; 4] = [
    Service::Mysql,
    Service::Elasticsearch,
    Service::Prometheus,
    Service::Grafana,
];

/// The swarm templates each service needs.
fn swarm_templates(s: Service) -> &'static [&'static str] {
    match s {
        Service::Redis => &["redis.conf.j2", "sentinel.conf.j2"],
        Service::Zookeeper => &["zoo.cfg.j2"],
        Service::Kafka => &["kafka.properties.j2"],
        Service::Server => &["server.yml.j2"],
        Service::Ucenter => &["ucenter.yml.j2"],
        _ => &[],
    }
}

/// The KRaft cluster id every kafka node formats its storage with: 16 bytes from the
/// project name, base64url without padding (22 characters), as `kafka-storage random-uuid`.
pub fn kafka_cluster_id(project: &str) -> String {
    let d = Sha256::digest(format!("cdq-kafka-cluster:{project}").as_bytes());
    base64url(&d[..16])
}

fn base64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Swarm config and secret objects are immutable: the name carries a hash of the content,
/// so a changed file becomes a new object and the service is updated to it. Names stay
/// within Swarm's 64 characters.
fn object_name(project: &str, rel: &str, contents: &str) -> String {
    let mut h = Sha256::new();
    h.update(rel.as_bytes());
    h.update([0]);
    h.update(contents.as_bytes());
    let hash = hex::encode(&h.finalize()[..6]);
    let stem: String = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().replace(['.', ' '], "-"))
        .unwrap_or_default();
    let mut name = format!("{project}_{stem}_{hash}");
    if name.len() > 64 {
        name = format!("{}_{hash}", &project[..project.len().min(50)]);
    }
    name
}

fn key_of(rel: &str) -> String {
    rel.trim_start_matches("confd/")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Renders the Swarm deploy kit. Pure: reads only its input and the assets.
pub fn render(i: &Input) -> anyhow::Result<Vec<File>> {
    let s = i.settings;
    let mut env = render::environment();
    let mut jobs: Vec<(String, PathBuf, Option<Service>)> = Vec::new();
    for svc in &s.services {
        if REUSED_CONFD.contains(svc) {
            for rel in i.assets.list("confd", svc.name()) {
                let out = rel.strip_suffix(".j2").unwrap_or(&rel).to_string();
                jobs.push((
                    format!("confd/{rel}"),
                    PathBuf::from("confd").join(out),
                    Some(*svc),
                ));
            }
        }
        for t in swarm_templates(*svc) {
            jobs.push((
                format!("templates/swarm/{t}"),
                PathBuf::from("confd/swarm").join(t.trim_end_matches(".j2")),
                Some(*svc),
            ));
        }
    }
    let mut sources = Vec::new();
    for (name, _, _) in &jobs {
        let (top, rel) = name
            .split_once('/')
            .expect("asset names have a top directory");
        sources.push(i.assets.read(top, rel)?);
    }
    for ((name, _, _), src) in jobs.iter().zip(&sources) {
        if name.ends_with(".j2") {
            render::add_template(&mut env, name, src.clone())?;
        }
    }
    for t in ["templates/stack.yaml.j2", "templates/env.j2"] {
        let rel = t.strip_prefix("templates/").expect("a template path");
        render::add_template(&mut env, t, i.assets.read("templates", rel)?)?;
    }

    let members: Vec<usize> = (1..=crate::settings::CLUSTER_NODES).collect();
    let mut ctx = render::context(i);
    ctx["swarm"] = json!(true);
    ctx["members"] = json!(members);
    ctx["redis_master_name"] = json!(REDIS_MASTER_NAME);
    ctx["kafka_cluster_id"] = json!(kafka_cluster_id(&s.project));

    let mut files = Vec::new();
    for ((name, out, service), src) in jobs.into_iter().zip(sources) {
        let contents = if name.ends_with(".j2") {
            render::render_one(&env, &name, &ctx)?
        } else {
            src
        };
        let secret = i
            .secrets
            .values()
            .any(|v| !v.is_empty() && contents.contains(v));
        let owner = service.filter(|_| secret).map(|s| i.catalog.images[&s].uid);
        files.push(File {
            rel: out,
            contents,
            secret,
            owner,
        });
    }

    // What the stack mounts: one config (or secret, when it holds a password) per file.
    let mut by_path = serde_json::Map::new();
    let mut stack_files = Vec::new();
    for f in &files {
        let rel = f.rel.to_string_lossy().to_string();
        let entry = json!({
            "key": key_of(&rel),
            "name": object_name(&s.project, &rel, &f.contents),
            "path": rel,
            "secret": f.secret,
            "uid": f.owner.unwrap_or(0),
        });
        by_path.insert(rel.clone(), entry.clone());
        stack_files.push(entry);
    }
    let grafana_files: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| {
            let rel = f.rel.to_string_lossy().to_string();
            let tail = rel.strip_prefix("confd/grafana/")?;
            let target = if let Some(p) = tail.strip_prefix("provisioning/") {
                format!("/etc/grafana/provisioning/{p}")
            } else {
                format!("/etc/grafana/{tail}")
            };
            Some((rel, target))
        })
        .collect();
    ctx["files_by_path"] = serde_json::Value::Object(by_path);
    ctx["stack_files"] = json!(stack_files);
    ctx["grafana_files"] = json!(grafana_files);
    ctx["volumes"] = json!(volumes(&s.services));

    files.push(File {
        rel: PathBuf::from(stack_file_name(i.arch)),
        contents: render::render_one(&env, "templates/stack.yaml.j2", &ctx)?,
        secret: false,
        owner: None,
    });
    files.push(File {
        rel: PathBuf::from(".env"),
        contents: render::render_one(&env, "templates/env.j2", &ctx)?,
        secret: true,
        owner: None,
    });
    Ok(files)
}

/// The named volumes the stack declares (data stays in them, on the node they are on).
fn volumes(services: &std::collections::BTreeSet<Service>) -> Vec<String> {
    let mut v = Vec::new();
    for s in services {
        match s {
            Service::Mysql => v.push("mysql-data".to_string()),
            Service::Redis => v.extend(["redis-data".to_string(), "redis-replica-data".into()]),
            Service::Zookeeper => {
                for i in 1..=crate::settings::CLUSTER_NODES {
                    v.push(format!("zookeeper{i}-data"));
                    v.push(format!("zookeeper{i}-datalog"));
                }
            }
            Service::Kafka => {
                for i in 1..=crate::settings::CLUSTER_NODES {
                    v.push(format!("kafka{i}-data"));
                }
            }
            Service::Elasticsearch => v.push("elasticsearch-data".into()),
            Service::Prometheus => v.push("prometheus-data".into()),
            Service::Grafana => v.push("grafana-data".into()),
            Service::Ucenter => v.push("ucenter-logs".into()),
            Service::Server => v.push("server-logs".into()),
        }
    }
    v
}

// ---- the stack file, parsed: the subset cdq renders and deploys ----

#[derive(Debug, Clone, Deserialize)]
pub struct StackFile {
    pub services: BTreeMap<String, ServiceFile>,
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkFile>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeFile>>,
    #[serde(default)]
    pub configs: Option<BTreeMap<String, ObjectFile>>,
    #[serde(default)]
    pub secrets: Option<BTreeMap<String, ObjectFile>>,
    #[allow(dead_code)]
    version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceFile {
    pub image: String,
    pub hostname: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub configs: Vec<FileRef>,
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    pub healthcheck: Option<HealthFile>,
    pub stop_grace_period: Option<String>,
    pub deploy: DeployFile,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileRef {
    pub source: String,
    pub target: String,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthFile {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: u64,
    pub start_period: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeployFile {
    pub replicas: u64,
    #[allow(dead_code)]
    pub endpoint_mode: Option<String>,
    pub placement: Option<PlacementFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlacementFile {
    #[serde(default)]
    pub constraints: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortFile {
    pub target: u16,
    pub published: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkFile {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VolumeFile {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObjectFile {
    pub name: String,
    pub file: String,
}

/// One service of the stack, ready for the engine: names are the full Swarm names
/// (`<project>_<service>`), durations parsed, files read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    /// The stack's name for it (`kafka1`).
    pub short: String,
    pub image: String,
    pub hostname: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// (volume name, target)
    pub volumes: Vec<(String, String)>,
    pub files: Vec<Mount>,
    pub health: Option<Health>,
    pub stop_grace: Option<Duration>,
    pub replicas: u64,
    pub constraints: Vec<String>,
    /// (published, target), published on the node that runs the task.
    pub ports: Vec<(u16, u16)>,
    pub depends_on: Vec<String>,
}

/// A config or secret object mounted as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub object: String,
    pub secret: bool,
    pub target: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u64,
    pub start_period: Duration,
}

/// A config or secret object: its name and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub secret: bool,
    pub data: Vec<u8>,
}

/// The stack as cdq deploys it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub network: String,
    pub services: Vec<ServiceDef>,
    pub objects: Vec<Object>,
    pub volumes: Vec<String>,
}

impl Stack {
    pub fn full_name(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }
}

fn dur(s: &str, what: &str) -> Result<Duration, CdqError> {
    parse_duration(s).map_err(|m| CdqError::usage(format!("stack file: {what}: {m}")))
}

/// Parses the stack file text (after `${...}` interpolation with `vars`); `dir` anchors
/// the `file:` paths of configs and secrets, `read` reads them.
pub fn parse(
    name: &str,
    text: &str,
    vars: &Vars,
    dir: &Path,
    read: impl Fn(&Path) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Stack> {
    let text = interpolate::interpolate(text, vars)
        .map_err(|m| CdqError::usage(format!("stack file: {m}")))?;
    let f: StackFile = crate::yaml::from_str(&text)
        .map_err(|e| CdqError::usage(format!("stack file: {}", e.message)))?;
    let mut objects = Vec::new();
    let mut object_names = BTreeMap::new();
    for (secret, map) in [(false, &f.configs), (true, &f.secrets)] {
        for (key, o) in map.iter().flatten() {
            let path = dir.join(&o.file);
            let data = read(&path)?;
            object_names.insert((secret, key.clone()), o.name.clone());
            objects.push(Object {
                name: o.name.clone(),
                secret,
                data,
            });
        }
    }
    let network = f
        .networks
        .keys()
        .next()
        .map(|n| format!("{name}_{n}"))
        .ok_or_else(|| CdqError::usage("stack file: no network"))?;
    let mut services = Vec::new();
    for (short, s) in &f.services {
        let mut files = Vec::new();
        for (secret, refs) in [(false, &s.configs), (true, &s.secrets)] {
            for r in refs {
                let object = object_names
                    .get(&(secret, r.source.clone()))
                    .ok_or_else(|| {
                        CdqError::usage(format!(
                            "stack file: service `{short}` mounts `{}`, which is not declared",
                            r.source
                        ))
                    })?
                    .clone();
                files.push(Mount {
                    object,
                    secret,
                    target: r.target.clone(),
                    uid: r.uid.clone().unwrap_or_else(|| "0".into()),
                    gid: r.gid.clone().unwrap_or_else(|| "0".into()),
                    mode: r.mode.unwrap_or(0o444),
                });
            }
        }
        let volumes = s
            .volumes
            .iter()
            .map(|v| {
                let (src, dst) = v.split_once(':').ok_or_else(|| {
                    CdqError::usage(format!("stack file: service `{short}`: volume `{v}`"))
                })?;
                Ok((format!("{name}_{src}"), dst.to_string()))
            })
            .collect::<Result<Vec<_>, CdqError>>()?;
        let health = match &s.healthcheck {
            None => None,
            Some(h) => Some(Health {
                test: h.test.clone(),
                interval: dur(&h.interval, "interval")?,
                timeout: dur(&h.timeout, "timeout")?,
                retries: h.retries,
                start_period: dur(&h.start_period, "start_period")?,
            }),
        };
        services.push(ServiceDef {
            short: short.clone(),
            image: s.image.clone(),
            hostname: s.hostname.clone(),
            command: s.command.clone(),
            env: s.environment.clone(),
            volumes,
            files,
            health,
            stop_grace: s
                .stop_grace_period
                .as_deref()
                .map(|g| dur(g, "stop_grace_period"))
                .transpose()?,
            replicas: s.deploy.replicas,
            constraints: s
                .deploy
                .placement
                .as_ref()
                .map(|p| p.constraints.clone())
                .unwrap_or_default(),
            ports: s.ports.iter().map(|p| (p.published, p.target)).collect(),
            depends_on: s.depends_on.clone(),
        });
        for d in &s.depends_on {
            if !f.services.contains_key(d) {
                return Err(CdqError::usage(format!(
                    "stack file: `{short}` depends on `{d}`, which is not a service"
                ))
                .into());
            }
        }
    }
    Ok(Stack {
        name: name.to_string(),
        network,
        services,
        objects,
        volumes: f.volumes.keys().map(|v| format!("{name}_{v}")).collect(),
    })
}

/// Start order: waves of services whose dependencies are all in earlier waves.
pub fn waves(stack: &Stack) -> Vec<Vec<String>> {
    let mut done: std::collections::BTreeSet<String> = Default::default();
    let mut left: Vec<&ServiceDef> = stack.services.iter().collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&ServiceDef>, Vec<&ServiceDef>) = left
            .into_iter()
            .partition(|s| s.depends_on.iter().all(|d| done.contains(d)));
        if ready.is_empty() {
            // A cycle: the parser checked names, so start what is left together.
            out.push(rest.iter().map(|s| s.short.clone()).collect());
            break;
        }
        for s in &ready {
            done.insert(s.short.clone());
        }
        out.push(ready.iter().map(|s| s.short.clone()).collect());
        left = rest;
    }
    out
}

/// A rendered and parsed stack of the built-in templates, for tests of the layers above.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::*;
    use crate::assets::Assets;
    use crate::catalog::Catalog;
    use crate::secrets::Secrets;
    use crate::settings::{self, Overrides, Settings};

    /// Settings for `target: swarm` on nodes a, b, c (`extra` appended to cdq.yaml), the
    /// amd64 catalogue of their image set, and every file rendered for them (with
    /// [`Secrets::fixed`]).
    pub fn rendered_files(extra: &str) -> (Settings, Catalog, Vec<crate::render::File>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cdq.yaml"),
            format!("target: swarm\ncluster:\n  nodes: [a, b, c]\n{extra}"),
        )
        .unwrap();
        let s = settings::load(
            dir.path(),
            &Overrides {
                dir: Some(dir.path().to_path_buf()),
                arch: Some(Arch::Amd64),
                ..Overrides::default()
            },
        )
        .unwrap();
        let assets = Assets::new(None);
        let catalog = Catalog::load(&assets, Arch::Amd64, &s.images, &s.versions).unwrap();
        let secrets = Secrets::fixed();
        let files = render(&Input {
            settings: &s,
            arch: Arch::Amd64,
            host_ip: "10.0.0.5".parse().unwrap(),
            timezone: "Etc/UTC",
            catalog: &catalog,
            secrets: &secrets,
            assets: &assets,
            relabel: false,
        })
        .unwrap();
        (s, catalog, files)
    }

    /// The contents of the rendered file at `rel`.
    pub fn text(files: &[crate::render::File], rel: &str) -> String {
        files
            .iter()
            .find(|f| f.rel == Path::new(rel))
            .unwrap_or_else(|| panic!("{rel} not rendered"))
            .contents
            .clone()
    }

    /// The stack of `files`, parsed as `cdq up` parses it (deploy directory `/d`).
    pub fn parsed(files: &[crate::render::File]) -> Stack {
        let vars = Vars::from_dotenv(&text(files, ".env"), []);
        parse(
            "cdq",
            &text(files, "docker-stack.amd64.yaml"),
            &vars,
            Path::new("/d"),
            |p| {
                let rel = p.strip_prefix("/d").unwrap();
                Ok(text(files, &rel.to_string_lossy()).into_bytes())
            },
        )
        .unwrap()
    }

    /// [`rendered_files`], parsed.
    pub fn rendered(extra: &str) -> (Settings, Catalog, Stack) {
        let (s, catalog, files) = rendered_files(extra);
        let stack = parsed(&files);
        (s, catalog, stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;

    /// The whole kit for three nodes: the stack parses back into what cdq deploys, every HA
    /// member pinned to its own slot, the stateful singletons on slot 1, dependencies in
    /// earlier waves, and no password in the stack file itself.
    #[test]
    fn the_stack_renders_and_parses_with_every_member_placed() {
        let (_, _, files) = testing::rendered_files("");
        let text = |rel: &str| testing::text(&files, rel);
        let stack_text = text("docker-stack.amd64.yaml");
        for v in Secrets::fixed().values() {
            assert!(!stack_text.contains(v), "a password in the stack file");
        }
        let stack = testing::parsed(&files);
        assert_eq!(stack.services.len(), 17);
        let slot = |short: &str| {
            stack
                .services
                .iter()
                .find(|s| s.short == short)
                .unwrap_or_else(|| panic!("no {short}"))
                .constraints
                .clone()
        };
        for i in 1..=3 {
            for m in ["kafka", "zookeeper", "sentinel"] {
                assert_eq!(
                    slot(&format!("{m}{i}")),
                    vec![format!("node.labels.cdq.slot == {i}")]
                );
            }
        }
        for single in ["mysql", "elasticsearch", "prometheus", "grafana"] {
            assert_eq!(slot(single), vec!["node.labels.cdq.slot == 1".to_string()]);
        }
        // The redis master on slot 3, so losing that worker is a Sentinel failover.
        assert_eq!(slot("redis"), vec!["node.labels.cdq.slot == 3".to_string()]);
        assert_eq!(
            slot("redis-replica"),
            vec!["node.labels.cdq.slot == 2".to_string()]
        );
        assert!(
            slot("server").is_empty(),
            "the server may move off a dead node"
        );
        let waves = waves(&stack);
        let wave_of = |s: &str| waves.iter().position(|w| w.iter().any(|x| x == s)).unwrap();
        assert!(wave_of("server") > wave_of("kafka3") && wave_of("server") > wave_of("mysql"));
        assert!(wave_of("sentinel1") > wave_of("redis-replica"));
        // server and ucenter find the redis master through the sentinels.
        for client in ["server", "ucenter"] {
            for i in 1..=3 {
                assert!(
                    wave_of(client) > wave_of(&format!("sentinel{i}")),
                    "{client}"
                );
            }
        }
        let server = text("confd/swarm/server.yml");
        assert!(
            server.contains("bootstrap-servers: kafka1:9092,kafka2:9092,kafka3:9092"),
            "{server}"
        );
        assert!(
            server.contains("connect-string: zookeeper1:2181,zookeeper2:2181,zookeeper3:2181"),
            "{server}"
        );
        assert!(
            server.contains("nodes: sentinel1:26379,sentinel2:26379,sentinel3:26379"),
            "{server}"
        );
        let kafka = text("confd/swarm/kafka.properties");
        assert!(
            kafka.contains("controller.quorum.voters=1@kafka1:9093,2@kafka2:9093,3@kafka3:9093\n"),
            "{kafka}"
        );
        // The password-holding files are secrets, the others configs.
        let secret_objects: Vec<&str> = stack
            .objects
            .iter()
            .filter(|o| o.secret)
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(
            secret_objects.len(),
            5,
            "init SQL, redis, sentinel, server, ucenter: {secret_objects:?}"
        );
    }

    #[test]
    fn kafka_cluster_ids_are_22_url_safe_characters() {
        let id = kafka_cluster_id("cdq");
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, kafka_cluster_id("other"));
    }

    #[test]
    fn object_names_fit_swarm_and_change_with_content() {
        let long = "p".repeat(60);
        let a = object_name(&long, "confd/swarm/zoo.cfg", "a");
        assert!(a.len() <= 64, "{a}");
        assert_ne!(
            object_name("cdq", "confd/x", "a"),
            object_name("cdq", "confd/x", "b")
        );
    }
}
