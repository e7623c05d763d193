//! Registries as Docker names them: the host a reference is pulled from, and the credentials
//! Docker would send there, read the way the docker CLI reads them (`DOCKER_CONFIG` or
//! `~/.docker/config.json`: `credHelpers` for the host, else `credsStore`, else the base64
//! `auth` of an `auths` entry; helpers run as `docker-credential-<name> get`).
//!
//! Must not: print or log a credential (`RegistryAuth`'s `Debug` is redacted, and errors
//! here name the file or helper, never what it returned), write the config file, or run
//! anything but the helper the config names.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::engine::RegistryAuth;
use crate::error::CdqError;

/// Docker Hub as the credentials store keys it.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The registry host of an image reference (`127.0.0.1:5000/cd/redis:7` -> `127.0.0.1:5000`,
/// `redis:7` -> `docker.io`): the first path part when it has a `.` or `:` or is
/// `localhost`, as Docker decides it.
pub fn host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// The docker CLI's configuration, read once per command.
#[derive(Debug, Default)]
pub struct Keychain {
    path: PathBuf,
    config: ConfigFile,
}

impl Keychain {
    /// Reads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; a missing file is an
    /// empty keychain (anonymous pulls), an unreadable or malformed one an error naming it.
    pub fn load() -> Result<Keychain, CdqError> {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("HOME") {
                Some(h) => Path::new(&h).join(".docker"),
                None => return Ok(Keychain::default()),
            },
        };
        Keychain::from_file(&dir.join("config.json"))
    }

    pub fn from_file(path: &Path) -> Result<Keychain, CdqError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Keychain {
                    path: path.to_path_buf(),
                    config: ConfigFile::default(),
                });
            }
            Err(e) => {
                return Err(CdqError::failure(format!(
                    "cannot read the docker credentials file `{}`: {e}",
                    path.display()
                ))
                .hint("fix its permissions, or point `DOCKER_CONFIG` at a readable directory"));
            }
        };
        let config: ConfigFile = serde_json::from_str(&text).map_err(|e| {
            CdqError::failure(format!(
                "the docker credentials file `{}` is not valid JSON (line {})",
                path.display(),
                e.line()
            ))
            .hint("fix it, or log in again with `docker login HOST` to rewrite it")
        })?;
        Ok(Keychain {
            path: path.to_path_buf(),
            config,
        })
    }

    /// The credentials for `host` (as [`host`] names it), or None for an anonymous pull.
    pub fn for_host(&self, host: &str) -> Result<Option<RegistryAuth>, CdqError> {
        let key = if host == "docker.io" {
            DOCKER_HUB
        } else {
            host
        };
        let helper = self
            .config
            .cred_helpers
            .get(host)
            .or(self.config.creds_store.as_ref());
        if let Some(helper) = helper {
            return run_helper(helper, key, host);
        }
        let entry = self.config.auths.iter().find(|(k, _)| same_host(k, key));
        let Some((_, entry)) = entry else {
            return Ok(None);
        };
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth {
                server: host.to_string(),
                identity_token: Some(token.clone()),
                ..Default::default()
            }));
        }
        let Some(encoded) = entry.auth.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let bad = || {
            CdqError::failure(format!(
                "the `auths` entry for `{host}` in `{}` is not base64 of `user:password`",
                self.path.display()
            ))
            .hint(format!("log in again: `docker login {host}`"))
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = text.split_once(':').ok_or_else(bad)?;
        Ok(Some(RegistryAuth {
            server: host.to_string(),
            username: user.to_string(),
            password: pass.to_string(),
            identity_token: None,
        }))
    }
}

/// `auths` keys may carry a scheme and a path (`https://h:5000/v1/`); Docker matches the host.
fn same_host(key: &str, host: &str) -> bool {
    if key == host {
        return true;
    }
    let strip = |k: &str| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next().unwrap_or(k).to_string()
    };
    strip(key) == strip(host)
}

/// `docker-credential-<helper> get` with the server on stdin, as the docker CLI runs it.
/// A helper that knows nothing of the server means an anonymous pull.
fn run_helper(helper: &str, key: &str, host: &str) -> Result<Option<RegistryAuth>, CdqError> {
    let program = format!("docker-credential-{helper}");
    let fail = |why: String| {
        CdqError::failure(format!(
            "the docker credential helper `{program}` failed for `{host}`: {why}"
        ))
        .hint(format!(
            "install `{program}`, or log in again with `docker login {host}`"
        ))
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(key.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        if said.contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own words, but never its stdout beyond that known phrase: on success
        // stdout is the secret.
        return Err(fail(format!("exit status {}", out.status)));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|_| fail("its answer is not the JSON Docker expects".into()))?;
    Ok(Some(if reply.username == "<token>" {
        RegistryAuth {
            server: host.to_string(),
            identity_token: Some(reply.secret),
            ..Default::default()
        }
    } else {
        RegistryAuth {
            server: host.to_string(),
            username: reply.username,
            password: reply.secret,
            identity_token: None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_docker_reads_them() {
        assert_eq!(host("redis:7.2.11"), "docker.io");
        assert_eq!(host("library/redis:7.2.11"), "docker.io");
        assert_eq!(host("127.0.0.1:5000/cd/redis:7"), "127.0.0.1:5000");
        assert_eq!(host("harbor.example.com/cd/redis:7"), "harbor.example.com");
        assert_eq!(host("localhost/redis:7"), "localhost");
    }

    fn keychain(json: &str) -> (tempfile::TempDir, Keychain) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(&p, json).unwrap();
        let k = Keychain::from_file(&p).unwrap();
        (d, k)
    }

    #[test]
    fn auths_entries_decode_and_match_with_or_without_a_scheme() {
        // "cd:s3cret"
        let (_d, k) = keychain(
            r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"Y2Q6czNjcmV0"},"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"}}}"#,
        );
        let a = k.for_host("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("cd", "s3cret"));
        assert!(!format!("{a:?}").contains("s3cret"), "Debug redacts");
        let hub = k.for_host("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(k.for_host("other:5000").unwrap(), None);
    }

    #[test]
    fn a_bad_auth_entry_names_the_file_and_the_fix_not_the_value() {
        let (_d, k) = keychain(r#"{"auths":{"h:5000":{"auth":"not base64!"}}}"#);
        let e = k.for_host("h:5000").unwrap_err();
        assert!(e.message.contains("`h:5000`"), "{}", e.message);
        assert!(!e.message.contains("not base64!"));
        assert_eq!(
            e.hint.as_deref(),
            Some("log in again: `docker login h:5000`")
        );
    }

    #[test]
    fn a_missing_file_is_anonymous_and_a_malformed_one_an_error() {
        let d = tempfile::tempdir().unwrap();
        let k = Keychain::from_file(&d.path().join("config.json")).unwrap();
        assert_eq!(k.for_host("h:5000").unwrap(), None);
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        let e = Keychain::from_file(&d.path().join("config.json")).unwrap_err();
        assert!(e.message.contains("is not valid JSON"), "{}", e.message);
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_it() {
        let (_d, k) = keychain(r#"{"credHelpers":{"h:5000":"cdq-test-none"}}"#);
        let e = k.for_host("h:5000").unwrap_err();
        assert!(
            e.message
                .contains("`docker-credential-cdq-test-none` failed for `h:5000`"),
            "{}",
            e.message
        );
    }
}
