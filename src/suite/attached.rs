//! Drills on a stack that is already running (`drill --attach FILE`): one
//! after another, on the stack as it is. Nothing is brought up, reset or
//! removed. The stack runs its own configuration, unscaled, so every
//! scenario runs at `time_scale: 1` (its windows are the rules' own), and
//! with no reset between drills each one starts from what the last left
//! (its calm precondition waits for the last alerts to resolve).

use super::settle;
use crate::drill::{self, Event, Options};
use crate::error::Result;
use crate::error::SpecErrors;
use crate::load;
use crate::render;
use crate::render::Effective;
use crate::report::DrillReport;
use crate::spec::attach::Attach;
use crate::spec::scenario::{Chaos, ContainerAction, Scenario, Step};
use crate::stack::Running;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Validates every scenario against the attach file's stack (before
/// anything is touched), then drills them in order on the running stack.
pub async fn run_attached(
    paths: &[PathBuf],
    opts: &Options,
    file: &Path,
) -> Result<Vec<DrillReport>> {
    let attach = Attach::load(file)?;
    let mut items = Vec::new();
    for p in paths {
        let (mut sc, _) = drill::check(p, Some(&attach.stack_path))?;
        if sc.doc.time_scale != 1.0 {
            tracing::info!(
                "{}: time_scale {} ignored: an attached stack runs its own, unscaled config",
                p.display(),
                sc.doc.time_scale
            );
        }
        sc.doc.time_scale = 1.0;
        let eff = render::render(&sc.stack, 1.0)?;
        items.push((sc, eff));
    }
    refuse_removal(&items)?;
    let Some(stack) = items.first().map(|(s, _)| &s.stack) else {
        return Ok(vec![]);
    };
    let docker = crate::stack::docker::connect().await?;
    let t = Instant::now();
    let running = Running::attached(&docker, stack, &attach).await?;
    // A stack just started (`docker-compose up -d`) has not scraped yet.
    running.wait_targets(stack, &items[0].1).await?;
    let took = t.elapsed();
    let engine = load::Engine::new();
    let mut reports = Vec::new();
    for ((sc, eff), path) in items.iter().zip(paths) {
        (opts.on_event)(Event::Wave {
            stack: &sc.stack.doc.name,
            run_id: &running.run_id,
            fresh: false,
            took,
            scenarios: &[path.display().to_string()],
        });
        let mut report = super::report_on(sc, &running, took);
        let t = Instant::now();
        let before = running.states().await;
        let foreign = Vec::new();
        report.interrupted = tokio::select! {
            _ = drill::on_stack(sc, eff, &running, opts, &foreign, &engine, &mut report) => false,
            _ = crate::util::interrupted() => true,
        };
        // Whatever way the drill ended, the user's containers as it found them.
        report.restored = running.restore(&before).await;
        if report.interrupted {
            report.error = Some(
                "interrupted (Ctrl-C or SIGTERM): the attached stack is put back as it was found"
                    .into(),
            );
        }
        report.wall = t.elapsed();
        let r = settle(None, report);
        (opts.on_event)(Event::Done(&r));
        let stop = r.interrupted;
        reports.push(r);
        if stop {
            break;
        }
    }
    engine.shutdown();
    Ok(reports)
}

/// An attached stack's containers are the user's: no step may remove one
/// (it could not be made again). Each such step at its line and column.
fn refuse_removal(items: &[(Scenario, Effective)]) -> Result<()> {
    let mut errors = Vec::new();
    for (sc, _) in items {
        for (i, step) in sc.doc.steps.iter().enumerate() {
            let Step::Chaos(c) = step else { continue };
            if let Ok(Chaos::Container(ContainerAction::Remove, s)) = c.action() {
                errors.push(sc.source.error(
                    &format!("steps.{i}"),
                    format!("`remove: {s}` on an attached stack: its containers are the user's, and a removed one cannot be made again; use `stop` or `kill`"),
                ));
            }
        }
    }
    Ok(SpecErrors { errors }.into_result()?)
}
