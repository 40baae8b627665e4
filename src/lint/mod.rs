//! `firedrill lint`: static checks of a stack, no container. Files parse;
//! every rule and (interpolated) panel query parses; every metric a query
//! selects is exposed by a target of the stack; datasources resolve; alert
//! hygiene; routing reaches a receiver; no secret in clear text. Findings
//! name file, line and column; they can be silenced per line or per file
//! with a reason.

pub mod dashboards;
pub mod metrics;
pub mod output;
pub mod routing;
pub mod rules;
pub mod secrets;
pub mod semantic;

use crate::error::Pos;
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; does not fail the lint.
    Warning,
    /// Fails the lint.
    Error,
}

/// One problem lint found, located in a file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The name of the check that found it (what a silence names).
    pub check: &'static str,
    /// Warning or error.
    pub severity: Severity,
    /// The file it is in.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when lint knows.
    pub help: Option<String>,
}

impl Finding {
    /// A finding at the node `path` (`groups.0.rules.2.expr`) of a YAML source.
    pub fn at(
        check: &'static str,
        severity: Severity,
        src: &Source,
        path: &str,
        message: impl Into<String>,
    ) -> Finding {
        let p = src.pos(path);
        Finding::pos(check, severity, &src.path, p, message)
    }
    /// A finding at position `p` of `file`.
    pub fn pos(
        check: &'static str,
        severity: Severity,
        file: &Path,
        p: Pos,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity,
            file: file.to_path_buf(),
            line: p.line.max(1),
            col: p.col.max(1),
            message: message.into(),
            help: None,
        }
    }
    /// Adds a hint on how to fix it.
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

/// Where a stack's alerts go, as `amtool config routes test` would answer.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// The alert's name.
    pub alert: String,
    /// The receivers it reaches, in order.
    pub receivers: Vec<String>,
}

/// Everything lint found, plus what it looked at.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The findings not silenced.
    pub findings: Vec<Finding>,
    /// How many findings were silenced.
    pub silenced: usize,
    /// Where each alert is routed.
    pub routes: Vec<Route>,
    /// How many files were read.
    pub files: usize,
    /// How many rules were checked.
    pub rules: usize,
    /// How many panel queries were checked.
    pub queries: usize,
}

impl Report {
    /// How many findings are errors.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
    /// Adds another report's findings and counts to this one.
    pub fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.silenced += other.silenced;
        self.routes.extend(other.routes);
        self.files += other.files;
        self.rules += other.rules;
        self.queries += other.queries;
    }
}

/// Options of a lint run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Metric names and jobs from a running Prometheus (`--live`).
    pub live: Option<metrics::Live>,
}

fn from_spec(e: &crate::error::SpecError) -> Finding {
    Finding::pos(
        "config",
        Severity::Error,
        Path::new(&e.file),
        Pos {
            line: e.line,
            col: e.col,
        },
        e.message.clone(),
    )
}

/// Lints a stack, a rule file or a dashboard, told apart by content.
pub fn lint_path(path: &Path, opts: &Options) -> Report {
    let mut ignores = Vec::new();
    let mut report = match kind_of(path) {
        Kind::Dashboard => dashboards::lint_file(path, None),
        Kind::Rules => rules::lint_file(path),
        Kind::Stack => lint_stack(path, opts, &mut ignores),
        // A promtool unit-test file: its rule files are what lint checks
        // (the tests themselves are `promtool test rules`' to run).
        Kind::PrometheusConfig | Kind::UnitTests => lint_prometheus(path),
        Kind::AlertmanagerConfig => lint_alertmanager(path),
        Kind::Provisioning => lint_provisioning(path),
    };
    silence(&mut report, &ignores);
    report
        .findings
        .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    report
}

/// What a file given to lint is, told by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stack,
    Rules,
    Dashboard,
    PrometheusConfig,
    UnitTests,
    AlertmanagerConfig,
    Provisioning,
}

