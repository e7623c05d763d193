//! Offline image bundles: `cdq bundle save`, `cdq bundle load` and `cdq up --bundle`. Owns the
//! bundle file format, its verification, and the translation between it and the `docker
//! save`/`docker load` tars the [`Engine`] speaks. Must not print (it hands byte counts to
//! `ui::Transfer` and results to its caller) or touch images other than the ones named in
//! the bundle.
//!
//! # Format (`cdq-bundle/1`)
//!
//! ```text
//! header    48 bytes: "CDQBNDL1", manifest length (u64 LE), sha256 of the manifest
//! manifest  JSON (`Manifest`): cdq version, arch, per image its reference, id, size, config
//!           digest and layer digests; per blob its digest, size and offset in the payload;
//!           per chunk its compressed size, raw size and the sha256 of its compressed bytes
//! payload   the chunks, each one independent zstd frame (together: one valid zstd stream)
//! ```
//!
//! The payload, decompressed, is every blob (image config or layer tar) once, keyed by its
//! sha256, cut into 8 MiB chunks. Storing blobs rather than one `docker save` per image is
//! why a bundle of the kit is about the size of its unique layers: the nine kit images share
//! one base layer, which per-image tars would repeat nine times. `load` rebuilds a `docker
//! load` tar holding only the images that are missing (and only the chunks they need).
//!
//! The manifest comes first so a truncated file still has one: what is missing is then
//! named chunk by chunk. Every check (magic, manifest checksum, the file's exact length, the
//! sha256 of every chunk) runs before the engine is asked anything, so a damaged bundle
//! changes nothing. Layer contents are checked once more by Docker on load (each layer must
//! match the diff id in its config) and the image ids after it.
//!
//! Compression is pure Rust (`ruzstd`, whose encoder offers zstd's fastest level only), so
//! the aarch64 static build needs no C toolchain. Chunks are compressed and decompressed on
//! every core (`std::thread::scope`); independent frames are what make that possible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::cli::{BundleAction, Target};
use crate::commands::Ctx;
use crate::engine::{ByteStream, Engine, EngineError};
use crate::error::CdqError;
use crate::services::Arch;
use crate::ui::{Transfer, Ui, human_bytes};

pub const MAGIC: &[u8; 8] = b"CDQBNDL1";
pub const FORMAT: &str = "cdq-bundle/1";
pub const HEADER_LEN: u64 = 48;
/// Raw bytes per chunk: big enough for zstd to find matches, small enough that two cores
/// (or sixty-four) each get many.
const CHUNK: usize = 8 << 20;
/// What a damaged bundle's error suggests.
const DAMAGED_HINT: &str = "copy the bundle again (compare its `sha256sum` with the machine it was saved on), or run `cdq bundle save` there again";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub cdq_version: String,
    pub arch: String,
    pub created_unix: u64,
    pub compression: String,
    pub images: Vec<ImageEntry>,
    pub blobs: Vec<Blob>,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    pub service: String,
    pub reference: String,
    /// The image id (`sha256:` of its config), as `docker images --no-trunc` shows it.
    pub id: String,
    /// As Docker reports it (unpacked, shared layers counted in every image).
    pub size: u64,
    pub config: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blob {
    /// `sha256:<hex>` of the content (a layer's diff id, or an image id for a config).
    pub digest: String,
    pub size: u64,
    /// Where it starts in the decompressed payload.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Compressed bytes in the file.
    pub size: u64,
    /// Decompressed bytes.
    pub raw_size: u64,
    /// sha256 of the compressed bytes, hex.
    pub sha256: String,
}

impl Manifest {
    fn payload_size(&self) -> u64 {
        self.chunks.iter().map(|c| c.size).sum()
    }

