//! stack.yaml: the services of a monitoring stack, each a kind firedrill knows
//! how to run (Prometheus, Alertmanager, node-exporter, a fixture, the Teams
//! mock, the optional Grafana and cAdvisor, or any image as a `container`),
//! plus the files they read.

use super::alertmanager::Alertmanager;
use super::fixture::Profile;
use super::prometheus::Prometheus;
use super::source::Source;
use crate::error::{SpecError, SpecErrors};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod check;
mod container;
use check::*;
pub use container::{Build, BuildSpec, Healthcheck, Test};

pub use crate::components::Kind;

/// A secret the drill gives a container, as a file or as an environment
/// variable: never in the user's tree in clear text, never logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// The file inside the container that holds it.
    pub path: Option<String>,
    /// Or the container's environment variable that holds it (an app that
    /// reads `DATABASE_PASSWORD`, as Compose passes it).
    pub var: Option<String>,
    /// Write the webhook URL of this Teams-mock service (with a per-run token).
    pub teams_mock: Option<String>,
    /// Write the value of this environment variable.
    pub env: Option<String>,
    /// Write a random value made for this run, the same for every secret
    /// of the stack with this name (a database password that the database
    /// and its exporter share).
    pub generated: Option<String>,
}

/// One entry of `services`: a container of the stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// What the service runs: prometheus, alertmanager, a fixture, the Teams mock, ….
    pub kind: Kind,
    /// The port it listens on, default the fixture profile's port or the kind's usual one.
    pub port: Option<u16>,
    /// prometheus / alertmanager: the config file, relative to stack.yaml.
    pub config: Option<String>,
    /// fixture: the profile, relative to stack.yaml (a GPU component's: the one that plays it without a GPU).
    pub profile: Option<String>,
    /// fixture: a variant of the profile (`v0` for vllm's older names).
    pub variant: Option<String>,
    /// grafana: the provisioning folder, relative to stack.yaml.
    pub provisioning: Option<String>,
    /// grafana: the dashboards folder, relative to stack.yaml.
    pub dashboards: Option<String>,
    /// Secret files written into the container for the run.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Extra command-line arguments, after the ones firedrill passes; for
    /// a `container`, its command (`command` as in Compose), replacing the
    /// image's.
    #[serde(default, alias = "command")]
    pub args: Vec<String>,
    /// Environment of the container (never a secret: use `secrets`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The container's name, as Compose's `container_name` (cAdvisor's
    /// `name` label, which dashboards and rules select on); by default
    /// `firedrill-<run>-<service>`. A stack that names its containers runs
    /// one at a time in a process, and fails to start beside a container of
    /// the same name.
    pub container_name: Option<String>,
    /// The container's memory limit (`256MiB`), as in Compose; none by default.
    pub mem_limit: Option<super::Bytes>,
    /// The container's CPU limit in cores (`0.5`), as in Compose; none by default.
    pub cpus: Option<f64>,
    /// What Docker does when the container exits (default `no`), as in Compose.
    #[serde(default)]
    pub restart: Restart,
    /// Volumes of the stack mounted into the container, as Compose writes
    /// them: `name:/path` or `name:/path:ro`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// container: the image to run, one the engine has or can pull.
    pub image: Option<String>,
    /// container: the context its image is built from, as Compose's `build`.
    pub build: Option<Build>,
    /// container: files or folders copied in before it starts, container
    /// path → path relative to stack.yaml (the team's config, unchanged).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// container: Docker's healthcheck, as Compose writes it; the service
    /// is ready once Docker reports it healthy.
    pub healthcheck: Option<Healthcheck>,
    /// container: an HTTP path that answers 2xx once it is ready (else its
    /// healthcheck or its image's, else its port accepting).
    pub ready: Option<String>,
}

impl ServiceSpec {
    /// Its limits and restart policy.
    pub fn resources(&self) -> Resources {
        Resources {
            mem_limit: self.mem_limit,
            cpus: self.cpus,
            restart: self.restart,
        }
    }
}

/// A container's limits and restart policy, with Compose's names: what the
/// container chaos of a drill acts against (a memory hog the kernel
/// OOM-kills under `mem_limit`, a CPU burn throttled under `cpus`, a crash
/// loop through `restart`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// The memory limit.
    pub mem_limit: Option<super::Bytes>,
    /// The CPU limit in cores, enforced by the CFS quota.
    pub cpus: Option<f64>,
    /// What Docker does when the container exits.
    pub restart: Restart,
}

/// Docker's restart policy, as Compose writes it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restarted.
    #[default]
    No,
    /// Restarted whatever its exit.
    Always,
    /// Restarted when it exits with a non-zero status (an OOM kill included).
    OnFailure,
    /// Restarted unless it was stopped.
    UnlessStopped,
}

/// A lint finding silenced for a file that cannot hold comments (JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintIgnore {
    /// Relative to stack.yaml.
    pub file: String,
    /// The lint check silenced (as findings name it), or `all`.
    pub check: String,
    /// Why the finding does not apply.
    pub reason: String,
}

/// The `lint` section of stack.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    /// Findings silenced in files that cannot hold comments.
    #[serde(default)]
    pub ignore: Vec<LintIgnore>,
}

/// An alert no drill can provoke on a CI machine, and why (`firedrill
/// coverage` lists it apart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The name of the alerting rule waived.
    pub alert: String,
    /// Why no drill can provoke it.
    pub reason: String,
}

/// The `coverage` section of stack.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageConfig {
    /// Alerts no drill has to cover.
    #[serde(default)]
    pub waive: Vec<Waiver>,
}

