//! Which metric names a stack exposes, per scrape job: from the fixture
//! profiles of its targets, from catalogs of components with a known
//! exposition (cAdvisor), from recording rules, or from a running Prometheus
//! (`--live`). A query selecting a name no target exposes is an error with
//! "did you mean" suggestions; one naming a job the stack does not scrape too.

use super::{Finding, Severity};
use crate::components::{self, Catalogue};
use crate::spec::fixture::MetricType;
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use std::collections::{BTreeMap, BTreeSet};

/// Series Prometheus writes itself for every target or rule.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

/// Names and jobs from a running Prometheus.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Every metric name Prometheus holds.
    pub names: BTreeSet<String>,
    /// Every `job` label value Prometheus holds.
    pub jobs: BTreeSet<String>,
}

impl Live {
    /// Reads metric names and jobs from the Prometheus at `base`.
    pub async fn fetch(base: &str) -> crate::error::Result<Live> {
        #[derive(serde::Deserialize)]
        struct Values {
            data: Vec<String>,
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let get = |label: &str| {
            http.get(format!(
                "{}/api/v1/label/{label}/values",
                base.trim_end_matches('/')
            ))
            .send()
        };
        let names: Values = get("__name__").await?.error_for_status()?.json().await?;
        let jobs: Values = get("job").await?.error_for_status()?.json().await?;
        Ok(Live {
            names: names.data.into_iter().collect(),
            jobs: jobs.data.into_iter().collect(),
        })
    }
}

#[derive(Debug, Clone)]
enum Exposure {
    Known(BTreeSet<String>),
    Unknown(String),
}

/// What each scrape job of a stack exposes.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    jobs: BTreeMap<String, Exposure>,
    /// The type of each name whose fixture profile says it.
    types: BTreeMap<String, MetricType>,
    /// The stack runs cAdvisor standalone (no kubelet adds its labels).
    cadvisor: bool,
    recorded: BTreeSet<String>,
    live: Option<Live>,
}

/// A vector selector's metric name and matchers.
pub struct Sel {
    /// The metric name, if the selector names one.
    pub name: Option<String>,
    /// The label matchers.
    pub matchers: Vec<promql_parser::label::Matcher>,
}

impl Sel {
    /// The job the selector picks with `job="…"`, if any.
    pub fn job(&self) -> Option<String> {
        self.matchers
            .iter()
            .find(|m| m.name == "job" && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.clone())
    }
    fn selects_job(&self, job: &str) -> bool {
        self.matchers
            .iter()
            .filter(|m| m.name == "job")
            .all(|m| m.is_match(job))
    }
}

/// Every vector selector of an expression (those inside range selectors too).
pub fn selectors(ast: &Expr) -> Vec<Sel> {
    let mut out = Vec::new();
    let mut ast = ast.clone();
    crate::promql::walk(&mut ast, &mut |e| {
        let vs = match e {
            Expr::VectorSelector(v) => v,
            Expr::MatrixSelector(m) => &m.vs,
            _ => return,
        };
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        out.push(Sel {
            name,
            matchers: vs.matchers.matchers.clone(),
        });
    });
    out
}

/// The names a fixture profile's families become in Prometheus.
pub fn profile_names(p: &crate::spec::fixture::Profile) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in &p.families {
        match f.type_ {
            MetricType::Histogram => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{}{s}", f.name));
                }
            }
            _ => {
                out.insert(f.name.clone());
            }
        }
    }
    out
}

/// The type of each name a fixture profile's families become: a
/// histogram's `_bucket`, `_sum` and `_count` are counters.
fn profile_types(p: &crate::spec::fixture::Profile) -> Vec<(String, MetricType)> {
    let mut out = Vec::new();
    for f in &p.families {
        match f.type_ {
            MetricType::Histogram => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.push((format!("{}{s}", f.name), MetricType::Counter));
                }
            }
            t => out.push((f.name.clone(), t)),
        }
    }
    out
}

fn catalog_names(yaml: &str) -> BTreeSet<String> {
    #[derive(serde::Deserialize)]
    struct C {
        names: Vec<String>,
    }
    serde_yaml_ng::from_str::<C>(yaml)
        .map(|c| c.names.into_iter().collect())
        .unwrap_or_default()
}

impl Catalog {
    /// Whether the stack runs cAdvisor standalone.
    pub fn standalone_cadvisor(&self) -> bool {
        self.cadvisor
    }

    /// The type of `name`, where a fixture profile of the stack says it.
    pub fn type_of(&self, name: &str) -> Option<MetricType> {
        self.types.get(name).copied()
    }

    /// The jobs whose static catalog has `name`.
    pub fn jobs_exposing(&self, name: &str) -> Vec<&str> {
        self.jobs
            .iter()
            .filter(|(_, e)| matches!(e, Exposure::Known(n) if n.contains(name)))
            .map(|(j, _)| j.as_str())
            .collect()
    }

