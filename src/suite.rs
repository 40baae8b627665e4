//! A suite of drills on as few stacks as it can. Scenarios whose stacks
//! render alike (same stack file, same `time_scale`) share one stack,
//! brought up once and reset between waves ([`Running::reset`]: containers
//! back up; Prometheus' rules reloaded with fresh state and its samples
//! deleted, Alertmanager restarted empty, the fixtures and the Teams mock
//! started over in process); stacks run side by side up to
//! `Options::stacks`, a drill with a fault the whole machine feels alone on
//! it. In a wave, drills that
//! cannot disturb each other run at the same time: they touch disjoint
//! services, expect alerts of different names that Alertmanager groups
//! apart, and none of them needs the stack to itself. Each drill ignores the
//! alerts its neighbours expect; everything else still fails it.

use crate::drill::{self, Event, Foreign, Options};
use crate::images;
use crate::load;
use crate::report::{Attempt, DrillReport, Verdict};
use crate::spec::scenario::{Chaos, Scenario, Step};
use crate::spec::stack::Kind;
use crate::stack::render::Effective;
use crate::stack::Running;
use anyhow::Result;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a scenario does to its stack, to tell which drills can run together.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// The services it loads or sets a fault on.
    pub services: BTreeSet<String>,
    /// The names of the alerts it expects.
    pub alerts: BTreeSet<String>,
    /// Why it must have the stack to itself, if it must.
    pub alone: Option<String>,
    /// Why it must have the whole machine to itself, if it must: a fault
    /// every process of the machine feels (a CPU or memory burn), which
    /// would slow the drills of other stacks as much as its own.
    pub host: Option<String>,
}

impl Footprint {
    pub fn of(sc: &Scenario, eff: &Effective) -> Footprint {
        let mut f = Footprint::default();
        let mut alone = Vec::new();
        for step in &sc.doc.steps {
            match step {
                Step::Load(l) => {
                    f.services.insert(l.target.clone());
                }
                Step::Chaos(c) => match c.action() {
                    Ok(Chaos::Container(a, s)) => {
                        let kind = sc.stack.doc.services.get(&s).map(|x| x.kind);
                        if matches!(
                            kind,
                            Some(Kind::Prometheus | Kind::Alertmanager | Kind::TeamsMock)
                        ) {
                            alone.push(format!(
                                "it sets `{a:?}` on {s}, which every drill goes through"
                            ));
                        }
                        f.services.insert(s);
                    }
                    Ok(Chaos::FixtureSet(s, set)) => {
                        if set.cpu_cores.is_some() || set.memory.is_some() {
                            let why = format!(
                                "it burns the host's CPU or memory from {s}, which every service feels"
                            );
                            alone.push(why.clone());
                            f.host.get_or_insert(why);
                        }
                        f.services.insert(s);
                    }
                    Ok(Chaos::FixtureReset(s)) => {
                        f.services.insert(s);
                    }
                    Ok(Chaos::TeamsFault(t, _) | Chaos::TeamsReset(t)) => alone.push(format!(
                        "it sets a fault on {t}, which every drill's cards go through"
                    )),
                    Err(_) => {}
                },
                Step::ExpectDashboards(_) => alone.push(
                    "it checks every dashboard panel, which other drills' faults change".into(),
                ),
                _ => {}
            }
        }
        let (expected, _) = sc.doc.expected_alerts();
        for (name, labels) in expected {
            f.alerts.insert(name.to_string());
            let (Some(am), Some(rule)) = (&eff.alertmanager, eff.prometheus.alert_rule(name))
            else {
                continue;
            };
            let mut all = rule.labels.clone();
            all.extend(labels.clone());
            all.insert("alertname".into(), name.to_string());
            for r in am.routes_for(&all) {
                if !r.groups_by_name() {
                    alone.push(format!(
                        "{name} is grouped by [{}] on receiver {}: another drill's alert could join its notification",
                        r.group_by.join(", "),
                        r.receiver
                    ));
                }
            }
        }
        if eff
            .alertmanager
            .as_ref()
            .is_some_and(|am| !am.config.inhibit_rules.is_empty())
        {
            alone.push(
                "Alertmanager has inhibit rules: one drill's alert could mute another's".into(),
            );
        }
        f.alone = alone.into_iter().next();
        f
    }

