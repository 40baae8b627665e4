//! `firedrill check`: validate scenarios and their stacks; no container.

use firedrill::{drill, suite, Result};
use std::path::{Path, PathBuf};

pub(crate) fn run(paths: &[PathBuf], stack: Option<&Path>) -> Result<i32> {
    let mut code = 0;
    for f in suite::scenario_files(paths)? {
        match drill::check(&f, stack) {
            Ok((s, _)) => println!(
                "ok {} ({} steps, stack {})",
                f.display(),
                s.doc.steps.len(),
                s.stack.doc.name
            ),
            Err(e) => {
                eprintln!("{e}");
                code = e.exit_code();
            }
        }
    }
    Ok(code)
}
