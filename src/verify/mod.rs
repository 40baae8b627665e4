//! The timing model of DESIGN §6: every bound computed from the configs the
//! stack actually loaded (scrape and evaluation intervals, the rule's `for`
//! and range windows, the matching route's `group_wait`/`group_interval`),
//! and the measured breakdown fault → expression true → pending → firing →
//! Alertmanager → Teams that a drill checks against it. Also the pure
//! judges that need no evidence beyond their arguments: a scenario's lower
//! bound, and the false-alert guard.

use crate::render::Effective;
use crate::spec::prometheus::{job_targets, AlertRule};
use crate::spec::scenario::{Chaos, ScenarioDoc, Step, TeamsStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub mod teams;

/// How one step (or precondition) ended.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The stack kept its promise.
    Pass,
    /// The stack did not keep a promise.
    Fail,
    /// The drill could not establish what the judgement needs (a load
    /// that got no answer, a baseline that never calmed, a stalled
    /// machine): no verdict on the stack.
    Inconclusive,
}

/// A judgement: its status and what was seen, in a line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// What was seen, in a line.
    pub message: String,
}

impl Outcome {
    /// A kept promise.
    pub fn pass(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Pass,
            message: m.into(),
        }
    }
    /// A broken promise.
    pub fn fail(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            message: m.into(),
        }
    }
    /// No judgement possible; the message says why.
    pub fn inconclusive(m: impl Into<String>) -> Self {
        Outcome {
            status: Status::Inconclusive,
            message: m.into(),
        }
    }
}

/// Fixed allowance for container and HTTP latency, on top of one evaluation interval.
pub const BASE_SLACK: Duration = Duration::from_secs(2);

/// The intervals that bound one alert's journey.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// The scrape interval of the alert's job (or the slowest job).
    pub scrape_interval: Duration,
    /// Its scrape timeout.
    pub scrape_timeout: Duration,
    /// The rule group's evaluation interval.
    pub eval_interval: Duration,
    /// The widest range window of the expression (`[5m]`).
    pub lookback: Duration,
    /// The rule's `for`.
    pub for_: Duration,
    /// The rule's `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// The receiver the alert's route sends to, if one matches.
    pub receiver: Option<String>,
    /// The route's `group_wait`.
    pub group_wait: Duration,
    /// The route's `group_interval`.
    pub group_interval: Duration,
    /// Allowance for container and HTTP latency: [`BASE_SLACK`] or one
    /// evaluation interval, whichever is longer.
    pub slack: Duration,
    /// Latency the undo took away: requests already in flight still take
    /// it, and are observed when they end.
    pub inflight_tail: Duration,
    /// How long the fault takes to show in the data after it is set (a
    /// queue filling before requests are shed).
    pub onset: Duration,
}

