//! `firedrill lint`: static checks of stacks, rule files and dashboards.

use firedrill::lint::output::{self, Format};
use firedrill::lint::{self, metrics::Live, Report};
use firedrill::{Error, Result};
use std::io::IsTerminal;
use std::path::PathBuf;

pub(crate) async fn run(
    paths: &[PathBuf],
    format: Format,
    live: Option<&str>,
    deny_warnings: bool,
) -> Result<i32> {
    if let Some(p) = paths.iter().find(|p| !p.exists()) {
        return Err(Error::Invalid(format!("{}: no such file", p.display())));
    }
    let live = match live {
        Some(url) => Some(
            Live::fetch(url)
                .await
                .map_err(|e| Error::Component(format!("--live {url}: {e}")))?,
        ),
        None => None,
    };
    let opts = lint::Options { live };
    let mut report = Report::default();
    for p in paths {
        report.merge(lint::lint_path(p, &opts));
    }
    let text = match format {
        Format::Human => output::human(&report, std::io::stdout().is_terminal()),
        Format::Json => output::json(&report),
        Format::Junit => firedrill::report::lint_junit(&report),
    };
    println!("{text}");
    let warnings = report.findings.len() - report.errors();
    Ok(i32::from(
        report.errors() > 0 || (deny_warnings && warnings > 0),
    ))
}
