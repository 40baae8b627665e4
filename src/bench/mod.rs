//! Capacity benchmarking (`firedrill bench`): steps the arrival rate of an
//! open-model load on one URL until a service-level objective breaks, then
//! narrows the rate between the last step that held it and the first that
//! broke it. The knee is the highest rate that held the SLO; run again
//! (`repeat`), its spread is its uncertainty.
//!
//! Each step is a fresh constant-rate load of the load engine, judged on the
//! client's corrected latency (from each request's due time, so a queue
//! building up is seen in full) and on its errors; it ends when every answer
//! is in, so one step's backlog never spills into the next.

pub mod headroom;
pub mod truth;

pub use crate::spec::bench::{Search, Slo, MAX_BENCH};

use crate::error::Result;
use crate::load::{Engine, LoadSummary, Plan, Shape};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Why `step` breaks the SLO, if it does.
fn broken(slo: &Slo, step: &Step) -> Option<String> {
    let mut why = Vec::new();
    for (name, limit, seen) in [
        ("p50", slo.p50_ms, step.p50_ms),
        ("p90", slo.p90_ms, step.p90_ms),
        ("p99", slo.p99_ms, step.p99_ms),
    ] {
        if let Some(l) = limit.filter(|l| seen > *l) {
            why.push(format!("{name} {seen:.1} ms > {l:.1} ms"));
        }
    }
    if let Some(l) = slo.error_ratio.filter(|l| step.error_ratio > *l) {
        why.push(format!(
            "errors {:.2}% > {:.2}%",
            step.error_ratio * 100.0,
            l * 100.0
        ));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// A bench: where, and the search.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// `http://127.0.0.1:PORT` (this machine only, as every load).
    pub url: String,
    /// The path requested.
    pub path: String,
    /// The HTTP method.
    pub method: String,
    /// A JSON body, if any.
    pub body: Option<String>,
    /// The SLO and how the rate moves.
    pub search: Search,
    /// The service's own metrics, read around each step: its latency
    /// histograms for the dashboard's truth, its process CPU and memory.
    pub exposition: Option<Exposition>,
}

/// Where a service's metrics are read, and which histograms of them.
#[derive(Debug, Clone)]
pub struct Exposition {
    /// `http://127.0.0.1:PORT/metrics` (this machine only).
    pub metrics_url: String,
    /// The latency histograms to hold against the client.
    pub histograms: Vec<HistogramSource>,
}

/// A latency histogram of the service (in seconds).
#[derive(Debug, Clone)]
pub struct HistogramSource {
    /// The family (`http_request_duration_seconds`).
    pub family: String,
    /// Only series with these labels (`route=/work`), summed by `le`.
    pub matchers: Vec<(String, String)>,
}

impl Exposition {
    async fn read(&self, http: &reqwest::Client) -> Result<Reading> {
        let text = http
            .get(&self.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Reading {
            at: std::time::Instant::now(),
            buckets: self
                .histograms
                .iter()
                .map(|h| truth::buckets(&text, &h.family, &h.matchers))
                .collect(),
            cpu_seconds: truth::sample(&text, "process_cpu_seconds_total"),
            rss_bytes: truth::sample(&text, "process_resident_memory_bytes"),
        })
    }
}

/// One read of the service's metrics.
struct Reading {
    at: std::time::Instant,
    buckets: Vec<Vec<(f64, f64)>>,
    cpu_seconds: Option<f64>,
    rss_bytes: Option<f64>,
}

/// What the target used during a step, from its process metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    /// CPU, in cores (its CPU seconds over the step's seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Resident memory at the step's end, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
}

impl Usage {
    fn between(a: &Reading, b: &Reading) -> Usage {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        Usage {
            cpu_cores: match (a.cpu_seconds, b.cpu_seconds) {
                (Some(x), Some(y)) if secs > 0.0 && y >= x => Some((y - x) / secs),
                _ => None,
            },
            rss_mib: b.rss_bytes.map(|r| r / (1024.0 * 1024.0)),
        }
    }
}

impl BenchPlan {
    /// Refuses a bench out of its bounds, before any request.
    pub async fn check(&self) -> Result<()> {
        self.search.check()?;
        crate::load::loopback(&self.url).await?;
        if let Some(e) = &self.exposition {
            // Its exposition is read on this machine only, as every load.
            crate::load::loopback(&e.metrics_url).await?;
        }
        Ok(())
    }
}

/// One rate held for a step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Which search (from 1).
    pub run: u32,
    /// The rate asked, per second.
    pub requested_rps: f64,
    /// The rate sent, per second.
    pub achieved_rps: f64,
    /// Corrected latency percentiles, ms.
    pub p50_ms: f64,
    /// Its 90th percentile, ms.
    pub p90_ms: f64,
    /// Its 99th percentile, ms.
    pub p99_ms: f64,
    /// The 99th percentile from the real send (hides queueing in the client), ms.
    pub uncorrected_p99_ms: f64,
    /// Answers 4xx/5xx, failures, unfinished and dropped requests, over
    /// all that came due.
    pub error_ratio: f64,
    /// Whether the SLO held.
    pub holds: bool,
    /// What broke it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// The service's histograms against the client, per quantile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truth: Vec<truth::Truth>,
    /// What the target used, from its process metrics.
    pub target: Usage,
    /// When the step's load began.
    pub started: DateTime<Utc>,
    /// When its last answer was in.
    pub ended: DateTime<Utc>,
    /// The load's full figures.
    #[serde(skip)]
    pub load: LoadSummary,
}