impl Timing {
    /// The rule named `name` and its timing for an alert with `labels`.
    pub fn of(
        eff: &Effective,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(AlertRule, Timing)> {
        let rule = eff.prometheus.alert_rule(name)?;
        let t = Timing::for_alert(eff, &rule, labels);
        Some((rule, t))
    }

    /// The timing of `rule` for an alert with `labels`: its job's scrape
    /// settings and the route its labels take.
    pub fn for_alert(
        eff: &Effective,
        rule: &AlertRule,
        labels: &BTreeMap<String, String>,
    ) -> Timing {
        let cfg = &eff.prometheus.config;
        // The job the alert is about, if it names one of ours; else the slowest.
        let (scrape_interval, scrape_timeout) =
            match labels.get("job").or_else(|| rule.labels.get("job")) {
                Some(job) if !job_targets(cfg, job).is_empty() => cfg.job_timing(job),
                _ => cfg.slowest_scrape(),
            };
        let mut all = rule.labels.clone();
        all.extend(labels.clone());
        all.insert("alertname".into(), rule.name.clone());
        let route = eff
            .alertmanager
            .as_ref()
            .and_then(|am| am.routes_for(&all).into_iter().next());
        Timing {
            scrape_interval,
            scrape_timeout,
            eval_interval: rule.eval_interval,
            lookback: crate::promql::max_lookback(&rule.expr).unwrap_or_default(),
            for_: rule.for_,
            keep_firing_for: rule.keep_firing_for,
            receiver: route.as_ref().map(|r| r.receiver.clone()),
            group_wait: route.as_ref().map(|r| r.group_wait).unwrap_or_default(),
            group_interval: route.as_ref().map(|r| r.group_interval).unwrap_or_default(),
            slack: BASE_SLACK.max(rule.eval_interval),
            inflight_tail: Duration::ZERO,
            onset: Duration::ZERO,
        }
    }

    /// Longest time for the expression to turn true after the fault.
    pub fn detect(&self) -> Duration {
        self.scrape_interval + self.scrape_timeout + self.lookback
    }
    /// fault → firing: D + for + 2·evaluation + slack.
    pub fn fire_bound(&self) -> Duration {
        self.onset + self.detect() + self.for_ + 2 * self.eval_interval + self.slack
    }
    /// fault → Teams: the firing bound plus the route's group_wait.
    pub fn teams_bound(&self) -> Duration {
        self.fire_bound() + self.group_wait
    }
    /// undo → alert gone from Prometheus: the data turn, one evaluation, keep_firing_for.
    pub fn resolve_bound(&self) -> Duration {
        self.detect() + self.eval_interval + self.keep_firing_for + self.slack + self.inflight_tail
    }
    /// undo → resolved card: Alertmanager flushes at the group's next group_interval.
    pub fn teams_resolved_bound(&self) -> Duration {
        self.resolve_bound() + self.group_interval
    }

    /// How the firing bound is made up, for the report.
    pub fn explain_fire(&self) -> String {
        let onset = if self.onset.is_zero() {
            String::new()
        } else {
            format!("onset {} + ", s(self.onset))
        };
        format!(
            "{onset}D {} (scrape {} + timeout {} + window {}) + for {} + 2×eval {} + slack {}",
            s(self.detect()),
            s(self.scrape_interval),
            s(self.scrape_timeout),
            s(self.lookback),
            s(self.for_),
            s(self.eval_interval),
            s(self.slack)
        )
    }
}

fn s(d: Duration) -> String {
    crate::util::secs(d)
}

/// What was measured for one alert in one drill.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Breakdown {
    /// The alert's name.
    pub alert: String,
    /// The labels the scenario expects it with.
    pub labels: BTreeMap<String, String>,
    /// When the fault was set.
    pub fault_at: Option<DateTime<Utc>>,
    /// When the rule expression first returned a matching series.
    pub expr_true_at: Option<DateTime<Utc>>,
    /// When the alert became pending (`activeAt`).
    pub pending_at: Option<DateTime<Utc>>,
    /// When it first fired (the ALERTS series' first firing sample).
    pub firing_at: Option<DateTime<Utc>>,
    /// When Alertmanager first held it.
    pub alertmanager_at: Option<DateTime<Utc>>,
    /// When its firing card reached the Teams mock.
    pub teams_at: Option<DateTime<Utc>>,
    /// When the fault was undone.
    pub undo_at: Option<DateTime<Utc>>,
    /// When it was gone from Prometheus.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When its resolved card reached the Teams mock.
    pub teams_resolved_at: Option<DateTime<Utc>>,
    /// The bounds its configuration gives.
    pub timing: Option<Timing>,
}

/// From `a` to `b`, when both were seen (zero if `b` came first).
pub fn between(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<Duration> {
    let (a, b) = (a?, b?);
    Some((b - a).to_std().unwrap_or(Duration::ZERO))
}

impl Breakdown {
    /// The breakdown as the terminal shows it.
    pub fn render(&self, time_scale: f64) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let mut out = format!("  {}{{{}}}", self.alert, labels.join(","));
        if (time_scale - 1.0).abs() > f64::EPSILON {
            out.push_str(&format!(
                "   (time_scale {time_scale}: stack durations ×{time_scale})"
            ));
        }
        out.push('\n');
        for (what, d, note) in self.rows() {
            let v = d.map(s).unwrap_or_else(|| "—".into());
            out.push_str(&format!("    {what:<26}{v:>9}  {note}\n"));
        }
        out
    }

    /// Each stage: its name, how long it took (if both ends were seen), and
    /// the bound the configuration gives it.
    pub fn rows(&self) -> Vec<(&'static str, Option<Duration>, String)> {
        let note = |f: &dyn Fn(&Timing) -> String| self.timing.as_ref().map(f).unwrap_or_default();
        let mut rows = vec![
            (
                "fault → expr true",
                between(self.fault_at, self.expr_true_at),
                note(&|t| format!("≤ {} (scrape + timeout + window)", s(t.detect()))),
            ),
            (
                "expr true → pending",
                between(self.expr_true_at, self.pending_at),
                note(&|t| format!("≤ eval {}", s(t.eval_interval))),
            ),
            (
                "pending → firing",
                between(self.pending_at, self.firing_at),
                note(&|t| format!("for {}", s(t.for_))),
            ),
            (
                "firing → Alertmanager",
                between(self.firing_at, self.alertmanager_at),
                String::new(),
            ),
            (
                "Alertmanager → Teams",
                between(self.alertmanager_at, self.teams_at),
                note(&|t| format!("group_wait {}", s(t.group_wait))),
            ),
            (
                "fault → Teams (total)",
                between(self.fault_at, self.teams_at),
                note(&|t| {
                    format!(
                        "window {} = {} + group_wait {}",
                        s(t.teams_bound()),
                        t.explain_fire(),
                        s(t.group_wait)
                    )
                }),
            ),
        ];
        if self.undo_at.is_some() {
            rows.push((
                "undo → resolved",
                between(self.undo_at, self.resolved_at),
                note(&|t| format!("≤ {}", s(t.resolve_bound()))),
            ));
            rows.push((
                "undo → Teams resolved",
                between(self.undo_at, self.teams_resolved_at),
                note(&|t| {
                    format!(
                        "≤ {} (+ group_interval {})",
                        s(t.teams_resolved_bound()),
                        s(t.group_interval)
                    )
                }),
            ));
        }
        rows
    }
}

