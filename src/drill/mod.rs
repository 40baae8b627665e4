//! Running one scenario on a stack that is up: the step loop. Before a step
//! judges anything, the drill establishes what the judgement needs
//! (`ready`: the loads answer and Prometheus holds their series, the
//! alerts about to be provoked are calm, every panel's window is covered);
//! when it cannot, the drill ends INCONCLUSIVE with the evidence instead of
//! blaming the stack. The expectations themselves are in `expect` (and `teams`). Loads
//! run on the suite's in-process engine and stop with the drill, on every
//! exit path.

mod bench;
mod expect;
mod options;
mod ready;
mod teams;

pub use options::{OnEvent, Options, Progress};

pub use crate::report::Event;

use crate::error::{err, Result};

use crate::load;
use crate::observe;
use crate::panels::PanelCheck;
use crate::render::{self, Effective};
use crate::report::{DrillReport, LoadReport, Outcome, Status, StepKind, StepResult};
use crate::spec::fixture::RouteSpec;
use crate::spec::scenario::{Chaos, Scenario, Step};
use crate::spec::Dur;
use crate::stack::Running;
use crate::verify::{label_subset, Breakdown, Timing};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loads and validates a scenario: no container is started.
pub fn check(path: &Path, stack: Option<&Path>) -> Result<(Scenario, Effective)> {
    let scenario = Scenario::load(path, stack)?;
    // Files the drill does not read itself (dashboards, provisioning) must parse too.
    let mut lint = crate::lint::lint_path(&scenario.stack_path, &crate::lint::Options::default());
    lint.findings
        .retain(|f| matches!(f.check, "config" | "promql" | "datasource"));
    if !lint.findings.is_empty() {
        lint.routes.clear();
        let text = crate::lint::output::human(&lint, false);
        return Err(crate::error::Error::Invalid(text.trim_end().to_string()));
    }
    let eff = render::render(&scenario.stack, scenario.doc.time_scale)?;
    Ok((scenario, eff))
}

/// The last state a poll saw, and whether it was the one waited for.
pub(super) struct Polled<S> {
    state: S,
    done: bool,
}

/// The drill's polling loop for a wait with a deadline: `look` every
/// `every` until it says done or `deadline` passes; the last state either
/// way. The waits for an alert firing or resolving, a card, the loads'
/// answers and their series go through it (`expect_quiet` and `calm` run
/// loops of their own: one must last its whole window, the other judges
/// stall evidence each turn). The deadline is on the monotonic clock: a
/// step of the wall clock neither cuts a wait short nor stretches it.
pub(super) async fn poll_until<S>(
    deadline: Instant,
    every: Duration,
    mut look: impl AsyncFnMut() -> Result<(S, bool)>,
) -> Result<Polled<S>> {
    loop {
        let (state, done) = look().await?;
        if done || Instant::now() > deadline {
            return Ok(Polled { state, done });
        }
        tokio::time::sleep(every).await;
    }
}

/// A deadline given in wall-clock time (a fault's time plus a window), on
/// the monotonic clock.
pub(super) fn by(deadline: DateTime<Utc>) -> Instant {
    Instant::now() + (deadline - Utc::now()).to_std().unwrap_or_default()
}

/// Alerts another drill of the same wave expects: this one ignores them.
pub type Foreign = Vec<(String, BTreeMap<String, String>)>;

/// Runs the steps of `scenario` on a stack that is up, its own or shared,
/// and fills `report` with what they found. `foreign` are the alerts the
/// drills running beside it expect; `engine` runs its loads.
pub(crate) async fn on_stack(
    scenario: &Scenario,
    eff: &Effective,
    running: &Running,
    opts: &Options,
    foreign: &Foreign,
    engine: &load::Engine,
    report: &mut DrillReport,
) {
    let mut drill = Drill::new(scenario, eff, running, engine);
    drill.foreign = foreign;
    drill.progress = opts.progress.clone();
    drill.steps(report, opts).await;
    let judged = !report
        .steps
        .iter()
        .any(|s| s.status == Status::Inconclusive);
    // An inconclusive drill is not judged further: its false alerts could
    // be the stalled machine's as much as the stack's.
    if judged {
        report.unexpected_alerts = match drill.unexpected_alerts().await {
            Ok(v) => v,
            Err(e) => vec![format!(
                "(the false-alert guard could not ask Prometheus: {e:#})"
            )],
        };
    }
    drill.finish_loads(report).await;
    drill.held.end().await;
    report.lower_bound = drill.lower_bound();
    report.panels = std::mem::take(&mut drill.panels);
    report.benches = std::mem::take(&mut drill.benches);
    report.cards = drill.cards().await;
    report.breakdowns = drill.breakdowns.into_values().collect();
}

