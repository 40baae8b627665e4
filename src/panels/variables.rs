//! A dashboard's variables as Grafana shows them when it opens on the
//! drill's time range: each query variable that Grafana refreshes (on load
//! or on a time range change) asked of the stack's Prometheus, in the order
//! chained variables need, through its regex and sort, and the selection
//! kept or replaced as Grafana does (grafana/vars.rs). A dashboard exported
//! from someone else's Grafana thus shows this stack's jobs and instances,
//! not theirs.

use crate::error::{Error, Result};
use crate::grafana::{self, TimeContext, VarQuery, Variable};
use crate::observe::Prometheus;
use chrono::{DateTime, Utc};

/// What a variable's query finds over `start`..`end`, as Grafana's
/// Prometheus data source lists it.
async fn ask(
    prom: &Prometheus,
    q: VarQuery,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<String>> {
    let with_labels = |m: &std::collections::BTreeMap<String, String>| {
        let name = m.get("__name__").cloned().unwrap_or_default();
        let labels: Vec<String> = m
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{name}{{{}}}", labels.join(","))
    };
    Ok(match q {
        VarQuery::LabelNames => prom.label_names(start, end).await?,
        VarQuery::LabelValues {
            label,
            selector: None,
        } => prom.label_values(&label, start, end).await?,
        VarQuery::LabelValues {
            label,
            selector: Some(s),
        } => {
            let mut out: Vec<String> = Vec::new();
            for m in prom.series(&s, start, end).await? {
                match m.get(&label) {
                    Some(v) if !v.is_empty() && !out.contains(v) => out.push(v.clone()),
                    _ => {}
                }
            }
            out
        }
        VarQuery::Metrics(pattern) => {
            // A JavaScript RegExp in Grafana: look-arounds included.
            let re = fancy_regex::Regex::new(&pattern)
                .map_err(|e| Error::Invalid(format!("metrics({pattern}): {e}")))?;
            let names = prom.label_values("__name__", start, end).await?;
            names
                .into_iter()
                .filter(|n| re.is_match(n).unwrap_or(false))
                .collect()
        }
        VarQuery::QueryResult(expr) => prom
            .query(&expr, end)
            .await?
            .iter()
            .map(|s| {
                let (t, v) = s.value.clone().unwrap_or_default();
                format!("{} {v} {}", with_labels(&s.metric), (t * 1000.0) as i64)
            })
            .collect(),
        VarQuery::Series(sel) => prom
            .series(&sel, start, end)
            .await?
            .iter()
            .map(with_labels)
            .collect(),
    })
}

/// Where and when a dashboard is looked at.
pub struct View<'a> {
    /// The stack's Prometheus.
    pub prom: &'a Prometheus,
    /// The drill so far: the dashboard's time range.
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// What `$__interval`, `$__range`… stand for on the unscaled stack.
    pub time: TimeContext,
    /// The stack's `time_scale`: a `query_result` is scaled as panels are.
    pub time_scale: f64,
    /// The dashboard's `schemaVersion` is below 29: Grafana's migration
    /// makes every query variable refresh on load (`refresh: 0` too).
    pub legacy: bool,
}

/// A `query_result` expression with its durations scaled as the stack's
/// rules and panels are; other queries select, and have no duration.
fn scaled(q: VarQuery, time_scale: f64) -> VarQuery {
    match q {
        VarQuery::QueryResult(e) => {
            VarQuery::QueryResult(crate::promql::scale_expr(&e, time_scale).unwrap_or(e))
        }
        q => q,
    }
}

/// `vars` as Grafana shows them in `view`: query variables it refreshes
/// asked again (their queries interpolated with the variables resolved
/// before them, their regexes in the `regex` format), others' selections
/// checked against their options. Each variable Prometheus could not
/// answer keeps its saved values and says why.
pub async fn resolve(mut vars: Vec<Variable>, view: &View<'_>) -> (Vec<Variable>, Vec<String>) {
    let time = &view.time;
    let mut notes = Vec::new();
    for i in grafana::order(&vars) {
        let v = vars[i].clone();
        let refresh = if view.legacy {
            v.refresh.max(1)
        } else {
            v.refresh
        };
        let asked = match v.kind.as_str() {
            "query" if refresh > 0 => {
                let q = grafana::interpolate(&v.query, &vars, time, None);
                let regex = v
                    .regex
                    .as_deref()
                    .map(|r| grafana::interpolate_as(r, &vars, time, None, Some("regex")));
                match VarQuery::parse(&q) {
                    None => continue,
                    Some(q) => ask(view.prom, scaled(q, view.time_scale), view.window)
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|found| grafana::options_from(&found, regex.as_deref(), v.sort)),
                }
            }
            // A custom variable's options are the dashboard's own.
            "custom" => Ok(v.options.iter().map(|o| (o.clone(), o.clone())).collect()),
            _ => continue,
        };
        match asked {
            Ok(opts) => vars[i].refresh_options(opts),
            Err(e) => notes.push(format!("${}: {e}; its saved value stands", v.name)),
        }
    }
    (vars, notes)
}
