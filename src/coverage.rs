//! `firedrill coverage`: which alert rules of each stack some scenario
//! provokes (an `expect_alert`, or a Teams card expected for it), and which
//! dashboards some scenario checks (`expect_dashboards`). An alert whose
//! every metric comes only from an optional component with no offline
//! source (cAdvisor, Grafana) is listed apart, with that component, as is
//! one the stack waives (`coverage: {waive: [{alert, reason}]}`) because no
//! CI machine can provoke it safely. Static: no container starts.

use crate::error::Result;
use crate::spec::scenario::{Scenario, Step};
use crate::spec::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An alert rule or a dashboard, and the scenarios that cover it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The alert's name, or the dashboard's file name.
    pub name: String,
    /// The scenarios that cover it, by name.
    pub scenarios: Vec<String>,
    /// Why no scenario can cover it here (an absent component, a waiver
    /// of the stack's), if so.
    pub needs: Option<String>,
}

/// What the scenarios of one stack cover.
#[derive(Debug, Clone, Serialize)]
pub struct StackCoverage {
    /// The stack's name.
    pub stack: String,
    /// The stack file's path.
    pub file: String,
    /// Every alerting rule of the stack.
    pub alerts: Vec<Item>,
    /// Every dashboard the stack provisions.
    pub dashboards: Vec<Item>,
}

impl StackCoverage {
    /// (covered, coverable): alerts that need an absent component are not coverable.
    pub fn alert_ratio(&self) -> (usize, usize) {
        ratio(&self.alerts)
    }
    /// (covered, coverable) dashboards.
    pub fn dashboard_ratio(&self) -> (usize, usize) {
        ratio(&self.dashboards)
    }
    /// Every coverable alert and dashboard is covered.
    pub fn complete(&self) -> bool {
        let (a, at) = self.alert_ratio();
        let (d, dt) = self.dashboard_ratio();
        a == at && d == dt
    }
}

fn ratio(items: &[Item]) -> (usize, usize) {
    let coverable: Vec<_> = items.iter().filter(|i| i.needs.is_none()).collect();
    let covered = coverable.iter().filter(|i| !i.scenarios.is_empty()).count();
    (covered, coverable.len())
}

/// Optional components that neither an offline image nor firedrill's
/// stand-in provides (as the components table says): what an alert or a
/// panel reading only their metrics waits for.
fn optional_services(stack: &Stack) -> BTreeMap<String, String> {
    stack
        .doc
        .services
        .iter()
        .filter(|(_, s)| {
            matches!(
                crate::components::of(s.kind).image,
                crate::components::Image::Optional(_)
            )
        })
        .map(|(n, s)| (n.clone(), format!("{:?} has no offline source", s.kind)))
        .collect()
}

/// Coverage of `stacks` (and of every stack a scenario names) by `scenarios`.
pub fn coverage(scenarios: &[PathBuf], stacks: &[PathBuf]) -> Result<Vec<StackCoverage>> {
    let key = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut by_stack: BTreeMap<PathBuf, (Stack, Vec<Scenario>)> = BTreeMap::new();
    for p in stacks {
        let s = Stack::load(p)?;
        by_stack.entry(key(p)).or_insert((s, vec![]));
    }
    for p in scenarios {
        let sc = Scenario::load(p, None)?;
        by_stack
            .entry(key(&sc.stack_path))
            .or_insert_with(|| (sc.stack.clone(), vec![]))
            .1
            .push(sc);
    }
    Ok(by_stack
        .values()
        .map(|(stack, scs)| StackCoverage {
            stack: stack.doc.name.clone(),
            file: stack.source.path.display().to_string(),
            alerts: alerts(stack, scs),
            dashboards: dashboards(stack, scs),
        })
        .collect())
}

/// Each alerting rule of `stack`: the scenarios that provoke it, or why
/// none needs to (waived, or it reads only services that cannot run here).
fn alerts(stack: &Stack, scs: &[Scenario]) -> Vec<Item> {
    let optional = optional_services(stack);
    let mut alerts: Vec<Item> = Vec::new();
    for rule in stack.prometheus.alert_rules() {
        if alerts.iter().any(|a| a.name == rule.name) {
            continue;
        }
        let provoked: Vec<String> = scs
            .iter()
            .filter(|sc| {
                sc.doc.steps.iter().any(|st| match st {
                    Step::ExpectAlert(a) => a.name == rule.name,
                    Step::ExpectTeams(t) => t.alert == rule.name,
                    _ => false,
                })
            })
            .map(|sc| sc.doc.name.clone())
            .collect();
        let waived = stack
            .doc
            .coverage
            .waive
            .iter()
            .find(|w| w.alert == rule.name)
            .map(|w| format!("waived: {}", w.reason));
        alerts.push(Item {
            needs: waived.or_else(|| {
                crate::panels::needs_absent(stack, &optional, &rule.expr)
                    .map(|n| format!("skipped: needs {n}"))
            }),
            name: rule.name,
            scenarios: provoked,
        });
    }
    alerts
}

/// Each dashboard of `stack`, with the scenarios that check every panel.
fn dashboards(stack: &Stack, scs: &[Scenario]) -> Vec<Item> {
    let checking: Vec<String> = scs
        .iter()
        .filter(|sc| {
            sc.doc
                .steps
                .iter()
                .any(|st| matches!(st, Step::ExpectDashboards(_)))
        })
        .map(|sc| sc.doc.name.clone())
        .collect();
    crate::spec::dashboards::dashboard_files(stack)
        .iter()
        .map(|f| Item {
            name: f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            scenarios: checking.clone(),
            needs: None,
        })
        .collect()
}

/// The coverage table for people.
pub fn render(cov: &[StackCoverage]) -> String {
    let pct = |(a, t): (usize, usize)| {
        if t == 0 {
            "—".to_string()
        } else {
            format!("{}/{} ({}%)", a, t, a * 100 / t)
        }
    };
    let mut out = String::new();
    for c in cov {
        out.push_str(&format!(
            "{} ({}): alerts {}, dashboards {}\n",
            c.stack,
            c.file,
            pct(c.alert_ratio()),
            pct(c.dashboard_ratio())
        ));
        let width = c.alerts.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for (what, items) in [("alert", &c.alerts), ("dashboard", &c.dashboards)] {
            for i in items {
                let by = match (&i.needs, i.scenarios.is_empty()) {
                    (Some(n), _) => n.clone(),
                    (None, true) => "NOT COVERED".to_string(),
                    (None, false) => i.scenarios.join(", "),
                };
                out.push_str(&format!(
                    "  {what:<9} {:<width$}  {by}\n",
                    i.name,
                    width = width.max(20)
                ));
            }
        }
    }
    out
}