/// A load the drill started, with what it needs to tell it is warm.
struct Active {
    load: load::Load,
    target: String,
    route: RouteSpec,
    warm: bool,
}

struct Drill<'a> {
    scenario: &'a Scenario,
    eff: &'a Effective,
    running: &'a Running,
    engine: &'a load::Engine,
    prom: observe::Prometheus,
    am: Option<observe::Alertmanager>,
    /// Alertmanager's msteams notifications when the drill began, where
    /// no Teams mock is in reach (an attached stack): `expect_teams` then
    /// reads the counter.
    am_sent: Option<teams::Counts>,
    /// Whether an `expect_teams` already read that counter.
    counted: bool,
    teams: Option<observe::TeamsMock>,
    last_change: Option<DateTime<Utc>>,
    /// When the last change began to take effect (a fixture's memory hog
    /// ramps up from here to `last_change`).
    last_change_began: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    loads: Vec<Active>,
    /// When the loads last became warm (every panel window counts from it).
    warm_at: Option<DateTime<Utc>>,
    breakdowns: BTreeMap<String, Breakdown>,
    panels: Vec<PanelCheck>,
    /// What each `bench` step found.
    benches: Vec<crate::bench::BenchReport>,
    /// How long the last fault takes to show in the data (a queue filling).
    onset: Duration,
    /// Fixtures whose workers chaos cut, with the route it named.
    cut: BTreeMap<String, Option<String>>,
    /// Latency injected per fixture now, and the latency the last change
    /// took away (requests in flight still take it).
    latency: BTreeMap<String, Duration>,
    tail: Duration,
    poll: Duration,
    /// Prometheus' missed rule evaluations when the drill began and at each
    /// change of the stack, to tell whether it skipped any since a fault.
    missed: Vec<(DateTime<Utc>, f64)>,
    /// Alerts the drills beside this one expect (not false alerts here).
    foreign: &'a Foreign,
    progress: Option<Arc<dyn Progress>>,
    /// What chaos holds open until the drill ends (a database's connections).
    held: crate::chaos::Held,
}

static NO_FOREIGN: Foreign = Vec::new();

impl<'a> Drill<'a> {
    fn new(
        scenario: &'a Scenario,
        eff: &'a Effective,
        running: &'a Running,
        engine: &'a load::Engine,
    ) -> Self {
        let stack = &scenario.stack;
        let url = |name: &str| running.url(name).ok();
        let teams = stack
            .doc
            .services
            .iter()
            .find(|(_, s)| s.kind == crate::spec::stack::Kind::TeamsMock)
            .and_then(|(n, _)| url(n))
            .map(observe::TeamsMock::new);
        let eval = eff.prometheus.config.evaluation_interval();
        Drill {
            scenario,
            eff,
            running,
            engine,
            prom: observe::Prometheus::new(url(&stack.prometheus_service).unwrap_or_default()),
            am_sent: None,
            counted: false,
            am: stack
                .alertmanager_service
                .as_deref()
                .and_then(url)
                .map(observe::Alertmanager::new),
            teams,
            last_change: None,
            last_change_began: None,
            started: Utc::now(),
            loads: Vec::new(),
            warm_at: None,
            breakdowns: BTreeMap::new(),
            panels: Vec::new(),
            benches: Vec::new(),
            cut: BTreeMap::new(),
            onset: Duration::ZERO,
            latency: BTreeMap::new(),
            tail: Duration::ZERO,
            foreign: &NO_FOREIGN,
            progress: None,
            held: crate::chaos::Held::default(),
            missed: Vec::new(),
            poll: (eval / 4).clamp(Duration::from_millis(100), Duration::from_millis(500)),
        }
    }

