//! Pure judges of `expect_teams`: given the cards the Teams mock received
//! and the failures Alertmanager counted, whether the card came (and how
//! late, after how many refused attempts), was lost as expected, or is
//! missing, and what explains it.

use super::{between, Outcome, Timing};
use crate::observe::{CardFormat, CardStatus, Delivery};
use crate::spec::scenario::TeamsStatus;
use crate::util::secs;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The card a step waits for, and the window it has.
#[derive(Debug, Clone)]
pub struct CardWant {
    /// The alert the card must name.
    pub alert: String,
    /// Firing (also for a card expected lost) or resolved.
    pub status: CardStatus,
    /// From the fault (a firing card) or the undo (a resolved one).
    pub since: DateTime<Utc>,
    /// The window the stack's configuration allows.
    pub bound: Duration,
    /// How the window is made up, for the report.
    pub explain: String,
    /// Lateness the scenario tolerates beyond the window.
    pub late: Duration,
}

impl CardWant {
    /// What `status` asks of `alert`'s card, with `timing`'s window.
    pub fn new(
        alert: &str,
        status: TeamsStatus,
        timing: &Timing,
        since: DateTime<Utc>,
        late: Duration,
    ) -> CardWant {
        let (status, bound, explain) = match status {
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
        CardWant {
            alert: alert.to_string(),
            status,
            since,
            bound,
            explain,
            late,
        }
    }

    /// "firing" or "resolved".
    pub fn word(&self) -> &'static str {
        match self.status {
            CardStatus::Resolved => "resolved",
            _ => "firing",
        }
    }

    /// What the window counts from.
    fn counted_from(&self) -> &'static str {
        match self.status {
            CardStatus::Resolved => "undo",
            _ => "fault",
        }
    }

    /// When waiting is over.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.since + self.bound + self.late
    }

    /// The card, posted (an injected fault refuses a card: not posted).
    pub fn posted<'a>(&self, ds: &'a [Delivery]) -> Option<&'a Delivery> {
        ds.iter()
            .find(|d| d.tells(&self.alert, self.status, self.since) && d.error.is_none())
    }

    /// Attempts at the card that the mock refused (an injected fault).
    fn refused<'a>(&self, ds: &'a [Delivery]) -> Vec<&'a Delivery> {
        ds.iter()
            .filter(|d| d.tells(&self.alert, self.status, self.since) && d.error.is_some())
            .collect()
    }
}

/// The card was posted: how long it took, after how many refused attempts.
pub fn posted(want: &CardWant, d: &Delivery, ds: &[Delivery]) -> Outcome {
    let took = between(Some(want.since), Some(d.received_at)).unwrap_or_default();
    let format = match d.format {
        CardFormat::MessageCard => "message_card",
        CardFormat::AdaptiveCard => "adaptive_card",
        CardFormat::Rejected => "rejected",
    };
    let mut msg = format!(
        "{} card for {} ({format}) {} after the {} (window {})",
        want.word(),
        want.alert,
        secs(took),
        want.counted_from(),
        secs(want.bound)
    );
    let refused = want.refused(ds);
    if let Some(first) = refused.first() {
        let retried = between(Some(first.received_at), Some(d.received_at)).unwrap_or_default();
        msg.push_str(&format!(
            "; posted after {} refused attempt(s), {} after the first",
            refused.len(),
            secs(retried)
        ));
    }
    if took > want.bound {
        msg.push_str(&format!(
            "; {} late (allow_late {})",
            secs(took - want.bound),
            secs(want.late)
        ));
    }
    Outcome::pass(msg)
}

/// A card expected lost: it must have been refused and never posted;
/// `failed` is Alertmanager's own count of failed notifications.
pub fn lost(
    want: &CardWant,
    posted: Option<&Delivery>,
    ds: &[Delivery],
    failed: &[String],
) -> Outcome {
    let alert = &want.alert;
    if let Some(d) = posted {
        return Outcome::fail(format!(
            "expected the firing card for {alert} to be lost; it was posted {} after the fault",
            secs(between(Some(want.since), Some(d.received_at)).unwrap_or_default())
        ));
    }
    let refused = want.refused(ds);
    let Some(first) = refused.first() else {
        return Outcome::fail(format!(
            "expected a lost card for {alert}: none was posted, but none was sent either (is a Teams fault on? did the alert fire?)"
        ));
    };
    let evidence = if failed.is_empty() {
        "Alertmanager counted it as sent: no alertmanager_notifications_failed_total shows the loss"
            .to_string()
    } else {
        format!("evidence: {}", failed.join(", "))
    };
    Outcome::pass(format!(
        "firing card for {alert} lost: {} attempt(s) refused ({}), none posted within {}; {evidence}",
        refused.len(),
        first.error.clone().unwrap_or_default(),
        secs(want.bound + want.late)
    ))
}

