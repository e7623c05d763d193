//! Settings: `cdq.yaml`, then `CDQ_*` environment variables and flags on top, validated
//! and defaulted into one [`Settings`] value with absolute paths and `Duration`s.
//!
//! Pure apart from reading the settings file. It must not look at the host (that is
//! `facts`) nor decide the host IP or architecture when they are `auto`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::error::CdqError;
use crate::imageref::{self, Layout, Pins, Registry};
use crate::services::{Arch, Service};
use crate::yaml;

mod cluster;
pub use cluster::{CLUSTER_NODES, Cluster, ClusterFile, Endpoint};

/// Which image references the compose file uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSet {
    /// The upstream images for the host's architecture (`compose/<arch>.yaml`).
    Official,
    /// The local image kit (`scripts/build-local-images.sh`).
    Local,
    /// A private registry: every official reference rewritten under its prefix, keeping the
    /// upstream path unless `registry_layout: flat` (`--images PREFIX`, or `official` with
    /// `registry: PREFIX`).
    Registry(Registry),
    /// The local kit served from a registry (`local` with `registry: PREFIX`):
    /// `cdq-local/redis:2-amd64` -> `PREFIX/cdq-local/redis:2-amd64` (`PREFIX/redis:2-amd64`
    /// flat). How the tests fill a loopback registry exactly as a customer fills Harbor.
    LocalRegistry(Registry),
}

impl ImageSet {
    /// The registry the references point at, if any.
    pub fn registry(&self) -> Option<&Registry> {
        match self {
            ImageSet::Registry(r) | ImageSet::LocalRegistry(r) => Some(r),
            _ => None,
        }
    }

    /// The same set without its registry: where `cdq push` finds the images on this host.
    pub fn without_registry(&self) -> ImageSet {
        match self {
            ImageSet::LocalRegistry(_) => ImageSet::Local,
            ImageSet::Registry(_) => ImageSet::Official,
            other => other.clone(),
        }
    }
}

impl ImageSet {
    pub fn parse(text: &str) -> Result<ImageSet, String> {
        match text {
            "official" => Ok(ImageSet::Official),
            "local" => Ok(ImageSet::Local),
            "" => Err("the image set is empty".into()),
            p if p.contains(char::is_whitespace) || p.contains("://") => Err(format!(
                "`{p}` is not `official`, `local` or a registry prefix like `harbor.example.com:5000/cd`"
            )),
            p => Ok(ImageSet::Registry(Registry::from(p))),
        }
    }
}

impl fmt::Display for ImageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSet::Official => f.write_str("official"),
            ImageSet::Local => f.write_str("local"),
            ImageSet::Registry(r) => write!(f, "{r}"),
            ImageSet::LocalRegistry(r) => write!(f, "local from {r}"),
        }
    }
}

/// `auto` or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auto<T> {
    #[default]
    Auto,
    Is(T),
}

impl<T: Copy> Auto<T> {
    pub fn value(self) -> Option<T> {
        match self {
            Auto::Auto => None,
            Auto::Is(v) => Some(v),
        }
    }
}

impl<'de> Deserialize<'de> for Auto<IpAddr> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(Auto::Auto);
        }
        s.parse().map(Auto::Is).map_err(|_| {
            de::Error::custom(format!(
                "`{s}` is not an IP address (write one like `10.1.2.3`, or `auto`)"
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Auto<Arch> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(Auto::Auto);
        }
        Arch::from_any(&s).map(Auto::Is).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown architecture `{s}`, expected one of `amd64`, `arm64`, `auto`"
            ))
        })
    }
}

/// `seccomp:` in cdq.yaml: the engine's default seccomp profile, or none for the images that
/// call `clone3` (the workaround for Docker before 20.10.10, which answers it with EPERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seccomp {
    #[default]
    Default,
    Unconfined,
}

impl<'de> Deserialize<'de> for Seccomp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "default" => Ok(Seccomp::Default),
            "unconfined" => Ok(Seccomp::Unconfined),
            _ => Err(de::Error::custom(format!(
                "`{s}` is not a seccomp mode, expected `default` or `unconfined`"
            ))),
        }
    }
}

/// `selinux_relabel:` in cdq.yaml: whether bind mounts get `:z`. `auto` relabels when
/// SELinux is enforcing on the host where cdq renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Relabel {
    #[default]
    Auto,
    Always,
    Never,
}

