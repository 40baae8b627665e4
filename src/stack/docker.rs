//! The Docker connection: one place that connects, negotiates the API
//! version with the engine, and explains a mismatch in one line.

use crate::error::{err, Result};
use bollard::Docker;

/// Oldest engine API firedrill uses (Docker 20.10).
pub const MIN_API: (u32, u32) = (1, 41);

/// The container and network label holding the run id of what firedrill started.
pub const RUN_LABEL: &str = "firedrill.run";

/// The container label holding the absolute path of the stack file a run
/// brought up: `firedrill chaos RUN` and `watch RUN` read the stack again.
pub const STACK_LABEL: &str = "firedrill.stack";

/// Connects through DOCKER_HOST or the local socket and negotiates the API
/// version down to what the engine speaks.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| {
        err!(
            Docker,
            "cannot reach the Docker engine ({e}); is Docker running and is DOCKER_HOST right?"
        )
    })?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| err!(Docker, "cannot reach the Docker engine: {e}. firedrill needs a running Docker Engine (API >= 1.41, Docker >= 20.10)"))?;
    let v = docker.version().await?;
    let api = v.api_version.unwrap_or_default();
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match parse(&api) {
        Some(found) if found >= MIN_API => Ok(docker),
        _ => Err(err!(Docker,
            "the Docker engine speaks API {api} (Docker {}); firedrill needs API >= {}.{} (Docker >= 20.10)",
            v.version.unwrap_or_default(),
            MIN_API.0,
            MIN_API.1
        )),
    }
}

impl From<bollard::errors::Error> for crate::error::Error {
    fn from(e: bollard::errors::Error) -> Self {
        crate::error::Error::Docker(format!("the Docker engine: {e}"))
    }
}
