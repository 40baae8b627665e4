//! prometheus.yml and its rule files: the typed view firedrill needs (global
//! intervals, jobs, rule groups), each rule expression parsed with
//! promql-parser, and errors located in the user's files.

use super::source::Source;
use super::Dur;
use crate::error::{SpecError, SpecErrors};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prometheus' own defaults (config/config.go).
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
/// Prometheus' default scrape timeout, 10s.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Prometheus' default rule evaluation interval, 1m.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// The `global` section of prometheus.yml.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Global {
    /// The default scrape interval, default 1m.
    pub scrape_interval: Option<Dur>,
    /// The default scrape timeout, default 10s (never more than the scrape interval).
    pub scrape_timeout: Option<Dur>,
    /// The default rule evaluation interval, default 1m.
    pub evaluation_interval: Option<Dur>,
}

/// One entry of a job's `static_configs`.
#[derive(Debug, Clone, Deserialize)]
pub struct StaticConfig {
    /// The `host:port` addresses to scrape.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every series scraped from these targets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One entry of `scrape_configs`: a scrape job.
#[derive(Debug, Clone, Deserialize)]
pub struct ScrapeConfig {
    /// The job name, also the `job` label of its series.
    pub job_name: String,
    /// This job's scrape interval, default the global one.
    pub scrape_interval: Option<Dur>,
    /// This job's scrape timeout, default the global one.
    pub scrape_timeout: Option<Dur>,
    /// The HTTP path metrics are scraped from, default `/metrics`.
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// The job's static target groups.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Its relabelling, read only to tell whether a target's address is
    /// rewritten (a blackbox probe's target is a parameter, not the address).
    #[serde(default)]
    pub relabel_configs: Vec<serde_yaml_ng::Value>,
    /// URL parameters (a blackbox probe's `module`).
    #[serde(default)]
    pub params: Option<serde_yaml_ng::Value>,
}

impl ScrapeConfig {
    /// Whether its targets are scraped at another address than their own:
    /// a relabelling sets `__address__`, or it passes `params` (a probe).
    pub fn rewrites_address(&self) -> bool {
        self.params.is_some()
            || self
                .relabel_configs
                .iter()
                .any(|r| r.get("target_label").and_then(|v| v.as_str()) == Some("__address__"))
    }
}

/// One entry of `alerting.alertmanagers`: where alerts are sent.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct AlertmanagerSet {
    /// The Alertmanager addresses, as static target groups.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
}

/// The `alerting` section of prometheus.yml.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Alerting {
    /// The Alertmanagers Prometheus sends alerts to.
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerSet>,
}

/// The parts of prometheus.yml firedrill reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PromConfig {
    /// The `global` section: default intervals.
    #[serde(default)]
    pub global: Global,
    /// Rule file paths or globs, relative to prometheus.yml's folder.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// The scrape jobs.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// The `alerting` section: where alerts are sent.
    #[serde(default)]
    pub alerting: Alerting,
}

impl PromConfig {
    /// The port a static target names for `host` (`host:port`), if any.
    pub fn target_port(&self, host: &str) -> Option<u16> {
        self.scrape_configs
            .iter()
            .flat_map(|s| &s.static_configs)
            .flat_map(|c| &c.targets)
            .find_map(|t| match t.rsplit_once(':') {
                Some((h, p)) if h == host => p.parse().ok(),
                _ => None,
            })
    }

