//! JUnit XML for CI, for drills and lint alike. Drills: a test suite per
//! drill, a test case per expectation and precondition; a failure as
//! `<failure>`, an inconclusive one as `<error>`, the earlier runs of a flaky
//! drill as `<flakyFailure>`. Lint: a test case per file, failing with its
//! errors.

use super::*;
use crate::lint::{self, Severity};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
use std::collections::BTreeMap;

/// A non-success status: the message's first line, the whole as description.
fn status_of(kind: NonSuccessKind, msg: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_message(msg.lines().next().unwrap_or_default().to_string());
    s.set_description(msg.to_string());
    s
}

/// Drill reports as JUnit XML: a suite per drill, a test case per check
/// (expectations and preconditions), one for the false-alert guard, one for
/// bring-up when it failed. A failed expectation is a `<failure>`; an
/// inconclusive one an `<error>` (the stack was not judged); a drill that
/// passed on a retry carries its earlier runs as flaky reruns.
pub fn junit(reports: &[DrillReport]) -> String {
    let mut out = Report::new("firedrill");
    for r in reports {
        let mut suite = TestSuite::new(r.scenario.clone());
        bench_properties(&mut suite, r);
        if let Some(why) = &r.skipped {
            let mut s = TestCaseStatus::skipped();
            s.set_message(why.clone());
            suite.add_test_case(TestCase::new("what the drill needs of the machine", s));
        }
        if let Some(e) = &r.error {
            suite.add_test_case(TestCase::new(
                "bring-up and run",
                status_of(NonSuccessKind::Error, e),
            ));
        }
        for st in r.steps.iter().filter(|s| s.kind.is_check()) {
            let mut status = match st.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail => status_of(NonSuccessKind::Failure, &st.message),
                Status::Inconclusive => status_of(NonSuccessKind::Error, &st.message),
            };
            // An earlier run that this check failed: a flaky rerun of it.
            if st.status == Status::Pass {
                for a in r
                    .attempts
                    .iter()
                    .filter(|a| a.step == Some((st.index, st.kind)))
                {
                    let kind = match a.verdict {
                        Verdict::Inconclusive => NonSuccessKind::Error,
                        _ => NonSuccessKind::Failure,
                    };
                    let mut rerun = TestRerun::new(kind);
                    rerun.set_message(format!(
                        "{} (run {}): {}",
                        a.verdict.word(),
                        a.run_id,
                        a.why
                    ));
                    status.add_rerun(rerun);
                }
            }
            let name = if st.kind.is_precondition() {
                format!("{:02} {} (precondition)", st.index + 1, st.kind)
            } else {
                format!("{:02} {}", st.index + 1, st.kind)
            };
            let mut tc = TestCase::new(name, status);
            tc.set_time(Duration::from_secs_f64(st.seconds));
            tc.set_system_out(st.message.clone());
            suite.add_test_case(tc);
        }
        if r.guard_ran() {
            let status = if r.unexpected_alerts.is_empty() {
                TestCaseStatus::success()
            } else {
                status_of(
                    NonSuccessKind::Failure,
                    &format!(
                        "fired, and no step expected it: {}",
                        r.unexpected_alerts.join(", ")
                    ),
                )
            };
            suite.add_test_case(TestCase::new("no false alert", status));
        }
        out.add_test_suite(suite);
    }
    out.to_string().unwrap_or_default()
}

/// A drill's bench figures as suite properties, for CI to chart the knee
/// across runs.
fn bench_properties(suite: &mut TestSuite, r: &DrillReport) {
    let knee = |v: Option<f64>| v.map_or("none".to_string(), |k| format!("{k:.1}"));
    for (i, b) in r.benches.iter().enumerate() {
        for (name, value) in [
            ("url", b.url.clone()),
            ("knee_rps", knee(b.knee_rps)),
            ("knee_min_rps", knee(b.knee.min)),
            ("knee_max_rps", knee(b.knee.max)),
            ("steps", b.steps.len().to_string()),
        ] {
            suite.add_property(quick_junit::Property::new(
                format!("bench.{i}.{name}"),
                value,
            ));
        }
    }
}

/// One test case per file, failing with its errors; warnings go to system-out.
pub fn lint_junit(r: &lint::Report) -> String {
    let mut suite = TestSuite::new("firedrill lint");
    let mut by_file: BTreeMap<String, Vec<&lint::Finding>> = BTreeMap::new();
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
            let mut s = status_of(NonSuccessKind::Failure, &errors.join("\n"));
            s.set_message(format!("{} error(s)", errors.len()));
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
    let mut rep = Report::new("firedrill");
    rep.add_test_suite(suite);
    rep.to_string().unwrap_or_default()
}
