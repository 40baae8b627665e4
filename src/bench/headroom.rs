//! Alert headroom: which alerts went pending and firing at which step of a
//! bench, against the step where the SLO first broke. An alert that fires
//! only after users hurt, or not at all, is a finding.

use super::Step;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One alert during a bench.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Headroom {
    /// The alert's name.
    pub alert: String,
    /// Its labels (`alertname` and `alertstate` left out).
    pub labels: BTreeMap<String, String>,
    /// The rate of the step in progress when it first went pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_rps: Option<f64>,
    /// The rate of the step in progress when it first fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firing_rps: Option<f64>,
    /// What is wrong with its timing, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

/// The first step that broke the SLO, with its index.
fn first_break(steps: &[Step]) -> Option<(usize, f64)> {
    steps
        .iter()
        .position(|s| !s.holds)
        .map(|i| (i, steps[i].requested_rps))
}

/// The step in progress at `t` (the last one begun by then); none before
/// the bench began.
fn step_at(steps: &[Step], t: DateTime<Utc>) -> Option<usize> {
    steps.iter().rposition(|s| s.started <= t)
}

/// Each alert that became active during the bench, from the first time
/// each `ALERTS` series (labels with `alertstate`) was seen. Alerts already
/// active before the bench are not its doing and are left out.
pub fn headroom(
    steps: &[Step],
    seen: &[(BTreeMap<String, String>, DateTime<Utc>)],
) -> Vec<Headroom> {
    let Some(first) = steps.first() else {
        return Vec::new();
    };
    let broke = first_break(steps);
    // (name, labels) -> (pending step, firing step)
    type States = (Option<usize>, Option<usize>);
    let mut by: BTreeMap<(String, BTreeMap<String, String>), States> = BTreeMap::new();
    let mut before = Vec::new();
    for (labels, t) in seen {
        let mut l = labels.clone();
        let name = l.remove("alertname").unwrap_or_default();
        let state = l.remove("alertstate").unwrap_or_default();
        if *t < first.started {
            before.push((name, l));
            continue;
        }
        let Some(at) = step_at(steps, *t) else {
            continue;
        };
        let e = by.entry((name, l)).or_default();
        let slot = if state == "firing" {
            &mut e.1
        } else {
            &mut e.0
        };
        *slot = Some(slot.map_or(at, |s| s.min(at)));
    }
    by.into_iter()
        .filter(|(k, _)| !before.contains(k))
        .map(|((alert, labels), (pending, firing))| {
            let finding = match (firing, broke) {
                (Some(f), Some((b, rate))) if f > b => Some(format!(
                    "fired in step {} ({:.1}/s), after the SLO broke in step {} ({rate:.1}/s): users hurt first",
                    f + 1,
                    steps[f].requested_rps,
                    b + 1
                )),
                (None, Some((_, rate))) => Some(format!(
                    "only pending when the bench ended, though the SLO broke at {rate:.1}/s"
                )),
                _ => None,
            };
            Headroom {
                alert,
                labels,
                pending_rps: pending.map(|i| steps[i].requested_rps),
                firing_rps: firing.map(|i| steps[i].requested_rps),
                finding,
            }
        })
        .collect()
}

/// One line for people: each alert's rates, or that none rang though the
/// SLO broke.
pub fn summary(steps: &[Step], headroom: &[Headroom]) -> String {
    let broke = first_break(steps);
    let fired = headroom.iter().any(|h| h.firing_rps.is_some());
    let mut parts: Vec<String> = headroom
        .iter()
        .map(|h| {
            let at = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}/s"));
            let mut s = format!(
                "{} pending at {}, firing at {}",
                h.alert,
                at(h.pending_rps),
                at(h.firing_rps)
            );
            if let Some(f) = &h.finding {
                s.push_str(&format!(" (FINDING: {f})"));
            }
            s
        })
        .collect();
    match broke {
        Some((_, rate)) if !fired => parts.push(format!(
            "FINDING: no alert fired though the SLO broke at {rate:.1}/s"
        )),
        Some((_, rate)) => parts.push(format!("the SLO broke at {rate:.1}/s")),
        None if parts.is_empty() => parts.push("no alert became active".into()),
        None => {}
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadSummary;

    fn step(rate: f64, holds: bool, at: i64) -> Step {
        let t = DateTime::from_timestamp(at, 0).unwrap();
        let mut s = Step::of(
            1,
            rate,
            LoadSummary::default(),
            &super::super::Slo::default(),
        );
        s.holds = holds;
        s.started = t;
        s.ended = t + chrono::Duration::seconds(5);
        s
    }

    fn alert(name: &str, state: &str, at: i64) -> (BTreeMap<String, String>, DateTime<Utc>) {
        let l = [("alertname", name), ("alertstate", state), ("job", "app")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (l, DateTime::from_timestamp(at, 0).unwrap())
    }

    #[test]
    fn an_alert_that_fires_after_the_slo_broke_is_a_finding() {
        let steps = [
            step(100.0, true, 100),
            step(200.0, true, 106),
            step(300.0, false, 112),
            step(250.0, true, 118),
        ];
        let seen = [
            alert("Early", "pending", 107),
            alert("Early", "firing", 110),
            alert("Late", "pending", 113),
            alert("Late", "firing", 119),
            alert("Stuck", "pending", 115),
            alert("Before", "firing", 50),
        ];
        let h = headroom(&steps, &seen);
        let names: Vec<_> = h.iter().map(|x| x.alert.as_str()).collect();
        assert_eq!(names, ["Early", "Late", "Stuck"]);
        assert_eq!(
            (h[0].pending_rps, h[0].firing_rps),
            (Some(200.0), Some(200.0))
        );
        assert_eq!(h[0].finding, None);
        assert!(h[1]
            .finding
            .as_deref()
            .unwrap()
            .contains("users hurt first"));
        assert!(h[2].finding.as_deref().unwrap().contains("only pending"));
        assert_eq!(h[0].labels.get("job").map(String::as_str), Some("app"));
        let line = summary(&steps, &h);
        assert!(line.contains("the SLO broke at 300.0/s"), "{line}");
        let none = summary(&steps, &[]);
        assert!(none.contains("FINDING: no alert fired"), "{none}");
    }
}
