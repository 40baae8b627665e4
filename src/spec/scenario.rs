//! Drill scenarios (scenarios/*.yaml): steps run in order, `load` in the
//! background. Every name a step uses (service, alert, route) is checked
//! against the stack before any container starts.

use super::source::Source;
use super::stack::{Kind, Stack};
use super::{Dur, Rate};
use crate::error::{SpecError, SpecErrors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Requests at exact arrival times (an open model): `rate` per second, or
/// a shape that starts at `rate` (ramp, steps, spike). Durations scale with
/// the scenario's `time_scale`; rates do not (they are per real second).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStep {
    pub target: String,
    #[serde(default = "root")]
    pub path: String,
    pub rate: Rate,
    /// Default: until the drill ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
    /// From `rate` to `to`, linearly over `over`, then `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
    /// `rate`, then each step's rate from its `after` on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RateStep>,
    /// `rate`, with a burst of `rate` from `at` for `for`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spike: Option<Spike>,
    /// Requests in flight at most (default: the peak rate × (the 60 s
    /// timeout + 1 s), at least 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub to: Rate,
    pub over: Dur,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    pub rate: Rate,
    pub after: Dur,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    pub rate: Rate,
    pub at: Dur,
    #[serde(rename = "for")]
    pub for_: Dur,
}

impl LoadStep {
    /// The arrival-rate shape, its durations at `time_scale`.
    pub fn shape(&self, time_scale: f64) -> crate::load::Shape {
        use crate::load::Shape;
        let d = |x: Dur| x.scaled(time_scale).0;
        let base = self.rate.0;
        if let Some(r) = &self.ramp {
            Shape::Ramp {
                from: base,
                to: r.to.0,
                over: d(r.over),
            }
        } else if !self.steps.is_empty() {
            Shape::Steps {
                base,
                steps: self.steps.iter().map(|s| (s.rate.0, d(s.after))).collect(),
            }
        } else if let Some(s) = &self.spike {
            Shape::Spike {
                base,
                peak: s.rate.0,
                at: d(s.at),
                for_: d(s.for_),
            }
        } else {
            Shape::Constant { rate: base }
        }
    }
}

fn root() -> String {
    "/".into()
}

/// Behaviour a fixture's control API can change while it runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureSet {
    /// Added to every request's latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Limit the change to one route path (default: all routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Allocate and hold this much memory (e.g. `512MiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<super::Bytes>,
    /// Burn CPU on this many cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    /// Stop answering (every route but the control API) while the process lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang: Option<bool>,
    /// Exit with this code (the one fault that cannot be undone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The model is loaded (`model_loaded` families; model routes answer 503 when not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_loaded: Option<bool>,
    /// Pin gauges of the profile to values (`django_db_connections_active: 95`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, f64>,
    /// Multiplies what each request adds (tokens, cost, audio seconds): a
    /// prompt that balloons, an expensive model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_factor: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChaosStep {
    pub stop: Option<String>,
    pub start: Option<String>,
    pub kill: Option<String>,
    pub pause: Option<String>,
    pub unpause: Option<String>,
    /// A fixture service whose behaviour changes (`set`) or returns to its profile (`reset`).
    pub fixture: Option<String>,
    pub set: Option<FixtureSet>,
    /// A Teams mock that misbehaves (`fault`) or behaves again (`reset`).
    pub teams: Option<String>,
    pub fault: Option<TeamsFault>,
    #[serde(default)]
    pub reset: bool,
}

/// What the Teams mock does to each card while the fault lasts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamsFault {
    /// Answer this HTTP status and post nothing: 429 (throttled; Alertmanager
    /// drops it), 500/503 (Alertmanager retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer this much later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    /// Answer `200` with this text and post nothing, as a throttled Teams
    /// connector does; Alertmanager counts it as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
    /// The fault ends by itself after this long (default: until `reset`).
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerAction {
    Stop,
    Start,
    Kill,
    Pause,
    Unpause,
}

/// A chaos step after validation: exactly one action.
#[derive(Debug, Clone, PartialEq)]
pub enum Chaos {
    Container(ContainerAction, String),
    FixtureSet(String, FixtureSet),
    FixtureReset(String),
    TeamsFault(String, TeamsFault),
    TeamsReset(String),
}

