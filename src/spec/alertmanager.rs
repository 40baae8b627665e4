//! alertmanager.yml: the routing tree and receivers, and route matching as
//! `amtool config routes test` answers it, so that a drill knows which
//! receiver and which `group_wait`/`group_interval` apply to an alert.

use super::source::Source;
use super::Dur;
use crate::error::SpecError;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Alertmanager's route defaults (config/config.go).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Alertmanager's default `group_interval`, 5m.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// Alertmanager's default `repeat_interval`, 4h.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A node of the routing tree (`route` and its `routes`).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Route {
    /// The receiver for alerts matching this route, default the parent's.
    pub receiver: Option<String>,
    /// The labels alerts are grouped by, default the parent's (`...`: every label).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How long to wait before the first notification of a new group, default the parent's (root: 30s).
    pub group_wait: Option<Dur>,
    /// How long to wait before notifying about alerts added to a group, default the parent's (root: 5m).
    pub group_interval: Option<Dur>,
    /// How long to wait before resending a notification, default the parent's (root: 4h).
    pub repeat_interval: Option<Dur>,
    /// Label matchers an alert must satisfy, e.g. `severity="critical"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Deprecated `match`: label values that must be equal.
    #[serde(default, rename = "match")]
    pub match_: BTreeMap<String, String>,
    /// Deprecated `match_re`: label values that must match a regex.
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Whether matching goes on to the next sibling after this route matches, default false.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// The child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One entry of `receivers`: a named notification target.
#[derive(Debug, Clone, Deserialize)]
pub struct Receiver {
    /// The receiver name routes refer to.
    pub name: String,
    /// Microsoft Teams integrations (`msteams_configs`).
    #[serde(default)]
    pub msteams_configs: Vec<serde_yaml_ng::Value>,
    /// Microsoft Teams Workflows integrations (`msteamsv2_configs`).
    #[serde(default)]
    pub msteamsv2_configs: Vec<serde_yaml_ng::Value>,
    /// Webhook integrations (`webhook_configs`).
    #[serde(default)]
    pub webhook_configs: Vec<serde_yaml_ng::Value>,
    /// Every other integration (`email_configs`, `slack_configs`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

impl Receiver {
    /// How many notification integrations it has: zero means alerts routed here are dropped.
    pub fn integrations(&self) -> usize {
        self.msteams_configs.len()
            + self.msteamsv2_configs.len()
            + self.webhook_configs.len()
            + self
                .other
                .iter()
                .filter(|(k, _)| k.ends_with("_configs"))
                .filter_map(|(_, v)| v.as_sequence().map(Vec::len))
                .sum::<usize>()
    }
}

/// The parts of alertmanager.yml firedrill reads.
#[derive(Debug, Clone, Deserialize)]
pub struct AmConfig {
    /// The root of the routing tree.
    pub route: Route,
    /// The notification receivers.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Read only to know whether one alert can silence another.
    #[serde(default)]
    pub inhibit_rules: Vec<serde_yaml_ng::Value>,
}

/// The timing of the route an alert lands on (inherited values applied).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTiming {
    /// The receiver alerts are delivered to.
    pub receiver: String,
    /// The route's `group_wait`.
    pub group_wait: Duration,
    /// The route's `group_interval`.
    pub group_interval: Duration,
    /// The route's `repeat_interval`.
    pub repeat_interval: Duration,
    /// The labels alerts are grouped by (`...`: every label).
    pub group_by: Vec<String>,
}

impl RouteTiming {
    /// Alerts with different names always land in different groups here.
    pub fn groups_by_name(&self) -> bool {
        self.group_by.iter().any(|l| l == "alertname" || l == "...")
    }
}

/// alertmanager.yml, parsed and validated.
#[derive(Debug, Clone)]
pub struct Alertmanager {
    /// The text and location of alertmanager.yml.
    pub source: Source,
    /// The parsed alertmanager.yml.
    pub config: AmConfig,
}

