//! The project model: a compose file parsed into what cdq executes. cdq runs exactly what it
//! rendered, so this parser is the single reader of the compose file. It accepts the subset
//! of the Compose Specification cdq renders (plus what users need for extra services);
//! anything else is refused naming the key, never silently ignored. Pure: the caller reads
//! the files and the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CdqError;
use crate::interpolate::{Vars, interpolate};
use crate::yaml::{self, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// Absolute host path.
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// SELinux relabelling: `z` (shared) or `Z` (private), as `:z` on the volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relabel: Option<char>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Healthcheck {
    /// `test: ["NONE"]`: the image's healthcheck switched off.
    pub fn is_disabled(&self) -> bool {
        self.test.first().map(String::as_str) == Some("NONE")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// One service, resolved: interpolated, paths absolute, durations parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub binds: Vec<Bind>,
    pub ports: Vec<Port>,
    pub depends_on: BTreeMap<String, Condition>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_grace_period: Option<Duration>,
    /// `security_opt` as written (`seccomp=unconfined`, `label=disable`); empty is left out
    /// of the config hash, so stacks rendered before it existed are not recreated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    /// The compose file's directory: relative paths in it are resolved against this.
    pub dir: PathBuf,
    pub services: BTreeMap<String, ServiceSpec>,
}

impl Project {
    /// The one network every service joins, named as docker compose names it.
    pub fn network(&self) -> String {
        format!("{}_default", self.name)
    }

    /// Services in waves: each wave depends only on earlier ones (ties by name). Starting
    /// runs them forward, stopping in reverse.
    pub fn start_waves(&self) -> Vec<Vec<&str>> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut waves = Vec::new();
        while done.len() < self.services.len() {
            let wave: Vec<&str> = self
                .services
                .iter()
                .filter(|(name, s)| {
                    !done.contains(name.as_str())
                        && s.depends_on.keys().all(|d| done.contains(d.as_str()))
                })
                .map(|(name, _)| name.as_str())
                .collect();
            assert!(!wave.is_empty(), "cycles are rejected when parsing");
            done.extend(wave.iter().copied());
            waves.push(wave);
        }
        waves
    }

    /// Services in an order where dependencies come first (ties by name).
    pub fn start_order(&self) -> Vec<&str> {
        self.start_waves().into_iter().flatten().collect()
    }
}

