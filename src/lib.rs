//! cdq: stands up the CD control plane on one Docker host.
//!
//! Data flows one way, top to bottom; nothing imports a module above it:
//!
//! ```text
//! commands/<cmd>   clap values in; context decided once; runtime, connect, prompts, printing (ui)
//!   context        settings (cdq.yaml + CDQ_* + flags) + the decided arch + the decided host IP
//!   kit            render (catalog, templates, secrets) -> files; written atomically; the project
//!   preflight      requirements -> facts (gathered once) -> evaluate (pure) -> report
//!   ops            up (observe -> plan -> execute), down, status, logs, backup, restore,
//!                  diagnose: data, never printed
//!   bundle         offline image bundles: format, pack, unpack
//!   engine         the Engine trait: docker (bollard, its only importer) and the fake
//! ```
//!
//! Where things live: README.md, "Where things live".

pub mod assets;
pub mod bundle;
pub mod catalog;
pub mod cli;
mod commands;
pub mod confighash;
pub mod context;
pub mod engine;
pub mod error;
pub mod execute;
pub mod fsio;
pub mod host;
pub mod hostip;
pub mod imageref;
pub mod interpolate;
pub mod kit;
pub mod lock;
pub mod ops;
pub mod plan;
pub mod preflight;
pub mod project;
pub mod regclient;
pub mod registry;
pub mod render;
pub mod secrets;
pub mod services;
pub mod settings;
pub mod swarm;
pub mod ui;
pub mod yaml;

use clap::Parser;

/// Runs cdq with the process arguments and returns the exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                error::Kind::Usage.exit_code()
            } else {
                0
            };
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => match ui::output_error() {
            None => code,
            Some(why) => {
                let e = anyhow::Error::new(
                    error::CdqError::failure(format!(
                        "cannot write the output to standard output: {why}"
                    ))
                    .hint("free space where the output goes (or send it elsewhere), then run this again"),
                );
                ui::error(&e);
                error::exit_code(&e)
            }
        },
        Err(e) => {
            ui::error(&e);
            error::exit_code(&e)
        }
    }
}
