//! Faults set on a running stack, and their undoing: a container stopped,
//! killed, paused or started again (through [`Running`], the Docker layer);
//! a fixture's behaviour changed through its control API (latency, errors,
//! a CPU or memory burn); a fault set on the Teams mock (an error status, a
//! delay); a database's connections held by a client of the drill
//! ([`Held`]); a GPU's SMs or memory put under load for real ([`gpu`]).
//! Each returns the line the drill reports.

pub mod gpu;

use crate::error::{err, Result};
use crate::fixture::teams::Fault;
use crate::spec::scenario::{Chaos, ContainerAction};
use crate::spec::stack::Stack;
use crate::spec::Dur;
use crate::stack::Running;
use std::collections::BTreeMap;
use std::time::Duration;

/// What chaos holds open for the drill: connections to each PostgreSQL
/// service, a load on the GPU each dcgm-exporter reads. Dropping it closes
/// and ends them (the drill's end, on every exit path).
#[derive(Default)]
pub struct Held {
    postgres: BTreeMap<String, Vec<tokio_postgres::Client>>,
    gpu: BTreeMap<(String, gpu::Load), gpu::Saturation>,
}

impl Held {
    /// Lets everything go: GPU loads ended off the runtime's threads (a
    /// load's end waits for its last launch), connections closed.
    pub async fn end(&mut self) {
        for (_, load) in std::mem::take(&mut self.gpu) {
            end_gpu_load(load).await;
        }
        self.postgres.clear();
    }
}

/// Sets `action` on the stack; what was done, in a line. Durations of a
/// Teams fault are scaled by the scenario's `time_scale`; connections are
/// held in `held`.
pub async fn apply(
    running: &Running,
    stack: &Stack,
    held: &mut Held,
    time_scale: f64,
    action: &Chaos,
) -> Result<String> {
    let r = running;
    Ok(match action {
        Chaos::PostgresHold(s, n) => {
            hold_connections(r, stack, held, s, *n as usize).await?;
            format!("{s}: {n} connections held open")
        }
        Chaos::PostgresRelease(s) => {
            let n = held.postgres.remove(s).map_or(0, |c| c.len());
            format!("{s}: {n} held connections closed")
        }
        Chaos::GpuSaturate(s, g) => {
            // A second load of the same kind replaces the first.
            if let Some(old) = held.gpu.remove(&(s.clone(), g.load)) {
                end_gpu_load(old).await;
            }
            let (sat, line) = saturate_gpu(r, s, *g).await?;
            held.gpu.insert((s.clone(), g.load), sat);
            format!("{s}: {line}")
        }
        Chaos::GpuRelease(s) => {
            let loads: Vec<_> = held.gpu.keys().filter(|k| k.0 == *s).cloned().collect();
            for k in &loads {
                if let Some(old) = held.gpu.remove(k) {
                    end_gpu_load(old).await;
                }
            }
            format!("{s}: {} GPU load(s) ended", loads.len())
        }
        Chaos::Container(a, s) => {
            match a {
                ContainerAction::Stop => r.stop(s).await?,
                ContainerAction::Start => r.start(s).await?,
                ContainerAction::Kill => r.kill(s).await?,
                ContainerAction::Restart => r.restart(s).await?,
                ContainerAction::Pause => r.pause(s).await?,
                ContainerAction::Unpause => r.unpause(s).await?,
                ContainerAction::Remove => r.remove(s).await?,
            }
            format!("{a:?} {s}").to_lowercase()
        }
        Chaos::FixtureSet(s, set) => {
            control(&format!("{}/-/control", r.url(s)?), Some(set), s).await?;
            format!("{s}: {}", serde_json::to_string(set)?)
        }
        Chaos::FixtureReset(s) => {
            control::<()>(&format!("{}/-/control", r.url(s)?), None, s).await?;
            format!("{s}: back to its profile")
        }
        Chaos::TeamsFault(t, f) => {
            let ms = |d: Option<Dur>| d.map(|d| d.scaled(time_scale).0.as_millis() as u64);
            let fault = Fault {
                status: f.status,
                delay_ms: ms(f.delay),
                error_text: f.error_text.clone(),
                for_ms: ms(f.for_),
            };
            control(&format!("{}/-/fault", r.url(t)?), Some(&fault), t).await?;
            format!("{t}: {}", serde_json::to_string(&fault)?)
        }
        Chaos::TeamsReset(t) => {
            control::<()>(&format!("{}/-/fault", r.url(t)?), None, t).await?;
            format!("{t}: answers normally again")
        }
    })
}

