//! Alertmanager's API as firedrill asks it: the alerts it holds, its
//! receivers, and the notifications it failed to send.

use super::{client, metrics_text, sample_value};
use crate::error::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A client for one Alertmanager's HTTP API.
#[derive(Debug, Clone)]
pub struct Alertmanager {
    base: String,
    http: reqwest::Client,
}

/// One alert Alertmanager holds, from `/api/v2/alerts`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// The alert's labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// When the alert started.
    pub starts_at: DateTime<Utc>,
    /// When Alertmanager last received it.
    pub updated_at: DateTime<Utc>,
    /// Whether it is active, silenced or inhibited.
    pub status: AmStatus,
    /// The receivers it is routed to.
    #[serde(default)]
    pub receivers: Vec<AmReceiver>,
}

/// An alert's state in Alertmanager.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AmStatus {
    /// `active`, `suppressed` or `unprocessed`.
    pub state: String,
}

/// A receiver an alert is routed to.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AmReceiver {
    /// The receiver's name.
    pub name: String,
}

impl Alertmanager {
    /// A client for the Alertmanager at `base` (`http://host:port`).
    pub fn new(base: String) -> Self {
        Alertmanager {
            base,
            http: client(),
        }
    }
    /// The alerts Alertmanager holds.
    pub async fn alerts(&self) -> Result<Vec<AmAlert>> {
        let r = self
            .http
            .get(format!("{}/api/v2/alerts", self.base))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(Component, "Alertmanager /api/v2/alerts: {}", r.status());
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
