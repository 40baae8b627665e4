//! Running one scenario: validate, make images present, bring the stack up,
//! run the steps (load in the background, chaos, expectations), collect the
//! evidence, and tear down always — on success, failure, panic and Ctrl-C.

use crate::images::{self, ImageSource};
use crate::load::{self, LoadPlan, LoadSummary};
use crate::observe::{self, Delivery};
use crate::panels::{PanelCheck, Verdict};
use crate::report::{DrillReport, Outcome, StepResult};
use crate::spec::scenario::{
    Chaos, ContainerAction, ExpectAlert, ExpectDashboards, ExpectTeams, Scenario, Step, TeamsStatus,
};
use crate::spec::Dur;
use crate::stack::render::{self, Effective};
use crate::stack::Running;
use crate::verify::{between, Breakdown, Timing};
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
            prepared: tokio::sync::OnceCell::new(),
            on_event: Box::new(|_| {}),
            progress: None,
        }
    }
}

/// What a suite reports as it goes.
pub enum Event<'a> {
    /// Drills start on a stack just brought up (`fresh`) or reset.
    Wave {
        stack: &'a str,
        run_id: &'a str,
        fresh: bool,
        took: Duration,
        scenarios: &'a [String],
    },
    /// A step ended; `beside`: other drills run on the stack at the same time.
    Step {
        scenario: &'a str,
        beside: bool,
        step: &'a StepResult,
    },
    /// A drill ended.
    Done(&'a DrillReport),
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

/// How a drill's error starts when a signal stopped it.
pub const INTERRUPTED: &str = "interrupted";

/// Runs one scenario end to end, on a stack of its own (`share` and `jobs`
/// do not apply; the callbacks and prepared images of `opts` do).
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
/// drills running beside it expect.
pub(crate) async fn on_stack(
    scenario: &Scenario,
    eff: &Effective,
    running: &Running,
    opts: &Options,
    foreign: &Foreign,
    report: &mut DrillReport,
) {
    let mut drill = Drill::new(scenario, eff, running);
    drill.foreign = foreign;
    drill.progress = opts.progress.clone();
    drill.steps(report, opts).await;
    report.unexpected_alerts = match drill.unexpected_alerts().await {
        Ok(v) => v,
        Err(e) => vec![format!(
            "(the false-alert guard could not ask Prometheus: {e:#})"
        )],
    };
    drill.finish_loads(report).await;
    report.lower_bound = drill.lower_bound();
    report.panels = std::mem::take(&mut drill.panels);
    report.breakdowns = drill.breakdowns.into_values().collect();
}

struct Drill<'a> {
    scenario: &'a Scenario,
    eff: &'a Effective,
    running: &'a Running,
    prom: observe::Prometheus,
    am: Option<observe::Alertmanager>,
    teams: Option<observe::TeamsMock>,
    last_change: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    loads: Vec<load::Background>,
    breakdowns: BTreeMap<String, Breakdown>,
    panels: Vec<PanelCheck>,
    /// Latency injected per fixture now, and the latency the last change
    /// took away (requests in flight still take it).
    latency: BTreeMap<String, Duration>,
    tail: Duration,
    poll: Duration,
    /// Alerts the drills beside this one expect (not false alerts here).
    foreign: &'a Foreign,
    progress: Option<indicatif::MultiProgress>,
}

/// The first `status` card for `alert` received at or after `since`.
fn find_card<'a>(
    ds: &'a [Delivery],
    alert: &str,
    status: &str,
    since: DateTime<Utc>,
) -> Option<&'a Delivery> {
    // A card the mock refused (an injected fault) was not posted.
    ds.iter().find(|d| {
        d.received_at >= since
            && d.error.is_none()
            && d.status == status
            && d.alertnames.iter().any(|a| a == alert)
    })
}

fn label_subset(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", v.join(","))
}

