//! Image references: how a registry prefix maps an upstream reference (the upstream path by
//! default, or a flat layout), and what a user pinned per service in `cdq.yaml` (a tag under
//! `versions`, or a whole reference under `image_refs`). Pure string work; it must not read
//! files or settings (settings builds these values, the catalogue applies them).

use std::collections::BTreeMap;
use std::fmt;

use crate::services::Service;

/// How a registry prefix maps an upstream reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `<prefix>/<upstream path>`: `mysql:8.4.10` -> `<prefix>/library/mysql:8.4.10`,
    /// `apache/kafka:4.3.1` -> `<prefix>/apache/kafka:4.3.1`. What a Docker Hub pull-through
    /// mirror or a Harbor proxy-cache project serves, since both keep the upstream path.
    #[default]
    Upstream,
    /// `<prefix>/<last path part>`: `apache/kafka:4.3.1` -> `<prefix>/kafka:4.3.1`. For a
    /// registry filled by hand (`docker tag` + `docker push` into one project).
    Flat,
}

impl Layout {
    pub fn parse(text: &str) -> Option<Layout> {
        match text {
            "upstream" => Some(Layout::Upstream),
            "flat" => Some(Layout::Flat),
            _ => None,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Upstream => "upstream",
            Layout::Flat => "flat",
        })
    }
}

/// A private registry: every official reference rewritten under `prefix` in `layout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub prefix: String,
    pub layout: Layout,
}

impl From<&str> for Registry {
    fn from(prefix: &str) -> Registry {
        Registry {
            prefix: prefix.trim_end_matches('/').to_string(),
            layout: Layout::default(),
        }
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

impl Registry {
    /// `reference` (an upstream reference from `compose/<arch>.yaml`) under this registry.
    pub fn rewrite(&self, reference: &str) -> String {
        let path = match self.layout {
            Layout::Upstream => upstream_path(reference),
            Layout::Flat => last_part(reference).to_string(),
        };
        format!("{}/{path}", self.prefix)
    }
}

/// What the user pinned per service. Settings validates both maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// `versions.<service>`: replaces only the tag of the catalogue's reference.
    pub tags: BTreeMap<Service, String>,
    /// `image_refs.<service>`: replaces the whole reference (registry, path and tag), used
    /// as written in every image set but the local kit.
    pub refs: BTreeMap<Service, String>,
}

impl Pins {
    pub fn tag(&self, s: Service) -> Option<&String> {
        self.tags.get(&s)
    }
}

/// Why `text` is not a whole image reference cdq accepts, or `None` when it is one.
pub fn reference_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("the reference is empty".into());
    }
    if text.contains(char::is_whitespace) || text.contains("://") {
        return Some(format!("`{text}` is not an image reference"));
    }
    let name = &text[text.rfind('/').map_or(0, |i| i + 1)..];
    if !name.contains(':') && !text.contains('@') {
        return Some(format!(
            "`{text}` has no tag (a missing tag means `latest`, which changes under you)"
        ));
    }
    None
}

/// Replaces the tag of `reference` (keeping a registry port intact).
pub fn with_tag(reference: &str, tag: Option<&String>) -> String {
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

/// The repository path a registry that mirrors Docker Hub serves `reference` under: without
/// a registry host, with `library/` for an official image.
pub fn upstream_path(reference: &str) -> String {
    let mut parts: Vec<&str> = reference.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0);
        }
    }
    if parts.len() == 1 {
        format!("library/{}", parts[0])
    } else {
        parts.join("/")
    }
}

pub fn last_part(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_replace_only_the_tag() {
        assert_eq!(
            with_tag("mysql:8.4.10", Some(&"8.4.11".into())),
            "mysql:8.4.11"
        );
        assert_eq!(
            with_tag("reg:5000/a/b:1", Some(&"2".into())),
            "reg:5000/a/b:2"
        );
        assert_eq!(
            with_tag("reg:5000/a/b", Some(&"2".into())),
            "reg:5000/a/b:2"
        );
        assert_eq!(with_tag("mysql:8.4.10", None), "mysql:8.4.10");
    }

    #[test]
    fn upstream_layout_keeps_the_docker_hub_path() {
        let r = Registry::from("mirror.example.com/");
        assert_eq!(
            r.rewrite("mysql:8.4.10"),
            "mirror.example.com/library/mysql:8.4.10"
        );
        assert_eq!(
            r.rewrite("apache/kafka:4.3.1"),
            "mirror.example.com/apache/kafka:4.3.1"
        );
        assert_eq!(
            r.rewrite("docker.elastic.co/elasticsearch/elasticsearch:8.19.14"),
            "mirror.example.com/elasticsearch/elasticsearch:8.19.14"
        );
        assert_eq!(r.rewrite("localhost/a:1"), "mirror.example.com/library/a:1");
    }

    #[test]
    fn flat_layout_keeps_the_last_part() {
        let r = Registry {
            prefix: "harbor.example.com:5000/cd".into(),
            layout: Layout::Flat,
        };
        assert_eq!(
            r.rewrite("apache/kafka:4.3.1"),
            "harbor.example.com:5000/cd/kafka:4.3.1"
        );
        assert_eq!(
            r.rewrite("mysql:8.4.10"),
            "harbor.example.com:5000/cd/mysql:8.4.10"
        );
    }

    #[test]
    fn references_need_a_tag_or_digest() {
        assert_eq!(
            reference_problem("harbor.example.com:5000/dba/mysql:8.4.10"),
            None
        );
        assert_eq!(reference_problem("mysql@sha256:abc"), None);
        assert!(
            reference_problem("harbor.example.com:5000/dba/mysql")
                .unwrap()
                .contains("no tag")
        );
        assert!(reference_problem("a b:1").is_some());
        assert!(reference_problem("https://x/y:1").is_some());
        assert!(reference_problem("").is_some());
        assert_eq!(Layout::parse("flat"), Some(Layout::Flat));
        assert_eq!(Layout::parse("Flat"), None);
    }
}