    /// What each scrape job of `stack` exposes, from its targets' catalogs, its recording rules and `live`.
    pub fn of_stack(stack: &Stack, live: Option<Live>) -> Catalog {
        let mut jobs = BTreeMap::new();
        let mut types = BTreeMap::new();
        for sc in &stack.prometheus.config.scrape_configs {
            let mut names = BTreeSet::new();
            let mut unknown = None;
            for t in sc.static_configs.iter().flat_map(|c| &c.targets) {
                let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
                let kind = stack.service(host).map(|s| s.kind);
                match kind.map(|k| components::of(k).catalogue) {
                    Some(Catalogue::Profile) => {
                        let p = &stack.fixtures[host];
                        names.extend(profile_names(p));
                        types.extend(profile_types(p));
                    }
                    Some(Catalogue::NoExposition(why)) => {
                        unknown = Some(format!("{host} exposes no metrics: {why}"))
                    }
                    Some(Catalogue::Static(yaml)) => names.extend(catalog_names(yaml)),
                    Some(Catalogue::Unknown) => {
                        unknown = Some(format!(
                            "{host} ({:?}) has no static catalog",
                            kind.unwrap()
                        ))
                    }
                    None => unknown = Some(format!("target {t} is not a service of the stack")),
                }
            }
            let e = match unknown {
                Some(why) => Exposure::Unknown(why),
                None => Exposure::Known(names),
            };
            jobs.insert(sc.job_name.clone(), e);
        }
        let recorded = stack
            .prometheus
            .rule_files
            .iter()
            .flat_map(|rf| &rf.doc.groups)
            .flat_map(|g| &g.rules)
            .filter_map(|r| r.record.clone())
            .collect();
        Catalog {
            jobs,
            types,
            cadvisor: stack
                .doc
                .services
                .values()
                .any(|s| s.kind == crate::spec::stack::Kind::Cadvisor),
            recorded,
            live,
        }
    }

    /// Findings for every selector of `ast`, located at the node `path` of `src`.
    pub fn check(&self, ast: &Expr, src: &Source, path: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        for sel in selectors(ast) {
            let Some(name) = sel.name.clone() else {
                continue;
            };
            let at = |needle: &str, msg: String| {
                let p = position_of(src, path, needle);
                Finding::pos("unknown-metric", Severity::Error, &src.path, p, msg)
            };
            if let Some(job) = sel.job() {
                let known_job = self.jobs.contains_key(&job)
                    || self.live.as_ref().is_some_and(|l| l.jobs.contains(&job));
                if !known_job {
                    let mut f = at(
                        &job,
                        format!("`{name}` selects job `{job}`, which the stack does not scrape"),
                    );
                    f.check = "unknown-job";
                    if let Some(near) =
                        crate::util::closest(&job, self.jobs.keys().map(String::as_str))
                    {
                        f = f.help(format!("did you mean `{near}`?"));
                    }
                    out.push(f);
                    continue;
                }
            }
            if SYNTHETIC.contains(&name.as_str()) || self.recorded.contains(&name) {
                continue;
            }
            if let Some(live) = &self.live {
                if !live.names.contains(&name) {
                    out.push(suggest(
                        at(
                            &name,
                            format!("no series named `{name}` in the running Prometheus"),
                        ),
                        &name,
                        live.names.iter(),
                    ));
                }
                continue;
            }
            let matched: Vec<(&String, &Exposure)> = self
                .jobs
                .iter()
                .filter(|(j, _)| sel.selects_job(j))
                .collect();
            let mut known = BTreeSet::new();
            let mut unknown = Vec::new();
            for (job, e) in &matched {
                match e {
                    Exposure::Known(n) => known.extend(n.iter().cloned()),
                    Exposure::Unknown(why) => unknown.push(format!("{job}: {why}")),
                }
            }
            if known.contains(&name) {
                continue;
            }
            let jobs: Vec<&str> = matched.iter().map(|(j, _)| j.as_str()).collect();
            if unknown.is_empty() {
                out.push(suggest(
                    at(
                        &name,
                        format!("no target of job(s) {} exposes `{name}`", jobs.join(", ")),
                    ),
                    &name,
                    known.iter(),
                ));
            } else {
                let mut f = at(&name, format!("`{name}` cannot be checked statically ({}); run `firedrill lint --live URL`", unknown.join("; ")));
                f.severity = Severity::Warning;
                f.check = "unverified-metric";
                out.push(f);
            }
        }
        out
    }
}

fn suggest<'a>(f: Finding, name: &str, names: impl Iterator<Item = &'a String>) -> Finding {
    match crate::util::closest(name, names.map(String::as_str)) {
        Some(n) => f.help(format!("did you mean `{n}`?")),
        None => f,
    }
}

/// The position of `needle` at or after the node `path` (inside the query text).
pub fn position_of(src: &Source, path: &str, needle: &str) -> crate::error::Pos {
    let start = src.pos(path);
    let offset: usize = src
        .text
        .split_inclusive('\n')
        .take(start.line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + src
            .text
            .lines()
            .nth(start.line.saturating_sub(1))
            .map(|l| {
                l.chars()
                    .take(start.col.saturating_sub(1))
                    .map(char::len_utf8)
                    .sum::<usize>()
            })
            .unwrap_or(0);
    match src.text.get(offset..).and_then(|t| t.find(needle)) {
        Some(i) => {
            let before = &src.text[..offset + i];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0)
                + 1;
            crate::error::Pos { line, col }
        }
        None => start,
    }
}