/// What the lower bound needs to know beyond the scenario and its stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundInputs {
    /// Loads answer, then Prometheus needs two scrapes of their series.
    pub warm_up: Duration,
    /// The widest range window of any dashboard panel: `expect_dashboards`
    /// waits for it to be covered by load.
    pub panel_window: Duration,
}

/// The least time the scenario can take on this stack, whatever the
/// machine: the loads' warm-up, quiet periods and waits, each expected
/// alert's `for`, the group_wait before its first card, a Teams fault's
/// length before a refused card can be posted, the group_interval before a
/// lost card is sent again and between a firing and a resolved card, and
/// the panels' windows before `expect_dashboards`. Bring-up and detection
/// are not counted. Alerts expected after one fault overlap: this is a
/// timeline of earliest times, not a sum.
pub fn lower_bound(doc: &ScenarioDoc, eff: &Effective, inputs: BoundInputs) -> Duration {
    let mut t = Duration::ZERO;
    let mut fault = Duration::ZERO;
    let mut warm_at = Duration::ZERO;
    let mut warming = false;
    // Teams refuses cards until then (a fault with a `for`, or until reset).
    let mut teams_blocked: Option<Duration> = None;
    let mut first_card: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut lost_at: BTreeMap<&str, Duration> = BTreeMap::new();
    let no_labels = BTreeMap::new();
    let timing = |name: &str| Timing::of(eff, name, &no_labels).map(|(_, t)| t);
    let scaled = |d: crate::spec::Dur| d.scaled(doc.time_scale).0;
    for step in &doc.steps {
        if warming && !matches!(step, Step::Load(_)) {
            t += inputs.warm_up;
            warm_at = t;
            warming = false;
        }
        match step {
            Step::Load(_) => warming = true,
            Step::ExpectQuiet(q) => t += scaled(q.for_),
            Step::Wait(w) => t += scaled(w.for_),
            Step::Chaos(c) => match c.action() {
                Ok(Chaos::TeamsFault(_, f)) => {
                    teams_blocked = Some(match f.for_ {
                        Some(d) => t + scaled(d),
                        None => Duration::MAX,
                    })
                }
                Ok(Chaos::TeamsReset(_)) => {
                    teams_blocked = teams_blocked.map(|b| b.min(t));
                }
                _ => fault = t,
            },
            Step::ExpectAlert(a) => {
                if let Some(tm) = timing(&a.name) {
                    t = t.max(fault + tm.for_);
                }
            }
            Step::ExpectTeams(e) => {
                let Some(tm) = timing(&e.alert) else {
                    continue;
                };
                let name = e.alert.as_str();
                match e.status {
                    TeamsStatus::Resolved => {
                        if let Some(at) = first_card.get(name) {
                            t = t.max(*at + tm.group_interval);
                        }
                    }
                    TeamsStatus::Lost => {
                        let at = (fault + tm.for_ + tm.group_wait).max(t);
                        lost_at.insert(name, at);
                        t = at;
                    }
                    TeamsStatus::Firing => {
                        let mut at = (fault + tm.for_ + tm.group_wait).max(t);
                        // A refused card goes again at the group's next flush.
                        if let Some(lost) = lost_at.get(name) {
                            at = at.max(*lost + tm.group_interval);
                        }
                        if let Some(b) = teams_blocked.filter(|b| *b != Duration::MAX) {
                            at = at.max(b);
                        }
                        first_card.insert(name, at);
                        t = at;
                    }
                }
            }
            Step::ExpectDashboards(_) => t = t.max(warm_at + inputs.panel_window),
            // One rate held at least, the SLO broken at the first.
            Step::Bench(b) => t += b.search().step.0,
            Step::ExpectResolved(_) | Step::ExpectCapacity(_) => {}
        }
    }
    t
}

