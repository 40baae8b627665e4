//! The drill as people read it: each event as it happens, a drill's report,
//! the suite's summary.

use super::*;

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

impl DrillReport {
    /// The end-of-drill summary for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, why) in &self.skipped_services {
            out.push_str(&format!("  skipped service {name}: {why}\n"));
        }
        for (name, what) in &self.stand_ins {
            out.push_str(&format!("  service {name}: {what}\n"));
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
