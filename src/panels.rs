//! Dashboard panels against a live Prometheus (DESIGN §7): every target of
//! every dashboard a stack provisions, interpolated as Grafana does it, run
//! as a range query over a window. A target has data when some series has a
//! sample in the window; one that reads only metrics of a skipped service
//! (cAdvisor, with no image here) is reported skipped, with the reason.

use crate::error::{Error, Result};
use crate::grafana::{self, TimeContext};
use crate::lint::metrics::{selectors, Catalog};
use crate::observe::Prometheus;
use crate::spec::dashboards::dashboard_files;
use crate::spec::stack::Stack;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What running a panel target found.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Some series had a finite sample in the window.
    Data {
        /// How many series did.
        series: usize,
    },
    /// No series had a finite sample in the window.
    NoData,
    /// Not run: it reads only metrics of services absent here.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The query does not parse, or Prometheus answered an error.
    Error {
        /// The error.
        message: String,
    },
}

/// One panel target, as run.
#[derive(Debug, Clone, Serialize)]
pub struct PanelCheck {
    /// The dashboard's file name.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The target's `refId`.
    pub ref_id: String,
    /// Variable values this run used (`job=mcp-external`), if any.
    pub variables: String,
    /// The query as run: interpolated and time-scaled.
    pub query: String,
    /// What it found.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl PanelCheck {
    /// One line for the terminal: dashboard, panel, target, variables and verdict.
    pub fn line(&self) -> String {
        let what = match &self.verdict {
            Verdict::Data { series } => format!("data ({series} series)"),
            Verdict::NoData => "NO DATA".into(),
            Verdict::Skipped { reason } => format!("skipped: {reason}"),
            Verdict::Error { message } => format!("ERROR: {message}"),
        };
        let vars = if self.variables.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.variables)
        };
        format!(
            "{} / {} ({}){vars}: {what}",
            self.dashboard, self.panel, self.ref_id
        )
    }
}

/// Every value combination worth running: the current values, then each
/// other option of a single-value variable (both MCP servers of one board).
fn variable_sets(vars: &[grafana::Variable]) -> Vec<Vec<grafana::Variable>> {
    let mut sets = vec![vars.to_vec()];
    for (i, v) in vars.iter().enumerate() {
        if v.multi || v.include_all {
            continue;
        }
        for o in v.options.iter().filter(|o| !v.current.contains(o)) {
            let mut set = vars.to_vec();
            set[i].current = vec![o.clone()];
            set[i].current_text = vec![o.clone()];
            sets.push(set);
        }
    }
    sets
}

/// Jobs whose every target is an absent service, and why.
fn absent_jobs(stack: &Stack, absent: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for sc in &stack.prometheus.config.scrape_configs {
        let hosts: Vec<_> = sc
            .static_configs
            .iter()
            .flat_map(|c| &c.targets)
            .map(|t| t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t))
            .collect();
        if let Some(why) = hosts
            .iter()
            .map(|h| absent.get(*h))
            .collect::<Option<Vec<_>>>()
        {
            if let Some(w) = why.first() {
                out.insert(sc.job_name.clone(), format!("{}: {w}", hosts[0]));
            }
        }
    }
    out
}

/// Why `expr` cannot have data in this stack when the `absent` services do
/// not run: every metric it reads is exposed only by them. None when it can.
pub fn needs_absent(
    stack: &Stack,
    absent: &BTreeMap<String, String>,
    expr: &str,
) -> Option<String> {
    let ast = promql_parser::parser::parse(expr).ok()?;
    skipped(
        &ast,
        &Catalog::of_stack(stack, None),
        &absent_jobs(stack, absent),
    )
}

