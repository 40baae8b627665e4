//! A capacity search as written, for a scenario's `bench:` step and for
//! `firedrill bench`'s flags alike: the SLO to hold and how the arrival rate
//! moves, with every bound checked before any request is sent.

use super::{Dur, Rate};
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// The most a whole bench may take, every step and repeat included.
pub const MAX_BENCH: Duration = Duration::from_secs(3600);

/// What must hold at a rate: latency percentiles from the client's
/// corrected histogram, and the share of requests that failed. Written
/// `{p99: 250ms, errors: 0.5%}`; reported in ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Slo {
    /// The median at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// The 90th percentile at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// The 99th percentile at most, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The share of requests answered 4xx/5xx or not at all, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
}

impl Slo {
    /// Parses `p99=250ms`, `p50=20ms`, `errors=0.5%` (or `errors=0.005`),
    /// each objective once.
    pub fn parse(items: &[String]) -> Result<Slo> {
        let mut slo = Slo::default();
        for item in items {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "SLO `{item}`: write it like p99=250ms or errors=0.5%"
                ))
            })?;
            slo.set(k.trim(), v)?;
        }
        slo.given()?;
        Ok(slo)
    }

    /// Sets one objective (`p99`, `250ms`); each is set once.
    fn set(&mut self, k: &str, v: &str) -> Result<()> {
        let ms = || -> Result<f64> { Ok(Dur::parse(v)?.0.as_secs_f64() * 1000.0) };
        let (slot, value) = match k {
            "p50" => (&mut self.p50_ms, ms()?),
            "p90" => (&mut self.p90_ms, ms()?),
            "p99" => (&mut self.p99_ms, ms()?),
            "errors" | "error_ratio" => (&mut self.error_ratio, parse_ratio(v)?),
            other => {
                return Err(Error::Invalid(format!(
                    "SLO `{other}`: an objective is p50, p90, p99 or errors"
                )))
            }
        };
        if slot.replace(value).is_some() {
            return Err(Error::Invalid(format!("SLO `{k}` is given twice")));
        }
        Ok(())
    }

    fn given(&self) -> Result<()> {
        if *self == Slo::default() {
            return Err(Error::Invalid(
                "give an SLO to hold: p99=250ms, errors=0.5%".into(),
            ));
        }
        Ok(())
    }

    /// The objectives for people: `p99 ≤ 250 ms, errors ≤ 1.00%`.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        for (name, v) in [
            ("p50", self.p50_ms),
            ("p90", self.p90_ms),
            ("p99", self.p99_ms),
        ] {
            if let Some(v) = v {
                out.push(format!("{name} ≤ {v} ms"));
            }
        }
        if let Some(r) = self.error_ratio {
            out.push(format!("errors ≤ {:.2}%", r * 100.0));
        }
        out.join(", ")
    }
}

impl<'de> Deserialize<'de> for Slo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Slo, D::Error> {
        use serde::de::Error as _;
        let map = std::collections::BTreeMap::<String, serde_yaml_ng::Value>::deserialize(d)?;
        let mut slo = Slo::default();
        for (k, v) in map {
            let v = match v {
                serde_yaml_ng::Value::String(s) => s,
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                _ => return Err(D::Error::custom(format!("SLO `{k}`: write 250ms or 0.5%"))),
            };
            slo.set(&k, &v).map_err(D::Error::custom)?;
        }
        slo.given().map_err(D::Error::custom)?;
        Ok(slo)
    }
}

/// `0.5%` or `0.005`, between 0 and 1.
pub fn parse_ratio(v: &str) -> Result<f64> {
    let v = v.trim();
    let r = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => v.parse::<f64>(),
    }
    .map_err(|_| Error::Invalid(format!("error ratio `{v}`: write it like 0.5% or 0.005")))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(Error::Invalid(format!(
            "error ratio `{v}` is not between 0 and 1"
        )));
    }
    Ok(r)
}

/// How the rate moves and what must hold: rates from `from` to `to` evenly
/// spaced, then halvings between the last rate that held and the first that
/// broke, the whole search `repeat` times.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// What must hold.
    pub slo: Slo,
    /// The first rate tried.
    pub from: Rate,
    /// The last rate tried.
    pub to: Rate,
    /// Rates tried from `from` to `to` (2 to 50, default 10).
    #[serde(default = "ten")]
    pub steps: u32,
    /// Halvings after the rate broke the SLO (at most 10, default 4).
    #[serde(default = "four")]
    pub refine: u32,
    /// How long each rate is held (default 10s; not scaled by `time_scale`:
    /// it is a measurement's window, not the stack's).
    #[serde(default = "ten_secs")]
    pub step: Dur,
    /// Whole searches, for the knee's spread (1 to 10, default 1).
    #[serde(default = "one")]
    pub repeat: u32,
    /// A request past it is an error (default 10s).
    #[serde(default = "ten_secs")]
    pub timeout: Dur,
}

