//! Fixture profiles (fixtures/*.yaml): the routes a synthetic service serves
//! and the metric families it exposes, with the real service's names, types,
//! labels and buckets. Validation names file, line and column.

use super::source::Source;
use super::Dur;
use crate::error::{SpecError, SpecErrors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// How a family's value moves.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// Histogram observed once per request with its latency (seconds) × `scale`.
    RequestDuration,
    /// Histogram observed once per request with a value drawn from `observe`
    /// (token counts, audio seconds).
    RequestSample,
    /// Counter (or an only-growing gauge) raised by `amount` per request.
    Requests,
    /// Gauges of the mean, least and greatest latency per label set (Qdrant).
    LatencyAvg,
    LatencyMin,
    LatencyMax,
    /// Requests being served right now, × `scale`, capped at `max`.
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
    /// Seconds since the process started.
    UptimeSeconds,
    /// A fixed value (`value:`, or each series' own), e.g. `*_info` families.
    /// A gauge can be changed by chaos (`gauges:`).
    Constant,
    /// 1 while the model is loaded, 0 once chaos unloads it.
    ModelLoaded,
}

impl MetricSource {
    /// Families whose series appear as requests come, labelled from them.
    pub fn per_request(self) -> bool {
        matches!(
            self,
            MetricSource::RequestDuration
                | MetricSource::RequestSample
                | MetricSource::Requests
                | MetricSource::LatencyAvg
                | MetricSource::LatencyMin
                | MetricSource::LatencyMax
        )
    }

    /// The type a family of this source must have (`None`: any).
    fn types(self) -> &'static [MetricType] {
        use MetricType::*;
        match self {
            MetricSource::RequestDuration | MetricSource::RequestSample => &[Histogram],
            // Some apps count with a gauge they only ever raise (seed 004's cost).
            MetricSource::Requests => &[Counter, Gauge],
            MetricSource::ProcessCpuSeconds
            | MetricSource::ProcessCpuUserSeconds
            | MetricSource::ProcessCpuSystemSeconds => &[Counter],
            MetricSource::Constant => &[Counter, Gauge],
            _ => &[Gauge],
        }
    }
}

/// Where a per-request label takes its value from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// The HTTP method.
    Method,
    /// The route's path template (`/collections/{collection_name}/points/search`).
    Route,
    /// The status code (`200`).
    StatusCode,
    /// The status class (`2xx`), as prometheus-fastapi-instrumentator writes it.
    StatusClass,
    /// `success` or `error`.
    Outcome,
    /// One of these values, drawn per request.
    OneOf(Vec<String>),
}

impl Fill {
    /// The fill a label gets when the profile names none.
    pub fn by_name(label: &str) -> Option<Fill> {
        Some(match label {
            "method" => Fill::Method,
            "route" | "handler" | "path" | "endpoint" => Fill::Route,
            "status_code" => Fill::StatusCode,
            "status" => Fill::StatusClass,
            _ => return None,
        })
    }
}

/// Which requests a per-request family counts.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum On {
    #[default]
    All,
    Success,
    Error,
}

/// A number per request: fixed, or log-normal with a median and a p99.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Spread {
    Fixed(f64),
    Dist(Dist),
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    pub median: f64,
    pub p99: f64,
}

impl Spread {
    fn valid(&self) -> bool {
        match *self {
            Spread::Fixed(v) => v.is_finite() && v >= 0.0,
            Spread::Dist(d) => d.median > 0.0 && d.p99 >= d.median && d.p99.is_finite(),
        }
    }
}

/// One series of a family: its own labels, and its own amount or value.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub amount: Option<Spread>,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: MetricType,
    #[serde(default)]
    pub help: String,
    /// Labels filled per request (per-request families only).
    #[serde(default)]
    pub labels: Vec<String>,
    /// How each label is filled, where its name does not say (`endpoint: route`).
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub fill: BTreeMap<String, Fill>,
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub buckets: Vec<f64>,
    pub source: MetricSource,
    #[serde(default)]
    pub value: f64,
    /// Per-request families: only these route paths (default: every route).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Per-request families: which requests count.
    #[serde(default)]
    pub on: On,
    /// `requests`: what one request adds (default 1).
    pub amount: Option<Spread>,
    /// `request_sample`: the value one request observes.
    pub observe: Option<Spread>,
    /// `request_duration` and `in_flight`: a factor on the latency or count.
    pub scale: Option<f64>,
    /// `in_flight`: an upper bound (a KV cache is full at 1).
    pub max: Option<f64>,
    /// Several series per family, each with its own labels (and amount or value).
    #[serde(default)]
    pub series: Vec<SeriesSpec>,
}

