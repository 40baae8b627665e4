//! Bringing a stack up on a run-scoped Docker network and tearing it down
//! always. Shaped like efficientgo/e2e: an environment owns the network and
//! its services; each service is reached from the host on a 127.0.0.1 port
//! and from other containers by its name (a network alias).
//!
//! testcontainers-rs is not used here: every release since 0.16 speaks a
//! fixed Docker API (>= 1.44) without negotiation, which Docker 20.10-24
//! engines refuse, and 0.15 (API 1.41) can neither label containers nor bind
//! ports to 127.0.0.1. bollard with `negotiate_version` covers Docker 20.10+.

pub mod render;

use crate::docker::RUN_LABEL;
use crate::images::Images;
use crate::spec::stack::{Kind, Stack};
use anyhow::{anyhow, bail, Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogOutput,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions, UploadToContainerOptions,
};
use bollard::models::{EndpointSettings, HostConfig, PortBinding};
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use bollard::Docker;
use futures_util::StreamExt;
use render::Effective;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One running (or skipped) service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub kind: Kind,
    pub port: u16,
    pub host_port: u16,
    pub container: String,
    /// Why the service is not running (an optional component with no image).
    pub skipped: Option<String>,
    /// How to tell it is ready (again, after a reset).
    pub ready: Ready,
}

impl Service {
    /// The URL the harness uses (published on 127.0.0.1).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.host_port)
    }
    /// The address other containers use.
    pub fn internal(&self) -> String {
        format!("{}:{}", self.name, self.port)
    }
}

/// A stack that is up. Dropping it without `down()` still removes everything.
pub struct Running {
    docker: Docker,
    pub run_id: String,
    pub network: String,
    pub services: BTreeMap<String, Service>,
    /// The Teams mock's webhook token (a secret: never printed).
    pub teams_token: String,
    /// Generated secrets by name (database passwords: never printed).
    generated: BTreeMap<String, String>,
    down: AtomicBool,
    pub bring_up: Duration,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("run_id", &self.run_id)
            .finish()
    }
}

pub fn new_run_id() -> String {
    let r: u32 = rand::random();
    format!("{}-{:08x}", chrono::Utc::now().format("%H%M%S"), r)
}

fn free_port() -> Result<u16> {
    // A fixed host port survives stop/start (a random one would change).
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
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

/// Files as a tar body, owned by `owner` (the image's user must read its secrets).
fn tar_files(files: &[(String, Vec<u8>, u32)], owner: u32) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(owner.into());
        h.set_gid(owner.into());
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path.trim_start_matches('/'), data.as_slice())?;
    }
    Ok(b.into_inner()?)
}

fn tar_dir(dir: &std::path::Path, into: &str, out: &mut Vec<(String, Vec<u8>, u32)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if p.is_dir() {
            tar_dir(&p, &format!("{into}/{name}"), out)?;
        } else {
            out.push((format!("{into}/{name}"), std::fs::read(&p)?, 0o644));
        }
    }
    Ok(())
}

/// How to tell that a service is ready.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// An HTTP GET of this path answers 2xx.
    Http(&'static str),
    /// The port accepts a TCP connection (PostgreSQL opens it once
    /// initialised and recovered).
    Tcp,
}

/// What a service needs to start: command, files, readiness.
struct Plan {
    image: String,
    cmd: Vec<String>,
    env: Vec<String>,
    files: Vec<(String, Vec<u8>, u32)>,
    /// The uid that owns the files copied in (the image's user).
    owner: u32,
    binds: Vec<String>,
    /// Paths on tmpfs: emptied whenever the container stops, so a restart
    /// starts the service over with no state (a shared stack's reset).
    tmpfs: Vec<&'static str>,
    ready: Ready,
}

impl Plan {
    fn new(
        image: String,
        cmd: Vec<String>,
        files: Vec<(String, Vec<u8>, u32)>,
        ready_path: &'static str,
    ) -> Plan {
        Plan {
            image,
            cmd,
            env: vec![],
            files,
            owner: 0,
            binds: vec![],
            tmpfs: vec![],
            ready: Ready::Http(ready_path),
        }
    }
}