    /// What a chunk holds, for an error message: the blobs overlapping it and their images.
    fn describe_chunk(&self, index: usize) -> String {
        let start: u64 = self.chunks[..index].iter().map(|c| c.raw_size).sum();
        let end = start + self.chunks[index].raw_size;
        let mut parts = Vec::new();
        for b in self
            .blobs
            .iter()
            .filter(|b| b.offset < end && b.offset + b.size > start)
        {
            let kind = if self.images.iter().any(|i| i.config == b.digest) {
                "the config"
            } else {
                "a layer"
            };
            let users: Vec<String> = self
                .images
                .iter()
                .filter(|i| i.config == b.digest || i.layers.contains(&b.digest))
                .map(|i| format!("`{}`", i.reference))
                .collect();
            parts.push(format!(
                "{kind} `{}` of {}",
                short(&b.digest),
                users.join(", ")
            ));
        }
        if parts.is_empty() {
            "no image data".into()
        } else {
            parts.join("; ")
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn damaged(path: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    CdqError::usage(format!("bundle `{}` is damaged: {what}", path.display()))
        .hint(DAMAGED_HINT)
        .into()
}

// ---- save ------------------------------------------------------------------------------

/// What `save` did.
#[derive(Debug, Clone)]
pub struct SaveReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The bundle file's size.
    pub bytes: u64,
    /// The `docker save` tar's size (what a plain save would have written).
    pub tar_bytes: u64,
    pub elapsed: Duration,
}

/// Exports `images` (service, reference) for `arch` from the engine into a bundle at `out`
/// (written to a temporary file beside it, then renamed: a failed save leaves nothing).
pub async fn save<E: Engine>(
    engine: &E,
    images: &[(String, String)],
    arch: Arch,
    out: &Path,
    ui: &Ui,
) -> anyhow::Result<SaveReport> {
    let t0 = Instant::now();
    let mut missing = Vec::new();
    let mut infos = BTreeMap::new();
    for (_, reference) in images {
        match engine
            .image(reference)
            .await
            .map_err(crate::stack::engine_error)?
        {
            None => missing.push(format!("`{reference}`")),
            Some(i) if Arch::from_any(&i.arch) != Some(arch) => {
                return Err(CdqError::usage(format!(
                    "`{reference}` is an {} image, not {arch}",
                    i.arch
                ))
                .hint(format!(
                    "bundle the {arch} set on a host that has it (`cdq images --arch {arch}` lists it), or pass `--arch {}`",
                    i.arch
                ))
                .into());
            }
            Some(i) => {
                infos.insert(reference.clone(), i);
            }
        }
    }
    if !missing.is_empty() {
        return Err(CdqError::usage(format!(
            "not present in the local Docker engine: {}",
            missing.join(", ")
        ))
        .hint(format!(
            "load or build them first (`scripts/build-local-images.sh --arch {arch}` for the local kit); `cdq images --arch {arch}` lists the set"
        ))
        .into());
    }
    let references: Vec<String> = infos.keys().cloned().collect();

    let tmp = TempFiles::beside(out)?;
    let frames_path = tmp.frames.clone();
    let progress = ui.transfer("saving", None);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, String>>(16);
    let cancel = Arc::new(AtomicBool::new(false));
    // A thread of its own: the current-thread runtime keeps reading the export meanwhile.
    let pack_thread = {
        let frames_path = frames_path.clone();
        let progress = Arc::new(progress);
        let p = progress.clone();
        let cancel = cancel.clone();
        let handle =
            std::thread::spawn(move || pack(ChannelReader::new(rx), &frames_path, &p, &cancel));
        (handle, progress)
    };
    let mut export = engine.export_images(&references);
    let mut export_err = None;
    let forward = async {
        while let Some(piece) = export.next().await {
            match piece {
                Ok(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        break; // the packer failed; its error says why
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    export_err = Some(e);
                    break;
                }
            }
        }
    };
    // Ctrl-C: stop feeding the packer so the temporary files are removed on the way out.
    let interrupted = tokio::select! {
        () = forward => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        cancel.store(true, Ordering::Relaxed);
    }
    drop(tx);
    let (handle, progress) = pack_thread;
    let packed = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the bundle writer panicked"))?;
    if interrupted {
        return Err(CdqError::new(
            crate::error::Kind::Interrupted,
            format!("interrupted: `{}` was not written", out.display()),
        )
        .into());
    }
    if let Some(e) = export_err {
        return Err(crate::stack::engine_error(e));
    }
    let packed = packed?;
    progress.finish();

    let mut entries = Vec::new();
    for (service, reference) in images {
        let m = packed
            .images
            .iter()
            .find(|m| m.repo_tags.iter().any(|t| same_reference(t, reference)))
            .ok_or_else(|| {
                anyhow::anyhow!("the Docker daemon's export did not include `{reference}`")
            })?;
        let info = &infos[reference];
        let config = packed.digest_of(&m.config)?;
        if config != info.id {
            return Err(CdqError::failure(format!(
                "`{reference}` changed while it was being saved (it was {}, the export holds {})",
                short(&info.id),
                short(&config)
            ))
            .hint("run `cdq bundle save` again once nothing is retagging the images")
            .into());
        }
        let layers = m
            .layers
            .iter()
            .map(|l| packed.digest_of(l))
            .collect::<anyhow::Result<Vec<_>>>()?;
        entries.push(ImageEntry {
            service: service.clone(),
            reference: reference.clone(),
            id: info.id.clone(),
            size: info.size,
            config,
            layers,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        cdq_version: env!("CARGO_PKG_VERSION").into(),
        arch: arch.name().into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        compression: "zstd".into(),
        images: entries,
        blobs: packed.blobs,
        chunks: packed.chunks,
    };
    let bytes = tmp.finish(&manifest, out)?;
    Ok(SaveReport {
        path: out.to_path_buf(),
        manifest,
        bytes,
        tar_bytes: packed.tar_bytes,
        elapsed: t0.elapsed(),
    })
}

/// Docker writes `RepoTags` in their familiar form; the catalogue may not.
fn same_reference(tag: &str, reference: &str) -> bool {
    let norm = |r: &str| {
        r.trim_start_matches("docker.io/")
            .trim_start_matches("library/")
            .to_string()
    };
    norm(tag) == norm(reference)
}

/// The temporary files of a save, removed unless the save completes.
struct TempFiles {
    frames: PathBuf,
    bundle: PathBuf,
}

impl TempFiles {
    fn beside(out: &Path) -> anyhow::Result<TempFiles> {
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = out
            .file_name()
            .ok_or_else(|| CdqError::usage(format!("`{}` is not a file name", out.display())))?
            .to_string_lossy();
        let pid = std::process::id();
        Ok(TempFiles {
            frames: dir.join(format!(".{name}.{pid}.frames")),
            bundle: dir.join(format!(".{name}.{pid}.tmp")),
        })
    }

    /// Header, manifest, then the frames; renamed into place. Returns the file's size.
    fn finish(&self, manifest: &Manifest, out: &Path) -> anyhow::Result<u64> {
        let json = serde_json::to_vec(manifest)?;
        let mut f = File::create(&self.bundle)
            .with_context(|| format!("creating `{}`", self.bundle.display()))?;
        f.write_all(MAGIC)?;
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&Sha256::digest(&json))?;
        f.write_all(&json)?;
        let mut frames = File::open(&self.frames)?;
        // File to file: the kernel copies (copy_file_range), nothing passes through cdq.
        std::io::copy(&mut frames, &mut f)?;
        f.sync_all()?;
        let len = f.metadata()?.len();
        std::fs::rename(&self.bundle, out)
            .with_context(|| format!("writing `{}`", out.display()))?;
        Ok(len)
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.frames);
        let _ = std::fs::remove_file(&self.bundle);
    }
}

/// A blocking `Read` over the export stream as the async side forwards it.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>,
    buf: Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>) -> Self {
        ChannelReader {
            rx,
            buf: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// One `manifest.json` entry of a `docker save` tar.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

struct Packed {
    images: Vec<SaveEntry>,
    /// Tar path -> digest of its content (symlinks resolved).
    paths: HashMap<String, String>,
    blobs: Vec<Blob>,
    chunks: Vec<Chunk>,
    tar_bytes: u64,
}

impl Packed {
    fn digest_of(&self, path: &str) -> anyhow::Result<String> {
        self.paths
            .get(path)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the export's manifest names `{path}`, which it lacks"))
    }
}

/// Counts what passes through a reader.
struct Counting<'a, R> {
    inner: R,
    n: u64,
    progress: &'a Transfer,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.n += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Reads a `docker save` tar, writes each distinct blob once into zstd frames at
/// `frames_path`, and returns where everything went.
fn pack(
    input: impl Read,
    frames_path: &Path,
    progress: &Transfer,
    cancel: &AtomicBool,
) -> anyhow::Result<Packed> {
    let out = File::create(frames_path)
        .with_context(|| format!("creating `{}`", frames_path.display()))?;
    let mut counting = Counting {
        inner: input,
        n: 0,
        progress,
    };
    let mut files: HashMap<String, String> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut manifest_json = None;
    let mut blobs: Vec<Blob> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let chunks = Compressor::run(out, cancel, |sink| -> anyhow::Result<()> {
        let mut archive = tar::Archive::new(&mut counting);
        for entry in archive.entries().context("reading the export")? {
            let mut entry = entry.context("reading the export")?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry.link_name()?.unwrap_or_default();
                links.insert(path.clone(), resolve_link(&path, &target));
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(&path);
            if path == "manifest.json" {
                let mut s = Vec::new();
                entry.read_to_end(&mut s)?;
                manifest_json = Some(s);
                continue;
            }
            // Docker's v1 compatibility files: `docker load` does not need them.
            if path == "repositories"
                || (path.contains('/') && (name == "json" || name == "VERSION"))
            {
                continue;
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data)?;
            let digest = format!("sha256:{}", sha256_hex(&data));
            if seen.insert(digest.clone()) {
                blobs.push(Blob {
                    digest: digest.clone(),
                    size: data.len() as u64,
                    offset: sink.position(),
                });
                sink.write(&data)?;
            }
            files.insert(path, digest);
        }
        Ok(())
    })?;
    // Drain what follows the tar's end marker, so the byte count is the whole export.
    std::io::copy(&mut counting, &mut std::io::sink())?;
    let manifest_json = manifest_json
        .ok_or_else(|| anyhow::anyhow!("the Docker daemon's export has no `manifest.json`"))?;
    let images: Vec<SaveEntry> =
        serde_json::from_slice(&manifest_json).context("reading the export's `manifest.json`")?;
    for (from, to) in links {
        if let Some(d) = files.get(&to).cloned() {
            files.insert(from, d);
        }
    }
    Ok(Packed {
        images,
        paths: files,
        blobs,
        chunks,
        tar_bytes: counting.n,
    })
}

/// A tar symlink's target as a path from the tar's root.
fn resolve_link(path: &str, target: &Path) -> String {
    let dir = Path::new("/").join(path);
    let dir = dir.parent().unwrap_or(Path::new("/"));
    crate::settings::absolute(dir, target)
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string()
}

fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raw bytes in, independent zstd frames out, on every core, written in order.
struct Compressor;

/// Where `pack` puts raw payload bytes.
struct Sink<'a> {
    buf: Vec<u8>,
    position: u64,
    next: usize,
    jobs: mpsc::SyncSender<(usize, Vec<u8>)>,
    cancel: &'a AtomicBool,
}

impl Sink<'_> {
    fn position(&self) -> u64 {
        self.position
    }

    fn write(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
        self.position += data.len() as u64;
        while !data.is_empty() {
            let n = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.jobs
            .send((self.next, chunk))
            .map_err(|_| anyhow::anyhow!("the bundle compressor stopped"))?;
        self.next += 1;
        Ok(())
    }
}

impl Compressor {
    /// Runs `produce` with a sink; compresses what it writes on worker threads and appends
    /// the frames to `out` in order. Returns one `Chunk` per frame.
    fn run(
        out: File,
        cancel: &AtomicBool,
        produce: impl FnOnce(&mut Sink) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Chunk>> {
        let n = workers();
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(n);
        let jobs_rx = Mutex::new(jobs_rx);
        let (done_tx, done_rx) = mpsc::sync_channel::<(usize, Vec<u8>, u64)>(n);
        std::thread::scope(|scope| {
            for _ in 0..n {
                let done_tx = done_tx.clone();
                let jobs_rx = &jobs_rx;
                scope.spawn(move || {
                    loop {
                        let job = jobs_rx.lock().expect("job queue").recv();
                        let Ok((i, raw)) = job else { break };
                        // Cancelled: keep taking jobs (a producer may be waiting on a full
                        // queue) but do not compress them.
                        if cancel.load(Ordering::Relaxed) {
                            continue;
                        }
                        let frame = ruzstd::encoding::compress_to_vec(
                            raw.as_slice(),
                            ruzstd::encoding::CompressionLevel::Fastest,
                        );
                        if done_tx.send((i, frame, raw.len() as u64)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let writer = scope.spawn(move || -> anyhow::Result<Vec<Chunk>> {
                let mut out = std::io::BufWriter::new(out);
                let mut waiting = BTreeMap::new();
                let mut chunks = Vec::new();
                for (i, frame, raw) in done_rx {
                    waiting.insert(i, (frame, raw));
                    while let Some((frame, raw)) = waiting.remove(&chunks.len()) {
                        out.write_all(&frame)?;
                        chunks.push(Chunk {
                            size: frame.len() as u64,
                            raw_size: raw,
                            sha256: sha256_hex(&frame),
                        });
                    }
                }
                out.flush()?;
                if !waiting.is_empty() {
                    anyhow::bail!("the bundle compressor lost a chunk");
                }
                Ok(chunks)
            });
            let mut sink = Sink {
                buf: Vec::with_capacity(CHUNK),
                position: 0,
                next: 0,
                jobs: jobs_tx,
                cancel,
            };
            let produced = produce(&mut sink).and_then(|()| sink.flush());
            drop(sink);
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the bundle writer panicked"))?;
            produced?;
            if cancel.load(Ordering::Relaxed) {
                anyhow::bail!("interrupted");
            }
            written
        })
    }
}

// ---- open and verify ---------------------------------------------------------------------

/// A bundle whose header and manifest have been read and checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Where the first chunk starts in the file.
    payload_start: u64,
    file_len: u64,
}

impl Bundle {
    /// Reads the header and the manifest and checks the manifest's checksum.
    pub fn open(path: &Path) -> anyhow::Result<Bundle> {
        let mut f =
            File::open(path).with_context(|| format!("opening the bundle `{}`", path.display()))?;
        let file_len = f.metadata()?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        let got = read_full(&mut f, &mut header)?;
        if got < MAGIC.len() || &header[..8] != MAGIC {
            return Err(CdqError::usage(format!(
                "`{}` is not a cdq bundle (it does not start with `CDQBNDL1`)",
                path.display()
            ))
            .hint("make one with `cdq bundle save` on a machine that has the images")
            .into());
        }
        if got < header.len() {
            return Err(damaged(path, "it is cut short inside its header"));
        }
        let len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if len > 64 << 20 {
            return Err(damaged(
                path,
                "its header failed its checksum (an impossible manifest length)",
            ));
        }
        let mut json = vec![0u8; len as usize];
        if (read_full(&mut f, &mut json)? as u64) < len {
            return Err(damaged(
                path,
                format!(
                    "the manifest failed its checksum: the file is cut short inside it ({file_len} bytes)"
                ),
            ));
        }
        if Sha256::digest(&json).as_slice() != &header[16..48] {
            return Err(damaged(path, "the manifest failed its checksum"));
        }
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| damaged(path, format!("its manifest is unreadable: {e}")))?;
        if manifest.format != FORMAT {
            return Err(CdqError::usage(format!(
                "bundle `{}` is in format `{}`; this cdq reads `{FORMAT}`",
                path.display(),
                manifest.format
            ))
            .hint(format!(
                "use the cdq that saved it ({}), or save the bundle again with this one",
                manifest.cdq_version
            ))
            .into());
        }
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            payload_start: HEADER_LEN + len,
            file_len,
        })
    }

    pub fn arch(&self) -> Option<Arch> {
        Arch::from_any(&self.manifest.arch)
    }

    fn chunk_offsets(&self) -> Vec<u64> {
        let mut at = self.payload_start;
        self.manifest
            .chunks
            .iter()
            .map(|c| {
                let o = at;
                at += c.size;
                o
            })
            .collect()
    }

    /// Checks the file's length and the sha256 of every chunk, on every core. The error
    /// names the first chunk that fails and what it holds.
    pub fn verify(&self, progress: &Transfer) -> anyhow::Result<()> {
        let m = &self.manifest;
        let n = m.chunks.len();
        let offsets = self.chunk_offsets();
        let expected = self.payload_start + m.payload_size();
        if self.file_len < expected {
            let i = (0..n)
                .find(|&i| offsets[i] + m.chunks[i].size > self.file_len)
                .unwrap_or(n.saturating_sub(1));
            return Err(damaged(
                &self.path,
                format!(
                    "chunk {} of {n} failed its checksum: the file is cut short ({} bytes of {expected}); the chunk holds {}",
                    i + 1,
                    self.file_len,
                    m.describe_chunk(i)
                ),
            ));
        }
        if self.file_len > expected {
            return Err(damaged(
                &self.path,
                format!(
                    "it has {} bytes after its last chunk ({} bytes, the manifest accounts for {expected})",
                    self.file_len - expected,
                    self.file_len
                ),
            ));
        }
        let first_bad = Mutex::new(None::<usize>);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..workers().min(n.max(1)))
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        let mut f = File::open(&self.path)?;
                        let mut buf = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= n {
                                return Ok(());
                            }
                            let c = &m.chunks[i];
                            buf.resize(c.size as usize, 0);
                            f.seek(SeekFrom::Start(offsets[i]))?;
                            f.read_exact(&mut buf)?;
                            if sha256_hex(&buf) != c.sha256 {
                                let mut bad = first_bad.lock().expect("verify lock");
                                if bad.is_none_or(|b| i < b) {
                                    *bad = Some(i);
                                }
                            }
                            progress.inc(c.size);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a bundle check panicked"))??;
            }
            Ok(())
        })
        .with_context(|| format!("reading the bundle `{}`", self.path.display()))?;
        if let Some(i) = first_bad.into_inner().expect("verify lock") {
            return Err(damaged(
                &self.path,
                format!(
                    "chunk {} of {n} (bytes {}..{}) failed its checksum; it holds {}",
                    i + 1,
                    offsets[i],
                    offsets[i] + m.chunks[i].size,
                    m.describe_chunk(i)
                ),
            ));
        }
        Ok(())
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

// ---- load ------------------------------------------------------------------------------

/// What `load` found and did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Present already with the same id: not loaded.
    pub present: Vec<ImageEntry>,
    /// Loaded (or, on a dry run, would be).
    pub loaded: Vec<ImageEntry>,
    /// References that pointed at another image before the load (now retagged).
    pub replaced: Vec<String>,
    /// Raw bytes sent to the engine.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Which architecture the bundle must hold, and why (for the refusal message).
#[derive(Debug, Clone)]
pub struct Want {
    pub arch: Arch,
    /// e.g. "this host is amd64", "`--arch amd64` was given".
    pub because: String,
}

/// Verifies the bundle completely, then loads into the engine the images it holds that are
/// not present with the same id. Nothing reaches the engine before every check passed.
pub async fn load<E: Engine>(
    engine: &E,
    path: &Path,
    want: &Want,
    dry_run: bool,
    ui: &Ui,
) -> anyhow::Result<LoadReport> {
    let t0 = Instant::now();
    let bundle = Bundle::open(path)?;
    if bundle.arch() != Some(want.arch) {
        return Err(CdqError::usage(format!(
            "bundle `{}` holds {} images, and {}",
            path.display(),
            bundle.manifest.arch,
            want.because
        ))
        .hint(format!(
            "load it on an {} host, or pass `--arch {}` to load it anyway (its images then run only under emulation)",
            bundle.manifest.arch, bundle.manifest.arch
        ))
        .into());
    }
    let verifying = ui.transfer("verifying", Some(bundle.manifest.payload_size()));
    bundle.verify(&verifying)?;
    verifying.finish();

    let mut report = LoadReport::default();
    for img in &bundle.manifest.images {
        match engine
            .image(&img.reference)
            .await
            .map_err(crate::stack::engine_error)?
        {
            Some(i) if i.id == img.id => report.present.push(img.clone()),
            Some(_) => {
                report.replaced.push(img.reference.clone());
                report.loaded.push(img.clone());
            }
            None => report.loaded.push(img.clone()),
        }
    }
    if report.loaded.is_empty() || dry_run {
        report.elapsed = t0.elapsed();
        return Ok(report);
    }

    let plan = LoadPlan::new(&bundle.manifest, &report.loaded);
    report.bytes = plan.raw_bytes();
    let progress = Arc::new(ui.transfer("loading", Some(report.bytes)));
    let (tx, rx) = tokio::sync::mpsc::channel::<crate::engine::Result<Bytes>>(8);
    let producer = {
        let bundle = bundle.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let result = plan.write(&bundle, &tx, &progress);
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(EngineError::Other(format!("{e:#}"))));
            }
            result
        })
    };
    let stream: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let imported = engine.import_images(stream).await;
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the bundle reader panicked"))?;
    produced.with_context(|| format!("reading the bundle `{}`", path.display()))?;
    imported.map_err(crate::stack::engine_error)?;
    progress.finish();

    for img in &report.loaded {
        let now = engine
            .image(&img.reference)
            .await
            .map_err(crate::stack::engine_error)?;
        if now.as_ref().map(|i| i.id.as_str()) != Some(img.id.as_str()) {
            return Err(CdqError::failure(format!(
                "after the load `{}` is {}, not {} as the bundle says",
                img.reference,
                now.map_or("missing".to_string(), |i| short(&i.id).to_string()),
                short(&img.id)
            ))
            .hint("check `docker images`; something else may be retagging it")
            .into());
        }
    }
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Which blobs and chunks a load needs, and the `docker load` tar built from them.
struct LoadPlan {
    manifest_json: Vec<u8>,
    /// Needed blobs in payload order, with their path in the tar.
    blobs: Vec<(Blob, String)>,
}

