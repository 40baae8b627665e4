//! An attach file: a stack that is already running (brought up by
//! docker-compose, or by hand), for `firedrill drill --attach FILE`. It
//! names the stack file that says what runs (rules, Alertmanager's
//! config, fixtures), the port each service publishes on 127.0.0.1, and
//! the container chaos acts on (by name, or by Compose's labels).
//!
//! ```yaml
//! stack: firedrill/stack.yaml
//! project: ft_transcendence   # Compose's project: containers by its labels
//! services:
//!   prometheus: {port: 9090}
//!   alertmanager: {port: 9093}
//!   backend: {port: 8000}
//!   teams: {port: 8081}       # a Teams mock the stack's Alertmanager posts to
//! ```

use super::source::Source;
use super::stack::{Kind, Stack};
use crate::error::{SpecError, SpecErrors};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One service of the running stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachService {
    /// The port it publishes on 127.0.0.1.
    pub port: u16,
    /// Its container's name; by default the one Compose's labels give
    /// (`project` and the service's name).
    pub container: Option<String>,
}

/// The attach file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachDoc {
    /// The stack file, relative to this file.
    pub stack: String,
    /// The Compose project the containers belong to.
    pub project: Option<String>,
    /// The services the drill reaches, by the stack's names.
    pub services: BTreeMap<String, AttachService>,
}

/// An attach file, read and checked against its stack.
#[derive(Debug)]
pub struct Attach {
    /// Its text and location.
    pub source: Source,
    /// As written.
    pub doc: AttachDoc,
    /// The stack file it names.
    pub stack_path: PathBuf,
}

impl Attach {
    /// Reads `path` and checks it against the stack it names: every
    /// service is one of the stack's, and Prometheus and Alertmanager have
    /// a port.
    pub fn load(path: &Path) -> Result<Attach, SpecErrors> {
        let one = |e: SpecError| SpecErrors { errors: vec![e] };
        let source = Source::read(path).map_err(one)?;
        let doc: AttachDoc = source.parse().map_err(one)?;
        let stack_path = source.relative(&doc.stack);
        let stack = Stack::load(&stack_path)?;
        let mut errors = Vec::new();
        for (name, s) in &doc.services {
            if !stack.doc.services.contains_key(name) {
                errors.push(source.error(
                    &format!("services.{name}"),
                    format!("{} has no service `{name}`", stack_path.display()),
                ));
            }
            if s.port == 0 {
                errors.push(source.error(&format!("services.{name}.port"), "port 0"));
            }
        }
        for kind in [Kind::Prometheus, Kind::Alertmanager] {
            let named = stack.doc.services.iter().find(|(_, s)| s.kind == kind);
            if let Some((n, _)) = named.filter(|(n, _)| !doc.services.contains_key(*n)) {
                errors.push(source.error(
                    "services",
                    format!("the stack's {kind:?} `{n}` needs its port: the drill asks it"),
                ));
            }
        }
        SpecErrors { errors }.into_result()?;
        Ok(Attach {
            source,
            doc,
            stack_path,
        })
    }
}
