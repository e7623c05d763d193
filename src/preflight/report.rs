//! How findings look: a table for people, JSON for machines, a one-line summary. Pure
//! functions returning text; `ui` prints them.

use super::{Finding, Status, failed};

/// Columns: check, status, found, needed, fix. The fix goes last and unpadded because it
/// is the longest and the one people copy.
pub fn table(findings: &[Finding]) -> String {
    let head = ["CHECK", "STATUS", "FOUND", "NEEDED", "FIX"];
    let rows: Vec<[String; 5]> = findings
        .iter()
        .map(|f| {
            [
                f.id.clone(),
                f.status.label().to_string(),
                f.found.clone(),
                f.needed.clone(),
                f.fix.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(head);
    out.push('\n');
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        out.push('\n');
    }
    out
}

fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s: Status| findings.iter().filter(|f| f.status == s).count();
    (n(Status::Pass), n(Status::Warn), n(Status::Fail))
}

/// `{"ok":…, "strict":…, "counts":{…}, "checks":[{id, status, found, needed, fix}]}`.
pub fn json(findings: &[Finding], strict: bool) -> serde_json::Result<String> {
    let (pass, warn, fail) = counts(findings);
    serde_json::to_string_pretty(&serde_json::json!({
        "ok": !failed(findings, strict),
        "strict": strict,
        "counts": { "pass": pass, "warn": warn, "fail": fail },
        "checks": findings,
    }))
}

pub fn summary(findings: &[Finding], strict: bool) -> String {
    let (pass, warn, fail) = counts(findings);
    let verdict = if failed(findings, strict) {
        if strict && fail == 0 {
            "preflight failed (--strict counts warnings)"
        } else {
            "preflight failed"
        }
    } else {
        "preflight passed"
    };
    format!("{verdict}: {fail} failed, {warn} warnings, {pass} passed")
}
