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

    /// Data, on stdout. A failed write (a full disk, `/dev/full`, a closed pipe) is kept
    /// and ends the command with exit 1 ([`output_error`]); the command itself goes on, so
    /// what it was doing ends in a known state.
    pub fn out(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        let nl = if text.ends_with('\n') { "" } else { "\n" };
        write_stdout(&format!("{text}{nl}"));
    }

    /// A view that replaces the previous one (`status --watch`): redrawn in place on a
    /// terminal, appended after a blank line otherwise (a log keeps every table).
    pub fn redraw(&self, text: impl AsRef<str>) {
        let mut o = std::io::stdout().lock();
        if std::io::stdout().is_terminal() {
            // Home, then clear to the end of the screen: no flicker of a full clear.
            let _ = write!(o, "\x1b[H\x1b[J{}", text.as_ref());
        } else {
            let _ = writeln!(o, "{}", text.as_ref());
        }
        let _ = o.flush();
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

static OUTPUT_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Writes and flushes, so an error shows now rather than being lost at exit.
fn write_stdout(text: &str) {
    if OUTPUT_ERROR.get().is_some() {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        let _ = OUTPUT_ERROR.set(e.to_string());
    }
}

/// The first error writing to stdout, if one happened.
pub fn output_error() -> Option<&'static str> {
    OUTPUT_ERROR.get().map(String::as_str)
}

/// Prints an error chain once, the way `error::format` lays it out.
pub fn error(err: &anyhow::Error) {
    eprintln!("{}", crate::error::format(err));
}

// ---- progress --------------------------------------------------------------------------

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::execute::{Failure, Phase, Progress, Reason, Rollback};
use crate::secrets::Scrubber;

/// The phase with what a container said (probe output, failure text) masked.
fn masked(p: &Phase, scrubber: &Scrubber) -> Phase {
    match p {
        Phase::Unhealthy { probe } => Phase::Unhealthy {
            probe: scrubber.scrub(probe),
        },
        Phase::Failed { why } => Phase::Failed {
            why: scrubber.scrub(why),
        },
        other => other.clone(),
    }
}

fn phase_text(p: &Phase) -> String {
    match p {
        Phase::Waiting { on } => format!("waiting for {}", on.join(", ")),
        Phase::Removing => "stopping the old container to replace it".into(),
        Phase::Restarting => "restarting (it was unhealthy)".into(),
        Phase::Creating => "creating".into(),
        Phase::Starting => "starting".into(),
        Phase::Checking => "started, waiting for healthy".into(),
        Phase::Unhealthy { probe } if probe.is_empty() => "unhealthy (still waiting)".into(),
        Phase::Unhealthy { probe } => format!("unhealthy (still waiting): {}", first_line(probe)),
        Phase::Healthy { elapsed } => format!("healthy after {:.1}s", elapsed.as_secs_f64()),
        Phase::Running => "running (no healthcheck)".into(),
        Phase::Kept => "up to date".into(),
        Phase::Failed { why } => format!("FAILED: {why}"),
        Phase::RollingBack => "FAILED: putting the previous container back".into(),
        Phase::RolledBack { healthy: true } => {
            "FAILED, rolled back: the previous container is healthy again".into()
        }
        Phase::RolledBack { healthy: false } => {
            "FAILED, and the rollback did not make the previous container healthy".into()
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// One live line per service (indicatif), for terminals.
pub struct TtyProgress {
    multi: indicatif::MultiProgress,
    bars: BTreeMap<String, indicatif::ProgressBar>,
    scrubber: Scrubber,
}

use std::collections::BTreeMap;

impl TtyProgress {
    pub fn new(services: &[String], scrubber: Scrubber) -> Self {
        let multi =
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
        let width = services.iter().map(String::len).max().unwrap_or(8);
        let style = indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:{width}}}  {{msg}}  {{elapsed}}"
        ))
        .expect("the template is valid");
        let bars = services
            .iter()
            .map(|s| {
                let b = multi.add(
                    indicatif::ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(s.clone()),
                );
                b.set_message("queued");
                b.enable_steady_tick(Duration::from_millis(120));
                (s.clone(), b)
            })
            .collect();
        TtyProgress {
            multi,
            bars,
            scrubber,
        }
    }
}

impl Progress for TtyProgress {
    fn phase(&self, service: &str, phase: &Phase) {
        if let Some(b) = self.bars.get(service) {
            let text = phase_text(&masked(phase, &self.scrubber));
            match phase {
                Phase::Healthy { .. }
                | Phase::Running
                | Phase::Kept
                | Phase::Failed { .. }
                | Phase::RolledBack { .. } => b.finish_with_message(text),
                _ => b.set_message(text),
            }
        }
    }
}

