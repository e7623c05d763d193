//! The templates, per-service config templates and per-arch image data, embedded in the
//! binary so one file is all a presales engineer carries. `--templates DIR` overrides any
//! of them: DIR mirrors the repository layout (`DIR/templates/...`, `DIR/confd/...`,
//! `DIR/compose/...`) and a file found there replaces the embedded one of the same path.
//!
//! Owns lookup only; it does not render.

use std::path::{Path, PathBuf};

use anyhow::Context;
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static CONFD: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/confd");
static COMPOSE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/compose");

#[derive(Debug, Clone, Default)]
pub struct Assets {
    overrides: Option<PathBuf>,
}

impl Assets {
    pub fn new(overrides: Option<PathBuf>) -> Self {
        Assets { overrides }
    }

    fn root(top: &str) -> &'static Dir<'static> {
        match top {
            "templates" => &TEMPLATES,
            "confd" => &CONFD,
            "compose" => &COMPOSE,
            other => panic!("no embedded asset tree `{other}`"),
        }
    }

    /// The text of `top/rel` (e.g. `compose`, `amd64.yaml`), the override winning.
    pub fn read(&self, top: &str, rel: &str) -> anyhow::Result<String> {
        if let Some(dir) = &self.overrides {
            let p = dir.join(top).join(rel);
            if p.is_file() {
                return std::fs::read_to_string(&p)
                    .with_context(|| format!("reading override `{}`", p.display()));
            }
        }
        let f = Self::root(top)
            .get_file(rel)
            .with_context(|| format!("no template `{top}/{rel}`"))?;
        f.contents_utf8()
            .map(str::to_string)
            .with_context(|| format!("`{top}/{rel}` is not UTF-8"))
    }

    /// Every file path under `top/sub` (relative to `top`), embedded and overridden, sorted.
    pub fn list(&self, top: &str, sub: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = Self::root(top).get_dir(sub) {
            collect_embedded(d, &mut out);
        }
        if let Some(dir) = &self.overrides {
            let base = dir.join(top);
            collect_disk(&base, &base.join(sub), &mut out);
        }
        out.sort();
        out.dedup();
        out
    }
}

fn collect_embedded(d: &Dir<'static>, out: &mut Vec<String>) {
    for f in d.files() {
        out.push(f.path().to_string_lossy().into_owned());
    }
    for sub in d.dirs() {
        collect_embedded(sub, out);
    }
}

fn collect_disk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_disk(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_listed_and_read() {
        let a = Assets::default();
        let files = a.list("confd", "redis");
        assert!(
            files.contains(&"redis/redis.conf.j2".to_string()),
            "{files:?}"
        );
        assert!(
            a.read("compose", "amd64.yaml")
                .unwrap()
                .contains("arch: amd64")
        );
    }

    #[test]
    fn override_dir_wins_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("confd/redis")).unwrap();
        std::fs::write(dir.path().join("confd/redis/redis.conf.j2"), "custom").unwrap();
        std::fs::write(dir.path().join("confd/redis/extra.conf"), "x").unwrap();
        let a = Assets::new(Some(dir.path().to_path_buf()));
        assert_eq!(a.read("confd", "redis/redis.conf.j2").unwrap(), "custom");
        assert!(
            a.list("confd", "redis")
                .contains(&"redis/extra.conf".to_string())
        );
    }
}
