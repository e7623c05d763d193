//! `save`: exports images from the engine and packs their blobs, once each, into
//! compressed chunks of a bundle file (written beside, then renamed).
//!
//! Three stages overlap: the async side forwards the daemon's export; one thread reads it
//! as a tar, hashes each blob as it streams past (a blob is never held whole in memory) and
//! cuts the payload into chunks; one worker per core compresses a chunk and hashes its
//! frame; a writer puts the frames in order. [`SaveProfile`] says where the time went.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::{Engine, explain};
use crate::error::CdqError;
use crate::services::Arch;

use super::format::*;
use super::{Meter, Meters};

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
    pub profile: SaveProfile,
}

/// Where a save's time went (`cdq -v bundle save` prints it). The stages overlap, so the
/// parts add up to more than the whole: what matters is which stage waited on which.
#[derive(Debug, Clone, Default)]
pub struct SaveProfile {
    /// Until the daemon's export ended (the last byte forwarded).
    pub export: Duration,
    /// The tar reader waited for the daemon's next bytes: the export was the bottleneck.
    pub export_wait: Duration,
    /// sha256 of the blobs, on the tar reader's thread.
    pub hashing: Duration,
    /// The tar reader waited for a free compression worker: compression was the bottleneck.
    pub compress_wait: Duration,
    /// Compressing and hashing chunks, summed over the workers.
    pub compress: Duration,
    /// Writing frames to the temporary file.
    pub write: Duration,
    /// Header, manifest, frames into the bundle file, synced and renamed.
    pub finish: Duration,
    pub workers: usize,
}

/// Exports `images` (service, reference) for `arch` from the engine into a bundle at `out`
/// (written to a temporary file beside it, then renamed: a failed save leaves nothing).
pub async fn save<E: Engine>(
    engine: &E,
    images: &[(String, String)],
    arch: Arch,
    out: &Path,
    meters: &dyn Meters,
) -> anyhow::Result<SaveReport> {
    let t0 = Instant::now();
    let mut missing = Vec::new();
    let mut infos = BTreeMap::new();
    for (_, reference) in images {
        match engine
            .image(reference)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))?
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
    let t_export = Instant::now();
    let progress = meters.start("saving", None);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, String>>(16);
    let cancel = Arc::new(AtomicBool::new(false));
    // A thread of its own: the current-thread runtime keeps reading the export meanwhile.
    let pack_thread = {
        let frames_path = frames_path.clone();
        let progress = progress;
        let p = progress.clone();
        let cancel = cancel.clone();
        let handle =
            std::thread::spawn(move || pack(ChannelReader::new(rx), &frames_path, &*p, &cancel));
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
    let export_time = t_export.elapsed();
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
        return Err(anyhow::Error::new(explain(e)));
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
    let t_finish = Instant::now();
    let bytes = tmp.finish(&manifest, out)?;
    let mut profile = packed.profile;
    profile.export = export_time;
    profile.finish = t_finish.elapsed();
    Ok(SaveReport {
        path: out.to_path_buf(),
        manifest,
        bytes,
        tar_bytes: packed.tar_bytes,
        elapsed: t0.elapsed(),
        profile,
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
    /// Time spent waiting for the next piece.
    waited: Duration,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>) -> Self {
        ChannelReader {
            rx,
            buf: Bytes::new(),
            waited: Duration::ZERO,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            let t = Instant::now();
            let piece = self.rx.blocking_recv();
            self.waited += t.elapsed();
            match piece {
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
    profile: SaveProfile,
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
    progress: &'a dyn Meter,
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
    input: ChannelReader,
    frames_path: &Path,
    progress: &dyn Meter,
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
    let mut hashing = Duration::ZERO;
    let mut piece = vec![0u8; 1 << 20];
    let (chunks, mut profile) = Compressor::run(out, cancel, |sink| -> anyhow::Result<()> {
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
            // Streamed into the payload as it is hashed: a 300 MiB layer never sits in
            // memory whole. The daemon writes each distinct blob once (a layer at another
            // depth is a symlink), so the digest is only known after the bytes are placed;
            // a repeat (never seen from Docker) is then left unreferenced in the payload.
            let offset = sink.position();
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut piece)?;
                if n == 0 {
                    break;
                }
                let t = Instant::now();
                hasher.update(&piece[..n]);
                hashing += t.elapsed();
                sink.write(&piece[..n])?;
                size += n as u64;
            }
            let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
            if seen.insert(digest.clone()) {
                blobs.push(Blob {
                    digest: digest.clone(),
                    size,
                    offset,
                });
            }
            files.insert(path, digest);
        }
        Ok(())
    })?;
    // Drain what follows the tar's end marker, so the byte count is the whole export.
    std::io::copy(&mut counting, &mut std::io::sink())?;
    profile.export_wait = counting.inner.waited;
    profile.hashing = hashing;
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
        profile,
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

/// Raw bytes in, independent zstd frames out, on every core, written in order.
pub(crate) struct Compressor;

/// Where `pack` puts raw payload bytes.
pub(crate) struct Sink<'a> {
    buf: Vec<u8>,
    position: u64,
    next: usize,
    jobs: mpsc::SyncSender<(usize, Vec<u8>)>,
    cancel: &'a AtomicBool,
    /// Time spent waiting for a worker to take a chunk.
    waited: Duration,
}

impl Sink<'_> {
    fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn write(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
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
        let t = Instant::now();
        self.jobs
            .send((self.next, chunk))
            .map_err(|_| anyhow::anyhow!("the bundle compressor stopped"))?;
        self.waited += t.elapsed();
        self.next += 1;
        Ok(())
    }
}

