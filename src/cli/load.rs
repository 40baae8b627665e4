//! `firedrill load`: the open-model engine on one URL of this machine.

use firedrill::load::{self, Engine, Plan, Shape};
use firedrill::spec::{parse_rate, Dur};
use firedrill::{Error, Result};
use std::path::PathBuf;

/// What `firedrill load` takes.
#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {
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

pub(crate) async fn run(a: LoadArgs) -> Result<i32> {
    let dur = |s: &str| Dur::parse(s).map(|d| d.0);
    let (url, path) = load::split_url(&a.url)?;
    let duration = dur(&a.duration)?;
    let base = parse_rate(&a.rate)?;
    let shape = match &a.ramp_to {
        Some(to) => Shape::Ramp {
            from: base,
            to: parse_rate(to)?,
            over: a.over.as_deref().map(dur).transpose()?.unwrap_or(duration),
        },
        None => Shape::Constant { rate: base },
    };
    let plan = Plan {
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
    let engine = Engine::new();
    let load = engine.start(plan).await?;
    let summary = tokio::select! {
        s = load.finish() => s,
        _ = firedrill::util::interrupted() => return Err(Error::Interrupted),
    };
    println!("{}", summary.line());
    if let Some(p) = &a.json {
        super::write(p, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(0)
}
