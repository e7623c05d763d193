//! `load`: verifies a bundle, then rebuilds a `docker load` tar of the images the engine
//! lacks from the chunks they need.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
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
    let bundle = open_verified(path, want, meters)?;
    let mut report = load_verified(engine, &bundle, None, dry_run, meters).await?;
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
    let (tx, rx) = tokio::sync::mpsc::channel::<crate::engine::Result<Bytes>>(8);
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
    let imported = engine.import_images(stream).await;
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the bundle reader panicked"))?;
    produced.with_context(|| format!("reading the bundle `{}`", path.display()))?;
    imported.map_err(|e| anyhow::Error::new(explain(e)))?;
    progress.finish();

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
    /// the chunks that hold them, a batch of chunks per round on every core.
    fn write(
        &self,
        bundle: &Bundle,
        tx: &tokio::sync::mpsc::Sender<crate::engine::Result<Bytes>>,
        progress: &dyn Meter,
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