fn ten() -> u32 {
    10
}
fn four() -> u32 {
    4
}
fn one() -> u32 {
    1
}
fn ten_secs() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Search {
    /// A search with the defaults, from `from` to `to`.
    pub fn new(slo: Slo, from: f64, to: f64) -> Search {
        Search {
            slo,
            from: Rate(from),
            to: Rate(to),
            steps: ten(),
            refine: four(),
            step: ten_secs(),
            repeat: one(),
            timeout: ten_secs(),
        }
    }

    /// The longest it can take: every step of every search, each ending
    /// at most its timeout after its last request.
    pub fn longest(&self) -> Duration {
        let steps = self.steps.saturating_add(self.refine);
        (self.step.0.saturating_add(self.timeout.0))
            .saturating_mul(steps)
            .saturating_mul(self.repeat)
    }

    /// Each bound it breaks, with the field it is about.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let (from, to) = (self.from.0, self.to.0);
        if from >= to {
            out.push(("to", format!("rates go up: from {from}/s to {to}/s")));
        }
        let max = crate::load::MAX_RATE;
        if to > max {
            out.push((
                "to",
                format!("{to}/s is above the engine's bound of {max}/s"),
            ));
        }
        if !(2..=50).contains(&self.steps) {
            out.push(("steps", "steps is 2 to 50".into()));
        }
        if self.refine > 10 {
            out.push(("refine", "refine is at most 10".into()));
        }
        if !(1..=10).contains(&self.repeat) {
            out.push(("repeat", "repeat is 1 to 10".into()));
        }
        if self.step.0 < Duration::from_secs(1) {
            out.push(("step", "a step lasts 1s at least".into()));
        }
        if self.timeout.0.is_zero() {
            out.push(("timeout", "a timeout is above zero".into()));
        }
        if self.longest() > MAX_BENCH {
            out.push((
                "steps",
                format!(
                    "the bench could take {:.0}s, past its bound of {}s: fewer steps, shorter ones, or fewer repeats",
                    self.longest().as_secs_f64(),
                    MAX_BENCH.as_secs()
                ),
            ));
        }
        out
    }

    /// The first bound it breaks, as an error.
    pub fn check(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            Some((_, why)) => Err(Error::Invalid(why)),
            None => Ok(()),
        }
    }

    /// The `k`-th rate of the stepped part of the search (from 0).
    pub fn rate(&self, k: u32) -> f64 {
        let (from, to) = (self.from.0, self.to.0);
        from + (to - from) * f64::from(k) / f64::from(self.steps.max(2) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_slo_is_parsed_from_flags_and_yaml() {
        let slo = Slo::parse(&strings(&["p99=250ms", "errors=0.5%"])).unwrap();
        assert_eq!(slo.p99_ms, Some(250.0));
        assert_eq!(slo.error_ratio, Some(0.005));
        for bad in [
            &["p98=1s"][..],
            &["p99"],
            &["errors=2"],
            &["p99=1s", "p99=2s"],
            &[],
        ] {
            assert!(Slo::parse(&strings(bad)).is_err(), "{bad:?}");
        }
        let y: Slo = serde_yaml_ng::from_str("{p99: 250ms, errors: 1%}").unwrap();
        assert_eq!((y.p99_ms, y.error_ratio), (Some(250.0), Some(0.01)));
        assert_eq!(y.describe(), "p99 ≤ 250 ms, errors ≤ 1.00%");
        let e = serde_yaml_ng::from_str::<Slo>("{p95: 1s}").unwrap_err();
        assert!(e.to_string().contains("p50, p90, p99 or errors"), "{e}");
        assert!(serde_yaml_ng::from_str::<Slo>("{}").is_err());
    }

    #[test]
    fn a_search_is_bounded() {
        let slo = Slo::parse(&strings(&["p99=1s"])).unwrap();
        let mut s = Search::new(slo, 10.0, 100.0);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!((s.rate(0), s.rate(9)), (10.0, 100.0));
        s.steps = 50;
        s.refine = 10;
        s.step = Dur(Duration::from_secs(60));
        s.repeat = 3;
        let why: Vec<_> = s.problems().into_iter().map(|(_, w)| w).collect();
        assert!(why.iter().any(|w| w.contains("past its bound")), "{why:?}");
        let back = Search {
            from: Rate(100.0),
            to: Rate(10.0),
            ..Search::new(Slo::default(), 1.0, 2.0)
        };
        assert!(back
            .check()
            .unwrap_err()
            .to_string()
            .contains("rates go up"));
    }
}
