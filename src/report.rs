//! Results: per-step outcomes, per-alert breakdowns, load summaries; printed
//! for people and written as JSON for machines. Secrets never reach it.

use crate::error::SpecErrors;
use crate::load::LoadSummary;
use crate::spec::scenario::{Scenario, Step};
use crate::verify::Breakdown;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub message: String,
}

impl Outcome {
    pub fn pass(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Pass,
            message: m.into(),
        }
    }
    pub fn fail(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            message: m.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub index: usize,
    pub kind: String,
    pub status: Status,
    pub message: String,
    pub seconds: f64,
}

impl StepResult {
    pub fn new(index: usize, step: &Step, o: Outcome, took: Duration) -> Self {
        let kind = serde_json::to_value(step)
            .ok()
            .and_then(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
            .unwrap_or_default();
        StepResult {
            index,
            kind,
            status: o.status,
            message: o.message,
            seconds: took.as_secs_f64(),
        }
    }

    pub fn line(&self) -> String {
        let mark = match self.status {
            Status::Pass => "✓",
            Status::Fail => "✗",
        };
        format!(
            "  {mark} {:>2} {:<16} {:>7.2}s  {}",
            self.index + 1,
            self.kind,
            self.seconds,
            self.message
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: String,
    pub file: String,
    pub stack: String,
    pub run_id: String,
    /// The stack was brought up for this drill's wave (else: reset, shared).
    pub fresh_stack: bool,
    /// The drills that ran on the stack at the same time.
    pub beside: Vec<String>,
    pub time_scale: f64,
    #[serde(with = "secs")]
    pub bring_up: Duration,
    #[serde(with = "secs")]
    pub wall: Duration,
    /// The least time the steps can take on this stack (DESIGN §6).
    #[serde(with = "secs")]
    pub lower_bound: Duration,
    pub skipped_services: Vec<(String, String)>,
    pub steps: Vec<StepResult>,
    pub breakdowns: Vec<Breakdown>,
    pub loads: Vec<(String, LoadSummary)>,
    /// Steps left out after a failure (fail-fast).
    pub not_run: usize,
    /// An error that stopped the drill (bring-up failure, interruption).
    pub error: Option<String>,
    /// Alerts that fired though no step expected them (the false-alert guard).
    pub unexpected_alerts: Vec<String>,
    /// Every panel target an `expect_dashboards` step ran.
    pub panels: Vec<crate::panels::PanelCheck>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl DrillReport {
    pub fn new(s: &Scenario, run_id: &str) -> Self {
        DrillReport {
            scenario: s.doc.name.clone(),
            file: s.source.path.display().to_string(),
            stack: s.stack.doc.name.clone(),
            run_id: run_id.into(),
            fresh_stack: true,
            beside: vec![],
            time_scale: s.doc.time_scale,
            bring_up: Duration::ZERO,
            wall: Duration::ZERO,
            lower_bound: Duration::ZERO,
            skipped_services: vec![],
            steps: vec![],
            breakdowns: vec![],
            loads: vec![],
            not_run: 0,
            error: None,
            unexpected_alerts: vec![],
            panels: vec![],
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.unexpected_alerts.is_empty()
            && self.steps.iter().all(|s| s.status == Status::Pass)
    }

    pub fn failures(&self) -> Vec<&StepResult> {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Fail)
            .collect()
    }

    /// The end-of-drill summary for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, why) in &self.skipped_services {
            out.push_str(&format!("  skipped service {name}: {why}\n"));
        }
        if !self.breakdowns.is_empty() {
            out.push_str("  breakdown (measured, with the window each was checked against):\n");
            for b in &self.breakdowns {
                out.push_str(&b.render(self.time_scale));
            }
        }
        for (path, l) in &self.loads {
            out.push_str(&format!(
                "  load {path}: {} requests, {} failed, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms\n",
                l.requests, l.failures, l.p50_ms, l.p95_ms, l.p99_ms
            ));
        }
        if self.not_run > 0 {
            out.push_str(&format!("  {} step(s) not run (fail-fast)\n", self.not_run));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("  error: {e}\n"));
        }
        for p in &self.panels {
            if !matches!(p.verdict, crate::panels::Verdict::Data { .. }) {
                out.push_str(&format!("  panel {}\n", p.line()));
            }
        }
        for a in &self.unexpected_alerts {
            out.push_str(&format!(
                "  ✗ false alert: {a} fired and no step expected it (list it in allow_alerts, with a reason, if it should)\n"
            ));
        }
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        out.push_str(&format!(
            "{verdict} {} — {} step(s), {} failed; stack up in {:.1}s, drill {:.1}s, lower bound {:.1}s (run {})\n",
            self.scenario,
            self.steps.len(),
            self.failures().len(),
            self.bring_up.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.lower_bound.as_secs_f64(),
            self.run_id
        ));
        out
    }
}

/// One line (or block) of the terminal view for a suite's event.
pub fn event_text(e: &crate::drill::Event<'_>) -> String {
    use crate::drill::Event;
    match e {
        Event::Wave {
            stack,
            run_id,
            fresh,
            took,
            scenarios,
        } => {
            let how = if *fresh { "brought up" } else { "reset" };
            let mut out = String::new();
            for s in scenarios.iter() {
                out.push_str(&format!(
                    "drill {s}
"
                ));
            }
            let together = if scenarios.len() > 1 {
                format!("; {} drills at once", scenarios.len())
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  stack {stack} {how} in {:.1}s (run {run_id}){together}\n",
                took.as_secs_f64()
            ));
            out
        }
        Event::Step {
            scenario,
            beside,
            step,
        } => {
            if *beside {
                format!("  [{scenario}]{}\n", step.line())
            } else {
                format!("{}\n", step.line())
            }
        }
        Event::Done(r) => r.render(),
    }
}

