//! Results: per-step outcomes, per-alert breakdowns, load summaries; printed
//! for people and written as JSON for machines. Secrets never reach it.

use crate::error::SpecErrors;
use crate::load::LoadSummary;
use crate::spec::scenario::{Scenario, Step};
use crate::verify::Breakdown;
use serde::Serialize;
use std::time::Duration;

/// How one step (or precondition) ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// The stack did not keep a promise.
    Fail,
    /// The drill could not establish what the judgement needs (a load
    /// that got no answer, a baseline that never calmed, a stalled
    /// machine): no verdict on the stack.
    Inconclusive,
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
    pub fn inconclusive(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Inconclusive,
            message: m.into(),
        }
    }
}

/// What a line of the drill's report is: a scenario step, or a
/// precondition the drill established before the step it guards.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Load,
    Chaos,
    Wait,
    ExpectQuiet,
    ExpectAlert,
    ExpectResolved,
    ExpectTeams,
    ExpectDashboards,
    /// Precondition: the loads answer and Prometheus holds their series.
    Warm,
    /// Precondition: the alerts about to be provoked are inactive.
    Calm,
    /// Precondition: every panel's range window is covered by load.
    Covered,
}

impl StepKind {
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
        }
    }

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
            StepKind::Load | StepKind::Chaos | StepKind::Wait | StepKind::Covered
        )
    }

    pub fn is_precondition(self) -> bool {
        matches!(self, StepKind::Warm | StepKind::Calm | StepKind::Covered)
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// The scenario step (from 0); a precondition carries the step it guards.
    pub index: usize,
    pub kind: StepKind,
    pub status: Status,
    pub message: String,
    pub seconds: f64,
}

impl StepResult {
    pub fn new(index: usize, kind: StepKind, o: Outcome, took: Duration) -> Self {
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
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Passed => "PASSED",
            Verdict::Flaky => "FLAKY",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Failed => "FAILED",
            Verdict::Error => "ERROR",
            Verdict::Interrupted => "INTERRUPTED",
        }
    }
}

/// An earlier run of a drill that was retried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub verdict: Verdict,
    pub run_id: String,
    #[serde(with = "secs")]
    pub wall: Duration,
    /// Why it was not green: its first failed or inconclusive line.
    pub why: String,
    /// That line's step (index, kind), when a step was why.
    pub step: Option<(usize, StepKind)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: String,
    pub file: String,
    pub stack: String,
    pub run_id: String,
    pub verdict: Verdict,
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
    pub loads: Vec<LoadReport>,
    /// Steps left out after a failure (fail-fast) or a precondition that
    /// could not be established.
    pub not_run: usize,
    /// An error that stopped the drill (bring-up failure, interruption).
    pub error: Option<String>,
    pub interrupted: bool,
    /// Alerts that fired though no step expected them (the false-alert guard).
    pub unexpected_alerts: Vec<String>,
    /// Every panel target an `expect_dashboards` step ran.
    pub panels: Vec<crate::panels::PanelCheck>,
    /// Earlier runs of this drill, when it was retried (`--retries`).
    pub attempts: Vec<Attempt>,
}