fn plan(
    name: &str,
    stack: &Stack,
    eff: &Effective,
    images: &Images,
    port: u16,
    token: &str,
    generated: &BTreeMap<String, String>,
) -> Result<Result<Plan, String>> {
    let svc = &stack.doc.services[name];
    let mut files = Vec::new();
    let listen = format!(":{port}");
    let mut p = match svc.kind {
        Kind::Prometheus => {
            for (path, text) in &eff.prometheus_files {
                files.push((path.clone(), text.clone().into_bytes(), 0o644));
            }
            Plan {
                tmpfs: vec!["/prometheus"],
                ..Plan::new(
                    images.component("prometheus")?.into(),
                    vec![
                        format!("--config.file={}/prometheus.yml", render::PROM_DIR),
                        "--storage.tsdb.path=/prometheus".into(),
                        format!("--web.listen-address={listen}"),
                        "--web.enable-lifecycle".into(),
                        // A shared stack's reset deletes every sample (delete_series).
                        "--web.enable-admin-api".into(),
                        format!(
                            "--rules.alert.resend-delay={}",
                            crate::spec::Dur(eff.resend_delay)
                        ),
                    ],
                    files,
                    "/-/ready",
                )
            }
        }
        Kind::Alertmanager => {
            let text = eff
                .alertmanager_file
                .clone()
                .ok_or_else(|| anyhow!("alertmanager config not rendered"))?;
            files.push((render::AM_CONFIG.to_string(), text.into_bytes(), 0o644));
            Plan {
                tmpfs: vec!["/alertmanager"],
                ..Plan::new(
                    images.component("alertmanager")?.into(),
                    vec![
                        format!("--config.file={}", render::AM_CONFIG),
                        "--storage.path=/alertmanager".into(),
                        format!("--web.listen-address={listen}"),
                        // A single instance: no gossip settle delay before notifying.
                        "--cluster.listen-address=".into(),
                    ],
                    files,
                    "/-/ready",
                )
            }
        }
        Kind::NodeExporter => Plan::new(
            images.component("node-exporter")?.into(),
            vec![format!("--web.listen-address={listen}")],
            files,
            "/metrics",
        ),
        Kind::Fixture => {
            // The profile as loaded: includes merged, variant applied.
            let resolved = serde_yaml_ng::to_string(&stack.fixtures[name])?;
            files.push((
                "/etc/firedrill/profile.yaml".into(),
                resolved.into_bytes(),
                0o644,
            ));
            let args: Vec<String> = vec![
                "fixture".into(),
                "serve".into(),
                "--profile".into(),
                "/etc/firedrill/profile.yaml".into(),
                "--listen".into(),
                format!("0.0.0.0:{port}"),
            ];
            Plan::new(images.firedrill.clone(), args, files, "/-/ready")
        }
        Kind::TeamsMock => {
            files.push((
                "/etc/firedrill/teams-token".into(),
                token.as_bytes().to_vec(),
                0o600,
            ));
            Plan::new(
                images.firedrill.clone(),
                vec![
                    "teams-mock".into(),
                    "--listen".into(),
                    format!("0.0.0.0:{port}"),
                    "--token-file".into(),
                    "/etc/firedrill/teams-token".into(),
                ],
                files,
                "/-/ready",
            )
        }
        Kind::Grafana => {
            let image = match &images.grafana {
                Ok(i) => i.clone(),
                Err(why) => return Ok(Err(why.clone())),
            };
            if let Some(p) = &svc.provisioning {
                tar_dir(
                    &stack.source.relative(p),
                    "/etc/grafana/provisioning",
                    &mut files,
                )?;
            }
            if let Some(d) = &svc.dashboards {
                tar_dir(
                    &stack.source.relative(d),
                    "/var/lib/grafana/dashboards",
                    &mut files,
                )?;
            }
            let password = format!("{:032x}", rand::random::<u128>());
            Plan {
                env: vec![
                    format!("GF_SECURITY_ADMIN_PASSWORD={password}"),
                    format!("GF_SERVER_HTTP_PORT={port}"),
                    "GF_USERS_ALLOW_SIGN_UP=false".into(),
                ],
                ..Plan::new(image, vec![], files, "/api/health")
            }
        }
        Kind::Cadvisor => {
            let image = match &images.cadvisor {
                Ok(i) => i.clone(),
                Err(why) => return Ok(Err(why.clone())),
            };
            Plan {
                binds: [
                    "/:/rootfs:ro",
                    "/var/run:/var/run:ro",
                    "/sys:/sys:ro",
                    "/var/lib/docker/:/var/lib/docker:ro",
                ]
                .map(String::from)
                .to_vec(),
                ..Plan::new(image, vec![format!("--port={port}")], files, "/healthz")
            }
        }
        Kind::Postgres => Plan {
            cmd: vec!["-c".into(), format!("port={port}")],
            owner: crate::images::IMAGE_USER,
            ready: Ready::Tcp,
            ..Plan::new(images.component("postgres")?.into(), vec![], files, "")
        },
        Kind::PostgresExporter => Plan::new(
            images.component("postgres-exporter")?.into(),
            vec![format!("--web.listen-address={listen}")],
            files,
            "/metrics",
        ),
    };
    p.env
        .extend(svc.env.iter().map(|(k, v)| format!("{k}={v}")));
    p.cmd.extend(svc.args.iter().cloned());
    // Secrets: written into the container, never into the user's tree or logs.
    for s in &svc.secrets {
        let value = match (&s.teams_mock, &s.env, &s.generated) {
            (Some(mock), _, _) => {
                let mport = stack.port(mock);
                format!("http://{mock}:{mport}/webhook/{token}")
            }
            (None, Some(var), _) => std::env::var(var).map_err(|_| {
                anyhow!(
                    "secret for {}: environment variable {var} is not set",
                    s.path
                )
            })?,
            (None, None, Some(g)) => generated[g].clone(),
            _ => unreachable!("validated in spec"),
        };
        p.files.push((s.path.clone(), value.into_bytes(), 0o600));
    }
    Ok(Ok(p))
}

