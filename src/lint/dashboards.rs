//! Grafana: provisioned datasources and dashboard providers, and every panel
//! target of every dashboard they load, interpolated as Grafana does
//! (crate::grafana), parsed, its datasource resolved and its metrics checked.

use super::metrics::Catalog;
use super::{from_spec, Finding, Report, Severity};
use crate::grafana::{self, TimeContext};
use crate::spec::source::Source;
use crate::spec::stack::{Kind, Stack};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One provisioned Grafana datasource.
#[derive(Debug, Clone, Deserialize)]
pub struct Datasource {
    /// The datasource's name, as panels may refer to it.
    pub name: String,
    /// Its uid, as panels may refer to it.
    #[serde(default)]
    pub uid: Option<String>,
    /// Its plugin type (`prometheus`, `loki`, …).
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether panels with no datasource use it (`isDefault`).
    #[serde(default, rename = "isDefault")]
    pub is_default: bool,
    /// Plugin settings (`jsonData`), such as Prometheus' `timeInterval`.
    #[serde(default, rename = "jsonData")]
    pub json_data: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
struct DatasourcesFile {
    #[serde(default)]
    datasources: Vec<Datasource>,
}

#[derive(Debug, Deserialize)]
struct Provider {
    name: String,
    #[serde(default)]
    options: ProviderOptions,
}

#[derive(Debug, Default, Deserialize)]
struct ProviderOptions {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProvidersFile {
    #[serde(default)]
    providers: Vec<Provider>,
}

/// Where Grafana finds dashboards in firedrill's Grafana container.
pub const DASHBOARDS_IN_CONTAINER: &str = "/var/lib/grafana/dashboards";

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What a dashboard is checked against inside a stack.
pub struct StackContext<'a> {
    /// The datasources Grafana provisions.
    pub datasources: &'a [Datasource],
    /// The metric names each scrape job exposes.
    pub catalog: &'a Catalog,
}

/// Whether a datasource of plugin type `t` is provisioned.
fn has_type(datasources: &[Datasource], t: &str) -> bool {
    datasources.iter().any(|d| d.type_ == t)
}

/// Lints every Grafana service of a stack: datasources, providers and every dashboard they load.
pub fn lint_stack_dashboards(stack: &Stack, catalog: &Catalog) -> Report {
    let mut r = Report::default();
    for (name, svc) in stack
        .doc
        .services
        .iter()
        .filter(|(_, s)| s.kind == Kind::Grafana)
    {
        let at = format!("services.{name}");
        let Some(prov) = svc.provisioning.as_ref().map(|p| stack.source.relative(p)) else {
            r.findings.push(Finding::at(
                "grafana",
                Severity::Warning,
                &stack.source,
                &at,
                format!("`{name}` has no `provisioning` folder: nothing to check"),
            ));
            continue;
        };
        let datasources = provisioned_datasources(&prov, &mut r);
        if datasources.is_empty() {
            r.findings.push(Finding::at(
                "datasource",
                Severity::Error,
                &stack.source,
                &format!("{at}.provisioning"),
                "no datasource is provisioned: every panel shows \"No data\"",
            ));
        }
        let dash_dir = svc.dashboards.as_ref().map(|d| stack.source.relative(d));
        let mut dash_files = Vec::new();
        for f in yaml_files(&prov.join("dashboards")) {
            r.files += 1;
            match Source::read(&f).and_then(|s| s.parse::<ProvidersFile>().map(|pf| (s, pf))) {
                Ok((src, pf)) => {
                    dash_files.extend(provided_dashboards(&src, &pf, dash_dir.as_deref(), &mut r))
                }
                Err(e) => r.findings.push(from_spec(&e)),
            }
        }
        dash_files.dedup();
        let ctx = StackContext {
            datasources: &datasources,
            catalog,
        };
        for f in dash_files {
            r.merge(lint_file(&f, Some(&ctx)));
        }
    }
    r
}

/// Every datasource the stack's Grafana services provision (a file that
/// does not parse adds none: `lint` reports it).
pub fn stack_datasources(stack: &Stack) -> Vec<Datasource> {
    let mut r = Report::default();
    stack
        .doc
        .services
        .values()
        .filter(|s| s.kind == Kind::Grafana)
        .filter_map(|s| s.provisioning.as_ref())
        .flat_map(|p| provisioned_datasources(&stack.source.relative(p), &mut r))
        .collect()
}

/// The datasources of a provisioning folder's `datasources/` files.
fn provisioned_datasources(prov: &Path, r: &mut Report) -> Vec<Datasource> {
    let mut out = Vec::new();
    for f in yaml_files(&prov.join("datasources")) {
        r.files += 1;
        match Source::read(&f).and_then(|s| s.parse::<DatasourcesFile>()) {
            Ok(d) => out.extend(d.datasources),
            Err(e) => r.findings.push(from_spec(&e)),
        }
    }
    out
}

/// A provisioning file on its own: its datasources or dashboard providers
/// parse (where they point is a stack's to check).
pub fn provisioned_file(path: &Path, r: &mut Report) {
    let src = match Source::read(path) {
        Ok(s) => s,
        Err(e) => return r.findings.push(from_spec(&e)),
    };
    // Datasources and dashboard providers are checked; alerting
    // provisioning (contact points, policies, rules) is Grafana's to read.
    let keys: serde_yaml_ng::Value = serde_yaml_ng::from_str(&src.text).unwrap_or_default();
    let parsed = if keys.get("datasources").is_some() {
        src.parse::<DatasourcesFile>().map(drop)
    } else if keys.get("providers").is_some() {
        src.parse::<ProvidersFile>().map(drop)
    } else {
        Ok(())
    };
    if let Err(e) = parsed {
        r.findings.push(from_spec(&e));
    }
}

/// The dashboard files a providers file loads from the stack's
/// `dashboards` folder (mounted at [`DASHBOARDS_IN_CONTAINER`]).
fn provided_dashboards(
    src: &Source,
    pf: &ProvidersFile,
    dash_dir: Option<&Path>,
    r: &mut Report,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, p) in pf.providers.iter().enumerate() {
        let at = format!("providers.{i}.options.path");
        let error = |m: String| Finding::at("grafana", Severity::Error, src, &at, m);
        let path = p.options.path.as_deref().unwrap_or("");
        let (Some(dir), Some(rest)) = (dash_dir, path.strip_prefix(DASHBOARDS_IN_CONTAINER)) else {
            r.findings.push(error(format!("provider `{}` reads {path:?}, which the stack does not provide (its `dashboards` folder is mounted at {DASHBOARDS_IN_CONTAINER})", p.name)));
            continue;
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join(rest.trim_start_matches('/')))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            r.findings.push(error(format!(
                "provider `{}` loads no dashboard from {path}",
                p.name
            )));
        }
        found.sort();
        out.extend(found);
    }
    out
}