impl<'de> Deserialize<'de> for Relabel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            B(bool),
            S(String),
        }
        match Form::deserialize(d)? {
            Form::B(true) => Ok(Relabel::Always),
            Form::B(false) => Ok(Relabel::Never),
            Form::S(s) if s == "auto" => Ok(Relabel::Auto),
            Form::S(s) => Err(de::Error::custom(format!(
                "`{s}` is not a relabel mode, expected `auto`, `true` or `false`"
            ))),
        }
    }
}

/// A size like `512m` or `1g`, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiB(pub u64);

impl MiB {
    pub fn parse(s: &str) -> Result<MiB, String> {
        let t = s.trim().to_ascii_lowercase();
        let (num, mult) = if let Some(n) = t.strip_suffix('g') {
            (n, 1024)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 1)
        } else {
            return Err(format!("`{s}` is not a size: write it like `512m` or `2g`"));
        };
        // checked: `18014398509481984g` parses as a u64 but overflows once in MiB.
        match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(n) if n > 0 => Ok(MiB(n)),
            _ => Err(format!("`{s}` is not a size: write it like `512m` or `2g`")),
        }
    }
}

impl<'de> Deserialize<'de> for MiB {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MiB::parse(&s).map_err(de::Error::custom)
    }
}

/// A duration like `90s`, `5m` or `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: write it like `90s`, `5m` or `1m30s`");
    let mut total = 0u64;
    let mut num = String::new();
    let mut seen = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        // checked: `5124095576030432h` fits a u64 but not once in seconds (found by
        // tests/fuzz_parsers.rs; it panicked in debug builds and wrapped in release).
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
        seen = true;
    }
    if !num.is_empty() || !seen || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Span).map_err(de::Error::custom)
    }
}

/// One optional value per service; unknown service names are rejected by serde with the
/// list of valid ones, so a typo gets a position and a suggestion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerService<T> {
    mysql: Option<T>,
    redis: Option<T>,
    zookeeper: Option<T>,
    kafka: Option<T>,
    elasticsearch: Option<T>,
    prometheus: Option<T>,
    grafana: Option<T>,
    ucenter: Option<T>,
    server: Option<T>,
}

impl<T> Default for PerService<T> {
    fn default() -> Self {
        PerService {
            mysql: None,
            redis: None,
            zookeeper: None,
            kafka: None,
            elasticsearch: None,
            prometheus: None,
            grafana: None,
            ucenter: None,
            server: None,
        }
    }
}

impl<T> PerService<T> {
    fn into_map(self) -> BTreeMap<Service, T> {
        [
            (Service::Mysql, self.mysql),
            (Service::Redis, self.redis),
            (Service::Zookeeper, self.zookeeper),
            (Service::Kafka, self.kafka),
            (Service::Elasticsearch, self.elasticsearch),
            (Service::Prometheus, self.prometheus),
            (Service::Grafana, self.grafana),
            (Service::Ucenter, self.ucenter),
            (Service::Server, self.server),
        ]
        .into_iter()
        .filter_map(|(s, v)| v.map(|v| (s, v)))
        .collect()
    }
}

/// Published host ports. Middleware without an entry here is not published at all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsFile {
    server: Option<u16>,
    ucenter: Option<u16>,
    grafana: Option<u16>,
    kafka: Option<u16>,
    prometheus: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeapFile {
    elasticsearch: Option<MiB>,
    kafka: Option<MiB>,
    server: Option<MiB>,
    ucenter: Option<MiB>,
}

/// `cdq.yaml` as written: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    project: Option<String>,
    data_dir: Option<PathBuf>,
    host_ip: Option<Auto<IpAddr>>,
    arch: Option<Auto<Arch>>,
    images: Option<String>,
    timezone: Option<String>,
    services: Option<Vec<String>>,
    versions: Option<PerService<String>>,
    image_refs: Option<PerService<String>>,
    registry: Option<String>,
    registry_layout: Option<String>,
    ports: Option<PortsFile>,
    heap: Option<HeapFile>,
    deadlines: Option<PerService<Span>>,
    seccomp: Option<Seccomp>,
    selinux_relabel: Option<Relabel>,
    /// The text it was parsed from, so a value refused later is reported at its line.
    #[serde(skip)]
    text: String,
    target: Option<Target>,
    cluster: Option<ClusterFile>,
}

