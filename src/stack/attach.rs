//! A stack firedrill did not bring up this process: a run kept up after
//! its process ended (`firedrill up`), found again by its label, or a
//! stack started by docker-compose or by hand (`drill --attach FILE`),
//! found by its attach file. Either way its services, containers and
//! published ports, so that chaos and the drill's checks act on it as on
//! their own; neither is ever removed by the process that attached.

use super::{run_filter, Running, Service, COMPOSE_SERVICE, STACK_LABEL};
use crate::components;
use crate::error::{bail, Result};
use crate::spec::attach::Attach;
use crate::spec::stack::{Kind, Stack};
use bollard::container::ListContainersOptions;
use bollard::Docker;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Every container of run `run_id`, running or not.
async fn run_containers(
    docker: &Docker,
    run_id: &str,
) -> Result<Vec<bollard::models::ContainerSummary>> {
    Ok(docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: run_filter(Some(run_id)),
            ..Default::default()
        }))
        .await?)
}

/// The stack file a kept run brought up, from its containers' label.
pub async fn stack_of(docker: &Docker, run_id: &str) -> Result<PathBuf> {
    let list = run_containers(docker, run_id).await?;
    let stack = list
        .iter()
        .find_map(|c| c.labels.as_ref()?.get(STACK_LABEL).cloned());
    match stack {
        Some(s) => Ok(PathBuf::from(s)),
        None if list.is_empty() => bail!(
            Stack,
            "no container of run {run_id}: is it up? (`firedrill up` prints its id)"
        ),
        None => bail!(
            Stack,
            "run {run_id} was not brought up by `firedrill up`: its containers name no stack"
        ),
    }
}

