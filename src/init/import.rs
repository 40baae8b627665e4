//! `firedrill init --compose`: a Compose project made a firedrill stack.
//! Services whose image is a known component become that component,
//! reading the user's own config files (found through the binds that mount
//! them) unchanged; every other service a scrape job reaches becomes a
//! fixture inferred from what the rules and dashboards select of it;
//! Alertmanager's Teams receivers are pointed at the Teams mock (the real
//! URL is never read, copied or printed); then a drill per alert. What
//! could not be mapped is listed with why.

use super::alertmanager::{for_drill, ForDrill, TEAMS_URL_FILE};
use super::compose::Project;
use super::configs::dashboard_paths;
use super::drills::q;
use super::{relative, write_drills, Written};
use crate::components::{self, Kind, PROM_DIR};
use crate::error::{Error, Result};
use crate::spec::prometheus::PromConfig;
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use docker_compose_types as dc;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Images that relay Alertmanager's webhooks to Teams.
const TEAMS_BRIDGES: [&str; 2] = ["prometheus-msteams", "prom2teams"];
/// Grafana's provisioning folder (`GF_PATHS_PROVISIONING`'s default).
const GRAFANA_PROVISIONING: &str = "/etc/grafana/provisioning";

/// What `init --compose` wrote and could not map.
#[derive(Debug, Default)]
pub struct Imported {
    /// The stack file written.
    pub stack: PathBuf,
    /// Fixture profiles inferred for the project's own services.
    pub fixtures: Vec<PathBuf>,
    /// Files written in place of the user's (a config whose Teams URL was
    /// written in clear), each with why.
    pub rewritten: Vec<(PathBuf, String)>,
    /// The drills written, and alerts with none.
    pub drills: Written,
    /// Services left out, each with why.
    pub unmapped: Vec<(String, String)>,
    /// What the user should know of the mapping.
    pub notes: Vec<String>,
}

/// The stack being written.
struct Draft<'a> {
    project: &'a Project,
    out: PathBuf,
    teams: String,
    /// (service, its YAML lines under the name).
    services: Vec<(String, Vec<String>)>,
    /// Services with no known image, for a fixture if a job scrapes them.
    unknown: Vec<(String, &'a dc::Service)>,
    /// The project's Prometheus config, read once (its errors are the
    /// stack's to report, at their line).
    prom: Option<PromConfig>,
    /// How services of the team's own are run.
    own: Own,
    done: Imported,
}

/// How `init --compose` runs the services of the team's own (no image
/// firedrill knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Own {
    /// Each one a scrape job reaches becomes a fixture inferred from the
    /// rules and dashboards: drills that need no image of the team's.
    #[default]
    Fixtures,
    /// Each one with an image or a build context runs as it is, `kind:
    /// container`; one that cannot is a fixture as above.
    Containers,
}

/// Reads the Compose file at `compose` and writes `out/stack.yaml`,
/// `out/fixtures/*.yaml` and `out/scenarios/*.yaml`. An existing
/// stack.yaml or scenario is not overwritten; a failed import leaves no
/// stack.yaml.
pub fn import(compose: &Path, out: &Path, own: Own) -> Result<Imported> {
    import_project(&Project::load(compose)?, out, own)
}

