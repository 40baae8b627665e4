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

pub mod truth;

use crate::error::{Error, Result};
use crate::load::{Engine, LoadSummary, Plan, Shape};
use serde::Serialize;
use std::time::Duration;

/// The most a whole bench may take, every step and repeat included.
pub const MAX_BENCH: Duration = Duration::from_secs(3600);

/// What must hold at a rate: latency percentiles from the client's
/// corrected histogram, and the share of requests that failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Slo {
    /// The median at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// The 90th percentile at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// The 99th percentile at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The share of requests answered 4xx/5xx or not at all, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
}

impl Slo {
    /// Parses `p99=250ms`, `p50=20ms`, `errors=0.5%` (or `errors=0.005`),
    /// each objective once.
    pub fn parse(items: &[String]) -> Result<Slo> {
        let mut slo = Slo::default();
        for item in items {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "SLO `{item}`: write it like p99=250ms or errors=0.5%"
                ))
            })?;
            let ms = || -> Result<f64> { Ok(crate::spec::Dur::parse(v)?.0.as_secs_f64() * 1000.0) };
            let slot = match k.trim() {
                "p50" => (&mut slo.p50_ms, ms()?),
                "p90" => (&mut slo.p90_ms, ms()?),
                "p99" => (&mut slo.p99_ms, ms()?),
                "errors" | "error_ratio" => (&mut slo.error_ratio, ratio(v)?),
                other => {
                    return Err(Error::Invalid(format!(
                        "SLO `{item}`: `{other}` is not p50, p90, p99 or errors"
                    )))
                }
            };
            if slot.0.replace(slot.1).is_some() {
                return Err(Error::Invalid(format!("SLO `{k}` is given twice")));
            }
        }
        if slo == Slo::default() {
            return Err(Error::Invalid(
                "give an SLO to hold: --slo p99=250ms, --slo errors=0.5%".into(),
            ));
        }
        Ok(slo)
    }

    /// Why `step` breaks the SLO, if it does.
    fn broken(&self, step: &Step) -> Option<String> {
        let mut why = Vec::new();
        for (name, limit, seen) in [
            ("p50", self.p50_ms, step.p50_ms),
            ("p90", self.p90_ms, step.p90_ms),
            ("p99", self.p99_ms, step.p99_ms),
        ] {
            if let Some(l) = limit.filter(|l| seen > *l) {
                why.push(format!("{name} {seen:.1} ms > {l:.1} ms"));
            }
        }
        if let Some(l) = self.error_ratio.filter(|l| step.error_ratio > *l) {
            why.push(format!(
                "errors {:.2}% > {:.2}%",
                step.error_ratio * 100.0,
                l * 100.0
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// `0.5%` or `0.005`, between 0 and 1.
fn ratio(v: &str) -> Result<f64> {
    let v = v.trim();
    let r = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => v.parse::<f64>(),
    }
    .map_err(|_| Error::Invalid(format!("error ratio `{v}`: write it like 0.5% or 0.005")))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(Error::Invalid(format!(
            "error ratio `{v}` is not between 0 and 1"
        )));
    }
    Ok(r)
}

/// A bench: where, what must hold, and how the rate moves.
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
    /// What must hold.
    pub slo: Slo,
    /// The first rate tried, per second.
    pub from: f64,
    /// The last rate tried, per second.
    pub to: f64,
    /// Rates tried from `from` to `to`, evenly spaced (at least 2).
    pub steps: u32,
    /// Halvings of the interval between the last rate that held and the
    /// first that broke.
    pub refine: u32,
    /// How long each rate is held.
    pub step_duration: Duration,
    /// Whole searches, for the knee's spread.
    pub repeat: u32,
    /// Per-request timeout (a request past it is an error).
    pub timeout: Duration,
    /// The service's latency histogram, read around each step for the
    /// dashboard's truth.
    pub histogram: Option<HistogramSource>,
}

/// Where a service's latency histogram is read.
#[derive(Debug, Clone)]
pub struct HistogramSource {
    /// Its exposition, `http://127.0.0.1:PORT/metrics` (this machine only).
    pub metrics_url: String,
    /// The family (`http_request_duration_seconds`).
    pub family: String,
    /// Only series with these labels (`route=/work`), summed by `le`.
    pub matchers: Vec<(String, String)>,
}

impl HistogramSource {
    async fn read(&self, http: &reqwest::Client) -> Result<Vec<(f64, f64)>> {
        let text = http
            .get(&self.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(truth::buckets(&text, &self.family, &self.matchers))
    }
}

impl BenchPlan {
    /// The longest it can take: every step of every search.
    pub fn longest(&self) -> Duration {
        // A step ends when its last answer is in: its timeout at most after.
        let steps = self.steps.saturating_add(self.refine);
        (self.step_duration.saturating_add(self.timeout))
            .saturating_mul(steps)
            .saturating_mul(self.repeat)
    }

    /// Refuses a bench out of its bounds, before any request.
    pub async fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !(self.from > 0.0 && self.from < self.to) {
            return bad(format!("rates go up: from {} to {}", self.from, self.to));
        }
        if !(2..=50).contains(&self.steps) || self.refine > 10 || !(1..=10).contains(&self.repeat) {
            return bad("steps is 2 to 50, refine at most 10, repeat 1 to 10".into());
        }
        if self.step_duration < Duration::from_secs(1) {
            return bad("a step lasts 1s at least".into());
        }
        if let Some(h) = &self.histogram {
            // Its exposition is read on this machine only, as every load.
            crate::load::loopback(&h.metrics_url).await?;
        }
        if self.longest() > MAX_BENCH {
            return bad(format!(
                "the bench could take {:.0}s, past its bound of {}s: fewer steps, shorter ones, or fewer repeats",
                self.longest().as_secs_f64(),
                MAX_BENCH.as_secs()
            ));
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
    /// The service's histogram against the client, per quantile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truth: Vec<truth::Truth>,
    /// The load's full figures.
    #[serde(skip)]
    pub load: LoadSummary,
}

impl Step {
    fn of(run: u32, rate: f64, s: LoadSummary, slo: &Slo) -> Step {
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
            load: s,
        };
        step.broken = slo.broken(&step);
        step.holds = step.broken.is_none();
        step
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
}

impl BenchReport {
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

/// Runs the bench; `on_step` sees each step as it ends.
pub async fn run(plan: &BenchPlan, mut on_step: impl FnMut(&Step)) -> Result<BenchReport> {
    plan.check().await?;
    let engine = Engine::new();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut steps = Vec::new();
    let mut runs = Vec::new();
    let mut above = true;
    for run in 1..=plan.repeat {
        let mut step = async |rate: f64| -> Result<bool> {
            let (s, truth) = hold(&engine, &http, plan, rate).await?;
            let mut st = Step::of(run, rate, s, &plan.slo);
            st.truth = truth;
            on_step(&st);
            let holds = st.holds;
            steps.push(st);
            Ok(holds)
        };
        let (mut pass, mut fail) = (None, None);
        for k in 0..plan.steps {
            let rate = plan.from + (plan.to - plan.from) * f64::from(k) / f64::from(plan.steps - 1);
            if step(rate).await? {
                pass = Some(rate);
            } else {
                fail = Some(rate);
                break;
            }
        }
        if let (Some(mut lo), Some(mut hi)) = (pass, fail) {
            for _ in 0..plan.refine {
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
        slo: plan.slo.clone(),
        knee_rps: if found.len() == runs.len() { min } else { None },
        knee: Knee {
            mean: (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64),
            min,
            max: found.iter().copied().reduce(f64::max),
            above_range: above && !found.is_empty(),
            runs,
        },
        steps,
    })
}

/// Holds `rate` for a step and waits for every answer; the service's
/// histogram against the client's latencies, when it is read.
async fn hold(
    engine: &Engine,
    http: &reqwest::Client,
    plan: &BenchPlan,
    rate: f64,
) -> Result<(LoadSummary, Vec<truth::Truth>)> {
    let before = match &plan.histogram {
        Some(h) => Some(h.read(http).await?),
        None => None,
    };
    let load = engine
        .start(Plan {
            url: plan.url.clone(),
            path: plan.path.clone(),
            method: plan.method.clone(),
            body: plan.body.clone(),
            shape: Shape::Constant { rate },
            duration: plan.step_duration,
            in_flight: None,
            timeout: plan.timeout,
            max_requests: None,
        })
        .await?;
    let (summary, client) = load.finish_with_latencies().await;
    let truth = match (&plan.histogram, before) {
        (Some(h), Some(before)) => {
            let after = h.read(http).await?;
            truth::compare(&truth::increase(&before, &after), &client)
        }
        _ => Vec::new(),
    };
    Ok((summary, truth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_slo_is_parsed_and_judged() {
        let slo = Slo::parse(&strings(&["p99=250ms", "errors=0.5%"])).unwrap();
        assert_eq!(slo.p99_ms, Some(250.0));
        assert_eq!(slo.error_ratio, Some(0.005));
        for bad in [
            &["p98=1s"][..],
            &["p99"],
            &["errors=2"],
            &["p99=1s", "p99=2s"],
            &[],
        ] {
            assert!(Slo::parse(&strings(bad)).is_err(), "{bad:?}");
        }
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
            slo: Slo::parse(&strings(&["p99=1s"])).unwrap(),
            from: 10.0,
            to: 100.0,
            steps: 50,
            refine: 10,
            step_duration: Duration::from_secs(60),
            repeat: 3,
            timeout: Duration::from_secs(10),
            histogram: None,
        };
        let e = run(&plan, |_| {}).await.unwrap_err().to_string();
        assert!(e.contains("past its bound"), "{e}");
        let far = BenchPlan {
            steps: 2,
            refine: 0,
            repeat: 1,
            histogram: Some(HistogramSource {
                metrics_url: "http://10.1.2.3:9100/metrics".into(),
                family: "h".into(),
                matchers: vec![],
            }),
            ..plan.clone()
        };
        let e = run(&far, |_| {}).await.unwrap_err().to_string();
        assert!(e.contains("this machine only"), "{e}");
        let e = run(
            &BenchPlan {
                from: 100.0,
                ..plan
            },
            |_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("rates go up"), "{e}");
    }
}