    /// The global scrape interval, default 1m.
    pub fn scrape_interval(&self) -> Duration {
        self.global
            .scrape_interval
            .map(|d| d.0)
            .unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    }
    /// The global scrape timeout, default 10s, capped at the scrape interval.
    pub fn scrape_timeout(&self) -> Duration {
        self.global
            .scrape_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
            .min(self.scrape_interval())
    }
    /// The global rule evaluation interval, default 1m.
    pub fn evaluation_interval(&self) -> Duration {
        self.global
            .evaluation_interval
            .map(|d| d.0)
            .unwrap_or(DEFAULT_EVALUATION_INTERVAL)
    }
    /// (interval, timeout) of a job, with the global defaults applied as Prometheus does.
    pub fn job_timing(&self, job: &str) -> (Duration, Duration) {
        let sc = self.scrape_configs.iter().find(|s| s.job_name == job);
        let interval = sc
            .and_then(|s| s.scrape_interval)
            .map(|d| d.0)
            .unwrap_or_else(|| self.scrape_interval());
        let timeout = sc
            .and_then(|s| s.scrape_timeout)
            .map(|d| d.0)
            .unwrap_or_else(|| self.scrape_timeout())
            .min(interval);
        (interval, timeout)
    }
    /// The slowest scrape of any job: the conservative bound when a rule's job is unknown.
    pub fn slowest_scrape(&self) -> (Duration, Duration) {
        self.scrape_configs
            .iter()
            .map(|s| self.job_timing(&s.job_name))
            .max()
            .unwrap_or((self.scrape_interval(), self.scrape_timeout()))
    }
}

/// One rule of a rule group: alerting (`alert`) or recording (`record`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert name, for an alerting rule.
    pub alert: Option<String>,
    /// The name of the recorded series, for a recording rule.
    pub record: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// How long the expression must stay true before the alert fires (`for`), default 0.
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    /// How long the alert keeps firing after the expression stops being true, default 0.
    pub keep_firing_for: Option<Dur>,
    /// Labels added to the alert or recorded series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations attached to the alert.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A rule group: rules evaluated together on one interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    /// The group name.
    pub name: String,
    /// How often the group's rules are evaluated, default the global evaluation interval.
    pub interval: Option<Dur>,
    /// The most alerts or series a rule may produce; no limit when unset.
    #[serde(default)]
    pub limit: Option<u64>,
    /// How far back in time the group's queries are evaluated.
    #[serde(default)]
    pub query_offset: Option<Dur>,
    /// The rules of the group.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The contents of one rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFileDoc {
    /// The rule groups in the file.
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// One rule file as loaded: where it sits relative to prometheus.yml's folder
/// (which is also where it goes in the container).
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The path relative to prometheus.yml's folder.
    pub rel: PathBuf,
    /// The file's text and location.
    pub source: Source,
    /// The parsed contents.
    pub doc: RuleFileDoc,
}

/// An alerting rule with everything the timing model needs.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The alert name.
    pub name: String,
    /// The PromQL expression.
    pub expr: String,
    /// The `for` duration, zero when unset.
    pub for_: Duration,
    /// The `keep_firing_for` duration, zero when unset.
    pub keep_firing_for: Duration,
    /// The rule's own labels.
    pub labels: BTreeMap<String, String>,
    /// The evaluation interval of the rule's group.
    pub eval_interval: Duration,
    /// The rule file the rule is defined in.
    pub file: PathBuf,
}

/// prometheus.yml and every rule file it names, all parsed and validated.
#[derive(Debug, Clone)]
pub struct Prometheus {
    /// The text and location of prometheus.yml.
    pub source: Source,
    /// The parsed prometheus.yml.
    pub config: PromConfig,
    /// The rule files named by `rule_files`, in order.
    pub rule_files: Vec<RuleFile>,
}

impl Prometheus {
    /// Reads prometheus.yml at `path` and the rule files it names.
    pub fn load(path: &Path) -> Result<Prometheus, SpecErrors> {
        let source = Source::read(path).map_err(one)?;
        Self::from_source(source, |rel| std::fs::read_to_string(rel))
    }

