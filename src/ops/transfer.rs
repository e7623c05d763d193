//! Pulls and pushes of the image set through the [`Engine`]: which images to pull for a
//! policy and an architecture, all of them at once with retries and backoff on transient
//! failures, and every failure classified into what went wrong at which registry and its fix.
//! Progress goes to a [`Reporter`] (the command layer draws bars, lines or JSON).
//!
//! Must not: print, prompt, read credentials itself (a [`Credentials`] source is passed in),
//! or create containers: `cdq up` pulls before anything is created, so a failed pull leaves
//! nothing behind.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;

use crate::engine::{Engine, EngineError, RegistryAuth, TransferEvent};
use crate::error::{CdqError, Kind};
use crate::registry;
use crate::services::Arch;

/// `cdq up --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Pull what is not on the host for the target architecture.
    #[default]
    Missing,
    /// Pull everything (a moved tag on the registry is picked up).
    Always,
    /// Pull nothing: the offline behaviour, where preflight fails on a missing image.
    Never,
}

/// Where credentials come from: the docker CLI's keychain, or a fixed set in tests.
pub trait Credentials: Send + Sync {
    fn for_host(&self, host: &str) -> Result<Option<RegistryAuth>, CdqError>;
}

impl Credentials for registry::Keychain {
    fn for_host(&self, host: &str) -> Result<Option<RegistryAuth>, CdqError> {
        registry::Keychain::for_host(self, host)
    }
}

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait before the second try; it doubles after each failure.
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 4,
            first_delay: Duration::from_secs(1),
        }
    }
}

/// Progress of pulls and pushes; called from several pulls at once.
pub trait Reporter: Send + Sync {
    fn start(&self, reference: &str, attempt: u32);
    fn event(&self, reference: &str, event: &TransferEvent);
    fn retry(&self, reference: &str, attempt: u32, delay: Duration, why: &str);
    fn done(&self, reference: &str);
}

/// What went wrong, as far as the fix is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// DNS, connection refused, connect timeout.
    Unreachable,
    /// The daemon does not trust the registry's certificate.
    UnknownAuthority,
    /// 401: no or wrong credentials.
    Unauthorized,
    /// The repository or the tag is not there.
    NotFound,
    /// The tag has no variant for the target architecture.
    NoVariant,
    DiskFull,
    /// A dropped connection or a 5xx mid-transfer: worth another try.
    Transient,
    Other,
}