impl Family {
    /// The series this family has: one unlabelled, or those listed. Borrowed:
    /// it runs for every request.
    pub fn series_or_one(&self) -> &[SeriesSpec] {
        static ONE: [SeriesSpec; 1] = [SeriesSpec {
            labels: BTreeMap::new(),
            amount: None,
            value: None,
        }];
        if self.series.is_empty() {
            &ONE
        } else {
            &self.series
        }
    }

    /// How `label` is filled from a request, if it is.
    pub fn fill_of(&self, label: &str) -> Option<Fill> {
        self.fill
            .get(label)
            .cloned()
            .or_else(|| Fill::by_name(label))
    }

    /// Every label name a series of this family carries.
    pub fn label_names(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.labels.iter().cloned().collect();
        out.extend(self.const_labels.keys().cloned());
        for s in &self.series {
            out.extend(s.labels.keys().cloned());
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub median: Dur,
    pub p99: Dur,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default = "get")]
    pub method: String,
    /// A path, or a template whose `{name}` segments match any one segment.
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
    /// An example of the JSON body the route accepts: a request must be a JSON
    /// object with the same keys and kinds of values, or it gets FastAPI's 422.
    pub body: Option<serde_json::Value>,
    /// The path load sends to, for a templated route (default: the template
    /// with every `{name}` replaced by `name`).
    pub example: Option<String>,
}

impl RouteSpec {
    /// Whether a request path matches this route's path or template.
    pub fn matches(&self, path: &str) -> bool {
        let (mut a, mut b) = (self.path.split('/'), path.split('/'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') && !p.is_empty() => {}
                (Some(t), Some(p)) if t == p => {}
                _ => return false,
            }
        }
    }

