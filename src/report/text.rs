//! The drill as people read it: each event as it happens, a drill's report,
//! the suite's summary.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

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

/// The terminal view of a suite as it goes: each event's lines, with what
/// a drill says of a service (skipped, played by a stand-in) said once, the
/// first time, rather than again in every drill on the same stack.
#[derive(Debug, Default)]
pub struct Terminal {
    said: BTreeSet<String>,
}

impl Terminal {
    /// The lines for `e`.
    pub fn event(&mut self, e: &Event<'_>) -> String {
        match e {
            Event::Done(r) => r.render_once(&mut self.said),
            e => event_text(e),
        }
    }
}

/// The slowest card of a drill against its window, in words
/// (`GpuXidError 2.8s of 38.5s`), and how many other cards it had.
fn slowest_card(r: &DrillReport) -> String {
    let cards: Vec<(&str, Duration, Duration)> = r
        .breakdowns
        .iter()
        .filter_map(|b| {
            let took = crate::verify::between(b.fault_at, b.teams_at)?;
            Some((b.alert.as_str(), took, b.timing.as_ref()?.teams_bound()))
        })
        .collect();
    let share = |c: &(&str, Duration, Duration)| c.1.as_secs_f64() / c.2.as_secs_f64().max(1e-3);
    match cards.iter().max_by(|a, b| share(a).total_cmp(&share(b))) {
        None => "—".into(),
        Some(c) => {
            let more = match cards.len() - 1 {
                0 => String::new(),
                n => format!(" (+{n})"),
            };
            format!(
                "{} {:.1}s of {:.1}s{more}",
                c.0,
                c.1.as_secs_f64(),
                c.2.as_secs_f64()
            )
        }
    }
}

/// The suite as a table: each drill's verdict, its slowest card against
/// its window (fault → Teams), and its wall time.
pub fn suite_table(reports: &[DrillReport]) -> String {
    let rows: Vec<[String; 4]> = reports
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.verdict.word().to_string(),
                slowest_card(r),
                format!("{:.1}s", r.wall.as_secs_f64()),
            ]
        })
        .collect();
    let head = [
        "drill",
        "verdict",
        "slowest fault → Teams, of its window",
        "wall",
    ]
    .map(String::from);
    let width = |k: usize| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|r| r[k].chars().count())
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let pad = |k: usize| {
            let n = w[k].saturating_sub(r[k].chars().count());
            format!("{}{}", r[k], " ".repeat(n))
        };
        out.push_str(&format!("{}  {}  {}  {}\n", pad(0), pad(1), pad(2), r[3]));
    }
    out
}

/// What the suite's drills said of services, one line per service and
/// reason, with how many drills it concerned.
pub(super) fn grouped_notes(reports: &[DrillReport]) -> BTreeMap<String, usize> {
    let mut notes: BTreeMap<String, usize> = BTreeMap::new();
    for n in reports.iter().flat_map(|r| r.service_notes()) {
        *notes.entry(n).or_default() += 1;
    }
    notes
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
    let stacks: BTreeSet<&str> = reports
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
    for v in [Verdict::Error, Verdict::Interrupted, Verdict::Skipped] {
        if n(v) > 0 {
            counts.push_str(&format!(", {} {}", n(v), v.word().to_lowercase()));
        }
    }
    format!(
        "{}{}{counts}, on {} stack(s); suite {:.1}s, sum of lower bounds {:.1}s{ratio}\n",
        grouped_notes(reports)
            .into_iter()
            .map(|(n, k)| format!("{n} [{k} drill(s)]\n"))
            .collect::<String>(),
        suite_table(reports),
        stacks.len(),
        wall.as_secs_f64(),
        bound.as_secs_f64()
    )
}

impl DrillReport {
    /// What the drill says of its stack's services: those skipped and
    /// those played by something else than the stack file's component.
    pub fn service_notes(&self) -> Vec<String> {
        let skipped = self
            .skipped_services
            .iter()
            .map(|(name, why)| format!("skipped service {name}: {why}"));
        let played = self
            .stand_ins
            .iter()
            .map(|(name, what)| format!("service {name}: {what}"));
        let restored = self.restored.iter().map(|r| format!("put back: {r}"));
        skipped.chain(played).chain(restored).collect()
    }

    /// The end-of-drill summary for the terminal.
    pub fn render(&self) -> String {
        self.render_once(&mut Default::default())
    }

    /// [`render`](Self::render), leaving out the service notes in `said`
    /// (and adding those it says).
    fn render_once(&self, said: &mut BTreeSet<String>) -> String {
        let mut out = String::new();
        if let Some(why) = &self.skipped {
            out.push_str(&format!("  skipped: {why}\n"));
        }
        let (mut again, notes) = (0, self.service_notes());
        for n in notes {
            if said.insert(n.clone()) {
                out.push_str(&format!("  {n}\n"));
            } else {
                again += 1;
            }
        }
        if again > 0 {
            out.push_str(&format!("  {again} service note(s) as said above\n"));
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
        for b in &self.benches {
            for l in b.render().lines() {
                out.push_str(&format!("  {l}\n"));
            }
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
