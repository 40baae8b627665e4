//! Dashboard panels against a live Prometheus (DESIGN §7): every target of
//! every dashboard a stack provisions, interpolated as Grafana does it, run
//! as a range query over a window. A target has data when some series has a
//! sample in the window; one that reads only metrics of a skipped service
//! (cAdvisor, with no image here) is reported skipped, with the reason.

mod variables;

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
    /// What the panel drew: up to [`LINES`] series, each its legend and
    /// (unix seconds, value) points, for the report's replay.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
}

/// The most series of a target kept for the report.
pub const LINES: usize = 6;

/// One series a panel drew.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// Its labels, as a legend (`{job="backend"}`).
    pub legend: String,
    /// (unix seconds, value) for each finite sample.
    pub points: Vec<(f64, f64)>,
}

/// The series of a range query as lines, at most [`LINES`].
fn lines(series: &[crate::observe::Series]) -> Vec<Line> {
    series
        .iter()
        .map(|s| Line {
            legend: format!(
                "{{{}}}",
                s.metric
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            points: s
                .values
                .iter()
                .filter_map(|(t, v)| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(|v| (*t, v))
                })
                .collect(),
        })
        // A series with no finite sample draws nothing.
        .filter(|l| !l.points.is_empty())
        .take(LINES)
        .collect()
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Data { series } => write!(f, "data ({series} series)"),
            Verdict::NoData => f.write_str("NO DATA"),
            Verdict::Skipped { reason } => write!(f, "skipped: {reason}"),
            Verdict::Error { message } => write!(f, "ERROR: {message}"),
        }
    }
}

