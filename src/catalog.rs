//! The per-arch image catalogue (`compose/<arch>.yaml`): which image each service uses in
//! each image set, and the facts that differ by image (uid, memory, host needs). Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::assets::Assets;
use crate::error::CdqError;
use crate::imageref::{Pins, with_tag};
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
    /// Loads `compose/<arch>.yaml` and picks the references for `set`, applying the user's
    /// pins: a whole reference (`image_refs`) wins, else a tag (`versions`) replaces the
    /// catalogue's tag, then a registry rewrites it. The local kit is versioned as a set, so
    /// pins do not apply to it (a pinned tag would point at nothing).
    pub fn load(
        assets: &Assets,
        arch: Arch,
        set: &ImageSet,
        versions: &Pins,
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
            let (image, needs) = match (set, versions.refs.get(&s)) {
                (ImageSet::Local, _) => (e.local.image.clone(), e.local.needs.clone()),
                (ImageSet::LocalRegistry(registry), _) => {
                    (registry.rewrite(&e.local.image), e.local.needs.clone())
                }
                (_, Some(whole)) => (whole.clone(), e.official.needs.clone()),
                (ImageSet::Official, None) => (
                    with_tag(&e.official.image, versions.tag(s)),
                    e.official.needs.clone(),
                ),
                (ImageSet::Registry(registry), None) => (
                    registry.rewrite(&with_tag(&e.official.image, versions.tag(s))),
                    e.official.needs.clone(),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_kit_from_a_registry_keeps_its_path_or_goes_flat() {
        let a = Assets::default();
        let none = Pins::default();
        let mut r = crate::imageref::Registry::from("127.0.0.1:5000/cd");
        let c = Catalog::load(&a, Arch::Arm64, &ImageSet::LocalRegistry(r.clone()), &none).unwrap();
        assert_eq!(
            c.image(Service::Redis),
            "127.0.0.1:5000/cd/cdq-local/redis:2-arm64"
        );
        r.layout = crate::imageref::Layout::Flat;
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::LocalRegistry(r), &none).unwrap();
        assert_eq!(c.image(Service::Redis), "127.0.0.1:5000/cd/redis:2-amd64");
    }

    #[test]
    fn both_arches_load_for_every_set() {
        let a = Assets::default();
        let none = Pins::default();
        for arch in [Arch::Amd64, Arch::Arm64] {
            for set in [
                ImageSet::Official,
                ImageSet::Local,
                ImageSet::Registry("h:5000/cd".into()),
            ] {
                let c = Catalog::load(&a, arch, &set, &none).unwrap();
                assert_eq!(c.images.len(), 9);
            }
        }
        let c = Catalog::load(
            &a,
            Arch::Arm64,
            &ImageSet::Registry("h:5000/cd".into()),
            &none,
        )
        .unwrap();
        assert_eq!(c.image(Service::Kafka), "h:5000/cd/apache/kafka:4.3.1");
        assert_eq!(c.image(Service::Mysql), "h:5000/cd/library/mysql:8.4.10");
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Local, &none).unwrap();
        assert_eq!(c.image(Service::Redis), "cdq-local/redis:2-amd64");
        assert_eq!(c.images[&Service::Elasticsearch].needs, Needs::default());
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Official, &none).unwrap();
        assert_eq!(
            c.images[&Service::Elasticsearch].needs.vm_max_map_count,
            Some(262144)
        );
    }

    /// Issue 12: one version per service on both arches (the CD images aside), every
    /// reference in the catalogue on a supported line, the kit references at the same version.
    #[test]
    fn both_arches_pin_the_same_versions() {
        let a = Assets::default();
        let none = Pins::default();
        let amd = Catalog::load(&a, Arch::Amd64, &ImageSet::Official, &none).unwrap();
        let arm = Catalog::load(&a, Arch::Arm64, &ImageSet::Official, &none).unwrap();
        for s in Service::ALL {
            if matches!(s, Service::Server | Service::Ucenter) {
                continue;
            }
            assert_eq!(amd.image(s), arm.image(s), "{s}");
            assert!(!amd.image(s).contains("bitnami"), "{s}");
        }
        assert_eq!(amd.image(Service::Mysql), "mysql:8.4.10");
        assert_eq!(amd.image(Service::Kafka), "apache/kafka:4.3.1");
        assert_eq!(amd.images[&Service::Kafka].uid, 1000);
        assert!(amd.image(Service::Redis).starts_with("redis:7.2."));
        for (arch, c) in [("amd64", &amd), ("arm64", &arm)] {
            let local = Catalog::load(&a, c.arch, &ImageSet::Local, &none).unwrap();
            for s in Service::ALL {
                assert_eq!(local.image(s), format!("cdq-local/{s}:2-{arch}"));
                assert_eq!(local.images[&s].uid, c.images[&s].uid, "{s}");
            }
        }
    }

    #[test]
    fn pins_replace_a_tag_or_the_whole_reference() {
        let a = Assets::default();
        let mut pins = Pins::default();
        pins.tags.insert(Service::Redis, "7.2.12".into());
        pins.refs
            .insert(Service::Mysql, "harbor.example.com/dba/mysql:8.4.10".into());
        let mirror = ImageSet::Registry("mirror.example.com".into());
        let c = Catalog::load(&a, Arch::Amd64, &mirror, &pins).unwrap();
        assert_eq!(
            c.image(Service::Redis),
            "mirror.example.com/library/redis:7.2.12"
        );
        assert_eq!(
            c.image(Service::Mysql),
            "harbor.example.com/dba/mysql:8.4.10"
        );
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Official, &pins).unwrap();
        assert_eq!(
            c.image(Service::Mysql),
            "harbor.example.com/dba/mysql:8.4.10"
        );
        // the uid and needs stay the service's contract whoever supplies the image
        assert_eq!(c.images[&Service::Mysql].uid, 999);
        let c = Catalog::load(&a, Arch::Amd64, &ImageSet::Local, &pins).unwrap();
        assert_eq!(c.image(Service::Mysql), "cdq-local/mysql:2-amd64");
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
        let c = Catalog::load(&a, Arch::Arm64, &ImageSet::Official, &Pins::default()).unwrap();
        let redis = &c.images[&Service::Redis].compat;
        assert_eq!((redis.clone3, redis.pages_64k), (true, Pages64k::Ok));
        let c = Catalog::load(
            &a,
            Arch::Arm64,
            &ImageSet::Registry("h:5000/cd".into()),
            &Pins::default(),
        )
        .unwrap();
        assert_eq!(c.images[&Service::Redis].compat, *redis);
    }
}
