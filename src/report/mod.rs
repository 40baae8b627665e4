//! Results: per-step outcomes, per-alert breakdowns, load summaries; printed
//! for people and written as JSON for machines. Secrets never reach it.

mod junit;

mod bench_chart;
mod html;
mod text;

pub use html::html;
pub use junit::{junit, lint_junit};
pub use text::{event_text, suite_summary, Terminal};

use crate::load::LoadSummary;
use crate::spec::scenario::{Scenario, Step};
use crate::verify::Breakdown;
use serde::Serialize;
use std::time::Duration;

pub use crate::verify::{Outcome, Status};

/// What a line of the drill's report is: a scenario step, or a
/// precondition the drill established before the step it guards.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A `load` step: traffic started against a fixture.
    Load,
    /// A `chaos` step: a fault injected or undone.
    Chaos,
    /// A `wait` step: a pause.
    Wait,
    /// An `expect_quiet` step: no alert may fire for a while.
    ExpectQuiet,
    /// An `expect_alert` step: an alert must fire.
    ExpectAlert,
    /// An `expect_resolved` step: an alert must resolve.
    ExpectResolved,
    /// An `expect_teams` step: a Teams card must arrive (or be lost).
    ExpectTeams,
    /// An `expect_dashboards` step: every dashboard panel must have data.
    ExpectDashboards,
    /// A `bench` step: a capacity search.
    Bench,
    /// An `expect_capacity` step: the knee is at least a rate.
    ExpectCapacity,
    /// Precondition: the loads answer and Prometheus holds their series.
    Warm,
    /// Precondition: the alerts about to be provoked are inactive.
    Calm,
    /// Precondition: every panel's range window is covered by load.
    Covered,
}

impl StepKind {
    /// The kind of a scenario step.
    pub fn of(step: &Step) -> StepKind {
        match step {
            Step::Load(_) => StepKind::Load,
            Step::Chaos(_) => StepKind::Chaos,
            Step::Wait(_) => StepKind::Wait,
            Step::ExpectQuiet(_) => StepKind::ExpectQuiet,
            Step::ExpectAlert(_) => StepKind::ExpectAlert,
            Step::ExpectResolved(_) => StepKind::ExpectResolved,
            Step::ExpectTeams(_) => StepKind::ExpectTeams,
            Step::ExpectDashboards(_) => StepKind::ExpectDashboards,
            Step::Bench(_) => StepKind::Bench,
            Step::ExpectCapacity(_) => StepKind::ExpectCapacity,
        }
    }

    /// The kind's name as written in scenarios and reports (`expect_alert`).
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Load => "load",
            StepKind::Chaos => "chaos",
            StepKind::Wait => "wait",
            StepKind::ExpectQuiet => "expect_quiet",
            StepKind::ExpectAlert => "expect_alert",
            StepKind::ExpectResolved => "expect_resolved",
            StepKind::ExpectTeams => "expect_teams",
            StepKind::ExpectDashboards => "expect_dashboards",
            StepKind::Bench => "bench",
            StepKind::ExpectCapacity => "expect_capacity",
            StepKind::Warm => "warm",
            StepKind::Calm => "calm",
            StepKind::Covered => "covered",
        }
    }

    /// A check with a verdict (a JUnit test case), not an action. `covered`
    /// is a wait computed from the dashboards, which cannot fail.
    pub fn is_check(self) -> bool {
        !matches!(
            self,
            StepKind::Load | StepKind::Chaos | StepKind::Wait | StepKind::Covered | StepKind::Bench
        )
    }

    /// Whether it is a precondition (`warm`, `calm`, `covered`) rather than a scenario step.
    pub fn is_precondition(self) -> bool {
        matches!(self, StepKind::Warm | StepKind::Calm | StepKind::Covered)
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one step or precondition of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// The scenario step (from 0); a precondition carries the step it guards.
    pub index: usize,
    /// What the line is: a step kind or a precondition.
    pub kind: StepKind,
    /// Pass, fail or inconclusive.
    pub status: Status,
    /// What was found, for people.
    pub message: String,
    /// How long it took, in seconds.
    pub seconds: f64,
}

impl StepResult {
    /// A result from an outcome and the time the step took.
    pub fn new(index: usize, kind: StepKind, o: Outcome, took: Duration) -> Self {
        StepResult {
            index,
            kind,
            status: o.status,
            message: o.message,
            seconds: took.as_secs_f64(),
        }
    }

    /// The terminal line: mark, step number, kind, seconds and message.
    pub fn line(&self) -> String {
        let mark = match self.status {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Inconclusive => "?",
        };
        let at = if self.kind.is_precondition() {
            "  ·".to_string()
        } else {
            format!("{:>3}", self.index + 1)
        };
        format!(
            "  {mark}{at} {:<16} {:>7.2}s  {}",
            self.kind.name(),
            self.seconds,
            self.message
        )
    }
}

