//! stack.yaml: the services of a monitoring stack, each a kind firedrill knows
//! how to run (Prometheus, Alertmanager, node-exporter, a fixture, the Teams
//! mock, and the optional Grafana and cAdvisor), plus the files they read.

use super::alertmanager::Alertmanager;
use super::fixture::Profile;
use super::prometheus::Prometheus;
use super::source::Source;
use crate::error::{SpecError, SpecErrors};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Prometheus,
    Alertmanager,
    NodeExporter,
    Fixture,
    TeamsMock,
    Grafana,
    Cadvisor,
    /// PostgreSQL (seed 002), from Debian's postgresql-17 offline.
    Postgres,
    /// prometheus-community's postgres_exporter.
    PostgresExporter,
}

impl Kind {
    /// The port the component listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            Kind::Prometheus => 9090,
            Kind::Alertmanager => 9093,
            Kind::NodeExporter => 9100,
            Kind::Fixture => 8000,
            Kind::TeamsMock => 8080,
            Kind::Grafana => 3000,
            Kind::Cadvisor => 8080,
            Kind::Postgres => 5432,
            Kind::PostgresExporter => 9187,
        }
    }
}

/// A secret file the drill writes into a container: never in the user's tree
/// in clear text, never logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// Path inside the container.
    pub path: String,
    /// Write the webhook URL of this Teams-mock service (with a per-run token).
    pub teams_mock: Option<String>,
    /// Write the value of this environment variable.
    pub env: Option<String>,
    /// Write a random value made for this run, the same for every secret
    /// of the stack with this name (a database password that the database
    /// and its exporter share).
    pub generated: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub kind: Kind,
    pub port: Option<u16>,
    /// prometheus / alertmanager: the config file, relative to stack.yaml.
    pub config: Option<String>,
    /// fixture: the profile, relative to stack.yaml.
    pub profile: Option<String>,
    /// fixture: a variant of the profile (`v0` for vllm's older names).
    pub variant: Option<String>,
    /// grafana: the provisioning folder, relative to stack.yaml.
    pub provisioning: Option<String>,
    /// grafana: the dashboards folder, relative to stack.yaml.
    pub dashboards: Option<String>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the container (never a secret: use `secrets`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A lint finding silenced for a file that cannot hold comments (JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintIgnore {
    /// Relative to stack.yaml.
    pub file: String,
    pub check: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    #[serde(default)]
    pub ignore: Vec<LintIgnore>,
}

/// An alert no drill can provoke on a CI machine, and why (`firedrill
/// coverage` lists it apart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub alert: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageConfig {
    #[serde(default)]
    pub waive: Vec<Waiver>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackDoc {
    pub name: String,
    pub services: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub lint: LintConfig,
    #[serde(default)]
    pub coverage: CoverageConfig,
}

/// A stack with every file it names loaded and validated.
#[derive(Debug, Clone)]
pub struct Stack {
    pub source: Source,
    pub doc: StackDoc,
    pub prometheus_service: String,
    pub prometheus: Prometheus,
    pub alertmanager_service: Option<String>,
    pub alertmanager: Option<Alertmanager>,
    pub fixtures: BTreeMap<String, Profile>,
}

impl Stack {
    pub fn load(path: &Path) -> Result<Stack, SpecErrors> {
        let one = |e: SpecError| SpecErrors { errors: vec![e] };
        let source = Source::read(path).map_err(one)?;
        let doc: StackDoc = source.parse().map_err(one)?;
        let mut errors = Vec::new();
        let of_kind = |k: Kind| -> Vec<&String> {
            doc.services
                .iter()
                .filter(|(_, s)| s.kind == k)
                .map(|(n, _)| n)
                .collect()
        };
        let proms = of_kind(Kind::Prometheus);
        if proms.len() != 1 {
            return Err(one(source.error(
                "services",
                "a stack has exactly one service of kind prometheus",
            )));
        }
        let prometheus_service = proms[0].clone();
        let need = |name: &str, field: &Option<String>, what: &str| -> Result<PathBuf, SpecError> {
            field.as_ref().map(|p| source.relative(p)).ok_or_else(|| {
                source.error(
                    &format!("services.{name}"),
                    format!("service `{name}` needs `{what}`"),
                )
            })
        };
        let prom_path = need(
            &prometheus_service,
            &doc.services[&prometheus_service].config,
            "config",
        )
        .map_err(one)?;
        let prometheus = Prometheus::load(&prom_path);
        let ams = of_kind(Kind::Alertmanager);
        let (alertmanager_service, alertmanager) = match ams.first() {
            Some(n) => {
                match need(n, &doc.services[*n].config, "config")
                    .and_then(|p| Alertmanager::load(&p))
                {
                    Ok(a) => (Some((*n).clone()), Some(a)),
                    Err(e) => {
                        errors.push(e);
                        (None, None)
                    }
                }
            }
            None => (None, None),
        };
        let mut fixtures = BTreeMap::new();
        for (name, svc) in &doc.services {
            if svc.kind == Kind::Fixture {
                // Every error of a broken profile is reported, not just the first.
                match need(name, &svc.profile, "profile")
                    .map_err(|e| SpecErrors { errors: vec![e] })
                    .and_then(|p| Profile::load(&p))
                {
                    Ok(p) => match svc.variant.as_deref().map(|v| p.clone().variant(v)) {
                        None => {
                            fixtures.insert(name.clone(), p);
                        }
                        Some(Ok(v)) => {
                            fixtures.insert(name.clone(), v);
                        }
                        Some(Err(m)) => {
                            errors.push(source.error(&format!("services.{name}.variant"), m))
                        }
                    },
                    Err(mut e) => errors.append(&mut e.errors),
                }
            }
            for (i, s) in svc.secrets.iter().enumerate() {
                let at = format!("services.{name}.secrets.{i}");
                match (&s.teams_mock, &s.env, &s.generated) {
                    (Some(m), None, None) => {
                        if doc.services.get(m).map(|s| s.kind) != Some(Kind::TeamsMock) {
                            errors.push(source.error(
                                &format!("{at}.teams_mock"),
                                format!("`{m}` is not a teams-mock service of this stack"),
                            ));
                        }
                    }
                    (None, Some(_), None) | (None, None, Some(_)) => {}
                    _ => errors.push(source.error(
                        &at,
                        "a secret takes exactly one of `teams_mock`, `env` or `generated`",
                    )),
                }
            }
        }
        let prometheus = match prometheus {
            Ok(p) => Some(p),
            Err(mut e) => {
                errors.append(&mut e.errors);
                None
            }
        };
        if let Some(p) = &prometheus {
            let names: Vec<String> = p.alert_rules().into_iter().map(|r| r.name).collect();
            for (i, w) in doc.coverage.waive.iter().enumerate() {
                if !names.contains(&w.alert) {
                    let mut e = source.error(
                        &format!("coverage.waive.{i}.alert"),
                        format!("no alerting rule is named `{}`", w.alert),
                    );
                    if let Some(near) =
                        crate::util::closest(&w.alert, names.iter().map(String::as_str))
                    {
                        e = e.with_help(format!("did you mean `{near}`?"));
                    }
                    errors.push(e);
                }
            }
        }
        SpecErrors { errors }.into_result()?;
        Ok(Stack {
            source,
            doc,
            prometheus_service,
            prometheus: prometheus.expect("checked above"),
            alertmanager_service,
            alertmanager,
            fixtures,
        })
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.doc.services.get(name)
    }

    pub fn port(&self, name: &str) -> u16 {
        let s = &self.doc.services[name];
        s.port
            .or_else(|| self.fixtures.get(name).map(|p| p.port))
            .unwrap_or(s.kind.default_port())
    }

    pub fn dir(&self) -> &Path {
        self.source.path.parent().unwrap_or(Path::new("."))
    }
}
