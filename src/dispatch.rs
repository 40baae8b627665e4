//! The command line: each subcommand parses its arguments and calls the
//! library. Exit codes of `drill`: 0 every drill passed, 1 one failed (the
//! stack broke a promise), 2 bad input or a drill that could not run, 3 one
//! was inconclusive (a precondition could not be established), 4 one was
//! flaky (passed only on a retry; 0 with `--flaky-ok`).

use crate::images::ImageSource;
use crate::report::render_spec_errors;
use crate::spec::fixture::Profile;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "firedrill",
    version,
    about = "Fire drills for monitoring stacks: fault → metric → alert → Teams, with timing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run drill scenarios (files, or folders of *.yaml) end to end in containers.
    Drill(DrillArgs),
    /// Static checks of a stack, rule files or dashboards; no container.
    Lint {
        /// stack.yaml files, rule files or dashboard JSON (default: the reference stack).
        #[arg(default_value = "stack/stack.yaml")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: crate::lint::output::Format,
        /// Check metric names and jobs against this running Prometheus.
        #[arg(long)]
        live: Option<String>,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Which alert rules and dashboards of each stack some scenario covers; no container.
    Coverage {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Stacks to report even if no scenario names them (default:
        /// stack/stack.yaml and stack/*/stack.yaml).
        #[arg(long = "stack")]
        stacks: Vec<PathBuf>,
        /// Write the coverage as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Exit 1 unless every coverable alert and dashboard is covered.
        #[arg(long)]
        strict: bool,
    },
    /// Validate scenarios and their stacks; starts no container.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        stack: Option<PathBuf>,
    },
    /// Make every image present (pull, or build offline from Debian packages).
    Images {
        #[arg(long, value_enum, env = "FIREDRILL_IMAGES", default_value = "auto")]
        source: ImageSource,
    },
    /// Remove what firedrill runs left behind.
    Down {
        /// Every firedrill container and network, by label.
        #[arg(long)]
        all: bool,
        /// Only this run id.
        #[arg(long, conflicts_with = "all")]
        run: Option<String>,
    },
    /// A synthetic service from a fixture profile.
    Fixture {
        #[command(subcommand)]
        command: FixtureCommand,
    },
    /// The Microsoft Teams webhook mock.
    TeamsMock {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// File holding the webhook token (the secret part of the URL).
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Open-model HTTP load on a URL of this machine: requests at exact
    /// arrival times, latency corrected for coordinated omission.
    Load(LoadArgs),
}

/// What `firedrill load` takes.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// http://127.0.0.1:PORT/path (this machine only).
    url: String,
    /// Requests per second (`100`, `100/s`, `600/m`).
    #[arg(long)]
    rate: String,
    /// How long (`10s`, `2m`).
    #[arg(long)]
    duration: String,
    /// Ramp linearly from --rate to this rate over --over (default: the duration).
    #[arg(long)]
    ramp_to: Option<String>,
    #[arg(long, requires = "ramp_to")]
    over: Option<String>,
    #[arg(long, default_value = "GET")]
    method: String,
    /// A JSON body (sent with content-type: application/json).
    #[arg(long)]
    body: Option<String>,
    /// Requests in flight at most, hence connections at most.
    #[arg(long, alias = "in-flight")]
    connections: Option<usize>,
    /// Per-request timeout.
    #[arg(long, default_value = "60s")]
    timeout: String,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Write the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum FixtureCommand {
    /// Serve a profile.
    Serve {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// A variant of the profile (e.g. `v0` for vllm).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Validate a profile and every variant it declares.
    Check { profile: PathBuf },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIREDRILL_LOG")
        .unwrap_or_else(|_| "firedrill=info,warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn coverage(paths: &[PathBuf], mut stacks: Vec<PathBuf>, json: Option<&Path>, strict: bool) -> i32 {
    if stacks.is_empty() {
        for pat in ["stack/stack.yaml", "stack/*/stack.yaml"] {
            stacks.extend(glob::glob(pat).into_iter().flatten().flatten());
        }
    }
    let files = match scenario_files(paths) {
        Ok(f) => f,
        Err(e) => return fail2(e),
    };
    let cov = match crate::coverage::coverage(&files, &stacks) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return 2;
        }
    };
    print!("{}", crate::coverage::render(&cov));
    if let Some(p) = json {
        let text = match serde_json::to_string_pretty(&cov) {
            Ok(t) => t,
            Err(e) => return fail2(e),
        };
        if let Err(e) = std::fs::write(p, text) {
            return fail2(e);
        }
    }
    i32::from(strict && !cov.iter().all(|c| c.complete()))
}

/// What `firedrill drill` takes.
#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// Scenario files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Where images come from.
    #[arg(long, value_enum, env = "FIREDRILL_IMAGES", default_value = "auto")]
    images: ImageSource,
    /// Run against this stack file instead of the scenario's own.
    #[arg(long)]
    stack: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML (a test case per expectation).
    #[arg(long)]
    junit: Option<PathBuf>,
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
}