impl Step {
    fn of(run: u32, rate: f64, s: LoadSummary, slo: &Slo) -> Step {
        let now = Utc::now();
        // Arrivals the client dropped (its in-flight bound full) were never
        // served either: errors, of all that came due.
        let bad: u64 = s
            .status_codes
            .iter()
            .filter(|(c, _)| **c >= 400)
            .map(|(_, n)| n)
            .sum::<u64>()
            + s.failures.values().sum::<u64>()
            + s.unfinished
            + s.dropped;
        let due = s.requests + s.dropped;
        let mut step = Step {
            run,
            requested_rps: rate,
            achieved_rps: s.achieved_rate,
            p50_ms: s.latency_ms.corrected.p50,
            p90_ms: s.latency_ms.corrected.p90,
            p99_ms: s.latency_ms.corrected.p99,
            uncorrected_p99_ms: s.latency_ms.uncorrected.p99,
            error_ratio: if due == 0 {
                0.0
            } else {
                bad as f64 / due as f64
            },
            holds: false,
            broken: None,
            truth: Vec::new(),
            target: Usage::default(),
            started: now,
            ended: now,
            load: s,
        };
        step.broken = broken(slo, &step);
        step.holds = step.broken.is_none();
        step
    }

    /// Its lines for the terminal: the step, what the target used, then
    /// each histogram's quantiles against the client (to indent).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("run {} {}", self.run, self.line())];
        if let Some(c) = self.target.cpu_cores {
            out.push(format!(
                "    target: {c:.2} CPU cores, {:.1} MiB resident",
                self.target.rss_mib.unwrap_or(0.0)
            ));
        }
        out.extend(self.truth.iter().map(|t| format!("    {}", t.line())));
        out
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "{:>8.1}/s asked, {:>8.1}/s sent: p50 {:.1} / p90 {:.1} / p99 {:.1} ms, errors {:.2}%  {}",
            self.requested_rps,
            self.achieved_rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.error_ratio * 100.0,
            match &self.broken {
                None => "holds".to_string(),
                Some(w) => format!("BREAKS ({w})"),
            }
        )
    }
}

/// The knee over the searches.
#[derive(Debug, Clone, Serialize)]
pub struct Knee {
    /// Each search's knee (none: the SLO broke at the first rate).
    pub runs: Vec<Option<f64>>,
    /// Their mean, over the searches that found one.
    pub mean: Option<f64>,
    /// The lowest.
    pub min: Option<f64>,
    /// The highest.
    pub max: Option<f64>,
    /// The SLO held at every rate tried: the knee is above `to`.
    pub above_range: bool,
}

/// What a bench found.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The URL benched.
    pub url: String,
    /// The SLO held.
    pub slo: Slo,
    /// The knee: the lowest over the searches (what can be promised).
    pub knee_rps: Option<f64>,
    /// Each search's knee and their spread.
    pub knee: Knee,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The alerts that became active during the bench, against the step
    /// where the SLO broke (in a drill, where Prometheus evaluates them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headroom: Vec<headroom::Headroom>,
}

impl BenchReport {
    /// The whole bench for the terminal: its steps, knee and alerts.
    pub fn render(&self) -> String {
        let mut out = format!(
            "bench {} ({}):
",
            self.url,
            self.slo.describe()
        );
        for l in self.steps.iter().flat_map(Step::lines) {
            out.push_str(&format!("  {l}\n"));
        }
        out.push_str(&format!("  {}\n", self.summary()));
        if !self.headroom.is_empty() || self.steps.iter().any(|s| !s.holds) {
            out.push_str(&format!(
                "  alerts: {}\n",
                headroom::summary(&self.steps, &self.headroom)
            ));
        }
        out
    }

    /// Lines for the terminal, after the steps.
    pub fn summary(&self) -> String {
        let k = &self.knee;
        if self.knee_rps.is_none() && k.min.is_some() {
            let found = k.runs.iter().flatten().count();
            return format!(
                "knee: none promised: the SLO broke at the first rate in {} of {} searches",
                k.runs.len() - found,
                k.runs.len()
            );
        }
        match (k.min, k.max, k.mean) {
            (Some(lo), Some(hi), Some(mean)) => {
                format!(
                "knee: {lo:.1}/s{} (mean {mean:.1}/s, spread {lo:.1}–{hi:.1}/s over {} search(es))",
                if k.above_range { " or more: the SLO held at every rate tried" } else { "" },
                k.runs.len()
            )
            }
            _ => "knee: none: the SLO broke at the first rate".into(),
        }
    }
}

