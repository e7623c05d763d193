//! `load`: verifies a bundle, then rebuilds a `docker load` tar of the images the engine
//! lacks from the chunks they need.
//!
//! The chunks are decompressed on every core, a few ahead of the tar writer, which hands
//! the daemon slices of the decompressed chunks as they are (no copy). Each chunk's sha256
//! is checked again as it is read (the file may have changed since the verification), and
//! zstd checks each frame's content checksum. [`LoadProfile`] says where the time went.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::engine::{ByteStream, Engine, EngineError, explain};
use crate::error::CdqError;
use crate::services::Arch;

use super::format::*;
use super::{Meter, Meters};

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
    pub profile: LoadProfile,
}

/// Where a load's time went (`cdq -v bundle load` prints it). Decompression overlaps the
/// daemon's import; the waits say which of the two held the other up.
#[derive(Debug, Clone, Default)]
pub struct LoadProfile {
    /// Reading the whole file and checking every chunk's sha256, before anything is loaded.
    pub verify: Duration,
    /// Reading, re-checking and decompressing chunks, summed over the workers.
    pub decompress: Duration,
    /// The tar writer waited for the next chunk: decompression was the bottleneck.
    pub decompress_wait: Duration,
    /// The tar writer waited for the daemon to take more: the daemon was the bottleneck.
    pub send_wait: Duration,
    /// From the import request until the daemon answered (the images are then loaded).
    pub import: Duration,
    pub workers: usize,
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
    meters: &dyn Meters,
) -> anyhow::Result<LoadReport> {
    let t0 = Instant::now();
    let t_verify = Instant::now();
    let bundle = open_verified(path, want, meters)?;
    let verify = t_verify.elapsed();
    let mut report = load_verified(engine, &bundle, None, dry_run, meters).await?;
    report.profile.verify = verify;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Opens the bundle and checks it whole (architecture, manifest, every chunk), once, before
/// any engine is asked anything: what [`load_verified`] then loads from, onto one engine or
/// several.
pub fn open_verified(path: &Path, want: &Want, meters: &dyn Meters) -> anyhow::Result<Bundle> {
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
    let verifying = meters.start("verifying", Some(bundle.manifest.payload_size()));
    bundle.verify(&*verifying)?;
    verifying.finish();
    Ok(bundle)
}

/// Loads into the engine the images of a verified bundle that it lacks (or holds under
/// another id); `only` narrows them to these references (what one node's tasks run).
pub async fn load_verified<E: Engine>(
    engine: &E,
    bundle: &Bundle,
    only: Option<&std::collections::BTreeSet<String>>,
    dry_run: bool,
    meters: &dyn Meters,
) -> anyhow::Result<LoadReport> {
    let t0 = Instant::now();
    let path = bundle.path.clone();
    let mut report = LoadReport::default();
    let wanted = bundle
        .manifest
        .images
        .iter()
        .filter(|i| only.is_none_or(|o| o.contains(&i.reference)));
    for img in wanted {
        match engine
            .image(&img.reference)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))?
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
    let progress = meters.start("loading", Some(report.bytes));
    // Pieces are up to a chunk (16 MiB) each: a short queue bounds what waits in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<crate::engine::Result<Bytes>>(4);
    let producer = {
        let bundle = bundle.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let result = plan.write(&bundle, &tx, &*progress);
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(EngineError::Other(format!("{e:#}"))));
            }
            result
        })
    };
    let stream: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let t_import = Instant::now();
    let imported = engine.import_images(stream).await;
    report.profile.import = t_import.elapsed();
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the bundle reader panicked"))?;
    let profile = produced.with_context(|| format!("reading the bundle `{}`", path.display()))?;
    imported.map_err(|e| anyhow::Error::new(explain(e)))?;
    progress.finish();
    // `verify` is `load`'s to fill: a bundle loaded onto several nodes is verified once.
    report.profile = LoadProfile {
        import: report.profile.import,
        ..profile
    };

    for img in &report.loaded {
        let now = engine
            .image(&img.reference)
            .await
            .map_err(|e| anyhow::Error::new(explain(e)))?;
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
    /// the chunks that hold them, on every core, a few chunks ahead of the writer.
    fn write(
        &self,
        bundle: &Bundle,
        tx: &tokio::sync::mpsc::Sender<crate::engine::Result<Bytes>>,
        progress: &dyn Meter,
    ) -> anyhow::Result<LoadProfile> {
        let mut out = TarOut {
            buf: Vec::with_capacity(TarOut::BUF),
            tx,
            waited: Duration::ZERO,
        };
        out.header("manifest.json", self.manifest_json.len() as u64)?;
        out.data(&self.manifest_json)?;
        out.pad(self.manifest_json.len() as u64)?;

        let m = &bundle.manifest;
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

        let decoder = Decoder::new(bundle, &needed);
        let mut profile = LoadProfile {
            workers: decoder.workers,
            ..LoadProfile::default()
        };
        let mut bi = 0; // the blob being written
        let mut written = 0u64; // of it
        std::thread::scope(|scope| -> anyhow::Result<()> {
            for _ in 0..decoder.workers {
                scope.spawn(|| decoder.work());
            }
            let result = (|| -> anyhow::Result<()> {
                for (k, &i) in needed.iter().enumerate() {
                    let t = Instant::now();
                    let raw = decoder.take(k)?;
                    profile.decompress_wait += t.elapsed();
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
                            out.bytes(raw.slice((from - start) as usize..(to - start) as usize))?;
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
                Ok(())
            })();
            // Whatever happened, the workers stop at their next chunk.
            decoder.stop();
            result
        })?;
        profile.decompress = decoder.busy();
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
        out.send()?;
        profile.send_wait = out.waited;
        Ok(profile)
    }
}

/// Decompresses the needed chunks in order on every core, at most [`Decoder::AHEAD`] per
/// worker ahead of the writer that takes them (memory stays a few chunks whatever the
/// bundle's size).
struct Decoder<'a> {
    bundle: &'a Bundle,
    offsets: Vec<u64>,
    needed: &'a [usize],
    workers: usize,
    /// The next position in `needed` a worker claims.
    next: AtomicUsize,
    state: Mutex<DecoderState>,
    changed: Condvar,
}