/// Why no card came, and whether that has a cause of its own (a rejected
/// or refused post, a failure Alertmanager counted, an alert that never
/// reached Alertmanager) rather than being a matter of time.
pub fn missing(
    want: &CardWant,
    ds: &[Delivery],
    failed: &[String],
    never_sent: bool,
    receiver: Option<&str>,
) -> (String, bool) {
    let since = want.since;
    let mut msg = format!(
        "expected a {} Teams card for {} within {} of the {}",
        want.word(),
        want.alert,
        secs(want.bound + want.late),
        want.counted_from()
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
        .filter(|d| d.received_at >= since && d.format != CardFormat::Rejected && d.error.is_none())
        .map(|d| format!("{:?} {:?}", d.status, d.alertnames))
        .collect();
    msg.push_str(&format!("; seen: {} card(s) {:?}", cards.len(), cards));
    if let Some(first) = rejected.first() {
        msg.push_str(&format!(
            "; the mock rejected {} post(s): {first}",
            rejected.len()
        ));
    }
    let refused = want.refused(ds);
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
    if never_sent {
        msg.push_str("; the alert never reached Alertmanager");
    }
    if let Some(r) = receiver {
        msg.push_str(&format!("; route → receiver `{r}`"));
    }
    let caused = !rejected.is_empty() || !refused.is_empty() || !failed.is_empty();
    (msg, caused || never_sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(status: CardStatus) -> CardWant {
        CardWant {
            alert: "BackendDown".into(),
            status,
            since: DateTime::from_timestamp(1_000, 0).unwrap(),
            bound: Duration::from_secs(10),
            explain: String::new(),
            late: Duration::ZERO,
        }
    }

    fn card(at: i64, status: CardStatus, error: Option<&str>) -> Delivery {
        Delivery {
            received_at: DateTime::from_timestamp(at, 0).unwrap(),
            format: CardFormat::MessageCard,
            http_status: 200,
            title: String::new(),
            status,
            alertnames: vec!["BackendDown".into()],
            error: error.map(String::from),
            text: String::new(),
            colour: String::new(),
        }
    }

    #[test]
    fn a_card_after_refused_attempts_passes_and_says_so() {
        let w = want(CardStatus::Firing);
        let ds = [
            card(1_003, CardStatus::Firing, Some("injected fault")),
            card(1_006, CardStatus::Firing, None),
        ];
        let d = w.posted(&ds).expect("the second attempt was posted");
        let o = posted(&w, d, &ds);
        assert_eq!(o.status, crate::verify::Status::Pass);
        assert!(
            o.message.contains("after 1 refused attempt(s)"),
            "{}",
            o.message
        );
    }

    #[test]
    fn a_lost_card_needs_a_refusal_and_no_post() {
        let w = want(CardStatus::Firing);
        let refused = [card(1_003, CardStatus::Firing, Some("HTTP 500"))];
        assert_eq!(
            lost(&w, None, &refused, &[]).status,
            crate::verify::Status::Pass
        );
        // Nothing sent at all is not a loss: the alert may never have fired.
        assert_eq!(lost(&w, None, &[], &[]).status, crate::verify::Status::Fail);
        let posted_card = card(1_004, CardStatus::Firing, None);
        assert_eq!(
            lost(&w, Some(&posted_card), &[], &[]).status,
            crate::verify::Status::Fail
        );
    }

    #[test]
    fn a_missing_card_has_a_cause_only_with_evidence() {
        let w = want(CardStatus::Resolved);
        // A firing card is not the resolved one; nothing explains the absence.
        let ds = [card(1_002, CardStatus::Firing, None)];
        let (msg, caused) = missing(&w, &ds, &[], false, Some("teams"));
        assert!(!caused, "{msg}");
        assert!(msg.contains("receiver `teams`"), "{msg}");
        let failed = ["alertmanager_notifications_failed_total 1".to_string()];
        assert!(missing(&w, &ds, &failed, false, None).1);
        assert!(missing(&w, &ds, &[], true, None).1);
    }
}