/// A panel's datasource reference, resolved against the provisioned ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A provisioned datasource of this plugin type.
    Type(String),
    /// Grafana's own (`-- Grafana --`, `-- Mixed --`, ...): nothing to query.
    BuiltIn,
    /// Why it does not resolve.
    Unresolved(String),
}

/// A datasource reference resolved to its type, or why it does not resolve.
pub fn resolve(
    ds: Option<&Value>,
    datasources: &[Datasource],
    dashboard: &Value,
    vars: &[grafana::Variable],
) -> Resolved {
    let built_in = |s: &str| s.starts_with("-- ") || s == "grafana";
    match ds {
        None => default_datasource(datasources),
        Some(Value::String(s)) if built_in(s) => Resolved::BuiltIn,
        Some(Value::String(s)) if s.starts_with('$') => indirect(s, datasources, dashboard, vars),
        // A string is a name, or a uid (Grafana's getInstanceSettings tries both).
        Some(Value::String(s)) => match datasources
            .iter()
            .find(|d| &d.name == s)
            .or_else(|| datasources.iter().find(|d| d.uid.as_deref() == Some(s)))
        {
            Some(d) => Resolved::Type(d.type_.clone()),
            None => Resolved::Unresolved(format!("no provisioned datasource is named `{s}`")),
        },
        Some(obj) => match obj.get("uid").and_then(Value::as_str) {
            Some(u) if built_in(u) => Resolved::BuiltIn,
            Some(u) if u.starts_with('$') => indirect(u, datasources, dashboard, vars),
            Some(u) => by_uid(u, datasources),
            None => match obj.get("type").and_then(Value::as_str) {
                Some(t) if has_type(datasources, t) => Resolved::Type(t.to_string()),
                Some(t) => Resolved::Unresolved(format!("no {t} datasource is provisioned")),
                None => default_datasource(datasources),
            },
        },
    }
}

/// A panel that names no datasource gets the default one (or the only one).
fn default_datasource(datasources: &[Datasource]) -> Resolved {
    let only = (datasources.len() == 1)
        .then(|| datasources.first())
        .flatten();
    match datasources.iter().find(|d| d.is_default).or(only) {
        Some(d) => Resolved::Type(d.type_.clone()),
        None => Resolved::Unresolved(
            "the panel names no datasource and none is provisioned as default".into(),
        ),
    }
}

fn by_uid(u: &str, datasources: &[Datasource]) -> Resolved {
    match datasources.iter().find(|d| d.uid.as_deref() == Some(u)) {
        Some(d) => Resolved::Type(d.type_.clone()),
        None => {
            let uids: Vec<&str> = datasources
                .iter()
                .filter_map(|d| d.uid.as_deref())
                .collect();
            Resolved::Unresolved(format!(
                "no provisioned datasource has uid `{u}` (provisioned: {})",
                uids.join(", ")
            ))
        }
    }
}

