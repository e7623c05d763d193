//! The per-arch image catalogue (`compose/<arch>.yaml`): which image each service uses in
//! each image set, and the facts that differ by image (uid, memory, host needs). Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::assets::Assets;
use crate::error::CdqError;
use crate::services::{Arch, Service};
use crate::settings::ImageSet;
use crate::yaml;

/// Host settings an image needs; preflight checks only what the chosen images need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    pub vm_max_map_count: Option<u64>,
    /// Open files the process needs; rendered as the container's `nofile` ulimit.
    pub nofile: Option<u64>,
    /// Needs unlimited locked memory (Elasticsearch's `bootstrap.memory_lock`).
    #[serde(default)]
    pub memlock: bool,
}

/// Whether an image runs on a kernel with 64K pages (Kunpeng and Phytium builds of Kylin and
/// openEuler): a jemalloc built for 4K pages aborts there ("Unsupported system page size").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pages64k {
    /// Known to run (a JVM, a Go binary, or jemalloc built with `--with-lg-page=16`).
    Ok,
    /// Known to abort at start.
    Aborts,
    /// Nobody has checked: preflight warns rather than promises.
    #[default]
    Unknown,
}

/// What an image needs from a Xinchuang host (the `compat:` section of `compose/<arch>.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Compat {
    /// Its glibc is 2.34 or newer, so it starts threads with `clone3`, which Docker before
    /// 20.10.10 (libseccomp before 2.5.2) answers with EPERM.
    #[serde(default)]
    pub clone3: bool,
    #[serde(default)]
    pub pages_64k: Pages64k,
    /// What to run instead on a 64K-page host, when `pages_64k` is not `ok`.
    pub alternative: Option<String>,
}

/// `compat:` per image set; a registry prefix set uses the official images' entries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompatFile {
    #[serde(default)]
    official: BTreeMap<Service, Compat>,
    #[serde(default)]
    local: BTreeMap<Service, Compat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageEntry {
    image: String,
    #[serde(default)]
    needs: Needs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    official: ImageEntry,
    local: ImageEntry,
    uid: u32,
    memory_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    arch: Arch,
    services: BTreeMap<Service, ServiceEntry>,
    #[serde(default)]
    compat: CompatFile,
}

/// What cdq needs to know about one service's image in the chosen set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    pub image: String,
    pub uid: u32,
    pub memory_mb: u64,
    pub needs: Needs,
    pub compat: Compat,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub arch: Arch,
    pub images: BTreeMap<Service, ImageFacts>,
}

impl Catalog {
    /// Loads `compose/<arch>.yaml` and picks the references for `set`, applying tag overrides.
    pub fn load(
        assets: &Assets,
        arch: Arch,
        set: &ImageSet,
        versions: &BTreeMap<Service, String>,
    ) -> anyhow::Result<Catalog> {
        let file = format!("{arch}.yaml");
        let text = assets.read("compose", &file)?;
        let parsed: CatalogFile = yaml::from_str(&text).map_err(|e| {
            CdqError::usage(format!(
                "`compose/{file}` line {}: {}",
                e.line.unwrap_or(0),
                e.message
            ))
            .hint("fix the override under `--templates`, or drop it to use the built-in one")
        })?;
        if parsed.arch != arch {
            return Err(
                CdqError::usage(format!("`compose/{file}` says `arch: {}`", parsed.arch)).into(),
            );
        }
        let mut images = BTreeMap::new();
        for s in Service::ALL {
            let e = parsed.services.get(&s).ok_or_else(|| {
                CdqError::usage(format!("`compose/{file}` has no entry for `{s}`"))
            })?;
            let (image, needs) = match set {
                ImageSet::Official => (
                    with_tag(&e.official.image, versions.get(&s)),
                    e.official.needs.clone(),
                ),
                ImageSet::Registry(prefix) => (
                    format!(
                        "{prefix}/{}",
                        last_part(&with_tag(&e.official.image, versions.get(&s)))
                    ),
                    e.official.needs.clone(),
                ),
                // The kit is versioned as a set; a tag override would point at nothing.
                ImageSet::Local => (e.local.image.clone(), e.local.needs.clone()),
            };
            let compat = match set {
                ImageSet::Local => parsed.compat.local.get(&s),
                _ => parsed.compat.official.get(&s),
            };
            images.insert(
                s,
                ImageFacts {
                    image,
                    uid: e.uid,
                    memory_mb: e.memory_mb,
                    needs,
                    compat: compat.cloned().unwrap_or_default(),
                },
            );
        }
        Ok(Catalog { arch, images })
    }