/// As [`import`], for a project already read.
pub fn import_project(project: &Project, out: &Path, own: Own) -> Result<Imported> {
    let stack = out.join("stack.yaml");
    if stack.exists() {
        return Err(Error::Invalid(format!(
            "{} exists: firedrill init does not overwrite a stack",
            stack.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let done = draft(project, out, own);
    if done.is_err() {
        // A stack half written would block the next try.
        std::fs::remove_file(&stack).ok();
    }
    done
}

fn draft(project: &Project, out: &Path, own: Own) -> Result<Imported> {
    let stack = out.join("stack.yaml");
    let names: Vec<&str> = project.services.iter().map(|(n, _)| n.as_str()).collect();
    let teams = ["teams", "teams-mock", "firedrill-teams"]
        .into_iter()
        .find(|n| !names.contains(n))
        .unwrap_or("firedrill-teams-mock")
        .to_string();
    let mut d = Draft {
        project,
        out: out.to_path_buf(),
        teams,
        services: Vec::new(),
        unknown: Vec::new(),
        prom: None,
        own,
        done: Imported {
            stack: stack.clone(),
            ..Default::default()
        },
    };
    d.prom = project
        .services
        .iter()
        .find(|(_, s)| s.image.as_deref().and_then(components::of_image) == Some(Kind::Prometheus))
        .and_then(|(_, s)| d.file(s, &prom_config_path(s)))
        .and_then(|f| Source::read(&f).ok()?.parse().ok());
    if !project.blank.is_empty() {
        d.done.notes.push(format!(
            "unset, so blank (as Compose makes them): {}",
            project.blank.join(", ")
        ));
    }
    for (name, svc) in &project.services {
        d.map(name, svc)?;
    }
    for kind in [Kind::Prometheus, Kind::Alertmanager] {
        if !d.has(kind) {
            let why: Vec<String> = d
                .done
                .unmapped
                .iter()
                .map(|(s, w)| format!("{s}: {w}"))
                .collect();
            return Err(Error::Invalid(format!(
                "{}: no {} service (by its image) that firedrill can run: it drills a stack through its Prometheus and Alertmanager{}",
                project.path.display(),
                components::of(kind).name,
                if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) }
            )));
        }
    }
    d.services
        .push((d.teams.clone(), vec!["kind: teams-mock".into()]));
    d.write()?;
    d.fixtures()?;
    d.write()?;
    let mut done = d.done;
    done.drills = write_drills(&stack, &out.join("scenarios"))?;
    Ok(done)
}

impl<'a> Draft<'a> {
    fn has(&self, kind: Kind) -> bool {
        let k = format!("kind: {}", kind_name(kind));
        self.services.iter().any(|(_, l)| l.first() == Some(&k))
    }

    fn unmapped(&mut self, name: &str, why: impl Into<String>) {
        self.done.unmapped.push((name.to_string(), why.into()));
    }

    /// A path of the user's as stack.yaml names it.
    fn rel(&self, p: &Path) -> String {
        q(&relative(p, &self.out).to_string_lossy())
    }

    /// The user's file the container reads at `at`, if bound from the project.
    fn file(&self, svc: &dc::Service, at: &str) -> Option<PathBuf> {
        self.project.host_path(svc, at).filter(|p| p.exists())
    }

    fn map(&mut self, name: &str, svc: &'a dc::Service) -> Result<()> {
        let kind = svc.image.as_deref().and_then(components::of_image);
        let Some(kind) = kind else {
            self.unknown.push((name.to_string(), svc));
            return Ok(());
        };
        let mut lines = vec![format!("kind: {}", kind_name(kind))];
        let ok = match kind {
            Kind::Prometheus => self.prometheus(name, svc, &mut lines),
            Kind::Alertmanager => self.alertmanager(name, svc, &mut lines)?,
            Kind::Grafana => self.grafana(name, svc, &mut lines),
            Kind::Postgres => self.postgres(svc, &mut lines),
            Kind::PostgresExporter => self.postgres_exporter(svc, &mut lines),
            Kind::DcgmExporter => {
                self.done.notes.push(format!(
                    "{name}: dcgm-exporter runs where the machine gives containers a GPU, else it is skipped (add `profile:` for a fixture to play it)"
                ));
                true
            }
            Kind::NodeExporter | Kind::Cadvisor => true,
            Kind::Fixture | Kind::TeamsMock | Kind::Container => {
                unreachable!("no image is known as firedrill's own or as any image")
            }
        };
        if ok {
            if let Some(port) = self.port_of(name, kind) {
                lines.push(format!("port: {port}"));
            }
            self.services.push((name.to_string(), lines));
        }
        Ok(())
    }

    /// The port a scrape job reaches the service on, when not the kind's own.
    fn port_of(&self, name: &str, kind: Kind) -> Option<u16> {
        let port = self.prom.as_ref()?.target_port(name)?;
        (port != components::of(kind).port).then_some(port)
    }

    fn prometheus(&mut self, name: &str, svc: &dc::Service, lines: &mut Vec<String>) -> bool {
        let at = prom_config_path(svc);
        let Some(config) = self.file(svc, &at) else {
            self.unmapped(
                name,
                format!("its config {at} is not a file bound from the project"),
            );
            return false;
        };
        let dir = at.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let patterns = self.prom.as_ref().map(|p| p.rule_files.clone());
        for pattern in patterns.unwrap_or_default() {
            let inside = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("{dir}/{pattern}")
            };
            let beside = inside
                .strip_prefix(&format!("{dir}/"))
                .map(|r| config.with_file_name(r));
            let bound = self.project.host_path(svc, &inside);
            if beside.is_none() || bound != beside || (pattern.starts_with('/') && dir != PROM_DIR)
            {
                self.done.notes.push(format!(
                    "{name}: rule file {pattern} is not beside its config in the project ({}): firedrill reads rule files from the config's folder",
                    bound.map_or("not bound".into(), |b| b.display().to_string())
                ));
            }
        }
        lines.push(format!("config: {}", self.rel(&config)));
        true
    }

    fn alertmanager(
        &mut self,
        name: &str,
        svc: &dc::Service,
        lines: &mut Vec<String>,
    ) -> Result<bool> {
        let at = Project::flag(svc, "--config.file")
            .unwrap_or_else(|| "/etc/alertmanager/alertmanager.yml".into());
        let Some(config) = self.file(svc, &at) else {
            self.unmapped(
                name,
                format!("its config {at} is not a file bound from the project"),
            );
            return Ok(false);
        };
        let mut doc: Value = Source::read(&config)?.parse()?;
        let d = for_drill(&mut doc);
        let mut files = d.files.clone();
        let config = if d.needs_copy() {
            self.copy_alertmanager(&config, &doc, &d)?
        } else {
            config
        };
        if d.literal > 0 {
            files.push(TEAMS_URL_FILE.into());
        }
        if files.is_empty() {
            self.done.notes.push(format!(
                "{name}: no Teams receiver (msteams_configs, msteamsv2_configs): its alerts reach no Teams mock, so a drill's expect_teams fails"
            ));
        }
        files.sort();
        files.dedup();
        lines.push(format!("config: {}", self.rel(&config)));
        if !files.is_empty() {
            lines.push("secrets:".into());
        }
        let secrets = self.project.secret_targets(svc);
        for f in files {
            if let Some((s, _)) = secrets.iter().find(|(_, t)| *t == f) {
                self.done.notes.push(format!(
                    "{name}: the Compose secret `{s}` ({f}) holds the Teams mock's URL in a drill"
                ));
            }
            lines.push(format!(
                "  - {{path: {}, teams_mock: {}}}",
                q(&f),
                q(&self.teams)
            ));
        }
        Ok(true)
    }

    /// Writes the drill's copy of alertmanager.yml (`d` says why).
    fn copy_alertmanager(&mut self, config: &Path, doc: &Value, d: &ForDrill) -> Result<PathBuf> {
        let copy = self.out.join("alertmanager").join("alertmanager.yml");
        std::fs::create_dir_all(copy.parent().unwrap_or(&self.out)).map_err(Error::io(&copy))?;
        let mut why = Vec::new();
        if d.literal > 0 {
            why.push(format!(
                "{} Teams URL(s) written in clear are read from {TEAMS_URL_FILE} (the mock's URL in a drill): keep yours in webhook_url_file",
                d.literal
            ));
        }
        if !d.dropped.is_empty() {
            why.push(format!(
                "a drill pages no one: dropped {}",
                d.dropped.join(", ")
            ));
        }
        if !d.withheld.is_empty() {
            why.push(format!("secrets not copied: {}", d.withheld.join(", ")));
        }
        let head: String = std::iter::once(format!("{} as firedrill drills it:", config.display()))
            .chain(why.iter().cloned())
            .map(|l| format!("# {l}\n"))
            .collect();
        std::fs::write(&copy, head + &serde_yaml_ng::to_string(doc)?).map_err(Error::io(&copy))?;
        self.done.rewritten.push((copy.clone(), why.join("; ")));
        Ok(copy)
    }

    fn grafana(&mut self, name: &str, svc: &dc::Service, lines: &mut Vec<String>) -> bool {
        let Some(prov) = self.file(svc, GRAFANA_PROVISIONING) else {
            self.done.notes.push(format!(
                "{name}: no provisioning folder bound: Grafana runs with no datasource"
            ));
            return true;
        };
        lines.push(format!("provisioning: {}", self.rel(&prov)));
        let dashboards = dashboard_paths(&prov)
            .into_iter()
            .find_map(|p| self.file(svc, &p));
        match dashboards {
            Some(d) => lines.push(format!("dashboards: {}", self.rel(&d))),
            None => self.done.notes.push(format!(
                "{name}: no dashboard provider's path is bound from the project: no dashboard is checked"
            )),
        }
        true
    }

    /// PostgreSQL: its user and database; the password becomes one made
    /// for the run, shared with the exporter.
    fn postgres(&mut self, svc: &dc::Service, lines: &mut Vec<String>) -> bool {
        lines.push("env:".into());
        for k in ["POSTGRES_USER", "POSTGRES_DB"] {
            if let Some(v) = self.project.env_value(svc, k) {
                lines.push(format!("  {k}: {}", q(&v)));
            }
        }
        password(lines, "POSTGRES_PASSWORD_FILE");
        true
    }

    /// postgres_exporter: its data source, credentials left out of the URI.
    fn postgres_exporter(&mut self, svc: &dc::Service, lines: &mut Vec<String>) -> bool {
        let (uri, user) = match (
            self.project.env_value(svc, "DATA_SOURCE_URI"),
            self.project.env_value(svc, "DATA_SOURCE_NAME"),
        ) {
            (Some(uri), _) => (uri, self.project.env_value(svc, "DATA_SOURCE_USER")),
            (None, Some(dsn)) => split_dsn(&dsn),
            (None, None) => ("localhost:5432/postgres?sslmode=disable".into(), None),
        };
        lines.push("env:".into());
        lines.push(format!("  DATA_SOURCE_URI: {}", q(&uri)));
        if let Some(u) = user {
            lines.push(format!("  DATA_SOURCE_USER: {}", q(&u)));
        }
        password(lines, "DATA_SOURCE_PASS_FILE");
        true
    }

    /// Infers a fixture for each unknown service a scrape job reaches.
    fn fixtures(&mut self) -> Result<()> {
        let stack = Stack::load(&self.done.stack)?;
        let dir = self.out.join("fixtures");
        for (name, svc) in std::mem::take(&mut self.unknown) {
            let what = svc
                .image
                .clone()
                .map_or("a build of its own".to_string(), |i| format!("image {i}"));
            let image = svc.image.as_deref().map(components::image_name);
            if let Some(bridge) = image.filter(|i| TEAMS_BRIDGES.contains(&i.as_str())) {
                self.unmapped(&name, format!("{bridge}, a bridge to Teams: the drill's Teams mock stands for Teams, reached by Alertmanager's msteams_configs"));
                continue;
            }
            if self.own == Own::Containers && self.container(&name, svc, &what) {
                continue;
            }
            if crate::spec::prometheus::jobs_scraping(&stack.prometheus.config, &name).is_empty() {
                self.unmapped(
                    &name,
                    format!("{what}, which no scrape job reaches: no metric of it to stand in for"),
                );
                continue;
            }
            let (profile, notes) = match crate::fixture::infer::infer(&stack, &name) {
                Ok(p) => p,
                Err(e) => {
                    self.unmapped(&name, format!("{what}: {e}"));
                    continue;
                }
            };
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            let path = dir.join(format!("{name}.yaml"));
            let text = crate::fixture::record::to_yaml(&profile, &notes, "inferred")?;
            std::fs::write(&path, text).map_err(Error::io(&path))?;
            let mut lines = vec![
                "kind: fixture".into(),
                format!("profile: {}", q(&format!("fixtures/{name}.yaml"))),
            ];
            lines.extend(limits(svc));
            self.done.notes.push(format!("{name}: {what}, played by a fixture inferred from the rules and dashboards ({} families)", profile.families.len()));
            self.done.fixtures.push(path);
            self.services.push((name, lines));
        }
        Ok(())
    }

    /// `name` as it is, `kind: container`; false (and why, in a note)
    /// when it cannot run so.
    fn container(&mut self, name: &str, svc: &dc::Service, what: &str) -> bool {
        let port = self.prom.as_ref().and_then(|p| p.target_port(name));
        let rel = |p: &Path| self.rel(p);
        match super::container::lines(self.project, svc, port, &rel) {
            Ok((mut lines, left)) => {
                lines.extend(limits(svc));
                let mut note = format!("{name}: {what}, run as it is (kind: container)");
                if !left.is_empty() {
                    note.push_str(&format!("; not carried: {}", left.join(", ")));
                }
                self.done.notes.push(note);
                self.services.push((name.to_string(), lines));
                true
            }
            Err(why) => {
                self.done
                    .notes
                    .push(format!("{name}: not run as a container: {why}"));
                false
            }
        }
    }

    fn write(&self) -> Result<()> {
        let mut text = format!(
            "# Written by `firedrill init --compose {}`.\nname: {}\nservices:\n",
            self.project.path.display(),
            q(&self.project.name)
        );
        for (name, lines) in &self.services {
            text.push_str(&format!("  {}:\n", q(name)));
            for l in lines {
                text.push_str(&format!("    {l}\n"));
            }
        }
        std::fs::write(&self.done.stack, text).map_err(Error::io(&self.done.stack))
    }
}

/// The kind's name in stack files.
fn kind_name(kind: Kind) -> String {
    serde_yaml_ng::to_string(&kind)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn prom_config_path(svc: &dc::Service) -> String {
    Project::flag(svc, "--config.file").unwrap_or_else(|| format!("{PROM_DIR}/prometheus.yml"))
}

/// The container limits and restart policy a fixture keeps (container
/// chaos acts against them), and its container name (cAdvisor's `name`).
fn limits(svc: &dc::Service) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = &svc.container_name {
        out.push(format!("container_name: {}", q(n)));
    }
    let res = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let mem = svc
        .mem_limit
        .clone()
        .or_else(|| res.and_then(|l| l.memory.clone()));
    if let Some(b) = mem.as_deref().and_then(docker_bytes) {
        out.push(format!("mem_limit: {b}"));
    }
    let cpus = res.and_then(|l| l.cpus.clone());
    if let Some(c) = cpus.and_then(|c| c.parse::<f64>().ok()) {
        out.push(format!("cpus: {c}"));
    }
    if let Some(r) = svc
        .restart
        .as_deref()
        .filter(|r| ["always", "on-failure", "unless-stopped"].contains(r))
    {
        out.push(format!("restart: {r}"));
    }
    out
}

/// The database password, one made for the run that PostgreSQL and its
/// exporter share, read from a file named by `var` (the last `env:` line).
fn password(lines: &mut Vec<String>, var: &str) {
    lines.push(format!("  {var}: /run/secrets/postgres-password"));
    lines.push("secrets:".into());
    lines.push("  - {path: /run/secrets/postgres-password, generated: postgres-password}".into());
}

/// Docker's size (`512m`, `1g`, `1024k`, bytes) in bytes.
fn docker_bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}