/// Scenario files named by `paths`: files as given, folders' *.yaml sorted.
pub fn scenario_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
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

pub fn main(cli: Cli) -> i32 {
    init_tracing();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Drill(args) => drill(args).await,
        Command::Lint {
            paths,
            format,
            live,
            deny_warnings,
        } => lint(&paths, format, live.as_deref(), deny_warnings).await,
        Command::Coverage {
            paths,
            stacks,
            json,
            strict,
        } => coverage(&paths, stacks, json.as_deref(), strict),
        Command::Check { paths, stack } => {
            let files = match scenario_files(&paths) {
                Ok(f) => f,
                Err(e) => return fail2(e),
            };
            let mut code = 0;
            for f in files {
                match crate::drill::check(&f, stack.as_deref()) {
                    Ok((s, _)) => println!(
                        "ok {} ({} steps, stack {})",
                        f.display(),
                        s.doc.steps.len(),
                        s.stack.doc.name
                    ),
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 2;
                    }
                }
            }
            code
        }
        Command::Images { source } => {
            let r = async {
                let docker = crate::docker::connect().await?;
                let bin = crate::images::firedrill_binary()?;
                let t = std::time::Instant::now();
                let imgs = crate::images::ensure(&docker, source, &bin).await?;
                let mut names: Vec<_> = imgs.by_component.iter().collect();
                names.sort();
                for (c, i) in names {
                    println!("{c:<18} {i}");
                }
                println!("{:<18} {}", "firedrill", imgs.firedrill);
                for (c, i) in [("grafana", &imgs.grafana), ("cadvisor", &imgs.cadvisor)] {
                    match i {
                        Ok(i) => println!("{c:<18} {i}"),
                        Err(why) => println!("{c:<18} skipped: {why}"),
                    }
                }
                println!("images ready in {:.1}s", t.elapsed().as_secs_f64());
                anyhow::Ok(())
            };
            match r.await {
                Ok(()) => 0,
                Err(e) => fail2(e),
            }
        }
        Command::Down { all, run } => {
            let r = async {
                let docker = crate::docker::connect().await?;
                let (c, n) = crate::stack::leftovers(&docker, None).await?;
                match (all, run) {
                    (_, Some(id)) => crate::stack::sweep(&docker, Some(&id)).await?,
                    (true, None) => crate::stack::sweep(&docker, None).await?,
                    (false, None) => anyhow::bail!("say --all or --run ID"),
                }
                let (c2, n2) = crate::stack::leftovers(&docker, None).await?;
                println!("removed {} container(s), {} network(s)", c - c2, n - n2);
                anyhow::Ok(())
            };
            match r.await {
                Ok(()) => 0,
                Err(e) => fail2(e),
            }
        }
        Command::Fixture { command } => match command {
            FixtureCommand::Serve {
                profile,
                listen,
                variant,
            } => match Profile::load_variant(&profile, variant.as_deref()) {
                Ok(p) => match crate::fixture::serve_fixture(p, &listen).await {
                    Ok(()) => 0,
                    Err(e) => fail2(e),
                },
                Err(e) => {
                    eprintln!("{}", render_spec_errors(&e));
                    2
                }
            },
            FixtureCommand::Check { profile } => match Profile::load(&profile) {
                Ok(p) => {
                    let variants: Vec<_> = p.variants.keys().cloned().collect();
                    println!(
                        "ok {}: {} families, {} routes{}",
                        profile.display(),
                        p.families.len(),
                        p.routes.len(),
                        if variants.is_empty() {
                            String::new()
                        } else {
                            format!(", variants: {}", variants.join(", "))
                        }
                    );
                    0
                }
                Err(e) => {
                    eprintln!("{}", render_spec_errors(&e));
                    2
                }
            },
        },
        Command::TeamsMock { listen, token_file } => {
            let token = match std::fs::read_to_string(&token_file) {
                Ok(t) => t.trim().to_string(),
                Err(e) => return fail2(anyhow::anyhow!("reading {}: {e}", token_file.display())),
            };
            match crate::fixture::teams::serve_mock(&listen, token).await {
                Ok(()) => 0,
                Err(e) => fail2(e),
            }
        }
        Command::Load(args) => load(args).await,
    }
}