/// A drill's verdict (DESIGN §13).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every step and the false-alert guard passed at the first try.
    Passed,
    /// Passed on a retry after failing or being inconclusive: not green.
    Flaky,
    /// A precondition could not be established: no verdict on the stack.
    Inconclusive,
    /// The stack did not keep a promise.
    Failed,
    /// The drill could not run (bring-up failed).
    Error,
    /// A signal stopped it.
    Interrupted,
    /// It needs what this machine lacks (a GPU for GPU chaos): it did not
    /// run, and says why. Not a failure: the same suite runs everywhere.
    Skipped,
}

impl Verdict {
    /// The verdict in capitals, as printed (`PASSED`).
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Passed => "PASSED",
            Verdict::Flaky => "FLAKY",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Failed => "FAILED",
            Verdict::Error => "ERROR",
            Verdict::Interrupted => "INTERRUPTED",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

/// An earlier run of a drill that was retried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// How that run ended.
    pub verdict: Verdict,
    /// That run's id.
    pub run_id: String,
    /// How long that run took (seconds in JSON).
    #[serde(with = "secs")]
    pub wall: Duration,
    /// Why it was not green: its first failed or inconclusive line.
    pub why: String,
    /// That line's step (index, kind), when a step was why.
    pub step: Option<(usize, StepKind)>,
}

/// Everything one drill did and found: printed, and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file's path.
    pub file: String,
    /// The stack's name.
    pub stack: String,
    /// The run id of the stack it ran on.
    pub run_id: String,
    /// The drill's verdict, retries included.
    pub verdict: Verdict,
    /// The stack was brought up for this drill's wave (else: reset, shared).
    pub fresh_stack: bool,
    /// The drills that ran on the stack at the same time.
    pub beside: Vec<String>,
    /// The scenario's `time_scale`.
    pub time_scale: f64,
    /// How long bringing up (or resetting) the stack took (seconds in JSON).
    #[serde(with = "secs")]
    pub bring_up: Duration,
    /// How long the drill itself took (seconds in JSON).
    #[serde(with = "secs")]
    pub wall: Duration,
    /// The least time the steps can take on this stack (DESIGN §6).
    #[serde(with = "secs")]
    pub lower_bound: Duration,
    /// Services that were not started, each with the reason.
    pub skipped_services: Vec<(String, String)>,
    /// Services played by firedrill's stand-in for an absent official
    /// image, each with what plays it and why; node-exporters that read a
    /// synthetic host, each with which.
    pub stand_ins: Vec<(String, String)>,
    /// Containers of an attached stack the drill left stopped or paused,
    /// each put back as it found them, in a line.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub restored: Vec<String>,
    /// Each step and precondition, in order.
    pub steps: Vec<StepResult>,
    /// What was measured for each alert the drill provoked.
    pub breakdowns: Vec<Breakdown>,
    /// What each load of the drill did.
    pub loads: Vec<LoadReport>,
    /// Steps left out after a failure (fail-fast) or a precondition that
    /// could not be established.
    pub not_run: usize,
    /// An error that stopped the drill (bring-up failure, interruption).
    pub error: Option<String>,
    /// Why the drill did not run on this machine (it needs a GPU), if so.
    pub skipped: Option<String>,
    /// The drill was stopped by a signal.
    pub interrupted: bool,
    /// Alerts that fired though no step expected them (the false-alert guard).
    pub unexpected_alerts: Vec<String>,
    /// What each `bench` step found: its steps, knee and alert headroom.
    pub benches: Vec<crate::bench::BenchReport>,
    /// Every panel target an `expect_dashboards` step ran.
    pub panels: Vec<crate::panels::PanelCheck>,
    /// The cards the Teams mock received for the drill's alerts, refused
    /// attempts included.
    pub cards: Vec<crate::observe::Delivery>,
    /// Earlier runs of this drill, when it was retried (`--retries`).
    pub attempts: Vec<Attempt>,
}

