//! Clients for the evidence: [`Prometheus`] (targets, alerts, queries, its
//! own metrics), [`Alertmanager`] (alerts, notification failures), and the
//! Teams mock ([`TeamsMock`]: deliveries). Wire strings become enums here.
//! Shared below: the HTTP client, the text-format readers, time conversion.

mod alertmanager;
pub mod exposition;
mod prometheus;
mod teams;

pub use alertmanager::{notification_failures, Alertmanager, AmAlert, AmReceiver, AmStatus};
pub use prometheus::{AlertState, PromAlert, Prometheus, Series, Target};
pub use teams::{CardFormat, CardStatus, Delivery, TeamsMock};

use crate::error::Result;
use chrono::{DateTime, Utc};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// A component's own `/metrics` in the text format. An error status is an
/// error, not a page to parse: read as metrics it would show no failures.
async fn metrics_text(http: &reqwest::Client, base: &str) -> Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// A time as unix seconds, to the millisecond.
pub fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Unix seconds as a time, to the millisecond (the epoch if out of range).
pub fn from_unix(s: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((s * 1000.0).round() as i64).unwrap_or_default()
}

fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of `name` in a text-format exposition.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(sample_value)
        .sum()
}

impl From<reqwest::Error> for crate::error::Error {
    fn from(e: reqwest::Error) -> Self {
        // The URL, which can hold a webhook's secret path, is left out.
        crate::error::Error::Component(e.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_failures_from_the_text_format() {
        let text = "# HELP x\nprometheus_rule_group_iterations_missed_total{rule_group=\"a\"} 2\nprometheus_rule_group_iterations_missed_total{rule_group=\"b\"} 1\nprometheus_rule_group_iterations_missed_totalx 9\nalertmanager_notifications_failed_total{integration=\"msteams\",reason=\"clientError\"} 1\nalertmanager_notifications_failed_total{integration=\"email\",reason=\"other\"} 0\n";
        assert_eq!(
            metric_sum(text, "prometheus_rule_group_iterations_missed_total"),
            3.0
        );
        assert_eq!(notification_failures(text).len(), 1);
    }

    #[test]
    fn wire_strings_become_enums() {
        let a: PromAlert = serde_json::from_str(
            r#"{"labels":{"alertname":"X"},"state":"pending","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"}"#,
        )
        .unwrap();
        assert_eq!((a.name(), a.state), ("X", AlertState::Pending));
        let d: Delivery = serde_json::from_str(r#"{"received_at":"2026-01-01T00:00:00Z","format":"rejected","http_status":404,"title":"","status":"","alertnames":[],"error":"x"}"#).unwrap();
        assert_eq!(
            (d.format, d.status),
            (CardFormat::Rejected, CardStatus::Unknown)
        );
    }
}