impl Running {
    /// Brings the stack up: network, containers, readiness, every target up.
    pub async fn up(
        docker: &Docker,
        stack: &Stack,
        eff: &Effective,
        images: &Images,
        run_id: &str,
    ) -> Result<Running> {
        let started = Instant::now();
        let network = format!("firedrill-{run_id}");
        let labels: HashMap<String, String> = [(RUN_LABEL.to_string(), run_id.to_string())].into();
        let token = format!("{:032x}", rand::random::<u128>());
        let generated: BTreeMap<String, String> = stack
            .doc
            .services
            .values()
            .flat_map(|s| &s.secrets)
            .filter_map(|s| s.generated.clone())
            .map(|g| (g, format!("{:032x}", rand::random::<u128>())))
            .collect();
        let mut running = Running {
            docker: docker.clone(),
            run_id: run_id.to_string(),
            network: network.clone(),
            services: BTreeMap::new(),
            teams_token: token.clone(),
            generated: generated.clone(),
            down: AtomicBool::new(false),
            bring_up: Duration::ZERO,
        };
        docker
            .create_network(CreateNetworkOptions {
                name: network.clone(),
                labels: labels.clone(),
                check_duplicate: true,
                ..Default::default()
            })
            .await
            .context("creating the run's network")?;
        let mut to_check = Vec::new();
        for name in stack.doc.services.keys() {
            let kind = stack.doc.services[name].kind;
            let port = stack.port(name);
            let p = match plan(name, stack, eff, images, port, &token, &generated)? {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!("{name}: skipped: {why}");
                    running.services.insert(
                        name.clone(),
                        Service {
                            name: name.clone(),
                            kind,
                            port,
                            host_port: 0,
                            container: String::new(),
                            skipped: Some(why),
                            ready: Ready::Tcp,
                        },
                    );
                    continue;
                }
            };
            let host_port = free_port()?;
            let cname = format!("firedrill-{run_id}-{name}");
            let port_key = format!("{port}/tcp");
            let config = Config {
                image: Some(p.image.clone()),
                cmd: if p.cmd.is_empty() { None } else { Some(p.cmd) },
                env: Some(p.env),
                labels: Some(labels.clone()),
                exposed_ports: Some([(port_key.clone(), HashMap::new())].into()),
                host_config: Some(HostConfig {
                    network_mode: Some(network.clone()),
                    port_bindings: Some(
                        [(
                            port_key,
                            Some(vec![PortBinding {
                                host_ip: Some("127.0.0.1".into()),
                                host_port: Some(host_port.to_string()),
                            }]),
                        )]
                        .into(),
                    ),
                    binds: if p.binds.is_empty() {
                        None
                    } else {
                        Some(p.binds)
                    },
                    tmpfs: if p.tmpfs.is_empty() {
                        None
                    } else {
                        Some(
                            p.tmpfs
                                .iter()
                                .map(|t| (t.to_string(), "mode=1777".to_string()))
                                .collect(),
                        )
                    },
                    ..Default::default()
                }),
                networking_config: Some(bollard::container::NetworkingConfig {
                    endpoints_config: [(
                        network.clone(),
                        EndpointSettings {
                            aliases: Some(vec![name.clone()]),
                            ..Default::default()
                        },
                    )]
                    .into(),
                }),
                ..Default::default()
            };
            let id = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: cname.clone(),
                        platform: None,
                    }),
                    config,
                )
                .await
                .with_context(|| format!("creating {name} from {}", p.image))?
                .id;
            running.services.insert(
                name.clone(),
                Service {
                    name: name.clone(),
                    kind,
                    port,
                    host_port,
                    container: id.clone(),
                    skipped: None,
                    ready: p.ready,
                },
            );
            if !p.files.is_empty() {
                running.upload(&id, &p.files, p.owner).await?;
            }
            docker
                .start_container(&id, None::<StartContainerOptions<String>>)
                .await
                .with_context(|| format!("starting {name}"))?;
            to_check.push((name.clone(), p.ready));
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

    pub fn service(&self, name: &str) -> Result<&Service> {
        let s = self
            .services
            .get(name)
            .ok_or_else(|| anyhow!("no service `{name}`"))?;
        if let Some(why) = &s.skipped {
            bail!("service `{name}` is skipped: {why}");
        }
        Ok(s)
    }

    pub fn url(&self, name: &str) -> Result<String> {
        Ok(self.service(name)?.url())
    }

    /// Polls until the service is ready; a container that exits fails at once, with its logs.
    pub async fn wait_ready(&self, name: &str, ready: Ready, timeout: Duration) -> Result<()> {
        let svc = self.service(name)?;
        let url = match ready {
            Ready::Http(path) => format!("{}{path}", svc.url()),
            Ready::Tcp => format!("127.0.0.1:{}", svc.host_port),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
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
            };
            if ok {
                return Ok(());
            }
            if !self.is_running(name).await? {
                bail!(
                    "{name} exited during start-up; its last log lines:\n{}",
                    self.logs(name, 20).await
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready at {url} after {:?}; its last log lines:\n{}",
                    timeout,
                    self.logs(name, 20).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every scrape target that is a service of this stack is up.
    async fn wait_targets(&self, stack: &Stack, eff: &Effective) -> Result<()> {
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
                bail!("scrape targets not up: {}{why}", pending.join("; "));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn is_running(&self, name: &str) -> Result<bool> {
        let s = self.service(name)?;
        let i = self.docker.inspect_container(&s.container, None).await?;
        Ok(i.state.and_then(|s| s.running).unwrap_or(false))
    }

    pub async fn logs(&self, name: &str, lines: usize) -> String {
        let Ok(s) = self.service(name) else {
            return String::new();
        };
        let mut out = String::new();
        let mut st = self.docker.logs::<String>(
            &s.container,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        while let Some(Ok(l)) = st.next().await {
            match l {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                _ => {}
            }
        }
        out
    }

    pub async fn stop(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .stop_container(&s.container, Some(StopContainerOptions { t: 5 }))
            .await?;
        Ok(())
    }

    pub async fn kill(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .kill_container(
                &s.container,
                Some(KillContainerOptions { signal: "SIGKILL" }),
            )
            .await?;
        Ok(())
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .start_container(&s.container, None::<StartContainerOptions<String>>)
            .await?;
        Ok(())
    }

    pub async fn pause(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker.pause_container(&s.container).await?;
        Ok(())
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker.unpause_container(&s.container).await?;
        Ok(())
    }

    /// Puts a shared stack back to what a fresh one would be, between
    /// drills, without restarting Prometheus (a restart costs its 5 s
    /// target-discovery delay and more):
    ///
    /// 1. every container running and unpaused;
    /// 2. Prometheus reloads a configuration without rule files: no rule is
    ///    evaluated or sent any more, and the rule state (pending, firing,
    ///    resolved and still re-sent for 15 minutes) is dropped with the groups;
    /// 3. Alertmanager restarts on tmpfs: no aggregation group,
    ///    notification log or silence (a group that flushed once would send
    ///    its next alert at group_interval, not group_wait); then the
    ///    fixtures and the Teams mock start over in process (no fault, no
    ///    series an earlier drill created, no recorded card, and nothing a
    ///    request still in flight from before brings back);
    /// 4. everything ready and every target up;
    /// 5. once a scrape that began before the undo has ended, every sample
    ///    so far is deleted (the TSDB admin API): queries see only the new drill;
    /// 6. the rules come back, with fresh state.
    ///
    /// Exporters and databases keep running. Returns how long it took.
    pub async fn reset(&self, stack: &Stack, eff: &Effective) -> Result<Duration> {
        let started = Instant::now();
        let live: Vec<&Service> = self
            .services
            .values()
            .filter(|s| s.skipped.is_none())
            .collect();
        let mut back = Vec::new();
        for s in &live {
            let state = self
                .docker
                .inspect_container(&s.container, None)
                .await?
                .state
                .unwrap_or_default();
            if state.paused == Some(true) {
                self.unpause(&s.name).await?;
            } else if state.running != Some(true) {
                self.start(&s.name).await?;
                back.push(*s);
            }
        }
        let prom = self.service(&stack.prometheus_service)?;
        let client = crate::observe::Prometheus::new(prom.url());
        self.wait_ready(&prom.name, prom.ready, Duration::from_secs(60))
            .await?;
        let (config_path, config) = eff
            .prometheus_files
            .first()
            .ok_or_else(|| anyhow!("no rendered prometheus.yml"))?;
        self.upload(
            &prom.container,
            &[(
                config_path.clone(),
                render::without_rules(config)?.into_bytes(),
                0o644,
            )],
            0,
        )
        .await?;
        client
            .reload()
            .await
            .context("Prometheus, without its rules")?;
        // Alertmanager before the mock: once it is restarted, nothing of the
        // last drill can still be on its way to Teams.
        let was_up = |s: &&&Service| !back.iter().any(|b| b.name == s.name);
        let am: Vec<&&Service> = live
            .iter()
            .filter(|s| s.kind == Kind::Alertmanager)
            .filter(was_up)
            .collect();
        futures_util::future::try_join_all(am.iter().map(|s| {
            self.docker
                .restart_container(&s.container, Some(RestartContainerOptions { t: 5 }))
        }))
        .await
        .context("restarting Alertmanager")?;
        for s in &am {
            self.wait_ready(&s.name, s.ready, Duration::from_secs(60))
                .await?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let in_process = live
            .iter()
            .filter(|s| matches!(s.kind, Kind::Fixture | Kind::TeamsMock))
            .filter(was_up);
        futures_util::future::try_join_all(in_process.map(|s| {
            let req = http.post(format!("{}/-/reset", s.url()));
            async move {
                req.send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .with_context(|| format!("resetting {}", s.name))
            }
        }))
        .await?;
        let undone = Instant::now();
        for s in &back {
            self.wait_ready(&s.name, s.ready, Duration::from_secs(60))
                .await?;
        }
        self.wait_targets(stack, eff).await?;
        // A scrape that began before the undo may still append what it saw.
        let (_, timeout) = eff.prometheus.config.slowest_scrape();
        tokio::time::sleep_until((undone + timeout).into()).await;
        client
            .delete_until(chrono::Utc::now())
            .await
            .context("clearing Prometheus' samples")?;
        self.upload(
            &prom.container,
            &[(config_path.clone(), config.clone().into_bytes(), 0o644)],
            0,
        )
        .await?;
        client
            .reload()
            .await
            .context("Prometheus, with its rules")?;
        Ok(started.elapsed())
    }

    /// Copies files into a container, owned by `owner`.
    async fn upload(
        &self,
        container: &str,
        files: &[(String, Vec<u8>, u32)],
        owner: u32,
    ) -> Result<()> {
        self.docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                tar_files(files, owner)?.into(),
            )
            .await
            .with_context(|| format!("copying files into {container}"))
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

/// The label filter for one run, or for every firedrill run.
fn run_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match run_id {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    };
    [("label".to_string(), vec![label])].into()
}

/// Container ids and network ids of one run, or of every run.
async fn labelled(
    docker: &Docker,
    run_id: Option<&str>,
) -> Result<(Vec<String>, Vec<(String, String)>)> {
    let filters = run_filter(run_id);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filters.clone(),
            ..Default::default()
        }))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters }))
        .await?
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name.unwrap_or_default())))
        .collect();
    Ok((containers, networks))
}

/// Removes the containers and networks of one run, or of every run.
pub async fn sweep(docker: &Docker, run_id: Option<&str>) -> Result<()> {
    let (containers, networks) = labelled(docker, run_id).await?;
    for id in containers {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    for (id, name) in networks {
        docker
            .remove_network(&id)
            .await
            .with_context(|| format!("removing network {name}"))?;
    }
    Ok(())
}

/// How many containers and networks are left of one run, or of every run.
pub async fn leftovers(docker: &Docker, run_id: Option<&str>) -> Result<(usize, usize)> {
    let (c, n) = labelled(docker, run_id).await?;
    Ok((c.len(), n.len()))
}