/// `$name` / `${name}`: a datasource variable (its query is the plugin
/// type) or an `__inputs` entry of an exported dashboard.
fn indirect(
    r: &str,
    datasources: &[Datasource],
    dashboard: &Value,
    vars: &[grafana::Variable],
) -> Resolved {
    let name = r
        .trim_start_matches('$')
        .trim_start_matches('{')
        .trim_end_matches('}');
    if let Some(v) = vars.iter().find(|v| v.name == name) {
        let t = dashboard
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|x| x.get("name").and_then(Value::as_str) == Some(&v.name))
            })
            .and_then(|x| x.get("query").and_then(Value::as_str))
            .unwrap_or("prometheus");
        return if has_type(datasources, t) {
            Resolved::Type(t.to_string())
        } else {
            Resolved::Unresolved(format!(
                "datasource variable `${name}` needs a provisioned {t} datasource"
            ))
        };
    }
    let input = dashboard
        .get("__inputs")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
        });
    match input
        .and_then(|i| i.get("pluginId"))
        .and_then(Value::as_str)
    {
        Some(t) if has_type(datasources, t) => Resolved::Type(t.to_string()),
        Some(t) => Resolved::Unresolved(format!(
            "input `{name}` needs a {t} datasource, none is provisioned"
        )),
        None => Resolved::Unresolved(format!(
            "`{r}` is neither a dashboard variable nor an `__inputs` entry"
        )),
    }
}

/// A dashboard: every Prometheus target interpolated and parsed; inside a
/// stack also its datasource resolved and its metrics checked.
pub fn lint_file(path: &Path, ctx: Option<&StackContext>) -> Report {
    let mut r = Report {
        files: 1,
        ..Default::default()
    };
    let (text, dashboard) = match read_dashboard(path) {
        Ok(d) => d,
        Err(f) => {
            r.findings.push(f);
            return r;
        }
    };
    // JSON is YAML: the same index gives positions.
    let src = Source::from_text(path, text);
    let vars = grafana::variables(&dashboard);
    let time = TimeContext {
        scrape: ctx
            .and_then(scrape_interval)
            .unwrap_or(Duration::from_secs(15)),
        ..TimeContext::default()
    };
    for t in grafana::targets(&dashboard) {
        if let Some(ctx) = ctx {
            let finding = |e: String| {
                let m = format!("panel `{}` ({}): {e}", t.panel_title, t.ref_id);
                Finding::at("datasource", Severity::Error, &src, &t.path, m)
            };
            match resolve(t.datasource.as_ref(), ctx.datasources, &dashboard, &vars) {
                Resolved::Type(kind) if kind == "prometheus" => {}
                Resolved::Type(_) | Resolved::BuiltIn => continue,
                Resolved::Unresolved(e) => {
                    r.findings.push(finding(e));
                    continue;
                }
            }
        }
        r.queries += 1;
        let q = grafana::interpolate(&t.expr, &vars, &time, t.interval.as_deref());
        match promql_parser::parser::parse(&q) {
            Ok(ast) => {
                if let Some(ctx) = ctx {
                    r.findings.extend(ctx.catalog.check(&ast, &src, &t.path));
                    if ctx.catalog.standalone_cadvisor() {
                        let title = &t.panel_title;
                        r.findings
                            .extend(super::semantic::kubelet_labels(&ast).into_iter().map(|m| {
                                Finding::at(
                                    "kubelet-labels",
                                    Severity::Warning,
                                    &src,
                                    &t.path,
                                    format!("panel `{title}`: {m}"),
                                )
                                .help(super::semantic::KUBELET_HELP)
                            }));
                    }
                }
            }
            Err(e) => r.findings.push(
                Finding::at(
                    "promql",
                    Severity::Error,
                    &src,
                    &t.path,
                    format!(
                        "panel `{}` ({}): invalid PromQL after interpolation: {e}",
                        t.panel_title, t.ref_id
                    ),
                )
                .help(format!("interpolated: {q}")),
            ),
        }
    }
    r
}

/// The dashboard's text and JSON, or the finding that says why not.
fn read_dashboard(path: &Path) -> Result<(String, Value), Finding> {
    let at = |line, col, m: String| {
        let pos = crate::error::Pos { line, col };
        Finding::pos("config", Severity::Error, path, pos, m)
    };
    let text = std::fs::read_to_string(path).map_err(|e| at(1, 1, format!("cannot read: {e}")))?;
    let dashboard = serde_json::from_str(&text)
        .map_err(|e| at(e.line(), e.column(), format!("invalid JSON: {e}")))?;
    Ok((text, dashboard))
}

/// The scrape interval Grafana assumes (a datasource's `timeInterval`).
fn scrape_interval(ctx: &StackContext) -> Option<Duration> {
    ctx.datasources
        .iter()
        .find_map(|d| d.json_data.as_ref()?.get("timeInterval")?.as_str())
        .and_then(|s| crate::spec::Dur::parse(s).ok())
        .map(|d| d.0)
}
