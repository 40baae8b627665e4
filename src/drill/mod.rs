//! Running one scenario on a stack that is up: the step loop. Before a step
//! judges anything, the drill establishes what the judgement needs
//! ([`ready`]: the loads answer and Prometheus holds their series, the
//! alerts about to be provoked are calm, every panel's window is covered);
//! when it cannot, the drill ends INCONCLUSIVE with the evidence instead of
//! blaming the stack. The expectations themselves are in [`expect`]. Loads
//! run on the suite's in-process engine and stop with the drill, on every
//! exit path.

mod expect;
mod ready;

pub use crate::report::Event;

use crate::images::{self, ImageSource};
use crate::load;
use crate::observe;
use crate::panels::PanelCheck;
use crate::report::{DrillReport, LoadReport, Outcome, Status, StepKind, StepResult};
use crate::spec::fixture::RouteSpec;
use crate::spec::scenario::{Chaos, ContainerAction, Scenario, Step};
use crate::spec::Dur;
use crate::stack::render::{self, Effective};
use crate::stack::Running;
use crate::verify::{label_subset, Breakdown, Timing};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to run drills.
pub struct Options {
    pub images: ImageSource,
    /// Run the scenarios against this stack file instead of their own.
    pub stack: Option<PathBuf>,
    /// Stop a drill at its first failed step (the rest are not run).
    pub fail_fast: bool,
    /// Drill the scenarios whose stacks render alike on one stack, brought
    /// up once and reset between waves (`false`: a stack per drill).
    pub share: bool,
    /// At most this many drills at once on a shared stack; only drills
    /// that cannot disturb each other run together (see [`crate::suite`]).
    pub jobs: usize,
    /// At most this many stacks up at once, each running its own drills; a
    /// drill with a fault the whole machine feels (a CPU or memory burn)
    /// runs with no other drill on the machine.
    pub stacks: usize,
    /// Run a failed or inconclusive drill again, up to this many times, on
    /// a reset stack; one that then passes is FLAKY.
    pub retries: u32,
    /// The images, made present by the first drill and reused by the next.
    pub prepared: tokio::sync::OnceCell<images::Images>,
    /// Told of each wave, step and drill as it happens (the CLI prints them).
    pub on_event: Box<dyn Fn(Event<'_>) + Send + Sync>,
    /// Where long waits draw their progress bars (none: no bars).
    pub progress: Option<indicatif::MultiProgress>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            images: ImageSource::Auto,
            stack: None,
            fail_fast: false,
            share: true,
            jobs: 4,
            stacks: 2,
            retries: 0,
            prepared: tokio::sync::OnceCell::new(),
            on_event: Box::new(|_| {}),
            progress: None,
        }
    }
}

/// Loads and validates a scenario: no container is started.
pub fn check(path: &Path, stack: Option<&Path>) -> Result<(Scenario, Effective)> {
    let scenario =
        Scenario::load(path, stack).map_err(|e| anyhow!(crate::report::render_spec_errors(&e)))?;
    // Files the drill does not read itself (dashboards, provisioning) must parse too.
    let mut lint = crate::lint::lint_path(&scenario.stack_path, &crate::lint::Options::default());
    lint.findings
        .retain(|f| matches!(f.check, "config" | "promql" | "datasource"));
    if !lint.findings.is_empty() {
        lint.routes.clear();
        return Err(anyhow!(
            "{}",
            crate::lint::output::human(&lint, false).trim_end()
        ));
    }
    let eff = render::render(&scenario.stack, scenario.doc.time_scale)?;
    Ok((scenario, eff))
}

