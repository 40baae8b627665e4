//! Runs drills from your own program, as the CLI's `firedrill drill` does:
//!
//! ```sh
//! cargo run --example drill -- scenarios/backend-down.yaml
//! ```
//!
//! The same calls work inside a `#[tokio::test]` of your own crate
//! (tests/downstream/ in this repository is such a crate; CI runs it).

use firedrill::{report, suite, ImageSource, Options, Verdict};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), firedrill::Error> {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err(firedrill::Error::Invalid(
            "name scenario files or folders".into(),
        ));
    }
    // Every scenario is validated before any container starts.
    let files = suite::scenario_files(&paths)?;
    let opts = Options::default()
        .images(ImageSource::Offline)
        .retries(1)
        .on_event(|e| print!("{}", report::event_text(&e)));
    let reports = suite::run(&files, &opts).await?;
    for r in &reports {
        match r.verdict {
            Verdict::Passed => println!("{}: the alarms rang", r.scenario),
            _ => println!("{}: {}", r.scenario, r.why_not_green()),
        }
    }
    std::process::exit(report::exit_code(&reports, false));
}