    /// Why the two cannot run at the same time on one stack, if they cannot.
    pub fn clash(&self, other: &Footprint) -> Option<String> {
        if let Some(why) = self.alone.as_ref().or(other.alone.as_ref()) {
            return Some(why.clone());
        }
        if let Some(s) = self.services.intersection(&other.services).next() {
            return Some(format!("both touch {s}"));
        }
        if let Some(a) = self.alerts.intersection(&other.alerts).next() {
            return Some(format!("both expect {a}"));
        }
        None
    }
}

/// One stack and the drills run on it, wave after wave; the drills of a
/// wave run at the same time. Indexes are into the suite's scenarios.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub waves: Vec<Vec<usize>>,
}

/// Groups longest first (by the sum of their drills' lower bounds), so that
/// stacks run side by side finish close together.
pub fn longest_first(items: &[(Scenario, Effective)], groups: &mut [Group]) {
    let bound = |g: &Group| -> Duration {
        g.waves
            .iter()
            .flatten()
            .map(|&i| {
                let (sc, eff) = &items[i];
                crate::verify::lower_bound(&sc.doc, eff, Default::default())
            })
            .sum()
    };
    groups.sort_by_key(|g| std::cmp::Reverse(bound(g)));
}

/// Groups scenarios by stack (when `share`), then packs each group's drills
/// into waves of at most `jobs` that do not clash, first fit, in file order.
pub fn plan(items: &[(Scenario, Effective)], share: bool, jobs: usize) -> Vec<Group> {
    let prints: Vec<Footprint> = items.iter().map(|(s, e)| Footprint::of(s, e)).collect();
    let key = |i: usize| {
        let (s, e) = &items[i];
        let path = s.stack_path.canonicalize().unwrap_or(s.stack_path.clone());
        (path, e.time_scale.to_bits())
    };
    // (stack file, time_scale bits): alike stacks; none when not sharing.
    type Key = Option<(PathBuf, u64)>;
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for i in 0..items.len() {
        let k = share.then(|| key(i));
        match groups.iter_mut().find(|(gk, _)| k.is_some() && *gk == k) {
            Some((_, members)) => members.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(_, members)| {
            let mut waves: Vec<Vec<usize>> = Vec::new();
            for i in members {
                let fits = |w: &Vec<usize>| {
                    w.len() < jobs.max(1)
                        && w.iter().all(|&j| prints[i].clash(&prints[j]).is_none())
                };
                match waves.iter_mut().find(|w| fits(w)) {
                    Some(w) => w.push(i),
                    None => waves.push(vec![i]),
                }
            }
            Group { waves }
        })
        .collect()
}

/// Validates every scenario (before any container starts), then drills them
/// all, stack by stack, and returns their reports in the order given. A
/// signal stops the suite: the drills running are reported INTERRUPTED, the
/// rest are not run, and nothing is left behind.
pub async fn run(paths: &[PathBuf], opts: &Options) -> Result<Vec<DrillReport>> {
    run_on(paths, opts, opts.share, opts.jobs).await
}

/// [`run`] with sharing and concurrency given apart from `opts`.
pub(crate) async fn run_on(
    paths: &[PathBuf],
    opts: &Options,
    share: bool,
    jobs: usize,
) -> Result<Vec<DrillReport>> {
    let items: Vec<(Scenario, Effective)> = paths
        .iter()
        .map(|p| drill::check(p, opts.stack.as_deref()))
        .collect::<Result<_>>()?;
    let docker = crate::docker::connect().await?;
    // Once per suite: the binary is hashed and every image checked only here.
    let imgs = opts
        .prepared
        .get_or_try_init(|| async {
            images::ensure(&docker, opts.images, &images::firedrill_binary()?).await
        })
        .await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(async move {
        crate::util::interrupted().await;
        stop_tx.send(true).ok();
    });
    // Every load of every drill, in this process: dropped, it stops them all.
    let engine = load::Engine::new();
    let mut groups = plan(&items, share, jobs);
    longest_first(&items, &mut groups);
    let suite = SuiteRun {
        items: &items,
        prints: items.iter().map(|(s, e)| Footprint::of(s, e)).collect(),
        paths,
        opts,
        docker: &docker,
        images: imgs,
        stop,
        engine: &engine,
        machine: tokio::sync::RwLock::new(()),
    };
    let outcomes: Vec<GroupOutcome> =
        futures_util::stream::iter(groups.iter().map(|g| suite.group(g)))
            .buffer_unordered(opts.stacks.max(1))
            .collect()
            .await;
    listener.abort();
    engine.shutdown();
    let mut reports: Vec<Option<DrillReport>> = vec![None; items.len()];
    for o in &outcomes {
        // Whatever happened, nothing of this suite stays behind.
        for id in &o.run_ids {
            crate::stack::sweep(&docker, Some(id)).await.ok();
        }
    }
    for (i, r) in outcomes.into_iter().flat_map(|o| o.reports) {
        reports[i] = Some(r);
    }
    Ok(reports.into_iter().flatten().collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    /// A signal came: stop the suite.
    Halt,
}

/// What the whole suite shares while its groups run, side by side up to
/// `opts.stacks`.
struct SuiteRun<'a> {
    items: &'a [(Scenario, Effective)],
    prints: Vec<Footprint>,
    paths: &'a [PathBuf],
    opts: &'a Options,
    docker: &'a bollard::Docker,
    images: &'a images::Images,
    stop: tokio::sync::watch::Receiver<bool>,
    engine: &'a load::Engine,
    /// Every wave holds it to read; a wave with a fault the whole machine
    /// feels holds it to write, alone on the machine.
    machine: tokio::sync::RwLock<()>,
}

/// What one group's run left: its drills' reports and its stacks' run ids.
struct GroupOutcome {
    reports: Vec<(usize, DrillReport)>,
    run_ids: Vec<String>,
}

/// One group's run: its stack, reports so far, and why its stack could not
/// come up (the same stack would fail again: its other drills report it
/// without another try).
#[derive(Default)]
struct GroupRun {
    stack: Option<Running>,
    reports: BTreeMap<usize, DrillReport>,
    run_ids: Vec<String>,
    broken: Option<String>,
}

/// Resolves once a signal has come.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    rx.wait_for(|v| *v).await.ok();
}

