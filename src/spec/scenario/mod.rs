//! Drill scenarios (scenarios/*.yaml): steps run in order, `load` in the
//! background. Every name a step uses (service, alert, route) is checked
//! against the stack before any container starts.

mod chaos;
mod validate;

pub use chaos::*;

use crate::error::{SpecError, SpecErrors};
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use crate::spec::{Dur, Rate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Requests at exact arrival times (an open model): `rate` per second, or
/// a shape that starts at `rate` (ramp, steps, spike). Durations scale with
/// the scenario's `time_scale`; rates do not (they are per real second).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStep {
    /// The fixture service the requests go to.
    pub target: String,
    /// The route path to request, default `/`.
    #[serde(default = "root")]
    pub path: String,
    /// Requests per second (`20/s`, `600/m`); a shape starts from it.
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

/// A linear change of a load's rate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// The rate the ramp ends at.
    pub to: Rate,
    /// How long the ramp takes, from the load's start.
    pub over: Dur,
}

/// One step of a stepped load.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    /// The rate from `after` on.
    pub rate: Rate,
    /// When this rate starts, from the load's start.
    pub after: Dur,
}

/// A burst above a load's base rate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    /// The rate during the burst.
    pub rate: Rate,
    /// When the burst starts, from the load's start.
    pub at: Dur,
    /// How long the burst lasts (`for`).
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
    /// The share of requests that fail, 0 to 1 (replaces the route's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// The status a failed request answers (replaces the route's).
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
    /// Crash this many times in a row: exit 1 now, and on each of the next
    /// starts exit 1 again after [`CRASH_LOOP_LIFE`] (a restart policy
    /// brings it back each time), then serve again. Ends by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<u32>,
    /// The model is loaded (`model_loaded` families; model routes answer 503 when not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_loaded: Option<bool>,
    /// Pin gauges of the profile to values (`django_db_connections_active: 95`),
    /// or raise its constant counters to a value (a counter never goes down).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, f64>,
    /// Multiplies what each request adds (tokens, cost, audio seconds): a
    /// prompt that balloons, an expensive model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_factor: Option<f64>,
    /// A synthetic host's disk: write a file of this size on it (as much
    /// as fits). Undone by a reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_used: Option<super::Bytes>,
    /// A synthetic host's disk: create this many empty files on it (as many
    /// as it has inodes for). Undone by a reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_files: Option<u64>,
    /// Workers of the routes with a `capacity` (of `route` alone, if
    /// given): a capacity regression. A worker busy when they are cut
    /// finishes its request first. Undone by a reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
}

/// How long each start of a crash loop lives before it exits again: long
/// enough for a scrape to see it, as an app that fails while starting.
pub const CRASH_LOOP_LIFE: std::time::Duration = std::time::Duration::from_secs(2);

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

/// An `expect_alert` or `expect_resolved` step: an alert to watch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAlert {
    /// The alerting rule's name.
    pub name: String,
    /// Labels the alert must carry, default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The longest fault → firing (or undo → resolved) path the team accepts:
    /// a stack whose own window is longer fails (e.g. a `for` made too long).
    pub within: Option<Dur>,
}

/// Which card an `expect_teams` step waits for.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TeamsStatus {
    /// The firing card is posted.
    Firing,
    /// The resolved card is posted.
    Resolved,
    /// Alertmanager sent the firing card, the (faulted) mock refused it, and
    /// no card was posted: the notification was lost.
    Lost,
}

/// An `expect_teams` step: a card for an alert reaches the Teams mock.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTeams {
    /// The alert the card is for.
    pub alert: String,
    /// Which card: `firing`, `resolved` or `lost`.
    pub status: TeamsStatus,
    /// The longest fault → Teams (or undo → Teams) path the team accepts.
    pub within: Option<Dur>,
    /// How late past its window the card may come (a Teams fault is on:
    /// Alertmanager retries 5xx), measured and reported.
    pub allow_late: Option<Dur>,
}

