//! `cdq bundle self-check` (hidden): proves this binary's compression works where it runs,
//! without an engine. scripts/release.sh runs it on each release binary (the aarch64 one
//! under qemu), because zstd is C built by a cross compiler: a binary can link and print
//! its version and still have a broken codec. It runs the same code a save and a load run:
//! the chunking and compression workers, the frame hashes, the parallel decompression.

use std::fs::File;
use std::sync::atomic::AtomicBool;

use super::format::{CHUNK, LEVEL, WINDOW_LOG, decompress, decompressor, sha256_hex};
use super::pack::Compressor;

/// Compresses a bit more than one chunk of made-up, tar-like bytes through the save path
/// into a temporary file, decompresses it back on every core, and checks that the bytes
/// match and that a flipped bit in a frame is refused. Returns a line saying what passed.
pub fn self_check() -> anyhow::Result<String> {
    let data = sample(CHUNK + (CHUNK / 4));
    let dir = tempdir()?;
    let path = dir.0.join("frames");
    let never = AtomicBool::new(false);
    let (chunks, _) = Compressor::run(File::create(&path)?, &never, |sink| sink.write(&data))?;
    let frames = std::fs::read(&path)?;
    let mut at = 0usize;
    let mut parts = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let f = &frames[at..at + c.size as usize];
        if sha256_hex(f) != c.sha256 {
            anyhow::bail!("self-check: chunk {} does not match its sha256", i + 1);
        }
        parts.push((f, c.raw_size as usize));
        at += c.size as usize;
    }
    let back: Vec<anyhow::Result<Vec<u8>>> = std::thread::scope(|scope| {
        let hs: Vec<_> = parts
            .iter()
            .map(|&(f, raw)| scope.spawn(move || decompress(&mut decompressor()?, f, raw)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("decompression panicked")))
            })
            .collect()
    });
    let mut joined = Vec::with_capacity(data.len());
    for b in back {
        joined.extend(b?);
    }
    if joined != data {
        anyhow::bail!("self-check: the bytes decompressed differ from the bytes compressed");
    }
    let (f, raw) = parts[0];
    let mut bad = f.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    if decompress(&mut decompressor()?, &bad, raw).is_ok() {
        anyhow::bail!("self-check: a frame with a flipped bit was accepted");
    }
    Ok(format!(
        "bundle self-check passed: zstd {} level {LEVEL} window 2^{WINDOW_LOG}, {} bytes in {} chunks -> {} bytes and back, a damaged frame refused",
        zstd::zstd_safe::version_string(),
        data.len(),
        chunks.len(),
        frames.len()
    ))
}

/// Bytes that compress like a layer tar does: runs of text among noise.
fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 2_654_435_761;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 4096) % 2 == 0 {
                b"usr/lib/x86_64-linux-gnu/"[i % 25]
            } else {
                (x % 251) as u8
            }
        })
        .collect()
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

fn tempdir() -> anyhow::Result<TempDir> {
    let p = std::env::temp_dir().join(format!("cdq-self-check-{}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| anyhow::anyhow!("creating `{}`: {e}", p.display()))?;
    Ok(TempDir(p))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_self_check_passes_here() {
        let line = super::self_check().unwrap();
        assert!(line.contains("level 3"), "{line}");
        assert!(line.contains("in 2 chunks"), "{line}");
    }
}
