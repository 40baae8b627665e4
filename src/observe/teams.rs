//! The Teams mock's API: the cards it received, as typed deliveries.

use super::client;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the Teams mock made of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardFormat {
    /// A MessageCard (`msteams_configs` or the prometheus-msteams bridge).
    MessageCard,
    /// An Adaptive Card in a message (`msteamsv2_configs`).
    AdaptiveCard,
    /// Not a card Teams would post (a 400), or a post to a wrong path.
    Rejected,
}

/// Whether a card tells of firing or resolved alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    /// Firing alerts.
    Firing,
    /// Resolved alerts.
    Resolved,
    /// Neither could be told from the card (or any other wire value).
    #[serde(other)]
    Unknown,
}

/// One card the Teams mock received.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Delivery {
    /// When the mock received the post.
    pub received_at: DateTime<Utc>,
    /// What kind of card it was.
    pub format: CardFormat,
    /// The HTTP status the mock answered.
    pub http_status: u16,
    /// The card's title.
    pub title: String,
    /// Firing or resolved, as told by the card.
    pub status: CardStatus,
    /// The alert names the card mentions.
    pub alertnames: Vec<String>,
    /// Why the mock did not post it (an injected fault, a rejection).
    pub error: Option<String>,
    /// The card's text as Teams shows it under the title: the message and
    /// its facts (`name = value`) line by line.
    #[serde(default)]
    pub text: String,
    /// Its accent: a MessageCard's `themeColor`, an Adaptive Card's first
    /// block's `color`.
    #[serde(default)]
    pub colour: String,
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

/// A client for a Teams mock's API.
#[derive(Debug, Clone)]
pub struct TeamsMock {
    base: String,
    http: reqwest::Client,
}

impl TeamsMock {
    /// A client for the Teams mock at `base` (`http://host:port`).
    pub fn new(base: String) -> Self {
        TeamsMock {
            base,
            http: client(),
        }
    }
    /// Every post the mock received, in order.
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