    pub fn image(&self, s: Service) -> &str {
        &self.images[&s].image
    }
}

/// Replaces the tag of `reference` (keeping a registry port intact).
fn with_tag(reference: &str, tag: Option<&String>) -> String {
    let Some(tag) = tag else {
        return reference.to_string();
    };
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let base = match reference[slash..].find(':') {
        Some(i) => &reference[..slash + i],
        None => reference,
    };
    format!("{base}:{tag}")
}

fn last_part(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_prefixes() {
        assert_eq!(
            with_tag("mysql:5.7.44", Some(&"8.0.1".into())),
            "mysql:8.0.1"
        );
        assert_eq!(
            with_tag("reg:5000/a/b:1", Some(&"2".into())),
            "reg:5000/a/b:2"
        );
        assert_eq!(
            with_tag("reg:5000/a/b", Some(&"2".into())),
            "reg:5000/a/b:2"
        );
        assert_eq!(last_part("bitnami/kafka:3.6.2"), "kafka:3.6.2");
    }

    #[test]
    fn both_arches_load_for_every_set() {
        let a = Assets::default();
        for arch in [Arch::Amd64, Arch::Arm64] {
            for set in [
                ImageSet::Official,
                ImageSet::Local,
                ImageSet::Registry("h:5000/cd".into()),
            ] {
                let c = Catalog::load(&a, arch, &set, &BTreeMap::new()).unwrap();
                assert_eq!(c.images.len(), 9);
            }
        }
        let c = Catalog::load(
            &a,
            Arch::Arm64,
            &ImageSet::Registry("h:5000/cd".into()),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(c.image(Service::Kafka), "h:5000/cd/kafka:3.6.2");
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Local, &BTreeMap::new()).unwrap();
        assert_eq!(c.image(Service::Redis), "cdq-local/redis:1-amd64");
        assert_eq!(c.images[&Service::Elasticsearch].needs, Needs::default());
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Official, &BTreeMap::new()).unwrap();
        assert_eq!(
            c.images[&Service::Elasticsearch].needs.vm_max_map_count,
            Some(262144)
        );
    }

    #[test]
    fn compat_data_is_there_for_every_image_of_both_arches() {
        let a = Assets::default();
        for arch in [Arch::Amd64, Arch::Arm64] {
            for set in [ImageSet::Official, ImageSet::Local] {
                let text = a.read("compose", &format!("{arch}.yaml")).unwrap();
                let parsed: CatalogFile = yaml::from_str(&text).unwrap();
                let data = match set {
                    ImageSet::Local => &parsed.compat.local,
                    _ => &parsed.compat.official,
                };
                for s in Service::ALL {
                    assert!(
                        data.contains_key(&s),
                        "{arch} {set}: no compat entry for {s}"
                    );
                }
            }
        }
        // The official Redis builds jemalloc for 64K pages on arm64 and is on bookworm.
        let c = Catalog::load(&a, Arch::Arm64, &ImageSet::Official, &BTreeMap::new()).unwrap();
        let redis = &c.images[&Service::Redis].compat;
        assert_eq!((redis.clone3, redis.pages_64k), (true, Pages64k::Ok));
        let c = Catalog::load(
            &a,
            Arch::Arm64,
            &ImageSet::Registry("h:5000/cd".into()),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(c.images[&Service::Redis].compat, *redis);
    }
}
