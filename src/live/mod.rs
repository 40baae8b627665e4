//! Hands-on drills: a stack brought up and kept (`firedrill up`), faults
//! set on it by hand (`firedrill chaos RUN ACTION`), and its alerts
//! followed live, pending → firing → Teams → resolved (`firedrill watch
//! RUN`); `firedrill down RUN` removes it. The run is found again by the
//! labels on its containers, so each command is a process of its own.

use crate::chaos::{self, Held};
use crate::components::Kind;
use crate::error::{bail, Error, Result};
use crate::images::Images;
use crate::observe::{AlertState, Prometheus, TeamsMock};
use crate::spec::scenario::{Chaos, ChaosStep};
use crate::spec::stack::Stack;
use crate::stack::{Docker, Running};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A stack that `up` left running: its id and what to open.
#[derive(Debug)]
pub struct Up {
    /// The run id: `firedrill chaos RUN …`, `watch RUN`, `down RUN`.
    pub run_id: String,
    /// (service, what it is, URL on 127.0.0.1) for the services a person opens.
    pub urls: Vec<(String, String, String)>,
    /// Services that did not come up, each with why.
    pub skipped: BTreeMap<String, String>,
}

/// What a person opens of each kind, and the path to it.
fn landing(kind: Kind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        Kind::Prometheus => ("Prometheus: alerts", "/alerts"),
        Kind::Alertmanager => ("Alertmanager", "/#/alerts"),
        Kind::TeamsMock => ("Teams mock: the cards it received", "/-/deliveries"),
        Kind::Grafana => ("Grafana", "/"),
        Kind::Fixture => ("fixture: metrics", "/metrics"),
        _ => return None,
    })
}

/// Brings the stack at `stack_path` up at `time_scale` and leaves it up.
pub async fn up(
    docker: &Docker,
    images: &Images,
    stack_path: &Path,
    time_scale: f64,
) -> Result<Up> {
    let stack = Stack::load(stack_path)?;
    let eff = crate::render::render(&stack, time_scale)?;
    let run_id = crate::stack::new_run_id();
    let running = Running::up(docker, &stack, &eff, images, &run_id).await?;
    let urls = running
        .services
        .values()
        .filter(|s| s.skipped.is_none())
        .filter_map(|s| {
            let (what, path) = landing(s.kind)?;
            Some((
                s.name.clone(),
                what.to_string(),
                format!("{}{path}", s.url()),
            ))
        })
        .collect();
    let skipped = running.skipped();
    running.keep();
    Ok(Up {
        run_id,
        urls,
        skipped,
    })
}

/// The stack of a kept run and the run itself.
pub async fn attach(docker: &Docker, run_id: &str) -> Result<(Stack, Running)> {
    let path = crate::stack::attach::stack_of(docker, run_id).await?;
    let stack = Stack::load(&path)?;
    let running = Running::reattach(docker, &stack, run_id).await?;
    Ok((stack, running))
}

/// A chaos action as a scenario writes it (`{stop: backend}`,
/// `{fixture: backend, set: {latency: 500ms}}`) or in words
/// (`stop backend`, `fixture backend reset`).
pub fn parse_action(text: &str) -> Result<Chaos> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let yaml = match words.as_slice() {
        [verb, svc] if !text.contains('{') => format!("{{{verb}: {svc}}}"),
        [kind, svc, "reset"] => format!("{{{kind}: {svc}, reset: true}}"),
        _ => text.to_string(),
    };
    let step: ChaosStep = serde_yaml_ng::from_str(&yaml)
        .map_err(|e| Error::Invalid(format!("chaos action `{text}`: {e}")))?;
    let action = step
        .action()
        .map_err(|e| Error::Invalid(format!("chaos action `{text}`: {e}")))?;
    match &action {
        Chaos::PostgresHold(..) | Chaos::GpuSaturate(..) => Err(Error::Invalid(format!(
            "chaos action `{text}`: it is held by the process that sets it; use a scenario (`firedrill drill`)"
        ))),
        Chaos::Container(crate::spec::scenario::ContainerAction::Remove, _) => Err(Error::Invalid(
            "chaos action `remove`: a kept run cannot make the container again; use `stop` or `kill`".into(),
        )),
        _ => Ok(action),
    }
}

/// Sets `action` on the kept run `run_id`; the line a drill would report.
pub async fn chaos(docker: &Docker, run_id: &str, action: &Chaos) -> Result<String> {
    let (stack, running) = attach(docker, run_id).await?;
    let s = action.service();
    let Some(spec) = stack.doc.services.get(s) else {
        bail!(Invalid, "run {run_id}'s stack has no service `{s}`");
    };
    let wants = match action {
        Chaos::FixtureSet(..) | Chaos::FixtureReset(_) => Some(Kind::Fixture),
        Chaos::TeamsFault(..) | Chaos::TeamsReset(_) => Some(Kind::TeamsMock),
        _ => None,
    };
    if let Some(k) = wants.filter(|k| *k != spec.kind) {
        bail!(Invalid, "`{s}` is a {:?}, not a {k:?}", spec.kind);
    }
    running.service(s)?;
    chaos::apply(&running, &stack, &mut Held::default(), 1.0, action).await
}