/// One load of a drill: where it went and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The fixture service the load was sent to.
    pub target: String,
    /// The HTTP path it requested.
    pub path: String,
    /// Requests, errors and latencies of the load.
    #[serde(flatten)]
    pub summary: LoadSummary,
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
    /// An empty report for scenario `s` on run `run_id`, passed until judged.
    pub fn new(s: &Scenario, run_id: &str) -> Self {
        DrillReport {
            scenario: s.doc.name.clone(),
            file: s.source.path.display().to_string(),
            stack: s.stack.doc.name.clone(),
            run_id: run_id.into(),
            verdict: Verdict::Passed,
            fresh_stack: true,
            beside: vec![],
            time_scale: s.doc.time_scale,
            bring_up: Duration::ZERO,
            wall: Duration::ZERO,
            lower_bound: Duration::ZERO,
            skipped_services: vec![],
            stand_ins: vec![],
            restored: vec![],
            steps: vec![],
            breakdowns: vec![],
            loads: vec![],
            not_run: 0,
            error: None,
            skipped: None,
            interrupted: false,
            unexpected_alerts: vec![],
            benches: vec![],
            panels: vec![],
            cards: vec![],
            attempts: vec![],
        }
    }

    /// The verdict of this run alone, from its steps (retries aside).
    pub fn judge(&self) -> Verdict {
        if self.skipped.is_some() {
            Verdict::Skipped
        } else if self.interrupted {
            Verdict::Interrupted
        } else if self.error.is_some() {
            Verdict::Error
        } else if !self.unexpected_alerts.is_empty()
            || self.steps.iter().any(|s| s.status == Status::Fail)
        {
            Verdict::Failed
        } else if self.steps.iter().any(|s| s.status == Status::Inconclusive) {
            Verdict::Inconclusive
        } else {
            Verdict::Passed
        }
    }

    /// Passed, at the first try.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    /// The steps and preconditions that failed.
    pub fn failures(&self) -> Vec<&StepResult> {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Fail)
            .collect()
    }

    /// The first step (or precondition) that kept this run from green.
    pub fn first_not_passed(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.status != Status::Pass)
    }

    /// Whether the false-alert guard ran: not when the drill could not run,
    /// nor when a step was inconclusive (it is then judged no further).
    pub fn guard_ran(&self) -> bool {
        self.error.is_none() && !self.steps.iter().any(|s| s.status == Status::Inconclusive)
    }

    /// The first line that kept this run from green, for retry summaries.
    pub fn why_not_green(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        if let Some(s) = self.first_not_passed() {
            return format!("{} {}: {}", s.index + 1, s.kind, s.message);
        }
        if let Some(a) = self.unexpected_alerts.first() {
            return format!("false alert: {a}");
        }
        String::new()
    }
}

/// What a suite reports as it goes.
pub enum Event<'a> {
    /// Drills start on a stack just brought up (`fresh`) or reset.
    Wave {
        /// The stack's name.
        stack: &'a str,
        /// The run id of the stack.
        run_id: &'a str,
        /// Whether the stack was brought up fresh rather than reset.
        fresh: bool,
        /// How long the bring-up or reset took.
        took: Duration,
        /// The scenario files of the drills in the wave.
        scenarios: &'a [String],
    },
    /// A step or precondition ended; `beside`: other drills run on the
    /// stack at the same time.
    Step {
        /// The scenario's name.
        scenario: &'a str,
        /// Whether other drills run on the stack at the same time.
        beside: bool,
        /// The step's result.
        step: &'a StepResult,
    },
    /// A drill ended.
    Done(&'a DrillReport),
}

/// How many drills ended with each verdict.
pub fn tally(reports: &[DrillReport]) -> std::collections::BTreeMap<Verdict, usize> {
    let mut t = std::collections::BTreeMap::new();
    for r in reports {
        *t.entry(r.verdict).or_default() += 1;
    }
    t
}

/// The process exit code for a suite: 0 all passed (flaky ones too with
/// `flaky_ok`), 2 a drill could not run, 1 one failed, 3 one was
/// inconclusive, 4 one was flaky; the first that applies, in that order.
pub fn exit_code(reports: &[DrillReport], flaky_ok: bool) -> i32 {
    let t = tally(reports);
    let has = |v: Verdict| t.contains_key(&v);
    if has(Verdict::Interrupted) {
        crate::error::Error::Interrupted.exit_code()
    } else if has(Verdict::Error) {
        2
    } else if has(Verdict::Failed) {
        1
    } else if has(Verdict::Inconclusive) {
        3
    } else if has(Verdict::Flaky) && !flaky_ok {
        4
    } else {
        0
    }
}

