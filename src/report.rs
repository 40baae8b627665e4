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
    pub time_scale: f64,
    #[serde(with = "secs")]
    pub bring_up: Duration,
    #[serde(with = "secs")]
    pub wall: Duration,
    pub skipped_services: Vec<(String, String)>,
    pub steps: Vec<StepResult>,
    pub breakdowns: Vec<Breakdown>,
    pub loads: Vec<(String, LoadSummary)>,
    /// Steps left out after a failure (fail-fast).
    pub not_run: usize,
    /// An error that stopped the drill (bring-up failure, interruption).
    pub error: Option<String>,
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
            time_scale: s.doc.time_scale,
            bring_up: Duration::ZERO,
            wall: Duration::ZERO,
            skipped_services: vec![],
            steps: vec![],
            breakdowns: vec![],
            loads: vec![],
            not_run: 0,
            error: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.steps.iter().all(|s| s.status == Status::Pass)
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
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        out.push_str(&format!(
            "{verdict} {} — {} step(s), {} failed; stack up in {:.1}s, drill {:.1}s (run {})\n",
            self.scenario,
            self.steps.len(),
            self.failures().len(),
            self.bring_up.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.run_id
        ));
        out
    }
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
