//! Fixture profiles (fixtures/*.yaml): the routes a synthetic service serves
//! and the metric families it exposes, with the real service's names, types,
//! labels and buckets. Validation names file, line and column.

use super::source::Source;
use super::Dur;
use crate::error::{SpecError, SpecErrors};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// How a family's value moves.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// Histogram observed once per request with its latency (seconds).
    RequestDuration,
    /// Counter incremented once per request.
    Requests,
    /// Number of requests being served right now.
    InFlight,
    ProcessCpuSeconds,
    ProcessCpuUserSeconds,
    ProcessCpuSystemSeconds,
    ProcessResidentMemoryBytes,
    ProcessVirtualMemoryBytes,
    ProcessHeapBytes,
    ProcessOpenFds,
    ProcessMaxFds,
    ProcessStartTimeSeconds,
    /// A fixed value (`value:`), e.g. `*_info` families.
    Constant,
    /// 1 while the model is loaded, 0 once chaos unloads it.
    ModelLoaded,
}

impl MetricSource {
    fn per_request(self) -> bool {
        matches!(
            self,
            MetricSource::RequestDuration | MetricSource::Requests | MetricSource::InFlight
        )
    }
}

/// Labels a per-request family may carry: filled from the request.
pub const REQUEST_LABELS: &[&str] = &[
    "method",
    "route",
    "status_code",
    "handler",
    "status",
    "path",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: MetricType,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub buckets: Vec<f64>,
    pub source: MetricSource,
    #[serde(default)]
    pub value: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub median: Dur,
    pub p99: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    pub latency: Latency,
    #[serde(default)]
    pub error_ratio: f64,
    #[serde(default = "five_hundred")]
    pub error_status: u16,
    #[serde(default = "two_hundred")]
    pub status: u16,
    /// Answers 503 while the model is unloaded.
    #[serde(default)]
    pub needs_model: bool,
}

fn get() -> String {
    "GET".into()
}
fn five_hundred() -> u16 {
    500
}
fn two_hundred() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "metrics_path")]
    pub metrics_path: String,
    pub families: Vec<Family>,
    pub routes: Vec<RouteSpec>,
}

fn default_port() -> u16 {
    8000
}
fn metrics_path() -> String {
    "/metrics".into()
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, SpecErrors> {
        let source = Source::read(path).map_err(|e| SpecErrors { errors: vec![e] })?;
        Self::from_source(&source)
    }

    pub fn from_source(source: &Source) -> Result<Profile, SpecErrors> {
        let p: Profile = source.parse().map_err(|e| SpecErrors { errors: vec![e] })?;
        let mut errors: Vec<SpecError> = Vec::new();
        let mut names = HashSet::new();
        for (i, f) in p.families.iter().enumerate() {
            let at = format!("families.{i}");
            if !names.insert(f.name.clone()) {
                errors.push(source.error(
                    &format!("{at}.name"),
                    format!("family `{}` is declared twice", f.name),
                ));
            }
            if !valid_metric_name(&f.name) {
                errors.push(source.error(
                    &format!("{at}.name"),
                    format!("`{}` is not a valid metric name", f.name),
                ));
            }
            if f.type_ == MetricType::Counter && !f.name.ends_with("_total") {
                errors.push(source.error(
                    &format!("{at}.name"),
                    format!("counter `{}` must end in `_total` (OpenMetrics)", f.name),
                ));
            }
            match f.type_ {
                MetricType::Histogram => {
                    if f.buckets.is_empty() {
                        errors.push(
                            source.error(&at, format!("histogram `{}` needs `buckets`", f.name)),
                        );
                    }
                    if let Some(w) = f
                        .buckets
                        .windows(2)
                        .position(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
                    {
                        errors.push(source.error(
                            &format!("{at}.buckets.{}", w + 1),
                            format!(
                                "buckets of `{}` must increase strictly: {} then {}",
                                f.name,
                                f.buckets[w],
                                f.buckets[w + 1]
                            ),
                        ));
                    }
                }
                _ if !f.buckets.is_empty() => errors
                    .push(source.error(&format!("{at}.buckets"), "only a histogram has buckets")),
                _ => {}
            }
            let want = match f.source {
                MetricSource::RequestDuration => Some(MetricType::Histogram),
                MetricSource::Requests
                | MetricSource::ProcessCpuSeconds
                | MetricSource::ProcessCpuUserSeconds
                | MetricSource::ProcessCpuSystemSeconds => Some(MetricType::Counter),
                MetricSource::Constant => None,
                _ => Some(MetricType::Gauge),
            };
            if let Some(t) = want {
                if t != f.type_ {
                    errors.push(source.error(
                        &format!("{at}.type"),
                        format!("source `{:?}` makes a {t:?}, not a {:?}", f.source, f.type_),
                    ));
                }
            }
            for (li, l) in f.labels.iter().enumerate() {
                if f.source.per_request() && !REQUEST_LABELS.contains(&l.as_str()) {
                    errors.push(source.error(
                        &format!("{at}.labels.{li}"),
                        format!(
                            "label `{l}` cannot be filled from a request (use one of {})",
                            REQUEST_LABELS.join(", ")
                        ),
                    ));
                }
                if !f.source.per_request() {
                    errors.push(source.error(
                        &format!("{at}.labels.{li}"),
                        "only per-request families have variable labels; use const_labels",
                    ));
                }
            }
        }
        for (i, r) in p.routes.iter().enumerate() {
            if !(0.0..=1.0).contains(&r.error_ratio) {
                errors.push(source.error(
                    &format!("routes.{i}.error_ratio"),
                    "error_ratio is between 0 and 1",
                ));
            }
            if r.latency.p99 < r.latency.median {
                errors.push(source.error(
                    &format!("routes.{i}.latency.p99"),
                    "p99 is below the median",
                ));
            }
            if !r.path.starts_with('/') {
                errors
                    .push(source.error(&format!("routes.{i}.path"), "a route path starts with /"));
            }
        }
        SpecErrors { errors }.into_result()?;
        Ok(p)
    }

    pub fn route(&self, path: &str) -> Option<&RouteSpec> {
        self.routes.iter().find(|r| r.path == path)
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Profile, SpecErrors> {
        Profile::from_source(&Source::from_text(Path::new("p.yaml"), text.into()))
    }

    const OK: &str = "name: b\nfamilies:\n  - {name: h_seconds, type: histogram, labels: [route], buckets: [0.1, 0.5], source: request_duration}\nroutes:\n  - {path: /x, latency: {median: 5ms, p99: 20ms}}\n";

    #[test]
    fn good_profile_loads() {
        assert_eq!(check(OK).unwrap().families.len(), 1);
    }

    #[test]
    fn non_monotonic_buckets_are_located() {
        let e = check(&OK.replace("[0.1, 0.5]", "[0.5, 0.1]")).unwrap_err();
        let e = &e.errors[0];
        assert!(e.message.contains("must increase strictly"), "{e}");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn unknown_type_and_duplicate_family() {
        let e = check(&OK.replace("type: histogram", "type: summaryx")).unwrap_err();
        assert!(
            e.errors[0].message.contains("unknown variant `summaryx`"),
            "{}",
            e.errors[0]
        );
        let dup = OK.replace("routes:", "  - {name: h_seconds, type: histogram, labels: [route], buckets: [1], source: request_duration}\nroutes:");
        let e = check(&dup).unwrap_err();
        assert!(e.errors[0].message.contains("declared twice"));
        assert_eq!(e.errors[0].line, 4);
    }
}
