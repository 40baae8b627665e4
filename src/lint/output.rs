//! Lint results for people (the offending line with a caret, colour on a
//! terminal) and for machines (JSON); JUnit XML is in
//! [`crate::report::lint_junit`], beside the drills'.

use super::{Report, Severity};
use crate::error::{Pos, SpecError};
use std::collections::BTreeMap;

/// How lint results are printed (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// For people: each finding with its source line and a caret.
    #[default]
    Human,
    /// JSON, for machines.
    Json,
    /// JUnit XML, for CI.
    Junit,
}

/// The findings for people, coloured when `color`.
pub fn human(r: &Report, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme);
    let mut out = String::new();
    let mut texts: BTreeMap<&std::path::Path, String> = BTreeMap::new();
    for f in &r.findings {
        let text = texts
            .entry(&f.file)
            .or_insert_with(|| std::fs::read_to_string(&f.file).unwrap_or_default());
        // The snippet of a secret finding shows the line with the secret blanked.
        let redacted;
        let text: &String = if f.check == "secret" {
            redacted = redact(text, f.line, f.col);
            &redacted
        } else {
            text
        };
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut e = SpecError::new(
            &f.file,
            text,
            Pos {
                line: f.line,
                col: f.col,
            },
            format!("{level}[{}]: {}", f.check, f.message),
        );
        if let Some(h) = &f.help {
            e = e.with_help(h.clone());
        }
        let mut s = String::new();
        if handler.render_report(&mut s, &e).is_err() {
            s = e.to_string();
        }
        out.push_str(&s);
        out.push('\n');
    }
    if !r.routes.is_empty() {
        out.push_str("routes:\n");
        for rt in &r.routes {
            out.push_str(&format!(
                "  {:<28} → {}\n",
                rt.alert,
                rt.receivers.join(", ")
            ));
        }
    }
    let warnings = r.findings.len() - r.errors();
    out.push_str(&format!(
        "{} error(s), {} warning(s), {} silenced — {} file(s), {} rule(s), {} panel queries interpolated and parsed\n",
        r.errors(),
        warnings,
        r.silenced,
        r.files,
        r.rules,
        r.queries
    ));
    out
}

/// `text` with the value starting at (line, col) replaced by stars; for a
/// `KEY=value` form the key stays.
pub fn redact(text: &str, line: usize, col: usize) -> String {
    let mut out = String::new();
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 != line {
            out.push_str(l);
            continue;
        }
        let start: usize = l
            .chars()
            .take(col.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        let rest = &l[start..];
        let keep = match rest.find('=') {
            Some(eq) if rest[..eq].chars().all(|c| c.is_alphanumeric() || c == '_') => eq + 1,
            _ => 0,
        };
        let nl = if l.ends_with('\n') { "\n" } else { "" };
        out.push_str(&l[..start + keep]);
        out.push_str("********");
        out.push_str(nl);
    }
    out
}

/// The report as pretty-printed JSON.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
