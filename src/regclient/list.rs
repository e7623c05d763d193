//! The multi-arch tag's body: a Docker manifest list (or an OCI index when an entry is an OCI
//! manifest) naming each architecture's manifest by digest, size and `platform`. Pure.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What a HEAD of a manifest asks for: every single-image and list type cdq can put in a list.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";

/// One architecture's manifest as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub os: String,
    /// Docker's spelling (`amd64`, `arm64`).
    pub architecture: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a str,
    platform: Platform<'a>,
}

#[derive(Serialize)]
struct Platform<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

/// A built list: its media type (the `Content-Type` of the PUT), bytes and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub media_type: &'static str,
    pub body: Vec<u8>,
    pub digest: String,
}

/// The list naming `entries` (sorted by architecture, so the same images make the same
/// digest). An entry that is itself a list, or of a type cdq does not know, is refused with
/// its digest and type.
pub fn build(entries: &[Entry]) -> Result<Built, String> {
    if let Some(e) = entries
        .iter()
        .find(|e| e.media_type != DOCKER_MANIFEST && e.media_type != OCI_MANIFEST)
    {
        return Err(format!(
            "`{}` is a `{}`, not a single-image manifest",
            e.digest, e.media_type
        ));
    }
    let media_type = if entries.iter().all(|e| e.media_type == DOCKER_MANIFEST) {
        DOCKER_LIST
    } else {
        OCI_INDEX
    };
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.architecture.cmp(&b.architecture));
    let list = List {
        schema_version: 2,
        media_type,
        manifests: sorted
            .into_iter()
            .map(|e| Descriptor {
                media_type: &e.media_type,
                size: e.size,
                digest: &e.digest,
                platform: Platform {
                    architecture: &e.architecture,
                    os: &e.os,
                    variant: variant(&e.architecture),
                },
            })
            .collect(),
    };
    let body = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
    let digest = digest_of(&body);
    Ok(Built {
        media_type,
        body,
        digest,
    })
}

/// The variant Docker and containerd give an architecture that has one by convention
/// (`arm64` is `v8`), so a `--platform linux/arm64/v8` pull matches as well as a plain one.
fn variant(architecture: &str) -> Option<&'static str> {
    (architecture == "arm64").then_some("v8")
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, media_type: &str) -> Entry {
        Entry {
            media_type: media_type.into(),
            digest: format!(
                "sha256:{}",
                if arch == "amd64" { "a" } else { "b" }.repeat(64)
            ),
            size: if arch == "amd64" { 1573 } else { 1574 },
            os: "linux".into(),
            architecture: arch.into(),
        }
    }

    #[test]
    fn docker_manifests_make_a_docker_list_with_platforms_sorted() {
        let b = build(&[
            entry("arm64", DOCKER_MANIFEST),
            entry("amd64", DOCKER_MANIFEST),
        ])
        .unwrap();
        assert_eq!(b.media_type, DOCKER_LIST);
        let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST,
                "manifests": [
                    {
                        "mediaType": DOCKER_MANIFEST,
                        "size": 1573,
                        "digest": format!("sha256:{}", "a".repeat(64)),
                        "platform": { "architecture": "amd64", "os": "linux" }
                    },
                    {
                        "mediaType": DOCKER_MANIFEST,
                        "size": 1574,
                        "digest": format!("sha256:{}", "b".repeat(64)),
                        "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" }
                    }
                ]
            })
        );
        assert_eq!(b.digest, digest_of(&b.body));
        let again = build(&[
            entry("amd64", DOCKER_MANIFEST),
            entry("arm64", DOCKER_MANIFEST),
        ])
        .unwrap();
        assert_eq!(
            again.digest, b.digest,
            "the order of the pushes does not matter"
        );
    }

    #[test]
    fn an_oci_manifest_makes_an_oci_index() {
        let b = build(&[
            entry("amd64", OCI_MANIFEST),
            entry("arm64", DOCKER_MANIFEST),
        ])
        .unwrap();
        assert_eq!(b.media_type, OCI_INDEX);
        let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"][0]["mediaType"], OCI_MANIFEST);
    }

    #[test]
    fn a_list_is_not_an_entry() {
        let e = build(&[entry("amd64", DOCKER_LIST)]).unwrap_err();
        assert!(e.contains("not a single-image manifest"), "{e}");
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
