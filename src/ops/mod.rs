//! Engine-generic operations on a stack, below the command layer: `up` (observe, plan,
//! converge), `down` (teardown, purge), `status` (rows), `logs` (masked lines). Each works on
//! any [`Engine`](crate::engine::Engine) (the Docker daemon, the fake in tests), returns data
//! or a typed error, and never prints.

pub mod down;
pub mod logs;
pub mod status;
pub mod swarm;
pub mod up;