    /// A concrete path for this route: what load requests.
    pub fn request_path(&self) -> String {
        self.example.clone().unwrap_or_else(|| {
            self.path
                .split('/')
                .map(|s| s.trim_start_matches('{').trim_end_matches('}'))
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    /// Whether `body` is what this route accepts (a route with no example
    /// accepts anything).
    pub fn accepts(&self, body: &[u8]) -> bool {
        let Some(example) = &self.body else {
            return true;
        };
        let Ok(got) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        same_shape(example, &got)
    }
}

fn same_shape(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (want, got) {
        (Object(w), Object(g)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| same_shape(wv, gv))),
        (Number(_), Number(_)) | (String(_), String(_)) | (Bool(_), Bool(_)) => true,
        (Array(_), Array(_)) | (Null, _) => true,
        _ => false,
    }
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

/// A named change of a profile: `vllm` with `variant: v0` exposes the v0
/// engine's names.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    #[serde(default)]
    pub description: String,
    /// Family name → the name it has in this variant.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "metrics_path")]
    pub metrics_path: String,
    /// Files of shared families (the Python client's `process_*`, the FastAPI
    /// instrumentator's), relative to this profile, added before its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default)]
    pub families: Vec<Family>,
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
}

/// An included file: families only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    families: Vec<Family>,
}

fn default_port() -> u16 {
    8000
}
fn metrics_path() -> String {
    "/metrics".into()
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, SpecErrors> {
        Self::load_variant(path, None)
    }

    /// Loads a profile with one of its variants applied.
    pub fn load_variant(path: &Path, variant: Option<&str>) -> Result<Profile, SpecErrors> {
        let source = Source::read(path).map_err(|e| SpecErrors { errors: vec![e] })?;
        let p = Self::from_source(&source)?;
        match variant {
            None => Ok(p),
            Some(v) => p.variant(v).map_err(|m| SpecErrors {
                errors: vec![source.error("variants", m)],
            }),
        }
    }

    /// This profile as its variant `name` exposes it.
    pub fn variant(mut self, name: &str) -> Result<Profile, String> {
        let Some(v) = self.variants.get(name).cloned() else {
            let known: Vec<_> = self.variants.keys().cloned().collect();
            return Err(format!(
                "profile `{}` has no variant `{name}` (it has: {})",
                self.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        };
        for f in &mut self.families {
            if let Some(n) = v.rename.get(&f.name) {
                f.name = n.clone();
            }
        }
        Ok(self)
    }

    pub fn from_source(source: &Source) -> Result<Profile, SpecErrors> {
        let mut p: Profile = source.parse().map_err(|e| SpecErrors { errors: vec![e] })?;
        let mut errors: Vec<SpecError> = Vec::new();
        let mut names = HashSet::new();
        // Included families first, each checked and located in its own file.
        let mut included = Vec::new();
        for (n, inc) in p.include.iter().enumerate() {
            let Ok(text) = std::fs::read_to_string(source.relative(inc)) else {
                let m = format!("cannot read include `{inc}`");
                errors.push(source.error(&format!("include.{n}"), m));
                continue;
            };
            let src = Source::from_text(&source.relative(inc), text);
            let part = match src.parse::<Part>() {
                Ok(pt) => (src, pt),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let (src, pt) = part;
            for (i, f) in pt.families.iter().enumerate() {
                check_family(&src, &p, i, f, &mut names, &mut errors);
            }
            included.extend(pt.families);
        }
        for (i, f) in p.families.iter().enumerate() {
            check_family(source, &p, i, f, &mut names, &mut errors);
        }
        included.append(&mut p.families);
        p.families = included;
        p.include.clear();
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
            if let Some(e) = &r.example {
                if !r.matches(e) {
                    errors.push(source.error(
                        &format!("routes.{i}.example"),
                        format!("example `{e}` does not match the route `{}`", r.path),
                    ));
                }
            }
            let dup = p.routes[..i]
                .iter()
                .any(|o| o.path == r.path && o.method.eq_ignore_ascii_case(&r.method));
            if dup {
                errors.push(source.error(
                    &format!("routes.{i}.path"),
                    format!("route {} {} is declared twice", r.method, r.path),
                ));
            }
        }
        for (vname, v) in &p.variants {
            for (from, to) in &v.rename {
                let at = format!("variants.{vname}.rename");
                if !p.families.iter().any(|f| &f.name == from) {
                    errors.push(source.error(
                        &at,
                        format!("variant `{vname}` renames `{from}`, which is not a family"),
                    ));
                }
                if !valid_metric_name(to) || p.families.iter().any(|f| &f.name == to) {
                    errors.push(source.error(
                        &at,
                        format!("variant `{vname}` cannot rename to `{to}`: invalid or taken"),
                    ));
                }
            }
        }
        SpecErrors { errors }.into_result()?;
        Ok(p)
    }

    /// The route a request with this path (and method, when given) reaches.
    pub fn route(&self, path: &str) -> Option<&RouteSpec> {
        self.routes
            .iter()
            .find(|r| r.path == path)
            .or_else(|| self.routes.iter().find(|r| r.matches(path)))
    }

    pub fn route_for(&self, method: &str, path: &str) -> Option<&RouteSpec> {
        let m = |r: &&RouteSpec| r.method.eq_ignore_ascii_case(method);
        self.routes
            .iter()
            .filter(m)
            .find(|r| r.path == path)
            .or_else(|| self.routes.iter().filter(m).find(|r| r.matches(path)))
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

fn check_family(
    source: &Source,
    p: &Profile,
    i: usize,
    f: &Family,
    names: &mut HashSet<String>,
    errors: &mut Vec<SpecError>,
) {
    let at = format!("families.{i}");
    let mut err = |path: String, m: String| errors.push(source.error(&path, m));
    if !names.insert(f.name.clone()) {
        err(
            format!("{at}.name"),
            format!("family `{}` is declared twice", f.name),
        );
    }
    if !valid_metric_name(&f.name) {
        err(
            format!("{at}.name"),
            format!("`{}` is not a valid metric name", f.name),
        );
    }
    if f.type_ == MetricType::Counter && !f.name.ends_with("_total") {
        err(
            format!("{at}.name"),
            format!("counter `{}` must end in `_total` (OpenMetrics)", f.name),
        );
    }
    match f.type_ {
        MetricType::Histogram => {
            if f.buckets.is_empty() {
                err(
                    at.clone(),
                    format!("histogram `{}` needs `buckets`", f.name),
                );
            }
            if let Some(w) = f
                .buckets
                .windows(2)
                .position(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
            {
                err(
                    format!("{at}.buckets.{}", w + 1),
                    format!(
                        "buckets of `{}` must increase strictly: {} then {}",
                        f.name,
                        f.buckets[w],
                        f.buckets[w + 1]
                    ),
                );
            }
        }
        _ if !f.buckets.is_empty() => err(
            format!("{at}.buckets"),
            "only a histogram has buckets".into(),
        ),
        _ => {}
    }
    let types = f.source.types();
    if !types.contains(&f.type_) {
        let want: Vec<_> = types
            .iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect();
        err(
            format!("{at}.type"),
            format!(
                "source `{:?}` makes a {}, not a {:?}",
                f.source,
                want.join(" or "),
                f.type_
            ),
        );
    }
    let per_request = f.source.per_request();
    for (li, l) in f.labels.iter().enumerate() {
        if !per_request {
            err(
                format!("{at}.labels.{li}"),
                "only per-request families have request labels; use const_labels or series".into(),
            );
        } else if f.fill_of(l).is_none()
            && (f.series.is_empty() || !f.series.iter().all(|s| s.labels.contains_key(l)))
        {
            err(
                format!("{at}.labels.{li}"),
                format!(
                    "label `{l}` cannot be filled from a request: say how under `fill` \
                     (method, route, status_code, status_class, outcome, one_of)"
                ),
            );
        }
    }
    for (l, fill) in &f.fill {
        if !f.labels.contains(l) {
            err(
                format!("{at}.fill"),
                format!("`fill` names `{l}`, which is not one of `labels`"),
            );
        }
        if matches!(fill, Fill::OneOf(v) if v.is_empty()) {
            err(format!("{at}.fill"), format!("`one_of` for `{l}` is empty"));
        }
    }
    let only_for = |what: &str, ok: bool, err: &mut dyn FnMut(String, String)| {
        if !ok {
            err(
                format!("{at}.{what}"),
                format!("`{what}` does not apply to source `{:?}`", f.source),
            );
        }
    };
    only_for("routes", f.routes.is_empty() || per_request, &mut err);
    only_for("on", f.on == On::All || per_request, &mut err);
    only_for(
        "amount",
        f.amount.is_none() || f.source == MetricSource::Requests,
        &mut err,
    );
    only_for(
        "observe",
        f.observe.is_none() || f.source == MetricSource::RequestSample,
        &mut err,
    );
    only_for(
        "scale",
        f.scale.is_none()
            || matches!(
                f.source,
                MetricSource::RequestDuration | MetricSource::InFlight
            ),
        &mut err,
    );
    only_for(
        "max",
        f.max.is_none() || f.source == MetricSource::InFlight,
        &mut err,
    );
    if f.source == MetricSource::RequestSample && f.observe.is_none() {
        err(
            at.clone(),
            "source `request_sample` needs `observe` (a value or {median, p99})".into(),
        );
    }
    for (k, s) in [("amount", f.amount), ("observe", f.observe)] {
        if s.is_some_and(|s| !s.valid()) {
            err(
                format!("{at}.{k}"),
                "a value ≥ 0, or {median, p99} with 0 < median ≤ p99".into(),
            );
        }
    }
    for r in &f.routes {
        if !p.routes.iter().any(|x| &x.path == r) {
            err(
                format!("{at}.routes"),
                format!("`{r}` is not a route of this profile"),
            );
        }
    }
    let mut seen = HashSet::new();
    for (si, s) in f.series.iter().enumerate() {
        let key: Vec<_> = s.labels.iter().collect();
        if !seen.insert(format!("{key:?}")) {
            err(
                format!("{at}.series.{si}"),
                "two series with the same labels".into(),
            );
        }
        if s.amount.is_some_and(|a| !a.valid()) || (s.amount.is_some() && !per_request) {
            err(
                format!("{at}.series.{si}.amount"),
                "an amount ≥ 0, on a per-request family only".into(),
            );
        }
        for k in s.labels.keys() {
            if f.const_labels.contains_key(k) || (f.labels.contains(k) && f.fill.contains_key(k)) {
                err(
                    format!("{at}.series.{si}.labels"),
                    format!("label `{k}` is given twice"),
                );
            }
        }
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

    #[test]
    fn a_label_no_request_can_fill_is_located() {
        let bad = OK.replace("labels: [route]", "labels: [route, tenant]");
        let e = check(&bad).unwrap_err();
        assert!(
            e.errors[0].message.contains("`tenant` cannot be filled"),
            "{}",
            e.errors[0]
        );
        assert_eq!((e.errors[0].line, e.errors[0].col > 1), (3, true));
        let fixed = bad.replace(
            "source: request_duration",
            "fill: {tenant: {one_of: [a, b]}}, source: request_duration",
        );
        assert!(check(&fixed).is_ok());
    }

    #[test]
    fn options_that_do_not_apply_are_refused() {
        for (from, to, want) in [
            (
                "source: request_duration}",
                "source: request_duration, amount: 3}",
                "`amount` does not apply",
            ),
            (
                "source: request_duration}",
                "source: request_duration, routes: [/nope]}",
                "`/nope` is not a route",
            ),
            (
                "source: request_duration}",
                "source: request_sample}",
                "needs `observe`",
            ),
            ("type: histogram", "type: gauge", "makes a histogram"),
        ] {
            let e = check(&OK.replace(from, to)).unwrap_err();
            assert!(
                e.errors.iter().any(|e| e.message.contains(want)),
                "{want}: {e}"
            );
        }
    }

    #[test]
    fn templates_match_one_segment() {
        let r: RouteSpec = serde_yaml_ng::from_str(
            "{method: POST, path: '/collections/{collection_name}/points/search', latency: {median: 1ms, p99: 2ms}}",
        )
        .unwrap();
        assert!(r.matches("/collections/docs/points/search"));
        assert!(!r.matches("/collections//points/search"));
        assert!(!r.matches("/collections/docs/points"));
        assert_eq!(
            r.request_path(),
            "/collections/collection_name/points/search"
        );
    }

    #[test]
    fn a_body_must_have_the_example_shape() {
        let r: RouteSpec = serde_yaml_ng::from_str(
            "{method: POST, path: /predict, latency: {median: 1ms, p99: 2ms}, body: {Glucose: 148, BMI: 33.6}}",
        )
        .unwrap();
        assert!(r.accepts(br#"{"Glucose": 120, "BMI": 30, "extra": 1}"#));
        assert!(!r.accepts(br#"{"Glucose": "high", "BMI": 30}"#));
        assert!(!r.accepts(br#"{"BMI": 30}"#));
        assert!(!r.accepts(b"not json"));
    }

    #[test]
    fn variants_rename_and_unknown_ones_are_refused() {
        let text = format!("{OK}variants:\n  old: {{rename: {{h_seconds: old_seconds}}}}\n");
        let p = check(&text).unwrap();
        let v = p.clone().variant("old").unwrap();
        assert_eq!(v.families[0].name, "old_seconds");
        assert!(p.variant("new").unwrap_err().contains("has: old"));
        let e = check(&text.replace("{h_seconds:", "{nope_seconds:")).unwrap_err();
        assert!(
            e.errors[0].message.contains("not a family"),
            "{}",
            e.errors[0]
        );
    }

    #[test]
    fn an_included_file_is_merged_and_its_errors_located_there() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part.yaml");
        std::fs::write(
            &part,
            "families:\n  - {name: up_seconds, type: gauge, source: constant}\n",
        )
        .unwrap();
        let main = dir.path().join("p.yaml");
        std::fs::write(&main, format!("include: [part.yaml]\n{OK}")).unwrap();
        let p = Profile::load(&main).unwrap();
        assert_eq!(p.families.len(), 2);
        assert!(p.include.is_empty());
        std::fs::write(&part, "families:\n  - {name: up_seconds, type: gauge, source: requests}\n  - {name: bad, type: counter, source: constant}\n").unwrap();
        let e = Profile::load(&main).unwrap_err();
        assert!(
            e.errors.iter().all(|e| e.file.ends_with("part.yaml")),
            "{e}"
        );
        assert_eq!(e.errors[0].line, 3);
        std::fs::write(&main, format!("include: [gone.yaml]\n{OK}")).unwrap();
        let e = Profile::load(&main).unwrap_err();
        assert!(e.errors[0].message.contains("cannot read include"));
        assert_eq!(e.errors[0].line, 1);
    }

    #[test]
    fn every_shipped_profile_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                let p = Profile::load(&e.path()).unwrap_or_else(|e| panic!("{e}"));
                for v in p.variants.keys() {
                    p.clone().variant(v).unwrap();
                }
                n += 1;
            }
        }
        assert!(n >= 9, "{n} profiles");
    }
}
