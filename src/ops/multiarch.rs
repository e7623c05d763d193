//! `cdq push` of both architectures: which images get one multi-arch tag, the arch-suffixed
//! tags (`<tag>-amd64`, `<tag>-arm64`) each architecture is pushed under first, and the
//! lists cdq then puts at `<tag>` over the registry API ([`crate::regclient`]), each naming
//! the manifest digests the pushes reported with their `platform`.
//!
//! An image gets a list when its reference is the same for every architecture (the official
//! set: the daemon cannot hold both under that name, so the two come from bundles loaded one
//! after the other, or from the daemon and a bundle); an image whose reference differs by
//! architecture (the local kit's `:2-amd64`/`:2-arm64`) is pushed under its own name and
//! needs none.
//!
//! Must not: print, or read credentials itself (a [`Credentials`] source is passed in).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{CdqError, Kind};
use crate::ops::transfer::{Copy, Credentials, Pushed};
use crate::regclient::list::{self, Entry};
use crate::regclient::tls::Insecure;
use crate::regclient::{Client, RegError};
use crate::registry;
use crate::services::Arch;

/// One multi-arch tag to publish: the reference, and the arch-suffixed reference each
/// architecture's image is pushed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPlan {
    pub service: String,
    pub target: String,
    pub parts: Vec<(Arch, String)>,
}

/// `reference` with `-<arch>` appended to its tag (`r/x:7.2` -> `r/x:7.2-arm64`).
pub fn suffixed(reference: &str, arch: Arch) -> String {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    if reference[slash..].contains(':') {
        format!("{reference}-{arch}")
    } else {
        format!("{reference}:latest-{arch}")
    }
}

/// The copies of each architecture as they are pushed, and the lists to put afterwards.
/// With one architecture nothing changes; with several, a target shared by all of them is
/// pushed under its arch-suffixed tag and gets a [`ListPlan`]. Pure.
pub fn plan(by_arch: &[(Arch, Vec<Copy>)]) -> (Vec<(Arch, Vec<Copy>)>, Vec<ListPlan>) {
    if by_arch.len() < 2 {
        return (by_arch.to_vec(), vec![]);
    }
    let mut archs_of: BTreeMap<&str, Vec<Arch>> = BTreeMap::new();
    for (arch, copies) in by_arch {
        for c in copies {
            archs_of.entry(c.target.as_str()).or_default().push(*arch);
        }
    }
    let shared = |target: &str| archs_of.get(target).is_some_and(|a| a.len() > 1);
    let mut lists: Vec<ListPlan> = vec![];
    let pushes = by_arch
        .iter()
        .map(|(arch, copies)| {
            let copies = copies
                .iter()
                .map(|c| {
                    if !shared(&c.target) {
                        return c.clone();
                    }
                    let part = suffixed(&c.target, *arch);
                    match lists.iter_mut().find(|l| l.target == c.target) {
                        Some(l) => l.parts.push((*arch, part.clone())),
                        None => lists.push(ListPlan {
                            service: c.service.clone(),
                            target: c.target.clone(),
                            parts: vec![(*arch, part.clone())],
                        }),
                    }
                    Copy {
                        target: part,
                        ..c.clone()
                    }
                })
                .collect();
            (*arch, copies)
        })
        .collect();
    (pushes, lists)
}

/// `host/repo/path:tag` -> (`host`, `repo/path`, `tag`).
fn split(reference: &str) -> (&str, &str, &str) {
    let host = registry::host(reference);
    let rest = reference
        .strip_prefix(host)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(reference);
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].find(':') {
        Some(i) => (host, &rest[..slash + i], &rest[slash + i + 1..]),
        None => (host, rest, "latest"),
    }
}

/// Where the registry API of a Docker host name answers (Docker Hub's is not `docker.io`).
fn api_host(host: &str) -> &str {
    if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    }
}

/// What was published: the list's reference and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub target: String,
    pub digest: String,
}