/// One label matcher: `name="v"`, `name=~"re"`, `name!="v"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name matched.
    pub name: String,
    op: Op,
    value: String,
    re: Option<Regex>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

impl Matcher {
    /// Parses a matcher such as `severity="critical"` or `{job=~"back.*"}`.
    pub fn parse(s: &str) -> crate::error::Result<Matcher> {
        let s = s
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let idx = s.find(['=', '!']).ok_or_else(|| {
            crate::error::Error::Invalid(format!("bad matcher `{s}`: expected name=value"))
        })?;
        let name = s[..idx].trim().to_string();
        let rest = &s[idx..];
        let (op, val) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::Nre, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(crate::error::Error::Invalid(format!("bad matcher `{s}`")));
        };
        if name.is_empty() {
            return Err(crate::error::Error::Invalid(format!(
                "bad matcher `{s}`: empty label name"
            )));
        }
        let val = val.trim();
        let value = if val.len() >= 2 && val.starts_with('"') && val.ends_with('"') {
            serde_json::from_str::<String>(val)
                .map_err(|e| crate::error::Error::Invalid(format!("bad matcher `{s}`: {e}")))?
        } else {
            val.to_string()
        };
        Self::new(name, op, value)
    }

    fn new(name: String, op: Op, value: String) -> crate::error::Result<Matcher> {
        let re =
            match op {
                // Alertmanager anchors regex matchers.
                Op::Re | Op::Nre => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    crate::error::Error::Invalid(format!("bad regex `{value}`: {e}"))
                })?),
                _ => None,
            };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// Whether `labels` satisfy the matcher (a missing label counts as empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl Route {
    fn all_matchers(&self) -> crate::error::Result<Vec<Matcher>> {
        let mut out = Vec::new();
        for m in &self.matchers {
            out.push(Matcher::parse(m)?);
        }
        for (k, v) in &self.match_ {
            out.push(Matcher::new(k.clone(), Op::Eq, v.clone())?);
        }
        for (k, v) in &self.match_re {
            out.push(Matcher::new(k.clone(), Op::Re, v.clone())?);
        }
        Ok(out)
    }
}

impl Alertmanager {
    /// Reads and validates alertmanager.yml at `path`.
    pub fn load(path: &Path) -> Result<Alertmanager, SpecError> {
        Self::from_source(Source::read(path)?)
    }

    /// Parses and validates alertmanager.yml from a source: known receivers, valid matchers.
    pub fn from_source(source: Source) -> Result<Alertmanager, SpecError> {
        let config: AmConfig = source.parse()?;
        if config.route.receiver.is_none() {
            return Err(source.error("route", "the root route needs a `receiver`"));
        }
        validate_route(&source, &config.route, "route", &config.receivers)?;
        Ok(Alertmanager { source, config })
    }

    /// The routes an alert with `labels` is delivered through, in order.
    pub fn routes_for(&self, labels: &BTreeMap<String, String>) -> Vec<RouteTiming> {
        let root = &self.config.route;
        let base = RouteTiming {
            receiver: root.receiver.clone().unwrap_or_default(),
            group_wait: root.group_wait.map(|d| d.0).unwrap_or(DEFAULT_GROUP_WAIT),
            group_interval: root
                .group_interval
                .map(|d| d.0)
                .unwrap_or(DEFAULT_GROUP_INTERVAL),
            repeat_interval: root
                .repeat_interval
                .map(|d| d.0)
                .unwrap_or(DEFAULT_REPEAT_INTERVAL),
            group_by: root.group_by.clone(),
        };
        let mut out = Vec::new();
        match_children(root, &base, labels, &mut out);
        if out.is_empty() {
            out.push(base);
        }
        out
    }

    /// The receiver named `name`, if defined.
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.config.receivers.iter().find(|r| r.name == name)
    }
}

