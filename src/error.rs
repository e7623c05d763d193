//! Typed failures that code must branch on, their exit codes, and the one function that
//! prints an error. Nothing else in cdq decides an exit code or prints an error.
//!
//! Errors are product copy: a lowercase first line naming the thing in backticks, one
//! `caused by:` line per level of the chain, then a `hint:` with the fix.

use std::fmt;

/// What kind of failure ended the command; decides the exit code (listed in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything unexpected: I/O, the engine refusing a request.
    Failure,
    /// Bad flags, bad settings, bad input files: the user must change what they typed.
    Usage,
    /// Preflight found a FAIL (or a WARN under `--strict`).
    Preflight,
    /// A service never became healthy, or exited.
    Unhealthy,
    /// Another cdq holds the deploy directory.
    Locked,
    /// A registry refused or could not serve a pull or push (unreachable, TLS, 401, not
    /// found, no variant for the architecture, disk full).
    Registry,
    /// Ctrl-C.
    Interrupted,
    /// A name cdq would act on belongs to someone else: another deploy directory's stack,
    /// or a network or container cdq did not make.
    Owned,
    /// Ended by a signal (SIGINT, SIGTERM, SIGHUP): exits 128 + its number, as a shell
    /// reports a process the signal killed.
    Signal(i32),
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Failure => 1,
            Kind::Usage => 2,
            Kind::Preflight => 3,
            Kind::Unhealthy => 4,
            Kind::Locked => 5,
            Kind::Registry => 7,
            Kind::Interrupted => 130,
            Kind::Owned => 6,
            Kind::Signal(n) => 128 + n,
        }
    }
}

/// A failure with a kind and an optional hint. Put it at the root of an `anyhow` chain
/// (`Err(CdqError::usage(..))?`) or anywhere in it (`.context(..)` keeps it reachable).
#[derive(Debug, thiserror::Error)]
pub struct CdqError {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for CdqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CdqError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CdqError {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Kind::Failure, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The exit code for an error chain: the first typed error found decides, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    typed(err).map(|e| e.kind.exit_code()).unwrap_or(1)
}

/// The first typed error: the outermost one, which a chain item cannot show when it was
/// added with `.context(CdqError)` (only `anyhow::Error::downcast_ref` sees a context), then
/// down the chain.
fn typed(err: &anyhow::Error) -> Option<&CdqError> {
    err.downcast_ref::<CdqError>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<CdqError>()))
}

/// Formats an error chain as cdq prints it (without trailing newline).
pub fn format(err: &anyhow::Error) -> String {
    let mut out = String::new();
    // A typed context (the outermost error) carries the hint for the causes below it.
    let mut hint = err.downcast_ref::<CdqError>().and_then(|e| e.hint.clone());
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        if i == 0 {
            out.push_str("error: ");
        } else {
            out.push_str("\ncaused by: ");
        }
        out.push_str(&text);
        if let (None, Some(e)) = (&hint, cause.downcast_ref::<CdqError>()) {
            hint = e.hint.clone();
        }
    }
    if let Some(h) = hint {
        out.push_str("\nhint: ");
        out.push_str(&h);
    }
    out
}

/// Names as product copy writes them: each in backticks, comma-separated (`a`, `b`).
pub fn quoted_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn chain_prints_causes_and_the_innermost_hint() {
        let inner: anyhow::Result<()> = Err(CdqError::usage("`cdq.yaml`: unknown key `prot`")
            .hint("did you mean `ports`?")
            .into());
        let err = inner.context("reading settings").unwrap_err();
        assert_eq!(
            format(&err),
            "error: reading settings\ncaused by: `cdq.yaml`: unknown key `prot`\nhint: did you mean `ports`?"
        );
        assert_eq!(exit_code(&err), 2);
    }

    #[test]
    fn a_typed_context_decides_the_code_and_the_hint() {
        let err = anyhow::anyhow!("no basic auth credentials").context(
            CdqError::new(Kind::Registry, "the registry `h:5000` refused")
                .hint("`docker login h:5000`"),
        );
        assert_eq!(exit_code(&err), 7);
        assert_eq!(
            format(&err),
            "error: the registry `h:5000` refused\ncaused by: no basic auth credentials\nhint: `docker login h:5000`"
        );
    }

    #[test]
    fn untyped_errors_exit_1() {
        let err = anyhow::anyhow!("boom");
        assert_eq!(exit_code(&err), 1);
        assert_eq!(format(&err), "error: boom");
    }
}
