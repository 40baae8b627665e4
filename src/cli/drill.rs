//! `firedrill drill`: the scenarios as a suite, printed as they run, with
//! the JSON and JUnit reports asked for.

use super::progress::Bars;
use firedrill::{report, suite, ImageSource, Options, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// What `firedrill drill` takes.
#[derive(clap::Args, Debug)]
pub(crate) struct DrillArgs {
    /// Scenario files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Where images come from.
    #[arg(long, value_enum, env = "FIREDRILL_IMAGES", default_value = "auto")]
    images: ImageSource,
    /// Run against this stack file instead of the scenario's own.
    #[arg(long, conflicts_with = "attach")]
    stack: Option<PathBuf>,
    /// Drill a stack that is already running (docker-compose, by hand), as
    /// this attach file describes: its stack file, each service's port on
    /// 127.0.0.1 and container. Nothing is brought up or removed.
    #[arg(long)]
    attach: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML (a test case per expectation).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the report as one self-contained HTML file (alert timelines
    /// charted against their windows); with `--json` and no `--html`, it
    /// goes beside the JSON (`r.json` → `r.html`).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Stop a drill at its first failed step.
    #[arg(long)]
    fail_fast: bool,
    /// At most this many drills at once on one stack (only drills that
    /// cannot disturb each other run together).
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// A stack of its own for every drill, instead of one per stack file,
    /// reset between drills.
    #[arg(long)]
    fresh_stack: bool,
    /// At most this many stacks up at once, each running its drills (a
    /// drill that burns the host's CPU or memory runs alone on the machine).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    stacks: u16,
    /// Run a failed or inconclusive drill again, up to N times, on a reset
    /// stack; one that passes then is FLAKY (not green: exit 4).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Exit 0 when the only drills not passed at once are flaky.
    #[arg(long)]
    flaky_ok: bool,
    /// Run only this job's share of the scenario files, for a CI matrix of
    /// N jobs: `hash:I/N` (by file name, stable as files come and go) or
    /// `count:I/N` (every N-th file from the I-th).
    #[arg(long)]
    partition: Option<suite::Partition>,
}

/// Runs the scenarios as a suite, printing as it goes; exit 0 when every
/// drill passed, 1 when one failed, 2 when one could not run, 3 when one
/// was inconclusive, 4 when one was flaky (unless `--flaky-ok`).
pub(crate) async fn run(a: DrillArgs) -> Result<i32> {
    let mut files = suite::scenario_files(&a.paths)?;
    if let Some(p) = a.partition {
        let all = files.len();
        files = p.select(&files);
        println!("partition {p}: {} of {all} scenario file(s)", files.len());
    }
    let bars = Bars::on_terminal();
    let out = bars.clone();
    let mut opts = Options::default()
        .images(a.images)
        .stack(a.stack.clone())
        .attach(a.attach.clone())
        .fail_fast(a.fail_fast)
        .share(!a.fresh_stack)
        .jobs(a.jobs.into())
        .stacks(a.stacks.into())
        .retries(a.retries)
        .on_event({
            let terminal = std::sync::Mutex::new(report::Terminal::default());
            move |e| {
                let text = terminal.lock().expect("terminal lock").event(&e);
                Bars::say(out.as_ref(), &text)
            }
        });
    if let Some(b) = bars {
        opts = opts.progress(Arc::new(b));
    }
    let started = std::time::Instant::now();
    // It validates every scenario before any container starts.
    let reports = suite::run(&files, &opts).await?;
    let code = report::exit_code(&reports, a.flaky_ok);
    if files.len() > 1 {
        print!("{}", report::suite_summary(&reports, started.elapsed()));
    }
    if let Some(path) = &a.json {
        super::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    if let Some(path) = &a.junit {
        super::write(path, report::junit(&reports))?;
    }
    if let Some(path) = &a.html {
        let text = report::html(&reports, started.elapsed()).map_err(firedrill::Error::Invalid)?;
        super::write(path, text)?;
    } else if let Some(json) = &a.json {
        // Beside the JSON, as a courtesy: a failure there does not hide the verdict.
        let path = json.with_extension("html");
        let written = report::html(&reports, started.elapsed())
            .map_err(firedrill::Error::Invalid)
            .and_then(|t| super::write(&path, t));
        if let Err(e) = written {
            tracing::warn!("the HTML report beside the JSON: {e}");
        }
    }
    Ok(code)
}