/// Every panel query of the stack as it runs at `time_scale` over a range:
/// interpolated as Grafana would on the unscaled stack (range and scrape
/// interval ÷ the scale), then every duration in it ×the scale, as the
/// stack's own rules are. (dashboard, panel, ref, variables, query) each.
fn queries(
    stack: &Stack,
    range: Duration,
    scrape: Duration,
    time_scale: f64,
) -> Result<Vec<(String, grafana::Target, String, String)>> {
    let unscaled = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / time_scale);
    let time = TimeContext {
        range: unscaled(range),
        scrape: unscaled(scrape),
        ..TimeContext::default()
    };
    let mut out = Vec::new();
    for file in dashboard_files(stack) {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).map_err(Error::io(&file))?)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let vars = grafana::variables(&dashboard);
        for set in variable_sets(&vars) {
            let label = set
                .iter()
                .map(|v| format!("{}={}", v.name, v.current.join("|")))
                .collect::<Vec<_>>()
                .join(",");
            for t in grafana::targets(&dashboard).into_iter().filter(|t| !t.hide) {
                let query = grafana::interpolate(&t.expr, &set, &time, t.interval.as_deref());
                // A query that does not parse keeps its text: the check reports it.
                let query = crate::promql::scale_expr(&query, time_scale).unwrap_or(query);
                out.push((name.clone(), t, label.clone(), query));
            }
        }
    }
    Ok(out)
}

/// The widest range window of any panel query (range selectors, subqueries,
/// offsets), and its panel: how long load must have run for every panel to
/// show a whole window of it. Windows of `$__range` (the dashboard's whole
/// time range) are left out: they cover whatever the drill has run.
pub fn widest_window(
    stack: &Stack,
    scrape: Duration,
    time_scale: f64,
) -> Result<Option<(String, Duration)>> {
    // A drill's range: short enough that `$__interval` is the scrape
    // interval, as it is over any drill, and long enough that no window
    // but `$__range` reaches it.
    let range = scrape * 1000;
    let mut widest: Option<(String, Duration)> = None;
    for (_, t, _, q) in queries(stack, range, scrape, time_scale)? {
        let Ok(w) = crate::promql::max_lookback(&q) else {
            continue;
        };
        if w >= range || w <= widest.as_ref().map_or(Duration::ZERO, |x| x.1) {
            continue;
        }
        widest = Some((t.panel_title.clone(), w));
    }
    Ok(widest)
}

/// Runs every panel target over `[start, end]` on a stack running at
/// `time_scale`. `absent` maps a service that is not running to why (a
/// skipped optional component).
pub async fn check(
    stack: &Stack,
    prom: &Prometheus,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    scrape: Duration,
    time_scale: f64,
    absent: &BTreeMap<String, String>,
) -> Result<Vec<PanelCheck>> {
    let catalog = Catalog::of_stack(stack, None);
    let absent_jobs = absent_jobs(stack, absent);
    let range = (end - start).to_std().unwrap_or(Duration::from_secs(60));
    let step = (range / 100).max(scrape);
    let mut out = Vec::new();
    for (name, t, label, query) in queries(stack, range, scrape, time_scale)? {
        let verdict = match promql_parser::parser::parse(&query) {
            Err(e) => Verdict::Error {
                message: format!("invalid PromQL: {e}"),
            },
            Ok(ast) => match skipped(&ast, &catalog, &absent_jobs) {
                Some(reason) => Verdict::Skipped { reason },
                None => match prom.query_range(&query, start, end, step).await {
                    Err(e) => Verdict::Error {
                        message: e.to_string(),
                    },
                    Ok(series) => {
                        // NaN (a quantile of nothing) draws nothing in Grafana.
                        let finite = |s: &&crate::observe::Series| {
                            s.values
                                .iter()
                                .any(|(_, v)| v.parse::<f64>().is_ok_and(f64::is_finite))
                        };
                        let n = series.iter().filter(finite).count();
                        if n > 0 {
                            Verdict::Data { series: n }
                        } else {
                            Verdict::NoData
                        }
                    }
                },
            },
        };
        out.push(PanelCheck {
            dashboard: name.clone(),
            panel: t.panel_title.clone(),
            ref_id: t.ref_id.clone(),
            variables: label.clone(),
            query,
            verdict,
        });
    }
    Ok(out)
}

/// Why a query cannot have data here: every metric it reads is exposed only
/// by jobs whose targets are absent.
fn skipped(
    ast: &promql_parser::parser::Expr,
    catalog: &Catalog,
    absent_jobs: &BTreeMap<String, String>,
) -> Option<String> {
    let mut why = None;
    for sel in selectors(ast) {
        let name = sel.name.as_deref()?;
        let jobs = catalog.jobs_exposing(name);
        let reason = jobs
            .iter()
            .map(|j| absent_jobs.get(*j))
            .collect::<Option<Vec<_>>>()?;
        why = Some(reason.first()?.to_string());
    }
    why
}
