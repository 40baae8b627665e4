//! The input side of the pipeline: serde models of the stack file, scenarios,
//! fixture profiles and the Prometheus/Alertmanager configs they point to,
//! with validation that names file, line and column.

pub mod alertmanager;
pub mod attach;
pub mod bench;
pub mod dashboards;
pub mod fixture;
pub mod prometheus;
pub mod scenario;
pub mod source;
pub mod stack;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written the Prometheus way (`90s`, `1m30s`, `5m`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses a duration such as `30s`, `1m30s`, `5m` or `250ms`.
    pub fn parse(s: &str) -> crate::error::Result<Dur> {
        promql_parser::util::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| {
                crate::error::Error::Invalid(format!(
                    "malformed duration `{s}` ({e}); write it like 30s, 1m30s, 5m or 250ms"
                ))
            })
    }
    /// The duration in seconds.
    pub fn secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
    /// Multiplies by `factor`, rounded to the millisecond (Prometheus' resolution).
    pub fn scaled(self, factor: f64) -> Dur {
        let ms = (self.0.as_secs_f64() * 1000.0 * factor).round().max(1.0);
        Dur(Duration::from_millis(ms as u64))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        f.write_str(&promql_parser::util::display_duration(&self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "0" || s.trim() == "0s" {
            return Ok(Dur(Duration::ZERO));
        }
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A size such as `512MiB`, `2GiB`, `100MB` or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses a size such as `512MiB`, `2GiB`, `100MB` or a bare byte count.
    pub fn parse(s: &str) -> crate::error::Result<Bytes> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| {
            crate::error::Error::Invalid(format!(
                "malformed size `{s}`: write it like 512MiB or 2GiB"
            ))
        })?;
        const UNITS: &str = "B, KB, MB, GB, KiB, MiB, GiB";
        let mult: f64 = match unit.trim() {
            "" | "B" => 1.0,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(crate::error::Error::Invalid(format!(
                    "malformed size `{s}`: unit `{other}` is not one of {UNITS}"
                )))
            }
        };
        Ok(Bytes((n * mult) as u64))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        match v {
            serde_yaml_ng::Value::Number(n) => n
                .as_u64()
                .map(Bytes)
                .ok_or_else(|| serde::de::Error::custom("a size is a whole number of bytes")),
            serde_yaml_ng::Value::String(s) => Bytes::parse(&s).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("a size is written like 512MiB")),
        }
    }
}

impl std::fmt::Display for Bytes {
    /// In the largest binary unit that keeps it whole (`1GiB`, `64MiB`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= size && b % size == 0 {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// An arrival rate such as `20/s`, `600/m` or a bare number (per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        let s = match &v {
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::String(s) => s.clone(),
            _ => {
                return Err(serde::de::Error::custom(
                    "a rate is written like 20/s or 600/m",
                ))
            }
        };
        parse_rate(&s).map(Rate).map_err(serde::de::Error::custom)
    }
}

/// A rate such as `20/s`, `600/m` or `5` (per second), per second.
pub fn parse_rate(s: &str) -> crate::error::Result<f64> {
    let (num, per) = match s.split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (s.trim(), "s"),
    };
    let n: f64 = num.parse().map_err(|_| {
        crate::error::Error::Invalid(format!("malformed rate `{s}`: write it like 20/s or 600/m"))
    })?;
    let secs = match per {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(crate::error::Error::Invalid(format!(
                "malformed rate `{s}`: the unit is /s, /m or /h"
            )))
        }
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(crate::error::Error::Invalid(format!(
            "rate `{s}` must be positive"
        )));
    }
    Ok(n / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        assert_eq!(Dur::parse("1m30s").unwrap().0, Duration::from_secs(90));
        assert_eq!(Dur::parse("5m").unwrap().scaled(0.1).to_string(), "30s");
        assert_eq!(
            Dur::parse("15s").unwrap().scaled(0.1).to_string(),
            "1s500ms"
        );
        assert!(Dur::parse("5x")
            .unwrap_err()
            .to_string()
            .contains("malformed duration `5x`"));
    }

    #[test]
    fn sizes() {
        assert_eq!(Bytes::parse("512MiB").unwrap().0, 512 << 20);
        assert_eq!(Bytes::parse("1.5GB").unwrap().0, 1_500_000_000);
        assert_eq!(Bytes::parse("4096").unwrap().0, 4096);
        assert!(Bytes::parse("12 parsecs").is_err());
        assert_eq!(Bytes(1 << 30).to_string(), "1GiB");
        assert_eq!(Bytes(3 << 19).to_string(), "1536KiB");
        assert_eq!(Bytes(1000).to_string(), "1000B");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20/s").unwrap(), 20.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0/s").is_err());
    }
}