// ---- raw shapes, as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[allow(dead_code)]
    version: Option<String>,
    name: Option<String>,
    services: BTreeMap<String, RawService>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrList {
    Str(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EnvForm {
    Map(BTreeMap<String, Option<ScalarString>>),
    List(Vec<String>),
}

/// Compose allows numbers and booleans where strings are meant (`ZOO_MY_ID: 1`).
#[derive(Deserialize)]
#[serde(untagged)]
enum ScalarString {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl ScalarString {
    fn into_string(self) -> String {
        match self {
            ScalarString::S(s) => s,
            ScalarString::I(i) => i.to_string(),
            ScalarString::F(f) => f.to_string(),
            ScalarString::B(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DependsForm {
    List(Vec<String>),
    Map(BTreeMap<String, RawDepends>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepends {
    condition: Option<Condition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthcheck {
    test: Option<StrOrList>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    start_period: Option<String>,
    disable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UlimitForm {
    One(i64),
    Pair { soft: i64, hard: i64 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: String,
    command: Option<StrOrList>,
    entrypoint: Option<StrOrList>,
    environment: Option<EnvForm>,
    volumes: Option<Vec<String>>,
    ports: Option<Vec<String>>,
    depends_on: Option<DependsForm>,
    healthcheck: Option<RawHealthcheck>,
    restart: Option<String>,
    ulimits: Option<BTreeMap<String, UlimitForm>>,
    user: Option<String>,
    working_dir: Option<String>,
    hostname: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_grace_period: Option<String>,
    security_opt: Option<Vec<String>>,
}

// ---- parsing -----------------------------------------------------------------------------

fn err(file: &Path, what: impl std::fmt::Display) -> CdqError {
    CdqError::usage(format!("`{}`: {what}", file.display()))
}

fn interpolate_value(v: &mut Value, vars: &Vars, path: &str) -> Result<(), String> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, vars).map_err(|e| format!("{path}: {e}"))?;
        }
        Value::Sequence(seq) => {
            for (i, x) in seq.iter_mut().enumerate() {
                interpolate_value(x, vars, &format!("{path}[{i}]"))?;
            }
        }
        Value::Mapping(m) => {
            for (k, x) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_value(x, vars, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses a Go-style duration as compose writes them (`5s`, `1m30s`, `500ms`, `1h`).
pub fn parse_compose_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "us" => 0.000_001,
            _ => return None,
        };
        // `try_`: 20 digits of seconds, or a sum past u64 seconds, is an error, not a panic.
        total = total.checked_add(Duration::try_from_secs_f64(n * unit).ok()?)?;
        rest = &rest[u_end..];
    }
    Some(total)
}

fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed quote in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().unwrap_or('\\')),
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed quote in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().unwrap_or('\\'));
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn parse_port(s: &str) -> Result<Port, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((a, p)) if p == "tcp" || p == "udp" => (a, p.to_string()),
        Some(_) => return Err(format!("port `{s}`: protocol must be `tcp` or `udp`")),
        None => (s, "tcp".to_string()),
    };
    // `ip:host:container`, `host:container`, IPv6 as `[::1]:host:container`.
    let (ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| format!("port `{s}`: bad IPv6 address"))?;
        (Some(ip.to_string()), r)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            3 => (Some(parts[0].to_string()), &spec[parts[0].len() + 1..]),
            2 => (None, spec),
            _ => {
                return Err(format!(
                    "port `{s}`: write it as `HOST:CONTAINER` or `IP:HOST:CONTAINER`"
                ));
            }
        }
    };
    let (h, c) = rest.split_once(':').ok_or_else(|| {
        format!("port `{s}`: write it as `HOST:CONTAINER` or `IP:HOST:CONTAINER`")
    })?;
    let num = |x: &str| {
        x.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port `{s}`: `{x}` is not a port"))
    };
    Ok(Port {
        host_ip: ip,
        host_port: num(h)?,
        container_port: num(c)?,
        protocol,
    })
}

fn parse_bind(s: &str, dir: &Path) -> Result<Bind, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, target, mode) = match parts.as_slice() {
        [src, target] => (*src, *target, None),
        [src, target, mode] => (*src, *target, Some(*mode)),
        _ => {
            return Err(format!(
                "volume `{s}`: write it as `HOST_PATH:CONTAINER_PATH[:ro]`"
            ));
        }
    };
    if !(src.starts_with('/') || src.starts_with('.') || src.starts_with('~')) {
        return Err(format!(
            "volume `{s}`: named volumes are not supported; use a host path like `./data/{src}`"
        ));
    }
    // Modes combine with commas as compose writes them (`ro,z`): one of ro/rw, one of z/Z.
    let (mut read_only, mut relabel) = (None, None);
    for m in mode
        .map(|m| m.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let slot_taken = match m {
            "ro" | "rw" => read_only.replace(m == "ro").is_some(),
            "z" | "Z" => relabel.replace(if m == "z" { 'z' } else { 'Z' }).is_some(),
            _ => {
                return Err(format!(
                    "volume `{s}`: mode `{m}` is not supported (use `ro` or `rw`, and `z` or `Z` to relabel for SELinux)"
                ));
            }
        };
        if slot_taken {
            return Err(format!(
                "volume `{s}`: mode `{}` says twice how to mount it",
                mode.unwrap_or_default()
            ));
        }
    }
    let read_only = read_only.unwrap_or(false);
    if !target.starts_with('/') {
        return Err(format!("volume `{s}`: the container path must be absolute"));
    }
    let source = if let Some(rest) = src.strip_prefix("~/") {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
    } else {
        crate::settings::absolute(dir, Path::new(src))
    };
    Ok(Bind {
        source,
        target: target.to_string(),
        read_only,
        relabel,
    })
}

fn dur(
    file: &Path,
    field: &str,
    s: Option<String>,
    default: Duration,
) -> Result<Duration, CdqError> {
    match s {
        None => Ok(default),
        Some(s) => parse_compose_duration(&s).ok_or_else(|| {
            err(
                file,
                format!("`{field}`: `{s}` is not a duration (write `5s`, `1m30s`)"),
            )
        }),
    }
}

/// A key or value outside the supported subset, found after interpolation (so serde has no
/// position): named with the line it is first written on, a did-you-mean and the keys valid
/// where it stands.
fn shape_error(file: &Path, text: &str, serde_message: &str) -> CdqError {
    let subset = "cdq supports a subset of the compose format (the README lists it)";
    let (message, hint) = crate::settings::explain_serde(serde_message);
    let line = serde_message
        .find("unknown field `")
        .and_then(|i| crate::settings::first_quoted(&serde_message[i..]))
        .and_then(|key| {
            text.lines().position(|l| {
                let l = l.trim_start().trim_start_matches("- ");
                [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ]
                .iter()
                .any(|k| l.starts_with(k.as_str()))
            })
        });
    let (at, scope) = match line {
        Some(i) => (
            format!("`{}` line {}", file.display(), i + 1),
            parents(text, i),
        ),
        None => (format!("`{}`", file.display()), String::new()),
    };
    let scope = if scope.is_empty() || message.contains(" in `") {
        String::new()
    } else {
        format!(" in `{scope}`")
    };
    CdqError::usage(format!("{at}: {message}{scope}")).hint(match hint {
        Some(h) => format!("{subset}; {h}"),
        None => subset.to_string(),
    })
}

/// The dotted path of block-style keys enclosing line `i` (`services.app`), read from
/// indentation: enough to say where an unknown key stands.
fn parents(text: &str, i: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut want = indent(lines[i]);
    let mut path = Vec::new();
    for l in lines[..i].iter().rev() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || indent(l) >= want {
            continue;
        }
        want = indent(l);
        match t.strip_suffix(':') {
            Some(k) => path.push(k.trim_matches(['"', '\'']).to_string()),
            None => return String::new(),
        }
        if want == 0 {
            break;
        }
    }
    path.reverse();
    path.join(".")
}