/// Runs one scenario end to end, on a stack of its own (`share`, `jobs`
/// and `stacks` do not apply; the callbacks, retries and prepared images of
/// `opts` do).
pub async fn run(path: &Path, opts: &Options) -> Result<DrillReport> {
    let mut reports = crate::suite::run_on(&[path.to_path_buf()], opts, false, 1).await?;
    reports
        .pop()
        .ok_or_else(|| anyhow!("{}: no report", path.display()))
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
    report.lower_bound = drill.lower_bound();
    report.panels = std::mem::take(&mut drill.panels);
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
    teams: Option<observe::TeamsMock>,
    last_change: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    loads: Vec<Active>,
    /// When the loads last became warm (every panel window counts from it).
    warm_at: Option<DateTime<Utc>>,
    breakdowns: BTreeMap<String, Breakdown>,
    panels: Vec<PanelCheck>,
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
    progress: Option<indicatif::MultiProgress>,
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
            am: stack
                .alertmanager_service
                .as_deref()
                .and_then(url)
                .map(observe::Alertmanager::new),
            teams,
            last_change: None,
            started: Utc::now(),
            loads: Vec::new(),
            warm_at: None,
            breakdowns: BTreeMap::new(),
            panels: Vec::new(),
            latency: BTreeMap::new(),
            tail: Duration::ZERO,
            foreign: &NO_FOREIGN,
            progress: None,
            missed: Vec::new(),
            poll: (eval / 4).clamp(Duration::from_millis(100), Duration::from_millis(500)),
        }
    }

    /// A progress bar for a wait of up to `bound` (none without a terminal).
    fn bar(&self, what: String, bound: Duration) -> Option<crate::report::WaitBar> {
        let mp = self.progress.as_ref()?;
        Some(crate::report::WaitBar::start(
            mp,
            format!("{}: {what}", self.scenario.doc.name),
            bound,
        ))
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
                let route = self.scenario.stack.fixtures[&l.target]
                    .route(&l.path)
                    .ok_or_else(|| anyhow!("no route {}", l.path))?
                    .clone();
                let plan = load::Plan {
                    url: self.running.url(&l.target)?,
                    method: route.method.clone(),
                    path: if l.path == route.path {
                        route.request_path()
                    } else {
                        l.path.clone()
                    },
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
            Step::Chaos(c) => {
                let action = c.action().map_err(|e| anyhow!(e))?;
                // The fault starts when the action does: a container that
                // stops gracefully is already refusing scrapes while it does.
                let at = Utc::now();
                let msg = self.chaos(&action).await?;
                self.tail = match &action {
                    Chaos::FixtureSet(f, set) => {
                        let now = set.latency.map(|d| d.0).unwrap_or_default();
                        self.latency.insert(f.clone(), now).unwrap_or_default()
                    }
                    Chaos::FixtureReset(f) => self.latency.remove(f).unwrap_or_default(),
                    _ => Duration::ZERO,
                };
                // A Teams fault is not a change of the monitored system:
                // windows still count from the last fault of the stack.
                if !matches!(action, Chaos::TeamsFault(..) | Chaos::TeamsReset(_)) {
                    self.last_change = Some(at);
                    self.note_missed().await;
                }
                Ok(Outcome::pass(msg))
            }
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
        }
    }

    async fn chaos(&self, action: &Chaos) -> Result<String> {
        let r = self.running;
        Ok(match action {
            Chaos::Container(a, s) => {
                match a {
                    ContainerAction::Stop => r.stop(s).await?,
                    ContainerAction::Start => r.start(s).await?,
                    ContainerAction::Kill => r.kill(s).await?,
                    ContainerAction::Pause => r.pause(s).await?,
                    ContainerAction::Unpause => r.unpause(s).await?,
                }
                format!("{a:?} {s}").to_lowercase()
            }
            Chaos::FixtureSet(s, set) => {
                crate::fixture::control(&format!("{}/-/control", r.url(s)?), Some(set), s).await?;
                format!("{s}: {}", serde_json::to_string(set)?)
            }
            Chaos::FixtureReset(s) => {
                crate::fixture::control::<()>(&format!("{}/-/control", r.url(s)?), None, s).await?;
                format!("{s}: back to its profile")
            }
            Chaos::TeamsFault(t, f) => {
                let ms = |d: Option<Dur>| d.map(|d| self.scaled(d).as_millis() as u64);
                let fault = crate::fixture::teams::Fault {
                    status: f.status,
                    delay_ms: ms(f.delay),
                    error_text: f.error_text.clone(),
                    for_ms: ms(f.for_),
                };
                crate::fixture::control(&format!("{}/-/fault", r.url(t)?), Some(&fault), t).await?;
                format!("{t}: {}", serde_json::to_string(&fault)?)
            }
            Chaos::TeamsReset(t) => {
                crate::fixture::control::<()>(&format!("{}/-/fault", r.url(t)?), None, t).await?;
                format!("{t}: answers normally again")
            }
        })
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
        Timing::of(self.eff, name, labels).ok_or_else(|| anyhow!("no alerting rule {name}"))
    }

    fn fault_time(&self) -> DateTime<Utc> {
        self.last_change.unwrap_or(self.started)
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
