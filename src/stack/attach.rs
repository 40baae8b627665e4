//! A run kept up after its process ended (`firedrill up`), found again by
//! its label: its services, containers and published ports, so that
//! `firedrill chaos RUN` and `watch RUN` act on it as a drill does.

use super::{run_filter, Running, Service, COMPOSE_SERVICE, STACK_LABEL};
use crate::components;
use crate::error::{bail, Result};
use crate::spec::stack::Stack;
use bollard::container::ListContainersOptions;
use bollard::Docker;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The stack file a kept run brought up, from its containers' label.
pub async fn stack_of(docker: &Docker, run_id: &str) -> Result<PathBuf> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: run_filter(Some(run_id)),
            ..Default::default()
        }))
        .await?;
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

impl Running {
    /// The run `run_id` of `stack`, found by its labels; what this process
    /// does to it, it leaves up (`firedrill down RUN` removes it).
    pub async fn reattach(docker: &Docker, stack: &Stack, run_id: &str) -> Result<Running> {
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: run_filter(Some(run_id)),
                ..Default::default()
            }))
            .await?;
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
            services.insert(
                name.clone(),
                Service {
                    name: name.clone(),
                    kind: spec.kind,
                    port,
                    host_port,
                    container,
                    skipped: None,
                    stand_in: None,
                    ready: components::of(spec.kind).ready,
                },
            );
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
        Ok(Running {
            docker: docker.clone(),
            run_id: run_id.to_string(),
            network: format!("firedrill-{run_id}"),
            services,
            teams_token: String::new(),
            generated: BTreeMap::new(),
            down: AtomicBool::new(true),
            _names: None,
            bring_up: Duration::ZERO,
            made: Default::default(),
        })
    }

    /// Leaves the run up when this value is dropped: `firedrill up` ends
    /// and its stack stays, until `firedrill down RUN`.
    pub fn keep(self) {
        self.down.store(true, Ordering::SeqCst);
    }
}
