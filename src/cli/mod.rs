//! The command line, a thin layer over the library: [`Cli`] parses, one
//! module per subcommand calls the library and says what it found. A
//! subcommand returns its exit status, or a [`firedrill::Error`] whose
//! [`exit_code`](firedrill::Error::exit_code) the process exits with.
//! Exit codes of `drill`: 0 every drill passed, 1 one failed (the stack
//! broke a promise), 2 bad input or a drill that could not run, 3 one was
//! inconclusive (a precondition could not be established), 4 one was flaky
//! (passed only on a retry; 0 with `--flaky-ok`), 130 interrupted.

mod bench;
mod check;
mod coverage;
mod down;
mod drill;
mod fixture;
mod gpu;
mod images;
mod init;
mod lint;
mod live;
mod load;
mod progress;

use clap::{Parser, Subcommand};
use firedrill::ImageSource;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "firedrill",
    version,
    about = "Fire drills for monitoring stacks: fault → metric → alert → Teams, with timing"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run drill scenarios (files, or folders of *.yaml) end to end in containers.
    Drill(drill::DrillArgs),
    /// Static checks of a stack, rule files or dashboards; no container.
    Lint {
        /// stack.yaml files, rule files or dashboard JSON (default: the reference stack).
        #[arg(default_value = "stack/stack.yaml")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: firedrill::lint::output::Format,
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
    /// Write a drill per alert rule of a stack, by what its expression
    /// needs to fire; list the alerts no fault fits, with why. With
    /// --compose, first make the stack from a docker-compose file. No container.
    Init {
        /// The stack file.
        #[arg(long, required_unless_present = "compose", conflicts_with = "compose")]
        stack: Option<PathBuf>,
        /// A docker-compose file: writes OUT/stack.yaml, OUT/fixtures and
        /// OUT/scenarios (OUT defaults to `firedrill`).
        #[arg(long)]
        compose: Option<PathBuf>,
        /// Where the scenarios go (with --stack; default firedrill/scenarios),
        /// or the whole stack (with --compose; default firedrill).
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --compose: run the team's own services as they are (`kind:
        /// container`, their images built or present) instead of fixtures
        /// inferred from the rules and dashboards.
        #[arg(long, requires = "compose")]
        containers: bool,
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
    /// Remove what firedrill runs left behind: a run (`firedrill down RUN`),
    /// or every one.
    Down {
        /// The run id (`firedrill up` prints it).
        #[arg(conflicts_with_all = ["all", "run"])]
        id: Option<String>,
        /// Every firedrill container and network, by label.
        #[arg(long)]
        all: bool,
        /// Only this run id.
        #[arg(long, conflicts_with = "all")]
        run: Option<String>,
    },
    /// Bring a stack up and keep it, for a drill by hand: prints its run id
    /// and the URLs to open (Prometheus, Alertmanager, the Teams mock's
    /// cards, Grafana, fixtures).
    Up(live::UpArgs),
    /// Set a fault on a kept run: `stop backend`, `pause backend`,
    /// `fixture backend reset`, or a scenario's chaos step as YAML
    /// (`{fixture: backend, set: {latency: 500ms}}`).
    Chaos {
        /// The run id.
        run: String,
        /// The action, in words or as YAML.
        #[arg(required = true, num_args = 1..)]
        action: Vec<String>,
    },
    /// Follow a kept run's alerts live: pending, firing, the Teams card,
    /// resolved. Until Ctrl-C or `--for`.
    Watch {
        /// The run id.
        run: String,
        /// Stop after this long.
        #[arg(long = "for", default_value = "30m", value_parser = |s: &str| firedrill::spec::Dur::parse(s).map_err(|e| e.to_string()))]
        for_: firedrill::spec::Dur,
    },
    /// A synthetic service from a fixture profile.
    Fixture {
        #[command(subcommand)]
        command: fixture::FixtureCommand,
    },
    /// The Microsoft Teams webhook mock.
    TeamsMock {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// File holding the webhook token (the secret part of the URL).
        #[arg(long)]
        token_file: PathBuf,
    },
    /// firedrill's stand-in for cAdvisor: the run's containers, read
    /// through the Docker API, under cAdvisor's names and labels.
    Cadvisor {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Only containers with this label (`key=value`); by default those
        /// of the stand-in's own run.
        #[arg(long)]
        label: Option<String>,
    },
    /// firedrill's stand-in for dcgm-exporter: this machine's GPUs, read
    /// through NVML, under dcgm-exporter's names and labels.
    DcgmExporter {
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: String,
    },
    /// Put a GPU's SMs or memory under load (CUDA driver API), until
    /// Ctrl-C or `--for` has passed.
    Gpu(gpu::GpuArgs),
    /// Open-model HTTP load on a URL of this machine: requests at exact
    /// arrival times, latency corrected for coordinated omission.
    Load(load::LoadArgs),
    /// The knee of a URL of this machine: the highest arrival rate that
    /// holds an SLO, found by stepping and narrowing the rate.
    Bench(bench::BenchArgs),
}

/// Runs the command line; the process's exit status.
pub(crate) fn main(cli: Cli) -> i32 {
    init_tracing();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firedrill: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> firedrill::Result<i32> {
    match cli.command {
        Command::Drill(args) => drill::run(args).await,
        Command::Lint {
            paths,
            format,
            live,
            deny_warnings,
        } => lint::run(&paths, format, live.as_deref(), deny_warnings).await,
        Command::Coverage {
            paths,
            stacks,
            json,
            strict,
        } => coverage::run(&paths, stacks, json.as_deref(), strict),
        Command::Check { paths, stack } => check::run(&paths, stack.as_deref()),
        Command::Init {
            stack,
            compose,
            out,
            containers,
        } => {
            let own = match containers {
                true => firedrill::init::import::Own::Containers,
                false => firedrill::init::import::Own::Fixtures,
            };
            init::run(stack, compose, out, own)
        }
        Command::Images { source } => images::run(source).await,
        Command::Down { id, all, run } => down::run(all, id.or(run)).await,
        Command::Up(args) => live::up(args).await,
        Command::Chaos { run, action } => live::chaos(&run, &action.join(" ")).await,
        Command::Watch { run, for_ } => live::watch(&run, for_.0).await,
        Command::Fixture { command } => fixture::run(command).await,
        Command::TeamsMock { listen, token_file } => {
            fixture::teams_mock(&listen, &token_file).await
        }
        Command::Cadvisor { listen, label } => {
            firedrill::exporter::cadvisor::serve(&listen, label).await?;
            Ok(0)
        }
        Command::DcgmExporter { listen } => {
            firedrill::exporter::dcgm::serve(&listen).await?;
            Ok(0)
        }
        Command::Gpu(args) => gpu::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIREDRILL_LOG")
        .unwrap_or_else(|_| "firedrill=info,warn".into());
    // Colour only on a terminal, and not when NO_COLOR asks (no-color.org).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Writes a report file the user asked for.
fn write(path: &std::path::Path, text: String) -> firedrill::Result<()> {
    std::fs::write(path, text).map_err(firedrill::Error::io(path))
}
