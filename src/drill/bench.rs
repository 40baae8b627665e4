//! A drill's `bench` and `expect_capacity` steps: the capacity search on a
//! fixture of the stack (issue 15), its latency histograms held against the
//! client from both its exposition and Prometheus, the alerts that rang at
//! each rate, and the gate on the knee.

use super::Drill;
use crate::bench::{self, headroom, BenchPlan, BenchReport, Exposition, HistogramSource};
use crate::error::{err, Result};
use crate::report::Outcome;
use crate::spec::fixture::{Fill, MetricSource, MetricType, Profile, RouteSpec};
use crate::spec::scenario::{BenchStep, ExpectCapacity};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// The latency histograms (in seconds) the fixture observes for `route`,
/// each matched to the route's own series.
fn histograms(profile: &Profile, route: &RouteSpec) -> Vec<HistogramSource> {
    profile
        .families
        .iter()
        .filter(|f| f.type_ == MetricType::Histogram && f.source == MetricSource::RequestDuration)
        // One that counts only successes or errors is not what the client timed.
        .filter(|f| f.on == crate::spec::fixture::On::All)
        .filter(|f| f.scale.is_none_or(|s| s == 1.0))
        .filter(|f| f.routes.is_empty() || f.routes.contains(&route.path))
        .map(|f| HistogramSource {
            family: f.name.clone(),
            matchers: f
                .labels
                .iter()
                .filter_map(|l| match f.fill_of(l)? {
                    Fill::Route => Some((l.clone(), route.path.clone())),
                    Fill::Method => Some((l.clone(), route.method.clone())),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

impl Drill<'_> {
    /// Runs the search on the drill's engine, then asks Prometheus what it
    /// saw of each step and which alerts became active at which rate.
    pub(super) async fn bench(&mut self, b: &BenchStep) -> Result<Outcome> {
        let url = self.running.url(&b.target)?;
        // A container's routes are its own: a plain GET, no histogram known
        // (the truth is the client's alone).
        let (route, hists, exposition) = match self.scenario.stack.fixtures.get(&b.target) {
            Some(profile) => {
                let route = profile
                    .route(&b.path)
                    .ok_or_else(|| err!(Component, "no route {}", b.path))?
                    .clone();
                let hists = histograms(profile, &route);
                let exposition = Exposition {
                    metrics_url: format!("{url}{}", profile.metrics_path),
                    histograms: hists.clone(),
                };
                (route, hists, Some(exposition))
            }
            None => (RouteSpec::plain_get(&b.path), vec![], None),
        };
        let plan = BenchPlan {
            url: url.clone(),
            method: route.method.clone(),
            path: route.path_for(&b.path),
            body: route.body.as_ref().map(|x| x.to_string()),
            search: b.search(),
            exposition,
        };
        let what = format!("bench on {}{}", b.target, b.path);
        let mut report = {
            let _bar = self.bar(what.clone(), plan.search.longest());
            bench::run_on(self.engine, &plan, |_| {}).await?
        };
        // The last step's series and alert states reach Prometheus within a
        // scrape and an evaluation.
        let cfg = &self.eff.prometheus.config;
        let jobs = crate::spec::prometheus::jobs_scraping(cfg, &b.target);
        let scrape = jobs
            .iter()
            .map(|j| cfg.job_timing(j).0)
            .max()
            .unwrap_or_else(|| cfg.scrape_interval());
        tokio::time::sleep(scrape + cfg.evaluation_interval()).await;
        if let Err(e) = self.prometheus_truth(&mut report, &hists, &jobs).await {
            tracing::warn!("Prometheus' quantiles for the bench: {e:#}");
        }
        let seen = self.alerts_seen(&report).await?;
        report.headroom = headroom::headroom(&report.steps, &seen);
        let forgot = self.forget(&report).await;
        let msg = format!(
            "{what}: {}; alerts: {}; the rules' windows forgot it {} after its last step",
            report.summary(),
            headroom::summary(&report.steps, &report.headroom),
            crate::util::secs(forgot)
        );
        self.benches.push(report);
        Ok(Outcome::pass(msg))
    }

    /// Waits until no alerting rule's window still holds the bench: its
    /// overload stays in every `rate(…[w])` for `w` after it ended, and an
    /// alert inactive meanwhile can turn pending again on it (a `calm`
    /// baseline would not be one). Returns the time since the last step.
    async fn forget(&self, report: &BenchReport) -> Duration {
        let Some(end) = report.steps.last().map(|s| s.ended) else {
            return Duration::ZERO;
        };
        let no_labels = BTreeMap::new();
        let settle = self
            .eff
            .prometheus
            .alert_rules()
            .iter()
            .map(|r| {
                let t = crate::verify::Timing::for_alert(self.eff, r, &no_labels);
                t.lookback + t.scrape_interval + t.eval_interval
            })
            .max()
            .unwrap_or_default();
        let since = (Utc::now() - end).to_std().unwrap_or_default();
        if let Some(rest) = settle.checked_sub(since) {
            let _bar = self.bar("the rules' windows forgetting the bench".into(), rest);
            tokio::time::sleep(rest).await;
        }
        (Utc::now() - end).to_std().unwrap_or_default()
    }

    /// What Prometheus answers for each step and each quantile the client
    /// was compared on: `histogram_quantile` over `rate()` across the step,
    /// at its end (the step's window, not a dashboard's 5m: the question is
    /// what the buckets can tell, not how a wide window smooths them).
    async fn prometheus_truth(
        &self,
        report: &mut BenchReport,
        hists: &[HistogramSource],
        jobs: &[String],
    ) -> Result<()> {
        let job = match jobs {
            [] => return Ok(()),
            [one] => format!("job={}", serde_json::to_string(one)?),
            many => format!("job=~{}", serde_json::to_string(&many.join("|"))?),
        };
        for step in &mut report.steps {
            let window = (step.ended - step.started).num_milliseconds().max(1000);
            for t in &mut step.truth {
                let Some(h) = hists.iter().find(|h| h.family == t.family) else {
                    continue;
                };
                let mut m = vec![job.clone()];
                m.extend(h.matchers.iter().filter_map(|(k, v)| {
                    serde_json::to_string(v).ok().map(|v| format!("{k}={v}"))
                }));
                let expr = format!(
                    "histogram_quantile({}, sum by (le) (rate({}_bucket{{{}}}[{window}ms])))",
                    t.quantile,
                    t.family,
                    m.join(",")
                );
                let v = self.prom.query(&expr, step.ended).await?;
                t.prometheus_ms = v
                    .first()
                    .and_then(|s| s.value.as_ref()?.1.parse::<f64>().ok())
                    .filter(|x| x.is_finite())
                    .map(|x| x * 1000.0);
            }
        }
        Ok(())
    }

    /// When each `ALERTS` series (a state of an alert) was first seen over
    /// the bench, an evaluation past its end included.
    async fn alerts_seen(
        &self,
        report: &BenchReport,
    ) -> Result<Vec<(BTreeMap<String, String>, DateTime<Utc>)>> {
        let (Some(first), Some(last)) = (report.steps.first(), report.steps.last()) else {
            return Ok(Vec::new());
        };
        let eval = self.eff.prometheus.config.evaluation_interval();
        let eval_c = chrono::Duration::from_std(eval).unwrap_or_default();
        let (start, end) = (first.started - eval_c, last.ended + eval_c);
        let series = self
            .prom
            .query_range("ALERTS", start, end, eval.max(Duration::from_secs(1)))
            .await?;
        Ok(series
            .into_iter()
            .filter(|s| !super::is_foreign(self.foreign, &s.metric))
            .filter_map(|s| {
                let t = s.values.first()?.0;
                Some((
                    s.metric,
                    DateTime::from_timestamp_millis((t * 1000.0) as i64)?,
                ))
            })
            .collect())
    }

    /// Notes a cut of a fixture's workers; at its undo, the requests it
    /// queued still wait: the data turns when the fullest queue has drained
    /// under the drill's loads, which adds to the tail of the undo.
    pub(super) fn note_workers(&mut self, action: &crate::spec::scenario::Chaos) {
        use crate::spec::scenario::Chaos;
        if matches!(action, Chaos::TeamsFault(..) | Chaos::TeamsReset(_)) {
            return; // not a change of the monitored system
        }
        self.onset = Duration::ZERO;
        match action {
            Chaos::FixtureSet(f, set) if set.workers.is_some() => {
                self.cut.insert(f.clone(), set.route.clone());
                let workers = set.workers.unwrap_or_default();
                self.onset = self.fill(f, set.route.as_deref(), workers);
            }
            Chaos::FixtureReset(f) => {
                if let Some(route) = self.cut.remove(f) {
                    self.tail = self.tail.max(self.drain(f, route.as_deref()));
                }
            }
            _ => {}
        }
    }

    /// How long the queues of fixture `f`'s routes (those `route` names)
    /// take to fill, and shed, with `workers` left under the drill's loads.
    fn fill(&self, f: &str, route: Option<&str>, workers: u32) -> Duration {
        self.per_route(f, route, |r, rate| r.fill(rate, workers))
    }

    /// The longest a full queue of fixture `f`'s routes (those `route`
    /// names) takes to drain under the drill's loads on them.
    fn drain(&self, f: &str, route: Option<&str>) -> Duration {
        self.per_route(f, route, RouteSpec::drain)
    }

    /// The most `each` gives over fixture `f`'s routes that `route` names,
    /// with the rate of the drill's loads on each.
    fn per_route(
        &self,
        f: &str,
        route: Option<&str>,
        each: impl Fn(&RouteSpec, f64) -> Option<Duration>,
    ) -> Duration {
        let Some(profile) = self.scenario.stack.fixtures.get(f) else {
            return Duration::ZERO;
        };
        profile
            .routes
            .iter()
            .filter(|r| route.is_none_or(|x| r.path == x || r.matches(x)))
            .filter_map(|r| {
                let rate: f64 = self
                    .loads
                    .iter()
                    .filter(|a| a.target == f && r.matches(&a.load.plan.path))
                    // The rate each load sends now: ended loads send none.
                    .map(|a| {
                        let t = a.load.started().elapsed();
                        if t >= a.load.plan.duration {
                            0.0
                        } else {
                            a.load.plan.shape.rate_at(t)
                        }
                    })
                    .sum();
                each(r, rate)
            })
            .max()
            .unwrap_or_default()
    }

    /// The gate: the last bench's knee is at least the floor.
    pub(super) fn expect_capacity(&self, e: &ExpectCapacity) -> Result<Outcome> {
        let r = self
            .benches
            .last()
            .ok_or_else(|| err!(Component, "no bench ran before expect_capacity"))?;
        let floor = e.at_least.0;
        let spread = match (r.knee.min, r.knee.max) {
            (Some(lo), Some(hi)) if r.knee.runs.len() > 1 => {
                format!(
                    " (spread {lo:.1}–{hi:.1}/s over {} searches)",
                    r.knee.runs.len()
                )
            }
            _ => String::new(),
        };
        let slo = r.slo.describe();
        Ok(match r.knee_rps {
            Some(k) if k >= floor => Outcome::pass(format!(
                "knee {k:.1}/s ≥ {floor:.1}/s at {slo}{spread}"
            )),
            Some(k) => Outcome::fail(format!(
                "knee {k:.1}/s < {floor:.1}/s at {slo}{spread}: capacity regressed"
            )),
            None => Outcome::fail(format!(
                "no knee: the SLO ({slo}) broke at the first rate, {:.1}/s, below the floor of {floor:.1}/s",
                r.steps.first().map_or(0.0, |s| s.requested_rps)
            )),
        })
    }
}
