//! `cdq completions bash|zsh|fish`: the shell completion script, from clap's own generator
//! over the same command definition the parser uses, so it cannot drift from the flags.

use clap::CommandFactory;

use crate::cli::Cli;

pub fn run(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cdq", &mut out);
    crate::ui::Ui {
        verbose: 0,
        yes: false,
    }
    .out(String::from_utf8(out)?);
    Ok(0)
}
