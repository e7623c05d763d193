//! A client of the registry HTTP API (distribution v2) for the one thing the Docker engine's
//! API cannot do: put a manifest list under a tag (`cdq push` of two architectures). It pings
//! `/v2/`, answers a 401 the way the registry asks (`Basic`, or a `Bearer` token fetched from
//! the realm with the same credentials, an identity token as an OAuth2 refresh token), reads
//! a manifest's type, digest and size, and puts a list. How it reaches the registry (HTTPS
//! with `certs.d`, or HTTP for an insecure one) is [`tls`]'s decision.
//!
//! Blocking (ureq, over rustls with the pure-Rust RustCrypto provider: it adds no C to the
//! static aarch64 build, whose only C dependency is zstd): callers in async code run it on the blocking pool. Must not:
//! print, log or put in an error a credential, a token or an `Authorization` header; errors
//! carry the registry's own words (its JSON `errors`) and the HTTP status only.

pub mod challenge;
pub mod list;
pub mod tls;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::engine::RegistryAuth;
use challenge::Challenge;

/// Why a request to the registry failed; the caller turns each into its fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    /// DNS, connection refused, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// The registry's certificate is not trusted (or not for this name).
    #[error("{0}")]
    Certificate(String),
    /// A file under `certs.d` cdq cannot use.
    #[error("`{}`: {why}", path.display())]
    BadFile {
        path: std::path::PathBuf,
        why: String,
    },
    /// 401 with the credentials (or none) cdq has; `said` is the registry's words.
    #[error("HTTP 401: {said}")]
    Unauthorized { said: String },
    /// 403: the account may not do this here.
    #[error("HTTP 403: {said}")]
    Denied { said: String },
    #[error("HTTP 404: {said}")]
    NotFound { said: String },
    /// Any other refusal: the status and the registry's words.
    #[error("HTTP {status}: {said}")]
    Refused { status: u16, said: String },
    /// An answer that breaks the protocol (a bad token reply, a wrong digest).
    #[error("{0}")]
    Protocol(String),
}

/// One registry, reached and (once challenged) authorised.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<RegistryAuth>,
    /// The `Authorization` value in use; never printed.
    authorization: Option<String>,
}

