//! Clients for the evidence: Prometheus (targets, alerts, queries, its own
//! metrics), Alertmanager (alerts, notification failures), and the Teams
//! mock (deliveries). Wire strings become enums here.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub scrape_url: String,
    pub health: String,
    #[serde(default)]
    pub last_error: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// The host part of the scrape URL (a service name inside the stack).
    pub fn host(&self) -> &str {
        let rest = self
            .scrape_url
            .split("://")
            .nth(1)
            .unwrap_or(&self.scrape_url);
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(hostport)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Targets {
    active_targets: Vec<Target>,
}

/// An alert's state in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Inactive,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at: Option<DateTime<Utc>>,
    /// The expression's value when last evaluated.
    #[serde(default)]
    pub value: Option<String>,
}

impl PromAlert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }
}

#[derive(Debug, Deserialize)]
struct Alerts {
    alerts: Vec<PromAlert>,
}

/// A series from a query: labels and (unix seconds, value) samples.
#[derive(Debug, Clone, Deserialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<(f64, String)>,
    #[serde(default)]
    pub value: Option<(f64, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result: Vec<Series>,
}

pub fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

pub fn from_unix(s: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((s * 1000.0).round() as i64).unwrap_or_default()
}

impl Prometheus {
    pub fn new(base: String) -> Self {
        Prometheus {
            base,
            http: client(),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await?;
        let env: Envelope<T> = r.json().await?;
        if env.status != "success" {
            bail!("Prometheus {path}: {}", env.error.unwrap_or_default());
        }
        env.data
            .ok_or_else(|| anyhow!("Prometheus {path}: no data"))
    }

    pub async fn targets(&self) -> Result<Vec<Target>> {
        Ok(self
            .get::<Targets>("/api/v1/targets", &[("state", "active".into())])
            .await?
            .active_targets)
    }

    pub async fn alerts(&self) -> Result<Vec<PromAlert>> {
        Ok(self.get::<Alerts>("/api/v1/alerts", &[]).await?.alerts)
    }

    /// Instant query at `at`.
    pub async fn query(&self, expr: &str, at: DateTime<Utc>) -> Result<Vec<Series>> {
        let q = [
            ("query", expr.to_string()),
            ("time", format!("{:.3}", unix(at))),
        ];
        Ok(self.get::<QueryData>("/api/v1/query", &q).await?.result)
    }

    pub async fn query_range(
        &self,
        expr: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Series>> {
        let q = [
            ("query", expr.to_string()),
            ("start", format!("{:.3}", unix(start))),
            ("end", format!("{:.3}", unix(end))),
            ("step", format!("{:.3}", step.as_secs_f64().max(0.001))),
        ];
        Ok(self
            .get::<QueryData>("/api/v1/query_range", &q)
            .await?
            .result)
    }

    /// Prometheus' own metrics in the text format.
    pub async fn self_metrics(&self) -> Result<String> {
        metrics_text(&self.http, &self.base).await
    }

    /// Rule-group evaluations Prometheus skipped because the previous one
    /// was still running (a stalled machine), summed over groups.
    pub async fn rule_iterations_missed(&self) -> Result<f64> {
        Ok(metric_sum(
            &self.self_metrics().await?,
            "prometheus_rule_group_iterations_missed_total",
        ))
    }

    /// Deletes every sample up to `end` (the TSDB admin API), so that
    /// queries see only what comes after: a shared stack's reset.
    pub async fn delete_until(&self, end: DateTime<Utc>) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/v1/admin/tsdb/delete_series", self.base))
            .query(&[
                ("match[]", r#"{__name__=~".+"}"#.to_string()),
                ("end", format!("{:.3}", unix(end))),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("Prometheus delete_series: {}", r.status());
        }
        Ok(())
    }

    /// Reloads the configuration files (`--web.enable-lifecycle`).
    pub async fn reload(&self) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/-/reload", self.base))
            .send()
            .await?;
        if !r.status().is_success() {
            let status = r.status();
            bail!(
                "Prometheus reload: {status} {}",
                r.text().await.unwrap_or_default().trim()
            );
        }
        Ok(())
    }

    /// Exact timestamps of raw samples of `selector` in the `window` before `at`.
    pub async fn raw_samples(
        &self,
        selector: &str,
        window: Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<Series>> {
        let ms = window.as_millis().max(1);
        self.query(&format!("{selector}[{ms}ms]"), at).await
    }
}

#[derive(Debug, Clone)]
pub struct Alertmanager {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: AmStatus,
    #[serde(default)]
    pub receivers: Vec<AmReceiver>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AmStatus {
    pub state: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AmReceiver {
    pub name: String,
}

impl Alertmanager {
    pub fn new(base: String) -> Self {
        Alertmanager {
            base,
            http: client(),
        }
    }
    pub async fn alerts(&self) -> Result<Vec<AmAlert>> {
        let r = self
            .http
            .get(format!("{}/api/v2/alerts", self.base))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("Alertmanager /api/v2/alerts: {}", r.status());
        }
        Ok(r.json().await?)
    }
    /// Alertmanager's own metrics in the text format (for notification failures).
    pub async fn metrics(&self) -> Result<String> {
        metrics_text(&self.http, &self.base).await
    }

    /// `alertmanager_notifications_failed_total` (and the request counter)
    /// series above zero, as evidence of a lost notification.
    pub async fn notification_failures(&self) -> Vec<String> {
        notification_failures(&self.metrics().await.unwrap_or_default())
    }
}

/// The series of `metrics` (text format) above zero that count failed
/// notifications.
pub fn notification_failures(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("alertmanager_notifications_failed_total{")
                || l.starts_with("alertmanager_notification_requests_failed_total{")
        })
        .filter(|l| sample_value(l) > 0.0)
        .map(str::to_string)
        .collect()
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

/// What the Teams mock made of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardFormat {
    MessageCard,
    AdaptiveCard,
    /// Not a card Teams would post (a 400), or a post to a wrong path.
    Rejected,
}

/// Whether a card tells of firing or resolved alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Firing,
    Resolved,
    #[serde(other)]
    Unknown,
}

/// One card the Teams mock received.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    pub format: CardFormat,
    pub http_status: u16,
    pub title: String,
    pub status: CardStatus,
    pub alertnames: Vec<String>,
    /// Why the mock did not post it (an injected fault, a rejection).
    pub error: Option<String>,
}

impl Delivery {
    /// A card of `status` for `alert`, received at or after `since`.
    pub fn tells(&self, alert: &str, status: CardStatus, since: DateTime<Utc>) -> bool {
        self.received_at >= since
            && self.format != CardFormat::Rejected
            && self.status == status
            && self.alertnames.iter().any(|a| a == alert)
    }
}

#[derive(Debug, Clone)]
pub struct TeamsMock {
    base: String,
    http: reqwest::Client,
}

impl TeamsMock {
    pub fn new(base: String) -> Self {
        TeamsMock {
            base,
            http: client(),
        }
    }
    pub async fn deliveries(&self) -> Result<Vec<Delivery>> {
        Ok(self
            .http
            .get(format!("{}/-/deliveries", self.base))
            .send()
            .await?
            .json()
            .await?)
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