/// The firing alerts (ALERTS series' labels) that no step of `doc` expects
/// and `allow_alerts` does not allow, as `Name{labels}`. A step's labels
/// must all be on the alert; a step with none (expect_teams) stands for
/// any alert of its name unless another step names labels for it.
pub fn unexpected<'a>(
    firing: impl Iterator<Item = &'a BTreeMap<String, String>>,
    doc: &ScenarioDoc,
) -> Vec<String> {
    let (expected, allowed) = doc.expected_alerts();
    let labelled: Vec<&str> = expected
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, _)| *n)
        .collect();
    let mut out: Vec<String> = firing
        .filter(|m| {
            let name = m.get("alertname").map(String::as_str).unwrap_or("");
            let ok = allowed
                .iter()
                .any(|(n, l)| *n == name && label_subset(l, m))
                || expected.iter().any(|(n, l)| {
                    *n == name
                        && if l.is_empty() {
                            !labelled.contains(n)
                        } else {
                            label_subset(l, m)
                        }
                });
            !ok
        })
        .map(|m| {
            let mut l = m.clone();
            l.remove("alertstate");
            l.remove("__name__");
            format!(
                "{}{}",
                l.get("alertname").cloned().unwrap_or_default(),
                fmt_labels(&l)
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every label of `want` is on `have` with the same value.
pub fn label_subset(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// `{k="v",...}` without the alert's name, for messages.
pub fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", v.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            scrape_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(10),
            eval_interval: Duration::from_secs(15),
            lookback: Duration::ZERO,
            for_: Duration::from_secs(60),
            keep_firing_for: Duration::ZERO,
            receiver: Some("teams".into()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            slack: Duration::from_secs(15),
            inflight_tail: Duration::ZERO,
            onset: Duration::ZERO,
        }
    }

    #[test]
    fn bounds_follow_design() {
        let t = timing();
        // D = 25s; firing ≤ 25 + 60 + 30 + 15 = 130s; Teams ≤ 160s.
        assert_eq!(t.fire_bound(), Duration::from_secs(130));
        assert_eq!(t.teams_bound(), Duration::from_secs(160));
        assert_eq!(
            t.teams_resolved_bound(),
            Duration::from_secs(25 + 15 + 15 + 300)
        );
    }

    fn doc(yaml: &str) -> ScenarioDoc {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn alert(name: &str, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("alertname".into(), name.into());
        m.insert("alertstate".into(), "firing".into());
        m.insert("__name__".into(), "ALERTS".into());
        m
    }

    #[test]
    fn the_guard_matches_names_and_labels() {
        let d = doc(
            "name: x\nstack: s\nsteps:\n  - expect_alert: {name: InstanceDown, labels: {job: vllm}}\n  - expect_teams: {alert: InstanceDown, status: firing}\n  - expect_teams: {alert: AppDown, status: firing}\nallow_alerts:\n  - {alert: Watchdog, reason: always on}\n  - {alert: HostDown, labels: {job: a}, reason: known}\n",
        );
        let firing = [
            alert("InstanceDown", &[("job", "vllm")]),
            alert("InstanceDown", &[("job", "cadvisor")]),
            alert("AppDown", &[("job", "vllm")]),
            alert("Watchdog", &[]),
            alert("HighLatency", &[("route", "/")]),
            alert("HostDown", &[("job", "a")]),
            alert("HostDown", &[("job", "b")]),
        ];
        assert_eq!(
            unexpected(firing.iter(), &d),
            vec![
                r#"HighLatency{route="/"}"#.to_string(),
                r#"HostDown{job="b"}"#.to_string(),
                r#"InstanceDown{job="cadvisor"}"#.to_string(),
            ]
        );
    }

    fn scenario_bound(name: &str, inputs: BoundInputs) -> Duration {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(format!("{name}.yaml"));
        let sc = crate::spec::scenario::Scenario::load(&path, None).unwrap();
        let eff = crate::render::render(&sc.stack, sc.doc.time_scale).unwrap();
        lower_bound(&sc.doc, &eff, inputs)
    }

    #[test]
    fn lower_bounds_count_what_no_machine_can_shorten() {
        let none = BoundInputs::default();
        // backend-down ×0.1: quiet 6 s, for 6 s, group_wait 1 s (critical
        // route), resolved card group_interval 30 s after the firing one.
        assert_eq!(
            scenario_bound("backend-down", none),
            Duration::from_secs(43)
        );
        // The warm-up of the load comes before the quiet period.
        let warm = BoundInputs {
            warm_up: Duration::from_millis(1500),
            ..none
        };
        assert_eq!(
            scenario_bound("backend-down", warm),
            Duration::from_millis(44_500)
        );
        // 429: the lost card is sent again a group_interval after the first try.
        assert_eq!(
            scenario_bound("teams-429-lost", none),
            Duration::from_secs(3 + 6 + 1 + 30)
        );
        // 5xx for 18 s: no card can be posted before the fault ends.
        assert_eq!(
            scenario_bound("teams-5xx-late", none),
            Duration::from_secs(3 + 18)
        );
    }
}