/// Where the stack runs: this one Docker host (compose file, containers), or a Docker Swarm
/// cluster whose manager cdq talks to (stack file, services and tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Host,
    Swarm,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        match text {
            "host" => Ok(Target::Host),
            "swarm" => Ok(Target::Swarm),
            t => Err(format!("`{t}` is not a target: write `host` or `swarm`")),
        }
    }
}

/// Values from flags and `CDQ_*` variables (clap merges the two); they beat the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub project: Option<String>,
    pub images: Option<String>,
    /// `--registry` / `CDQ_REGISTRY`.
    pub registry: Option<String>,
    pub arch: Option<Arch>,
    pub data_dir: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub target: Option<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub server: u16,
    pub ucenter: u16,
    pub grafana: u16,
    pub kafka: u16,
    /// Prometheus is not published unless asked for.
    pub prometheus: Option<u16>,
}

/// Everything a command needs to know about what the user asked for, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub deploy_dir: PathBuf,
    /// The settings file and whether it existed (a missing default file is fine).
    pub config_path: PathBuf,
    pub config_found: bool,
    pub project: String,
    pub data_dir: PathBuf,
    pub host_ip: Option<IpAddr>,
    pub arch: Option<Arch>,
    pub images: ImageSet,
    pub timezone: Option<String>,
    pub services: BTreeSet<Service>,
    /// Per-service pins: a tag (`versions`) or a whole reference (`image_refs`).
    pub versions: Pins,
    pub ports: Ports,
    pub heap_mb: BTreeMap<Service, u64>,
    pub deadlines: BTreeMap<Service, Duration>,
    pub templates: Option<PathBuf>,
    pub seccomp: Seccomp,
    pub selinux_relabel: Relabel,
    pub target: Target,
    /// Set when `target` is `swarm`.
    pub cluster: Option<Cluster>,
}

impl Settings {
    pub fn deadline(&self, s: Service) -> Duration {
        self.deadlines
            .get(&s)
            .copied()
            .unwrap_or_else(|| s.default_deadline())
    }
}

pub const DEFAULT_PROJECT: &str = "cdq";
pub const SETTINGS_FILE: &str = "cdq.yaml";

/// Reads and resolves settings. `cwd` anchors relative paths given on the command line.
pub fn load(cwd: &Path, o: &Overrides) -> anyhow::Result<Settings> {
    let deploy_dir = absolute(cwd, o.dir.as_deref().unwrap_or(Path::new(".")));
    let (config_path, explicit) = match &o.config {
        Some(c) => (absolute(cwd, c), true),
        None => (deploy_dir.join(SETTINGS_FILE), false),
    };
    let (file, found) = match std::fs::read_to_string(&config_path) {
        Ok(text) => (parse_file(&config_path, &text)?, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            (FileSettings::default(), false)
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(CdqError::usage(format!(
                "cannot read settings file `{}`",
                config_path.display()
            ))));
        }
    };
    resolve(deploy_dir, config_path, found, file, o)
}

/// Parses `cdq.yaml` text; errors name the file, the line, the key and the closest valid name.
pub fn parse_file(path: &Path, text: &str) -> Result<FileSettings, CdqError> {
    if text.trim().is_empty() {
        return Ok(FileSettings::default());
    }
    let mut f = yaml::from_str::<FileSettings>(text).map_err(|e| {
        // serde_yaml places errors raised by our own value parsers at the document start;
        // find the line that holds the offending value instead.
        let line = match (e.line, first_quoted(&e.message)) {
            (Some(1), Some(v)) => value_line(text, v).or(e.line),
            (l, _) => l,
        };
        let at = match line {
            Some(l) => format!("`{}` line {l}", path.display()),
            None => format!("`{}`", path.display()),
        };
        let (message, hint) = explain_serde(&e.message);
        let err = CdqError::usage(format!("{at}: {message}"));
        match hint {
            Some(h) => err.hint(h),
            None => err.hint(format!(
                "every setting is listed in the README; fix `{}` and run again",
                path.display()
            )),
        }
    })?;
    f.text = text.to_string();
    Ok(f)
}