/// Puts each list of `plans` over the registry API, naming the manifests `pushed` reported
/// (a push that reported no digest is looked up by its tag). Blocking: run it on the
/// blocking pool. Every failure names the registry, the tag and the fix (exit 7).
pub fn publish(
    plans: &[ListPlan],
    pushed: &[Pushed],
    creds: &dyn Credentials,
    insecure: &Insecure,
    certs_root: &Path,
    origin: &str,
) -> anyhow::Result<Vec<Published>> {
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut out = vec![];
    for p in plans {
        let (host, repo, tag) = split(&p.target);
        let fail = |e: RegError| list_error(e, &p.target, host, origin);
        if !clients.contains_key(host) {
            let auth = creds.for_host(host)?;
            let c = Client::connect(api_host(host), insecure.covers(host), auth, certs_root)
                .map_err(fail)?;
            clients.insert(host.to_string(), c);
        }
        let client = clients.get_mut(host).expect("inserted above");
        let mut entries = vec![];
        for (arch, part) in &p.parts {
            let got = pushed.iter().find(|x| x.reference == *part);
            let (_, part_repo, part_tag) = split(part);
            let reference = got
                .and_then(|g| g.digest.clone())
                .unwrap_or_else(|| part_tag.to_string());
            let m = client
                .head_manifest(part_repo, &reference)
                .map_err(|e| match e {
                    RegError::NotFound { .. } => CdqError::new(
                        Kind::Registry,
                        format!(
                            "the registry `{host}` does not have the {arch} manifest of `{part}` that was just pushed"
                        ),
                    )
                    .hint("run `cdq push` again; if it happens again, check the registry's log and its garbage collection")
                    .into(),
                    e => fail(e),
                })?;
            entries.push(Entry {
                media_type: m.media_type,
                digest: m.digest,
                size: m.size,
                os: got.map_or_else(|| "linux".to_string(), |g| g.os.clone()),
                architecture: got.map_or_else(|| arch.to_string(), |g| g.arch.clone()),
            });
        }
        let built = list::build(&entries).map_err(|why| {
            anyhow::Error::new(CdqError::new(
                Kind::Registry,
                format!("cannot make the multi-arch tag `{}`: {why}", p.target),
            ).hint("push single-architecture images under the arch-suffixed tags (a multi-arch image cannot go into a list)"))
        })?;
        let digest = client
            .put_manifest(repo, tag, built.media_type, &built.body)
            .map_err(fail)?;
        out.push(Published {
            target: p.target.clone(),
            digest,
        });
    }
    Ok(out)
}