impl LoadPlan {
    fn new(m: &Manifest, images: &[ImageEntry]) -> LoadPlan {
        let hex = |d: &str| d.strip_prefix("sha256:").unwrap_or(d).to_string();
        let config_path = |d: &str| format!("{}.json", hex(d));
        let layer_path = |d: &str| format!("{}/layer.tar", hex(d));
        let entries: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "Config": config_path(&i.config),
                    "RepoTags": [i.reference],
                    "Layers": i.layers.iter().map(|l| layer_path(l)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut paths: BTreeMap<&str, String> = BTreeMap::new();
        for i in images {
            paths.insert(&i.config, config_path(&i.config));
            for l in &i.layers {
                paths.insert(l, layer_path(l));
            }
        }
        let mut blobs: Vec<(Blob, String)> = m
            .blobs
            .iter()
            .filter_map(|b| paths.get(b.digest.as_str()).map(|p| (b.clone(), p.clone())))
            .collect();
        blobs.sort_by_key(|(b, _)| b.offset);
        LoadPlan {
            manifest_json: serde_json::to_vec(&entries).expect("a JSON value serialises"),
            blobs,
        }
    }

    fn raw_bytes(&self) -> u64 {
        self.blobs.iter().map(|(b, _)| b.size).sum()
    }

    /// Streams the tar into `tx`: `manifest.json`, then each needed blob, decompressing only
    /// the chunks that hold them, a batch of chunks per round on every core.
    fn write(
        &self,
        bundle: &Bundle,
        tx: &tokio::sync::mpsc::Sender<crate::engine::Result<Bytes>>,
        progress: &Transfer,
    ) -> anyhow::Result<()> {
        let mut out = TarOut {
            buf: Vec::with_capacity(1 << 20),
            tx,
        };
        out.header("manifest.json", self.manifest_json.len() as u64)?;
        out.data(&self.manifest_json)?;
        out.pad(self.manifest_json.len() as u64)?;

        let m = &bundle.manifest;
        let offsets = bundle.chunk_offsets();
        let mut raw_starts = Vec::with_capacity(m.chunks.len());
        let mut at = 0u64;
        for c in &m.chunks {
            raw_starts.push(at);
            at += c.raw_size;
        }
        let needed: Vec<usize> = (0..m.chunks.len())
            .filter(|&i| {
                let (s, e) = (raw_starts[i], raw_starts[i] + m.chunks[i].raw_size);
                self.blobs
                    .iter()
                    .any(|(b, _)| b.offset < e && b.offset + b.size > s)
            })
            .collect();

        let mut bi = 0; // the blob being written
        let mut written = 0u64; // of it
        let mut f = File::open(&bundle.path)?;
        for batch in needed.chunks(workers()) {
            let mut compressed = Vec::with_capacity(batch.len());
            for &i in batch {
                let mut buf = vec![0u8; m.chunks[i].size as usize];
                f.seek(SeekFrom::Start(offsets[i]))?;
                f.read_exact(&mut buf)?;
                // Checked before the load began; checked again because the file may have
                // changed since.
                if sha256_hex(&buf) != m.chunks[i].sha256 {
                    anyhow::bail!("chunk {} changed during the load", i + 1);
                }
                compressed.push(buf);
            }
            let raws: Vec<anyhow::Result<Vec<u8>>> = std::thread::scope(|scope| {
                let hs: Vec<_> = compressed
                    .iter()
                    .zip(batch)
                    .map(|(c, &i)| {
                        let raw_size = m.chunks[i].raw_size as usize;
                        scope.spawn(move || decompress(c, raw_size))
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("decompression panicked")))
                    })
                    .collect()
            });
            for (raw, &i) in raws.into_iter().zip(batch) {
                let raw = raw.with_context(|| format!("decompressing chunk {}", i + 1))?;
                let start = raw_starts[i];
                let end = start + raw.len() as u64;
                while bi < self.blobs.len() {
                    let (b, path) = &self.blobs[bi];
                    let from = b.offset + written;
                    if from >= end && b.size > 0 {
                        break;
                    }
                    if written == 0 {
                        out.header(path, b.size)?;
                    }
                    let to = (b.offset + b.size).min(end);
                    if to > from {
                        out.data(&raw[(from - start) as usize..(to - start) as usize])?;
                        progress.inc(to - from);
                        written += to - from;
                    }
                    if written == b.size {
                        out.pad(b.size)?;
                        bi += 1;
                        written = 0;
                    } else {
                        break;
                    }
                }
            }
        }
        // Empty blobs past the last needed chunk.
        while bi < self.blobs.len() && self.blobs[bi].0.size == 0 {
            out.header(&self.blobs[bi].1, 0)?;
            bi += 1;
        }
        if bi != self.blobs.len() {
            anyhow::bail!(
                "the bundle's payload ends before `{}`",
                self.blobs[bi].0.digest
            );
        }
        out.data(&[0u8; 1024])?; // the tar's end
        out.send()
    }
}