/// stack.yaml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackDoc {
    /// The stack's name.
    pub name: String,
    /// The services by name; other containers reach each one under its name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Lint settings.
    #[serde(default)]
    pub lint: LintConfig,
    /// Coverage settings.
    #[serde(default)]
    pub coverage: CoverageConfig,
    /// Volumes its services share, by name, as in Compose: made for the run
    /// (labelled with it) and removed with it.
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeSpec>,
}

/// A volume of the stack, as Compose declares one: Docker's local driver,
/// on disk, or a tmpfs of a bounded size (`driver_opts: {type: tmpfs,
/// device: tmpfs, o: "size=64m,nr_inodes=4096"}`). No other options: a
/// volume never binds a path of the machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// The local driver's options.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
}

/// The largest tmpfs volume a stack may declare: it is held in memory.
pub const MAX_TMPFS_VOLUME: u64 = 1 << 30;

/// A service's mount of a stack volume, from Compose's short syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The stack's volume.
    pub volume: String,
    /// Where it is mounted in the container.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Mount {
    /// Parses `name:/path` or `name:/path:ro|rw`.
    pub fn parse(s: &str) -> Result<Mount, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (volume, path, mode) = match parts[..] {
            [v, p] => (v, p, "rw"),
            [v, p, m] => (v, p, m),
            _ => return Err(format!("`{s}` is not `volume:/path` or `volume:/path:ro`")),
        };
        if volume.starts_with(['.', '/', '~']) {
            return Err(format!(
                "`{volume}` is a path of this machine: a stack mounts only its own volumes (`volumes:` at the top of the stack file)"
            ));
        }
        if !path.starts_with('/') {
            return Err(format!("`{path}` is not an absolute path in the container"));
        }
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            m => return Err(format!("mode `{m}` is not `ro` or `rw`")),
        };
        Ok(Mount {
            volume: volume.to_string(),
            path: path.to_string(),
            read_only,
        })
    }
}

impl ServiceSpec {
    /// A fixture runs its profile; a GPU component's profile plays it
    /// where the machine has no GPU.
    pub fn has_profile(&self) -> bool {
        self.kind == Kind::Fixture
            || (crate::components::of(self.kind).gpu && self.profile.is_some())
    }

    /// Its mounts; validated when the stack is loaded.
    pub fn mounts(&self) -> Vec<Mount> {
        self.volumes
            .iter()
            .filter_map(|v| Mount::parse(v).ok())
            .collect()
    }
}

/// A stack with every file it names loaded and validated.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The text and location of stack.yaml.
    pub source: Source,
    /// The parsed stack.yaml.
    pub doc: StackDoc,
    /// The name of the (single) prometheus service.
    pub prometheus_service: String,
    /// The prometheus service's config and rule files.
    pub prometheus: Prometheus,
    /// The name of the first alertmanager service, if any.
    pub alertmanager_service: Option<String>,
    /// That alertmanager service's config, if any.
    pub alertmanager: Option<Alertmanager>,
    /// The profile of each fixture service, by service name, variant applied.
    pub fixtures: BTreeMap<String, Profile>,
}

impl Stack {
    /// Reads stack.yaml at `path` and loads and validates every file it names.
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
        let need =
            |name: &str, field: &Option<String>, what: &str| need(&source, name, field, what);
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
            if svc.has_profile() {
                if let Some(p) = fixture_profile(&source, name, svc, &mut errors) {
                    fixtures.insert(name.clone(), p);
                }
            }
            check_secrets(&source, &doc, name, svc, &mut errors);
            check_resources(&source, name, svc, &mut errors);
            check_container_name(&source, &doc, name, svc, &mut errors);
            check_mounts(&source, &doc, name, svc, &mut errors);
            container::check_container(&source, name, svc, &mut errors);
        }
        check_volumes(&source, &doc, &mut errors);
        let prometheus = match prometheus {
            Ok(p) => Some(p),
            Err(mut e) => {
                errors.append(&mut e.errors);
                None
            }
        };
        if let Some(p) = &prometheus {
            check_waivers(&source, &doc, p, &mut errors);
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

    /// The service named `name`, if any.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.doc.services.get(name)
    }

    /// The port the service `name` listens on; panics if there is no such service.
    pub fn port(&self, name: &str) -> u16 {
        let s = &self.doc.services[name];
        s.port
            .or_else(|| self.fixtures.get(name).map(|p| p.port))
            .unwrap_or(crate::components::of(s.kind).port)
    }

    /// The folder of stack.yaml, which its relative paths start from.
    pub fn dir(&self) -> &Path {
        self.source.path.parent().unwrap_or(Path::new("."))
    }
}

/// The path a service's `field` names, relative to stack.yaml.
fn need(
    source: &Source,
    name: &str,
    field: &Option<String>,
    what: &str,
) -> Result<PathBuf, SpecError> {
    field.as_ref().map(|p| source.relative(p)).ok_or_else(|| {
        source.error(
            &format!("services.{name}"),
            format!("service `{name}` needs `{what}`"),
        )
    })
}

/// A fixture service's profile, its variant applied; every error of a
/// broken profile is reported, not just the first.
fn fixture_profile(
    source: &Source,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) -> Option<Profile> {
    let p = match need(source, name, &svc.profile, "profile")
        .map_err(|e| SpecErrors { errors: vec![e] })
        .and_then(|p| Profile::load(&p))
    {
        Ok(p) => p,
        Err(mut e) => {
            errors.append(&mut e.errors);
            return None;
        }
    };
    match svc.variant.as_deref() {
        None => Some(p),
        Some(v) => match p.variant(v) {
            Ok(p) => Some(p),
            Err(m) => {
                errors.push(source.error(&format!("services.{name}.variant"), m));
                None
            }
        },
    }
}
