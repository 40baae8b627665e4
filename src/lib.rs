//! firedrill: a fire drill for a monitoring stack.
//!
//! The pipeline, one module each:
//! [`spec`] (YAML in, located errors) → [`images`] → [`stack`] (containers,
//! readiness, reset, teardown) → [`drill`] (preconditions, steps, the
//! expectations) with [`load`] (the open-model engine, in this process) and
//! chaos → [`observe`] (Prometheus, Alertmanager, the Teams mock; [`panels`]
//! runs dashboard queries) → [`verify`] (the timing model, lower bounds, the
//! false-alert guard) → [`report`] (verdicts, text, JSON, JUnit); [`suite`]
//! runs many drills on shared stacks, stacks side by side; [`coverage`] says
//! which alerts and dashboards the scenarios reach. [`fixture`] holds the
//! synthetic services the binary also serves. The CLI ([`dispatch`]) is a
//! thin layer over this library, so a drill can run from a user's own
//! `cargo test`:
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let report = firedrill::drill::run(
//!     std::path::Path::new("scenarios/backend-down.yaml"),
//!     &firedrill::drill::Options::default(),
//! ).await?;
//! assert!(report.passed(), "{}", report.render());
//! // PASSED, FAILED, INCONCLUSIVE (a precondition could not be established)
//! // or FLAKY (passed on a retry), as the CLI's exit code says.
//! println!("{:?}", report.verdict);
//!
//! // A suite: one stack per stack file, drills side by side where they can.
//! let files = firedrill::dispatch::scenario_files(&["scenarios".into()])?;
//! let reports = firedrill::suite::run(&files, &firedrill::drill::Options::default()).await?;
//! assert!(reports.iter().all(|r| r.passed()));
//! # Ok(()) }
//! ```

// Input errors carry the source text for their caret rendering; they are the
// cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod coverage;
pub mod dispatch;
pub mod docker;
pub mod drill;
pub mod error;
pub mod fixture;
pub mod grafana;
pub mod images;
pub mod lint;
pub mod load;
pub mod observe;
pub mod panels;
pub mod promql;
pub mod report;
pub mod spec;
pub mod stack;
pub mod suite;
pub mod util;
pub mod verify;
