//! Bringing a stack up on a run-scoped Docker network and tearing it down
//! always. Shaped like efficientgo/e2e: an environment owns the network and
//! its services; each service is reached from the host on a 127.0.0.1 port
//! and from other containers by its name (a network alias).
//!
//! testcontainers-rs is not used here: every release since 0.16 speaks a
//! fixed Docker API (>= 1.44) without negotiation, which Docker 20.10-24
//! engines refuse, and 0.15 (API 1.41) can neither label containers nor bind
//! ports to 127.0.0.1. bollard with `negotiate_version` covers Docker 20.10+.

pub mod docker;

pub use bollard::Docker;
pub use docker::{connect, RUN_LABEL, STACK_LABEL};

mod plan;

pub mod attach;
mod container;
mod reset;
mod sweep;

pub use sweep::{leftovers, sweep, Leftovers};

use crate::components::{self, Reset};
use crate::error::{bail, err, Context, Error, Result};
use crate::images::{Images, Optional};
use crate::render::{self, Effective};
use crate::spec::stack::{Kind, Stack};
use bollard::container::{
    Config, CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogOutput,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions, UploadToContainerOptions,
};
use bollard::models::{EndpointSettings, HostConfig, PortBinding};
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One running (or skipped) service.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's name in the stack, also its network alias.
    pub name: String,
    /// What kind of component it is.
    pub kind: Kind,
    /// The port it listens on inside the network.
    pub port: u16,
    /// The port published on 127.0.0.1 (0 when skipped).
    pub host_port: u16,
    /// The container's id (empty when skipped).
    pub container: String,
    /// Why the service is not running (an optional component with no image).
    pub skipped: Option<String>,
    /// What plays the component when its official image is absent, and
    /// why; for a node-exporter, the synthetic host it reads.
    pub stand_in: Option<String>,
    /// How to tell it is ready (again, after a reset).
    pub ready: Ready,
}

impl Service {
    /// A service that does not run, and why.
    fn skipped(name: &str, kind: Kind, port: u16, why: String) -> Service {
        Service {
            name: name.to_string(),
            kind,
            port,
            host_port: 0,
            container: String::new(),
            skipped: Some(why),
            stand_in: None,
            ready: Ready::Tcp,
        }
    }

    /// The URL the harness uses (published on 127.0.0.1).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.host_port)
    }
    /// The address other containers use.
    pub fn internal(&self) -> String {
        format!("{}:{}", self.name, self.port)
    }
}

/// Each service's container settings and files (a tar body).
type Made = BTreeMap<String, (Config<String>, Vec<u8>)>;

/// A stack that is up. Dropping it without `down()` still removes everything.
pub struct Running {
    docker: Docker,
    /// The run's id, labelled on its containers and network.
    pub run_id: String,
    /// The name of the run's Docker network.
    pub network: String,
    /// Every service of the stack, running or skipped, by name.
    pub services: BTreeMap<String, Service>,
    /// The Teams mock's webhook token (a secret: never printed).
    pub teams_token: String,
    /// Generated secrets by name (database passwords: never printed).
    generated: BTreeMap<String, String>,
    down: AtomicBool,
    /// Held while a stack that names its containers is up: no other such
    /// stack of this process comes up beside it (the names would clash).
    _names: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// How long bringing the stack up took.
    pub bring_up: Duration,
    /// Each container's settings and files, by service: what makes it
    /// again after a chaos step removed it.
    made: std::sync::Mutex<Made>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("run_id", &self.run_id)
            .finish()
    }
}

/// A new run id: the UTC time of day and 8 random hex digits.
pub fn new_run_id() -> String {
    let r: u32 = rand::random();
    format!("{}-{:08x}", chrono::Utc::now().format("%H%M%S"), r)
}

