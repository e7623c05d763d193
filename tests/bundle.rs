//! Bundle save/load against the fake engine: the format round trip, shared layers stored
//! once, and every refusal (flipped byte, cut short, damaged manifest, other arch) happening
//! before the engine is asked to load anything. The fake records every `import_images`
//! call, so "nothing was loaded" is an assertion on its call log, not on timing.
//! The same scenarios on the real daemon are in `tests/bundle_real.rs`.

use std::path::{Path, PathBuf};

use cdq::bundle::{self, Bundle, Want};
use cdq::engine::Engine;
use cdq::engine::fake::FakeEngine;
use cdq::services::Arch;
use cdq::ui::Ui;

const UI: Ui = Ui {
    verbose: 0,
    yes: true,
};

/// Deterministic bytes that compress somewhat, like a layer tar.
fn layer(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 3 == 0 {
                b'a' + (x % 4) as u8
            } else {
                (x % 251) as u8
            }
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    source: FakeEngine,
    images: Vec<(String, String)>,
}

/// Three images sharing a 17 MiB base layer (so the payload spans two 16 MiB chunks), each
/// with its own layer.
async fn saved(arch: &str) -> Fixture {
    let base = layer(1, 17 << 20);
    let source = FakeEngine::new();
    let mut images = Vec::new();
    for (i, svc) in ["mysql", "redis", "kafka"].iter().enumerate() {
        let own = layer(10 + i as u32, 300_000 * (i + 1));
        let reference = format!("cdq-test/{svc}:1-{arch}");
        source.add_image_with_layers(&reference, arch, "", &[&base, &own]);
        images.push((svc.to_string(), reference));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kit.bundle");
    let a = Arch::from_any(arch).unwrap();
    bundle::save(&source, &images, a, &path, &UI).await.unwrap();
    Fixture {
        _dir: dir,
        path,
        source,
        images,
    }
}

fn amd64_host() -> Want {
    Want {
        arch: Arch::Amd64,
        because: "this host is amd64".into(),
    }
}

fn imports(e: &FakeEngine) -> usize {
    e.calls().iter().filter(|c| *c == "import_images").count()
}

async fn refused(path: &Path) -> (FakeEngine, String, i32) {
    let target = FakeEngine::new();
    let err = bundle::load(&target, path, &amd64_host(), false, &UI)
        .await
        .expect_err("a damaged bundle must be refused");
    let text = cdq::error::format(&err);
    (target, text, cdq::error::exit_code(&err))
}

#[tokio::test]
async fn round_trip_stores_the_shared_layer_once_and_restores_the_ids() {
    let f = saved("amd64").await;
    let b = Bundle::open(&f.path).unwrap();
    let m = &b.manifest;
    assert_eq!(m.arch, "amd64");
    assert_eq!(m.images.len(), 3);
    // base + three own layers + three configs
    assert_eq!(m.blobs.len(), 7, "{:#?}", m.blobs);
    assert_eq!(m.format, "cdq-bundle/2");
    assert_eq!(m.chunks.len(), 2, "17 MiB and more span two 16 MiB chunks");
    let raw: u64 = m.blobs.iter().map(|b| b.size).sum();
    let file = std::fs::metadata(&f.path).unwrap().len();
    assert!(
        file < raw,
        "the bundle ({file}) is smaller than its blobs ({raw})"
    );
    assert!(
        raw < (17 << 20) * 2,
        "the base layer is stored once ({raw} bytes of blobs)"
    );

    let target = FakeEngine::new();
    let report = bundle::load(&target, &f.path, &amd64_host(), false, &UI)
        .await
        .unwrap();
    assert_eq!(report.loaded.len(), 3);
    assert!(report.present.is_empty());
    assert_eq!(imports(&target), 1);
    for (_, reference) in &f.images {
        let before = f.source.image(reference).await.unwrap().unwrap();
        let after = target.image(reference).await.unwrap().unwrap();
        assert_eq!(
            after, before,
            "{reference} restored with the same id and facts"
        );
    }
}

#[tokio::test]
async fn only_missing_images_are_loaded_and_present_ones_skipped() {
    let f = saved("amd64").await;
    let target = FakeEngine::new();
    bundle::load(&target, &f.path, &amd64_host(), false, &UI)
        .await
        .unwrap();
    target.remove_image(&f.images[1].1);
    target.clear_calls();
    let report = bundle::load(&target, &f.path, &amd64_host(), false, &UI)
        .await
        .unwrap();
    let loaded: Vec<&str> = report.loaded.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(loaded, [f.images[1].1.as_str()]);
    assert_eq!(report.present.len(), 2);
    assert_eq!(imports(&target), 1);
    assert!(target.image(&f.images[1].1).await.unwrap().is_some());

    // Everything present: nothing loaded, no import at all.
    target.clear_calls();
    let t0 = std::time::Instant::now();
    let report = bundle::load(&target, &f.path, &amd64_host(), false, &UI)
        .await
        .unwrap();
    eprintln!("all-present load took {:?}", t0.elapsed());
    assert!(report.loaded.is_empty());
    assert_eq!(report.present.len(), 3);
    assert_eq!(imports(&target), 0);
}

#[tokio::test]
async fn a_flipped_byte_is_refused_before_any_import_naming_the_chunk() {
    let f = saved("amd64").await;
    let b = Bundle::open(&f.path).unwrap();
    let mut bytes = std::fs::read(&f.path).unwrap();
    // A byte inside the second chunk.
    let payload_start = bytes.len() as u64 - b.manifest.chunks.iter().map(|c| c.size).sum::<u64>();
    let at = payload_start + b.manifest.chunks[0].size + 100;
    bytes[at as usize] ^= 0x01;
    let bad = f.path.with_file_name("flipped.bundle");
    std::fs::write(&bad, &bytes).unwrap();

    let (target, text, code) = refused(&bad).await;
    assert_eq!(imports(&target), 0, "{:?}", target.calls());
    assert!(target.calls().is_empty(), "{:?}", target.calls());
    assert_eq!(code, 2);
    let n = b.manifest.chunks.len();
    assert!(
        text.contains(&format!(
            "chunk 2 of {n} (bytes {}..",
            payload_start + b.manifest.chunks[0].size
        )),
        "{text}"
    );
    assert!(text.contains("failed its checksum"), "{text}");
    assert!(
        text.contains("`cdq-test/mysql:1-amd64`"),
        "names the images it holds: {text}"
    );
    assert!(text.contains("\nhint: copy the bundle again"), "{text}");
}

#[tokio::test]
async fn a_bundle_cut_short_is_refused_naming_the_missing_chunk() {
    let f = saved("amd64").await;
    let n = Bundle::open(&f.path).unwrap().manifest.chunks.len();
    let bytes = std::fs::read(&f.path).unwrap();
    let bad = f.path.with_file_name("short.bundle");
    std::fs::write(&bad, &bytes[..bytes.len() - 1000]).unwrap();
    let (target, text, code) = refused(&bad).await;
    assert!(target.calls().is_empty(), "{:?}", target.calls());
    assert_eq!(code, 2);
    assert!(
        text.contains(&format!(
            "chunk {n} of {n} failed its checksum: the file is cut short"
        )),
        "{text}"
    );

    // Cut inside the manifest: the manifest is what fails.
    std::fs::write(&bad, &bytes[..200]).unwrap();
    let (target, text, _) = refused(&bad).await;
    assert!(target.calls().is_empty());
    assert!(text.contains("the manifest failed its checksum"), "{text}");
}

#[tokio::test]
async fn a_damaged_manifest_or_a_foreign_file_is_refused() {
    let f = saved("amd64").await;
    let mut bytes = std::fs::read(&f.path).unwrap();
    bytes[60] ^= 0x20; // inside the manifest JSON
    let bad = f.path.with_file_name("manifest.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    let (target, text, code) = refused(&bad).await;
    assert!(target.calls().is_empty());
    assert_eq!(code, 2);
    assert!(
        text.starts_with(&format!(
            "error: bundle `{}` is damaged: the manifest failed its checksum",
            bad.display()
        )),
        "{text}"
    );

    std::fs::write(&bad, b"not a bundle at all").unwrap();
    let (_, text, code) = refused(&bad).await;
    assert_eq!(code, 2);
    assert!(text.contains("is not a cdq bundle"), "{text}");

    // Bytes appended after the last chunk.
    let mut long = std::fs::read(&f.path).unwrap();
    long.extend_from_slice(b"trailing");
    std::fs::write(&bad, &long).unwrap();
    let (target, text, _) = refused(&bad).await;
    assert!(target.calls().is_empty());
    assert!(text.contains("8 bytes after its last chunk"), "{text}");
}

#[tokio::test]
async fn an_arm64_bundle_is_refused_on_an_amd64_host_naming_both() {
    let f = saved("arm64").await;
    let (target, text, code) = refused(&f.path).await;
    assert!(target.calls().is_empty());
    assert_eq!(code, 2);
    assert!(
        text.contains(&format!(
            "bundle `{}` holds arm64 images, and this host is amd64",
            f.path.display()
        )),
        "{text}"
    );
    assert!(text.contains("pass `--arch arm64`"), "{text}");

    // Asked for explicitly, it loads.
    let target = FakeEngine::new();
    let want = Want {
        arch: Arch::Arm64,
        because: "`--arch arm64` was given".into(),
    };
    let r = bundle::load(&target, &f.path, &want, false, &UI)
        .await
        .unwrap();
    assert_eq!(r.loaded.len(), 3);
}

#[tokio::test]
async fn save_refuses_missing_images_and_the_wrong_arch() {
    let source = FakeEngine::new();
    source.add_image_with_layers("cdq-test/redis:1", "arm64", "", &[b"layer"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.bundle");
    let images = vec![
        ("redis".to_string(), "cdq-test/redis:1".to_string()),
        ("mysql".to_string(), "cdq-test/mysql:1".to_string()),
    ];
    let err = bundle::save(&source, &images, Arch::Arm64, &out, &UI)
        .await
        .unwrap_err();
    assert_eq!(
        cdq::error::format(&err).lines().next().unwrap(),
        "error: not present in the local Docker engine: `cdq-test/mysql:1`"
    );
    let err = bundle::save(&source, &images[..1], Arch::Amd64, &out, &UI)
        .await
        .unwrap_err();
    assert!(
        cdq::error::format(&err).contains("`cdq-test/redis:1` is an arm64 image, not amd64"),
        "{err:#}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary files left"
    );
}

#[tokio::test]
async fn a_layer_shared_at_another_depth_is_stored_once_through_dockers_symlink() {
    // Docker names layer directories by their chain, so a layer under another parent gets a
    // second directory whose `layer.tar` is a symlink to the first copy.
    let source = FakeEngine::new();
    let shared = layer(7, 400_000);
    let top = layer(8, 1000);
    let a = source.add_image_with_layers("cdq-test/a:1", "amd64", "", &[&shared]);
    let b = source.add_image_with_layers("cdq-test/b:1", "amd64", "", &[&top, &shared]);
    let images = vec![
        ("a".to_string(), "cdq-test/a:1".to_string()),
        ("b".to_string(), "cdq-test/b:1".to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.bundle");
    bundle::save(&source, &images, Arch::Amd64, &path, &UI)
        .await
        .unwrap();
    let m = Bundle::open(&path).unwrap().manifest;
    assert_eq!(m.blobs.len(), 4, "two configs, two layers: {:#?}", m.blobs);
    assert_eq!(m.images[1].layers.len(), 2);
    assert_eq!(m.images[1].layers[1], m.images[0].layers[0]);

    let target = FakeEngine::new();
    bundle::load(&target, &path, &amd64_host(), false, &UI)
        .await
        .unwrap();
    assert_eq!(target.image("cdq-test/a:1").await.unwrap(), Some(a));
    assert_eq!(target.image("cdq-test/b:1").await.unwrap(), Some(b));
}

/// The bundle at `path` with its manifest rewritten by `edit` and the header's checksum
/// made to match, as a bundle written so would be (the chunks are left as they are).
fn with_manifest(path: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes[48..48 + len]).unwrap();
    edit(&mut manifest);
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut out = bytes[..8].to_vec();
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(Sha256::digest(&json));
    out.extend(&json);
    out.extend(&bytes[48 + len..]);
    let to = path.with_file_name(name);
    std::fs::write(&to, out).unwrap();
    to
}

#[tokio::test]
async fn a_version_1_bundle_is_refused_by_name_with_the_fix() {
    let f = saved("amd64").await;
    // A `cdq-bundle/1` file: its magic and its manifest's format say so (the fields of /1
    // were those of /2; what changed is the chunk size and the compression).
    let old = with_manifest(&f.path, "old.bundle", |m| {
        m["format"] = "cdq-bundle/1".into();
        m["cdq_version"] = "0.0.9".into();
    });
    let mut bytes = std::fs::read(&old).unwrap();
    bytes[..8].copy_from_slice(b"CDQBNDL1");
    std::fs::write(&old, &bytes).unwrap();

    let (target, text, code) = refused(&old).await;
    assert!(target.calls().is_empty(), "{:?}", target.calls());
    assert_eq!(code, 2);
    assert_eq!(
        text,
        format!(
            "error: bundle `{}` is in format `cdq-bundle/1`; this cdq reads `cdq-bundle/2` only\n\
             hint: save the bundle again with this cdq (`cdq bundle save` where the images are), or load it with the cdq that saved it (0.0.9)",
            old.display()
        )
    );
}

#[tokio::test]
async fn a_chunk_damaged_before_it_was_hashed_fails_its_zstd_checksum_and_loads_nothing() {
    // A frame that went bad before its sha256 was taken (memory, a bug): the file checks
    // out, so the load starts, and zstd's own checksum of the content stops it.
    let f = saved("amd64").await;
    let b = Bundle::open(&f.path).unwrap();
    let payload: u64 = b.manifest.chunks.iter().map(|c| c.size).sum();
    let mut bytes = std::fs::read(&f.path).unwrap();
    let start = bytes.len() as u64 - payload + b.manifest.chunks[0].size;
    let frame = start as usize..(start + b.manifest.chunks[1].size) as usize;
    let mid = frame.start + frame.len() / 2;
    bytes[mid] ^= 0x10;
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes[frame]))
    };
    std::fs::write(&f.path, &bytes).unwrap();
    let bad = with_manifest(&f.path, "rehashed.bundle", |m| {
        m["chunks"][1]["sha256"] = sha.into();
    });
    Bundle::open(&bad)
        .unwrap()
        .verify(&NoMeter)
        .expect("the damaged chunk's sha256 matches the manifest");

    let target = FakeEngine::new();
    let err = bundle::load(&target, &bad, &amd64_host(), false, &UI)
        .await
        .expect_err("a chunk that does not decompress must fail the load");
    let text = cdq::error::format(&err);
    assert!(text.contains("decompressing chunk 2"), "{text}");
    for (_, reference) in &f.images {
        assert!(
            target.image(reference).await.unwrap().is_none(),
            "{reference} was loaded from a damaged bundle"
        );
    }
}

struct NoMeter;

impl bundle::Meter for NoMeter {
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}