/// The container Compose runs for `service` of `project`, by its labels:
/// the one running that is not a one-off (`docker compose run`).
async fn compose_container(docker: &Docker, project: &str, service: &str) -> Result<Vec<String>> {
    let filters = [
        (
            "label".to_string(),
            vec![
                format!("com.docker.compose.project={project}"),
                format!("{COMPOSE_SERVICE}={service}"),
                "com.docker.compose.oneoff=False".to_string(),
            ],
        ),
        ("status".to_string(), vec!["running".to_string()]),
    ]
    .into();
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await?;
    Ok(list
        .iter()
        .filter_map(|c| c.names.iter().flatten().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// A container's state, as an attached drill found it and must leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    running: bool,
    paused: bool,
}

impl Service {
    /// A service running in a container this process did not start.
    fn reached(name: &str, kind: Kind, port: u16, host_port: u16, container: String) -> Service {
        Service {
            name: name.to_string(),
            kind,
            port,
            host_port,
            container,
            skipped: None,
            stand_in: None,
            ready: components::of(kind).ready,
        }
    }
}

impl Running {
    /// A stack this process did not bring up: dropping it removes nothing.
    fn not_ours(
        docker: &Docker,
        run_id: String,
        network: String,
        services: BTreeMap<String, Service>,
    ) -> Running {
        Running {
            docker: docker.clone(),
            run_id,
            network,
            services,
            teams_token: String::new(),
            generated: BTreeMap::new(),
            down: AtomicBool::new(true),
            _names: None,
            bring_up: Duration::ZERO,
            made: Default::default(),
        }
    }

    /// The run `run_id` of `stack`, found by its labels; what this process
    /// does to it, it leaves up (`firedrill down RUN` removes it).
    pub async fn reattach(docker: &Docker, stack: &Stack, run_id: &str) -> Result<Running> {
        let list = run_containers(docker, run_id).await?;
        let mut services = BTreeMap::new();
        for c in &list {
            let Some(name) = c.labels.as_ref().and_then(|l| l.get(COMPOSE_SERVICE)) else {
                continue;
            };
            let Some(spec) = stack.doc.services.get(name) else {
                bail!(Stack, "run {run_id} has a service `{name}` that {} does not: it was brought up from another version of the stack", stack.source.path.display());
            };
            let port = stack.port(name);
            let host_port = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.private_port == port && p.public_port.is_some())
                .and_then(|p| p.public_port)
                .unwrap_or(0);
            let container = c
                .names
                .iter()
                .flatten()
                .next()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let svc = Service::reached(name, spec.kind, port, host_port, container);
            services.insert(name.clone(), svc);
        }
        for (name, spec) in &stack.doc.services {
            if !services.contains_key(name) {
                let why = "not running in this run (skipped at `up`)".to_string();
                services.insert(
                    name.clone(),
                    Service::skipped(name, spec.kind, stack.port(name), why),
                );
            }
        }
        let network = format!("firedrill-{run_id}");
        Ok(Running::not_ours(
            docker,
            run_id.to_string(),
            network,
            services,
        ))
    }

    /// The stack an attach file describes, already running. A service the
    /// file does not name is reported skipped; chaos reaches a container by
    /// its name, or by Compose's project and service labels.
    pub async fn attached(docker: &Docker, stack: &Stack, attach: &Attach) -> Result<Running> {
        let mut services = BTreeMap::new();
        for (name, spec) in &stack.doc.services {
            let port = stack.port(name);
            let Some(a) = attach.doc.services.get(name) else {
                let why = format!("not named in {}", attach.source.path.display());
                services.insert(name.clone(), Service::skipped(name, spec.kind, port, why));
                continue;
            };
            let container = match (&a.container, &attach.doc.project) {
                (Some(c), _) => c.clone(),
                (None, Some(p)) => {
                    let found = compose_container(docker, p, name).await?;
                    let [one] = found.as_slice() else {
                        let at = attach.source.error(&format!("services.{name}"), format!(
                            "Compose project `{p}` runs {} container(s) of service `{name}` ({}): name the one with `container:`",
                            found.len(),
                            found.join(", ")
                        ));
                        return Err(at.into());
                    };
                    one.clone()
                }
                // No container to act on: chaos on it fails, saying so.
                (None, None) => String::new(),
            };
            let svc = Service::reached(name, spec.kind, port, a.port, container);
            services.insert(name.clone(), svc);
        }
        let stem = attach
            .source
            .path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let running =
            Running::not_ours(docker, format!("attached-{stem}"), String::new(), services);
        for s in running.services.values().filter(|s| s.skipped.is_none()) {
            let ready = running.wait_ready(&s.name, s.ready, Duration::from_secs(10));
            if let Err(e) = ready.await {
                bail!(
                    Stack,
                    "{} on 127.0.0.1:{} (from {}) is not ready: {e}",
                    s.name,
                    s.host_port,
                    attach.source.path.display()
                );
            }
        }
        Ok(running)
    }

    /// The state of each attached container, before a drill.
    pub async fn states(&self) -> BTreeMap<String, Held> {
        let mut out = BTreeMap::new();
        for s in self.services.values().filter(|s| !s.container.is_empty()) {
            if let Ok(i) = self.docker.inspect_container(&s.container, None).await {
                let st = i.state.unwrap_or_default();
                let held = Held {
                    running: st.running.unwrap_or(false),
                    paused: st.paused.unwrap_or(false),
                };
                out.insert(s.name.clone(), held);
            }
        }
        out
    }

    /// Puts each container back as `before` found it: started again if a
    /// drill stopped or killed it, resumed if it paused it, whatever way
    /// the drill ended. What it did, a line per container.
    pub async fn restore(&self, before: &BTreeMap<String, Held>) -> Vec<String> {
        let now = self.states().await;
        let mut done = Vec::new();
        for (name, was) in before {
            let Some(is) = now.get(name) else { continue };
            let r = if !was.paused && is.paused {
                self.unpause(name).await.map(|_| "resumed")
            } else if was.running && !is.running {
                self.start(name).await.map(|_| "started again")
            } else {
                continue;
            };
            done.push(match r {
                Ok(what) => format!("{name}: {what}"),
                Err(e) => format!("{name}: could not be put back: {e}"),
            });
        }
        done
    }

    /// Leaves the run up when this value is dropped: `firedrill up` ends
    /// and its stack stays, until `firedrill down RUN`.
    pub fn keep(self) {
        self.down.store(true, Ordering::SeqCst);
    }
}