#[derive(Default)]
struct DecoderState {
    /// Positions in `needed` the writer has taken.
    taken: usize,
    ready: BTreeMap<usize, anyhow::Result<Bytes>>,
    stopped: bool,
    busy: Duration,
}

impl<'a> Decoder<'a> {
    const AHEAD: usize = 2;

    fn new(bundle: &'a Bundle, needed: &'a [usize]) -> Decoder<'a> {
        Decoder {
            bundle,
            offsets: bundle.chunk_offsets(),
            needed,
            workers: workers().min(needed.len().max(1)),
            next: AtomicUsize::new(0),
            state: Mutex::new(DecoderState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DecoderState> {
        self.state.lock().expect("decoder lock")
    }

    /// A worker: claims the next position, waits for room, decodes, hands it over.
    fn work(&self) {
        let mut zstd = decompressor();
        let mut busy = Duration::ZERO;
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            if k >= self.needed.len() {
                break;
            }
            {
                let mut st = self.lock();
                while !st.stopped && k >= st.taken + Self::AHEAD * self.workers {
                    st = self.changed.wait(st).expect("decoder lock");
                }
                if st.stopped {
                    break;
                }
            }
            let t = Instant::now();
            let i = self.needed[k];
            let result = match zstd.as_mut() {
                Ok(d) => self.decode(d, i),
                Err(e) => Err(anyhow::anyhow!("setting up zstd: {e}")),
            };
            busy += t.elapsed();
            let mut st = self.lock();
            st.ready.insert(k, result);
            self.changed.notify_all();
        }
        self.lock().busy += busy;
    }

    fn decode(&self, d: &mut zstd::bulk::Decompressor<'static>, i: usize) -> anyhow::Result<Bytes> {
        let c = &self.bundle.manifest.chunks[i];
        let mut buf = vec![0u8; c.size as usize];
        let mut f = File::open(&self.bundle.path)?;
        f.seek(SeekFrom::Start(self.offsets[i]))?;
        f.read_exact(&mut buf)?;
        // Checked before the load began; checked again because the file may have changed
        // since.
        if sha256_hex(&buf) != c.sha256 {
            anyhow::bail!("chunk {} changed during the load", i + 1);
        }
        let raw = decompress(d, &buf, c.raw_size as usize)
            .with_context(|| format!("decompressing chunk {}", i + 1))?;
        Ok(Bytes::from(raw))
    }

    /// The decompressed chunk at position `k` of `needed`, once a worker has it.
    fn take(&self, k: usize) -> anyhow::Result<Bytes> {
        let mut st = self.lock();
        loop {
            if let Some(r) = st.ready.remove(&k) {
                st.taken = k + 1;
                self.changed.notify_all();
                return r;
            }
            st = self.changed.wait(st).expect("decoder lock");
        }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn busy(&self) -> Duration {
        self.lock().busy
    }
}

/// A tar written into the upload channel: headers and padding gathered a megabyte at a time,
/// blob contents passed on as the slices of decompressed chunks they are.
struct TarOut<'a> {
    buf: Vec<u8>,
    tx: &'a tokio::sync::mpsc::Sender<crate::engine::Result<Bytes>>,
    /// Time spent waiting for the daemon to take a piece.
    waited: Duration,
}

impl TarOut<'_> {
    const BUF: usize = 1 << 20;
    /// Below this a slice is copied into the buffer rather than sent on its own.
    const SMALL: usize = 64 << 10;

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
            let n = (Self::BUF - self.buf.len()).min(d.len());
            self.buf.extend_from_slice(&d[..n]);
            d = &d[n..];
            if self.buf.len() == Self::BUF {
                self.send()?;
            }
        }
        Ok(())
    }

    /// A blob's bytes: sent as they are, after what the buffer holds.
    fn bytes(&mut self, b: Bytes) -> anyhow::Result<()> {
        if b.len() < Self::SMALL {
            return self.data(&b);
        }
        self.send()?;
        self.push(b)
    }

    fn send(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(Self::BUF),
        ));
        self.push(piece)
    }

    fn push(&mut self, piece: Bytes) -> anyhow::Result<()> {
        let t = Instant::now();
        let sent = self.tx.blocking_send(Ok(piece));
        self.waited += t.elapsed();
        sent.map_err(|_| anyhow::anyhow!("the Docker daemon stopped reading the upload"))
    }
}