/// A failed list publication as product copy: what went wrong at which registry, the
/// registry's words as the cause, and the fix.
fn list_error(e: RegError, target: &str, host: &str, origin: &str) -> anyhow::Error {
    let again = "then run `cdq push` again (the images already there are not sent twice)";
    let (message, hint) = match &e {
        RegError::Unreachable(_) => (
            format!("cannot reach the registry `{host}` to publish the multi-arch tag `{target}`"),
            format!(
                "check that `{host}` is right ({origin}), that the registry is running and that this host reaches it (cdq connects itself: `HTTPS_PROXY`/`NO_PROXY` apply), {again}"
            ),
        ),
        RegError::Certificate(_) => (
            format!("cdq does not trust the certificate of the registry `{host}`"),
            format!(
                "put the registry's CA certificate at `/etc/docker/certs.d/{host}/ca.crt` (cdq reads it as the daemon does), or add `{host}` to `insecure-registries` in `/etc/docker/daemon.json` and restart Docker, {again}"
            ),
        ),
        RegError::BadFile { path, .. } => (
            format!(
                "cannot use `{}` to reach the registry `{host}`",
                path.display()
            ),
            format!("put a PEM certificate there (or remove it), {again}"),
        ),
        RegError::Unauthorized { .. } => (
            format!(
                "the registry `{host}` refused to let this host publish the multi-arch tag `{target}` (401: no or wrong credentials)"
            ),
            format!("log in with `docker login {host}` (cdq reads the same credentials), {again}"),
        ),
        RegError::Denied { .. } => (
            format!(
                "the registry `{host}` refused the multi-arch tag `{target}` (403: not allowed)"
            ),
            format!(
                "the account `docker login {host}` stored needs push rights on the repository, and the tag must not be immutable (Harbor: the project's tag immutability rules), {again}"
            ),
        ),
        RegError::NotFound { .. } => (
            format!("the registry `{host}` has no repository for the multi-arch tag `{target}`"),
            format!("check the registry prefix ({origin}), {again}"),
        ),
        RegError::Refused { status, .. } => (
            format!("the registry `{host}` refused the multi-arch tag `{target}` (HTTP {status})"),
            format!(
                "the registry must accept Docker manifest lists or OCI indexes (Harbor 2, distribution 2.3 and later do); its log says why, {again}"
            ),
        ),
        RegError::Protocol(_) => (
            format!(
                "the registry `{host}` answered the multi-arch tag `{target}` with something cdq does not understand"
            ),
            format!(
                "check that `{host}` is a registry (not a proxy's or a login page) and read its log, {again}"
            ),
        ),
    };
    anyhow::Error::new(e).context(CdqError::new(Kind::Registry, message).hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(service: &str, source: &str, target: &str) -> Copy {
        Copy {
            service: service.into(),
            source: source.into(),
            target: target.into(),
        }
    }

    #[test]
    fn suffixes_go_on_the_tag() {
        assert_eq!(
            suffixed("h:5000/cd/library/redis:7.2.11", Arch::Arm64),
            "h:5000/cd/library/redis:7.2.11-arm64"
        );
        assert_eq!(
            suffixed("h:5000/cd/redis", Arch::Amd64),
            "h:5000/cd/redis:latest-amd64"
        );
    }

    #[test]
    fn a_shared_name_gets_a_list_and_suffixed_pushes_a_per_arch_name_does_not() {
        let by_arch = vec![
            (
                Arch::Amd64,
                vec![
                    copy("redis", "redis:7.2.11", "h:5000/cd/library/redis:7.2.11"),
                    copy(
                        "mysql",
                        "cdq-local/mysql:2-amd64",
                        "h:5000/cd/cdq-local/mysql:2-amd64",
                    ),
                ],
            ),
            (
                Arch::Arm64,
                vec![
                    copy("redis", "redis:7.2.11", "h:5000/cd/library/redis:7.2.11"),
                    copy(
                        "mysql",
                        "cdq-local/mysql:2-arm64",
                        "h:5000/cd/cdq-local/mysql:2-arm64",
                    ),
                ],
            ),
        ];
        let (pushes, lists) = plan(&by_arch);
        assert_eq!(
            lists,
            vec![ListPlan {
                service: "redis".into(),
                target: "h:5000/cd/library/redis:7.2.11".into(),
                parts: vec![
                    (Arch::Amd64, "h:5000/cd/library/redis:7.2.11-amd64".into()),
                    (Arch::Arm64, "h:5000/cd/library/redis:7.2.11-arm64".into()),
                ],
            }]
        );
        assert_eq!(pushes[1].0, Arch::Arm64);
        assert_eq!(
            pushes[1].1,
            vec![
                copy(
                    "redis",
                    "redis:7.2.11",
                    "h:5000/cd/library/redis:7.2.11-arm64"
                ),
                copy(
                    "mysql",
                    "cdq-local/mysql:2-arm64",
                    "h:5000/cd/cdq-local/mysql:2-arm64"
                ),
            ]
        );
    }

    #[test]
    fn one_architecture_pushes_as_it_always_did() {
        let by_arch = vec![(
            Arch::Amd64,
            vec![copy(
                "redis",
                "redis:7.2.11",
                "h:5000/cd/library/redis:7.2.11",
            )],
        )];
        let (pushes, lists) = plan(&by_arch);
        assert_eq!(pushes, by_arch);
        assert!(lists.is_empty());
    }

    #[test]
    fn references_split_into_host_repository_and_tag() {
        assert_eq!(
            split("127.0.0.1:5000/cd/library/redis:7.2.11"),
            ("127.0.0.1:5000", "cd/library/redis", "7.2.11")
        );
        assert_eq!(
            split("h.example.com/a/b"),
            ("h.example.com", "a/b", "latest")
        );
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }

    #[test]
    fn each_list_failure_names_the_registry_the_tag_and_a_fix() {
        let t = "h:5000/cd/library/redis:7";
        let cases = [
            (
                RegError::Unreachable("connection refused".into()),
                "cannot reach the registry `h:5000`",
            ),
            (
                RegError::Certificate("UnknownIssuer".into()),
                "does not trust the certificate of the registry `h:5000`",
            ),
            (
                RegError::Unauthorized {
                    said: "UNAUTHORIZED".into(),
                },
                "(401: no or wrong credentials)",
            ),
            (
                RegError::Denied {
                    said: "DENIED".into(),
                },
                "(403: not allowed)",
            ),
            (
                RegError::Refused {
                    status: 400,
                    said: "MANIFEST_INVALID".into(),
                },
                "(HTTP 400)",
            ),
            (
                RegError::Protocol("bad".into()),
                "something cdq does not understand",
            ),
        ];
        for (e, want) in cases {
            let err = list_error(e, t, "h:5000", "the image set");
            let c = err.downcast_ref::<CdqError>().expect("a CdqError on top");
            assert_eq!(c.kind.exit_code(), 7);
            assert!(c.message.contains(want), "{}", c.message);
            assert!(c.message.contains("`h:5000`"), "{}", c.message);
            assert!(
                c.hint.as_deref().unwrap().contains("cdq push"),
                "{:?}",
                c.hint
            );
        }
    }
}