/// Runs the bench on an engine of its own; `on_step` sees each step as it ends.
pub async fn run(plan: &BenchPlan, on_step: impl FnMut(&Step)) -> Result<BenchReport> {
    run_on(&Engine::new(), plan, on_step).await
}

/// Runs the bench on `engine` (a drill's); `on_step` sees each step as it ends.
pub async fn run_on(
    engine: &Engine,
    plan: &BenchPlan,
    mut on_step: impl FnMut(&Step),
) -> Result<BenchReport> {
    plan.check().await?;
    let search = &plan.search;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut steps = Vec::new();
    let mut runs = Vec::new();
    let mut above = true;
    for run in 1..=search.repeat {
        let mut step = async |rate: f64| -> Result<bool> {
            let st = hold(engine, &http, plan, run, rate).await?;
            on_step(&st);
            let holds = st.holds;
            steps.push(st);
            Ok(holds)
        };
        let (mut pass, mut fail) = (None, None);
        for k in 0..search.steps {
            let rate = search.rate(k);
            if step(rate).await? {
                pass = Some(rate);
            } else {
                fail = Some(rate);
                break;
            }
        }
        if let (Some(mut lo), Some(mut hi)) = (pass, fail) {
            for _ in 0..search.refine {
                let mid = (lo + hi) / 2.0;
                if step(mid).await? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            pass = Some(lo);
        }
        above &= fail.is_none();
        runs.push(pass);
    }
    let found: Vec<f64> = runs.iter().flatten().copied().collect();
    let min = found.iter().copied().reduce(f64::min);
    Ok(BenchReport {
        url: format!("{}{}", plan.url, plan.path),
        slo: search.slo.clone(),
        knee_rps: if found.len() == runs.len() { min } else { None },
        knee: Knee {
            mean: (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64),
            min,
            max: found.iter().copied().reduce(f64::max),
            above_range: above && !found.is_empty(),
            runs,
        },
        steps,
        headroom: Vec::new(),
    })
}

/// Holds `rate` for a step and waits for every answer; with the service's
/// metrics read around it, its histograms against the client's latencies
/// and what it used.
async fn hold(
    engine: &Engine,
    http: &reqwest::Client,
    plan: &BenchPlan,
    run: u32,
    rate: f64,
) -> Result<Step> {
    let before = match &plan.exposition {
        Some(e) => Some(e.read(http).await?),
        None => None,
    };
    let started = Utc::now();
    let load = engine
        .start(Plan {
            url: plan.url.clone(),
            path: plan.path.clone(),
            method: plan.method.clone(),
            body: plan.body.clone(),
            shape: Shape::Constant { rate },
            duration: plan.search.step.0,
            in_flight: None,
            timeout: plan.search.timeout.0,
            max_requests: None,
        })
        .await?;
    let (summary, client) = load.finish_with_latencies().await;
    let mut step = Step::of(run, rate, summary, &plan.search.slo);
    step.started = started;
    if let (Some(e), Some(before)) = (&plan.exposition, before) {
        let after = e.read(http).await?;
        step.target = Usage::between(&before, &after);
        for (h, (b, a)) in e
            .histograms
            .iter()
            .zip(before.buckets.iter().zip(&after.buckets))
        {
            step.truth
                .extend(truth::compare(&h.family, &truth::increase(b, a), &client));
        }
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_step_is_judged_on_latency_and_errors() {
        let slo = Slo::parse(&strings(&["p99=250ms", "errors=0.5%"])).unwrap();
        let mut s = LoadSummary {
            requests: 1000,
            ..Default::default()
        };
        s.latency_ms.corrected.p99 = 300.0;
        s.status_codes.insert(200, 990);
        s.status_codes.insert(503, 10);
        let step = Step::of(1, 100.0, s, &slo);
        assert!(!step.holds);
        let why = step.broken.unwrap();
        assert!(
            why.contains("p99 300.0 ms > 250.0 ms") && why.contains("errors 1.00% > 0.50%"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_bench_is_bounded() {
        let plan = BenchPlan {
            url: "http://127.0.0.1:9".into(),
            path: "/".into(),
            method: "GET".into(),
            body: None,
            search: Search {
                steps: 50,
                refine: 10,
                step: crate::spec::Dur(Duration::from_secs(60)),
                repeat: 3,
                ..Search::new(Slo::parse(&strings(&["p99=1s"])).unwrap(), 10.0, 100.0)
            },
            exposition: None,
        };
        let e = run(&plan, |_| {}).await.unwrap_err().to_string();
        assert!(e.contains("past its bound"), "{e}");
        let far = BenchPlan {
            search: Search::new(plan.search.slo.clone(), 10.0, 100.0),
            exposition: Some(Exposition {
                metrics_url: "http://10.1.2.3:9100/metrics".into(),
                histograms: vec![],
            }),
            ..plan.clone()
        };
        let e = run(&far, |_| {}).await.unwrap_err().to_string();
        assert!(e.contains("this machine only"), "{e}");
    }
}