/// Parses compose text. `file` is for messages, `dir` anchors relative paths, `default_name`
/// is used when the file has no `name`.
pub fn parse(
    file: &Path,
    dir: &Path,
    text: &str,
    vars: &Vars,
    default_name: &str,
) -> Result<Project, CdqError> {
    let mut value: Value = yaml::from_str(text).map_err(|e| match e.line {
        Some(l) => err(file, format!("line {l}: {}", e.message)),
        None => err(file, e.message),
    })?;
    interpolate_value(&mut value, vars, "").map_err(|e| {
        err(file, e).hint("set it in the environment or in `.env` beside the compose file (`cdq render` writes one)")
    })?;
    let raw: RawFile = yaml::from_value(value).map_err(|e| shape_error(file, text, &e.message))?;
    let name = raw.name.unwrap_or_else(|| default_name.to_string());
    // Name the file: `name:` may come from a user's `--compose FILE`, not cdq.yaml.
    crate::settings::validate_project(&name).map_err(|e| CdqError {
        message: format!("`{}`: `name`: {}", file.display(), e.message),
        ..e
    })?;

    let mut services = BTreeMap::new();
    for (sname, r) in raw.services {
        let at = |what: &str| format!("service `{sname}`: {what}");
        let bad = |m: String| err(file, at(&m));
        let environment = match r.environment {
            None => BTreeMap::new(),
            Some(EnvForm::Map(m)) => m
                .into_iter()
                .map(|(k, v)| (k, v.map(ScalarString::into_string).unwrap_or_default()))
                .collect(),
            Some(EnvForm::List(l)) => l
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv, String::new()),
                })
                .collect(),
        };
        let list = |x: Option<StrOrList>| -> Result<Option<Vec<String>>, CdqError> {
            match x {
                None => Ok(None),
                Some(StrOrList::List(l)) => Ok(Some(l)),
                Some(StrOrList::Str(s)) => shell_split(&s).map(Some).map_err(bad),
            }
        };
        let command = list(r.command)?;
        let entrypoint = list(r.entrypoint)?;
        let binds = r
            .volumes
            .unwrap_or_default()
            .iter()
            .map(|v| parse_bind(v, dir))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let ports = r
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let depends_on = match r.depends_on {
            None => BTreeMap::new(),
            Some(DependsForm::List(l)) => l
                .into_iter()
                .map(|d| (d, Condition::ServiceStarted))
                .collect(),
            Some(DependsForm::Map(m)) => m
                .into_iter()
                .map(|(d, c)| (d, c.condition.unwrap_or(Condition::ServiceStarted)))
                .collect(),
        };
        let healthcheck = match r.healthcheck {
            None => None,
            Some(h) if h.disable == Some(true) => Some(Healthcheck {
                test: vec!["NONE".into()],
                interval: Duration::ZERO,
                timeout: Duration::ZERO,
                retries: 0,
                start_period: Duration::ZERO,
            }),
            Some(h) => {
                let test = match h.test {
                    None => return Err(bad("`healthcheck` needs a `test`".into())),
                    Some(StrOrList::Str(s)) => vec!["CMD-SHELL".to_string(), s],
                    Some(StrOrList::List(l)) => {
                        if !matches!(
                            l.first().map(String::as_str),
                            Some("CMD" | "CMD-SHELL" | "NONE")
                        ) {
                            return Err(bad(
                                "`healthcheck.test` must start with `CMD`, `CMD-SHELL` or `NONE`"
                                    .into(),
                            ));
                        }
                        l
                    }
                };
                Some(Healthcheck {
                    test,
                    interval: dur(
                        file,
                        "healthcheck.interval",
                        h.interval,
                        Duration::from_secs(30),
                    )?,
                    timeout: dur(
                        file,
                        "healthcheck.timeout",
                        h.timeout,
                        Duration::from_secs(30),
                    )?,
                    retries: h.retries.unwrap_or(3),
                    start_period: dur(
                        file,
                        "healthcheck.start_period",
                        h.start_period,
                        Duration::ZERO,
                    )?,
                })
            }
        };
        if let Some(rp) = &r.restart
            && !matches!(
                rp.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            )
            && !rp.starts_with("on-failure:")
        {
            return Err(bad(format!(
                "`restart: {rp}` is not one of `no`, `always`, `unless-stopped`, `on-failure`"
            )));
        }
        let ulimits = r
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|(k, u)| {
                let u = match u {
                    UlimitForm::One(n) => Ulimit { soft: n, hard: n },
                    UlimitForm::Pair { soft, hard } => Ulimit { soft, hard },
                };
                (k, u)
            })
            .collect();
        let stop_grace_period = match r.stop_grace_period {
            None => None,
            Some(s) => Some(dur(file, "stop_grace_period", Some(s), Duration::ZERO)?),
        };
        services.insert(
            sname.clone(),
            ServiceSpec {
                name: sname.clone(),
                image: r.image,
                command,
                entrypoint,
                environment,
                binds,
                ports,
                depends_on,
                healthcheck,
                restart: r.restart,
                ulimits,
                user: r.user,
                working_dir: r.working_dir,
                hostname: r.hostname,
                labels: r.labels.unwrap_or_default(),
                stop_grace_period,
                security_opt: r.security_opt.unwrap_or_default(),
            },
        );
    }
    // Dependencies must exist, and must not form a cycle.
    for s in services.values() {
        for (d, c) in &s.depends_on {
            let Some(dep) = services.get(d) else {
                return Err(err(
                    file,
                    format!(
                        "service `{}` depends on `{d}`, which is not defined",
                        s.name
                    ),
                ));
            };
            if *c == Condition::ServiceHealthy
                && dep
                    .healthcheck
                    .as_ref()
                    .is_none_or(Healthcheck::is_disabled)
            {
                return Err(err(
                    file,
                    format!(
                        "service `{}` waits for `{d}` to be healthy, but `{d}` has no healthcheck",
                        s.name
                    ),
                )
                .hint(format!(
                    "add a `healthcheck` to `{d}`, or use `condition: service_started`"
                )));
            }
        }
    }
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        s: &'a BTreeMap<String, ServiceSpec>,
        st: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<String> {
        match st.get(n) {
            Some(2) => return None,
            Some(1) => {
                path.push(n);
                let start = path.iter().position(|x| *x == n).unwrap_or(0);
                return Some(path[start..].join(" -> "));
            }
            _ => {}
        }
        st.insert(n, 1);
        path.push(n);
        for d in s[n].depends_on.keys() {
            if let Some(c) = visit(d, s, st, path) {
                return Some(c);
            }
        }
        path.pop();
        st.insert(n, 2);
        None
    }
    for n in services.keys() {
        if let Some(cycle) = visit(n, &services, &mut state, &mut Vec::new()) {
            return Err(err(file, format!("dependency cycle: {cycle}")));
        }
    }
    Ok(Project {
        name,
        dir: dir.to_path_buf(),
        services,
    })
}