impl Drop for TtyProgress {
    fn drop(&mut self) {
        for b in self.bars.values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
        let _ = self.multi.clear();
    }
}

/// Timestamped lines, for logs and pipes.
pub struct PlainProgress {
    start: Instant,
    last: Mutex<BTreeMap<String, String>>,
    scrubber: Scrubber,
}

impl PlainProgress {
    pub fn new(scrubber: Scrubber) -> Self {
        PlainProgress {
            start: Instant::now(),
            last: Mutex::new(BTreeMap::new()),
            scrubber,
        }
    }
}

impl Progress for PlainProgress {
    fn phase(&self, service: &str, phase: &Phase) {
        let text = phase_text(&masked(phase, &self.scrubber));
        let mut last = self.last.lock().expect("progress lock");
        if last.get(service) == Some(&text) {
            return;
        }
        last.insert(service.to_string(), text.clone());
        eprintln!(
            "[{:>7.2}s] {service}: {text}",
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// One JSON object per line on stdout, for machines.
pub struct JsonProgress {
    start: Instant,
    scrubber: Scrubber,
}

impl JsonProgress {
    pub fn new(scrubber: Scrubber) -> Self {
        JsonProgress {
            start: Instant::now(),
            scrubber,
        }
    }
}

impl Progress for JsonProgress {
    fn phase(&self, service: &str, phase: &Phase) {
        let (kind, detail) = match &masked(phase, &self.scrubber) {
            Phase::Waiting { on } => ("waiting", serde_json::json!({ "on": on })),
            Phase::Removing => ("removing", serde_json::json!({})),
            Phase::Restarting => ("restarting", serde_json::json!({})),
            Phase::Creating => ("creating", serde_json::json!({})),
            Phase::Starting => ("starting", serde_json::json!({})),
            Phase::Checking => ("checking", serde_json::json!({})),
            Phase::Unhealthy { probe } => ("unhealthy", serde_json::json!({ "probe": probe })),
            Phase::Healthy { elapsed } => (
                "healthy",
                serde_json::json!({ "seconds": elapsed.as_secs_f64() }),
            ),
            Phase::Running => ("running", serde_json::json!({})),
            Phase::Kept => ("kept", serde_json::json!({})),
            Phase::Failed { why } => ("failed", serde_json::json!({ "why": why })),
            Phase::RollingBack => ("rolling_back", serde_json::json!({})),
            Phase::RolledBack { healthy } => (
                "rolled_back",
                serde_json::json!({ "previous_healthy": healthy }),
            ),
        };
        let line = serde_json::json!({
            "t": (self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "service": service,
            "phase": kind,
            "detail": detail,
        });
        write_stdout(&format!("{line}\n"));
    }
}

/// The failure report `cdq up` prints before its error line.
pub fn failure_report(f: &Failure) -> String {
    let mut out = String::new();
    let what = match &f.reason {
        Reason::Exited {
            code: Some(c),
            oom: true,
        } => format!("exited with code {c} (killed: out of memory)"),
        Reason::Exited { code: Some(c), .. } => format!("exited with code {c}"),
        Reason::Exited { code: None, .. } => "exited".to_string(),
        Reason::Timeout { after } => format!("was not healthy after {}s", after.as_secs()),
        Reason::Blocked { dependency } => {
            format!("was not started: `{dependency}` did not become healthy")
        }
        Reason::Engine { message } => message.clone(),
    };
    out.push_str(&format!("`{}` {what}\n", f.service));
    if let Some(s) = f.state {
        let health = f
            .health
            .map(|h| format!("{h:?}").to_lowercase())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "  state: {}, health: {health}\n",
            format!("{s:?}").to_lowercase()
        ));
    }
    if let Some(p) = f.last_probe.as_deref().filter(|p| !p.trim().is_empty()) {
        out.push_str("  last healthcheck output:\n");
        for l in p.trim().lines().take(10) {
            out.push_str(&format!("    {l}\n"));
        }
    }
    match &f.rollback {
        Some(Rollback::Restored { image }) => out.push_str(&format!(
            "  rolled back: the previous container (`{image}`) is running and healthy again\n"
        )),
        Some(Rollback::Failed { why }) => out.push_str(&format!(
            "  the rollback to the previous container failed: {why}\n"
        )),
        None => {}
    }
    if !f.logs.is_empty() {
        out.push_str(&format!("  last {} log lines:\n", f.logs.len()));
        for l in &f.logs {
            out.push_str(&format!("    | {l}\n"));
        }
    }
    out
}

// ---- byte transfers (bundle save/load) -------------------------------------------------

/// Bytes moving through a long step (`cdq bundle save|load`): a bar with bytes and rate on a
/// terminal, a plain line every ten seconds otherwise, and one closing line either way.
pub struct Transfer {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    /// The group of bars this one is drawn in, when several transfers run at once.
    group: Option<indicatif::MultiProgress>,
    start: Instant,
    done: std::sync::atomic::AtomicU64,
    last_line: Mutex<Instant>,
}

impl Ui {
    /// Starts showing a transfer of `total` bytes (None: unknown in advance).
    pub fn transfer(&self, what: &str, total: Option<u64>) -> Transfer {
        self.transfer_in(what, total, None)
    }

    /// Several transfers drawn at once (a bundle loading onto each Swarm node): make one
    /// group, then the transfers of each node in it with [`Ui::transfers`].
    pub fn transfer_group(&self) -> TransferGroup {
        use std::io::IsTerminal;
        TransferGroup(
            std::io::stderr()
                .is_terminal()
                .then(indicatif::MultiProgress::new),
        )
    }

    /// Transfers in `group`, each line and bar prefixed with `prefix` (a node's name).
    pub fn transfers(&self, group: &TransferGroup, prefix: &str) -> Transfers<'_> {
        Transfers {
            ui: self,
            prefix: prefix.to_string(),
            group: group.0.clone(),
        }
    }

    fn transfer_in(
        &self,
        what: &str,
        total: Option<u64>,
        group: Option<&indicatif::MultiProgress>,
    ) -> Transfer {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(t) => (
                    indicatif::ProgressBar::new(t),
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                ),
                None => (
                    indicatif::ProgressBar::new_spinner(),
                    "{spinner} {prefix} {bytes} {bytes_per_sec} {elapsed}",
                ),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            let bar = match group {
                Some(g) => g.add(bar),
                None => bar,
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Transfer {
            what: what.to_string(),
            bar,
            group: group.cloned(),
            start: Instant::now(),
            done: std::sync::atomic::AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }
}

impl Transfer {
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        match &self.bar {
            Some(b) => b.inc(n),
            None => {
                let mut last = self.last_line.lock().expect("transfer lock");
                if last.elapsed() >= Duration::from_secs(10) {
                    *last = Instant::now();
                    eprintln!("{}: {}", self.what, self.rate_text(done));
                }
            }
        }
    }

    /// Ends the display with one line: bytes, time and rate.
    pub fn finish(&self) {
        let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let line = format!("{}: {}", self.what, self.rate_text(done));
        match &self.group {
            // Printed above the bars still running.
            Some(g) => {
                let _ = g.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn rate_text(&self, done: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        format!(
            "{} in {secs:.1}s ({}/s)",
            human_bytes(done),
            human_bytes((done as f64 / secs.max(0.001)) as u64)
        )
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(b) = &self.bar
            && !b.is_finished()
        {
            b.abandon();
        }
    }
}

/// `1.2 GiB`, `340.0 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl crate::bundle::Meter for Transfer {
    fn inc(&self, n: u64) {
        Transfer::inc(self, n)
    }

    fn finish(&self) {
        Transfer::finish(self)
    }
}

/// Bars drawn together on a terminal (nothing to draw otherwise).
pub struct TransferGroup(Option<indicatif::MultiProgress>);

/// Transfers drawn together ([`Ui::transfers`]).
pub struct Transfers<'a> {
    ui: &'a Ui,
    prefix: String,
    group: Option<indicatif::MultiProgress>,
}

impl crate::bundle::Meters for Transfers<'_> {
    fn start(&self, what: &str, total: Option<u64>) -> std::sync::Arc<dyn crate::bundle::Meter> {
        std::sync::Arc::new(self.ui.transfer_in(
            &format!("{}: {what}", self.prefix),
            total,
            self.group.as_ref(),
        ))
    }
}

impl crate::bundle::Meters for Ui {
    fn start(&self, what: &str, total: Option<u64>) -> std::sync::Arc<dyn crate::bundle::Meter> {
        std::sync::Arc::new(self.transfer(what, total))
    }
}

/// How pull and push progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// A bar per image with bytes and layers (a terminal).
    Bars,
    /// A line when an image starts, is retried and is done.
    Lines,
    /// One JSON object per event on stdout.
    Json,
}

#[derive(Default)]
struct ImageProgress {
    /// Layer -> (bytes so far, total, done).
    layers: BTreeMap<String, (u64, u64, bool)>,
}

impl ImageProgress {
    fn apply(&mut self, e: &crate::engine::TransferEvent) {
        let Some(layer) = &e.layer else { return };
        let entry = self.layers.entry(layer.clone()).or_default();
        if let (Some(c), Some(t)) = (e.current, e.total) {
            // Extracting restarts the counter; bytes shown are the download's.
            if e.status.starts_with("Downloading") || e.status.starts_with("Pushing") {
                entry.0 = c;
                entry.1 = t;
            }
        }
        let s = e.status.as_str();
        if matches!(
            s,
            "Pull complete" | "Already exists" | "Pushed" | "Layer already exists" | "Mounted from"
        ) || s.starts_with("Mounted from")
        {
            entry.2 = true;
            entry.0 = entry.1;
        }
    }
    fn bytes(&self) -> (u64, u64) {
        self.layers
            .values()
            .fold((0, 0), |(c, t), l| (c + l.0, t + l.1))
    }
    fn done_layers(&self) -> (usize, usize) {
        (
            self.layers.values().filter(|l| l.2).count(),
            self.layers.len(),
        )
    }
}

/// Pull and push progress for `ops::transfer`, as bars, lines or JSON.
pub struct TransferProgress {
    mode: TransferMode,
    verb: &'static str,
    start: Instant,
    multi: indicatif::MultiProgress,
    bars: Mutex<BTreeMap<String, (indicatif::ProgressBar, ImageProgress)>>,
}

impl TransferProgress {
    /// `verb` is `pull` or `push`.
    pub fn new(mode: crate::cli::ProgressMode, verb: &'static str) -> Self {
        use crate::cli::ProgressMode as P;
        let mode = match mode {
            P::Json => TransferMode::Json,
            P::Plain => TransferMode::Lines,
            P::Tty => TransferMode::Bars,
            P::Auto if std::io::stderr().is_terminal() => TransferMode::Bars,
            P::Auto => TransferMode::Lines,
        };
        TransferProgress {
            mode,
            verb,
            start: Instant::now(),
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn t(&self) -> f64 {
        (self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
    }

    fn json(&self, reference: &str, kind: &str, detail: serde_json::Value) {
        let line = serde_json::json!({
            "t": self.t(),
            "op": self.verb,
            "image": reference,
            "event": kind,
            "detail": detail,
        });
        println!("{line}");
    }
}

impl crate::ops::transfer::Reporter for TransferProgress {
    fn start(&self, reference: &str, attempt: u32) {
        match self.mode {
            TransferMode::Json => self.json(
                reference,
                "start",
                serde_json::json!({ "attempt": attempt }),
            ),
            TransferMode::Lines => eprintln!("[{:>7.2}s] {} {reference}", self.t(), self.verb),
            TransferMode::Bars => {
                let mut bars = self.bars.lock().expect("progress lock");
                if !bars.contains_key(reference) {
                    let bar = self.multi.add(indicatif::ProgressBar::new(0));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix} [{bar:24}] {bytes}/{total_bytes} {msg}",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(reference.to_string());
                    bars.insert(reference.to_string(), (bar, ImageProgress::default()));
                }
            }
        }
    }

    fn event(&self, reference: &str, e: &crate::engine::TransferEvent) {
        match self.mode {
            TransferMode::Json => self.json(
                reference,
                "progress",
                serde_json::json!({
                    "layer": e.layer, "status": e.status, "current": e.current, "total": e.total,
                }),
            ),
            TransferMode::Lines => {}
            TransferMode::Bars => {
                let mut bars = self.bars.lock().expect("progress lock");
                if let Some((bar, p)) = bars.get_mut(reference) {
                    p.apply(e);
                    let (c, t) = p.bytes();
                    let (d, n) = p.done_layers();
                    bar.set_length(t);
                    bar.set_position(c);
                    bar.set_message(format!("layers {d}/{n}"));
                }
            }
        }
    }

    fn retry(&self, reference: &str, attempt: u32, delay: Duration, why: &str) {
        match self.mode {
            TransferMode::Json => self.json(
                reference,
                "retry",
                serde_json::json!({ "attempt": attempt, "in_seconds": delay.as_secs_f64(), "why": why }),
            ),
            _ => {
                let line = format!(
                    "{} {reference}: {why}; try {attempt} in {:.0}s",
                    self.verb,
                    delay.as_secs_f64()
                );
                match self.mode {
                    TransferMode::Bars => {
                        let _ = self.multi.println(&line);
                    }
                    _ => eprintln!("[{:>7.2}s] {line}", self.t()),
                }
            }
        }
    }

    fn done(&self, reference: &str) {
        match self.mode {
            TransferMode::Json => self.json(reference, "done", serde_json::json!({})),
            TransferMode::Lines => eprintln!(
                "[{:>7.2}s] {} {reference}: done",
                self.t(),
                match self.verb {
                    "push" => "pushed",
                    _ => "pulled",
                }
            ),
            TransferMode::Bars => {
                if let Some((bar, _)) = self.bars.lock().expect("progress lock").get(reference) {
                    bar.finish_with_message("done");
                }
            }
        }
    }
}