/// An `expect_quiet` step: no alert fires for a while.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectQuiet {
    /// How long no alert may fire (`for`), scaled by `time_scale`.
    #[serde(rename = "for")]
    pub for_: Dur,
}

/// Every panel target of every provisioned dashboard must have data over
/// the drill so far, but those listed here.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDashboards {
    /// Panels that may have no data, each with a reason.
    #[serde(default)]
    pub expect_empty: Vec<Excused>,
}

/// A panel (by title), or an alert (by name), excused with a reason.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Excused {
    /// The panel's title or the alert's name (also written `panel` or `alert`).
    #[serde(alias = "panel", alias = "alert")]
    pub name: String,
    /// An allowed alert only with these labels (`{job: cadvisor}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Why it is excused.
    pub reason: String,
}

/// A `bench` step: a capacity search on a fixture's route (issue 15), the
/// knee then judged by `expect_capacity`. Its steps are not scaled by
/// `time_scale`: each is a measurement's window, not the stack's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BenchStep {
    /// The fixture service benched.
    pub target: String,
    /// The route path, default `/`.
    #[serde(default = "root")]
    pub path: String,
    /// What must hold (`{p99: 250ms, errors: 1%}`).
    pub slo: crate::spec::bench::Slo,
    /// The first rate tried.
    pub from: Rate,
    /// The last rate tried.
    pub to: Rate,
    /// Rates tried from `from` to `to` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Halvings after the rate broke the SLO (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<u32>,
    /// How long each rate is held (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Dur>,
    /// Whole searches, for the knee's spread (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// A request past it is an error (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

impl BenchStep {
    /// The search it asks for, defaults filled in.
    pub fn search(&self) -> crate::spec::bench::Search {
        let d = crate::spec::bench::Search::new(self.slo.clone(), self.from.0, self.to.0);
        crate::spec::bench::Search {
            steps: self.steps.unwrap_or(d.steps),
            refine: self.refine.unwrap_or(d.refine),
            step: self.step.unwrap_or(d.step),
            repeat: self.repeat.unwrap_or(d.repeat),
            timeout: self.timeout.unwrap_or(d.timeout),
            ..d
        }
    }
}

/// An `expect_capacity` step: the knee of the last `bench` is at least
/// `at_least` (a CI gate in the manner of k6 thresholds).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectCapacity {
    /// The least knee that passes (`300/s`).
    pub at_least: Rate,
}

/// A `wait` step: a pause.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long to wait (`for`), scaled by `time_scale`.
    #[serde(rename = "for")]
    pub for_: Dur,
}

/// One step of a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Starts load in the background.
    Load(LoadStep),
    /// Sets a fault, or undoes one.
    Chaos(Box<ChaosStep>),
    /// Waits for an alert to fire within its window.
    ExpectAlert(ExpectAlert),
    /// Waits for an alert's card on the Teams mock.
    ExpectTeams(ExpectTeams),
    /// Waits for an alert to resolve after the undo.
    ExpectResolved(ExpectAlert),
    /// Checks that no alert fires for a while.
    ExpectQuiet(ExpectQuiet),
    /// Checks that every dashboard panel has data.
    ExpectDashboards(ExpectDashboards),
    /// Pauses the drill for a while.
    Wait(Wait),
    /// Searches a route's capacity at an SLO.
    Bench(Box<BenchStep>),
    /// Checks the last bench's knee against a floor.
    ExpectCapacity(ExpectCapacity),
}

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDoc {
    /// The scenario's name.
    pub name: String,
    /// What the drill is about, default empty.
    #[serde(default)]
    pub description: String,
    /// The stack file, relative to the scenario file.
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
    /// The scenario file's text, for located errors.
    pub source: Source,
    /// The scenario as written.
    pub doc: ScenarioDoc,
    /// Where the stack file is (`stack`, or the override).
    pub stack_path: PathBuf,
    /// The stack, loaded and validated.
    pub stack: Stack,
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
        validate::scenario(&s)?;
        Ok(s)
    }
}