fn inherit(route: &Route, parent: &RouteTiming) -> RouteTiming {
    RouteTiming {
        receiver: route
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_wait: route.group_wait.map(|d| d.0).unwrap_or(parent.group_wait),
        group_interval: route
            .group_interval
            .map(|d| d.0)
            .unwrap_or(parent.group_interval),
        repeat_interval: route
            .repeat_interval
            .map(|d| d.0)
            .unwrap_or(parent.repeat_interval),
        group_by: if route.group_by.is_empty() {
            parent.group_by.clone()
        } else {
            route.group_by.clone()
        },
    }
}

/// Depth-first as Alertmanager's dispatcher: the first matching child wins
/// unless it sets `continue`; a node with no matching child is the match.
fn match_children(
    route: &Route,
    timing: &RouteTiming,
    labels: &BTreeMap<String, String>,
    out: &mut Vec<RouteTiming>,
) {
    for child in &route.routes {
        let ms = child.all_matchers().unwrap_or_default();
        if ms.iter().all(|m| m.matches(labels)) {
            let t = inherit(child, timing);
            let before = out.len();
            match_children(child, &t, labels, out);
            if out.len() == before {
                out.push(t);
            }
            if !child.continue_ {
                return;
            }
        }
    }
}

fn validate_route(
    source: &Source,
    route: &Route,
    at: &str,
    receivers: &[Receiver],
) -> Result<(), SpecError> {
    if let Some(r) = &route.receiver {
        if !receivers.iter().any(|x| &x.name == r) {
            let names: Vec<_> = receivers.iter().map(|r| r.name.as_str()).collect();
            return Err(source.error(
                &format!("{at}.receiver"),
                format!(
                    "route names receiver `{r}`, which is not defined (receivers: {})",
                    names.join(", ")
                ),
            ));
        }
    }
    if let Err(e) = route.all_matchers() {
        return Err(source.error(&format!("{at}.matchers"), e));
    }
    for (i, child) in route.routes.iter().enumerate() {
        validate_route(source, child, &format!("{at}.routes.{i}"), receivers)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn am(text: &str) -> Alertmanager {
        Alertmanager::from_source(Source::from_text(Path::new("am.yml"), text.into())).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CFG: &str = r#"
route:
  receiver: default
  group_wait: 10s
  routes:
    - matchers: ['severity="critical"']
      receiver: teams-critical
      group_wait: 5s
    - match_re: {service: "back.*"}
      receiver: teams
      continue: true
    - receiver: catchall
receivers:
  - name: default
  - name: teams-critical
  - name: teams
  - name: catchall
"#;

    #[test]
    fn routing_like_amtool() {
        let a = am(CFG);
        let r = a.routes_for(&labels(&[("severity", "critical")]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].receiver, "teams-critical");
        assert_eq!(r[0].group_wait, Duration::from_secs(5));
        assert_eq!(r[0].group_interval, DEFAULT_GROUP_INTERVAL);
        let r = a.routes_for(&labels(&[("service", "backend")]));
        let names: Vec<_> = r.iter().map(|r| r.receiver.as_str()).collect();
        assert_eq!(names, ["teams", "catchall"]);
        assert_eq!(r[0].group_wait, Duration::from_secs(10));
    }

    #[test]
    fn unknown_receiver_is_located() {
        let text = "route:\n  receiver: nope\nreceivers:\n  - name: teams\n";
        let e = Alertmanager::from_source(Source::from_text(Path::new("am.yml"), text.into()))
            .unwrap_err();
        assert_eq!((e.line, e.col), (2, 13));
        assert!(e.message.contains("receiver `nope`"));
    }

    #[test]
    fn matchers_parse() {
        let m = Matcher::parse(r#"job=~"back.*""#).unwrap();
        assert!(m.matches(&labels(&[("job", "backend")])));
        assert!(!m.matches(&labels(&[("job", "xbackend")])));
        assert!(Matcher::parse("novalue").is_err());
    }
}
