//! firedrill: a fire drill for a monitoring stack.
//!
//! It brings a stack up in containers, sets fires (load, a stopped
//! service, errors, latency, a Teams outage) and proves that the alarms
//! ring: each expected alert fires inside the window its own configuration
//! allows and its card reaches Microsoft Teams (a mock), and nothing fires
//! that should not.
//!
//! # The API
//!
//! What a user's own `cargo test` needs is at the root: [`Scenario`] (a
//! drill file, loaded and validated), [`suite::run`] and [`suite::run_one`]
//! (drills on shared stacks), [`Options`] (built with its setters),
//! [`DrillReport`] and its [`Verdict`], and [`Error`] (with the exit code
//! the command line gives it). Loading and validating needs no Docker:
//!
//! ```
//! use firedrill::Scenario;
//! use std::path::Path;
//!
//! let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/backend-down.yaml");
//! let scenario = Scenario::load(&path, None)?;
//! assert_eq!(scenario.doc.name, "backend-down");
//! assert!(scenario.doc.steps.len() > 3);
//!
//! // Bad input is refused with its file, line and column.
//! let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad/unknown-step.yaml");
//! let err = Scenario::load(&bad, None).unwrap_err();
//! let first = &err.errors[0];
//! assert!(first.file.ends_with("unknown-step.yaml") && first.line > 0);
//! println!("{}", firedrill::Error::from(err)); // the line, a caret, a hint
//! # Ok::<(), firedrill::Error>(())
//! ```
//!
//! A drill runs in containers (Docker Engine 20.10 or later; images are
//! built offline from Debian packages when they cannot be pulled):
//!
//! ```no_run
//! use firedrill::{suite, ImageSource, Options, Verdict};
//! # async fn t() -> firedrill::Result<()> {
//! let opts = Options::default().images(ImageSource::Offline).retries(1);
//! let report = suite::run_one("scenarios/backend-down.yaml".as_ref(), &opts).await?;
//! assert_eq!(report.verdict, Verdict::Passed, "{}", report.render());
//!
//! // A suite: one stack per stack file, drills side by side where they can.
//! let files = suite::scenario_files(&["scenarios".into()])?;
//! let reports = suite::run(&files, &opts).await?;
//! assert!(reports.iter().all(|r| r.passed()));
//! # Ok(()) }
//! ```
//!
//! `examples/drill.rs` is a program that does this; `tests/downstream/` is
//! a crate of its own that depends on firedrill and drills from its `cargo
//! test` (the fixture image needs a firedrill binary, which cargo does not
//! build for a dependency: [`images::firedrill_binary`] builds it once from
//! this crate's sources, or takes `FIREDRILL_BIN`).
//!
//! # The pipeline
//!
//! One module each, imports pointing down it only (tests/architecture.rs
//! keeps it so), lowest first: [`error`]; the leaves [`promql`],
//! [`grafana`], [`load`] (the open-model engine) and [`observe`]
//! (Prometheus, Alertmanager, the Teams mock); [`components`] (what each
//! kind of component is); [`spec`] (YAML in, located errors); [`render`]
//! (configs at a time scale) and [`lint`]; [`images`]; [`stack`] (the
//! Docker layer: containers, readiness, reset, teardown); [`fixture`] (the
//! synthetic services the binary serves inside containers); [`chaos`] and
//! [`panels`]; [`verify`] (the timing model and pure judges); [`report`];
//! [`drill`] (the step loop); [`suite`] (plan and run); [`coverage`]. The
//! command line is a thin layer in
//! the binary (`src/cli/`).

// Input errors carry the source text for their caret rendering; they are the
// cold path, so their size does not matter.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod bench;
pub mod chaos;
pub mod components;
pub mod coverage;
pub mod drill;
pub mod error;
pub mod exporter;
pub mod fixture;
pub mod grafana;
pub mod images;
pub mod init;
pub mod lint;
pub mod live;
pub mod load;
pub mod observe;
pub mod panels;
pub mod promql;
pub mod render;
pub mod report;
pub mod spec;
pub mod stack;
pub mod suite;
pub mod util;
pub mod verify;

pub use drill::Options;
pub use error::{Error, Result};
pub use images::ImageSource;
pub use report::{DrillReport, Verdict};
pub use spec::scenario::Scenario;