impl SuiteRun<'_> {
    fn halted(&self) -> bool {
        *self.stop.borrow()
    }

    /// One stack and its waves, then a retry of each drill that failed or
    /// was inconclusive, alone on the reset stack.
    async fn group(&self, group: &Group) -> GroupOutcome {
        let mut g = GroupRun::default();
        for wave in &group.waves {
            if self.halted() || self.wave(&mut g, wave, 0).await == Flow::Halt {
                break;
            }
        }
        for attempt in 1..=self.opts.retries {
            let again: Vec<usize> = g
                .reports
                .iter()
                .filter(|(_, r)| matches!(r.verdict, Verdict::Failed | Verdict::Inconclusive))
                .map(|(i, _)| *i)
                .collect();
            for i in again {
                if self.halted() || self.wave(&mut g, &[i], attempt).await == Flow::Halt {
                    break;
                }
            }
        }
        if let Some(r) = g.stack.take() {
            if let Err(e) = r.down().await {
                tracing::warn!("teardown of run {}: {e:#}", r.run_id);
            }
        }
        GroupOutcome {
            reports: g.reports.into_iter().collect(),
            run_ids: g.run_ids,
        }
    }

    /// The stack for a wave: the group's, reset, or a new one; whether it
    /// is fresh and how long that took, or why there is none (and whether a
    /// signal is why).
    async fn stack_for(
        &self,
        g: &mut GroupRun,
        first: usize,
    ) -> (Result<bool, (String, bool)>, Duration) {
        let (sc, eff) = &self.items[first];
        let t = Instant::now();
        if let Some(r) = g.stack.as_ref() {
            let reset = tokio::select! {
                r = r.reset(&sc.stack, eff) => r.map_err(|e| format!("{e:#}")),
                _ = stopped(self.stop.clone()) => return (Err(("interrupted (Ctrl-C or SIGTERM) during a reset: the stack was torn down".into(), true)), t.elapsed()),
            };
            match reset {
                Ok(_) => return (Ok(false), t.elapsed()),
                Err(e) => {
                    tracing::warn!("the shared stack did not reset ({e}): bringing up a new one");
                    if let Some(r) = g.stack.take() {
                        r.down().await.ok();
                    }
                }
            }
        }
        if let Some(why) = &g.broken {
            return (Err((why.clone(), false)), t.elapsed());
        }
        let run_id = crate::stack::new_run_id();
        g.run_ids.push(run_id.clone());
        let up = tokio::select! {
            r = Running::up(self.docker, &sc.stack, eff, self.images, &run_id) => r.map_err(|e| (format!("{e:#}"), false)),
            _ = stopped(self.stop.clone()) => Err(("interrupted (Ctrl-C or SIGTERM) during bring-up: the stack was torn down".into(), true)),
        };
        match up {
            Ok(r) => {
                g.stack = Some(r);
                (Ok(true), t.elapsed())
            }
            Err((why, interrupted)) => {
                if !interrupted {
                    g.broken = Some(why.clone());
                }
                (Err((why, interrupted)), t.elapsed())
            }
        }
    }

    /// Runs the drills of one wave side by side; `attempt` > 0 is a retry.
    async fn wave(&self, g: &mut GroupRun, wave: &[usize], attempt: u32) -> Flow {
        // The machine to itself for a fault every process feels; else shared.
        let host = wave.iter().any(|&i| self.prints[i].host.is_some());
        let (_shared, _alone) = if host {
            (None, Some(self.machine.write().await))
        } else {
            (Some(self.machine.read().await), None)
        };
        let (got, took) = self.stack_for(g, wave[0]).await;
        let fresh = match got {
            Ok(fresh) => fresh,
            Err((why, interrupted)) => {
                for &i in wave {
                    let mut r = DrillReport::new(&self.items[i].0, "");
                    r.bring_up = took;
                    r.wall = took;
                    r.error = Some(why.clone());
                    r.interrupted = interrupted;
                    self.settle(g, i, r, attempt);
                }
                return if interrupted { Flow::Halt } else { Flow::Go };
            }
        };
        let running = g
            .stack
            .as_ref()
            .expect("a stack after a successful bring-up");
        let names: Vec<String> = wave
            .iter()
            .map(|&i| self.items[i].0.doc.name.clone())
            .collect();
        let files: Vec<String> = wave
            .iter()
            .map(|&i| self.paths[i].display().to_string())
            .collect();
        (self.opts.on_event)(Event::Wave {
            stack: &self.items[wave[0]].0.stack.doc.name,
            run_id: &running.run_id,
            fresh,
            took,
            scenarios: &files,
        });
        let drills = wave.iter().map(|&i| {
            let foreign: Foreign = wave
                .iter()
                .filter(|&&j| j != i)
                .flat_map(|&j| {
                    let (expected, _) = self.items[j].0.doc.expected_alerts();
                    expected
                        .into_iter()
                        .map(|(n, l)| (n.to_string(), l.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let beside: Vec<String> = names
                .iter()
                .filter(|n| **n != self.items[i].0.doc.name)
                .cloned()
                .collect();
            let stop = self.stop.clone();
            let (sc, eff) = &self.items[i];
            let (opts, engine) = (self.opts, self.engine);
            async move {
                let mut report = DrillReport::new(sc, &running.run_id);
                report.bring_up = took;
                report.fresh_stack = fresh;
                report.beside = beside;
                for s in running.services.values() {
                    if let Some(why) = &s.skipped {
                        report.skipped_services.push((s.name.clone(), why.clone()));
                    }
                }
                let t = Instant::now();
                report.interrupted = tokio::select! {
                    _ = drill::on_stack(sc, eff, running, opts, &foreign, engine, &mut report) => false,
                    _ = stopped(stop) => true,
                };
                if report.interrupted {
                    report.error = Some("interrupted (Ctrl-C or SIGTERM): the stack was torn down".into());
                }
                report.wall = took + t.elapsed();
                report
            }
        });
        let done = futures_util::future::join_all(drills).await;
        let mut flow = Flow::Go;
        for (&i, r) in wave.iter().zip(done) {
            if r.interrupted {
                flow = Flow::Halt;
            }
            self.settle(g, i, r, attempt);
        }
        flow
    }

    /// Judges a drill's run and files it (see [`settle`]).
    fn settle(&self, g: &mut GroupRun, i: usize, r: DrillReport, attempt: u32) {
        let prev = if attempt > 0 {
            g.reports.remove(&i)
        } else {
            None
        };
        let r = settle(prev, r);
        (self.opts.on_event)(Event::Done(&r));
        g.reports.insert(i, r);
    }
}

/// The report of a drill's latest run, judged, with its earlier runs (`prev`,
/// when this one is a retry) kept as attempts: a retry that passes makes the
/// drill FLAKY, never plain PASSED.
pub fn settle(prev: Option<DrillReport>, mut r: DrillReport) -> DrillReport {
    r.verdict = r.judge();
    if let Some(prev) = prev {
        let mut attempts = prev.attempts.clone();
        attempts.push(Attempt {
            verdict: prev.verdict,
            run_id: prev.run_id.clone(),
            wall: prev.wall,
            why: prev.why_not_green(),
            step: prev.first_not_passed().map(|s| (s.index, s.kind)),
        });
        r.attempts = attempts;
        if r.verdict == Verdict::Passed {
            r.verdict = Verdict::Flaky;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, steps: &str) -> (Scenario, Effective) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let path = dir.join(format!("{name}.yaml"));
        let text = format!(
            "name: {name}\nstack: ../stack/seed-004/stack.yaml\ntime_scale: 0.1\nsteps:\n{steps}"
        );
        let source = crate::spec::source::Source::from_text(&path, text);
        let sc = Scenario::from_source(source, None).expect("a valid scenario");
        let eff = crate::stack::render::render(&sc.stack, sc.doc.time_scale).unwrap();
        (sc, eff)
    }

    #[test]
    fn disjoint_drills_share_a_wave_and_clashing_ones_do_not() {
        let items = vec![
            // django, DjangoHighResponseTime*
            scenario(
                "a",
                "  - chaos: {fixture: django, set: {latency: 1500ms}}\n  - expect_alert: {name: DjangoHighResponseTime}\n",
            ),
            // fastapi, FastAPIHighLatency: beside a
            scenario(
                "b",
                "  - chaos: {fixture: fastapi, set: {latency: 4s, route: /health}}\n  - expect_alert: {name: FastAPIHighLatency}\n",
            ),
            // django again: clashes with a
            scenario(
                "c",
                "  - chaos: {fixture: django, set: {error_ratio: 0.5}}\n  - expect_alert: {name: HighAuthFailureRate}\n",
            ),
            // checks dashboards: alone
            scenario("d", "  - expect_dashboards: {}\n"),
            // a Teams fault: alone
            scenario(
                "e",
                "  - chaos: {teams: teams, fault: {status: 500}}\n",
            ),
        ];
        assert_eq!(
            plan(&items, true, 4),
            vec![Group {
                waves: vec![vec![0, 1], vec![2], vec![3], vec![4]]
            }]
        );
        // One job: one drill at a time, still on one stack.
        assert_eq!(plan(&items, true, 1)[0].waves.len(), 5);
        // No sharing: a stack per drill.
        assert_eq!(plan(&items, false, 4).len(), 5);
        let fp = |i: usize| Footprint::of(&items[i].0, &items[i].1);
        assert_eq!(fp(0).clash(&fp(2)).unwrap(), "both touch django");
        assert!(fp(3).clash(&fp(1)).unwrap().contains("dashboard"));
        assert!(fp(4).clash(&fp(1)).unwrap().contains("fault on teams"));
    }

    #[test]
    fn a_retry_that_passes_is_flaky_and_keeps_the_first_run() {
        use crate::report::{Outcome, StepKind, StepResult};
        let (sc, _) = scenario("a", "  - expect_quiet: {for: 1s}\n");
        let run = |id: &str, o: Outcome| {
            let mut r = DrillReport::new(&sc, id);
            r.steps.push(StepResult::new(
                0,
                StepKind::ExpectQuiet,
                o,
                Duration::from_secs(1),
            ));
            r
        };
        let first = settle(None, run("r1", Outcome::inconclusive("no answer")));
        assert_eq!(first.verdict, Verdict::Inconclusive);
        let second = settle(Some(first), run("r1", Outcome::fail("HighX is firing")));
        assert_eq!(second.verdict, Verdict::Failed);
        let third = settle(Some(second), run("r1", Outcome::pass("quiet")));
        assert_eq!(third.verdict, Verdict::Flaky);
        let kept: Vec<Verdict> = third.attempts.iter().map(|a| a.verdict).collect();
        assert_eq!(kept, [Verdict::Inconclusive, Verdict::Failed]);
        assert!(third.attempts[1].why.contains("HighX is firing"));
        assert!(third.render().contains("FLAKY a"));
        // Never plain green: the exit code says so unless flaky is ok.
        let all = [third];
        assert_eq!(crate::report::exit_code(&all, false), 4);
        assert_eq!(crate::report::exit_code(&all, true), 0);
        let xml = crate::report::junit(&all);
        assert!(xml.contains("flakyFailure"), "{xml}");
    }
}