/// A PostgreSQL DSN as postgres_exporter's `DATA_SOURCE_URI` and user:
/// `postgresql://user:pass@host:5432/db?x` → (`host:5432/db?x`, `user`),
/// or libpq's `host=db port=5432 user=app password=… dbname=app`. The
/// password is never carried, in the credentials or in the query.
fn split_dsn(dsn: &str) -> (String, Option<String>) {
    let Some((_, rest)) = dsn.split_once("://") else {
        let kv: BTreeMap<&str, &str> = dsn
            .split_whitespace()
            .filter_map(|p| p.split_once('='))
            .collect();
        let host = kv.get("host").unwrap_or(&"localhost");
        let port = kv.get("port").unwrap_or(&"5432");
        let db = kv.get("dbname").unwrap_or(&"postgres");
        let ssl = kv.get("sslmode").unwrap_or(&"disable");
        let uri = format!("{host}:{port}/{db}?sslmode={ssl}");
        return (uri, kv.get("user").map(|u| u.to_string()));
    };
    let (cred, host) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let host = match host.split_once('?') {
        Some((h, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                h.to_string()
            } else {
                format!("{h}?{}", kept.join("&"))
            }
        }
        None => host.to_string(),
    };
    let user = cred.and_then(|c| c.split(':').next()).map(str::to_string);
    (host, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_loses_its_password() {
        assert_eq!(
            split_dsn("postgresql://app:s3cret@db:5432/app?sslmode=disable"),
            ("db:5432/app?sslmode=disable".into(), Some("app".into()))
        );
        assert_eq!(
            split_dsn("host=db port=5433 user=app password=s3cret dbname=app"),
            ("db:5433/app?sslmode=disable".into(), Some("app".into()))
        );
        assert_eq!(
            split_dsn("postgresql://db:5432/app?password=s3cret&sslmode=disable"),
            ("db:5432/app?sslmode=disable".into(), None)
        );
        assert_eq!(docker_bytes("512m"), Some(512 << 20));
        assert_eq!(docker_bytes("1g"), Some(1 << 30));
        assert_eq!(docker_bytes("2048"), Some(2048));
    }
}
