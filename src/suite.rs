//! A suite of drills on as few stacks as it can. Scenarios whose stacks
//! render alike (same stack file, same `time_scale`) share one stack,
//! brought up once and reset between waves ([`Running::reset`]: containers
//! back up; Prometheus, Alertmanager, the fixtures and the Teams mock
//! started over, with empty storage). In a wave, drills that
//! cannot disturb each other run at the same time: they touch disjoint
//! services, expect alerts of different names that Alertmanager groups
//! apart, and none of them needs the stack to itself. Each drill ignores the
//! alerts its neighbours expect; everything else still fails it.

use crate::drill::{self, Event, Foreign, Options, INTERRUPTED};
use crate::images;
use crate::report::DrillReport;
use crate::spec::scenario::{Chaos, Scenario, Step};
use crate::spec::stack::Kind;
use crate::stack::render::Effective;
use crate::stack::Running;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// What a scenario does to its stack, to tell which drills can run together.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// The services it loads or sets a fault on.
    pub services: BTreeSet<String>,
    /// The names of the alerts it expects.
    pub alerts: BTreeSet<String>,
    /// Why it must have the stack to itself, if it must.
    pub alone: Option<String>,
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
                            alone.push(format!(
                                "it burns the host's CPU or memory from {s}, which every service feels"
                            ));
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
/// signal stops the suite: the drills running get an error that starts with
/// [`INTERRUPTED`], the rest are not run, and nothing is left behind.
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
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        rx.wait_for(|v| *v).await.ok();
    };
    let mut reports: Vec<Option<DrillReport>> = vec![None; items.len()];
    let mut run_ids = Vec::new();
    'groups: for group in plan(&items, share, jobs) {
        let mut stack: Option<Running> = None;
        let mut broken: Option<String> = None;
        for wave in &group.waves {
            let (first, eff) = (&items[wave[0]].0, &items[wave[0]].1);
            let t = Instant::now();
            // The stack for this wave: the group's, reset, or a new one.
            if let Some(r) = &stack {
                let reset = tokio::select! {
                    r = r.reset(&first.stack, eff) => r,
                    _ = stopped(stop.clone()) => Err(anyhow::anyhow!(INTERRUPTED)),
                };
                if let Err(e) = reset {
                    tracing::warn!("the shared stack did not reset ({e:#}): bringing up a new one");
                    r.down().await.ok();
                    stack = None;
                }
            }
            let fresh = stack.is_none();
            if fresh && broken.is_none() {
                let run_id = crate::stack::new_run_id();
                run_ids.push(run_id.clone());
                let up = tokio::select! {
                    r = Running::up(&docker, &first.stack, eff, imgs, &run_id) => r,
                    _ = stopped(stop.clone()) => Err(anyhow::anyhow!("{INTERRUPTED} (Ctrl-C or SIGTERM) during bring-up: the stack was torn down")),
                };
                match up {
                    Ok(r) => stack = Some(r),
                    // The same stack would fail again: the group's drills all report it.
                    Err(e) => broken = Some(format!("{e:#}")),
                }
            }
            let took = t.elapsed();
            let names: Vec<String> = wave.iter().map(|&i| items[i].0.doc.name.clone()).collect();
            let files: Vec<String> = wave
                .iter()
                .map(|&i| paths[i].display().to_string())
                .collect();
            let Some(running) = &stack else {
                let why = broken.clone().unwrap_or_default();
                for &i in wave {
                    let mut r = DrillReport::new(&items[i].0, "");
                    r.bring_up = took;
                    r.wall = took;
                    r.error = Some(why.clone());
                    (opts.on_event)(Event::Done(&r));
                    reports[i] = Some(r);
                }
                if why.starts_with(INTERRUPTED) {
                    break 'groups;
                }
                continue;
            };
            (opts.on_event)(Event::Wave {
                stack: &first.stack.doc.name,
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
                        let (expected, _) = items[j].0.doc.expected_alerts();
                        expected
                            .into_iter()
                            .map(|(n, l)| (n.to_string(), l.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let beside: Vec<String> = names
                    .iter()
                    .filter(|n| **n != items[i].0.doc.name)
                    .cloned()
                    .collect();
                let stop = stop.clone();
                let (sc, eff) = &items[i];
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
                    let interrupted = tokio::select! {
                        _ = drill::on_stack(sc, eff, running, opts, &foreign, &mut report) => false,
                        _ = stopped(stop) => true,
                    };
                    if interrupted {
                        report.error = Some(format!(
                            "{INTERRUPTED} (Ctrl-C or SIGTERM): the stack was torn down"
                        ));
                    }
                    report.wall = took + t.elapsed();
                    (opts.on_event)(Event::Done(&report));
                    report
                }
            });
            let done = futures_util::future::join_all(drills).await;
            let mut halt = false;
            for (&i, r) in wave.iter().zip(done) {
                halt |= r
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(INTERRUPTED));
                reports[i] = Some(r);
            }
            if halt {
                break 'groups;
            }
        }
        if let Some(r) = stack.take() {
            if let Err(e) = r.down().await {
                tracing::warn!("teardown of run {}: {e:#}", r.run_id);
            }
        }
    }
    listener.abort();
    // Whatever happened, nothing of this suite stays behind.
    for id in &run_ids {
        crate::stack::sweep(&docker, Some(id)).await.ok();
    }
    Ok(reports.into_iter().flatten().collect())
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
}
