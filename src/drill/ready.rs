//! Preconditions (DESIGN §13): what a drill establishes before it judges,
//! each waited for within a bound computed from the stack, instead of a
//! fixed sleep that a busy machine outruns.
//!
//! - **warm**: every load has had answers back, and Prometheus holds at
//!   least two samples of every series family the load drives on its route
//!   (so `rate()` and `increase()` over them answer);
//! - **calm**: the alerts the next fault is meant to provoke are neither
//!   pending nor firing;
//! - **covered**: load has run for the widest range window of any panel.
//!
//! And the evidence that the machine, not the stack, missed a window: rule
//! evaluations Prometheus skipped, scrapes that came late, loads that could
//! not hold their rate.

use super::{poll_until, Drill};
use crate::observe::AlertState;
use crate::report::Outcome;
use crate::spec::fixture::{MetricType, On};
use crate::spec::scenario::{Chaos, ScenarioDoc, Step, TeamsStatus};
use crate::util::secs;
use crate::verify::{fmt_labels, label_subset, Timing, BASE_SLACK};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the loads are asked whether they were answered: a question
/// to this process, cheap, so "answering after" is precise.
const ANSWER_POLL: Duration = Duration::from_millis(20);

/// The alerts the chaos step `i` is meant to provoke: those expected to
/// fire (or to send a card) after it, until the next change of the stack.
/// Empty for a Teams fault (not a change of the monitored system) and for
/// an undo followed only by resolutions. An alert named without labels
/// takes those another step of the scenario gives it.
pub(super) fn provoked_by(doc: &ScenarioDoc, i: usize) -> Vec<(String, BTreeMap<String, String>)> {
    let is_change = |s: &Step| match s {
        Step::Chaos(c) => !matches!(
            c.action(),
            Ok(Chaos::TeamsFault(..) | Chaos::TeamsReset(_)) | Err(_)
        ),
        _ => false,
    };
    if !doc.steps.get(i).is_some_and(is_change) {
        return vec![];
    }
    let labels_of = |name: &str| {
        doc.steps
            .iter()
            .find_map(|s| match s {
                Step::ExpectAlert(a) if a.name == name && !a.labels.is_empty() => {
                    Some(a.labels.clone())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for s in doc.steps.iter().skip(i + 1).take_while(|s| !is_change(s)) {
        let (name, labels) = match s {
            Step::ExpectAlert(a) => (a.name.clone(), a.labels.clone()),
            Step::ExpectTeams(t) if t.status != TeamsStatus::Resolved => {
                (t.alert.clone(), labels_of(&t.alert))
            }
            _ => continue,
        };
        if !out.iter().any(|(n, l)| *n == name && *l == labels) {
            out.push((name, labels));
        }
    }
    out
}

/// A Prometheus selector for one series family a load drives, and its
/// name for messages.
struct Driven {
    selector: String,
    family: String,
}

impl Drill<'_> {
    /// The series families each load not yet warm drives, per load.
    fn driven(&self, load: usize) -> Vec<Driven> {
        let a = &self.loads[load];
        let Some(profile) = self.scenario.stack.fixtures.get(&a.target) else {
            return vec![];
        };
        let jobs = crate::spec::prometheus::jobs_scraping(&self.eff.prometheus.config, &a.target);
        let ok = a.load.snapshot().status_codes.keys().any(|c| *c < 400);
        // Families every answer moves; else those its outcome moves.
        let moves = |on: On| match on {
            On::All => true,
            On::Success => ok,
            On::Error => !ok,
        };
        let families: Vec<_> = profile
            .families
            .iter()
            .filter(|f| f.source.per_request())
            .filter(|f| f.routes.is_empty() || f.routes.contains(&a.route.path))
            .collect();
        let any: Vec<_> = families.iter().filter(|f| f.on == On::All).collect();
        let chosen: Vec<_> = if any.is_empty() {
            families.iter().filter(|f| moves(f.on)).collect()
        } else {
            any
        };
        let mut out = Vec::new();
        for f in chosen {
            let name = match f.type_ {
                MetricType::Histogram => format!("{}_count", f.name),
                _ => f.name.clone(),
            };
            for job in &jobs {
                let mut labels = BTreeMap::from([("job".to_string(), job.clone())]);
                for l in &f.labels {
                    if f.fill_of(l) == Some(crate::spec::fixture::Fill::Route) {
                        labels.insert(l.clone(), a.route.path.clone());
                    }
                }
                let matchers: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                    .collect();
                out.push(Driven {
                    selector: format!("{name}{{{}}}", matchers.join(",")),
                    family: format!("{}{}", f.name, fmt_labels(&labels)),
                });
            }
        }
        out
    }

    /// Waits until every new load has answered and Prometheus holds two
    /// samples or more of every family it drives.
    pub(super) async fn warm(&mut self) -> Outcome {
        let started = Instant::now();
        let fresh: Vec<usize> = (0..self.loads.len())
            .filter(|&i| !self.loads[i].warm)
            .collect();
        if let Err(o) = self.wait_answers(&fresh).await {
            return o;
        }
        let answered = started.elapsed();
        let families = match self.wait_ingested(&fresh).await {
            Ok(n) => n,
            Err(o) => return o,
        };
        for &i in &fresh {
            self.loads[i].warm = true;
        }
        self.warm_at = Some(Utc::now());
        if families == 0 {
            return Outcome::pass(format!(
                "{} load(s) answering after {}; no series family they drive is scraped (the profile has none for these routes, or no job scrapes them): only the answers were waited for",
                fresh.len(),
                secs(answered)
            ));
        }
        Outcome::pass(format!(
            "{} load(s) answering after {}; Prometheus holds two samples or more of the {families} series famil{} they drive after {}",
            fresh.len(),
            secs(answered),
            if families == 1 { "y" } else { "ies" },
            secs(started.elapsed())
        ))
    }

    /// Waits until each of the `fresh` loads has had an answer; a request
    /// takes at most its route's slowest latency.
    async fn wait_answers(&self, fresh: &[usize]) -> Result<(), Outcome> {
        let eval = self.eff.prometheus.config.evaluation_interval();
        let slowest = fresh
            .iter()
            .map(|&i| self.loads[i].route.latency.p99())
            .max()
            .unwrap_or_default();
        let bound = 2 * slowest + 2 * BASE_SLACK + eval;
        let _bar = self.bar("waiting for the loads to answer".into(), bound);
        let silent = poll_until(Instant::now() + bound, ANSWER_POLL, async || {
            let silent: Vec<usize> = fresh
                .iter()
                .copied()
                .filter(|&i| self.loads[i].load.first_answer().is_none())
                .collect();
            let done = silent.is_empty();
            Ok((silent, done))
        })
        .await
        .map_err(|e| Outcome::inconclusive(format!("{e}")))?;
        if silent.done {
            return Ok(());
        }
        let what: Vec<String> = silent
            .state
            .iter()
            .map(|&i| {
                let a = &self.loads[i];
                let s = a.load.snapshot();
                format!(
                    "{}{} ({} sent, failures {:?})",
                    a.target, a.route.path, s.requests, s.failures
                )
            })
            .collect();
        Err(Outcome::inconclusive(format!(
            "no answer within {} from: {}",
            secs(bound),
            what.join("; ")
        )))
    }

    /// Waits until Prometheus holds two samples or more of every family the
    /// `fresh` loads drive (scraped twice after the answers); how many.
    async fn wait_ingested(&self, fresh: &[usize]) -> Result<usize, Outcome> {
        let cfg = &self.eff.prometheus.config;
        let (scrape, timeout) = cfg.slowest_scrape();
        let mut pending: Vec<Driven> = fresh.iter().flat_map(|&i| self.driven(i)).collect();
        let families = pending.len();
        let bound = 2 * scrape + timeout + cfg.evaluation_interval() + BASE_SLACK;
        let since = fresh
            .iter()
            .map(|&i| self.loads[i].load.started())
            .min()
            .unwrap_or_else(Instant::now);
        let _bar = self.bar("waiting for the loads' series".into(), bound);
        let polled = poll_until(Instant::now() + bound, self.poll, async || {
            let window = since.elapsed() + scrape;
            let mut still = Vec::new();
            for d in std::mem::take(&mut pending) {
                if self.samples(&d.selector, window).await < 2.0 {
                    still.push(d);
                }
            }
            pending = still;
            Ok(((), pending.is_empty()))
        })
        .await
        .map_err(|e| Outcome::inconclusive(format!("{e}")))?;
        if polled.done {
            return Ok(families);
        }
        let names: Vec<&str> = pending.iter().map(|d| d.family.as_str()).collect();
        Err(Outcome::inconclusive(format!(
            "the loads answer, but after {} Prometheus holds fewer than two samples of: {} (scrape {}, timeout {})",
            secs(bound),
            names.join(", "),
            secs(scrape),
            secs(timeout)
        )))
    }

    /// The most samples any series of `selector` has over `window`.
    async fn samples(&self, selector: &str, window: Duration) -> f64 {
        let q = format!("max(count_over_time({selector}[{}ms]))", window.as_millis());
        self.prom
            .query(&q, Utc::now())
            .await
            .ok()
            .and_then(|s| s.first().and_then(|s| s.value.clone()))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// Waits until none of `alerts` is pending or firing (the baseline the
    /// next fault is judged against), within the time each takes to resolve.
    pub(super) async fn calm(&self, alerts: &[(String, BTreeMap<String, String>)]) -> Outcome {
        let started = Instant::now();
        let from = Utc::now();
        let no_labels = BTreeMap::new();
        let bound = alerts
            .iter()
            .filter_map(|(n, _)| Timing::of(self.eff, n, &no_labels))
            .map(|(_, t)| t.resolve_bound())
            .max()
            .unwrap_or(BASE_SLACK);
        let allowed = &self.scenario.doc.allow_alerts;
        let mut first_seen: Option<String> = None;
        let _bar = self.bar("waiting for a calm baseline".into(), bound);
        loop {
            let active: Vec<String> = match self.prom.alerts().await {
                Ok(all) => all
                    .into_iter()
                    .filter(|a| a.state != AlertState::Inactive)
                    .filter(|a| {
                        alerts
                            .iter()
                            .any(|(n, l)| a.name() == n && label_subset(l, &a.labels))
                    })
                    .filter(|a| {
                        !allowed
                            .iter()
                            .any(|x| x.name == a.name() && label_subset(&x.labels, &a.labels))
                    })
                    .map(|a| {
                        format!(
                            "{}{} {:?} since {} (value {})",
                            a.name(),
                            fmt_labels(&a.labels),
                            a.state,
                            a.active_at
                                .map(|t| t.format("%H:%M:%S%.3f").to_string())
                                .unwrap_or_default(),
                            a.value.as_deref().unwrap_or("?")
                        )
                    })
                    .collect(),
                Err(e) => vec![format!("(Prometheus did not answer: {e:#})")],
            };
            if active.is_empty() {
                let names: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
                return Outcome::pass(match first_seen {
                    None => format!("{} inactive before the fault", names.join(", ")),
                    Some(was) => format!(
                        "{} inactive after {} (was: {was})",
                        names.join(", "),
                        secs(started.elapsed())
                    ),
                });
            }
            first_seen.get_or_insert_with(|| active.join("; "));
            if started.elapsed() > bound {
                let mut msg = format!(
                    "the baseline did not calm within {} (the time the alert takes to resolve): {}",
                    secs(bound),
                    active.join("; ")
                );
                if let Some(ev) = self.stall_evidence(from).await {
                    msg.push_str(&format!("; {ev}"));
                }
                return Outcome::inconclusive(msg);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Waits until load has run for the widest range window of any panel,
    /// counted from when the loads were warm.
    pub(super) async fn covered(&self) -> Outcome {
        let scrape = self.eff.prometheus.config.scrape_interval();
        let widest = match crate::panels::widest_window(
            &self.scenario.stack,
            scrape,
            self.scenario.doc.time_scale,
        ) {
            Ok(w) => w,
            Err(e) => return Outcome::fail(format!("reading the dashboards: {e:#}")),
        };
        let Some((panel, window)) = widest else {
            return Outcome::pass("no panel reads a range window");
        };
        let since = self.warm_at.unwrap_or(self.started);
        let until = since + window;
        let wait = (until - Utc::now()).to_std().unwrap_or_default();
        let _bar = self.bar("waiting for the panels' windows".into(), wait);
        tokio::time::sleep(wait).await;
        Outcome::pass(format!(
            "load has run for the widest panel window ({} on `{panel}`) since the loads were warm; waited {}",
            secs(window),
            secs(wait)
        ))
    }

    /// Why the machine, not the stack, may have missed a window since
    /// `from`, if it may: rule evaluations Prometheus skipped, a scrape gap
    /// of more than twice a job's interval, or firedrill's own load thread
    /// sending a request well past its time with a slot free (its thread
    /// did not run). A load held back by a slow service is no evidence: a
    /// slow service may be the very fault.
    pub(super) async fn stall_evidence(&self, from: DateTime<Utc>) -> Option<String> {
        let mut ev = Vec::new();
        // The count noted last before `from` (at the fault, or the start).
        let before = self
            .missed
            .iter()
            .rev()
            .find(|(t, _)| *t <= from)
            .or(self.missed.first())
            .map(|(_, n)| *n);
        if let (Some(before), Ok(now)) = (before, self.prom.rule_iterations_missed().await) {
            if now > before {
                ev.push(format!(
                    "Prometheus skipped {} rule evaluation(s) (prometheus_rule_group_iterations_missed_total)",
                    now - before
                ));
            }
        }
        let cfg = &self.eff.prometheus.config;
        let to = Utc::now();
        let ago = (to - from).to_std().unwrap_or_default();
        let window = ago + cfg.slowest_scrape().0;
        if let Ok(series) = self.prom.raw_samples("up", window, to).await {
            for s in series {
                let job = s.metric.get("job").cloned().unwrap_or_default();
                let (interval, _) = cfg.job_timing(&job);
                let worst = s
                    .values
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0, w[0].0))
                    .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
                if worst.0 > 2.0 * interval.as_secs_f64() {
                    ev.push(format!(
                        "Prometheus scraped job {job} {:.2}s apart at {} (interval {})",
                        worst.0,
                        crate::observe::from_unix(worst.1).format("%H:%M:%S%.3f"),
                        secs(interval)
                    ));
                }
            }
        }
        let since = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        for a in &self.loads {
            if let Some(lag) = a.load.stalled_since(since) {
                ev.push(format!(
                    "firedrill's own load thread sent a request to {}{} {} past its time with a slot free",
                    a.target,
                    a.route.path,
                    secs(lag)
                ));
            }
        }
        (!ev.is_empty()).then(|| format!("the machine stalled: {}", ev.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(steps: &str) -> ScenarioDoc {
        serde_yaml_ng::from_str(&format!("name: x\nstack: s\nsteps:\n{steps}")).unwrap()
    }

    #[test]
    fn a_fault_provokes_the_alerts_expected_before_the_next_change() {
        let d = doc(
            "  - chaos: {teams: teams, fault: {status: 503}}\n  - chaos: {stop: backend}\n  - expect_alert: {name: BackendDown, labels: {job: backend}}\n  - expect_teams: {alert: BackendDown, status: firing}\n  - expect_teams: {alert: Other, status: lost}\n  - chaos: {start: backend}\n  - expect_resolved: {name: BackendDown}\n  - expect_teams: {alert: BackendDown, status: resolved}\n",
        );
        let job = BTreeMap::from([("job".to_string(), "backend".to_string())]);
        // A Teams fault provokes nothing; the stop provokes what follows it.
        assert!(provoked_by(&d, 0).is_empty());
        assert_eq!(
            provoked_by(&d, 1),
            vec![
                ("BackendDown".to_string(), job.clone()),
                ("Other".to_string(), BTreeMap::new())
            ]
        );
        // The undo is followed by resolutions only.
        assert!(provoked_by(&d, 5).is_empty());
        // Not a chaos step.
        assert!(provoked_by(&d, 2).is_empty());
    }
}