    /// A chaos step: the fault set, and when it took effect.
    async fn chaos(&mut self, c: &crate::spec::scenario::ChaosStep) -> Result<Outcome> {
        let action = c.action().map_err(|e| err!(Component, e))?;
        // A container's fault starts when the action does: one that
        // stops gracefully is already refusing scrapes while it does.
        // A fixture's is in place when its control call returns: a
        // memory hog of gigabytes takes seconds to become resident;
        // held connections, when the last one is open.
        let started = Utc::now();
        let (stack, scale) = (&self.scenario.stack, self.scenario.doc.time_scale);
        let msg = crate::chaos::apply(self.running, stack, &mut self.held, scale, &action).await?;
        let at = match action {
            Chaos::FixtureSet(..) | Chaos::FixtureReset(_) | Chaos::PostgresHold(..) => Utc::now(),
            _ => started,
        };
        self.tail = match &action {
            Chaos::FixtureSet(f, set) => {
                let now = set.latency.map(|d| d.0).unwrap_or_default();
                self.latency.insert(f.clone(), now).unwrap_or_default()
            }
            Chaos::FixtureReset(f) => self.latency.remove(f).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        self.note_workers(&action);
        // A Teams fault is not a change of the monitored system:
        // windows still count from the last fault of the stack.
        if !matches!(action, Chaos::TeamsFault(..) | Chaos::TeamsReset(_)) {
            self.last_change = Some(at);
            self.last_change_began = Some(started);
            self.note_missed().await;
        }
        Ok(Outcome::pass(msg))
    }

    /// A progress bar for a wait of up to `bound` (none without a terminal).
    fn bar(&self, what: String, bound: Duration) -> Option<Box<dyn Send>> {
        let p = self.progress.as_ref()?;
        Some(p.wait(format!("{}: {what}", self.scenario.doc.name), bound))
    }

    fn scaled(&self, d: Dur) -> Duration {
        d.scaled(self.scenario.doc.time_scale).0
    }

    /// Records a step or precondition and tells the caller.
    fn record(&self, report: &mut DrillReport, opts: &Options, r: StepResult) {
        (opts.on_event)(Event::Step {
            scenario: &self.scenario.doc.name,
            beside: !self.foreign.is_empty() || opts.stacks > 1,
            step: &r,
        });
        report.steps.push(r);
    }

    async fn steps(&mut self, report: &mut DrillReport, opts: &Options) {
        self.started = Utc::now();
        self.note_missed().await;
        if self.teams.is_none() {
            self.am_sent = self.teams_counts().await;
        }
        let steps = self.scenario.doc.steps.clone();
        for (i, step) in steps.iter().enumerate() {
            let mut blocked = false;
            for (kind, pre) in self.preconditions(i, step) {
                let t = Instant::now();
                let outcome = match pre {
                    Pre::Warm => self.warm().await,
                    Pre::Calm(alerts) => self.calm(&alerts).await,
                    Pre::Covered => self.covered().await,
                };
                blocked |= outcome.status != Status::Pass;
                self.record(report, opts, StepResult::new(i, kind, outcome, t.elapsed()));
                if blocked {
                    break;
                }
            }
            if blocked {
                // Without its preconditions a judgement means nothing.
                report.not_run = steps.len() - i;
                break;
            }
            let t = Instant::now();
            let outcome = match self.step(step).await {
                Ok(o) => o,
                Err(e) => Outcome::fail(format!("{e:#}")),
            };
            let failed = outcome.status == Status::Fail;
            let r = StepResult::new(i, StepKind::of(step), outcome, t.elapsed());
            self.record(report, opts, r);
            if failed && opts.fail_fast {
                report.not_run = steps.len() - i - 1;
                break;
            }
        }
    }

    /// What must hold before step `i` runs.
    fn preconditions(&self, i: usize, step: &Step) -> Vec<(StepKind, Pre)> {
        let mut out = Vec::new();
        if !matches!(step, Step::Load(_)) && self.loads.iter().any(|l| !l.warm) {
            out.push((StepKind::Warm, Pre::Warm));
        }
        if matches!(step, Step::Chaos(_)) {
            let provoked = ready::provoked_by(&self.scenario.doc, i);
            if !provoked.is_empty() {
                out.push((StepKind::Calm, Pre::Calm(provoked)));
            }
        }
        if matches!(step, Step::ExpectDashboards(_)) {
            out.push((StepKind::Covered, Pre::Covered));
        }
        out
    }

    async fn step(&mut self, step: &Step) -> Result<Outcome> {
        match step {
            Step::Load(l) => {
                // A container's routes are its own: a plain GET of the path.
                let route = match self.scenario.stack.fixtures.get(&l.target) {
                    Some(p) => p
                        .route(&l.path)
                        .ok_or_else(|| err!(Component, "no route {}", l.path))?
                        .clone(),
                    None => RouteSpec::plain_get(&l.path),
                };
                let plan = load::Plan {
                    url: self.running.url(&l.target)?,
                    method: route.method.clone(),
                    path: route.path_for(&l.path),
                    body: route.body.as_ref().map(|b| b.to_string()),
                    shape: l.shape(self.scenario.doc.time_scale),
                    duration: l
                        .duration
                        .map(|d| self.scaled(d))
                        .unwrap_or(load::MAX_DURATION),
                    in_flight: l.in_flight,
                    timeout: load::DEFAULT_TIMEOUT,
                    max_requests: None,
                };
                let what = format!("{} on {}{}", plan.shape, l.target, l.path);
                let load = self.engine.start(plan).await?;
                self.loads.push(Active {
                    load,
                    target: l.target.clone(),
                    route,
                    warm: false,
                });
                Ok(Outcome::pass(format!("{what}, in the background")))
            }
            Step::Chaos(c) => self.chaos(c).await,
            Step::Wait(w) => {
                let _bar = self.bar("waiting".into(), self.scaled(w.for_));
                tokio::time::sleep(self.scaled(w.for_)).await;
                Ok(Outcome::pass(format!(
                    "waited {}",
                    crate::util::secs(self.scaled(w.for_))
                )))
            }
            Step::ExpectQuiet(q) => self.expect_quiet(self.scaled(q.for_)).await,
            Step::ExpectAlert(a) => self.expect_alert(a).await,
            Step::ExpectResolved(a) => self.expect_resolved(a).await,
            Step::ExpectTeams(t) => self.expect_teams(t).await,
            Step::ExpectDashboards(d) => self.expect_dashboards(d).await,
            Step::Bench(b) => self.bench(b).await,
            Step::ExpectCapacity(e) => self.expect_capacity(e),
        }
    }

    /// The false-alert guard: every alert that fired during the drill and
    /// that no step expects (nor `allow_alerts` allows), with its labels.
    async fn unexpected_alerts(&self) -> Result<Vec<String>> {
        let eval = self.eff.prometheus.config.evaluation_interval();
        let series = self
            .prom
            .query_range(
                r#"ALERTS{alertstate="firing"}"#,
                self.started,
                Utc::now(),
                eval,
            )
            .await?;
        Ok(crate::verify::unexpected(
            series
                .iter()
                .map(|s| &s.metric)
                .filter(|m| !is_foreign(self.foreign, m)),
            &self.scenario.doc,
        ))
    }

    /// The least time the scenario can take on this stack (see
    /// [`crate::verify::lower_bound`]).
    fn lower_bound(&self) -> Duration {
        let panel_window = crate::panels::widest_window(
            &self.scenario.stack,
            self.eff.prometheus.config.scrape_interval(),
            self.scenario.doc.time_scale,
        )
        .ok()
        .flatten()
        .map(|(_, w)| w)
        .unwrap_or_default();
        crate::verify::lower_bound(
            &self.scenario.doc,
            self.eff,
            crate::verify::BoundInputs {
                warm_up: self.eff.prometheus.config.scrape_interval(),
                panel_window,
            },
        )
    }

    /// The cards the Teams mock received since the drill began that tell
    /// of an alert it expects (those of drills beside it left out), refused
    /// attempts included: what the on-call saw, for the report.
    async fn cards(&self) -> Vec<crate::observe::Delivery> {
        let Some(teams) = &self.teams else {
            return vec![];
        };
        let (expected, _) = self.scenario.doc.expected_alerts();
        match teams.deliveries().await {
            Ok(all) => all
                .into_iter()
                .filter(|d| d.received_at >= self.started)
                .filter(|d| {
                    d.alertnames
                        .iter()
                        .any(|a| expected.iter().any(|(n, _)| n == a))
                })
                .collect(),
            Err(e) => {
                tracing::warn!("the Teams mock's cards: {e}");
                vec![]
            }
        }
    }

    /// Notes how many rule evaluations Prometheus has skipped so far.
    async fn note_missed(&mut self) {
        if let Ok(n) = self.prom.rule_iterations_missed().await {
            self.missed.push((Utc::now(), n));
        }
    }

    fn rule_timing(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(crate::spec::prometheus::AlertRule, Timing)> {
        let (rule, mut t) = Timing::of(self.eff, name, labels)
            .ok_or_else(|| err!(Component, "no alerting rule {name}"))?;
        t.onset = self.onset;
        Ok((rule, t))
    }

    fn fault_time(&self) -> DateTime<Utc> {
        self.last_change.unwrap_or(self.started)
    }

    /// When the last fault began to take effect: an alert active since
    /// then is the fault's, even if it went pending before the fault was
    /// fully in place.
    fn fault_began(&self) -> DateTime<Utc> {
        self.last_change_began.unwrap_or(self.started)
    }

    /// Stops every load of the drill and reports what each did.
    async fn finish_loads(&mut self, report: &mut DrillReport) {
        for a in self.loads.drain(..) {
            let path = a.load.plan.path.clone();
            report.loads.push(LoadReport {
                target: a.target,
                path,
                summary: a.load.stop().await,
            });
        }
    }
}

/// A precondition to establish before a step.
enum Pre {
    Warm,
    Calm(Vec<(String, BTreeMap<String, String>)>),
    Covered,
}

fn is_foreign(foreign: &Foreign, labels: &BTreeMap<String, String>) -> bool {
    let name = labels.get("alertname").map(String::as_str).unwrap_or("");
    foreign
        .iter()
        .any(|(n, l)| n == name && label_subset(l, labels))
}