/// A progress bar for a long wait, drawn while it lives and cleared when
/// dropped; it fills with time towards the wait's bound.
pub struct WaitBar {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl WaitBar {
    pub fn start(on: &indicatif::MultiProgress, what: String, bound: Duration) -> WaitBar {
        let bar = on.add(indicatif::ProgressBar::new(bound.as_millis() as u64));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "  {spinner} {msg:60!} [{bar:24}] {elapsed:>4} of {prefix}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(crate::util::secs(bound));
        bar.set_message(what);
        let b = bar.clone();
        let t0 = std::time::Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(t0.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        WaitBar { bar, ticker }
    }
}

impl Drop for WaitBar {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// A suite's totals: wall time, the sum of its drills' lower bounds, and
/// how far above that the suite ran.
pub fn suite_summary(reports: &[DrillReport], wall: Duration) -> String {
    let passed = reports.iter().filter(|r| r.passed()).count();
    let bound: Duration = reports.iter().map(|r| r.lower_bound).sum();
    let ratio = if bound.is_zero() {
        String::new()
    } else {
        format!(
            ", {:.1}× the bound",
            wall.as_secs_f64() / bound.as_secs_f64()
        )
    };
    let stacks: std::collections::BTreeSet<&str> = reports
        .iter()
        .map(|r| r.run_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    format!(
        "{passed} passed, {} failed, on {} stack(s); suite {:.1}s, sum of lower bounds {:.1}s{ratio}\n",
        reports.len() - passed,
        stacks.len(),
        wall.as_secs_f64(),
        bound.as_secs_f64()
    )
}

/// Drill reports as JUnit XML: a suite per drill, a test case per
/// expectation step, one for the false-alert guard, one for bring-up when it
/// failed. Load, chaos and wait steps are actions, not tests.
pub fn junit(reports: &[DrillReport]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let failure = |msg: &str| {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
        s.set_message(msg.lines().next().unwrap_or_default().to_string());
        s.set_description(msg.to_string());
        s
    };
    let mut out = Report::new("firedrill");
    for r in reports {
        let mut suite = TestSuite::new(r.scenario.clone());
        if let Some(e) = &r.error {
            suite.add_test_case(TestCase::new("bring-up and run", failure(e)));
        }
        for st in r.steps.iter().filter(|s| s.kind.starts_with("expect_")) {
            let status = match st.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail => failure(&st.message),
            };
            let mut tc = TestCase::new(format!("{:02} {}", st.index + 1, st.kind), status);
            tc.set_time(Duration::from_secs_f64(st.seconds));
            tc.set_system_out(st.message.clone());
            suite.add_test_case(tc);
        }
        if r.error.is_none() {
            let status = if r.unexpected_alerts.is_empty() {
                TestCaseStatus::success()
            } else {
                failure(&format!(
                    "fired, and no step expected it: {}",
                    r.unexpected_alerts.join(", ")
                ))
            };
            suite.add_test_case(TestCase::new("no false alert", status));
        }
        out.add_test_suite(suite);
    }
    out.to_string().unwrap_or_default()
}

/// Input errors as people read them: file:line:col, the line, a caret.
pub fn render_spec_errors(e: &SpecErrors) -> String {
    let mut out = String::new();
    for err in &e.errors {
        let mut s = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        if handler.render_report(&mut s, err).is_err() {
            s = err.to_string();
        }
        out.push_str(&s);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::scenario::Scenario;

    fn report() -> DrillReport {
        let s = Scenario::load(std::path::Path::new("scenarios/backend-down.yaml"), None).unwrap();
        let mut r = DrillReport::new(&s, "t-1");
        for (i, step) in s.doc.steps.iter().enumerate().take(4) {
            let o = if i == 3 {
                Outcome::fail("expected BackendDown firing\nseen: nothing")
            } else {
                Outcome::pass("ok")
            };
            r.steps
                .push(StepResult::new(i, step, o, Duration::from_millis(1500)));
        }
        r
    }

    #[test]
    fn junit_has_a_case_per_expectation_and_the_guard() {
        let mut r = report();
        r.unexpected_alerts = vec!["HighLatencyP95{route=\"/\"}".into()];
        let xml = junit(&[r]);
        // load and chaos are actions: only expect_* steps and the guard are cases.
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert!(xml.contains(r#"name="02 expect_quiet""#), "{xml}");
        assert!(xml.contains(r#"name="04 expect_alert""#), "{xml}");
        assert!(xml.contains(r#"failures="2""#), "{xml}");
        assert!(xml.contains("fired, and no step expected it: HighLatencyP95"));
    }

    #[test]
    fn a_false_alert_fails_the_report() {
        let mut r = report();
        r.steps.retain(|s| s.status == Status::Pass);
        assert!(r.passed());
        r.unexpected_alerts = vec!["X{}".into()];
        assert!(!r.passed());
        assert!(r.render().contains("false alert: X{}"));
    }
}
