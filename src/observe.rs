//! Clients for the evidence: Prometheus (targets, alerts, queries),
//! Alertmanager (alerts), and the Teams mock (deliveries).

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub active_at: Option<DateTime<Utc>>,
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
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// One card the Teams mock received.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    /// `message_card`, `adaptive_card`, or `rejected`.
    pub format: String,
    pub http_status: u16,
    pub title: String,
    /// `firing` or `resolved` (from the card), or empty.
    pub status: String,
    pub alertnames: Vec<String>,
    pub error: Option<String>,
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