impl<'a> Drill<'a> {
    fn new(scenario: &'a Scenario, eff: &'a Effective, running: &'a Running) -> Self {
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
            breakdowns: BTreeMap::new(),
            panels: Vec::new(),
            latency: BTreeMap::new(),
            tail: Duration::ZERO,
            foreign: &NO_FOREIGN,
            progress: None,
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

    async fn steps(&mut self, report: &mut DrillReport, opts: &Options) {
        self.started = Utc::now();
        for (i, step) in self.scenario.doc.steps.clone().iter().enumerate() {
            let t = Instant::now();
            let outcome = match self.step(step).await {
                Ok(o) => o,
                Err(e) => Outcome::fail(format!("{e:#}")),
            };
            let failed = outcome.status == crate::report::Status::Fail;
            let r = StepResult::new(i, step, outcome, t.elapsed());
            (opts.on_event)(Event::Step {
                scenario: &self.scenario.doc.name,
                beside: !self.foreign.is_empty(),
                step: &r,
            });
            report.steps.push(r);
            if failed && opts.fail_fast {
                report.not_run = self.scenario.doc.steps.len() - i - 1;
                break;
            }
        }
    }

    async fn step(&mut self, step: &Step) -> Result<Outcome> {
        match step {
            Step::Load(l) => {
                let duration = l
                    .duration
                    .map(|d| self.scaled(d))
                    .unwrap_or(load::MAX_DURATION);
                let route = self.scenario.stack.fixtures[&l.target]
                    .route(&l.path)
                    .ok_or_else(|| anyhow!("no route {}", l.path))?;
                let plan = LoadPlan {
                    url: self.running.url(&l.target)?,
                    method: route.method.clone(),
                    path: if l.path == route.path {
                        route.request_path()
                    } else {
                        l.path.clone()
                    },
                    body: route.body.as_ref().map(|b| b.to_string()),
                    rate: l.rate.0,
                    duration,
                };
                self.loads.push(load::Background::start(plan)?);
                Ok(Outcome::pass(format!(
                    "{}/s on {}{} in the background",
                    l.rate.0, l.target, l.path
                )))
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

    /// Every panel target over the drill so far (DESIGN §7): data, or
    /// excused by the scenario; an excuse for a panel that has data is stale
    /// and fails too, so the list stays true.
    async fn expect_dashboards(&mut self, d: &ExpectDashboards) -> Result<Outcome> {
        let absent = self.running.skipped();
        let scrape = self.eff.prometheus.config.scrape_interval();
        let checks = crate::panels::check(
            &self.scenario.stack,
            &self.prom,
            self.started,
            Utc::now(),
            scrape,
            &absent,
        )
        .await?;
        let excused = |title: &str| d.expect_empty.iter().any(|e| e.name == title);
        let (mut data, mut skipped, mut empty_ok) = (0, 0, 0);
        let mut bad = Vec::new();
        for c in &checks {
            match (&c.verdict, excused(&c.panel)) {
                (Verdict::Data { .. }, _) => data += 1,
                (Verdict::Skipped { .. }, _) => skipped += 1,
                (Verdict::NoData, true) => empty_ok += 1,
                (Verdict::NoData | Verdict::Error { .. }, _) => bad.push(c.line()),
            }
        }
        for e in &d.expect_empty {
            let mine: Vec<_> = checks.iter().filter(|c| c.panel == e.name).collect();
            if !mine.is_empty()
                && mine
                    .iter()
                    .all(|c| matches!(c.verdict, Verdict::Data { .. }))
            {
                bad.push(format!(
                    "`{}` is listed in expect_empty ({}) but has data: take it off the list",
                    e.name, e.reason
                ));
            }
        }
        self.panels.extend(checks.iter().cloned());
        let summary = format!(
            "{} panel target(s): {data} with data, {empty_ok} empty as expected, {skipped} skipped",
            checks.len()
        );
        Ok(if bad.is_empty() {
            Outcome::pass(summary)
        } else {
            Outcome::fail(format!(
                "{summary}; {} failed: {}",
                bad.len(),
                bad.join("; ")
            ))
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
        Ok(unexpected(
            series
                .iter()
                .map(|s| &s.metric)
                .filter(|m| !is_foreign(self.foreign, m)),
            &self.scenario.doc,
        ))
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

    async fn expect_quiet(&self, d: Duration) -> Result<Outcome> {
        let end = Instant::now() + d;
        let _bar = self.bar("expecting quiet".into(), d);
        let mut pending = std::collections::BTreeSet::new();
        while Instant::now() < end {
            for a in self.prom.alerts().await? {
                let name = a.labels.get("alertname").cloned().unwrap_or_default();
                if is_foreign(self.foreign, &a.labels) {
                    continue;
                }
                if a.state == "firing" {
                    return Ok(Outcome::fail(format!(
                        "expected no alert firing; {name}{} is firing",
                        fmt_labels(&a.labels)
                    )));
                }
                pending.insert(name);
            }
            tokio::time::sleep(self.poll).await;
        }
        let note = if pending.is_empty() {
            String::new()
        } else {
            format!(
                " (pending, not firing: {})",
                pending.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        Ok(Outcome::pass(format!(
            "nothing fired for {}{note}",
            crate::util::secs(d)
        )))
    }

    /// The least time the scenario can take on this stack, whatever the
    /// machine: quiet periods and waits, each expected alert's `for`, the
    /// group_wait before its first card, and the group_interval between its
    /// firing and resolved cards. Bring-up and detection are not counted.
    fn lower_bound(&self) -> Duration {
        // A timeline of earliest times: alerts expected after one fault
        // overlap (the longest `for` counts, not their sum).
        let mut t = Duration::ZERO;
        let mut fault = Duration::ZERO;
        let mut fired_card: BTreeMap<&str, Duration> = BTreeMap::new();
        let timing = |name: &str, labels: &BTreeMap<String, String>| {
            self.rule_timing(name, labels).ok().map(|(_, t)| t)
        };
        for step in &self.scenario.doc.steps {
            match step {
                Step::ExpectQuiet(q) => t += self.scaled(q.for_),
                Step::Wait(w) => t += self.scaled(w.for_),
                Step::Chaos(_) => fault = t,
                Step::ExpectAlert(a) => {
                    if let Some(tm) = timing(&a.name, &a.labels) {
                        t = t.max(fault + tm.for_);
                    }
                }
                Step::ExpectTeams(e) => {
                    let Some(tm) = timing(&e.alert, &BTreeMap::new()) else {
                        continue;
                    };
                    match e.status {
                        TeamsStatus::Resolved => {
                            if let Some(at) = fired_card.get(e.alert.as_str()) {
                                t = t.max(*at + tm.group_interval);
                            }
                        }
                        _ => {
                            let at = (fault + tm.for_ + tm.group_wait).max(t);
                            fired_card.insert(&e.alert, at);
                            t = at;
                        }
                    }
                }
                _ => {}
            }
        }
        t
    }

    fn rule_timing(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(crate::spec::prometheus::AlertRule, Timing)> {
        let rule = self
            .eff
            .prometheus
            .alert_rule(name)
            .ok_or_else(|| anyhow!("no alerting rule {name}"))?;
        let timing = Timing::for_alert(self.eff, &rule, labels);
        Ok((rule, timing))
    }

    /// A stack whose computed window exceeds what the scenario accepts fails
    /// at once: no waiting can make it pass.
    fn too_slow(
        &self,
        what: &str,
        bound: Duration,
        explain: &str,
        within: Option<Dur>,
    ) -> Option<Outcome> {
        let limit = self.scaled(within?);
        (bound > limit).then(|| {
            Outcome::fail(format!(
                "the stack as configured allows {what} up to {} ({explain}); the scenario requires within {}",
                crate::util::secs(bound),
                crate::util::secs(limit)
            ))
        })
    }

    fn fault_time(&self) -> DateTime<Utc> {
        self.last_change.unwrap_or(self.started)
    }

    async fn expect_alert(&mut self, a: &ExpectAlert) -> Result<Outcome> {
        let (rule, timing) = self.rule_timing(&a.name, &a.labels)?;
        if let Some(o) = self.too_slow(
            &format!("{} to fire after the fault", a.name),
            timing.fire_bound(),
            &timing.explain_fire(),
            a.within,
        ) {
            return Ok(o);
        }
        let fault = self.fault_time();
        let deadline = fault + timing.fire_bound();
        let mut bd = Breakdown {
            alert: a.name.clone(),
            labels: a.labels.clone(),
            fault_at: Some(fault),
            timing: Some(timing.clone()),
            ..Default::default()
        };
        let mut seen_other = None;
        let mut was_pending = None;
        let _bar = self.bar(
            format!("waiting for {} to fire", a.name),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let found = loop {
            let alerts = self.prom.alerts().await?;
            let mut hit = None;
            for al in alerts
                .iter()
                .filter(|x| x.labels.get("alertname") == Some(&a.name))
            {
                if label_subset(&a.labels, &al.labels) {
                    if al.state == "firing" {
                        hit = Some(al.clone());
                    } else {
                        was_pending = al.active_at;
                    }
                } else {
                    seen_other = Some(al.labels.clone());
                }
            }
            if hit.is_some() || Utc::now() > deadline {
                break hit;
            }
            tokio::time::sleep(self.poll).await;
        };
        let Some(alert) = found else {
            let mut msg = format!(
                "expected {}{} firing within {} of the fault ({}); ",
                a.name,
                fmt_labels(&a.labels),
                crate::util::secs(timing.fire_bound()),
                timing.explain_fire()
            );
            if let Some(since) = was_pending {
                msg.push_str(&format!(
                    "it was pending since {} but did not fire in time (for {})",
                    since.format("%H:%M:%S%.3f"),
                    crate::util::secs(timing.for_)
                ));
            } else if let Some(other) = seen_other {
                msg.push_str(&format!("seen instead with labels {}", fmt_labels(&other)));
            } else {
                let now = self
                    .prom
                    .query(&rule.expr, Utc::now())
                    .await
                    .unwrap_or_default();
                if now.is_empty() {
                    msg.push_str(&format!("seen: no pending or firing alert, and the rule expression `{}` returns no series (wrong job, label or metric name?)", rule.expr));
                } else {
                    let ls: Vec<String> =
                        now.iter().take(3).map(|s| fmt_labels(&s.metric)).collect();
                    msg.push_str(&format!(
                        "seen: no such alert; the expression returns {} series ({})",
                        now.len(),
                        ls.join(", ")
                    ));
                }
            }
            self.breakdowns.insert(a.name.clone(), bd);
            return Ok(Outcome::fail(msg));
        };
        bd.pending_at = alert.active_at;
        // Exact evaluation timestamps from the ALERTS series.
        let now = Utc::now();
        let window = (now - fault).to_std().unwrap_or_default() + 2 * timing.eval_interval;
        let mut sel: BTreeMap<String, String> = a.labels.clone();
        sel.insert("alertname".into(), a.name.clone());
        sel.insert("alertstate".into(), "firing".into());
        let selector = format!("ALERTS{}", fmt_selector(&sel));
        bd.firing_at = self
            .prom
            .raw_samples(&selector, window, now)
            .await?
            .iter()
            .flat_map(|s| s.values.iter().map(|(t, _)| *t))
            .reduce(f64::min)
            .map(observe::from_unix)
            .or(Some(now));
        bd.expr_true_at = self
            .expr_true(
                &rule.expr,
                &a.labels,
                fault,
                bd.pending_at.unwrap_or(now),
                &timing,
            )
            .await;
        let mut problems = Vec::new();
        if let Some(p) = bd.pending_at {
            if p + timing.eval_interval < fault {
                problems.push(format!("it was already active at {} , before the fault at {} (the baseline is not quiet)", p.format("%H:%M:%S%.3f"), fault.format("%H:%M:%S%.3f")));
            }
            if let Some(held) = between(Some(p), bd.firing_at) {
                if held + Duration::from_millis(1) < timing.for_ {
                    problems.push(format!(
                        "it fired after {} pending, before its `for` of {} (premature)",
                        crate::util::secs(held),
                        crate::util::secs(timing.for_)
                    ));
                }
            }
        }
        let took = between(Some(fault), bd.firing_at).unwrap_or_default();
        if took > timing.fire_bound() {
            problems.push(format!(
                "it fired {} after the fault; the window was {} ({})",
                crate::util::secs(took),
                crate::util::secs(timing.fire_bound()),
                timing.explain_fire()
            ));
        }
        self.breakdowns.insert(a.name.clone(), bd);
        Ok(if problems.is_empty() {
            Outcome::pass(format!(
                "{} firing {} after the fault (window {})",
                a.name,
                crate::util::secs(took),
                crate::util::secs(timing.fire_bound())
            ))
        } else {
            Outcome::fail(problems.join("; "))
        })
    }

    /// When the rule expression first returned a matching series, at scrape resolution.
    async fn expr_true(
        &self,
        expr: &str,
        labels: &BTreeMap<String, String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        t: &Timing,
    ) -> Option<DateTime<Utc>> {
        let step = (t.scrape_interval / 4).max(Duration::from_millis(100));
        // Range points fall on from + n·step: one step past `to` so the
        // evaluation that saw it true (at `to`) is always covered; the answer
        // is capped at `to`, since it cannot have turned true after that.
        let end = to + step;
        let series = self.prom.query_range(expr, from, end, step).await.ok()?;
        series
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.metric.get(k).is_none_or(|x| x == v))
            })
            .filter_map(|s| s.values.first().map(|(ts, _)| *ts))
            .reduce(f64::min)
            .map(observe::from_unix)
            .map(|first| first.min(to))
    }

    async fn expect_resolved(&mut self, a: &ExpectAlert) -> Result<Outcome> {
        let (_, mut timing) = self.rule_timing(&a.name, &a.labels)?;
        // Requests sent before the undo still take the injected latency,
        // and are observed when they end: the data turns that much later.
        timing.inflight_tail = self.tail;
        let bound = timing.resolve_bound();
        let explain = if self.tail.is_zero() {
            "data turn + eval + keep_firing_for + slack".to_string()
        } else {
            format!(
                "data turn + eval + keep_firing_for + slack + in-flight latency {}",
                crate::util::secs(self.tail)
            )
        };
        if let Some(o) = self.too_slow(
            &format!("{} to resolve after the undo", a.name),
            bound,
            &explain,
            a.within,
        ) {
            return Ok(o);
        }
        let undo = self.fault_time();
        let deadline = undo + bound;
        let _bar = self.bar(
            format!("waiting for {} to resolve", a.name),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let gone = loop {
            let still = self.prom.alerts().await?.into_iter().any(|x| {
                x.labels.get("alertname") == Some(&a.name) && label_subset(&a.labels, &x.labels)
            });
            if !still {
                break Some(Utc::now());
            }
            if Utc::now() > deadline {
                break None;
            }
            tokio::time::sleep(self.poll).await;
        };
        let bd = self
            .breakdowns
            .entry(a.name.clone())
            .or_insert_with(|| Breakdown {
                alert: a.name.clone(),
                labels: a.labels.clone(),
                timing: Some(timing.clone()),
                ..Default::default()
            });
        bd.undo_at = Some(undo);
        bd.resolved_at = gone;
        if let Some(t) = bd.timing.as_mut() {
            t.inflight_tail = self.tail;
        }
        Ok(match gone {
            Some(t) => Outcome::pass(format!(
                "{} resolved {} after the undo (window {})",
                a.name,
                crate::util::secs(between(Some(undo), Some(t)).unwrap_or_default()),
                crate::util::secs(bound)
            )),
            None => Outcome::fail(format!(
                "expected {}{} resolved within {} of the undo; it is still active",
                a.name,
                fmt_labels(&a.labels),
                crate::util::secs(bound)
            )),
        })
    }

    async fn expect_teams(&mut self, t: &ExpectTeams) -> Result<Outcome> {
        let (alert, status) = (t.alert.as_str(), t.status);
        let teams = self
            .teams
            .clone()
            .ok_or_else(|| anyhow!("the stack has no Teams mock"))?;
        let labels = self
            .breakdowns
            .get(alert)
            .map(|b| b.labels.clone())
            .unwrap_or_default();
        let (_, timing) = self.rule_timing(alert, &labels)?;
        let since = self.fault_time();
        let (want, bound) = match status {
            TeamsStatus::Firing | TeamsStatus::Lost => ("firing", timing.teams_bound()),
            TeamsStatus::Resolved => ("resolved", timing.teams_resolved_bound()),
        };
        let explain = match status {
            TeamsStatus::Firing | TeamsStatus::Lost => format!(
                "{} + group_wait {}",
                timing.explain_fire(),
                crate::util::secs(timing.group_wait)
            ),
            TeamsStatus::Resolved => format!(
                "resolve window {} + group_interval {}",
                crate::util::secs(timing.resolve_bound()),
                crate::util::secs(timing.group_interval)
            ),
        };
        if let Some(o) = self.too_slow(
            &format!("the {want} card for {alert}"),
            bound,
            &explain,
            t.within,
        ) {
            return Ok(o);
        }
        let late = t.allow_late.map(|d| self.scaled(d)).unwrap_or_default();
        let deadline = since + bound + late;
        let _bar = self.bar(
            format!("waiting for the {want} card of {alert}"),
            (deadline - Utc::now()).to_std().unwrap_or_default(),
        );
        let mut am_seen: Option<DateTime<Utc>> = None;
        let card = loop {
            if want == "firing" && am_seen.is_none() {
                if let Some(am) = &self.am {
                    am_seen = am
                        .alerts()
                        .await
                        .unwrap_or_default()
                        .iter()
                        .filter(|x| {
                            x.labels.get("alertname").map(String::as_str) == Some(alert)
                                && label_subset(&labels, &x.labels)
                        })
                        .map(|x| x.updated_at.min(Utc::now()))
                        .min();
                }
            }
            let ds = teams.deliveries().await?;
            if let Some(d) = find_card(&ds, alert, want, since) {
                break Ok((d.clone(), ds));
            }
            if Utc::now() > deadline {
                break Err(ds);
            }
            tokio::time::sleep(self.poll).await;
        };
        let failed = match &self.am {
            Some(am) => notification_failures(&am.metrics().await.unwrap_or_default()),
            None => vec![],
        };
        let refused = |ds: &[Delivery]| -> Vec<Delivery> {
            ds.iter()
                .filter(|d| {
                    d.received_at >= since
                        && d.format != "rejected"
                        && d.error.is_some()
                        && d.status == want
                        && d.alertnames.iter().any(|a| a == alert)
                })
                .cloned()
                .collect()
        };
        if status == TeamsStatus::Lost {
            return Ok(match card {
                Ok((d, _)) => Outcome::fail(format!(
                    "expected the firing card for {alert} to be lost; it was posted {} after the fault",
                    crate::util::secs(between(Some(since), Some(d.received_at)).unwrap_or_default())
                )),
                Err(ds) => {
                    let refused = refused(&ds);
                    match refused.first() {
                        None => Outcome::fail(format!(
                            "expected a lost card for {alert}: none was posted, but none was sent either (is a Teams fault on? did the alert fire?)"
                        )),
                        Some(first) => {
                            let evidence = if failed.is_empty() {
                                "Alertmanager counted it as sent: no alertmanager_notifications_failed_total shows the loss".to_string()
                            } else {
                                format!("evidence: {}", failed.join(", "))
                            };
                            Outcome::pass(format!(
                                "firing card for {alert} lost: {} attempt(s) refused ({}), none posted within {}; {evidence}",
                                refused.len(),
                                first.error.clone().unwrap_or_default(),
                                crate::util::secs(bound + late)
                            ))
                        }
                    }
                }
            });
        }
        let bd = self
            .breakdowns
            .entry(alert.to_string())
            .or_insert_with(|| Breakdown {
                alert: alert.into(),
                timing: Some(timing.clone()),
                ..Default::default()
            });
        match card {
            Ok((d, ds)) => {
                match status {
                    TeamsStatus::Resolved => bd.teams_resolved_at = Some(d.received_at),
                    _ => {
                        bd.teams_at = Some(d.received_at);
                        bd.alertmanager_at = am_seen.filter(|t| *t <= d.received_at);
                    }
                }
                let took = between(Some(since), Some(d.received_at)).unwrap_or_default();
                let mut msg = format!(
                    "{want} card for {alert} ({}) {} after the {} (window {})",
                    d.format,
                    crate::util::secs(took),
                    if want == "firing" { "fault" } else { "undo" },
                    crate::util::secs(bound)
                );
                let refused = refused(&ds);
                if let Some(first) = refused.first() {
                    let retried =
                        between(Some(first.received_at), Some(d.received_at)).unwrap_or_default();
                    msg.push_str(&format!(
                        "; posted after {} refused attempt(s), {} after the first",
                        refused.len(),
                        crate::util::secs(retried)
                    ));
                }
                if took > bound {
                    msg.push_str(&format!(
                        "; {} late (allow_late {})",
                        crate::util::secs(took - bound),
                        crate::util::secs(late)
                    ));
                }
                Ok(Outcome::pass(msg))
            }
            Err(ds) => {
                let mut msg = format!(
                    "expected a {want} Teams card for {alert} within {} of the {}",
                    crate::util::secs(bound + late),
                    if want == "firing" { "fault" } else { "undo" }
                );
                let rejected: Vec<String> = ds
                    .iter()
                    .filter(|d| d.received_at >= since && d.format == "rejected")
                    .map(|d| {
                        format!(
                            "HTTP {} {}",
                            d.http_status,
                            d.error.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                let cards: Vec<String> = ds
                    .iter()
                    .filter(|d| {
                        d.received_at >= since && d.format != "rejected" && d.error.is_none()
                    })
                    .map(|d| format!("{} {:?}", d.status, d.alertnames))
                    .collect();
                msg.push_str(&format!("; seen: {} card(s) {:?}", cards.len(), cards));
                if !rejected.is_empty() {
                    msg.push_str(&format!(
                        "; the mock rejected {} post(s): {}",
                        rejected.len(),
                        rejected.first().cloned().unwrap_or_default()
                    ));
                }
                let refused = refused(&ds);
                if let Some(first) = refused.first() {
                    msg.push_str(&format!(
                        "; the notification was lost: {} attempt(s) refused ({})",
                        refused.len(),
                        first.error.clone().unwrap_or_default()
                    ));
                }
                if !failed.is_empty() {
                    msg.push_str(&format!(
                        "; Alertmanager reports failed notifications: {}",
                        failed.join(", ")
                    ));
                }
                if want == "firing" && am_seen.is_none() && self.am.is_some() {
                    msg.push_str("; the alert never reached Alertmanager");
                }
                if let Some(r) = &timing.receiver {
                    msg.push_str(&format!("; route → receiver `{r}`"));
                }
                Ok(Outcome::fail(msg))
            }
        }
    }

    async fn finish_loads(&mut self, report: &mut DrillReport) {
        for l in self.loads.drain(..) {
            let plan = l.plan.clone();
            let summary = l.stop().await.unwrap_or_else(|e| {
                tracing::warn!("load on {}{}: {e:#}", plan.url, plan.path);
                LoadSummary::default()
            });
            report.loads.push((plan.path, summary));
        }
    }
}

static NO_FOREIGN: Foreign = Vec::new();

fn is_foreign(foreign: &Foreign, labels: &BTreeMap<String, String>) -> bool {
    let name = labels.get("alertname").map(String::as_str).unwrap_or("");
    foreign
        .iter()
        .any(|(n, l)| n == name && label_subset(l, labels))
}

fn fmt_selector(l: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!("{{{}}}", v.join(","))
}

/// The firing alerts (ALERTS series' labels) that no step of `doc` expects
/// and `allow_alerts` does not allow, as `Name{labels}`. A step's labels
/// must all be on the alert; a step with none (expect_teams) stands for
/// any alert of its name unless another step names labels for it.
pub fn unexpected<'a>(
    firing: impl Iterator<Item = &'a BTreeMap<String, String>>,
    doc: &crate::spec::scenario::ScenarioDoc,
) -> Vec<String> {
    let (expected, allowed) = doc.expected_alerts();
    let labelled: Vec<&str> = expected
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, _)| *n)
        .collect();
    let mut out: Vec<String> = firing
        .filter(|m| {
            let name = m.get("alertname").map(String::as_str).unwrap_or("");
            let ok = allowed
                .iter()
                .any(|(n, l)| *n == name && label_subset(l, m))
                || expected.iter().any(|(n, l)| {
                    *n == name
                        && if l.is_empty() {
                            !labelled.contains(n)
                        } else {
                            label_subset(l, m)
                        }
                });
            !ok
        })
        .map(|m| {
            let mut l = m.clone();
            l.remove("alertstate");
            l.remove("__name__");
            format!(
                "{}{}",
                l.get("alertname").cloned().unwrap_or_default(),
                fmt_labels(&l)
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `alertmanager_notifications_failed_total` series above zero, as evidence.
pub fn notification_failures(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("alertmanager_notifications_failed_total{")
                || l.starts_with("alertmanager_notification_requests_failed_total{")
        })
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                > 0.0
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::scenario::ScenarioDoc;

    fn alert(name: &str, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("alertname".into(), name.into());
        m.insert("alertstate".into(), "firing".into());
        m.insert("__name__".into(), "ALERTS".into());
        m
    }

    fn doc(yaml: &str) -> ScenarioDoc {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn the_guard_matches_names_and_labels() {
        let d = doc(
            "name: x\nstack: s\nsteps:\n  - expect_alert: {name: InstanceDown, labels: {job: vllm}}\n  - expect_teams: {alert: InstanceDown, status: firing}\n  - expect_teams: {alert: AppDown, status: firing}\nallow_alerts:\n  - {alert: Watchdog, reason: always on}\n  - {alert: HostDown, labels: {job: a}, reason: known}\n",
        );
        let firing = [
            alert("InstanceDown", &[("job", "vllm")]),
            alert("InstanceDown", &[("job", "cadvisor")]),
            alert("AppDown", &[("job", "vllm")]),
            alert("Watchdog", &[]),
            alert("HighLatency", &[("route", "/")]),
            alert("HostDown", &[("job", "a")]),
            alert("HostDown", &[("job", "b")]),
        ];
        assert_eq!(
            unexpected(firing.iter(), &d),
            vec![
                r#"HighLatency{route="/"}"#.to_string(),
                r#"HostDown{job="b"}"#.to_string(),
                r#"InstanceDown{job="cadvisor"}"#.to_string(),
            ]
        );
    }
}