/// One change `watch` saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An alert went pending, or firing, or back to inactive (resolved).
    Alert {
        /// The alert's name and its labels but `alertname`, as text.
        alert: String,
        /// The state before.
        from: &'static str,
        /// The state now.
        to: &'static str,
    },
    /// The Teams mock received a card.
    Card {
        /// Its title.
        title: String,
        /// Firing or resolved.
        status: String,
        /// The HTTP status the mock answered.
        http_status: u16,
    },
}

/// Follows the kept run `run_id` for at most `limit`, calling `seen` with
/// each change, until `stop` resolves.
pub async fn watch(
    docker: &Docker,
    run_id: &str,
    limit: Duration,
    mut seen: impl FnMut(DateTime<Utc>, Event),
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (_stack, running) = attach(docker, run_id).await?;
    let prom = running
        .services
        .values()
        .find(|s| s.kind == Kind::Prometheus && s.skipped.is_none())
        .map(|s| Prometheus::new(s.url()));
    let Some(prom) = prom else {
        bail!(Stack, "run {run_id} has no Prometheus running");
    };
    let teams: Vec<TeamsMock> = running
        .services
        .values()
        .filter(|s| s.kind == Kind::TeamsMock && s.skipped.is_none())
        .map(|s| TeamsMock::new(s.url()))
        .collect();
    let started = Instant::now();
    let mut states: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut cards = vec![0usize; teams.len()];
    tokio::pin!(stop);
    while started.elapsed() < limit {
        // Prometheus out of reach says nothing of the alerts: no change.
        if let Some(now) = alert_states(&prom).await {
            changes(&states, &now, &mut seen);
            states = now;
        }
        for (t, n) in teams.iter().zip(cards.iter_mut()) {
            let got = t.deliveries().await.unwrap_or_default();
            for d in got.iter().skip(*n) {
                seen(
                    d.received_at,
                    Event::Card {
                        title: d.title.clone(),
                        status: format!("{:?}", d.status).to_lowercase(),
                        http_status: d.http_status,
                    },
                );
            }
            *n = got.len().max(*n);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stop => return Ok(()),
        }
    }
    Ok(())
}

/// Each alert's state now, by its name and labels.
async fn alert_states(prom: &Prometheus) -> Option<BTreeMap<String, &'static str>> {
    let alerts = prom.alerts().await.ok()?;
    Some(
        alerts
            .iter()
            .map(|a| (alert_key(&a.labels), state_name(&a.state)))
            .collect(),
    )
}

/// Calls `seen` with each alert whose state changed from `before` to `now`.
fn changes(
    before: &BTreeMap<String, &'static str>,
    now: &BTreeMap<String, &'static str>,
    seen: &mut impl FnMut(DateTime<Utc>, Event),
) {
    let mut tell = |alert: &str, from: &'static str, to: &'static str| {
        if from != to {
            let alert = alert.to_string();
            seen(Utc::now(), Event::Alert { alert, from, to });
        }
    };
    for (k, to) in now {
        tell(k, before.get(k).copied().unwrap_or("inactive"), to);
    }
    for (k, from) in before.iter().filter(|(k, _)| !now.contains_key(*k)) {
        // A firing alert that goes inactive has resolved.
        tell(
            k,
            from,
            if *from == "firing" {
                "resolved"
            } else {
                "inactive"
            },
        );
    }
}

fn state_name(s: &AlertState) -> &'static str {
    match s {
        AlertState::Firing => "firing",
        AlertState::Pending => "pending",
        _ => "inactive",
    }
}

/// `Name{label="v",…}`, labels but `alertname`.
fn alert_key(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("alertname").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_in_words_or_as_a_scenario_writes_them() {
        assert!(
            matches!(parse_action("stop backend").unwrap(), Chaos::Container(_, s) if s == "backend")
        );
        assert!(
            matches!(parse_action("fixture backend reset").unwrap(), Chaos::FixtureReset(s) if s == "backend")
        );
        assert!(matches!(
            parse_action("{fixture: backend, set: {latency: 500ms}}").unwrap(),
            Chaos::FixtureSet(..)
        ));
        assert!(parse_action("explode backend").is_err());
        assert!(parse_action("{postgres: db, connections: 10}").is_err());
        assert!(parse_action("remove backend").is_err());
    }
}