fn decompress(frame: &[u8], raw_size: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw_size);
    ruzstd::decoding::FrameDecoder::new()
        .decode_all_to_vec(frame, &mut out)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if out.len() != raw_size {
        anyhow::bail!("it holds {} bytes, not {raw_size}", out.len());
    }
    Ok(out)
}

/// A tar written into the upload channel a megabyte at a time.
struct TarOut<'a> {
    buf: Vec<u8>,
    tx: &'a tokio::sync::mpsc::Sender<crate::engine::Result<Bytes>>,
}

impl TarOut<'_> {
    fn header(&mut self, path: &str, size: u64) -> anyhow::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        h.set_cksum();
        self.data(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> anyhow::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.data(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    fn data(&mut self, mut d: &[u8]) -> anyhow::Result<()> {
        while !d.is_empty() {
            let n = ((1 << 20) - self.buf.len()).min(d.len());
            self.buf.extend_from_slice(&d[..n]);
            d = &d[n..];
            if self.buf.len() == 1 << 20 {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(1 << 20),
        ));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| anyhow::anyhow!("the Docker daemon stopped reading the upload"))
    }
}

// ---- commands --------------------------------------------------------------------------

/// `cdq bundle save|load`.
pub fn command(ctx: &Ctx, action: BundleAction) -> anyhow::Result<i32> {
    let rt = crate::stack::runtime()?;
    match action {
        BundleAction::Save { output, .. } => {
            let s = &ctx.settings;
            let arch = crate::commands::resolve_arch(s)?;
            let catalog = Catalog::load(&ctx.assets, arch, &s.images, &s.versions)?;
            let images: Vec<(String, String)> = s
                .services
                .iter()
                .map(|svc| (svc.name().to_string(), catalog.image(*svc).to_string()))
                .collect();
            let out = output.unwrap_or_else(|| PathBuf::from(format!("cdq-images-{arch}.bundle")));
            let report = rt.block_on(async {
                let engine = crate::stack::connect().await?;
                save(&engine, &images, arch, &out, &ctx.ui).await
            })?;
            for l in describe_save(&report) {
                ctx.ui.info(l);
            }
            Ok(0)
        }
        BundleAction::Load { file, arch } => {
            let want = want(arch.map(crate::commands::arch_of), "was given")?;
            let report = rt.block_on(async {
                let engine = crate::stack::connect().await?;
                load(&engine, &file, &want, false, &ctx.ui).await
            })?;
            for l in describe_load(&report, false) {
                ctx.ui.info(l);
            }
            Ok(0)
        }
    }
}