async fn load(a: LoadArgs) -> i32 {
    let r = async {
        let dur = |s: &str| {
            crate::spec::Dur::parse(s)
                .map(|d| d.0)
                .map_err(anyhow::Error::msg)
        };
        let rate = |s: &str| crate::spec::parse_rate(s).map_err(anyhow::Error::msg);
        let (url, path) = crate::load::split_url(&a.url)?;
        let duration = dur(&a.duration)?;
        let base = rate(&a.rate)?;
        let shape = match &a.ramp_to {
            Some(to) => crate::load::Shape::Ramp {
                from: base,
                to: rate(to)?,
                over: a.over.as_deref().map(dur).transpose()?.unwrap_or(duration),
            },
            None => crate::load::Shape::Constant { rate: base },
        };
        let plan = crate::load::Plan {
            url,
            path,
            method: a.method.clone(),
            body: a.body.clone(),
            shape,
            duration,
            in_flight: a.connections,
            timeout: dur(&a.timeout)?,
            max_requests: a.requests,
        };
        let engine = crate::load::Engine::new();
        let load = engine.start(plan).await?;
        let summary = tokio::select! {
            s = load.finish() => s,
            _ = crate::util::interrupted() => anyhow::bail!("interrupted"),
        };
        println!("{}", summary.line());
        if let Some(p) = &a.json {
            std::fs::write(p, serde_json::to_string_pretty(&summary)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        anyhow::Ok(())
    };
    match r.await {
        Ok(()) => 0,
        Err(e) => fail2(e),
    }
}

async fn lint(
    paths: &[PathBuf],
    format: crate::lint::output::Format,
    live: Option<&str>,
    deny_warnings: bool,
) -> i32 {
    use crate::lint::output::{self, Format};
    use std::io::IsTerminal;
    for p in paths {
        if !p.exists() {
            return fail2(format!("{}: no such file", p.display()));
        }
    }
    let live = match live {
        Some(url) => match crate::lint::metrics::Live::fetch(url).await {
            Ok(l) => Some(l),
            Err(e) => return fail2(format!("--live {url}: {e:#}")),
        },
        None => None,
    };
    let opts = crate::lint::Options { live };
    let mut report = crate::lint::Report::default();
    for p in paths {
        report.merge(crate::lint::lint_path(p, &opts));
    }
    let text = match format {
        Format::Human => output::human(&report, std::io::stdout().is_terminal()),
        Format::Json => output::json(&report),
        Format::Junit => output::junit(&report),
    };
    println!("{text}");
    let warnings = report.findings.len() - report.errors();
    i32::from(report.errors() > 0 || (deny_warnings && warnings > 0))
}

fn fail2(e: impl std::fmt::Display) -> i32 {
    eprintln!("firedrill: {e:#}");
    2
}

/// Runs the scenarios as a suite, printing as it goes; exit 0 when every
/// drill passed, 1 when one failed, 2 when one could not run.
async fn drill(a: DrillArgs) -> i32 {
    let files = match scenario_files(&a.paths) {
        Ok(f) => f,
        Err(e) => return fail2(e),
    };
    use std::io::IsTerminal;
    let bars = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    let out = bars.clone();
    let say = move |text: &str| match &out {
        Some(mp) => {
            mp.println(text.trim_end()).ok();
        }
        None => print!("{text}"),
    };
    let opts = crate::drill::Options {
        images: a.images,
        stack: a.stack.clone(),
        fail_fast: a.fail_fast,
        share: !a.fresh_stack,
        jobs: a.jobs.into(),
        stacks: a.stacks.into(),
        retries: a.retries,
        prepared: tokio::sync::OnceCell::new(),
        progress: bars,
        on_event: Box::new(move |e| say(&crate::report::event_text(&e))),
    };
    let suite = std::time::Instant::now();
    // It validates every scenario before any container starts.
    let reports = match crate::suite::run(&files, &opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e:#}");
            return 2;
        }
    };
    let code = crate::report::exit_code(&reports, a.flaky_ok);
    if files.len() > 1 {
        print!(
            "{}",
            crate::report::suite_summary(&reports, suite.elapsed())
        );
    }
    if let Some(path) = &a.json {
        let text = match serde_json::to_string_pretty(&reports) {
            Ok(t) => t,
            Err(e) => return fail2(e),
        };
        if let Err(e) = std::fs::write(path, text) {
            return fail2(e);
        }
    }
    if let Some(path) = &a.junit {
        if let Err(e) = std::fs::write(path, crate::report::junit(&reports)) {
            return fail2(e);
        }
    }
    code
}
