//! The expectations a drill checks, each against a window computed from
//! the stack's own configuration (DESIGN §6): quiet at baseline, an alert
//! firing, resolving, its card reaching Teams (or lost), every dashboard
//! panel with data. A judgement that failed on time alone while the machine
//! is shown to have stalled is INCONCLUSIVE, not FAILED ([`Drill::late`]).

use super::{is_foreign, Drill};
use crate::observe::{self, AlertState, CardFormat, CardStatus, Delivery};
use crate::panels::Verdict;
use crate::report::Outcome;
use crate::spec::scenario::{ExpectAlert, ExpectDashboards, ExpectTeams, TeamsStatus};
use crate::spec::Dur;
use crate::util::secs;
use crate::verify::{between, fmt_labels, label_subset, Breakdown, Timing};
use anyhow::{anyhow, Result};
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

impl Drill<'_> {
    /// A judgement that failed because something came too late: FAILED,
    /// unless the machine demonstrably stalled since `from` (then the stack
    /// was not given its chance, and the drill is INCONCLUSIVE).
    async fn late(&self, from: DateTime<Utc>, msg: String) -> Outcome {
        match self.stall_evidence(from).await {
            Some(ev) => Outcome::inconclusive(format!("{msg}; not judged: {ev}")),
            None => Outcome::fail(msg),
        }
    }

    /// A stack whose computed window exceeds what the scenario accepts fails
    /// at once: no waiting can make it pass.
    fn too_slow(
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
        let deadline = fault + timing.fire_bound();
        let mut bd = Breakdown {
            alert: a.name.clone(),
            labels: a.labels.clone(),
            fault_at: Some(fault),
            timing: Some(timing.clone()),
            ..Default::default()
        };
        let mut seen_other = None;
        let mut was_pending = None;
        let _bar = self.bar(
            format!("waiting for {} to fire", a.name),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let found = loop {
            let alerts = self.prom.alerts().await?;
            let mut hit = None;
            for al in alerts.iter().filter(|x| x.name() == a.name) {
                if label_subset(&a.labels, &al.labels) {
                    if al.state == AlertState::Firing {
                        hit = Some(al.clone());
                    } else {
                        was_pending = al.active_at;
                    }
                } else {
                    seen_other = Some(al.labels.clone());
                }
            }
            if hit.is_some() || Utc::now() > deadline {
                break hit;
            }
            tokio::time::sleep(self.poll).await;
        };
        let Some(alert) = found else {
            let mut msg = format!(
                "expected {}{} firing within {} of the fault ({}); ",
                a.name,
                fmt_labels(&a.labels),
                secs(timing.fire_bound()),
                timing.explain_fire()
            );
            self.breakdowns.insert(a.name.clone(), bd);
            if let Some(since) = was_pending {
                msg.push_str(&format!(
                    "it was pending since {} but did not fire in time (for {})",
                    hms(since),
                    secs(timing.for_)
                ));
                return Ok(self.late(fault, msg).await);
            }
            if let Some(other) = seen_other {
                msg.push_str(&format!("seen instead with labels {}", fmt_labels(&other)));
                return Ok(Outcome::fail(msg));
            }
            let now = self
                .prom
                .query(&rule.expr, Utc::now())
                .await
                .unwrap_or_default();
            if now.is_empty() {
                msg.push_str(&format!("seen: no pending or firing alert, and the rule expression `{}` returns no series (wrong job, label or metric name?)", rule.expr));
                return Ok(Outcome::fail(msg));
            }
            let ls: Vec<String> = now.iter().take(3).map(|s| fmt_labels(&s.metric)).collect();
            msg.push_str(&format!(
                "seen: no such alert; the expression returns {} series ({})",
                now.len(),
                ls.join(", ")
            ));
            return Ok(self.late(fault, msg).await);
        };
        bd.pending_at = alert.active_at;
        // Exact evaluation timestamps from the ALERTS series.
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
            .expr_true(
                &rule.expr,
                &a.labels,
                fault,
                bd.pending_at.unwrap_or(now),
                &timing,
            )
            .await;
        let mut problems = Vec::new();
        if let Some(p) = bd.pending_at {
            if p + timing.eval_interval < fault {
                problems.push(format!(
                    "it was already active at {}, before the fault at {} (the baseline is not quiet)",
                    hms(p),
                    hms(fault)
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
        self.breakdowns.insert(a.name.clone(), bd);
        Ok(match (problems.is_empty(), late && problems.len() == 1) {
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
                "data turn + eval + keep_firing_for + slack + in-flight latency {}",
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
        let gone = loop {
            let still = self
                .prom
                .alerts()
                .await?
                .into_iter()
                .any(|x| x.name() == a.name && label_subset(&a.labels, &x.labels));
            if !still {
                break Some(Utc::now());
            }
            if Utc::now() > deadline {
                break None;
            }
            tokio::time::sleep(self.poll).await;
        };
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

    pub(super) async fn expect_teams(&mut self, t: &ExpectTeams) -> Result<Outcome> {
        let alert = t.alert.as_str();
        let teams = self
            .teams
            .clone()
            .ok_or_else(|| anyhow!("the stack has no Teams mock"))?;
        let labels = self
            .breakdowns
            .get(alert)
            .map(|b| b.labels.clone())
            .unwrap_or_default();
        let (_, timing) = self.rule_timing(alert, &labels)?;
        let since = self.fault_time();
        let (want, bound, explain) = match t.status {
            TeamsStatus::Firing | TeamsStatus::Lost => (
                CardStatus::Firing,
                timing.teams_bound(),
                format!(
                    "{} + group_wait {}",
                    timing.explain_fire(),
                    secs(timing.group_wait)
                ),
            ),
            TeamsStatus::Resolved => (
                CardStatus::Resolved,
                timing.teams_resolved_bound(),
                format!(
                    "resolve window {} + group_interval {}",
                    secs(timing.resolve_bound()),
                    secs(timing.group_interval)
                ),
            ),
        };
        let word = if want == CardStatus::Firing {
            "firing"
        } else {
            "resolved"
        };
        if let Some(o) = self.too_slow(
            &format!("the {word} card for {alert}"),
            bound,
            &explain,
            t.within,
        ) {
            return Ok(o);
        }
        let late = t.allow_late.map(|d| self.scaled(d)).unwrap_or_default();
        let deadline = since + bound + late;
        let _bar = self.bar(
            format!("waiting for the {word} card of {alert}"),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let mut am_seen: Option<DateTime<Utc>> = None;
        // A card the mock refused (an injected fault) was not posted.
        let posted = |ds: &[Delivery]| {
            ds.iter()
                .find(|d| d.tells(alert, want, since) && d.error.is_none())
                .cloned()
        };
        let card = loop {
            if want == CardStatus::Firing && am_seen.is_none() {
                if let Some(am) = &self.am {
                    am_seen = am
                        .alerts()
                        .await
                        .unwrap_or_default()
                        .iter()
                        .filter(|x| {
                            x.labels.get("alertname").map(String::as_str) == Some(alert)
                                && label_subset(&labels, &x.labels)
                        })
                        .map(|x| x.updated_at.min(Utc::now()))
                        .min();
                }
            }
            let ds = teams.deliveries().await?;
            if let Some(d) = posted(&ds) {
                break Ok((d, ds));
            }
            if Utc::now() > deadline {
                break Err(ds);
            }
            tokio::time::sleep(self.poll).await;
        };
        let failed = match &self.am {
            Some(am) => am.notification_failures().await,
            None => vec![],
        };
        let refused = |ds: &[Delivery]| -> Vec<Delivery> {
            ds.iter()
                .filter(|d| d.tells(alert, want, since) && d.error.is_some())
                .cloned()
                .collect()
        };
        if t.status == TeamsStatus::Lost {
            return Ok(match card {
                Ok((d, _)) => Outcome::fail(format!(
                    "expected the firing card for {alert} to be lost; it was posted {} after the fault",
                    secs(between(Some(since), Some(d.received_at)).unwrap_or_default())
                )),
                Err(ds) => {
                    let refused = refused(&ds);
                    match refused.first() {
                        None => Outcome::fail(format!(
                            "expected a lost card for {alert}: none was posted, but none was sent either (is a Teams fault on? did the alert fire?)"
                        )),
                        Some(first) => {
                            let evidence = if failed.is_empty() {
                                "Alertmanager counted it as sent: no alertmanager_notifications_failed_total shows the loss".to_string()
                            } else {
                                format!("evidence: {}", failed.join(", "))
                            };
                            Outcome::pass(format!(
                                "firing card for {alert} lost: {} attempt(s) refused ({}), none posted within {}; {evidence}",
                                refused.len(),
                                first.error.clone().unwrap_or_default(),
                                secs(bound + late)
                            ))
                        }
                    }
                }
            });
        }
        let bd = self
            .breakdowns
            .entry(alert.to_string())
            .or_insert_with(|| Breakdown {
                alert: alert.into(),
                timing: Some(timing.clone()),
                ..Default::default()
            });
        let from_what = if want == CardStatus::Firing {
            "fault"
        } else {
            "undo"
        };
        match card {
            Ok((d, ds)) => {
                if want == CardStatus::Resolved {
                    bd.teams_resolved_at = Some(d.received_at);
                } else {
                    bd.teams_at = Some(d.received_at);
                    bd.alertmanager_at = am_seen.filter(|t| *t <= d.received_at);
                }
                let took = between(Some(since), Some(d.received_at)).unwrap_or_default();
                let format = match d.format {
                    CardFormat::MessageCard => "message_card",
                    CardFormat::AdaptiveCard => "adaptive_card",
                    CardFormat::Rejected => "rejected",
                };
                let mut msg = format!(
                    "{word} card for {alert} ({format}) {} after the {from_what} (window {})",
                    secs(took),
                    secs(bound)
                );
                let refused = refused(&ds);
                if let Some(first) = refused.first() {
                    let retried =
                        between(Some(first.received_at), Some(d.received_at)).unwrap_or_default();
                    msg.push_str(&format!(
                        "; posted after {} refused attempt(s), {} after the first",
                        refused.len(),
                        secs(retried)
                    ));
                }
                if took > bound {
                    msg.push_str(&format!(
                        "; {} late (allow_late {})",
                        secs(took - bound),
                        secs(late)
                    ));
                }
                Ok(Outcome::pass(msg))
            }
            Err(ds) => {
                let mut msg = format!(
                    "expected a {word} Teams card for {alert} within {} of the {from_what}",
                    secs(bound + late)
                );
                let rejected: Vec<String> = ds
                    .iter()
                    .filter(|d| d.received_at >= since && d.format == CardFormat::Rejected)
                    .map(|d| {
                        format!(
                            "HTTP {} {}",
                            d.http_status,
                            d.error.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                let cards: Vec<String> = ds
                    .iter()
                    .filter(|d| {
                        d.received_at >= since
                            && d.format != CardFormat::Rejected
                            && d.error.is_none()
                    })
                    .map(|d| format!("{:?} {:?}", d.status, d.alertnames))
                    .collect();
                msg.push_str(&format!("; seen: {} card(s) {:?}", cards.len(), cards));
                if !rejected.is_empty() {
                    msg.push_str(&format!(
                        "; the mock rejected {} post(s): {}",
                        rejected.len(),
                        rejected.first().cloned().unwrap_or_default()
                    ));
                }
                let refused = refused(&ds);
                if let Some(first) = refused.first() {
                    msg.push_str(&format!(
                        "; the notification was lost: {} attempt(s) refused ({})",
                        refused.len(),
                        first.error.clone().unwrap_or_default()
                    ));
                }
                if !failed.is_empty() {
                    msg.push_str(&format!(
                        "; Alertmanager reports failed notifications: {}",
                        failed.join(", ")
                    ));
                }
                let never_sent =
                    want == CardStatus::Firing && am_seen.is_none() && self.am.is_some();
                if never_sent {
                    msg.push_str("; the alert never reached Alertmanager");
                }
                if let Some(r) = &timing.receiver {
                    msg.push_str(&format!("; route → receiver `{r}`"));
                }
                // A rejected or refused card, or a failure Alertmanager
                // counted, is a cause of its own: not a matter of time.
                let caused = !rejected.is_empty() || !refused.is_empty() || !failed.is_empty();
                if caused || never_sent {
                    Ok(Outcome::fail(msg))
                } else {
                    Ok(self.late(since, msg).await)
                }
            }
        }
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
