//! The only place that prints or prompts. Commands hand it values; it decides how they look
//! (TTY or not, JSON or not). Non-interactive runs (no TTY, `--yes`, CI) never prompt: they
//! take the safe default and say so.

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use crate::render::Change;

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub verbose: u8,
    pub yes: bool,
}

impl Ui {
    /// Can we ask the user something? Needs a terminal on both ends and not CI.
    pub fn interactive(&self) -> bool {
        std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none()
    }

    /// A line of information for people, on stderr (stdout is for data).
    pub fn info(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }

    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Data, on stdout.
    pub fn out(&self, text: impl AsRef<str>) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_ref().as_bytes());
        if !text.as_ref().ends_with('\n') {
            let _ = o.write_all(b"\n");
        }
    }

    pub fn select_ip(&self, cands: &[(String, Ipv4Addr)]) -> anyhow::Result<usize> {
        let items: Vec<String> = cands.iter().map(|(n, ip)| format!("{ip}  ({n})")).collect();
        let i = dialoguer::Select::new()
            .with_prompt("Which IP do other machines reach this host on? (kafka advertises it)")
            .items(&items)
            .default(0)
            .interact()?;
        Ok(i)
    }

    /// Asks the user to type `word` to confirm something destructive.
    pub fn confirm_typed(&self, what: &str, word: &str) -> anyhow::Result<bool> {
        let typed: String = dialoguer::Input::new()
            .with_prompt(format!("{what}\nType `{word}` to confirm"))
            .allow_empty(true)
            .interact_text()?;
        Ok(typed.trim() == word)
    }

    pub fn render_report(&self, dir: &Path, report: &[(std::path::PathBuf, Change)]) {
        let (mut created, mut changed, mut same) = (0, 0, 0);
        for (p, c) in report {
            match c {
                Change::Created => {
                    created += 1;
                    eprintln!("  created   {}", p.display());
                }
                Change::Changed => {
                    changed += 1;
                    eprintln!("  changed   {}", p.display());
                }
                Change::Unchanged => {
                    same += 1;
                    if self.verbose > 0 {
                        eprintln!("  unchanged {}", p.display());
                    }
                }
            }
        }
        eprintln!(
            "{created} created, {changed} changed, {same} unchanged in {}",
            dir.display()
        );
    }
}

/// Prints an error chain once, the way `error::format` lays it out.
pub fn error(err: &anyhow::Error) {
    eprintln!("{}", crate::error::format(err));
}
