//! The bundle file format (`cdq-bundle/2`): header, manifest, chunked payload; opening a
//! bundle and verifying every byte of it before anything else is asked; the zstd settings
//! every chunk is compressed with, and decompressing one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::CdqError;
use crate::services::Arch;

use super::Meter;

pub const MAGIC: &[u8; 8] = b"CDQBNDL2";
/// What every version's magic starts with (the last byte is the version): an older bundle is
/// named as such, not as "not a bundle".
const MAGIC_STEM: &[u8; 7] = b"CDQBNDL";
pub const FORMAT: &str = "cdq-bundle/2";
pub const HEADER_LEN: u64 = 48;
/// Raw bytes per chunk. Each chunk is one zstd frame whose window spans the whole chunk
/// (`WINDOW_LOG`), so a match anywhere earlier in the chunk is found. Measured on the kit's
/// 775 MiB `docker save` tar at level 3: 8 MiB chunks 238 MiB, 16 MiB 231 MiB, 32 MiB 228
/// MiB (gzip -6: 270 MiB). 16 MiB still gives a 775 MiB export ~50 chunks to spread over
/// the cores, and keeps a worker's memory at two chunks.
pub(crate) const CHUNK: usize = 16 << 20;
/// log2 of [`CHUNK`]: the compression window.
pub(crate) const WINDOW_LOG: u32 = 24;
/// zstd's level: 3 (its default) is already smaller than gzip -6 on the kit; level 5 saves
/// another 2.5% for 1.7x the CPU (measured on 8 MiB chunks), which `save` cannot afford
/// while the daemon's export shares the cores.
pub(crate) const LEVEL: i32 = 3;
/// What a damaged bundle's error suggests.
pub(crate) const DAMAGED_HINT: &str = "copy the bundle again (compare its `sha256sum` with the machine it was saved on), or run `cdq bundle save` there again";

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

/// The two fields every format version's manifest has.
#[derive(Deserialize)]
struct Probe {
    format: String,
    #[serde(default)]
    cdq_version: String,
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
    pub(crate) fn payload_size(&self) -> u64 {
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

pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn damaged(path: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    CdqError::usage(format!("bundle `{}` is damaged: {what}", path.display()))
        .hint(DAMAGED_HINT)
        .into()
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
        if got < MAGIC.len() || &header[..7] != MAGIC_STEM {
            return Err(CdqError::usage(format!(
                "`{}` is not a cdq bundle (it does not start with `CDQBNDL`)",
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
        // Every version keeps this header and a manifest naming its format and the cdq that
        // wrote it, so an older (or newer) bundle is refused by name before its fields are.
        let probe: Probe = serde_json::from_slice(&json)
            .map_err(|e| damaged(path, format!("its manifest is unreadable: {e}")))?;
        if probe.format != FORMAT || &header[..8] != MAGIC {
            return Err(CdqError::usage(format!(
                "bundle `{}` is in format `{}`; this cdq reads `{FORMAT}` only",
                path.display(),
                probe.format
            ))
            .hint(format!(
                "save the bundle again with this cdq (`cdq bundle save` where the images are), or load it with the cdq that saved it ({})",
                probe.cdq_version
            ))
            .into());
        }
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| damaged(path, format!("its manifest is unreadable: {e}")))?;
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

    pub(crate) fn chunk_offsets(&self) -> Vec<u64> {
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
    pub fn verify(&self, progress: &dyn Meter) -> anyhow::Result<()> {
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

pub(crate) fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A chunk's frame back to its `raw_size` bytes. The frame carries zstd's checksum of its
/// content (XXH64), which the decoder checks: a chunk whose compressed bytes passed sha256
/// but decode wrong (a bug, or memory) is an error, never a wrong layer.
pub(crate) fn decompress(
    d: &mut zstd::bulk::Decompressor<'static>,
    frame: &[u8],
    raw_size: usize,
) -> anyhow::Result<Vec<u8>> {
    // One byte of room: a frame that holds more than the manifest says is caught below
    // rather than cut to size.
    let mut out = Vec::with_capacity(raw_size + 1);
    d.decompress_to_buffer(frame, &mut out)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if out.len() != raw_size {
        anyhow::bail!("it holds {} bytes, not {raw_size}", out.len());
    }
    Ok(out)
}

/// A compressor set up as every chunk is compressed: [`LEVEL`], a window of the chunk,
/// the content size and checksum in each frame.
pub(crate) fn compressor() -> anyhow::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::new(LEVEL)?;
    c.set_parameter(CParameter::WindowLog(WINDOW_LOG))?;
    c.set_parameter(CParameter::ChecksumFlag(true))?;
    c.set_parameter(CParameter::ContentSizeFlag(true))?;
    Ok(c)
}

pub(crate) fn decompressor() -> anyhow::Result<zstd::bulk::Decompressor<'static>> {
    let mut d = zstd::bulk::Decompressor::new()?;
    // A chunk's window is the chunk: allow it whatever the library's default limit.
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG))?;
    Ok(d)
}