/// Reads a compose file and the `.env` beside it, and parses it with the process environment.
pub fn load(file: &Path, default_name: &str) -> anyhow::Result<Project> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        anyhow::Error::new(e).context(
            CdqError::usage(format!("cannot read compose file `{}`", file.display()))
                .hint("run `cdq render` first, or pass an existing file with `--compose`"),
        )
    })?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let dotenv = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    let vars = Vars::from_dotenv(&dotenv, std::env::vars());
    Ok(parse(file, &dir, &text, &vars, default_name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Project, CdqError> {
        let vars = Vars::from_dotenv("PW=s3cret\n", []);
        parse(Path::new("/d/c.yaml"), Path::new("/d"), text, &vars, "demo")
    }

    #[test]
    fn relabel_modes_and_security_opt() {
        let pr = p(r#"
services:
  db:
    image: mysql:8
    security_opt: ["seccomp=unconfined"]
    volumes: ["./conf:/etc/my:ro,z", "./data/db:/var/lib/mysql:z", "./x:/x:Z"]
"#)
        .unwrap();
        let db = &pr.services["db"];
        assert_eq!(db.security_opt, vec!["seccomp=unconfined"]);
        let modes: Vec<(bool, Option<char>)> =
            db.binds.iter().map(|b| (b.read_only, b.relabel)).collect();
        assert_eq!(
            modes,
            vec![(true, Some('z')), (false, Some('z')), (false, Some('Z'))]
        );
        for bad in ["./a:/a:ro,rw", "./a:/a:z,Z", "./a:/a:shared"] {
            let text = format!("services:\n  a:\n    image: x\n    volumes: [\"{bad}\"]\n");
            assert!(p(&text).is_err(), "{bad} must be refused");
        }
        // A spec without either hashes as before they existed: no recreation on upgrade.
        let plain = p("services:\n  a:\n    image: x\n    volumes: [\"./c:/c:ro\"]\n").unwrap();
        let json = serde_json::to_string(&plain.services["a"]).unwrap();
        assert!(
            !json.contains("security_opt") && !json.contains("relabel"),
            "{json}"
        );
    }

    #[test]
    fn full_service() {
        let pr = p(r#"
services:
  db:
    image: mysql:8
    environment:
      PW: ${PW}
      N: 1
    volumes: ["./conf/my.cnf:/etc/my.cnf:ro", "./data/db:/var/lib/mysql"]
    ports: ["127.0.0.1:3306:3306", "8080:80/udp"]
    healthcheck:
      test: mysqladmin ping
      interval: 5s
      start_period: 1m30s
    ulimits:
      nofile: { soft: 1024, hard: 2048 }
      memlock: -1
    command: redis-server "/etc/a b.conf"
  app:
    image: app
    depends_on:
      db: { condition: service_healthy }
"#)
        .unwrap();
        let db = &pr.services["db"];
        assert_eq!(db.environment["PW"], "s3cret");
        assert_eq!(db.environment["N"], "1");
        assert_eq!(
            db.binds[0],
            Bind {
                source: "/d/conf/my.cnf".into(),
                target: "/etc/my.cnf".into(),
                read_only: true,
                relabel: None,
            }
        );
        assert_eq!(db.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(db.ports[1].protocol, "udp");
        let h = db.healthcheck.as_ref().unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL", "mysqladmin ping"]);
        assert_eq!(h.start_period, Duration::from_secs(90));
        assert_eq!(h.retries, 3);
        assert_eq!(db.ulimits["memlock"], Ulimit { soft: -1, hard: -1 });
        assert_eq!(
            db.command.as_ref().unwrap(),
            &vec!["redis-server", "/etc/a b.conf"]
        );
        assert_eq!(pr.start_order(), vec!["db", "app"]);
        assert_eq!(pr.network(), "demo_default");
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = p("services:\n  a:\n    image: x\n    privileged: true\n").unwrap_err();
        assert!(
            e.message
                .ends_with(" line 4: unknown key `privileged` in `services.a`"),
            "{}",
            e.message
        );
        let e = p("services:\n  a:\n    image: x\n    healtcheck: { test: [CMD, \"true\"] }\n")
            .unwrap_err();
        assert!(
            e.message
                .ends_with(" line 4: unknown key `healtcheck` in `services.a`"),
            "{}",
            e.message
        );
        let hint = e.hint.unwrap();
        assert!(
            hint.starts_with(
                "cdq supports a subset of the compose format (the README lists it); \
                 did you mean `healthcheck`? valid keys here: image, "
            ),
            "{hint}"
        );
        let e = p("services:\n  a:\n    image: x\n    depends_on: [b]\n").unwrap_err();
        assert!(
            e.message.contains("depends on `b`, which is not defined"),
            "{}",
            e.message
        );
        let e = p("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n").unwrap_err();
        assert!(
            e.message.contains("dependency cycle: a -> b -> a"),
            "{}",
            e.message
        );
        let e = p("services:\n  a:\n    image: x\n    environment: { X: \"${MISSING}\" }\n")
            .unwrap_err();
        assert!(e.message.contains("`MISSING`"), "{}", e.message);
        let e = p("services:\n  a:\n    image: x\n    volumes: [\"data:/x\"]\n").unwrap_err();
        assert!(
            e.message.contains("named volumes are not supported"),
            "{}",
            e.message
        );
        let e = p("services:\n  a:\n    image: x\n  b:\n    image: y\n    depends_on: { a: { condition: service_healthy } }\n").unwrap_err();
        assert!(e.message.contains("has no healthcheck"), "{}", e.message);
        let e = p("services:\n  a:\n    image: x\n    ports: [\"99999:1\"]\n").unwrap_err();
        assert!(e.message.contains("is not a port"), "{}", e.message);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_compose_duration("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_compose_duration("1h2m3s"),
            Some(Duration::from_secs(3723))
        );
        assert_eq!(parse_compose_duration("5"), None);
        assert_eq!(parse_compose_duration("5d"), None);
    }
}