    /// Loads from a prometheus.yml source; rule files are read relative to it.
    pub fn from_source(
        source: Source,
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Prometheus, SpecErrors> {
        let config: PromConfig = source.parse().map_err(one)?;
        let mut errors = Vec::new();
        let mut rule_files = Vec::new();
        let dir = source.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for (i, pattern) in config.rule_files.iter().enumerate() {
            let at = format!("rule_files.{i}");
            // Firedrill copies the config and its rule files into
            // PROM_DIR: an absolute path there is one beside the config.
            let rel = pattern
                .strip_prefix(crate::components::PROM_DIR)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(pattern);
            let full = dir.join(rel);
            let matches: Vec<PathBuf> = match glob::glob(&full.to_string_lossy()) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(e) => {
                    errors.push(source.error(&at, format!("bad glob `{pattern}`: {e}")));
                    continue;
                }
            };
            if matches.is_empty() {
                // promtool passes silently here; a drill with no rules proves nothing.
                errors.push(source.error(
                    &at,
                    format!("rule_files pattern `{pattern}` matches no file"),
                ));
                continue;
            }
            for file in matches {
                let rel = file.strip_prefix(&dir).unwrap_or(&file).to_path_buf();
                match read(&file) {
                    Ok(text) => match load_rule_file(Source::from_text(&file, text), rel) {
                        Ok(rf) => rule_files.push(rf),
                        Err(mut e) => errors.append(&mut e.errors),
                    },
                    Err(e) => errors
                        .push(source.error(&at, format!("cannot read {}: {e}", file.display()))),
                }
            }
        }
        SpecErrors { errors }.into_result()?;
        Ok(Prometheus {
            source,
            config,
            rule_files,
        })
    }

    /// Every alerting rule across all rule files, with its group's evaluation interval.
    pub fn alert_rules(&self) -> Vec<AlertRule> {
        let mut out = Vec::new();
        for rf in &self.rule_files {
            for g in &rf.doc.groups {
                let eval = g
                    .interval
                    .map(|d| d.0)
                    .unwrap_or_else(|| self.config.evaluation_interval());
                for r in &g.rules {
                    if let Some(name) = &r.alert {
                        out.push(AlertRule {
                            name: name.clone(),
                            expr: r.expr.clone(),
                            for_: r.for_.map(|d| d.0).unwrap_or_default(),
                            keep_firing_for: r.keep_firing_for.map(|d| d.0).unwrap_or_default(),
                            labels: r.labels.clone(),
                            eval_interval: eval,
                            file: rf.source.path.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// The alerting rule named `name`, if any.
    pub fn alert_rule(&self, name: &str) -> Option<AlertRule> {
        self.alert_rules().into_iter().find(|r| r.name == name)
    }
}

fn one(e: SpecError) -> SpecErrors {
    SpecErrors { errors: vec![e] }
}

/// Parses and validates one rule file; `rel` is its path relative to prometheus.yml.
pub fn load_rule_file(source: Source, rel: PathBuf) -> Result<RuleFile, SpecErrors> {
    let doc: RuleFileDoc = source.parse().map_err(one)?;
    let mut errors = Vec::new();
    for (gi, g) in doc.groups.iter().enumerate() {
        for (ri, r) in g.rules.iter().enumerate() {
            let at = format!("groups.{gi}.rules.{ri}");
            match (&r.alert, &r.record) {
                (Some(_), Some(_)) => errors
                    .push(source.error(&at, "a rule has either `alert` or `record`, not both")),
                (None, None) => errors.push(source.error(&at, "a rule needs `alert` or `record`")),
                (None, Some(_)) if r.for_.is_some() => {
                    errors.push(source.error(&format!("{at}.for"), "a recording rule has no `for`"))
                }
                _ => {}
            }
            if let Err(e) = promql_parser::parser::parse(&r.expr) {
                errors.push(source.error(&format!("{at}.expr"), format!("invalid PromQL: {e}")));
            }
        }
    }
    SpecErrors { errors }.into_result()?;
    Ok(RuleFile { rel, source, doc })
}

/// The jobs with a static target on `host` (a service of the stack).
pub fn jobs_scraping(cfg: &PromConfig, host: &str) -> Vec<String> {
    cfg.scrape_configs
        .iter()
        .filter(|s| {
            s.static_configs
                .iter()
                .flat_map(|c| &c.targets)
                .any(|t| t.rsplit_once(':').map_or(t.as_str(), |(h, _)| h) == host)
        })
        .map(|s| s.job_name.clone())
        .collect()
}

/// `host:port` targets of a job's static configs.
pub fn job_targets(cfg: &PromConfig, job: &str) -> Vec<String> {
    cfg.scrape_configs
        .iter()
        .filter(|s| s.job_name == job)
        .flat_map(|s| s.static_configs.iter().flat_map(|c| c.targets.clone()))
        .collect()
}