/// Classifies the daemon's words about a failed pull or push. Pure.
pub fn classify(message: &str) -> Problem {
    let m = message.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    // A status code as a word of its own: `401` inside a port (`127.0.0.1:40167`) or a
    // digest is not one.
    let status = |code: &str| {
        m.match_indices(code).any(|(i, _)| {
            let before = m[..i].chars().next_back();
            let after = m[i + code.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    if has("no space left on device") {
        Problem::DiskFull
    } else if has("x509:") || has("certificate signed by unknown authority") || has("tls: ") {
        Problem::UnknownAuthority
    } else if has("no matching manifest") || has("does not match the specified platform") {
        Problem::NoVariant
    } else if has("unauthorized")
        || has("no basic auth credentials")
        || has("authentication required")
        || status("401")
    {
        Problem::Unauthorized
    } else if has("manifest unknown")
        || has("not found")
        || has("name unknown")
        || has("repository does not exist")
    {
        Problem::NotFound
    } else if has("unexpected eof")
        || has("connection reset")
        || has("broken pipe")
        || has("503 service unavailable")
        || has("502 bad gateway")
        || has("504 gateway")
        || has("tls handshake timeout")
        || has("read: connection")
        || m.trim_end().ends_with(": eof")
    {
        Problem::Transient
    } else if has("dial tcp")
        || has("no such host")
        || has("connection refused")
        || has("i/o timeout")
        || has("network is unreachable")
        || has("server misbehaving")
    {
        Problem::Unreachable
    } else {
        Problem::Other
    }
}

/// An image to pull (or push), and the service it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub service: String,
    pub reference: String,
}

/// The images of `wants` to pull under `policy` for `arch`: absent ones, and ones present
/// for another architecture (the same tag pulled on an office machine of the other arch).
pub async fn to_pull<E: Engine>(
    engine: &E,
    wants: &[Want],
    arch: Arch,
    policy: Policy,
) -> anyhow::Result<Vec<Want>> {
    let mut out = vec![];
    for w in wants {
        let pull = match policy {
            Policy::Never => false,
            Policy::Always => true,
            Policy::Missing => match engine.image(&w.reference).await {
                Ok(Some(i)) => i.arch != arch.to_string(),
                Ok(None) => true,
                Err(e) => return Err(crate::engine::explain(e).into()),
            },
        };
        if pull && !out.iter().any(|o: &Want| o.reference == w.reference) {
            out.push(w.clone());
        }
    }
    Ok(out)
}

/// The engine's platform string for an architecture.
pub fn platform(arch: Arch) -> String {
    format!("linux/{arch}")
}

/// Pulls every image of `wants` for `arch` at once. Each is retried on transient failures;
/// the first failure (in `wants` order) is returned once all have finished, classified, with
/// `origin` (the settings that produced the references) in its hint.
pub async fn pull<E: Engine>(
    engine: &E,
    wants: &[Want],
    arch: Arch,
    creds: &dyn Credentials,
    retry: Retry,
    reporter: &dyn Reporter,
    origin: &str,
) -> anyhow::Result<()> {
    let platform = platform(arch);
    let tasks = wants.iter().map(|w| {
        let platform = platform.clone();
        async move {
            let auth = creds.for_host(registry::host(&w.reference))?;
            let r = with_retry(&w.reference, retry, reporter, || {
                engine.pull_image(&w.reference, Some(&platform), auth.clone())
            })
            .await;
            match r {
                Ok(()) => check_arch(engine, w, arch, auth).await,
                Err(e) => Err(explain_pull(engine, w, arch, e, auth, origin).await),
            }
        }
    });
    let results: Vec<anyhow::Result<()>> = join_all(tasks).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(e) if failed > 1 => Err(e.context(format!(
            "{failed} of {} pulls failed; the first:",
            wants.len()
        ))),
        Some(e) => Err(e),
    }
}

/// One transfer, tried again after a transient failure with a doubling delay.
async fn with_retry<F>(
    reference: &str,
    retry: Retry,
    reporter: &dyn Reporter,
    mut start: F,
) -> Result<(), EngineError>
where
    F: FnMut() -> crate::engine::TransferStream,
{
    let mut delay = retry.first_delay;
    let mut attempt = 1;
    loop {
        reporter.start(reference, attempt);
        let mut stream = start();
        let mut result = Ok(());
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => reporter.event(reference, &ev),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            Ok(()) => {
                reporter.done(reference);
                return Ok(());
            }
            Err(e) => {
                let transient = matches!(&e, EngineError::Registry { message, .. }
                    if classify(message) == Problem::Transient);
                if !transient || attempt >= retry.attempts {
                    return Err(e);
                }
                reporter.retry(reference, attempt + 1, delay, &e.to_string());
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Docker 20.10 pulls a single-platform tag whatever platform was asked for; what arrived
/// must be for `arch`, or the pull failed as one with no variant for it.
async fn check_arch<E: Engine>(
    engine: &E,
    w: &Want,
    arch: Arch,
    auth: Option<RegistryAuth>,
) -> anyhow::Result<()> {
    let got = engine
        .image(&w.reference)
        .await
        .map_err(crate::engine::explain)?;
    match got {
        Some(i) if i.arch != arch.to_string() => {
            let has = engine
                .registry_platforms(&w.reference, auth)
                .await
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec![format!("{}/{}", i.os, i.arch)]);
            Err(no_variant(&w.reference, arch, &has.join(", ")).into())
        }
        _ => Ok(()),
    }
}

fn no_variant(r: &str, arch: Arch, has: &str) -> CdqError {
    let host = registry::host(r);
    CdqError::new(
        Kind::Registry,
        format!("`{r}` on the registry `{host}` has no linux/{arch} variant (it has: {has})"),
    )
    .hint(format!(
        "push the {arch} image under that tag (`cdq push --arch {arch}` on a machine that has it), or deploy the architecture it has with `--arch`"
    ))
}

/// A failed pull as product copy: what went wrong at which registry, the daemon's words as
/// the cause, and the fix.
async fn explain_pull<E: Engine>(
    engine: &E,
    w: &Want,
    arch: Arch,
    e: EngineError,
    auth: Option<RegistryAuth>,
    origin: &str,
) -> anyhow::Error {
    let EngineError::Registry { message, .. } = &e else {
        return crate::engine::explain(e).into();
    };
    let host = registry::host(&w.reference);
    let r = &w.reference;
    let problem = classify(message);
    let err = match problem {
        Problem::NoVariant => {
            let has = engine
                .registry_platforms(r, auth)
                .await
                .map(|p| p.join(", "))
                .unwrap_or_else(|_| "unknown".into());
            no_variant(r, arch, &has)
        }
        _ => registry_error(problem, "pull", r, host, origin),
    };
    anyhow::Error::new(e).context(err)
}

/// The message and fix for a registry failure that does not need another question.
pub fn registry_error(problem: Problem, verb: &str, r: &str, host: &str, origin: &str) -> CdqError {
    let (msg, hint) = match problem {
        Problem::Unreachable => (
            format!("cannot reach the registry `{host}` to {verb} `{r}`"),
            format!(
                "check that `{host}` is right ({origin}), that the registry is running and that this host reaches it (DNS, firewall, proxy)"
            ),
        ),
        Problem::UnknownAuthority => (
            format!("the Docker daemon does not trust the certificate of the registry `{host}`"),
            format!(
                "put the registry's CA certificate at `/etc/docker/certs.d/{host}/ca.crt` (read on the next pull), or add `{host}` to `insecure-registries` in `/etc/docker/daemon.json` and restart Docker"
            ),
        ),
        Problem::Unauthorized => (
            format!("the registry `{host}` refused to let this host {verb} `{r}` (401: no or wrong credentials)"),
            format!("log in with `docker login {host}` (cdq reads the same credentials), then run cdq again"),
        ),
        Problem::NotFound => (
            format!("`{r}` is not on the registry `{host}`"),
            format!(
                "the reference comes from {origin}: fill the registry with `cdq push`, or fix the setting"
            ),
        ),
        Problem::NoVariant => (
            format!("`{r}` on the registry `{host}` has no variant for this architecture"),
            "push the image for this architecture under that tag".to_string(),
        ),
        Problem::DiskFull => (
            format!("the Docker daemon ran out of disk space during the {verb} of `{r}`"),
            "free space where Docker keeps images (`docker system df`, then `docker image prune`), then run cdq again".to_string(),
        ),
        Problem::Transient => (
            format!("the connection to the registry `{host}` kept failing during the {verb} of `{r}`"),
            "run cdq again (finished layers are kept); if it persists, check the network to the registry".to_string(),
        ),
        Problem::Other => (
            format!("the {verb} of `{r}` from the registry `{host}` failed"),
            format!("see the daemon's words above; the reference comes from {origin}"),
        ),
    };
    CdqError::new(Kind::Registry, msg).hint(hint)
}

/// One image to push: the local image (`source`) and the name on the registry (`target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub service: String,
    pub source: String,
    pub target: String,
}

/// What one push put on the registry: the tag, the manifest digest the engine reported
/// (None when its messages named none), and the image's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub reference: String,
    pub digest: Option<String>,
    pub os: String,
    pub arch: String,
}

/// The manifest digest in a push's closing message (`<tag>: digest: sha256:<hex> size: <n>`,
/// as Docker and Podman write it).
pub fn pushed_digest(status: &str) -> Option<String> {
    let (_, after) = status.split_once("digest: ")?;
    let d = after.split_whitespace().next()?;
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| d.to_string())
}

/// Passes events on and keeps the digest a push reports.
struct Capture<'a> {
    inner: &'a dyn Reporter,
    digest: std::sync::Mutex<Option<String>>,
}

