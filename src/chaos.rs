//! Faults set on a running stack, and their undoing: a container stopped,
//! killed, paused or started again (through [`Running`], the Docker layer);
//! a fixture's behaviour changed through its control API (latency, errors,
//! a CPU or memory burn); a fault set on the Teams mock (an error status, a
//! delay). Each returns the line the drill reports.

use crate::error::Result;
use crate::fixture::teams::Fault;
use crate::spec::scenario::{Chaos, ContainerAction};
use crate::spec::Dur;
use crate::stack::Running;

/// Sets `action` on the stack; what was done, in a line. Durations of a
/// Teams fault are scaled by the scenario's `time_scale`.
pub async fn apply(running: &Running, time_scale: f64, action: &Chaos) -> Result<String> {
    let r = running;
    Ok(match action {
        Chaos::Container(a, s) => {
            match a {
                ContainerAction::Stop => r.stop(s).await?,
                ContainerAction::Start => r.start(s).await?,
                ContainerAction::Kill => r.kill(s).await?,
                ContainerAction::Pause => r.pause(s).await?,
                ContainerAction::Unpause => r.unpause(s).await?,
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