/// A manifest as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    /// Reaches `host` (`name[:port]`) and pings `/v2/`. A secure registry is spoken to over
    /// verified HTTPS only; an insecure one over HTTPS without verification, then over HTTP
    /// when that fails, as the daemon does.
    pub fn connect(
        host: &str,
        insecure: bool,
        auth: Option<RegistryAuth>,
        certs_root: &Path,
    ) -> Result<Client, RegError> {
        let https = Client::new(host, "https", insecure, auth.clone(), certs_root)?;
        match https.ping() {
            Ok(()) => Ok(https),
            Err(e) if !insecure => Err(e),
            Err(_) => {
                let http = Client::new(host, "http", true, auth, certs_root)?;
                http.ping()?;
                Ok(http)
            }
        }
    }

    fn new(
        host: &str,
        scheme: &str,
        insecure: bool,
        auth: Option<RegistryAuth>,
        certs_root: &Path,
    ) -> Result<Client, RegError> {
        let tls = tls::config(host, certs_root, !insecure).map_err(|b| RegError::BadFile {
            path: b.path,
            why: b.why,
        })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .tls_config(tls)
            .user_agent(concat!("cdq/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            base: format!("{scheme}://{host}"),
            agent,
            auth,
            authorization: None,
        })
    }

    /// `http` or `https`, whichever `connect` settled on.
    pub fn scheme(&self) -> &str {
        self.base.split("://").next().unwrap_or("https")
    }

    /// Any HTTP answer to `/v2/` (200, or 401 before credentials) means the registry is there.
    fn ping(&self) -> Result<(), RegError> {
        let r = self
            .agent
            .get(format!("{}/v2/", self.base))
            .call()
            .map_err(transport)?;
        match r.status().as_u16() {
            200 | 401 => Ok(()),
            status => Err(RegError::Refused {
                status,
                said: "`/v2/` is not a registry API here".into(),
            }),
        }
    }

    /// The type, digest and size of `reference` (a tag or a digest) in `repo`.
    pub fn head_manifest(&mut self, repo: &str, reference: &str) -> Result<Manifest, RegError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scope = format!("repository:{repo}:pull");
        let r = self.send(&scope, |agent, base, authz| {
            let mut req = agent
                .head(format!("{base}{path}"))
                .header("Accept", list::ACCEPT);
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let media_type = header("Content-Type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
            .ok_or_else(|| {
                RegError::Protocol(format!(
                    "the manifest `{repo}@{reference}` came without a type"
                ))
            })?;
        let size = header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| {
                RegError::Protocol(format!(
                    "the manifest `{repo}@{reference}` came without a size"
                ))
            })?;
        let digest = match header("Docker-Content-Digest") {
            Some(d) => d,
            None if reference.starts_with("sha256:") => reference.to_string(),
            None => {
                return Err(RegError::Protocol(format!(
                    "the registry named no digest for `{repo}:{reference}`"
                )));
            }
        };
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegError::Protocol(format!(
                "asked for `{reference}`, the registry answered with `{digest}`"
            )));
        }
        Ok(Manifest {
            media_type,
            digest,
            size,
        })
    }

    /// Puts `body` (of `media_type`) under `repo:tag`; returns the digest the registry
    /// stored it under, which must be the body's own.
    pub fn put_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, RegError> {
        let path = format!("/v2/{repo}/manifests/{tag}");
        let scope = format!("repository:{repo}:pull,push");
        let r = self.send(&scope, |agent, base, authz| {
            let mut req = agent
                .put(format!("{base}{path}"))
                .header("Content-Type", media_type);
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.send(body)
        })?;
        let want = list::digest_of(body);
        match r
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) if d != want => Err(RegError::Protocol(format!(
                "the registry stored the list as `{d}`, but its bytes are `{want}`"
            ))),
            _ => Ok(want),
        }
    }

    /// One request, answered once more with credentials when the registry says 401. A 2xx
    /// is returned; anything else is the registry's refusal.
    fn send<F>(&mut self, scope: &str, mut request: F) -> Result<Response, RegError>
    where
        F: FnMut(&ureq::Agent, &str, Option<&str>) -> Result<Response, ureq::Error>,
    {
        let mut r =
            request(&self.agent, &self.base, self.authorization.as_deref()).map_err(transport)?;
        if r.status().as_u16() == 401 {
            let header = r
                .headers()
                .get("WWW-Authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let Some(c) = challenge::parse(&header) else {
                return Err(RegError::Unauthorized {
                    said: format!("it asks for `{header}`, which cdq cannot answer"),
                });
            };
            self.authorization = Some(self.authorize(&c, scope)?);
            r = request(&self.agent, &self.base, self.authorization.as_deref())
                .map_err(transport)?;
        }
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(r);
        }
        let said = said(&mut r);
        Err(match status {
            401 => RegError::Unauthorized { said },
            403 => RegError::Denied { said },
            404 => RegError::NotFound { said },
            status => RegError::Refused { status, said },
        })
    }

    /// The `Authorization` value answering `c`: the credentials themselves for `Basic`, a
    /// token fetched from the realm for `Bearer`.
    fn authorize(&self, c: &Challenge, scope: &str) -> Result<String, RegError> {
        let basic = self
            .auth
            .as_ref()
            .filter(|a| a.identity_token.is_none() && !a.username.is_empty())
            .map(|a| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", a.username, a.password))
                )
            });
        match c {
            Challenge::Basic => basic.ok_or_else(|| RegError::Unauthorized {
                said: "it asks for a user and password, and none is stored for it".into(),
            }),
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let scope = asked.as_deref().unwrap_or(scope);
                let identity = self.auth.as_ref().and_then(|a| a.identity_token.as_ref());
                let reply = match identity {
                    Some(refresh) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token"),
                            ("refresh_token", refresh.as_str()),
                            ("client_id", "cdq"),
                            ("scope", scope),
                        ];
                        if let Some(s) = service {
                            form.push(("service", s.as_str()));
                        }
                        self.agent.post(realm).send_form(form)
                    }
                    None => {
                        let mut req = self.agent.get(realm).query("scope", scope);
                        if let Some(s) = service {
                            req = req.query("service", s);
                        }
                        if let Some(b) = &basic {
                            req = req.header("Authorization", b);
                        }
                        req.call()
                    }
                };
                let mut r = reply.map_err(|e| match transport(e) {
                    RegError::Unreachable(m) => {
                        RegError::Unreachable(format!("its token service `{realm}`: {m}"))
                    }
                    other => other,
                })?;
                let status = r.status().as_u16();
                if !(200..300).contains(&status) {
                    let said = format!("its token service `{realm}` said: {}", said(&mut r));
                    return Err(match status {
                        401 => RegError::Unauthorized { said },
                        403 => RegError::Denied { said },
                        status => RegError::Refused { status, said },
                    });
                }
                let reply: challenge::TokenReply =
                    r.body_mut().read_json_bytes().map_err(|_| {
                        RegError::Protocol(format!(
                            "the token service `{realm}` answered with something other than a token"
                        ))
                    })?;
                let token = reply.into_token().ok_or_else(|| {
                    RegError::Protocol(format!(
                        "the token service `{realm}` answered without a token"
                    ))
                })?;
                Ok(format!("Bearer {token}"))
            }
        }
    }
}