/// The 1-based line of a dotted key (`ports.server`) in YAML block text: each segment must
/// be found indented below the one before it.
pub fn key_line(text: &str, dotted: &str) -> Option<usize> {
    let segs: Vec<&str> = dotted.split('.').collect();
    let mut want = 0;
    let mut parent_indent: Option<usize> = None;
    for (i, l) in text.lines().enumerate() {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = l.len() - body.len();
        if let Some(p) = parent_indent
            && indent <= p
        {
            // Left the parent's block before finding the child.
            return None;
        }
        let key = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if key == segs[want] && body.contains(':') {
            want += 1;
            if want == segs.len() {
                return Some(i + 1);
            }
            parent_indent = Some(indent);
            // A flow mapping on the same line (`ports: { server: 1 }`): the child is here.
            if body.contains('{') && body.contains(&format!("{}:", segs[want])) {
                return Some(i + 1);
            }
        }
    }
    None
}

pub(crate) fn first_quoted(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let end = msg[start..].find('`')? + start;
    Some(&msg[start..end])
}

/// The 1-based line whose value (after `key:`) is `value`.
fn value_line(text: &str, value: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.split_once(':')
                .is_some_and(|(_, v)| v.trim().trim_matches(['"', '\'']) == value)
        })
        .map(|i| i + 1)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into our copy and a
/// did-you-mean hint.
pub(crate) fn explain_serde(msg: &str) -> (String, Option<String>) {
    for (needle, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(start) = msg.find(needle) else {
            continue;
        };
        let rest = &msg[start + needle.len()..];
        let Some(end) = rest.find('`') else { continue };
        let bad = &rest[..end];
        let valid: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
        let prefix = msg[..start].trim_end_matches([':', ' ']);
        let scope = if prefix.is_empty() {
            String::new()
        } else {
            format!(" in `{prefix}`")
        };
        let message = format!("unknown {what} `{bad}`{scope}");
        let hint = match closest(bad, &valid) {
            Some(c) => format!(
                "did you mean `{c}`? valid {what}s here: {}",
                valid.join(", ")
            ),
            None => format!("valid {what}s here: {}", valid.join(", ")),
        };
        return (message, Some(hint));
    }
    (msg.to_string(), None)
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `p` made absolute against `base` and cleaned lexically (`.` and `..` removed) without
/// touching the disk: the path may not exist yet.
pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Project names follow docker compose: lowercase letters, digits, `-` and `_`, starting
/// with a letter or digit.
pub fn validate_project(name: &str) -> Result<(), CdqError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CdqError::usage(format!("project name `{name}` is not valid"))
            .hint("use lowercase letters, digits, `-` and `_`, starting with a letter or digit (as docker compose does)"))
    }
}

