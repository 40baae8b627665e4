//! The expectations a drill checks, each against a window computed from
//! the stack's own configuration (DESIGN §6): quiet at baseline, an alert
//! firing, resolving, its card reaching Teams (or lost), every dashboard
//! panel with data. A judgement that failed on time alone while the machine
//! is shown to have stalled is INCONCLUSIVE, not FAILED ([`Drill::late`]).

use super::{by, is_foreign, poll_until, Drill};
use crate::error::Result;
use crate::observe::{self, AlertState};
use crate::panels::Verdict;
use crate::report::Outcome;
use crate::spec::scenario::{ExpectAlert, ExpectDashboards};
use crate::spec::Dur;
use crate::util::secs;
use crate::verify::{between, fmt_labels, label_subset, Breakdown, Timing};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

fn fmt_selector(l: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!("{{{}}}", v.join(","))
}

/// What polling for a firing alert saw.
#[derive(Default)]
struct Watch {
    /// The alert, firing with the expected labels.
    firing: Option<observe::PromAlert>,
    /// Since when it was pending, if it was.
    pending_since: Option<DateTime<Utc>>,
    /// The labels it had instead, if it fired with others.
    other_labels: Option<BTreeMap<String, String>>,
}

/// What is wrong with a firing alert's timing (active before the fault,
/// fired before its `for`, or late), and whether lateness is all of it.
fn firing_problems(
    bd: &Breakdown,
    timing: &Timing,
    (began, fault): (DateTime<Utc>, DateTime<Utc>),
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    if let Some(p) = bd.pending_at {
        if p + timing.eval_interval < began {
            problems.push(format!(
                "it was already active at {}, before the fault at {} (the baseline is not quiet)",
                hms(p),
                hms(began)
            ));
        }
        if let Some(held) = between(Some(p), bd.firing_at) {
            if held + Duration::from_millis(1) < timing.for_ {
                problems.push(format!(
                    "it fired after {} pending, before its `for` of {} (premature)",
                    secs(held),
                    secs(timing.for_)
                ));
            }
        }
    }
    let took = between(Some(fault), bd.firing_at).unwrap_or_default();
    let late = took > timing.fire_bound();
    if late {
        problems.push(format!(
            "it fired {} after the fault; the window was {} ({})",
            secs(took),
            secs(timing.fire_bound()),
            timing.explain_fire()
        ));
    }
    let late_only = late && problems.len() == 1;
    (problems, late_only)
}