impl ScenarioDoc {
    /// What may fire, for the false-alert guard: (name, labels) each step
    /// expects (a firing alert must carry those labels), and those
    /// `allow_alerts` lets through.
    #[allow(clippy::type_complexity)]
    pub fn expected_alerts(
        &self,
    ) -> (
        Vec<(&str, &BTreeMap<String, String>)>,
        Vec<(&str, &BTreeMap<String, String>)>,
    ) {
        let mut expected = Vec::new();
        for s in &self.steps {
            match s {
                Step::ExpectAlert(a) | Step::ExpectResolved(a) => {
                    expected.push((a.name.as_str(), &a.labels));
                }
                Step::ExpectTeams(t) => expected.push((t.alert.as_str(), &EMPTY)),
                _ => {}
            }
        }
        let allowed = self
            .allow_alerts
            .iter()
            .map(|a| (a.name.as_str(), &a.labels))
            .collect();
        (expected, allowed)
    }
}

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl ChaosStep {
    pub fn action(&self) -> Result<Chaos, String> {
        use ContainerAction::*;
        let mut found = Vec::new();
        for (a, s) in [
            (Stop, &self.stop),
            (Start, &self.start),
            (Kill, &self.kill),
            (Pause, &self.pause),
            (Unpause, &self.unpause),
        ] {
            if let Some(s) = s {
                found.push(Chaos::Container(a, s.clone()));
            }
        }
        if let Some(f) = &self.fixture {
            match (&self.set, self.reset) {
                (Some(set), false) => found.push(Chaos::FixtureSet(f.clone(), set.clone())),
                (None, true) => found.push(Chaos::FixtureReset(f.clone())),
                _ => return Err("`fixture` takes either `set: {...}` or `reset: true`".into()),
            }
        }
        if let Some(t) = &self.teams {
            match (&self.fault, self.reset) {
                (Some(f), false) => found.push(Chaos::TeamsFault(t.clone(), f.clone())),
                (None, true) => found.push(Chaos::TeamsReset(t.clone())),
                _ => return Err("`teams` takes either `fault: {...}` or `reset: true`".into()),
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(
                "a chaos step names one action: stop, start, kill, pause, unpause, fixture or teams"
                    .into(),
            ),
            _ => Err("a chaos step names one action only; use one step per action".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAlert {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The longest fault → firing (or undo → resolved) path the team accepts:
    /// a stack whose own window is longer fails (e.g. a `for` made too long).
    pub within: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TeamsStatus {
    Firing,
    Resolved,
    /// Alertmanager sent the firing card, the (faulted) mock refused it, and
    /// no card was posted: the notification was lost.
    Lost,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTeams {
    pub alert: String,
    pub status: TeamsStatus,
    /// The longest fault → Teams (or undo → Teams) path the team accepts.
    pub within: Option<Dur>,
    /// How late past its window the card may come (a Teams fault is on:
    /// Alertmanager retries 5xx), measured and reported.
    pub allow_late: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectQuiet {
    #[serde(rename = "for")]
    pub for_: Dur,
}

/// Every panel target of every provisioned dashboard must have data over
/// the drill so far, but those listed here.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDashboards {
    #[serde(default)]
    pub expect_empty: Vec<Excused>,
}

/// A panel (by title), or an alert (by name), excused with a reason.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Excused {
    #[serde(alias = "panel", alias = "alert")]
    pub name: String,
    /// An allowed alert only with these labels (`{job: cadvisor}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    #[serde(rename = "for")]
    pub for_: Dur,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Load(LoadStep),
    Chaos(Box<ChaosStep>),
    ExpectAlert(ExpectAlert),
    ExpectTeams(ExpectTeams),
    ExpectResolved(ExpectAlert),
    ExpectQuiet(ExpectQuiet),
    ExpectDashboards(ExpectDashboards),
    Wait(Wait),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub stack: String,
    /// Multiplies every duration of the stack and of the scenario (DESIGN §6).
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Each step is a one-key map (`- load: {...}`), not a YAML tag.
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub steps: Vec<Step>,
    /// Alerts that may fire though no step expects them (the false-alert
    /// guard fails the drill on any other), each with a reason.
    #[serde(default)]
    pub allow_alerts: Vec<Excused>,
}

fn one() -> f64 {
    1.0
}

/// A scenario with its stack, both validated.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub source: Source,
    pub doc: ScenarioDoc,
    pub stack_path: PathBuf,
    pub stack: Stack,
}

/// A fixture change names only routes and gauges its profile has.
fn check_set(
    src: &Source,
    at: &str,
    set: &FixtureSet,
    p: &super::fixture::Profile,
    errors: &mut Vec<SpecError>,
) {
    use super::fixture::MetricType;
    for g in set.gauges.keys() {
        match p.family(g) {
            Some(f) if f.type_ == MetricType::Gauge => {}
            Some(_) => errors.push(src.error(
                &format!("{at}.gauges"),
                format!("`{g}` is not a gauge: only gauges can be pinned"),
            )),
            None => {
                let mut e = src.error(
                    &format!("{at}.gauges"),
                    format!("profile `{}` has no family `{g}`", p.name),
                );
                let names = p.families.iter().map(|f| f.name.as_str());
                if let Some(near) = crate::util::closest(g, names) {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                errors.push(e);
            }
        }
    }
    if let Some(r) = &set.route {
        if p.route(r).is_none() {
            errors.push(src.error(
                &format!("{at}.route"),
                format!("profile `{}` serves no route `{r}`", p.name),
            ));
        }
    }
    if set.error_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        errors.push(src.error(
            &format!("{at}.error_ratio"),
            "error_ratio is between 0 and 1",
        ));
    }
    if set
        .amount_factor
        .is_some_and(|f| !(f >= 0.0 && f.is_finite()))
    {
        errors.push(src.error(&format!("{at}.amount_factor"), "a factor ≥ 0"));
    }
}

impl Scenario {
    /// Loads and validates a scenario and its stack; the stack path can be
    /// replaced (a user's variant of the reference stack).
    pub fn load(path: &Path, stack_override: Option<&Path>) -> Result<Scenario, SpecErrors> {
        let source = Source::read(path).map_err(|e| SpecErrors { errors: vec![e] })?;
        Scenario::from_source(source, stack_override)
    }

    /// As [`Scenario::load`], from text already read (its path places the stack).
    pub fn from_source(
        source: Source,
        stack_override: Option<&Path>,
    ) -> Result<Scenario, SpecErrors> {
        let one = |e: SpecError| SpecErrors { errors: vec![e] };
        let doc: ScenarioDoc = source.parse().map_err(one)?;
        let stack_path = stack_override
            .map(Path::to_path_buf)
            .unwrap_or_else(|| source.relative(&doc.stack));
        if !stack_path.exists() {
            return Err(one(source.error(
                "stack",
                format!("stack file {} does not exist", stack_path.display()),
            )));
        }
        let stack = Stack::load(&stack_path)?;
        let s = Scenario {
            source,
            doc,
            stack_path,
            stack,
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), SpecErrors> {
        let src = &self.source;
        let stack = &self.stack;
        let mut errors = Vec::new();
        if !(self.doc.time_scale > 0.0 && self.doc.time_scale <= 1.0) {
            errors.push(src.error("time_scale", "time_scale is in (0, 1]"));
        }
        let alerts: Vec<String> = stack
            .prometheus
            .alert_rules()
            .into_iter()
            .map(|r| r.name)
            .collect();
        let service = |at: &str, name: &str, errors: &mut Vec<SpecError>| {
            if stack.service(name).is_none() {
                let names: Vec<_> = stack.doc.services.keys().cloned().collect();
                errors.push(
                    src.error(at, format!("unknown service `{name}`"))
                        .with_help(format!(
                            "services of {}: {}",
                            stack.doc.name,
                            names.join(", ")
                        )),
                );
                false
            } else {
                true
            }
        };
        let alert = |at: &str, name: &str, errors: &mut Vec<SpecError>| {
            if !alerts.iter().any(|a| a == name) {
                let mut e = src.error(
                    at,
                    format!("no alerting rule is named `{name}` in the stack's rule files"),
                );
                if let Some(near) = crate::util::closest(name, alerts.iter().map(String::as_str)) {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                errors.push(e);
            }
        };
        if self.doc.steps.is_empty() {
            errors.push(src.error("steps", "a scenario needs at least one step"));
        }
        for (i, step) in self.doc.steps.iter().enumerate() {
            let at = format!("steps.{i}");
            match step {
                Step::Load(l) => {
                    let shapes = usize::from(l.ramp.is_some())
                        + usize::from(!l.steps.is_empty())
                        + usize::from(l.spike.is_some());
                    if shapes > 1 {
                        errors.push(src.error(
                            &format!("{at}.load"),
                            "a load has one shape: `ramp`, `steps` or `spike`",
                        ));
                    }
                    let max = crate::load::MAX_RATE;
                    if let Some(r) = l.shape(1.0).rates().into_iter().find(|r| *r > max) {
                        errors.push(src.error(
                            &format!("{at}.load.rate"),
                            format!("{r}/s is above the engine's bound of {max}/s"),
                        ));
                    }
                    if l.in_flight
                        .is_some_and(|n| n == 0 || n > crate::load::MAX_IN_FLIGHT)
                    {
                        errors.push(src.error(
                            &format!("{at}.load.in_flight"),
                            format!("in_flight is between 1 and {}", crate::load::MAX_IN_FLIGHT),
                        ));
                    }
                    let at = format!("{at}.load.target");
                    if service(&at, &l.target, &mut errors) {
                        match stack.fixtures.get(&l.target) {
                            None => errors.push(src.error(
                                &at,
                                format!(
                                    "`{}` is not a fixture: load goes to a fixture service",
                                    l.target
                                ),
                            )),
                            Some(p) if p.route(&l.path).is_none() => errors.push(src.error(
                                &format!("steps.{i}.load.path"),
                                format!("fixture `{}` serves no route `{}`", l.target, l.path),
                            )),
                            _ => {}
                        }
                    }
                }
                Step::Chaos(c) => match c.action() {
                    Err(e) => errors.push(src.error(&format!("{at}.chaos"), e)),
                    Ok(Chaos::Container(_, s)) => {
                        service(&format!("{at}.chaos"), &s, &mut errors);
                    }
                    Ok(Chaos::FixtureSet(s, _)) | Ok(Chaos::FixtureReset(s)) => {
                        let at_f = format!("{at}.chaos.fixture");
                        if service(&at_f, &s, &mut errors)
                            && stack.service(&s).map(|x| x.kind) != Some(Kind::Fixture)
                        {
                            errors
                                .push(src.error(&at_f, format!("`{s}` is not a fixture service")));
                        }
                        if let (Some(set), Some(p)) = (&c.set, stack.fixtures.get(&s)) {
                            check_set(src, &format!("{at}.chaos.set"), set, p, &mut errors);
                        }
                    }
                    Ok(Chaos::TeamsFault(t, _)) | Ok(Chaos::TeamsReset(t)) => {
                        let at_t = format!("{at}.chaos.teams");
                        if service(&at_t, &t, &mut errors)
                            && stack.service(&t).map(|x| x.kind) != Some(Kind::TeamsMock)
                        {
                            errors.push(
                                src.error(&at_t, format!("`{t}` is not a teams-mock service")),
                            );
                        }
                        if let Some(f) = &c.fault {
                            let at_f = format!("{at}.chaos.fault");
                            if f.status.is_some_and(|s| !(400..=599).contains(&s)) {
                                errors.push(src.error(
                                    &format!("{at_f}.status"),
                                    "a fault status is an error status, 400-599",
                                ));
                            }
                            if f.status.is_some() && f.error_text.is_some() {
                                errors.push(src.error(
                                    &at_f,
                                    "a fault answers `status` or `error_text`, not both",
                                ));
                            }
                            if f.status.is_none() && f.delay.is_none() && f.error_text.is_none() {
                                errors.push(src.error(
                                    &at_f,
                                    "a fault sets `status`, `delay` or `error_text`",
                                ));
                            }
                        }
                    }
                },
                Step::ExpectAlert(a) | Step::ExpectResolved(a) => {
                    let kind = if matches!(step, Step::ExpectAlert(_)) {
                        "expect_alert"
                    } else {
                        "expect_resolved"
                    };
                    alert(&format!("{at}.{kind}.name"), &a.name, &mut errors);
                }
                Step::ExpectTeams(t) => {
                    alert(&format!("{at}.expect_teams.alert"), &t.alert, &mut errors);
                    if !stack
                        .doc
                        .services
                        .values()
                        .any(|s| s.kind == Kind::TeamsMock)
                    {
                        errors.push(src.error(
                            &format!("{at}.expect_teams"),
                            "the stack has no teams-mock service",
                        ));
                    }
                }
                Step::ExpectDashboards(d) => {
                    let titles = crate::panels::panel_titles(stack);
                    if titles.is_empty() {
                        errors.push(src.error(
                            &format!("{at}.expect_dashboards"),
                            "the stack provisions no dashboard",
                        ));
                    }
                    for (j, e) in d.expect_empty.iter().enumerate() {
                        if !titles.iter().any(|(_, t)| *t == e.name) {
                            let mut err = src.error(
                                &format!("{at}.expect_dashboards.expect_empty.{j}"),
                                format!("no dashboard of the stack has a panel `{}`", e.name),
                            );
                            let names = titles.iter().map(|(_, t)| t.as_str());
                            if let Some(near) = crate::util::closest(&e.name, names) {
                                err = err.with_help(format!("did you mean `{near}`?"));
                            }
                            errors.push(err);
                        }
                    }
                }
                Step::ExpectQuiet(_) | Step::Wait(_) => {}
            }
        }
        for (j, a) in self.doc.allow_alerts.iter().enumerate() {
            alert(&format!("allow_alerts.{j}"), &a.name, &mut errors);
        }
        SpecErrors { errors }.into_result()
    }
}
