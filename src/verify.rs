//! The timing model of DESIGN §6: every bound computed from the configs the
//! stack actually loaded (scrape and evaluation intervals, the rule's `for`
//! and range windows, the matching route's `group_wait`/`group_interval`),
//! and the measured breakdown fault → expression true → pending → firing →
//! Alertmanager → Teams that a drill checks against it.

use crate::spec::prometheus::{job_targets, AlertRule};
use crate::stack::render::Effective;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Fixed allowance for container and HTTP latency, on top of one evaluation interval.
pub const BASE_SLACK: Duration = Duration::from_secs(2);

/// The intervals that bound one alert's journey.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub eval_interval: Duration,
    pub lookback: Duration,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub receiver: Option<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub slack: Duration,
    /// Latency the undo took away: requests already in flight still take
    /// it, and are observed when they end.
    pub inflight_tail: Duration,
}

impl Timing {
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
        }
    }

    /// Longest time for the expression to turn true after the fault.
    pub fn detect(&self) -> Duration {
        self.scrape_interval + self.scrape_timeout + self.lookback
    }
    /// fault → firing: D + for + 2·evaluation + slack.
    pub fn fire_bound(&self) -> Duration {
        self.detect() + self.for_ + 2 * self.eval_interval + self.slack
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

    pub fn explain_fire(&self) -> String {
        format!(
            "D {} (scrape {} + timeout {} + window {}) + for {} + 2×eval {} + slack {}",
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
    pub alert: String,
    pub labels: BTreeMap<String, String>,
    pub fault_at: Option<DateTime<Utc>>,
    pub expr_true_at: Option<DateTime<Utc>>,
    pub pending_at: Option<DateTime<Utc>>,
    pub firing_at: Option<DateTime<Utc>>,
    pub alertmanager_at: Option<DateTime<Utc>>,
    pub teams_at: Option<DateTime<Utc>>,
    pub undo_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub teams_resolved_at: Option<DateTime<Utc>>,
    pub timing: Option<Timing>,
}

pub fn between(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<Duration> {
    let (a, b) = (a?, b?);
    Some((b - a).to_std().unwrap_or(Duration::ZERO))
}

impl Breakdown {
    /// The breakdown as the terminal shows it.
    pub fn render(&self, time_scale: f64) -> String {
        let mut out = String::new();
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        out.push_str(&format!("  {}{{{}}}", self.alert, labels.join(",")));
        if (time_scale - 1.0).abs() > f64::EPSILON {
            out.push_str(&format!(
                "   (time_scale {time_scale}: stack durations ×{time_scale})"
            ));
        }
        out.push('\n');
        let row = |out: &mut String, what: &str, d: Option<Duration>, note: String| {
            let v = d.map(s).unwrap_or_else(|| "—".into());
            out.push_str(&format!("    {what:<26}{v:>9}  {note}\n"));
        };
        let t = self.timing.as_ref();
        row(
            &mut out,
            "fault → expr true",
            between(self.fault_at, self.expr_true_at),
            t.map(|t| format!("≤ {} (scrape + timeout + window)", s(t.detect())))
                .unwrap_or_default(),
        );
        row(
            &mut out,
            "expr true → pending",
            between(self.expr_true_at, self.pending_at),
            t.map(|t| format!("≤ eval {}", s(t.eval_interval)))
                .unwrap_or_default(),
        );
        row(
            &mut out,
            "pending → firing",
            between(self.pending_at, self.firing_at),
            t.map(|t| format!("for {}", s(t.for_))).unwrap_or_default(),
        );
        row(
            &mut out,
            "firing → Alertmanager",
            between(self.firing_at, self.alertmanager_at),
            String::new(),
        );
        row(
            &mut out,
            "Alertmanager → Teams",
            between(self.alertmanager_at, self.teams_at),
            t.map(|t| format!("group_wait {}", s(t.group_wait)))
                .unwrap_or_default(),
        );
        row(
            &mut out,
            "fault → Teams (total)",
            between(self.fault_at, self.teams_at),
            t.map(|t| {
                format!(
                    "window {} = {} + group_wait {}",
                    s(t.teams_bound()),
                    t.explain_fire(),
                    s(t.group_wait)
                )
            })
            .unwrap_or_default(),
        );
        if self.undo_at.is_some() {
            row(
                &mut out,
                "undo → resolved",
                between(self.undo_at, self.resolved_at),
                t.map(|t| format!("≤ {}", s(t.resolve_bound())))
                    .unwrap_or_default(),
            );
            row(
                &mut out,
                "undo → Teams resolved",
                between(self.undo_at, self.teams_resolved_at),
                t.map(|t| {
                    format!(
                        "≤ {} (+ group_interval {})",
                        s(t.teams_resolved_bound()),
                        s(t.group_interval)
                    )
                })
                .unwrap_or_default(),
            );
        }
        out
    }
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
}
