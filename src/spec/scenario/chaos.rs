//! A `chaos` step: as written ([`ChaosStep`], one action with its options)
//! and as validated ([`Chaos`], exactly one action), with the bounds each
//! kind of fault keeps.

use super::*;

/// The most crashes a `crash_loop` may ask for.
pub const MAX_CRASH_LOOP: u32 = 20;

/// A `chaos` step as written: one action, with its options.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChaosStep {
    /// A service whose container stops (SIGTERM, then SIGKILL after 5 s).
    pub stop: Option<String>,
    /// A service whose stopped container starts again.
    pub start: Option<String>,
    /// A service whose container is killed (SIGKILL).
    pub kill: Option<String>,
    /// A service whose container restarts (stopped, then started: a new
    /// process, whatever it held in memory gone).
    pub restart: Option<String>,
    /// A service whose container is paused (its processes freeze).
    pub pause: Option<String>,
    /// A service whose paused container resumes.
    pub unpause: Option<String>,
    /// A service whose container is removed (`docker rm -f`); `start`
    /// makes it again from its settings.
    pub remove: Option<String>,
    /// A fixture service whose behaviour changes (`set`) or returns to its profile (`reset`).
    pub fixture: Option<String>,
    /// What changes on `fixture`.
    pub set: Option<FixtureSet>,
    /// A Teams mock that misbehaves (`fault`) or behaves again (`reset`).
    pub teams: Option<String>,
    /// The fault set on `teams`.
    pub fault: Option<TeamsFault>,
    /// A PostgreSQL service whose connections a client holds
    /// (`connections`) or lets go (`reset`).
    pub postgres: Option<String>,
    /// How many connections to hold open on `postgres` (1 to
    /// [`MAX_CONNECTIONS`]), until `reset` or the drill's end.
    pub connections: Option<u32>,
    /// A `dcgm-exporter` service whose GPU is put under load for real
    /// (`saturate`) or let go (`reset`); where no GPU plays it, the drill is
    /// skipped with the reason.
    pub gpu: Option<String>,
    /// What of the `gpu` is put under load: `sm` (every SM busy) or `vram`.
    pub saturate: Option<GpuLoad>,
    /// For `saturate: vram`, the share of the GPU's memory to bring in use,
    /// % (1 to [`MAX_GPU_FILL`], default 95).
    pub fill: Option<u8>,
    /// For `gpu`, the longest the load lasts, unscaled (default: until
    /// `reset` or the drill's end; at most an hour).
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    /// Undo the `fixture` change, the `teams` fault, the `postgres`
    /// connections or the `gpu` load, default false.
    #[serde(default)]
    pub reset: bool,
}

/// The most connections a `postgres` chaos step may hold.
pub const MAX_CONNECTIONS: u32 = 1000;

/// What the Teams mock does to each card while the fault lasts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamsFault {
    /// Answer this HTTP status and post nothing: 429 (throttled; Alertmanager
    /// drops it), 500/503 (Alertmanager retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer this much later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    /// Answer `200` with this text and post nothing, as a throttled Teams
    /// connector does; Alertmanager counts it as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
    /// The fault ends by itself after this long (default: until `reset`).
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Dur>,
}

/// What a chaos step does to a service's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerAction {
    /// Stops it: SIGTERM, then SIGKILL after 5 s.
    Stop,
    /// Starts it again.
    Start,
    /// Kills it with SIGKILL.
    Kill,
    /// Restarts it: stopped as `Stop` does, then started.
    Restart,
    /// Pauses it: its processes freeze.
    Pause,
    /// Resumes it after a pause.
    Unpause,
    /// Removes it (killed first); `Start` makes it again.
    Remove,
}

/// A chaos step after validation: exactly one action.
#[derive(Debug, Clone, PartialEq)]
pub enum Chaos {
    /// A container action on a service.
    Container(ContainerAction, String),
    /// A behaviour change of a fixture service.
    FixtureSet(String, FixtureSet),
    /// A fixture service returned to its profile.
    FixtureReset(String),
    /// A fault set on a Teams mock.
    TeamsFault(String, TeamsFault),
    /// A Teams mock's fault lifted.
    TeamsReset(String),
    /// Connections held open on a PostgreSQL service, by a client of the drill.
    PostgresHold(String, u32),
    /// The connections held on a PostgreSQL service closed.
    PostgresRelease(String),
    /// The GPU a dcgm-exporter service reads, put under load.
    GpuSaturate(String, GpuSaturate),
    /// That load ended.
    GpuRelease(String),
}

