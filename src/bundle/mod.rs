//! Offline image bundles, below `cdq bundle save|load` and `cdq up --bundle`: the bundle file
//! format and its verification (`format`), packing images the engine exports (`pack`), and
//! loading them back (`unpack`). Must not print (byte counts go to a [`Meter`] the caller
//! gives, results and where the time went are returned) or touch images other than the ones
//! named in the bundle.
//!
//! # Format (`cdq-bundle/2`)
//!
//! ```text
//! header    48 bytes: "CDQBNDL2", manifest length (u64 LE), sha256 of the manifest
//! manifest  JSON (`Manifest`): format, cdq version, arch, per image its reference, id, size,
//!           config digest and layer digests; per blob its digest, size and offset in the
//!           payload; per chunk its compressed size, raw size and the sha256 of its
//!           compressed bytes
//! payload   the chunks, each one independent zstd frame (together: one valid zstd stream)
//! ```
//!
//! The payload, decompressed, is every blob (image config or layer tar) once, keyed by its
//! sha256, cut into 16 MiB chunks. Storing blobs rather than one `docker save` per image is
//! why a bundle of the kit is about the size of its unique layers: the nine kit images share
//! one base layer, which per-image tars would repeat nine times. `load` rebuilds a `docker
//! load` tar holding only the images that are missing (and only the chunks they need).
//!
//! The manifest comes first so a truncated file still has one: what is missing is then
//! named chunk by chunk. Every check (magic, manifest checksum, the file's exact length, the
//! sha256 of every chunk) runs before the engine is asked anything, so a damaged bundle
//! changes nothing. Each frame also carries zstd's checksum of its content, checked as it is
//! decompressed; layer contents are checked once more by Docker on load (each layer must
//! match the diff id in its config) and the image ids after it.
//!
//! Compression is zstd's C library (the `zstd` crate) at level 3 with a window of the whole
//! chunk (`format::LEVEL`, `format::WINDOW_LOG`): smaller than `gzip -6` of the same
//! export and several times faster. Chunks are compressed and decompressed on every core;
//! independent frames are what make that possible. Version 1 bundles (8 MiB chunks of the
//! pure-Rust encoder's fastest level) are refused by name, with the fix: save again.
//! The C library is why the static aarch64 build needs a cross C compiler
//! (`scripts/cc-aarch64-linux-musl`, set up in `.cargo/config.toml`).

mod check;
mod format;
mod pack;
mod unpack;

pub use check::self_check;
pub use format::{Blob, Bundle, Chunk, FORMAT, HEADER_LEN, ImageEntry, MAGIC, Manifest, short};
pub use pack::{SaveProfile, SaveReport, save};
pub use unpack::{LoadProfile, LoadReport, Want, load, load_verified, open_verified};

/// Where a long byte transfer reports progress (the command layer draws it).
pub trait Meter: Send + Sync {
    fn inc(&self, n: u64);
    /// The transfer is complete.
    fn finish(&self);
}

/// Starts a [`Meter`] for `what` (`saving`, `verifying`, `loading`) of `total` bytes.
pub trait Meters {
    fn start(&self, what: &str, total: Option<u64>) -> std::sync::Arc<dyn Meter>;
}