pub use crate::error::render_spec_errors;

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
            r.steps.push(StepResult::new(
                i,
                StepKind::of(step),
                o,
                Duration::from_millis(1500),
            ));
        }
        r
    }

    #[test]
    fn junit_has_a_case_per_expectation_and_the_guard() {
        let mut r = report();
        r.unexpected_alerts = vec!["HighLatencyP95{route=\"/\"}".into()];
        r.verdict = r.judge();
        let xml = junit(&[r]);
        // load and chaos are actions: only expect_* steps and the guard are cases.
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert!(xml.contains(r#"name="02 expect_quiet""#), "{xml}");
        assert!(xml.contains(r#"name="04 expect_alert""#), "{xml}");
        assert!(xml.contains(r#"failures="2""#), "{xml}");
        assert!(xml.contains("fired, and no step expected it: HighLatencyP95"));
    }

    /// A drill the machine cannot run is SKIPPED with its reason, in the
    /// terminal and in JUnit, and does not fail the suite.
    #[test]
    fn a_skipped_drill_says_why_and_fails_nothing() {
        let s =
            Scenario::load(std::path::Path::new("scenarios/ai-gpu-saturate.yaml"), None).unwrap();
        let mut r = DrillReport::new(&s, "");
        r.skipped = Some("its GPU chaos on `dcgm-exporter` needs a GPU".into());
        r.verdict = r.judge();
        assert_eq!(r.verdict, Verdict::Skipped);
        assert!(
            r.render().contains("skipped: its GPU chaos"),
            "{}",
            r.render()
        );
        let xml = junit(std::slice::from_ref(&r));
        assert!(xml.contains("<skipped message=\"its GPU chaos"), "{xml}");
        assert_eq!(exit_code(std::slice::from_ref(&r), false), 0);
        let mut failed = report();
        failed.verdict = failed.judge();
        assert_eq!(exit_code(&[r, failed], false), 1);
    }

    #[test]
    fn a_false_alert_fails_the_report() {
        let mut r = report();
        r.steps.retain(|s| s.status == Status::Pass);
        assert_eq!(r.judge(), Verdict::Passed);
        r.unexpected_alerts = vec!["X{}".into()];
        r.verdict = r.judge();
        assert_eq!(r.verdict, Verdict::Failed);
        assert!(r.render().contains("false alert: X{}"));
        assert!(r.render().contains("FAILED backend-down"));
    }

    #[test]
    fn inconclusive_is_an_error_not_a_failure() {
        let mut r = report();
        r.steps.retain(|s| s.status == Status::Pass);
        r.steps.push(StepResult::new(
            4,
            StepKind::Calm,
            Outcome::inconclusive("the baseline did not calm within 6.00s"),
            Duration::from_secs(6),
        ));
        r.verdict = r.judge();
        assert_eq!(r.verdict, Verdict::Inconclusive);
        let xml = junit(std::slice::from_ref(&r));
        assert!(xml.contains("<error") && !xml.contains("<failure"), "{xml}");
        assert!(xml.contains("calm (precondition)"), "{xml}");
        assert_eq!(exit_code(std::slice::from_ref(&r), false), 3);
        assert!(r.render().contains("INCONCLUSIVE backend-down"));
        // A failure outranks it, in the drill and in the exit code.
        let mut f = report();
        f.verdict = f.judge();
        assert_eq!(f.verdict, Verdict::Failed);
        assert_eq!(exit_code(&[r.clone(), f.clone()], false), 1);
        let mut e = report();
        e.error = Some("bring-up failed".into());
        e.verdict = e.judge();
        assert_eq!(exit_code(&[r.clone(), f.clone(), e.clone()], false), 2);
        // A signal outranks everything: the run did not finish.
        let mut i = report();
        i.interrupted = true;
        i.error = Some("interrupted".into());
        i.verdict = i.judge();
        assert_eq!(i.verdict, Verdict::Interrupted);
        assert_eq!(exit_code(&[r, f, e, i], false), 130);
        let s = suite_summary(&[report()], Duration::from_secs(10));
        assert!(s.contains("0 inconclusive, 0 flaky"), "{s}");
    }

    /// A note on a service is said once in a suite's run, then grouped by
    /// reason in its summary; the summary's table has a row per drill.
    #[test]
    fn service_notes_are_said_once_and_grouped() {
        let mut a = report();
        a.skipped_services = vec![("grafana".into(), "no image".into())];
        a.stand_ins = vec![("cadvisor".into(), "firedrill's stand-in".into())];
        a.verdict = a.judge();
        let mut b = a.clone();
        b.scenario = "other".into();
        let mut t = Terminal::default();
        let first = t.event(&crate::drill::Event::Done(&a));
        let second = t.event(&crate::drill::Event::Done(&b));
        assert!(
            first.contains("skipped service grafana: no image"),
            "{first}"
        );
        assert!(!second.contains("grafana"), "{second}");
        assert!(
            second.contains("2 service note(s) as said above"),
            "{second}"
        );
        let s = suite_summary(&[a, b], Duration::from_secs(10));
        assert_eq!(
            s.matches("skipped service grafana: no image [2 drill(s)]")
                .count(),
            1,
            "{s}"
        );
        assert!(s.contains("drill  "), "{s}");
        assert!(
            s.lines()
                .any(|l| l.starts_with("other ") && l.contains("FAILED")),
            "{s}"
        );
    }
}