impl Drill<'_> {
    /// A judgement that failed because something came too late: FAILED,
    /// unless the machine demonstrably stalled since `from` (then the stack
    /// was not given its chance, and the drill is INCONCLUSIVE).
    pub(super) async fn late(&self, from: DateTime<Utc>, msg: String) -> Outcome {
        match self.stall_evidence(from).await {
            Some(ev) => Outcome::inconclusive(format!("{msg}; not judged: {ev}")),
            None => Outcome::fail(msg),
        }
    }

    /// A stack whose computed window exceeds what the scenario accepts fails
    /// at once: no waiting can make it pass.
    pub(super) fn too_slow(
        &self,
        what: &str,
        bound: Duration,
        explain: &str,
        within: Option<Dur>,
    ) -> Option<Outcome> {
        let limit = self.scaled(within?);
        (bound > limit).then(|| {
            Outcome::fail(format!(
                "the stack as configured allows {what} up to {} ({explain}); the scenario requires within {}",
                secs(bound),
                secs(limit)
            ))
        })
    }

    pub(super) async fn expect_quiet(&self, d: Duration) -> Result<Outcome> {
        let from = Utc::now();
        let end = Instant::now() + d;
        let _bar = self.bar("expecting quiet".into(), d);
        let mut pending = std::collections::BTreeSet::new();
        while Instant::now() < end {
            for a in self.prom.alerts().await? {
                if is_foreign(self.foreign, &a.labels) {
                    continue;
                }
                if a.state == AlertState::Firing {
                    let msg = format!(
                        "expected no alert firing; {}{} is firing",
                        a.name(),
                        fmt_labels(&a.labels)
                    );
                    return Ok(self.late(from, msg).await);
                }
                pending.insert(a.name().to_string());
            }
            tokio::time::sleep(self.poll).await;
        }
        let note = if pending.is_empty() {
            String::new()
        } else {
            format!(
                " (pending, not firing: {})",
                pending.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        Ok(Outcome::pass(format!(
            "nothing fired for {}{note}",
            secs(d)
        )))
    }

    pub(super) async fn expect_alert(&mut self, a: &ExpectAlert) -> Result<Outcome> {
        let (rule, timing) = self.rule_timing(&a.name, &a.labels)?;
        if let Some(o) = self.too_slow(
            &format!("{} to fire after the fault", a.name),
            timing.fire_bound(),
            &timing.explain_fire(),
            a.within,
        ) {
            return Ok(o);
        }
        let fault = self.fault_time();
        let mut bd = Breakdown {
            alert: a.name.clone(),
            labels: a.labels.clone(),
            fault_at: Some(fault),
            timing: Some(timing.clone()),
            ..Default::default()
        };
        let watch = self.watch_firing(a, fault + timing.fire_bound()).await?;
        let Some(alert) = watch.firing.clone() else {
            self.breakdowns.insert(a.name.clone(), bd);
            return self.not_fired(a, &rule.expr, &timing, fault, watch).await;
        };
        self.measure_firing(a, &rule.expr, &timing, &alert, &mut bd)
            .await?;
        let (problems, late_only) = firing_problems(&bd, &timing, (self.fault_began(), fault));
        let took = between(Some(fault), bd.firing_at).unwrap_or_default();
        self.breakdowns.insert(a.name.clone(), bd);
        Ok(match (problems.is_empty(), late_only) {
            (true, _) => Outcome::pass(format!(
                "{} firing {} after the fault (window {})",
                a.name,
                secs(took),
                secs(timing.fire_bound())
            )),
            (false, true) => self.late(fault, problems.join("; ")).await,
            (false, false) => Outcome::fail(problems.join("; ")),
        })
    }

    /// Polls Prometheus' alerts until `a` fires with its labels or the
    /// deadline passes, noting a pending state and other label sets seen.
    async fn watch_firing(&self, a: &ExpectAlert, deadline: DateTime<Utc>) -> Result<Watch> {
        let _bar = self.bar(
            format!("waiting for {} to fire", a.name),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let mut w = Watch::default();
        poll_until(by(deadline), self.poll, async || {
            for al in self
                .prom
                .alerts()
                .await?
                .iter()
                .filter(|x| x.name() == a.name)
            {
                if !label_subset(&a.labels, &al.labels) {
                    w.other_labels = Some(al.labels.clone());
                } else if al.state == AlertState::Firing {
                    w.firing = Some(al.clone());
                } else {
                    w.pending_since = al.active_at;
                }
            }
            Ok(((), w.firing.is_some()))
        })
        .await?;
        Ok(w)
    }

    /// Why `a` did not fire in its window: still pending, firing with other
    /// labels, an expression that returns nothing, or one that is true
    /// with no alert.
    async fn not_fired(
        &self,
        a: &ExpectAlert,
        expr: &str,
        timing: &Timing,
        fault: DateTime<Utc>,
        watch: Watch,
    ) -> Result<Outcome> {
        let mut msg = format!(
            "expected {}{} firing within {} of the fault ({}); ",
            a.name,
            fmt_labels(&a.labels),
            secs(timing.fire_bound()),
            timing.explain_fire()
        );
        if let Some(since) = watch.pending_since {
            msg.push_str(&format!(
                "it was pending since {} but did not fire in time (for {})",
                hms(since),
                secs(timing.for_)
            ));
            return Ok(self.late(fault, msg).await);
        }
        if let Some(other) = watch.other_labels {
            msg.push_str(&format!("seen instead with labels {}", fmt_labels(&other)));
            return Ok(Outcome::fail(msg));
        }
        let now = self.prom.query(expr, Utc::now()).await.unwrap_or_default();
        if now.is_empty() {
            msg.push_str(&format!("seen: no pending or firing alert, and the rule expression `{expr}` returns no series (wrong job, label or metric name?)"));
            return Ok(Outcome::fail(msg));
        }
        let ls: Vec<String> = now.iter().take(3).map(|s| fmt_labels(&s.metric)).collect();
        msg.push_str(&format!(
            "seen: no such alert; the expression returns {} series ({})",
            now.len(),
            ls.join(", ")
        ));
        Ok(self.late(fault, msg).await)
    }

    /// The firing alert's times: pending from its `activeAt`, firing from
    /// the ALERTS series' exact evaluation timestamps, expression true from
    /// a range query.
    async fn measure_firing(
        &self,
        a: &ExpectAlert,
        expr: &str,
        timing: &Timing,
        alert: &observe::PromAlert,
        bd: &mut Breakdown,
    ) -> Result<()> {
        let fault = bd.fault_at.unwrap_or_else(Utc::now);
        bd.pending_at = alert.active_at;
        let now = Utc::now();
        let window = (now - fault).to_std().unwrap_or_default() + 2 * timing.eval_interval;
        let mut sel: BTreeMap<String, String> = a.labels.clone();
        sel.insert("alertname".into(), a.name.clone());
        sel.insert("alertstate".into(), "firing".into());
        let selector = format!("ALERTS{}", fmt_selector(&sel));
        bd.firing_at = self
            .prom
            .raw_samples(&selector, window, now)
            .await?
            .iter()
            .flat_map(|s| s.values.iter().map(|(t, _)| *t))
            .reduce(f64::min)
            .map(observe::from_unix)
            .or(Some(now));
        bd.expr_true_at = self
            .expr_true(expr, &a.labels, fault, bd.pending_at.unwrap_or(now), timing)
            .await;
        Ok(())
    }

    /// When the rule expression first returned a matching series, at scrape resolution.
    async fn expr_true(
        &self,
        expr: &str,
        labels: &BTreeMap<String, String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        t: &Timing,
    ) -> Option<DateTime<Utc>> {
        let step = (t.scrape_interval / 4).max(Duration::from_millis(100));
        // Range points fall on from + n·step: one step past `to` so the
        // evaluation that saw it true (at `to`) is always covered; the answer
        // is capped at `to`, since it cannot have turned true after that.
        let end = to + step;
        let series = self.prom.query_range(expr, from, end, step).await.ok()?;
        series
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.metric.get(k).is_none_or(|x| x == v))
            })
            .filter_map(|s| s.values.first().map(|(ts, _)| *ts))
            .reduce(f64::min)
            .map(observe::from_unix)
            .map(|first| first.min(to))
    }

    pub(super) async fn expect_resolved(&mut self, a: &ExpectAlert) -> Result<Outcome> {
        let (_, mut timing) = self.rule_timing(&a.name, &a.labels)?;
        // Requests sent before the undo still take the injected latency,
        // and are observed when they end: the data turns that much later.
        timing.inflight_tail = self.tail;
        let bound = timing.resolve_bound();
        let explain = if self.tail.is_zero() {
            "data turn + eval + keep_firing_for + slack".to_string()
        } else {
            format!(
                "data turn + eval + keep_firing_for + slack + in-flight or queued work {}",
                secs(self.tail)
            )
        };
        if let Some(o) = self.too_slow(
            &format!("{} to resolve after the undo", a.name),
            bound,
            &explain,
            a.within,
        ) {
            return Ok(o);
        }
        let undo = self.fault_time();
        let deadline = undo + bound;
        let _bar = self.bar(
            format!("waiting for {} to resolve", a.name),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let gone = poll_until(by(deadline), self.poll, async || {
            let still = self
                .prom
                .alerts()
                .await?
                .into_iter()
                .any(|x| x.name() == a.name && label_subset(&a.labels, &x.labels));
            Ok((Utc::now(), !still))
        })
        .await?;
        let gone = gone.done.then_some(gone.state);
        let bd = self
            .breakdowns
            .entry(a.name.clone())
            .or_insert_with(|| Breakdown {
                alert: a.name.clone(),
                labels: a.labels.clone(),
                timing: Some(timing.clone()),
                ..Default::default()
            });
        bd.undo_at = Some(undo);
        bd.resolved_at = gone;
        if let Some(t) = bd.timing.as_mut() {
            t.inflight_tail = self.tail;
        }
        Ok(match gone {
            Some(t) => Outcome::pass(format!(
                "{} resolved {} after the undo (window {})",
                a.name,
                secs(between(Some(undo), Some(t)).unwrap_or_default()),
                secs(bound)
            )),
            None => {
                let msg = format!(
                    "expected {}{} resolved within {} of the undo; it is still active",
                    a.name,
                    fmt_labels(&a.labels),
                    secs(bound)
                );
                self.late(undo, msg).await
            }
        })
    }

    /// Every panel target over the drill so far (DESIGN §7): data, or
    /// excused by the scenario; an excuse for a panel that has data is stale
    /// and fails too, so the list stays true.
    pub(super) async fn expect_dashboards(&mut self, d: &ExpectDashboards) -> Result<Outcome> {
        let absent = self.running.skipped();
        let scrape = self.eff.prometheus.config.scrape_interval();
        let checks = crate::panels::check(
            &self.scenario.stack,
            &self.prom,
            (self.started, Utc::now()),
            scrape,
            self.scenario.doc.time_scale,
            &absent,
        )
        .await?;
        let excused = |title: &str| d.expect_empty.iter().any(|e| e.name == title);
        let (mut data, mut skipped, mut empty_ok) = (0, 0, 0);
        let mut bad = Vec::new();
        for c in &checks {
            match (&c.verdict, excused(&c.panel)) {
                (Verdict::Data { .. }, _) => data += 1,
                (Verdict::Skipped { .. }, _) => skipped += 1,
                (Verdict::NoData, true) => empty_ok += 1,
                (Verdict::NoData | Verdict::Error { .. }, _) => bad.push(c.line()),
            }
        }
        for e in &d.expect_empty {
            let mine: Vec<_> = checks.iter().filter(|c| c.panel == e.name).collect();
            if !mine.is_empty()
                && mine
                    .iter()
                    .all(|c| matches!(c.verdict, Verdict::Data { .. }))
            {
                bad.push(format!(
                    "`{}` is listed in expect_empty ({}) but has data: take it off the list",
                    e.name, e.reason
                ));
            }
        }
        self.panels.extend(checks.iter().cloned());
        let summary = format!(
            "{} panel target(s): {data} with data, {empty_ok} empty as expected, {skipped} skipped",
            checks.len()
        );
        Ok(if bad.is_empty() {
            Outcome::pass(summary)
        } else {
            Outcome::fail(format!(
                "{summary}; {} failed: {}",
                bad.len(),
                bad.join("; ")
            ))
        })
    }
}
