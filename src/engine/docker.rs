//! The Docker implementation of [`Engine`](super::Engine), on bollard. The only file that
//! imports bollard.