impl Reporter for Capture<'_> {
    fn start(&self, reference: &str, attempt: u32) {
        self.inner.start(reference, attempt)
    }
    fn event(&self, reference: &str, event: &TransferEvent) {
        if let Some(d) = pushed_digest(&event.status) {
            *self.digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        self.inner.event(reference, event)
    }
    fn retry(&self, reference: &str, attempt: u32, delay: Duration, why: &str) {
        self.inner.retry(reference, attempt, delay, why)
    }
    fn done(&self, reference: &str) {
        self.inner.done(reference)
    }
}

/// Pushes each `source` as `target`: checks it is on the host and built for `arch`, tags it,
/// and pushes that one tag (with retries). Pushes run one at a time, since they share the
/// uplink and the registry deduplicates layers the previous push already sent.
pub async fn push<E: Engine>(
    engine: &E,
    copies: &[Copy],
    arch: Arch,
    creds: &dyn Credentials,
    retry: Retry,
    reporter: &dyn Reporter,
    origin: &str,
) -> anyhow::Result<Vec<Pushed>> {
    let mut out = vec![];
    for c in copies {
        let info = match engine
            .image(&c.source)
            .await
            .map_err(crate::engine::explain)?
        {
            None => {
                return Err(CdqError::usage(format!(
                    "`{}` (for `{}`) is not on this host, so it cannot be pushed",
                    c.source, c.service
                ))
                .hint("load it first (`cdq bundle load`, `scripts/build-local-images.sh` for the kit, or `docker pull`), or push from a bundle with `--bundle FILE`")
                .into());
            }
            Some(i) if i.arch != arch.to_string() => {
                return Err(CdqError::usage(format!(
                    "`{}` on this host is built for {}, not {arch}",
                    c.source, i.arch
                ))
                .hint(format!(
                    "push the {} images with `--arch {}`, or load the {arch} ones first",
                    i.arch, i.arch
                ))
                .into());
            }
            Some(i) => i,
        };
        if c.source != c.target {
            engine
                .tag_image(&c.source, &c.target)
                .await
                .map_err(crate::engine::explain)?;
        }
        let host = registry::host(&c.target);
        let auth = creds.for_host(host)?;
        let capture = Capture {
            inner: reporter,
            digest: std::sync::Mutex::new(None),
        };
        if let Err(e) = with_retry(&c.target, retry, &capture, || {
            engine.push_image(&c.target, auth.clone())
        })
        .await
        {
            let err = match &e {
                EngineError::Registry { message, .. } => {
                    registry_error(classify(message), "push", &c.target, host, origin)
                }
                _ => return Err(crate::engine::explain(e).into()),
            };
            return Err(anyhow::Error::new(e).context(err));
        }
        out.push(Pushed {
            reference: c.target.clone(),
            digest: capture
                .digest
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            os: info.os,
            arch: info.arch,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_words_classify_into_their_fix() {
        let cases = [
            (
                "Get \"https://h:5000/v2/\": dial tcp 10.0.0.9:5000: connect: connection refused",
                Problem::Unreachable,
            ),
            (
                "Get \"https://nohost:5000/v2/\": dial tcp: lookup nohost on 127.0.0.11:53: no such host",
                Problem::Unreachable,
            ),
            (
                "Get \"https://127.0.0.1:5443/v2/\": x509: certificate signed by unknown authority",
                Problem::UnknownAuthority,
            ),
            (
                "Head \"https://127.0.0.1:5000/v2/cd/redis/manifests/2-amd64\": no basic auth credentials",
                Problem::Unauthorized,
            ),
            (
                "unauthorized: authentication required",
                Problem::Unauthorized,
            ),
            (
                "manifest for 127.0.0.1:5000/cd/redis:9 not found: manifest unknown: manifest unknown",
                Problem::NotFound,
            ),
            // A port holding the digits 401 is not a 401 (seen: a test registry on 40167).
            (
                "manifest for 127.0.0.1:40167/x/redis:2-amd64 not found: manifest unknown: manifest unknown",
                Problem::NotFound,
            ),
            (
                "received unexpected HTTP status: 401 Unauthorized",
                Problem::Unauthorized,
            ),
            (
                "no matching manifest for linux/arm64/v8 in the manifest list entries",
                Problem::NoVariant,
            ),
            (
                "write /var/lib/docker/tmp/GetImageBlob1: no space left on device",
                Problem::DiskFull,
            ),
            ("unexpected EOF", Problem::Transient),
            (
                "read tcp 127.0.0.1:4711->127.0.0.1:5000: read: connection reset by peer",
                Problem::Transient,
            ),
            ("something else entirely", Problem::Other),
        ];
        for (m, want) in cases {
            assert_eq!(classify(m), want, "{m}");
        }
    }

    #[test]
    fn the_digest_comes_from_the_closing_push_message() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            pushed_digest(&format!("7.2.11-arm64: digest: {d} size: 1573")),
            Some(d.clone())
        );
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(
            pushed_digest("x: digest: sha256:abc size: 1"),
            None,
            "not 64 hex"
        );
    }

    #[test]
    fn each_fix_names_the_registry() {
        let e = registry_error(
            Problem::Unauthorized,
            "pull",
            "127.0.0.1:5000/cd/redis:7",
            "127.0.0.1:5000",
            "`--registry`",
        );
        assert_eq!(e.kind.exit_code(), 7);
        assert!(e.message.contains("`127.0.0.1:5000`"), "{}", e.message);
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "log in with `docker login 127.0.0.1:5000` (cdq reads the same credentials), then run cdq again"
            )
        );
        let tls = registry_error(
            Problem::UnknownAuthority,
            "pull",
            "h:5443/x:1",
            "h:5443",
            "",
        );
        assert!(
            tls.hint
                .unwrap()
                .contains("/etc/docker/certs.d/h:5443/ca.crt")
        );
    }
}