impl Compressor {
    /// Runs `produce` with a sink; compresses what it writes on worker threads and appends
    /// the frames to `out` in order. Returns one `Chunk` per frame, and the compression and
    /// writing parts of the profile.
    pub(crate) fn run(
        out: File,
        cancel: &AtomicBool,
        produce: impl FnOnce(&mut Sink) -> anyhow::Result<()>,
    ) -> anyhow::Result<(Vec<Chunk>, SaveProfile)> {
        let n = workers();
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(n);
        let jobs_rx = Mutex::new(jobs_rx);
        let (done_tx, done_rx) = mpsc::sync_channel::<anyhow::Result<Done>>(n);
        let busy = Mutex::new(Duration::ZERO);
        std::thread::scope(|scope| {
            for _ in 0..n {
                let done_tx = done_tx.clone();
                let jobs_rx = &jobs_rx;
                let busy = &busy;
                scope.spawn(move || {
                    // A worker that cannot start still drains the queue (below), so the
                    // producer is never left waiting on it.
                    let mut zstd = match compressor() {
                        Ok(c) => Some(c),
                        Err(e) => {
                            cancel.store(true, Ordering::Relaxed);
                            let _ = done_tx.send(Err(e.context("setting up zstd")));
                            None
                        }
                    };
                    let mut mine = Duration::ZERO;
                    loop {
                        let job = jobs_rx.lock().expect("job queue").recv();
                        let Ok((i, raw)) = job else { break };
                        // Cancelled: keep taking jobs (a producer may be waiting on a full
                        // queue) but do not compress them.
                        let Some(zstd) = zstd.as_mut() else { continue };
                        if cancel.load(Ordering::Relaxed) {
                            continue;
                        }
                        let t = Instant::now();
                        let done = zstd
                            .compress(&raw)
                            .map(|frame| Done {
                                index: i,
                                sha256: sha256_hex(&frame),
                                frame,
                                raw: raw.len() as u64,
                            })
                            .with_context(|| format!("compressing chunk {}", i + 1));
                        mine += t.elapsed();
                        if done_tx.send(done).is_err() {
                            break;
                        }
                    }
                    *busy.lock().expect("profile lock") += mine;
                });
            }
            drop(done_tx);
            let writer = scope.spawn(move || -> anyhow::Result<(Vec<Chunk>, Duration)> {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
                let mut waiting = BTreeMap::new();
                let mut chunks = Vec::new();
                let mut writing = Duration::ZERO;
                // On a failure (a chunk that would not compress, a full disk) the writer
                // stops the run through `cancel` and keeps draining: the workers then take
                // jobs without compressing them, so the producer never blocks on a full
                // queue, and its next write ends the export.
                let mut failed: Option<anyhow::Error> = None;
                for done in done_rx {
                    if failed.is_some() {
                        continue;
                    }
                    let d = match done {
                        Ok(d) => d,
                        Err(e) => {
                            cancel.store(true, Ordering::Relaxed);
                            failed = Some(e);
                            continue;
                        }
                    };
                    waiting.insert(d.index, d);
                    while let Some(d) = waiting.remove(&chunks.len()) {
                        let t = Instant::now();
                        if let Err(e) = out.write_all(&d.frame) {
                            cancel.store(true, Ordering::Relaxed);
                            failed = Some(anyhow::Error::new(e).context("writing the bundle"));
                            break;
                        }
                        writing += t.elapsed();
                        chunks.push(Chunk {
                            size: d.frame.len() as u64,
                            raw_size: d.raw,
                            sha256: d.sha256,
                        });
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                let t = Instant::now();
                out.flush()?;
                writing += t.elapsed();
                if !waiting.is_empty() {
                    anyhow::bail!("the bundle compressor lost a chunk");
                }
                Ok((chunks, writing))
            });
            let mut sink = Sink {
                buf: Vec::with_capacity(CHUNK),
                position: 0,
                next: 0,
                jobs: jobs_tx,
                cancel,
                waited: Duration::ZERO,
            };
            let produced = produce(&mut sink).and_then(|()| sink.flush());
            let compress_wait = sink.waited;
            drop(sink);
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the bundle writer panicked"))?;
            // The writer's error first: when it stopped the run, the producer's is only
            // "interrupted".
            let (chunks, write) = written?;
            produced?;
            if cancel.load(Ordering::Relaxed) {
                anyhow::bail!("interrupted");
            }
            let profile = SaveProfile {
                compress_wait,
                compress: *busy.lock().expect("profile lock"),
                write,
                workers: n,
                ..SaveProfile::default()
            };
            Ok((chunks, profile))
        })
    }
}

/// A compressed chunk, from a worker to the writer.
struct Done {
    index: usize,
    frame: Vec<u8>,
    raw: u64,
    sha256: String,
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
    fn frames_round_trip_and_refuse_a_wrong_size_or_a_bad_checksum() {
        let a: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let fa = compressor().unwrap().compress(&a).unwrap();
        assert!(fa.len() < a.len() / 4, "compressible data compresses");
        let mut d = decompressor().unwrap();
        assert_eq!(decompress(&mut d, &fa, a.len()).unwrap(), a);
        let err = decompress(&mut d, &fa, a.len() + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not 400001"), "{err}");
        assert!(decompress(&mut d, &fa, a.len() - 1).is_err());
        // The frame's own checksum (its last 4 bytes): flipped, the decoder refuses it
        // even though the content decodes.
        let mut bad = fa.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = decompress(&mut d, &bad, a.len()).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("checksum"), "{err}");
    }

    #[test]
    fn compression_runs_in_order_and_a_cancelled_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames");
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 7) as u8).collect();
        let never = AtomicBool::new(false);
        let (chunks, profile) = Compressor::run(File::create(&path).unwrap(), &never, |sink| {
            sink.write(&data)
        })
        .unwrap();
        assert_eq!(profile.workers, workers());
        let raw: Vec<u64> = chunks.iter().map(|c| c.raw_size).collect();
        assert_eq!(raw, [CHUNK as u64, CHUNK as u64, 10]);
        let frames = std::fs::read(&path).unwrap();
        assert_eq!(
            frames.len() as u64,
            chunks.iter().map(|c| c.size).sum::<u64>()
        );
        let mut at = 0;
        let mut back = Vec::new();
        let mut d = decompressor().unwrap();
        for c in &chunks {
            let f = &frames[at..at + c.size as usize];
            assert_eq!(sha256_hex(f), c.sha256);
            back.extend(decompress(&mut d, f, c.raw_size as usize).unwrap());
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
