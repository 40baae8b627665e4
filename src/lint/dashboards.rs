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

#[derive(Debug, Clone, Deserialize)]
pub struct Datasource {
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, rename = "isDefault")]
    pub is_default: bool,
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
    pub datasources: &'a [Datasource],
    pub catalog: &'a Catalog,
}

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
        let mut datasources = Vec::new();
        for f in yaml_files(&prov.join("datasources")) {
            r.files += 1;
            match Source::read(&f).and_then(|s| s.parse::<DatasourcesFile>().map(|d| (s, d))) {
                Ok((_, d)) => datasources.extend(d.datasources),
                Err(e) => r.findings.push(from_spec(&e)),
            }
        }
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
            let src = match Source::read(&f) {
                Ok(s) => s,
                Err(e) => {
                    r.findings.push(from_spec(&e));
                    continue;
                }
            };
            match src.parse::<ProvidersFile>() {
                Ok(pf) => {
                    for (i, p) in pf.providers.iter().enumerate() {
                        let path = p.options.path.as_deref().unwrap_or("");
                        match (&dash_dir, path.strip_prefix(DASHBOARDS_IN_CONTAINER)) {
                            (Some(dir), Some(rest)) => {
                                let d = dir.join(rest.trim_start_matches('/'));
                                let mut found: Vec<PathBuf> = std::fs::read_dir(&d).map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()).unwrap_or_default();
                                if found.is_empty() {
                                    r.findings.push(Finding::at("grafana", Severity::Error, &src, &format!("providers.{i}.options.path"), format!("provider `{}` loads no dashboard from {path}", p.name)));
                                }
                                found.sort();
                                dash_files.extend(found);
                            }
                            _ => r.findings.push(Finding::at(
                                "grafana",
                                Severity::Error,
                                &src,
                                &format!("providers.{i}.options.path"),
                                format!("provider `{}` reads {path:?}, which the stack does not provide (its `dashboards` folder is mounted at {DASHBOARDS_IN_CONTAINER})", p.name),
                            )),
                        }
                    }
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

/// A datasource reference resolved to its type, or why it does not resolve.
fn resolve(
    ds: Option<&Value>,
    ctx: &StackContext,
    dashboard: &Value,
    vars: &[grafana::Variable],
) -> Result<Option<String>, String> {
    let by_type = |t: &str| ctx.datasources.iter().any(|d| d.type_ == t);
    let indirect = |r: &str| -> Option<Result<Option<String>, String>> {
        let name = r
            .trim_start_matches('$')
            .trim_start_matches('{')
            .trim_end_matches('}');
        if !r.starts_with('$') {
            return None;
        }
        if let Some(v) = vars.iter().find(|v| v.name == name) {
            // A datasource variable: its query is the plugin type.
            let t = dashboard
                .pointer("/templating/list")
                .and_then(Value::as_array)
                .and_then(|l| {
                    l.iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(&v.name))
                })
                .and_then(|x| x.get("query").and_then(Value::as_str))
                .unwrap_or("prometheus")
                .to_string();
            return Some(if by_type(&t) {
                Ok(Some(t))
            } else {
                Err(format!(
                    "datasource variable `${name}` needs a provisioned {t} datasource"
                ))
            });
        }
        let input = dashboard
            .get("__inputs")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            });
        Some(
            match input
                .and_then(|i| i.get("pluginId"))
                .and_then(Value::as_str)
            {
                Some(t) if by_type(t) => Ok(Some(t.to_string())),
                Some(t) => Err(format!(
                    "input `{name}` needs a {t} datasource, none is provisioned"
                )),
                None => Err(format!(
                    "`{r}` is neither a dashboard variable nor an `__inputs` entry"
                )),
            },
        )
    };
    match ds {
        None => {
            match ctx
                .datasources
                .iter()
                .find(|d| d.is_default)
                .or(if ctx.datasources.len() == 1 {
                    ctx.datasources.first()
                } else {
                    None
                }) {
                Some(d) => Ok(Some(d.type_.clone())),
                None => {
                    Err("the panel names no datasource and none is provisioned as default".into())
                }
            }
        }
        Some(Value::String(s)) => {
            if s.starts_with("-- ") || s == "grafana" {
                return Ok(None);
            }
            if let Some(r) = indirect(s) {
                return r;
            }
            match ctx.datasources.iter().find(|d| &d.name == s) {
                Some(d) => Ok(Some(d.type_.clone())),
                None => Err(format!("no provisioned datasource is named `{s}`")),
            }
        }
        Some(obj) => {
            let uid = obj.get("uid").and_then(Value::as_str);
            let t = obj.get("type").and_then(Value::as_str);
            match uid {
                Some(u) if u.starts_with("-- ") || u == "grafana" => Ok(None),
                Some(u) => {
                    if let Some(r) = indirect(u) {
                        return r;
                    }
                    match ctx.datasources.iter().find(|d| d.uid.as_deref() == Some(u)) {
                        Some(d) => Ok(Some(d.type_.clone())),
                        None => {
                            let uids: Vec<&str> = ctx
                                .datasources
                                .iter()
                                .filter_map(|d| d.uid.as_deref())
                                .collect();
                            Err(format!(
                                "no provisioned datasource has uid `{u}` (provisioned: {})",
                                uids.join(", ")
                            ))
                        }
                    }
                }
                None => match t {
                    Some(t) if by_type(t) => Ok(Some(t.to_string())),
                    Some(t) => Err(format!("no {t} datasource is provisioned")),
                    None => resolve(None, ctx, dashboard, vars),
                },
            }
        }
    }
}

/// A dashboard: every Prometheus target interpolated and parsed; inside a
/// stack also its datasource resolved and its metrics checked.
pub fn lint_file(path: &Path, ctx: Option<&StackContext>) -> Report {
    let mut r = Report {
        files: 1,
        ..Default::default()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            r.findings.push(Finding::pos(
                "config",
                Severity::Error,
                path,
                crate::error::Pos { line: 1, col: 1 },
                format!("cannot read: {e}"),
            ));
            return r;
        }
    };
    let dashboard: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            r.findings.push(Finding::pos(
                "config",
                Severity::Error,
                path,
                crate::error::Pos {
                    line: e.line(),
                    col: e.column(),
                },
                format!("invalid JSON: {e}"),
            ));
            return r;
        }
    };
    // JSON is YAML: the same index gives positions.
    let src = Source::from_text(path, text);
    let vars = grafana::variables(&dashboard);
    let scrape = ctx
        .and_then(|c| {
            c.datasources.iter().find_map(|d| {
                d.json_data
                    .as_ref()?
                    .get("timeInterval")?
                    .as_str()
                    .map(String::from)
            })
        })
        .and_then(|s| crate::spec::Dur::parse(&s).ok())
        .map(|d| d.0)
        .unwrap_or(std::time::Duration::from_secs(15));
    let time = TimeContext {
        scrape,
        ..TimeContext::default()
    };
    for t in grafana::targets(&dashboard) {
        if let Some(ctx) = ctx {
            match resolve(t.datasource.as_ref(), ctx, &dashboard, &vars) {
                Ok(Some(kind)) if kind != "prometheus" => continue,
                Ok(None) => continue,
                Ok(Some(_)) => {}
                Err(e) => {
                    r.findings.push(Finding::at(
                        "datasource",
                        Severity::Error,
                        &src,
                        &t.path,
                        format!("panel `{}` ({}): {e}", t.panel_title, t.ref_id),
                    ));
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