/// The architecture a bundle must hold: the flag's, else the host's.
fn want(flag: Option<Arch>, how: &str) -> anyhow::Result<Want> {
    if let Some(a) = flag {
        return Ok(Want {
            arch: a,
            because: format!("`--arch {a}` {how}"),
        });
    }
    let host = Arch::host().ok_or_else(|| {
        CdqError::usage(format!(
            "this host's architecture `{}` is not one cdq deploys to",
            std::env::consts::ARCH
        ))
    })?;
    Ok(Want {
        arch: host,
        because: format!("this host is {host}"),
    })
}

/// `cdq up --bundle FILE`: loads (or, on a dry run, verifies) before anything else.
pub async fn load_for_up<E: Engine>(
    ctx: &Ctx,
    engine: &E,
    file: &Path,
    target: &Target,
    dry_run: bool,
) -> anyhow::Result<()> {
    let want = match target.arch {
        Some(a) => want(Some(crate::commands::arch_of(a)), "was given")?,
        None => match ctx.settings.arch {
            Some(a) => Want {
                arch: a,
                because: format!("the deploy is for {a} (`arch` in the settings)"),
            },
            None => want(None, "")?,
        },
    };
    let report = load(engine, file, &want, dry_run, &ctx.ui).await?;
    for l in describe_load(&report, dry_run) {
        ctx.ui.info(l);
    }
    Ok(())
}