fn resolve(
    deploy_dir: PathBuf,
    config_path: PathBuf,
    config_found: bool,
    mut f: FileSettings,
    o: &Overrides,
) -> anyhow::Result<Settings> {
    let text = std::mem::take(&mut f.text);
    let in_file = |key: &str| match key_line(&text, key) {
        Some(l) => format!("`{}` line {l}: `{key}`", config_path.display()),
        None => format!("`{}`: `{key}`", config_path.display()),
    };
    // Paths become bind mounts (`SOURCE:TARGET`) and lines of the rendered compose file,
    // where `$` interpolates: refuse what Docker cannot mount or compose would rewrite.
    let mountable = |what: String, p: &Path| -> Result<(), CdqError> {
        let t = p.to_string_lossy();
        let bad = if t.trim().is_empty() {
            Some("is empty".to_string())
        } else {
            t.chars()
                .find(|c| matches!(c, ':' | ',' | '$' | '\n' | '\r' | '"'))
                .map(|c| {
                    format!(
                        "`{t}` holds `{}`, which a Docker bind mount or the compose file cannot carry",
                        c.escape_default()
                    )
                })
        };
        match bad {
            None => Ok(()),
            Some(b) => Err(CdqError::usage(format!("{what}: {b}"))
                .hint("choose a path of letters, digits, `/`, `.`, `-` and `_`")),
        }
    };
    if let Some(d) = &o.dir {
        mountable("`--dir` (or `CDQ_DIR`)".into(), d)?;
    }
    match (&o.data_dir, &f.data_dir) {
        (Some(d), _) => mountable("`--data-dir` (or `CDQ_DATA_DIR`)".into(), d)?,
        (None, Some(d)) => mountable(in_file("data_dir"), d)?,
        (None, None) => {}
    }
    // Checked even when `-p` overrides it: a bad value in the file is refused wherever.
    if let Some(p) = &f.project {
        validate_project(p).map_err(|e| CdqError {
            message: format!("{}: {}", in_file("project"), e.message),
            ..e
        })?;
    }

    let project = o
        .project
        .clone()
        .or(f.project)
        .unwrap_or_else(|| DEFAULT_PROJECT.to_string());
    validate_project(&project)?;

    let data_dir = match (&o.data_dir, &f.data_dir) {
        (Some(d), _) => absolute(&std::env::current_dir().unwrap_or_default(), d),
        (None, Some(d)) => absolute(&deploy_dir, d),
        (None, None) => deploy_dir.join("data"),
    };

    let images_text = o
        .images
        .clone()
        .or(f.images)
        .unwrap_or_else(|| "official".into());
    let mut images = ImageSet::parse(&images_text).map_err(|m| {
        CdqError::usage(format!("image set: {m}"))
            .hint("write `official`, `local` or your mirror's prefix")
    })?;
    if let Some(prefix) = o.registry.clone().or(f.registry) {
        let problem = match ImageSet::parse(&prefix) {
            Ok(ImageSet::Registry(_)) => None,
            Ok(_) => Some(format!("`{prefix}` is an image set, not a registry prefix")),
            Err(m) => Some(m),
        };
        if let Some(m) = problem {
            return Err(CdqError::usage(format!("registry: {m}"))
                .hint("write the registry and project, like `harbor.example.com:5000/cd`")
                .into());
        }
        let r = Registry::from(prefix.as_str());
        images = match images {
            ImageSet::Official => ImageSet::Registry(r),
            ImageSet::Local => ImageSet::LocalRegistry(r),
            ImageSet::Registry(old) | ImageSet::LocalRegistry(old) => {
                return Err(CdqError::usage(format!(
                    "two registries: the image set `{old}` and the registry `{}`",
                    r.prefix
                ))
                .hint(
                    "`--images PREFIX` is the older spelling of `--images official --registry PREFIX`: give one of them",
                )
                .into());
            }
        };
    }
    if let Some(text) = &f.registry_layout {
        let layout = Layout::parse(text).ok_or_else(|| {
            CdqError::usage(format!(
                "{}: `{text}` is not a registry layout",
                in_file("registry_layout")
            ))
            .hint("write `upstream` (a mirror or proxy cache of Docker Hub) or `flat` (a registry filled by hand)")
        })?;
        if let ImageSet::Registry(r) | ImageSet::LocalRegistry(r) = &mut images {
            r.layout = layout;
        }
    }

    let services = match f.services {
        None => Service::ALL.into_iter().collect::<BTreeSet<_>>(),
        Some(list) if list.is_empty() => {
            return Err(CdqError::usage(format!(
                "{}: the list is empty, so there is nothing to run",
                in_file("services")
            ))
            .hint("list the services to run, or remove `services` to run all nine")
            .into());
        }
        Some(list) => {
            let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
            let mut set = BTreeSet::new();
            for name in &list {
                let s = Service::from_name(name).ok_or_else(|| {
                    let e = CdqError::usage(format!(
                        "{}: unknown service `{name}`",
                        in_file("services")
                    ));
                    match closest(name, &names) {
                        Some(c) => e.hint(format!(
                            "did you mean `{c}`? services: {}",
                            names.join(", ")
                        )),
                        None => e.hint(format!("services: {}", names.join(", "))),
                    }
                })?;
                if !set.insert(s) {
                    return Err(CdqError::usage(format!(
                        "{}: `{name}` is listed twice",
                        in_file("services")
                    ))
                    .hint("list each service once")
                    .into());
                }
            }
            set
        }
    };
    for s in &services {
        for d in s.depends_on() {
            if !services.contains(d) {
                return Err(CdqError::usage(format!(
                    "{}: `{s}` needs `{d}`, which is not in the list",
                    in_file("services")
                ))
                .hint(format!("add `{d}` to `services`, or remove `{s}`"))
                .into());
            }
        }
    }

    let tags = f.versions.unwrap_or_default().into_map();
    for (s, v) in &tags {
        // Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
        let tag_ok = v.len() <= 128
            && v.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(CdqError::usage(format!(
                "{}: `{v}` is not an image tag",
                in_file(&format!("versions.{s}"))
            ))
            .hint(format!(
                "write only the tag, like `8.4.10`; to replace the whole reference write it under `image_refs.{s}`"
            ))
            .into());
        }
    }
    let refs = f.image_refs.unwrap_or_default().into_map();
    for (s, r) in &refs {
        if let Some(problem) = imageref::reference_problem(r) {
            return Err(CdqError::usage(format!(
                "{}: {problem}",
                in_file(&format!("image_refs.{s}"))
            ))
            .hint(
                "write a whole reference with its tag, like `harbor.example.com/dba/mysql:8.4.10`",
            )
            .into());
        }
        if tags.contains_key(s) {
            return Err(CdqError::usage(format!(
                "{}: `{s}` also has `versions.{s}`",
                in_file(&format!("image_refs.{s}"))
            ))
            .hint(format!("keep one: the tag goes inside `image_refs.{s}`"))
            .into());
        }
    }
    let versions = Pins { tags, refs };

    let p = f.ports.unwrap_or_default();
    let ports = Ports {
        server: p.server.unwrap_or(8080),
        ucenter: p.ucenter.unwrap_or(8081),
        grafana: p.grafana.unwrap_or(3000),
        kafka: p.kafka.unwrap_or(9094),
        prometheus: p.prometheus,
    };
    let mut seen = BTreeMap::new();
    for (name, port) in [
        ("server", Some(ports.server)),
        ("ucenter", Some(ports.ucenter)),
        ("grafana", Some(ports.grafana)),
        ("kafka", Some(ports.kafka)),
        ("prometheus", ports.prometheus),
    ] {
        let Some(port) = port else { continue };
        if port == 0 {
            return Err(CdqError::usage(format!(
                "{}: port 0 cannot be published",
                in_file(&format!("ports.{name}"))
            ))
            .into());
        }
        if let Some(other) = seen.insert(port, name) {
            return Err(CdqError::usage(format!(
                "{}: port {port} is also given to `{other}`",
                in_file(&format!("ports.{name}"))
            ))
            .hint("give every published service its own port")
            .into());
        }
    }

    let h = f.heap.unwrap_or_default();
    let mut heap_mb = BTreeMap::new();
    for (s, v) in [
        (Service::Elasticsearch, h.elasticsearch),
        (Service::Kafka, h.kafka),
        (Service::Server, h.server),
        (Service::Ucenter, h.ucenter),
    ] {
        let mb = v.map(|m| m.0).or(s.default_heap_mb()).unwrap_or(512);
        heap_mb.insert(s, mb);
    }

    let deadlines: BTreeMap<Service, Duration> = f
        .deadlines
        .unwrap_or_default()
        .into_map()
        .into_iter()
        .map(|(s, d)| (s, d.0))
        .collect();

    let host_ip = f.host_ip.and_then(Auto::value);
    let arch = o.arch.or(f.arch.and_then(Auto::value));

    if let Some(tz) = &f.timezone
        && (tz.is_empty()
            || tz.starts_with('/')
            // IANA names and `UTC+8`-style offsets; `$` would interpolate in the compose file.
            || !tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')))
    {
        return Err(CdqError::usage(format!(
            "{}: `{tz}` is not a timezone name",
            in_file("timezone")
        ))
        .hint("write an IANA name like `Asia/Shanghai`")
        .into());
    }

    let target = o.target.or(f.target).unwrap_or_default();
    let cluster = match target {
        Target::Host => None,
        Target::Swarm => Some(cluster::resolve(f.cluster, &in_file)?),
    };

    Ok(Settings {
        target,
        cluster,
        deploy_dir,
        config_path,
        config_found,
        project,
        data_dir,
        host_ip,
        arch,
        images,
        timezone: f.timezone,
        services,
        versions,
        ports,
        heap_mb,
        deadlines,
        templates: o.templates.clone(),
        seccomp: f.seccomp.unwrap_or_default(),
        selinux_relabel: f.selinux_relabel.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
