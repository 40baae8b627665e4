//! Lint results for people (the offending line with a caret, colour on a
//! terminal), for machines (JSON), and for CI (JUnit XML).

use super::{Report, Severity};
use crate::error::{Pos, SpecError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
    Junit,
}

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

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

/// One test case per file, failing with its errors; warnings go to system-out.
pub fn junit(r: &Report) -> String {
    use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("firedrill lint");
    let mut by_file: BTreeMap<String, Vec<&super::Finding>> = BTreeMap::new();
    for f in &r.findings {
        by_file
            .entry(f.file.display().to_string())
            .or_default()
            .push(f);
    }
    for (file, fs) in &by_file {
        let errors: Vec<String> = fs
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}:{}:{}: [{}] {}", file, f.line, f.col, f.check, f.message))
            .collect();
        let warnings: Vec<String> = fs
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .map(|f| format!("{}:{}:{}: [{}] {}", file, f.line, f.col, f.check, f.message))
            .collect();
        let status = if errors.is_empty() {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("{} error(s)", errors.len()));
            s.set_description(errors.join("\n"));
            s
        };
        let mut tc = TestCase::new(file.clone(), status);
        if !warnings.is_empty() {
            tc.set_system_out(warnings.join("\n"));
        }
        suite.add_test_case(tc);
    }
    if by_file.is_empty() {
        suite.add_test_case(TestCase::new("all files", TestCaseStatus::success()));
    }
    let mut rep = JReport::new("firedrill");
    rep.add_test_suite(suite);
    rep.to_string().unwrap_or_default()
}