/// True when `addr` accepts a connection that the far end does not close at
/// once (docker-proxy accepts for a container that is not yet listening,
/// then closes).
async fn tcp_open(addr: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut buf = [0u8; 1];
    // A server that speaks first would answer; PostgreSQL waits for the
    // client, so a quiet, open connection means it is listening.
    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

pub use crate::components::Ready;

/// The label Docker Compose gives a container: its service's name.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Taken by a stack whose containers have fixed names (`container_name`).
static NAMED: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl Running {
    /// Brings the stack up: its container services' images (pulled or
    /// built first: a failed build leaves nothing), network, containers,
    /// readiness, every target up.
    pub async fn up(
        docker: &Docker,
        stack: &Stack,
        eff: &Effective,
        images: &Images,
        run_id: &str,
    ) -> Result<Running> {
        let started = Instant::now();
        let images = &images.with_services(docker, stack).await?;
        let network = format!("firedrill-{run_id}");
        let labels = run_labels(run_id, stack);
        let token = format!("{:032x}", rand::random::<u128>());
        let services = &stack.doc.services;
        let generated: BTreeMap<String, String> = services
            .values()
            .flat_map(|s| &s.secrets)
            .filter_map(|s| s.generated.clone())
            .map(|g| (g, format!("{:032x}", rand::random::<u128>())))
            .collect();
        let names = match services.values().any(|s| s.container_name.is_some()) {
            true => Some(NAMED.clone().lock_owned().await),
            false => None,
        };
        let mut running = Running {
            docker: docker.clone(),
            run_id: run_id.to_string(),
            network: network.clone(),
            services: BTreeMap::new(),
            teams_token: token.clone(),
            generated: generated.clone(),
            down: AtomicBool::new(false),
            _names: names,
            bring_up: Duration::ZERO,
            made: Default::default(),
        };
        docker
            .create_network(CreateNetworkOptions {
                name: network.clone(),
                labels: labels.clone(),
                check_duplicate: true,
                ..Default::default()
            })
            .await
            .context(Error::Stack, "creating the run's network")?;
        running.create_volumes(stack, &labels).await?;
        let mut to_check = Vec::new();
        for name in stack.doc.services.keys() {
            let kind = stack.doc.services[name].kind;
            let port = stack.port(name);
            let svc = match plan::plan(name, stack, eff, images, port, &token, &generated)? {
                plan::Planned::Run(mut p) => {
                    // The kind that runs (a fixture may play a GPU component).
                    let kind = p.kind;
                    p.binds
                        .extend(volume_binds(run_id, &stack.doc.services[name]));
                    let cname = stack.doc.services[name].container_name.clone();
                    let cname = cname.unwrap_or_else(|| format!("firedrill-{run_id}-{name}"));
                    running
                        .start_service(name, &cname, kind, port, *p, &labels)
                        .await?
                }
                plan::Planned::Skipped(why) => {
                    tracing::warn!("{name}: skipped: {why}");
                    Service::skipped(name, kind, port, why)
                }
            };
            if svc.skipped.is_none() {
                to_check.push((name.clone(), svc.ready));
            }
            running.services.insert(name.clone(), svc);
        }
        for (name, ready) in to_check {
            running
                .wait_ready(&name, ready, Duration::from_secs(60))
                .await?;
        }
        running.wait_targets(stack, eff).await?;
        running.bring_up = started.elapsed();
        Ok(running)
    }

    /// Makes the stack's volumes, labelled with the run (the sweep removes them).
    async fn create_volumes(&self, stack: &Stack, labels: &HashMap<String, String>) -> Result<()> {
        for (name, v) in &stack.doc.volumes {
            self.docker
                .create_volume(bollard::volume::CreateVolumeOptions {
                    name: volume_name(&self.run_id, name),
                    driver: "local".to_string(),
                    driver_opts: v.driver_opts.clone().into_iter().collect(),
                    labels: labels.clone(),
                })
                .await
                .context(Error::Stack, format!("creating volume {name}"))?;
        }
        Ok(())
    }

    /// Creates `name`'s container on the run's network from its plan,
    /// copies its files in and starts it.
    async fn start_service(
        &self,
        name: &str,
        container_name: &str,
        kind: Kind,
        port: u16,
        mut p: plan::Plan,
        labels: &HashMap<String, String>,
    ) -> Result<Service> {
        let host_port = plan::free_port()?;
        // The files go in after the container is created, not into its settings.
        let files = std::mem::take(&mut p.files);
        let (image, ready, owner) = (p.image.clone(), p.ready, p.owner);
        let stand_in = p.stand_in.take();
        // Compose's service label, as `docker compose up` sets it: cAdvisor
        // exports it (container_label_com_docker_compose_service) and the
        // seeds' dashboards select on it.
        let mut labels = labels.clone();
        labels.insert(COMPOSE_SERVICE.to_string(), name.to_string());
        let config = plan::container_config(p, name, &self.network, &labels, port, host_port);
        let tar = match files.is_empty() {
            true => Vec::new(),
            false => plan::tar_files(&files, owner)?,
        };
        self.made
            .lock()
            .expect("made lock")
            .insert(name.to_string(), (config.clone(), tar.clone()));
        let id = self.create(name, container_name, &image, config).await?;
        let started = self.put_files_and_start(name, &id, tar);
        if let Err(e) = started.await {
            // Not yet one of the run's services: removed here, not at teardown.
            // With its anonymous volumes, as the sweep removes them.
            let force = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            self.docker.remove_container(&id, Some(force)).await.ok();
            return Err(e);
        }
        Ok(Service {
            name: name.to_string(),
            kind,
            port,
            host_port,
            // By name: a container removed by chaos is made again under it.
            container: container_name.to_string(),
            skipped: None,
            stand_in,
            ready,
        })
    }

    /// The services that do not run (optional components with no image),
    /// each with why.
    pub fn skipped(&self) -> BTreeMap<String, String> {
        self.services
            .values()
            .filter_map(|s| s.skipped.clone().map(|w| (s.name.clone(), w)))
            .collect()
    }

    /// Every secret value this run made, to check that none leaks into a
    /// log or a report.
    pub fn secret_values(&self) -> Vec<&str> {
        std::iter::once(self.teams_token.as_str())
            .chain(self.generated.values().map(String::as_str))
            .collect()
    }

    /// What `service`'s secret at `path` holds: a value made for this run
    /// or one from the environment (a database password: never printed).
    pub fn secret(&self, stack: &Stack, service: &str, path: &str) -> Option<String> {
        let s = stack
            .service(service)?
            .secrets
            .iter()
            .find(|s| s.path.as_deref() == Some(path))?;
        match (&s.generated, &s.env) {
            (Some(g), _) => self.generated.get(g).cloned(),
            (None, Some(var)) => std::env::var(var).ok(),
            (None, None) => None,
        }
    }

    /// The service `name`; an error if there is none or it is skipped.
    pub fn service(&self, name: &str) -> Result<&Service> {
        let s = self
            .services
            .get(name)
            .ok_or_else(|| err!(Stack, "no service `{name}`"))?;
        if let Some(why) = &s.skipped {
            bail!(Stack, "service `{name}` is skipped: {why}");
        }
        Ok(s)
    }

    /// The URL the harness reaches `name` at.
    pub fn url(&self, name: &str) -> Result<String> {
        Ok(self.service(name)?.url())
    }

    /// Polls until the service is ready; a container that exits, or that
    /// Docker finds unhealthy, fails at once, with its logs.
    pub async fn wait_ready(&self, name: &str, ready: Ready, timeout: Duration) -> Result<()> {
        let svc = self.service(name)?;
        let url = match ready {
            Ready::Http(path) => format!("{}{path}", svc.url()),
            Ready::Tcp => format!("127.0.0.1:{}", svc.host_port),
            Ready::Healthy => "Docker's healthcheck".to_string(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        // Docker decides health at its own pace: its checks' window, at least.
        let timeout = match ready {
            Ready::Healthy => timeout.max(self.health_window(name).await?),
            _ => timeout,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let ok = match ready {
                Ready::Http(_) => client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                // Docker's proxy accepts on the host port before the
                // container listens: ready once the connection stays open.
                Ready::Tcp => tcp_open(&url).await,
                Ready::Healthy => self.healthy(name).await?,
            };
            if ok {
                return Ok(());
            }
            if !self.is_running(name).await? {
                bail!(
                    Stack,
                    "{name} exited during start-up; its last log lines:\n{}",
                    self.logs(name, 20).await
                );
            }
            if Instant::now() > deadline {
                let health = match ready {
                    Ready::Healthy => match self.health(name).await? {
                        Some((status, last)) => {
                            format!(
                                " (Docker says `{status}`; the last check said: {})",
                                last.trim()
                            )
                        }
                        None => String::new(),
                    },
                    _ => String::new(),
                };
                bail!(
                    Stack,
                    "{name} was not ready at {url} after {:?}{health}; its last log lines:\n{}",
                    timeout,
                    self.logs(name, 20).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Docker reports `name` healthy; an error once it reports it
    /// unhealthy (its retries spent), with the last check's output.
    async fn healthy(&self, name: &str) -> Result<bool> {
        use bollard::models::HealthStatusEnum as H;
        match self.health(name).await? {
            Some((H::HEALTHY, _)) => Ok(true),
            Some((H::UNHEALTHY, last)) => bail!(
                Stack,
                "{name} is unhealthy: its healthcheck failed its retries; the last check said: {}\nits last log lines:\n{}",
                last.trim(),
                self.logs(name, 20).await
            ),
            Some(_) => Ok(false),
            None => bail!(Stack, "{name} has no healthcheck to wait for"),
        }
    }

    /// Waits until every scrape target that is a service of this stack is up.
    pub(crate) async fn wait_targets(&self, stack: &Stack, eff: &Effective) -> Result<()> {
        let prom = crate::observe::Prometheus::new(self.url(&stack.prometheus_service)?);
        let (interval, timeout) = eff.prometheus.config.slowest_scrape();
        let deadline = Instant::now() + 3 * (interval + timeout) + Duration::from_secs(30);
        loop {
            let targets = prom.targets().await?;
            let mut pending = Vec::new();
            // Targets of skipped services, or outside the stack, are not waited for.
            let ours = |t: &&crate::observe::Target| {
                self.services
                    .get(t.host())
                    .is_some_and(|s| s.skipped.is_none())
            };
            let down: Vec<_> = targets
                .iter()
                .filter(ours)
                .filter(|t| t.health != "up")
                .collect();
            for t in &down {
                pending.push(format!("{} ({}: {})", t.scrape_url, t.health, t.last_error));
            }
            tracing::trace!("targets: {} known, pending {:?}", targets.len(), pending);
            if !targets.is_empty() && pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                // The service's own words say why (a missing database, a bad password).
                let mut why = String::new();
                for t in &down {
                    why.push_str(&format!(
                        "\nlast log lines of {}:\n{}",
                        t.host(),
                        self.logs(t.host(), 5).await
                    ));
                }
                bail!(Stack, "scrape targets not up: {}{why}", pending.join("; "));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Removes every container and the network of this run.
    pub async fn down(&self) -> Result<()> {
        if self.down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        sweep(&self.docker, Some(&self.run_id)).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        // Panic or early return: clean up on a thread of its own, since we
        // may be inside (or outside) a runtime.
        let docker = self.docker.clone();
        let run_id = self.run_id.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                if let Err(e) = rt.block_on(sweep(&docker, Some(&run_id))) {
                    eprintln!("firedrill: teardown of run {run_id} failed: {e}; run `firedrill down --all`");
                }
            }
        })
        .join();
    }
}

/// The labels of a run's containers, network and volumes: its id, and
/// the stack file it brought up.
fn run_labels(run_id: &str, stack: &Stack) -> HashMap<String, String> {
    let stack_file = std::path::absolute(&stack.source.path).unwrap_or_default();
    [
        (RUN_LABEL.to_string(), run_id.to_string()),
        (STACK_LABEL.to_string(), stack_file.display().to_string()),
    ]
    .into()
}

/// The Docker name of the stack's volume `name` in run `run_id`.
fn volume_name(run_id: &str, name: &str) -> String {
    format!("firedrill-{run_id}-{name}")
}

/// A service's mounts of the run's volumes, as binds (`volume:/path:ro`).
fn volume_binds(run_id: &str, svc: &crate::spec::stack::ServiceSpec) -> Vec<String> {
    svc.mounts()
        .iter()
        .map(|m| {
            let ro = if m.read_only { ":ro" } else { "" };
            format!("{}:{}{ro}", volume_name(run_id, &m.volume), m.path)
        })
        .collect()
}

/// The label filter for one run, or for every firedrill run.
fn run_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match run_id {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    };
    [("label".to_string(), vec![label])].into()
}
