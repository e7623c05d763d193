//! Real-daemon tests of `cdq bundle save|load` and `cdq up --bundle` (issue 6's must-shows),
//! driving the built binary against the local Docker engine.
//!
//! Other tests use the `cdq-local/*` kit tags at the same time, so these never remove them.
//! Instead each test tags a kit image under a prefix of its own
//! (`cdqbt-bundle-<pid>-<n>-<nanos>/library/redis:7.2.11`) and runs cdq with `--images <prefix>`
//! (a registry prefix rewrites the official reference `redis:7.2.11` to
//! `<prefix>/library/redis:7.2.11`, the upstream path) and `services: [redis]`. Removing that tag is an
//! untag: the image stays (the kit tag still holds it), so "the load restored it with the
//! same id" is checked on the tag. A [`Guard`] (a `tests/common` [`Sandbox`] whose project
//! name is also the prefix) runs `cdq down`, removes whatever still carries the project's
//! label and untags, pass or fail.

mod common;

use common::{Sandbox, docker};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// The image id a reference points at, or None.
fn image_id(reference: &str) -> Option<String> {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    (o.code == Some(0)).then(|| o.stdout.trim().to_string())
}

/// One test's [`Sandbox`] (project `cdqbt-bundle-…`, which is also the image prefix, with
/// `--images <prefix>`), plus the tag it made; `cdq down`, removal by label and untagging
/// on drop.
struct Guard {
    sb: Sandbox,
    tags: Vec<String>,
}

impl Deref for Guard {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Guard {
    /// Tags `kit` as `<prefix>/library/redis:7.2.11` (where a registry prefix puts the
    /// official redis, upstream layout) and writes a `cdq.yaml` with only redis.
    fn new(kit: &str) -> Guard {
        let sb = Sandbox::new("cdqbt", "bundle").down_on_drop("5");
        let prefix = sb.project().to_string();
        let g = Guard {
            sb: sb.flags(&["--images", &prefix]),
            tags: vec![format!("{prefix}/library/redis:7.2.11")],
        };
        std::fs::create_dir(g.dir()).unwrap();
        g.write_config("services: [redis]\n");
        assert!(
            image_id(kit).is_some(),
            "the kit image `{kit}` is missing: run scripts/build-local-images.sh"
        );
        let o = docker(&["tag", kit, &g.tags[0]]);
        assert_eq!(o.code, Some(0), "{o}");
        g
    }

    fn reference(&self) -> &str {
        &self.tags[0]
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    fn untag(&self) {
        let o = docker(&["rmi", self.reference()]);
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stdout.contains("Untagged"), "{o}");
        assert!(
            !o.stdout.contains("Deleted"),
            "only untagged, the kit tag keeps the image: {o}"
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.sb.teardown();
        for t in &self.tags {
            let _ = docker(&["rmi", t]);
        }
    }
}

/// A copy of `bundle` damaged by `f`.
fn damaged(bundle: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(bundle).unwrap();
    f(&mut bytes);
    let out = bundle.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn round_trip_restores_the_image_and_up_reaches_healthy() {
    let g = Guard::new("cdq-local/redis:2-amd64");
    let id = image_id(g.reference()).unwrap();
    let bundle = g.path("redis.bundle");
    let bundle_arg = bundle.to_str().unwrap();

    let o = g.cdq(&["bundle", "save", "--arch", "amd64", "-o", bundle_arg]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains(&format!("saved 1 amd64 images to `{}`", bundle.display())),
        "{o}"
    );
    eprintln!("save: {:.1}s", o.took.as_secs_f64());

    // Everything present: verified, nothing loaded.
    let o = g.cdq(&["bundle", "load", bundle_arg]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains("all 1 images already present; nothing loaded"),
        "{o}"
    );
    assert!(!o.stderr.contains("loading:"), "{o}");
    eprintln!("load with everything present: {:.2}s", o.took.as_secs_f64());

    g.untag();
    assert_eq!(image_id(g.reference()), None);

    // Damaged copies are refused before anything is loaded: the tag stays absent.
    let size = std::fs::metadata(&bundle).unwrap().len() as usize;
    let flipped = damaged(&bundle, "flipped.bundle", |b| b[size / 2] ^= 0x40);
    let short = damaged(&bundle, "short.bundle", |b| b.truncate(size - 4096));
    for (bad, what) in [
        (&flipped, "failed its checksum; it holds"),
        (&short, "failed its checksum: the file is cut short"),
    ] {
        let o = g.cdq(&["bundle", "load", bad.to_str().unwrap()]);
        assert_eq!(o.code, Some(2), "{o}");
        let first = o.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!(
                "error: bundle `{}` is damaged: chunk ",
                bad.display()
            )),
            "{o}"
        );
        assert!(first.contains(what), "{o}");
        assert!(o.stderr.contains("\nhint: copy the bundle again"), "{o}");
        assert_eq!(image_id(g.reference()), None, "nothing was loaded: {o}");
    }

    let o = g.cdq(&["bundle", "load", bundle_arg]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains(&format!("  loaded   {}  ", g.reference())),
        "{o}"
    );
    assert!(o.stderr.contains("loaded 1 images"), "{o}");
    assert_eq!(image_id(g.reference()).as_deref(), Some(id.as_str()));
    eprintln!("load: {:.1}s", o.took.as_secs_f64());

    // `up --bundle` loads, then deploys.
    g.untag();
    let o = g.cdq(&[
        "up",
        "--bundle",
        bundle_arg,
        "--ip",
        "127.0.0.1",
        "--skip-preflight",
        "--progress",
        "plain",
    ]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stderr.contains("loaded 1 images"), "{o}");
    assert!(o.stderr.contains("redis: healthy after"), "{o}");
    assert_eq!(image_id(g.reference()).as_deref(), Some(id.as_str()));
    let o = g.cdq(&["status"]);
    assert_eq!(o.code, Some(0), "{o}");
    let o = g.cdq(&["down", "--timeout", "5"]);
    assert_eq!(o.code, Some(0), "{o}");
}

#[test]
fn an_arm64_bundle_is_refused_on_this_amd64_host_without_arch() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test needs an amd64 host"
    );
    common::ensure_arm64_kit(&["redis"]);
    let g = Guard::new(&common::arm64_kit_image("redis"));
    let bundle = g.path("arm64.bundle");
    let bundle_arg = bundle.to_str().unwrap();
    let o = g.cdq(&["bundle", "save", "--arch", "arm64", "-o", bundle_arg]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stderr.contains("saved 1 arm64 images"), "{o}");

    let o = g.cdq(&["bundle", "load", bundle_arg]);
    assert_eq!(o.code, Some(2), "{o}");
    assert_eq!(
        o.stderr,
        format!(
            "error: bundle `{}` holds arm64 images, and this host is amd64\n\
             hint: load it on an arm64 host, or pass `--arch arm64` to load it anyway (its images then run only under emulation)\n",
            bundle.display()
        )
    );

    let o = g.cdq(&["bundle", "load", "--arch", "arm64", bundle_arg]);
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr
            .contains("all 1 images already present; nothing loaded"),
        "{o}"
    );
}
