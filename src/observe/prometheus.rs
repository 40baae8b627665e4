//! Prometheus's HTTP API as firedrill asks it: targets, rules' alerts,
//! instant and range queries, its own metrics.

use super::{client, metric_sum, metrics_text, unix};
use crate::error::{bail, err, Result};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

/// A client for one Prometheus' HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

/// One active scrape target, from `/api/v1/targets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The URL scraped.
    pub scrape_url: String,
    /// `up`, `down` or `unknown`.
    pub health: String,
    /// The last scrape's error, empty when it succeeded.
    #[serde(default)]
    pub last_error: String,
    /// The target's labels after relabelling (`job`, `instance`, …).
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
    /// The expression is true, for less than the rule's `for`.
    Pending,
    /// The expression has been true for the rule's `for`: the alert is sent.
    Firing,
    /// The expression is false.
    Inactive,
}

/// One alert of an alerting rule, from `/api/v1/alerts`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    /// The alert's labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// Pending or firing.
    pub state: AlertState,
    /// When the expression became true.
    pub active_at: Option<DateTime<Utc>>,
    /// The expression's value when last evaluated.
    #[serde(default)]
    pub value: Option<String>,
}

impl PromAlert {
    /// The alert's name (its `alertname` label), empty if missing.
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
    /// The series' labels.
    pub metric: BTreeMap<String, String>,
    /// The samples of a range query.
    #[serde(default)]
    pub values: Vec<(f64, String)>,
    /// The sample of an instant query.
    #[serde(default)]
    pub value: Option<(f64, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result: Vec<Series>,
}

/// A metadata query's time range (`start`, `end`).
fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> [(&'static str, String); 2] {
    [
        ("start", format!("{:.3}", unix(start))),
        ("end", format!("{:.3}", unix(end))),
    ]
}

impl Prometheus {
    /// A client for the Prometheus at `base` (`http://host:port`).
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
            bail!(
                Component,
                "Prometheus {path}: {}",
                env.error.unwrap_or_default()
            );
        }
        env.data
            .ok_or_else(|| err!(Component, "Prometheus {path}: no data"))
    }

    /// The active scrape targets.
    pub async fn targets(&self) -> Result<Vec<Target>> {
        Ok(self
            .get::<Targets>("/api/v1/targets", &[("state", "active".into())])
            .await?
            .active_targets)
    }

    /// The alerts of every alerting rule, pending or firing.
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

    /// Range query over `start`..`end` with resolution `step`.
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

    /// The values of `label` seen over `start`..`end`
    /// (`/api/v1/label/<label>/values`; `__name__` lists metric names).
    pub async fn label_values(
        &self,
        label: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.get(&format!("/api/v1/label/{label}/values"), &span(start, end))
            .await
    }

    /// Every label name seen over `start`..`end` (`/api/v1/labels`).
    pub async fn label_names(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.get("/api/v1/labels", &span(start, end)).await
    }

    /// The label sets of the series `selector` matches over `start`..`end`
    /// (`/api/v1/series`).
    pub async fn series(
        &self,
        selector: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<BTreeMap<String, String>>> {
        let mut q = vec![("match[]", selector.to_string())];
        q.extend(span(start, end));
        self.get("/api/v1/series", &q).await
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
            bail!(Component, "Prometheus delete_series: {}", r.status());
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
                Component,
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
