//! Engine-generic operations on a stack, below the command layer: `up` (observe, plan,
//! converge), `down` (teardown, purge), `status` (rows), `logs` (masked lines), `backup` and
//! `restore` (a stack's state in one file), `diagnose` (a support archive), `transfer` (pulls
//! and pushes of the image set, retried and classified), `multiarch` (one tag for both
//! architectures). Each works on any
//! [`Engine`](crate::engine::Engine) (the Docker daemon, the fake in tests), returns data or a
//! typed error, and never prints.

pub mod backup;
pub mod diagnose;
pub mod down;
pub mod logs;
pub mod multiarch;
pub mod owner;
pub mod restore;
pub mod status;
pub mod swarm;
pub mod swarm_plan;
pub mod transfer;
pub mod up;
