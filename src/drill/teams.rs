//! `expect_teams`: waiting for an alert's card at the Teams mock, and
//! noting when Alertmanager held the alert; judged by
//! [`crate::verify::teams`].

use super::{by, poll_until, Drill};
use crate::error::{err, Result};
use crate::observe::{CardStatus, Delivery, TeamsMock};
use crate::report::Outcome;
use crate::spec::scenario::{ExpectTeams, TeamsStatus};
use crate::verify::teams::{self, CardWant};
use crate::verify::{label_subset, Breakdown};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// What the wait saw: every card received, and when Alertmanager first
/// held the alert (firing cards only).
struct Seen {
    deliveries: Vec<Delivery>,
    alertmanager_at: Option<DateTime<Utc>>,
}

impl Drill<'_> {
    pub(super) async fn expect_teams(&mut self, t: &ExpectTeams) -> Result<Outcome> {
        let alert = t.alert.as_str();
        let labels = self
            .breakdowns
            .get(alert)
            .map(|b| b.labels.clone())
            .unwrap_or_default();
        let (_, timing) = self.rule_timing(alert, &labels)?;
        let late = t.allow_late.map(|d| self.scaled(d)).unwrap_or_default();
        let want = CardWant::new(alert, t.status, &timing, self.fault_time(), late);
        let what = format!("the {} card for {alert}", want.word());
        if let Some(o) = self.too_slow(&what, want.bound, &want.explain, t.within) {
            return Ok(o);
        }
        let Some(teams) = self.teams.clone() else {
            return self.sent_by_counter(&want, t.status).await;
        };
        let seen = self.wait_card(&teams, &want, &labels).await?;
        let failed = match &self.am {
            Some(am) => am.notification_failures().await,
            None => vec![],
        };
        let posted = want.posted(&seen.deliveries).cloned();
        if t.status == TeamsStatus::Lost {
            return Ok(teams::lost(
                &want,
                posted.as_ref(),
                &seen.deliveries,
                &failed,
            ));
        }
        let bd = self
            .breakdowns
            .entry(alert.to_string())
            .or_insert_with(|| Breakdown {
                alert: alert.into(),
                timing: Some(timing.clone()),
                ..Default::default()
            });
        if let Some(d) = posted {
            if want.status == CardStatus::Resolved {
                bd.teams_resolved_at = Some(d.received_at);
            } else {
                bd.teams_at = Some(d.received_at);
                bd.alertmanager_at = seen.alertmanager_at.filter(|t| *t <= d.received_at);
            }
            return Ok(teams::posted(&want, &d, &seen.deliveries));
        }
        let never_sent = want.status == CardStatus::Firing
            && seen.alertmanager_at.is_none()
            && self.am.is_some();
        let (msg, caused) = teams::missing(
            &want,
            &seen.deliveries,
            &failed,
            never_sent,
            timing.receiver.as_deref(),
        );
        Ok(if caused {
            Outcome::fail(msg)
        } else {
            self.late(want.since, msg).await
        })
    }

    /// Alertmanager's Teams notifications (msteams, msteamsv2) sent and
    /// failed so far, by its own counters.
    pub(super) async fn teams_counts(&self) -> Option<Counts> {
        let text = self.am.as_ref()?.metrics().await.ok()?;
        let mut c = Counts::default();
        for s in crate::observe::exposition::samples(&text) {
            let teams = s
                .labels
                .iter()
                .any(|(k, v)| k == "integration" && (v == "msteams" || v == "msteamsv2"));
            match s.name.as_str() {
                "alertmanager_notifications_total" if teams => c.sent += s.value,
                "alertmanager_notifications_failed_total" if teams => c.failed += s.value,
                _ => {}
            }
        }
        Some(c)
    }

    /// `expect_teams` with no Teams mock in reach (an attached stack whose
    /// Alertmanager posts to Teams itself): Alertmanager's own counter of
    /// Teams notifications must rise within the card's window, and its
    /// failures must not. Weaker than the card, and said so; each card
    /// counted needs a notification of its own.
    async fn sent_by_counter(&mut self, want: &CardWant, status: TeamsStatus) -> Result<Outcome> {
        let Some(base) = self.am_sent.filter(|_| self.am.is_some()) else {
            return Err(err!(
                Component,
                "the stack has no Teams mock in reach, and Alertmanager's notification counters cannot be read"
            ));
        };
        if status == TeamsStatus::Lost {
            return Ok(Outcome::inconclusive(
                "no Teams mock in reach: a lost card cannot be told from Alertmanager's counters",
            ));
        }
        let last = poll_until(by(want.deadline()), self.poll, async || {
            let n = self.teams_counts().await.unwrap_or(base);
            Ok((n, n.sent > base.sent || n.failed > base.failed))
        })
        .await?;
        self.am_sent = Some(last.state);
        let (sent, failed) = (last.state.sent - base.sent, last.state.failed - base.failed);
        let what = format!("{} card for {}", want.word(), want.alert);
        let since = if self.counted {
            "the last card"
        } else {
            "the drill began"
        };
        self.counted = true;
        Ok(if failed > 0.0 {
            Outcome::fail(format!(
                "no Teams mock in reach: Alertmanager counts {failed} failed Teams notification(s) since {since} (the {what})"
            ))
        } else if sent > 0.0 {
            Outcome::pass(format!(
                "no Teams mock in reach: Alertmanager counts {sent} msteams notification(s) sent since {since}, none failed (its counter, not the {what}: the card itself is not seen)"
            ))
        } else {
            Outcome::fail(format!(
                "no Teams mock in reach, and Alertmanager sent no msteams notification within the window of the {what}"
            ))
        })
    }

    /// Polls the mock until the card is posted or its deadline passes.
    async fn wait_card(
        &self,
        teams: &TeamsMock,
        want: &CardWant,
        labels: &BTreeMap<String, String>,
    ) -> Result<Seen> {
        let deadline = want.deadline();
        let _bar = self.bar(
            format!("waiting for the {} card of {}", want.word(), want.alert),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let mut alertmanager_at = None;
        let last = poll_until(by(deadline), self.poll, async || {
            if want.status == CardStatus::Firing && alertmanager_at.is_none() {
                alertmanager_at = self.held_by_alertmanager(&want.alert, labels).await;
            }
            let deliveries = teams.deliveries().await?;
            let done = want.posted(&deliveries).is_some();
            Ok((deliveries, done))
        })
        .await?;
        Ok(Seen {
            deliveries: last.state,
            alertmanager_at,
        })
    }

    /// When Alertmanager first held `alert` with `labels`, if it does.
    async fn held_by_alertmanager(
        &self,
        alert: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<DateTime<Utc>> {
        let am = self.am.as_ref()?;
        am.alerts()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|x| {
                x.labels.get("alertname").map(String::as_str) == Some(alert)
                    && label_subset(labels, &x.labels)
            })
            .map(|x| x.updated_at.min(Utc::now()))
            .min()
    }
}

/// Alertmanager's Teams notifications, by its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Counts {
    sent: f64,
    failed: f64,
}