/// One line per image for `cdq bundle save`.
pub fn describe_save(r: &SaveReport) -> Vec<String> {
    let mut lines: Vec<String> = r
        .manifest
        .images
        .iter()
        .map(|i| {
            format!(
                "  {}  {}  {}",
                i.reference,
                short(&i.id),
                human_bytes(i.size)
            )
        })
        .collect();
    lines.push(format!(
        "saved {} {} images to `{}`: {} ({} as a docker save tar; {} distinct blobs) in {:.1}s",
        r.manifest.images.len(),
        r.manifest.arch,
        r.path.display(),
        human_bytes(r.bytes),
        human_bytes(r.tar_bytes),
        r.manifest.blobs.len(),
        r.elapsed.as_secs_f64()
    ));
    lines
}

/// What `cdq bundle load` prints.
pub fn describe_load(r: &LoadReport, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for i in &r.present {
        lines.push(format!("  present  {}  {}", i.reference, short(&i.id)));
    }
    let verb = if dry_run { "would load" } else { "loaded" };
    for i in &r.loaded {
        let note = if r.replaced.contains(&i.reference) {
            " (the tag pointed at another image before)"
        } else {
            ""
        };
        lines.push(format!(
            "  {verb:<8} {}  {}{note}",
            i.reference,
            short(&i.id)
        ));
    }
    if r.loaded.is_empty() {
        lines.push(format!(
            "all {} images already present; nothing loaded ({:.2}s)",
            r.present.len(),
            r.elapsed.as_secs_f64()
        ));
    } else {
        lines.push(format!(
            "{verb} {} images ({}), {} already present, in {:.1}s",
            r.loaded.len(),
            human_bytes(r.bytes),
            r.present.len(),
            r.elapsed.as_secs_f64()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_from_the_tar_root() {
        assert_eq!(
            resolve_link("bbb/layer.tar", Path::new("../aaa/layer.tar")),
            "aaa/layer.tar"
        );
        assert_eq!(resolve_link("x.json", Path::new("y.json")), "y.json");
    }

    #[test]
    fn frames_round_trip_and_concatenate() {
        let a: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let fa = ruzstd::encoding::compress_to_vec(
            a.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(fa.len() < a.len() / 4, "compressible data compresses");
        assert_eq!(decompress(&fa, a.len()).unwrap(), a);
        assert!(decompress(&fa, a.len() + 1).is_err());
    }

    #[test]
    fn compression_runs_in_order_and_a_cancelled_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames");
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 7) as u8).collect();
        let never = AtomicBool::new(false);
        let chunks = Compressor::run(File::create(&path).unwrap(), &never, |sink| {
            sink.write(&data)
        })
        .unwrap();
        let raw: Vec<u64> = chunks.iter().map(|c| c.raw_size).collect();
        assert_eq!(raw, [CHUNK as u64, CHUNK as u64, 10]);
        let frames = std::fs::read(&path).unwrap();
        assert_eq!(
            frames.len() as u64,
            chunks.iter().map(|c| c.size).sum::<u64>()
        );
        let mut at = 0;
        let mut back = Vec::new();
        for c in &chunks {
            let f = &frames[at..at + c.size as usize];
            assert_eq!(sha256_hex(f), c.sha256);
            back.extend(decompress(f, c.raw_size as usize).unwrap());
            at += c.size as usize;
        }
        assert_eq!(back, data);

        // Cancelled with more chunks queued than there are workers: the producer must not
        // wait forever on a full queue (Ctrl-C during a save once hung exactly so).
        let (done_tx, done_rx) = mpsc::channel();
        let path2 = dir.path().join("frames2");
        std::thread::spawn(move || {
            let cancel = AtomicBool::new(true);
            let r = Compressor::run(File::create(&path2).unwrap(), &cancel, |sink| {
                for _ in 0..(4 * workers() + 4) {
                    sink.buf = vec![1; 16];
                    sink.flush()?;
                }
                Ok(())
            });
            let _ = done_tx.send(r.is_err());
        });
        let errored = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a cancelled compression ends");
        assert!(errored, "a cancelled run reports it lost chunks");
    }

    #[test]
    fn references_match_docker_familiar_names() {
        assert!(same_reference(
            "redis:7.2.5",
            "docker.io/library/redis:7.2.5"
        ));
        assert!(same_reference("h:5000/cd/redis:7", "h:5000/cd/redis:7"));
        assert!(!same_reference("redis:7.2.5", "redis:7.2.6"));
    }
}
