//! cdq: stands up the CD control plane on one Docker host.
//!
//! Data flows one way (see `../shared/design.md`): cli -> settings -> host facts ->
//! preflight -> render -> project model -> observe -> plan -> execute -> ui.

pub mod assets;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod confighash;
pub mod engine;
pub mod error;
pub mod execute;
pub mod host;
pub mod hostip;
pub mod imageref;
pub mod interpolate;
pub mod lock;
pub mod plan;
pub mod preflight;
pub mod project;
pub mod render;
pub mod secrets;
pub mod services;
pub mod settings;
pub mod stack;
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
        Ok(code) => code,
        Err(e) => {
            ui::error(&e);
            error::exit_code(&e)
        }
    }
}
