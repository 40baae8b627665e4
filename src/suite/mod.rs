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

mod attached;
mod partition;
mod plan;

pub use attached::run_attached;
pub use partition::Partition;
pub use plan::{longest_first, plan, settle, Footprint, Group};

use crate::drill::{self, Event, Foreign, Options};
use crate::error::Result;
use crate::images;
use crate::load;
use crate::render::Effective;
use crate::report::{DrillReport, Verdict};
use crate::spec::scenario::Scenario;
use crate::stack::{Docker, Running};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Validates every scenario (before any container starts), then drills them
/// all, stack by stack, and returns their reports in the order given. A
/// signal stops the suite: the drills running are reported INTERRUPTED, the
/// rest are not run, and nothing is left behind.
pub async fn run(paths: &[PathBuf], opts: &Options) -> Result<Vec<DrillReport>> {
    if let Some(file) = &opts.attach {
        return run_attached(paths, opts, file).await;
    }
    run_on(paths, opts, opts.share, opts.jobs).await
}

/// Runs one scenario end to end, on a stack of its own (`share`, `jobs`
/// and `stacks` do not apply; the callbacks, retries and prepared images of
/// `opts` do).
pub async fn run_one(path: &Path, opts: &Options) -> Result<DrillReport> {
    let mut reports = run_on(&[path.to_path_buf()], opts, false, 1).await?;
    reports
        .pop()
        .ok_or_else(|| crate::error::err!(Stack, "{}: no report", path.display()))
}

/// Scenario files named by `paths`: files as given, folders' *.yaml sorted.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(crate::error::Error::io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// [`run`] with sharing and concurrency given apart from `opts`.
async fn run_on(
    paths: &[PathBuf],
    opts: &Options,
    share: bool,
    jobs: usize,
) -> Result<Vec<DrillReport>> {
    let items: Vec<(Scenario, Effective)> = paths
        .iter()
        .map(|p| drill::check(p, opts.stack.as_deref()))
        .collect::<Result<_>>()?;
    let docker = crate::stack::docker::connect().await?;
    // Once per suite: the binary is hashed and every image checked only here.
    let imgs = opts
        .prepared
        .get_or_try_init(|| async { images::ensure(&docker, opts.images).await })
        .await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(async move {
        crate::util::interrupted().await;
        stop_tx.send(true).ok();
    });
    // Every load of every drill, in this process: dropped, it stops them all.
    let engine = load::Engine::new();
    // Drills that need what the machine lacks (a GPU) are reported skipped.
    let no_gpu = imgs.optional.values().find_map(|o| match o {
        images::Optional::NoGpu(why) => Some(why.as_str()),
        _ => None,
    });
    let unmet: std::collections::BTreeMap<usize, String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (s, _))| plan::unmet(s, no_gpu).map(|w| (i, w)))
        .collect();
    let mut groups = plan(&items, share, jobs);
    plan::leave_out(&mut groups, &unmet);
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
    for (i, why) in unmet {
        let mut r = DrillReport::new(&items[i].0, "");
        r.skipped = Some(why);
        let r = settle(None, r);
        (opts.on_event)(Event::Done(&r));
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

/// A wave's stack: brought up for it, or the group's, reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    New,
    Reset,
}

/// Why a wave has no stack.
#[derive(Debug, Clone, thiserror::Error)]
enum NoStack {
    /// It could not come up (the same stack would fail again: the group's
    /// other drills report it without another try).
    #[error("{0}")]
    Broken(String),
    /// A signal came while it was coming up or being reset.
    #[error("interrupted (Ctrl-C or SIGTERM) {0}: the stack was torn down")]
    Interrupted(&'static str),
}

/// What the whole suite shares while its groups run, side by side up to
/// `opts.stacks`.
struct SuiteRun<'a> {
    items: &'a [(Scenario, Effective)],
    prints: Vec<Footprint>,
    paths: &'a [PathBuf],
    opts: &'a Options,
    docker: &'a Docker,
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

/// A drill's report before its steps: the stack it runs on, with its
/// skipped and stood-in services.
fn report_on(sc: &Scenario, running: &Running, took: Duration) -> DrillReport {
    let mut report = DrillReport::new(sc, &running.run_id);
    report.bring_up = took;
    for s in running.services.values() {
        if let Some(why) = &s.skipped {
            report.skipped_services.push((s.name.clone(), why.clone()));
        }
        if let Some(what) = &s.stand_in {
            report.stand_ins.push((s.name.clone(), what.clone()));
        }
    }
    report
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
    ) -> (Result<Fresh, NoStack>, Duration) {
        let (sc, eff) = &self.items[first];
        let t = Instant::now();
        if let Some(r) = g.stack.as_ref() {
            let reset = tokio::select! {
                r = r.reset(&sc.stack, eff) => r.map_err(|e| format!("{e:#}")),
                _ = stopped(self.stop.clone()) => return (Err(NoStack::Interrupted("during a reset")), t.elapsed()),
            };
            match reset {
                Ok(_) => return (Ok(Fresh::Reset), t.elapsed()),
                Err(e) => {
                    tracing::warn!("the shared stack did not reset ({e}): bringing up a new one");
                    if let Some(r) = g.stack.take() {
                        r.down().await.ok();
                    }
                }
            }
        }
        if let Some(why) = &g.broken {
            return (Err(NoStack::Broken(why.clone())), t.elapsed());
        }
        let run_id = crate::stack::new_run_id();
        g.run_ids.push(run_id.clone());
        let up = tokio::select! {
            r = Running::up(self.docker, &sc.stack, eff, self.images, &run_id) => r.map_err(|e| NoStack::Broken(e.to_string())),
            _ = stopped(self.stop.clone()) => Err(NoStack::Interrupted("during bring-up")),
        };
        match up {
            Ok(r) => {
                g.stack = Some(r);
                (Ok(Fresh::New), t.elapsed())
            }
            Err(no) => {
                if let NoStack::Broken(why) = &no {
                    g.broken = Some(why.clone());
                }
                (Err(no), t.elapsed())
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
            Ok(fresh) => fresh == Fresh::New,
            Err(no) => {
                let interrupted = matches!(no, NoStack::Interrupted(_));
                for &i in wave {
                    let mut r = DrillReport::new(&self.items[i].0, "");
                    r.bring_up = took;
                    r.wall = took;
                    r.error = Some(no.to_string());
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
        let drills = wave
            .iter()
            .map(|&i| self.drill(i, wave, &names, running, took, fresh));
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

    /// Drill `i` of `wave` on `running`, beside the wave's other drills
    /// (named `names`), whose alerts it ignores; stopped by a signal.
    async fn drill(
        &self,
        i: usize,
        wave: &[usize],
        names: &[String],
        running: &Running,
        took: Duration,
        fresh: bool,
    ) -> DrillReport {
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
        let (sc, eff) = &self.items[i];
        let mut report = report_on(sc, running, took);
        report.fresh_stack = fresh;
        report.beside = names
            .iter()
            .filter(|n| **n != sc.doc.name)
            .cloned()
            .collect();
        let t = Instant::now();
        report.interrupted = tokio::select! {
            _ = drill::on_stack(sc, eff, running, self.opts, &foreign, self.engine, &mut report) => false,
            _ = stopped(self.stop.clone()) => true,
        };
        if report.interrupted {
            report.error = Some("interrupted (Ctrl-C or SIGTERM): the stack was torn down".into());
        }
        report.wall = took + t.elapsed();
        report
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