/// One load of a drill: where it went and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub target: String,
    pub path: String,
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
            steps: vec![],
            breakdowns: vec![],
            loads: vec![],
            not_run: 0,
            error: None,
            interrupted: false,
            unexpected_alerts: vec![],
            panels: vec![],
            attempts: vec![],
        }
    }

    /// The verdict of this run alone, from its steps (retries aside).
    pub fn judge(&self) -> Verdict {
        if self.interrupted {
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
        for l in &self.loads {
            out.push_str(&format!(
                "  load {}{}: {}\n",
                l.target,
                l.path,
                l.summary.line()
            ));
        }
        if self.not_run > 0 {
            out.push_str(&format!("  {} step(s) not run\n", self.not_run));
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
        for (i, a) in self.attempts.iter().enumerate() {
            out.push_str(&format!(
                "  attempt {} of {}: {} in {:.1}s (run {}): {}\n",
                i + 1,
                self.attempts.len() + 1,
                a.verdict.word(),
                a.wall.as_secs_f64(),
                a.run_id,
                a.why
            ));
        }
        let (pre, steps): (Vec<&StepResult>, Vec<&StepResult>) =
            self.steps.iter().partition(|s| s.kind.is_precondition());
        let bad = |v: &[&StepResult]| v.iter().filter(|s| s.status != Status::Pass).count();
        out.push_str(&format!(
            "{} {} — {} step(s), {} not passed; {} precondition(s), {} not established; stack up in {:.1}s, drill {:.1}s, lower bound {:.1}s (run {})\n",
            self.verdict.word(),
            self.scenario,
            steps.len(),
            bad(&steps),
            pre.len(),
            bad(&pre),
            self.bring_up.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.lower_bound.as_secs_f64(),
            self.run_id
        ));
        out
    }
}

/// What a suite reports as it goes.
pub enum Event<'a> {
    /// Drills start on a stack just brought up (`fresh`) or reset.
    Wave {
        stack: &'a str,
        run_id: &'a str,
        fresh: bool,
        took: Duration,
        scenarios: &'a [String],
    },
    /// A step or precondition ended; `beside`: other drills run on the
    /// stack at the same time.
    Step {
        scenario: &'a str,
        beside: bool,
        step: &'a StepResult,
    },
    /// A drill ended.
    Done(&'a DrillReport),
}

/// One line (or block) of the terminal view for a suite's event.
pub fn event_text(e: &Event<'_>) -> String {
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

/// How many drills ended with each verdict.
pub fn tally(reports: &[DrillReport]) -> std::collections::BTreeMap<Verdict, usize> {
    let mut t = std::collections::BTreeMap::new();
    for r in reports {
        *t.entry(r.verdict).or_default() += 1;
    }
    t
}

/// A suite's totals: verdicts, wall time, the sum of its drills' lower
/// bounds, and how far above that the suite ran.
pub fn suite_summary(reports: &[DrillReport], wall: Duration) -> String {
    let t = tally(reports);
    let n = |v: Verdict| t.get(&v).copied().unwrap_or(0);
    let bound: Duration = reports.iter().map(|r| r.lower_bound).sum();
    let ratio = if bound.is_zero() {
        String::new()
    } else {
        format!(
            ", {:.2}× the bound",
            wall.as_secs_f64() / bound.as_secs_f64()
        )
    };
    let stacks: std::collections::BTreeSet<&str> = reports
        .iter()
        .map(|r| r.run_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    let mut counts = format!(
        "{} passed, {} failed, {} inconclusive, {} flaky",
        n(Verdict::Passed),
        n(Verdict::Failed),
        n(Verdict::Inconclusive),
        n(Verdict::Flaky)
    );
    for v in [Verdict::Error, Verdict::Interrupted] {
        if n(v) > 0 {
            counts.push_str(&format!(", {} {}", n(v), v.word().to_lowercase()));
        }
    }
    format!(
        "{counts}, on {} stack(s); suite {:.1}s, sum of lower bounds {:.1}s{ratio}\n",
        stacks.len(),
        wall.as_secs_f64(),
        bound.as_secs_f64()
    )
}

/// The process exit code for a suite: 0 all passed (flaky ones too with
/// `flaky_ok`), 2 a drill could not run, 1 one failed, 3 one was
/// inconclusive, 4 one was flaky; the first that applies, in that order.
pub fn exit_code(reports: &[DrillReport], flaky_ok: bool) -> i32 {
    let t = tally(reports);
    let has = |v: Verdict| t.contains_key(&v);
    if has(Verdict::Error) || has(Verdict::Interrupted) {
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

/// Drill reports as JUnit XML: a suite per drill, a test case per check
/// (expectations and preconditions), one for the false-alert guard, one for
/// bring-up when it failed. A failed expectation is a `<failure>`; an
/// inconclusive one an `<error>` (the stack was not judged); a drill that
/// passed on a retry carries its earlier runs as flaky reruns.
pub fn junit(reports: &[DrillReport]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
    let status_of = |kind: NonSuccessKind, msg: &str| {
        let mut s = TestCaseStatus::non_success(kind);
        s.set_message(msg.lines().next().unwrap_or_default().to_string());
        s.set_description(msg.to_string());
        s
    };
    let mut out = Report::new("firedrill");
    for r in reports {
        let mut suite = TestSuite::new(r.scenario.clone());
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
        assert_eq!(exit_code(&[r, f, e], false), 2);
        let s = suite_summary(&[report()], Duration::from_secs(10));
        assert!(s.contains("0 inconclusive, 0 flaky"), "{s}");
    }
}
