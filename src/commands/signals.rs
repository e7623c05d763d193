//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, systemd and CI runners, a closed terminal) for the
//! commands that change things: `up`, `down`, `bundle load`, `pull`. Once
//! [`Signals::install`] has run, these signals no longer kill cdq; each phase ends at its
//! next await point instead ([`Signals::guard`]), or, while `up` creates and waits, through
//! the executor's cancel channel, or, for work on a blocking thread (`down --purge`),
//! between two whole steps through [`Signals::flag`]; so every interruption ends in a known
//! state, says which, and exits 128 + the signal's number (130, 143, 129). A second signal
//! quits at once.
//!
//! Synchronous steps (rendering, atomic file writes, one directory's deletion) are never
//! cut in half: a signal that arrives during one is acted on when it ends.
//!
//! Must not: decide what a phase leaves behind (the phases say it in their hint).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::{CdqError, Kind};

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

pub fn name(n: i32) -> &'static str {
    match n {
        SIGHUP => "SIGHUP",
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

pub struct Signals {
    rx: watch::Receiver<Option<i32>>,
    cancel: watch::Receiver<bool>,
    flag: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Signals {
    /// Catches the three signals from now on. Must run inside the runtime.
    pub fn install() -> anyhow::Result<Signals> {
        let mut hup = signal(SignalKind::hangup())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(None);
        let (cancel_tx, cancel) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        let raised = flag.clone();
        let task = tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let n = tokio::select! {
                    _ = hup.recv() => SIGHUP,
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                seen += 1;
                if seen > 1 {
                    eprintln!("\n{} again: quitting at once", name(n));
                    std::process::exit(Kind::Signal(n).exit_code());
                }
                eprintln!(
                    "\n{}: stopping at the next safe point (send it again to quit at once)",
                    name(n)
                );
                raised.store(true, Ordering::SeqCst);
                let _ = tx.send(Some(n));
                let _ = cancel_tx.send(true);
            }
        });
        Ok(Signals {
            rx,
            cancel,
            flag,
            task,
        })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        *self.rx.borrow()
    }

    /// True once a signal arrived: what the executor's waits watch.
    pub fn cancel(&self) -> watch::Receiver<bool> {
        self.cancel.clone()
    }

    /// Set once a signal arrived: what a step on a blocking thread checks between two whole
    /// pieces of work (the runtime keeps running the signal task meanwhile).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Runs `fut` unless a signal comes first; then `fut` is dropped at its await point and
    /// the error says `interrupted by SIG while <doing>`, with `left` as the hint (what is
    /// left and how to resume). A `fut` that is ready first wins.
    pub async fn guard<T>(
        &self,
        doing: &str,
        left: &str,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if let Some(n) = self.received() {
            return Err(interrupted(n, doing, left).into());
        }
        let mut rx = self.rx.clone();
        tokio::select! {
            biased;
            r = fut => r,
            n = async { loop {
                if let Some(n) = *rx.borrow_and_update() { break n; }
                if rx.changed().await.is_err() { std::future::pending::<()>().await; }
            } } => Err(interrupted(n, doing, left).into()),
        }
    }

    /// Fails with the interruption when a signal arrived (after a step that cannot be cut).
    pub fn check(&self, doing: &str, left: &str) -> anyhow::Result<()> {
        match self.received() {
            Some(n) => Err(interrupted(n, doing, left).into()),
            None => Ok(()),
        }
    }
}

pub fn interrupted(n: i32, doing: &str, left: &str) -> CdqError {
    CdqError::new(
        Kind::Signal(n),
        format!("interrupted by {} while {doing}", name(n)),
    )
    .hint(left.to_string())
}
