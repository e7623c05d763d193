//! An in-memory [`Engine`](super::Engine) for fast tests with tokio's paused clock.