/// Puts the GPU that dcgm-exporter service `s` reads (GPU 0) under load;
/// refused where a fixture plays it (a machine with no GPU).
async fn saturate_gpu(
    r: &Running,
    s: &str,
    g: crate::spec::scenario::GpuSaturate,
) -> Result<(gpu::Saturation, String)> {
    let svc = r.service(s)?;
    if svc.kind != crate::components::Kind::DcgmExporter {
        return Err(err!(
            Component,
            "{s} is played by a fixture here ({}): GPU chaos needs a GPU",
            svc.stand_in.clone().unwrap_or_default()
        ));
    }
    let hold = g.hold.map_or(crate::spec::scenario::MAX_GPU_HOLD, |d| d.0);
    // CUDA calls block: off the runtime's threads. GPU 0 as dcgm-exporter
    // labels it (NVML's index), found among CUDA's by its PCI address.
    tokio::task::spawn_blocking(move || {
        gpu::Saturation::start(gpu::ordinal_of(0)?, g.load, g.fill, hold)
    })
    .await
    .map_err(|e| err!(Component, "GPU chaos: {e}"))?
}

/// Ends a GPU load and waits until the GPU is free of it (at most one
/// launch's slice), off the runtime's threads.
async fn end_gpu_load(s: gpu::Saturation) {
    let _ = tokio::task::spawn_blocking(move || drop(s)).await;
}

/// How many connections are opened at once: a burst PostgreSQL's
/// postmaster takes without refusing any.
const CONNECT_BATCH: usize = 10;

/// Holds `n` connections open on PostgreSQL service `s` (opening or closing
/// some), as the stack's own user with the password the run made; each
/// connection is an idle backend, as a leaking pool leaves them.
async fn hold_connections(
    r: &Running,
    stack: &Stack,
    held: &mut Held,
    s: &str,
    n: usize,
) -> Result<()> {
    let svc = stack
        .service(s)
        .ok_or_else(|| err!(Component, "no service `{s}`"))?;
    let env = |k: &str| svc.env.get(k).cloned();
    let user = env("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
    let db = env("POSTGRES_DB").unwrap_or_else(|| user.clone());
    let password = match env("POSTGRES_PASSWORD_FILE") {
        Some(path) => r.secret(stack, s, &path),
        None => env("POSTGRES_PASSWORD"),
    };
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(r.service(s)?.host_port)
        .user(&user)
        .dbname(&db)
        .application_name("firedrill-chaos")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &password {
        cfg.password(p.as_str());
    }
    let clients = held.postgres.entry(s.to_string()).or_default();
    clients.truncate(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(CONNECT_BATCH);
        let opened =
            futures_util::future::join_all((0..batch).map(|_| cfg.connect(tokio_postgres::NoTls)))
                .await;
        for c in opened {
            let (client, conn) = c.map_err(|e| {
                err!(
                    Component,
                    "{s} refused connection {} of {n}: {e}",
                    clients.len() + 1
                )
            })?;
            // The connection's I/O runs until the client is dropped.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            clients.push(client);
        }
    }
    Ok(())
}

/// A control API call: PUT `body`, or DELETE to undo; a refusal is an error
/// naming the service.
async fn control<T: serde::Serialize>(
    url: &str,
    body: Option<&T>,
    service: &str,
) -> crate::error::Result<()> {
    let c = reqwest::Client::new();
    let resp = match body {
        Some(b) => c.put(url).json(b).send().await?,
        None => c.delete(url).send().await?,
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(crate::error::err!(
            Component,
            "{service} refused the control change: {status} {}",
            text.trim()
        ));
    }
    Ok(())
}