/// What of a GPU a chaos step puts under load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum GpuLoad {
    /// Every streaming multiprocessor, busy.
    Sm,
    /// Device memory, filled to a share of the whole.
    Vram,
}

/// The most of a GPU's memory a `vram` load may fill, %.
pub const MAX_GPU_FILL: u8 = 99;

/// The longest a GPU load lasts, whatever was asked.
pub const MAX_GPU_HOLD: std::time::Duration = std::time::Duration::from_secs(3600);

/// A GPU load as a chaos step asks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSaturate {
    /// What is put under load.
    pub load: GpuLoad,
    /// For `vram`, the share of memory to bring in use, %.
    pub fill: u8,
    /// The longest it lasts (before time compression: GPU time is real).
    pub hold: Option<Dur>,
}

impl Chaos {
    /// The service it acts on.
    pub fn service(&self) -> &str {
        match self {
            Chaos::Container(_, s)
            | Chaos::FixtureSet(s, _)
            | Chaos::FixtureReset(s)
            | Chaos::TeamsFault(s, _)
            | Chaos::TeamsReset(s)
            | Chaos::PostgresHold(s, _)
            | Chaos::PostgresRelease(s)
            | Chaos::GpuSaturate(s, _)
            | Chaos::GpuRelease(s) => s,
        }
    }
}

impl ChaosStep {
    /// The one action this step names; an error if it names none or several.
    pub fn action(&self) -> crate::error::Result<Chaos> {
        use ContainerAction::*;
        if self.gpu.is_none()
            && (self.saturate.is_some() || self.fill.is_some() || self.for_.is_some())
        {
            return Err(
                "`saturate`, `fill` and `for` go with `gpu: <dcgm-exporter service>`".into(),
            );
        }
        let mut found = Vec::new();
        for (a, s) in [
            (Stop, &self.stop),
            (Start, &self.start),
            (Kill, &self.kill),
            (Restart, &self.restart),
            (Pause, &self.pause),
            (Unpause, &self.unpause),
            (Remove, &self.remove),
        ] {
            if let Some(s) = s {
                found.push(Chaos::Container(a, s.clone()));
            }
        }
        if let Some(f) = &self.fixture {
            match (&self.set, self.reset) {
                (Some(set), false) => found.push(Chaos::FixtureSet(f.clone(), set.clone())),
                (None, true) => found.push(Chaos::FixtureReset(f.clone())),
                _ => return Err("`fixture` takes either `set: {...}` or `reset: true`".into()),
            }
        }
        if let Some(t) = &self.teams {
            match (&self.fault, self.reset) {
                (Some(f), false) => found.push(Chaos::TeamsFault(t.clone(), f.clone())),
                (None, true) => found.push(Chaos::TeamsReset(t.clone())),
                _ => return Err("`teams` takes either `fault: {...}` or `reset: true`".into()),
            }
        }
        if let Some(p) = &self.postgres {
            match (self.connections, self.reset) {
                (Some(n), false) => found.push(Chaos::PostgresHold(p.clone(), n)),
                (None, true) => found.push(Chaos::PostgresRelease(p.clone())),
                _ => return Err("`postgres` takes either `connections: N` or `reset: true`".into()),
            }
        }
        if let Some(g) = &self.gpu {
            match (self.saturate, self.reset) {
                (Some(load), false) => found.push(Chaos::GpuSaturate(
                    g.clone(),
                    GpuSaturate {
                        load,
                        fill: self.fill.unwrap_or(95),
                        hold: self.for_,
                    },
                )),
                (None, true) => found.push(Chaos::GpuRelease(g.clone())),
                _ => return Err("`gpu` takes either `saturate: sm | vram` or `reset: true`".into()),
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(
                "a chaos step names one action: stop, start, kill, restart, pause, unpause, remove, fixture, teams, postgres or gpu"
                    .into(),
            ),
            _ => Err("a chaos step names one action only; use one step per action".into()),
        }
    }
}