type Response = ureq::http::Response<ureq::Body>;

/// JSON from a response body, read through serde_json (ureq's own `json` feature is off).
trait ReadJson {
    fn read_json_bytes<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ()>;
}

impl ReadJson for ureq::Body {
    fn read_json_bytes<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ()> {
        let bytes = self
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|_| ())?;
        serde_json::from_slice(&bytes).map_err(|_| ())
    }
}

/// The registry's words in an error body: its `errors` as `CODE: message`, else the start
/// of the body as text, else nothing.
fn said(r: &mut Response) -> String {
    let bytes = r
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    registry_words(&bytes)
}

/// Pure half of [`said`].
pub fn registry_words(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && !e.errors.is_empty()
    {
        return e
            .errors
            .iter()
            .map(|i| match (i.code.is_empty(), i.message.is_empty()) {
                (false, false) => format!("{}: {}", i.code, i.message),
                (false, true) => i.code.clone(),
                _ => i.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut: String = text.chars().take(200).collect();
    if cut.is_empty() {
        "no reason given".into()
    } else {
        cut
    }
}

/// A request that got no HTTP answer.
fn transport(e: ureq::Error) -> RegError {
    let text = e.to_string();
    match e {
        ureq::Error::Rustls(rustls::Error::InvalidCertificate(c)) => {
            RegError::Certificate(format!("its certificate is not trusted ({c:?})"))
        }
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Timeout(_)
        | ureq::Error::Io(_) => RegError::Unreachable(text),
        _ => RegError::Protocol(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registrys_words_come_from_its_errors() {
        assert_eq!(
            registry_words(
                br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":null}]}"#
            ),
            "DENIED: requested access to the resource is denied"
        );
        assert_eq!(
            registry_words(
                br#"{"errors":[{"code":"MANIFEST_INVALID"},{"message":"tag is immutable"}]}"#
            ),
            "MANIFEST_INVALID; tag is immutable"
        );
        assert_eq!(
            registry_words(b"  upstream timed out\n"),
            "upstream timed out"
        );
        assert_eq!(registry_words(b""), "no reason given");
    }
}
