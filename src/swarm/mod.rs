//! The Docker Swarm target: the same settings deploy the stack on a Swarm cluster, beside
//! the single-host path and not inside it. `stack` renders the stack file and parses it
//! into what the engine creates; the operations on services, tasks and nodes live in
//! `ops::swarm`, the engine calls in `engine::swarm` (trait) and `engine::docker::swarm`.
//!
//! Must not: print or prompt (that is the command layer), or touch a single-host
//! container.

pub mod stack;