/// A file's kind by its top-level keys (JSON: a dashboard); one that
/// cannot be told is read as a rule file, whose errors then say why.
fn kind_of(path: &Path) -> Kind {
    if path.extension().is_some_and(|e| e == "json") {
        return Kind::Dashboard;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let keys: Vec<String> = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) {
        Ok(serde_yaml_ng::Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let has = |k: &str| keys.iter().any(|x| x == k);
    // Grafana provisioning first: its alerting files have `groups` too.
    if has("apiVersion") {
        return Kind::Provisioning;
    }
    if has("services") {
        Kind::Stack
    } else if has("groups") {
        Kind::Rules
    } else if has("tests") {
        Kind::UnitTests
    } else if has("scrape_configs") || has("global") && !has("route") || has("rule_files") {
        Kind::PrometheusConfig
    } else if has("route") || has("receivers") {
        Kind::AlertmanagerConfig
    } else {
        Kind::Rules
    }
}

/// A Prometheus config on its own: it parses, its rule files parse and
/// are linted, its scrape targets speak the exposition.
fn lint_prometheus(path: &Path) -> Report {
    let mut report = Report {
        files: 1,
        ..Default::default()
    };
    match crate::spec::prometheus::Prometheus::load(path) {
        Ok(p) => {
            report.files += p.rule_files.len();
            for rf in &p.rule_files {
                report.merge(rules::lint_rules(rf, None));
            }
            report.findings.extend(rules::duplicates(&p.rule_files));
            report.findings.extend(semantic::scrape_targets(&p, None));
        }
        Err(e) => report.findings.extend(e.errors.iter().map(from_spec)),
    }
    report
}

/// An Alertmanager config on its own: it parses, and its routes reach a
/// receiver.
fn lint_alertmanager(path: &Path) -> Report {
    let mut report = Report {
        files: 1,
        ..Default::default()
    };
    if let Err(e) = crate::spec::alertmanager::Alertmanager::load(path) {
        report.findings.push(from_spec(&e));
    }
    report
}

/// Grafana provisioning on its own: its datasources or providers parse.
fn lint_provisioning(path: &Path) -> Report {
    let mut report = Report {
        files: 1,
        ..Default::default()
    };
    dashboards::provisioned_file(path, &mut report);
    report
}

/// Lints a whole stack: its configs, rule files, routing, dashboards, secrets.
fn lint_stack(path: &Path, opts: &Options, ignores: &mut Vec<(PathBuf, String, String)>) -> Report {
    let mut report = Report::default();
    let stack = match Stack::load(path) {
        Ok(s) => s,
        Err(e) => {
            report.findings.extend(e.errors.iter().map(from_spec));
            return report;
        }
    };
    for i in &stack.doc.lint.ignore {
        ignores.push((
            stack.source.relative(&i.file),
            i.check.clone(),
            i.reason.clone(),
        ));
    }
    report.files += 2
        + stack.prometheus.rule_files.len()
        + usize::from(stack.alertmanager.is_some())
        + stack.fixtures.len();
    let catalog = metrics::Catalog::of_stack(&stack, opts.live.clone());
    for rf in &stack.prometheus.rule_files {
        report.merge(rules::lint_rules(rf, Some((&stack, &catalog))));
    }
    report
        .findings
        .extend(rules::duplicates(&stack.prometheus.rule_files));
    report
        .findings
        .extend(semantic::scrape_targets(&stack.prometheus, Some(&stack)));
    report.merge(routing::lint_routing(&stack));
    report.merge(dashboards::lint_stack_dashboards(&stack, &catalog));
    report.findings.extend(secrets::lint_stack(&stack));
    report
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `# firedrill-lint: ignore[check] reason` on the line or the line above
/// silences one finding; `ignore-file[check] reason` the whole file. A
/// silence without a reason is itself a finding. In JSON files, which
/// have no comments, list silences in the stack's `lint.ignore`.
fn silence(report: &mut Report, ignores: &[(PathBuf, String, String)]) {
    let mut texts: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut extra = Vec::new();
    for f in report.findings.drain(..) {
        let lines = texts.entry(f.file.clone()).or_insert_with(|| {
            std::fs::read_to_string(&f.file)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        });
        let directive = |line: &str, file_wide: bool| -> Option<(String, String)> {
            let key = if file_wide {
                "firedrill-lint: ignore-file["
            } else {
                "firedrill-lint: ignore["
            };
            let rest = &line[line.find(key)? + key.len()..];
            let (check, reason) = rest.split_once(']')?;
            Some((check.trim().to_string(), reason.trim().to_string()))
        };
        let listed = ignores.iter().find(|(file, check, _)| {
            (check == f.check || check == "all") && same_file(file, &f.file)
        });
        let here = [f.line.checked_sub(1), f.line.checked_sub(2)]
            .into_iter()
            .flatten()
            .filter_map(|i| lines.get(i))
            .find_map(|l| directive(l, false))
            .or_else(|| lines.iter().find_map(|l| directive(l, true)))
            .or_else(|| listed.map(|(_, c, r)| (c.clone(), r.clone())));
        match here {
            Some((check, reason)) if check == f.check || check == "all" => {
                if reason.is_empty() {
                    extra.push(Finding {
                        check: "silence",
                        severity: Severity::Error,
                        message: format!("silencing `{check}` needs a reason"),
                        help: None,
                        ..f.clone()
                    });
                }
                report.silenced += 1;
            }
            _ => kept.push(f),
        }
    }
    kept.extend(extra);
    report.findings = kept;
}