impl PanelCheck {
    /// One line for the terminal: dashboard, panel, target, variables and verdict.
    pub fn line(&self) -> String {
        let what = self.verdict.to_string();
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
/// other option of a single-value variable the dashboard lists itself (both
/// MCP servers of one board); a query variable's is what Grafana selects.
fn variable_sets(vars: &[grafana::Variable]) -> Vec<Vec<grafana::Variable>> {
    let mut sets = vec![vars.to_vec()];
    for (i, v) in vars.iter().enumerate() {
        if v.multi || v.include_all || v.kind == "query" {
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

/// One panel target as the drill runs it.
struct Query {
    /// The dashboard's file name.
    dashboard: String,
    target: grafana::Target,
    /// The variables it was interpolated with (`job=backend,…`).
    label: String,
    /// The PromQL sent.
    query: String,
    /// Why it is not sent to Prometheus: its datasource is another kind,
    /// Grafana's own, or none Grafana has.
    not_run: Option<Verdict>,
}

/// A target whose datasource is not the stack's Prometheus, as Grafana
/// resolves it (name, uid, `$variable`, `${DS_…}` input, or the default),
/// with what the drill says of it instead. A stack that provisions no
/// datasource has only Prometheus to ask.
fn not_prometheus(
    t: &grafana::Target,
    datasources: &[crate::lint::dashboards::Datasource],
    dashboard: &serde_json::Value,
    vars: &[grafana::Variable],
) -> Option<Verdict> {
    use crate::lint::dashboards::{resolve, Resolved};
    if datasources.is_empty() {
        return None;
    }
    match resolve(t.datasource.as_ref(), datasources, dashboard, vars) {
        Resolved::Type(kind) if kind == "prometheus" => None,
        Resolved::Type(kind) => Some(Verdict::Skipped {
            reason: format!("a {kind} datasource: firedrill runs Prometheus queries"),
        }),
        Resolved::BuiltIn => Some(Verdict::Skipped {
            reason: "Grafana's own datasource: nothing to query".into(),
        }),
        Resolved::Unresolved(message) => Some(Verdict::Error { message }),
    }
}

/// Every panel query of the stack as it runs at `time_scale` over a range:
/// interpolated as Grafana would on the unscaled stack (range and scrape
/// interval ÷ the scale), then every duration in it ×the scale, as the
/// stack's own rules are.
fn queries(
    stack: &Stack,
    time: &TimeContext,
    time_scale: f64,
    resolved: &BTreeMap<std::path::PathBuf, Vec<grafana::Variable>>,
) -> Result<Vec<Query>> {
    let mut out = Vec::new();
    let datasources = crate::lint::dashboards::stack_datasources(stack);
    for file in dashboard_files(stack) {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).map_err(Error::io(&file))?)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let vars = match resolved.get(&file) {
            Some(v) => v.clone(),
            None => grafana::variables(&dashboard),
        };
        // Each target's datasource decides once whether it runs at all.
        let targets: Vec<(grafana::Target, Option<Verdict>)> = grafana::targets(&dashboard)
            .into_iter()
            .filter(|t| !t.hide)
            .map(|t| {
                let not_run = not_prometheus(&t, &datasources, &dashboard, &vars);
                (t, not_run)
            })
            .collect();
        for set in variable_sets(&vars) {
            for (t, not_run) in &targets {
                for set in repeated(&set, t.repeat.as_deref()) {
                    let label = set
                        .iter()
                        .map(|v| format!("{}={}", v.name, v.current.join("|")))
                        .collect::<Vec<_>>()
                        .join(",");
                    let time = TimeContext {
                        max_data_points: t.max_data_points.unwrap_or(time.max_data_points),
                        ..*time
                    };
                    let query = grafana::interpolate(&t.expr, &set, &time, t.interval.as_deref());
                    // A query that does not parse keeps its text: the check reports it.
                    let query = crate::promql::scale_expr(&query, time_scale).unwrap_or(query);
                    out.push(Query {
                        dashboard: name.clone(),
                        target: t.clone(),
                        label,
                        query,
                        not_run: not_run.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The variable sets a panel repeated by `repeat` shows: one per selected
/// value (every option when All is selected), else `set` alone.
fn repeated(set: &[grafana::Variable], repeat: Option<&str>) -> Vec<Vec<grafana::Variable>> {
    let Some(i) = repeat.and_then(|r| set.iter().position(|v| v.name == r)) else {
        return vec![set.to_vec()];
    };
    let v = &set[i];
    let values = if v.current.iter().any(|c| c == "$__all") {
        v.options.clone()
    } else {
        v.current.clone()
    };
    values
        .into_iter()
        .map(|value| {
            let mut one = set.to_vec();
            one[i].current = vec![value.clone()];
            one[i].current_text = vec![value];
            one
        })
        .collect()
}

/// The time context of panel queries on a stack running at `time_scale`:
/// range and scrape interval as Grafana sees them on the unscaled stack.
fn time_context(range: Duration, scrape: Duration, time_scale: f64) -> TimeContext {
    let unscaled = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / time_scale);
    TimeContext {
        range: unscaled(range),
        scrape: unscaled(scrape),
        ..TimeContext::default()
    }
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
    let time = time_context(range, scrape, time_scale);
    for Query {
        target: t,
        query: q,
        not_run,
        ..
    } in queries(stack, &time, time_scale, &BTreeMap::new())?
    {
        if not_run.is_some() {
            continue;
        }
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

/// Every dashboard's variables as Grafana would show them over `window`.
async fn resolve_all(
    stack: &Stack,
    prom: &Prometheus,
    window: (DateTime<Utc>, DateTime<Utc>),
    time: &TimeContext,
    time_scale: f64,
) -> Result<BTreeMap<std::path::PathBuf, Vec<grafana::Variable>>> {
    let mut out = BTreeMap::new();
    for file in dashboard_files(stack) {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).map_err(Error::io(&file))?)?;
        let view = variables::View {
            prom,
            window,
            time: *time,
            time_scale,
            legacy: dashboard
                .get("schemaVersion")
                .and_then(serde_json::Value::as_i64)
                .is_none_or(|v| v < 29),
        };
        let (vars, notes) = variables::resolve(grafana::variables(&dashboard), &view).await;
        for n in notes {
            tracing::warn!("{}: {n}", file.display());
        }
        out.insert(file, vars);
    }
    Ok(out)
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
    let time = time_context(range, scrape, time_scale);
    let resolved = resolve_all(stack, prom, (start, end), &time, time_scale).await?;
    let mut out = Vec::new();
    for q in queries(stack, &time, time_scale, &resolved)? {
        let Query {
            dashboard: name,
            target: t,
            label,
            query,
            not_run,
        } = q;
        let mut drawn = Vec::new();
        let parsed = match not_run {
            Some(v) => Err(v),
            None => promql_parser::parser::parse(&query).map_err(|e| Verdict::Error {
                message: format!("invalid PromQL: {e}"),
            }),
        };
        let verdict = match parsed {
            Err(v) => v,
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
                        drawn = lines(&series);
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
            dashboard: name,
            panel: t.panel_title,
            ref_id: t.ref_id,
            variables: label,
            query,
            verdict,
            lines: drawn,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only Prometheus targets are run: one on Loki is skipped, one on a
    /// datasource Grafana lacks is an error, wherever it is named (by uid,
    /// by name, through a datasource variable or an `__inputs` entry).
    #[test]
    fn a_target_runs_only_on_prometheus() {
        let datasources: Vec<crate::lint::dashboards::Datasource> = serde_yaml_ng::from_str(
            "- {name: Prometheus, uid: prom, type: prometheus, isDefault: true}\n- {name: Logs, uid: logs, type: loki}\n",
        )
        .unwrap();
        let dashboard = serde_json::json!({
            "__inputs": [{"name": "DS_LOKI", "pluginId": "loki"}],
            "templating": {"list": [{"name": "ds", "type": "datasource", "query": "prometheus"}]},
            "panels": [{"title": "p", "targets": [
                {"expr": "up"},
                {"expr": "up", "datasource": {"uid": "prom"}},
                {"expr": "up", "datasource": {"type": "prometheus", "uid": "$ds"}},
                {"expr": "{job=\"x\"}", "datasource": {"uid": "logs"}},
                {"expr": "{job=\"x\"}", "datasource": "${DS_LOKI}"},
                {"expr": "up", "datasource": "Logs"},
                {"expr": "up", "datasource": {"uid": "gone"}},
                {"expr": "up", "datasource": {"type": "datasource", "uid": "-- Dashboard --"}}
            ]}]
        });
        let vars = grafana::variables(&dashboard);
        let verdicts: Vec<_> = grafana::targets(&dashboard)
            .iter()
            .map(
                |t| match not_prometheus(t, &datasources, &dashboard, &vars) {
                    None => "run",
                    Some(Verdict::Skipped { .. }) => "skipped",
                    Some(Verdict::Error { .. }) => "error",
                    Some(_) => "?",
                },
            )
            .collect();
        assert_eq!(
            verdicts,
            ["run", "run", "run", "skipped", "skipped", "skipped", "error", "skipped"]
        );
        // No provisioned datasource: Prometheus is all there is to ask.
        let t = &grafana::targets(&dashboard)[3];
        assert_eq!(not_prometheus(t, &[], &dashboard, &vars), None);
    }

    /// A panel repeated by a variable is checked once per value Grafana
    /// draws it for: each selected one, every option when All is selected.
    #[test]
    fn a_repeated_panel_is_checked_per_value() {
        let var = |current: serde_json::Value| {
            grafana::Variable::from_json(&serde_json::json!({
                "name": "i", "multi": true, "includeAll": true, "current": {"value": current},
                "options": [{"value": "a"}, {"value": "b"}, {"value": "c"}]
            }))
            .unwrap()
        };
        let values = |set: &[grafana::Variable]| {
            repeated(set, Some("i"))
                .iter()
                .map(|s| s[0].current.join("|"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(&[var(serde_json::json!(["$__all"]))]),
            ["a", "b", "c"]
        );
        assert_eq!(values(&[var(serde_json::json!(["b", "c"]))]), ["b", "c"]);
        assert_eq!(repeated(&[var(serde_json::json!(["b"]))], None).len(), 1);
        assert_eq!(
            repeated(&[var(serde_json::json!(["b"]))], Some("nope")).len(),
            1
        );
    }
}
