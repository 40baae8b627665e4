//! `firedrill coverage`: which alerts and dashboards the scenarios reach.

use firedrill::{coverage, suite, Result};
use std::path::{Path, PathBuf};

pub(crate) fn run(
    paths: &[PathBuf],
    mut stacks: Vec<PathBuf>,
    json: Option<&Path>,
    strict: bool,
) -> Result<i32> {
    if stacks.is_empty() {
        for pat in ["stack/stack.yaml", "stack/*/stack.yaml"] {
            stacks.extend(glob::glob(pat).into_iter().flatten().flatten());
        }
    }
    let files = suite::scenario_files(paths)?;
    let cov = coverage::coverage(&files, &stacks)?;
    print!("{}", coverage::render(&cov));
    if let Some(p) = json {
        super::write(p, serde_json::to_string_pretty(&cov)?)?;
    }
    Ok(i32::from(strict && !cov.iter().all(|c| c.complete())))
}
