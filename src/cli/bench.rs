//! `firedrill bench`: the knee of one URL of this machine at an SLO.

use firedrill::bench::{self, BenchPlan, Exposition, HistogramSource, Search, Slo};
use firedrill::spec::{parse_rate, Dur, Rate};
use firedrill::{load, Error, Result};
use std::path::PathBuf;

/// What `firedrill bench` takes.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// http://127.0.0.1:PORT/path (this machine only).
    url: String,
    /// What must hold, repeatable: `p50=`, `p90=`, `p99=` a duration
    /// (corrected latency), `errors=` a ratio (`0.5%`).
    #[arg(long, required = true)]
    slo: Vec<String>,
    /// The first rate tried (`50`, `50/s`).
    #[arg(long, default_value = "10/s")]
    from: String,
    /// The last rate tried.
    #[arg(long, default_value = "1000/s")]
    to: String,
    /// Rates tried from --from to --to, evenly spaced.
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// Halvings between the last rate that held and the first that broke.
    #[arg(long, default_value_t = 4)]
    refine: u32,
    /// How long each rate is held.
    #[arg(long = "step", default_value = "10s")]
    step_duration: String,
    /// Whole searches, for the knee's spread.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    #[arg(long, default_value = "GET")]
    method: String,
    /// A JSON body (sent with content-type: application/json).
    #[arg(long)]
    body: Option<String>,
    /// Per-request timeout (a request past it is an error).
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Fail (exit 1) when the knee is below this rate: a capacity gate.
    #[arg(long)]
    at_least: Option<String>,
    /// The service's exposition (http://127.0.0.1:PORT/metrics): its
    /// latency histogram is read around each step and its quantiles set
    /// against the client's (dashboard truth).
    #[arg(long)]
    metrics: Option<String>,
    /// The histogram family read from --metrics.
    #[arg(long, default_value = "http_request_duration_seconds")]
    histogram: String,
    /// Only its series with this label (`route=/work`), repeatable. The
    /// client's side counts every answer, so match the route, not a status.
    #[arg(long = "match")]
    matchers: Vec<String>,
    /// Write the report as JSON (`knee_rps`, `knee`, `steps`).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) async fn run(a: BenchArgs) -> Result<i32> {
    let (url, path) = load::split_url(&a.url)?;
    let matchers = a
        .matchers
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Error::Invalid(format!("--match {m}: write it as label=value")))
        })
        .collect::<Result<_>>()?;
    let plan = BenchPlan {
        url,
        path,
        method: a.method.clone(),
        body: a.body.clone(),
        search: Search {
            slo: Slo::parse(&a.slo)?,
            from: Rate(parse_rate(&a.from)?),
            to: Rate(parse_rate(&a.to)?),
            steps: a.steps,
            refine: a.refine,
            step: Dur::parse(&a.step_duration)?,
            repeat: a.repeat,
            timeout: Dur::parse(&a.timeout)?,
        },
        exposition: a.metrics.as_ref().map(|url| Exposition {
            metrics_url: url.clone(),
            histograms: vec![HistogramSource {
                family: a.histogram.clone(),
                matchers,
            }],
        }),
    };
    let gate = a.at_least.as_deref().map(parse_rate).transpose()?;
    plan.check().await?;
    println!(
        "bench {}{}: at most {:.0}s",
        plan.url,
        plan.path,
        plan.search.longest().as_secs_f64()
    );
    let report = tokio::select! {
        r = bench::run(&plan, |s| {
            for l in s.lines() {
                println!("  {l}");
            }
        }) => r?,
        _ = firedrill::util::interrupted() => return Err(Error::Interrupted),
    };
    println!("{}", report.summary());
    if let Some(p) = &a.json {
        super::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(match (gate, report.knee_rps) {
        (Some(g), k) if k.is_none_or(|k| k < g) => {
            println!("FAILED: the knee is below {g:.1}/s");
            1
        }
        _ => 0,
    })
}
