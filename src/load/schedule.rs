//! When each request of a load is due: an arrival-rate shape (constant,
//! ramp, steps, spike) turned into exact arrival times. Pure arithmetic, no
//! clock: the engine adds these offsets to its start instant.
//!
//! The shape is a piecewise-linear rate r(t); the number of arrivals due by
//! t is N(t) = ∫₀ᵗ r, and arrival i (from 0) is due at the t where N(t) = i.
//! Inverting N per segment gives every arrival time exactly, so a load holds
//! its rate whatever the timer's granularity: a late wake-up sends every
//! arrival that came due, each stamped with its own due time.

use serde::Serialize;
use std::time::Duration;

/// How the arrival rate moves over a load's life (requests per second).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// `rate` per second throughout.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// From `from` to `to` linearly over `over`, then `to`.
    Ramp {
        /// The starting rate, per second.
        from: f64,
        /// The final rate, per second.
        to: f64,
        /// How long the ramp takes, from the load's start.
        over: Duration,
    },
    /// `base`, then each (rate, from this offset on) in turn.
    Steps {
        /// The rate before the first step, per second.
        base: f64,
        /// Each step's rate, per second, and the offset it starts at.
        steps: Vec<(f64, Duration)>,
    },
    /// `base`, with `peak` from `at` for `for_`.
    Spike {
        /// The rate outside the spike, per second.
        base: f64,
        /// The rate during the spike, per second.
        peak: f64,
        /// When the spike starts, from the load's start.
        at: Duration,
        /// How long the spike lasts.
        for_: Duration,
    },
}

impl Shape {
    /// Every rate the shape reaches (for the bounds check).
    pub fn rates(&self) -> Vec<f64> {
        match self {
            Shape::Constant { rate } => vec![*rate],
            Shape::Ramp { from, to, .. } => vec![*from, *to],
            Shape::Steps { base, steps } => std::iter::once(*base)
                .chain(steps.iter().map(|s| s.0))
                .collect(),
            Shape::Spike { base, peak, .. } => vec![*base, *peak],
        }
    }

    /// Its rate as (start, end, rate at start, rate at end) pieces, in
    /// seconds from the load's start, clipped to `d`: what the schedule lays
    /// out, and what the rate is at any time.
    fn pieces(&self, d: f64) -> Vec<(f64, f64, f64, f64)> {
        let mut pieces: Vec<(f64, f64, f64, f64)> = Vec::new();
        match self {
            Shape::Constant { rate } => pieces.push((0.0, d, *rate, *rate)),
            Shape::Ramp { from, to, over } => {
                let o = over.as_secs_f64().min(d);
                let at_o = if over.is_zero() {
                    *to
                } else {
                    from + (to - from) * o / over.as_secs_f64()
                };
                pieces.push((0.0, o, *from, at_o));
                pieces.push((o, d, *to, *to));
            }
            Shape::Steps { base, steps } => {
                let mut at = 0.0;
                let mut rate = *base;
                let mut sorted = steps.clone();
                sorted.sort_by_key(|s| s.1);
                for (r, from) in sorted {
                    let from = from.as_secs_f64().min(d);
                    pieces.push((at, from, rate, rate));
                    at = from;
                    rate = r;
                }
                pieces.push((at, d, rate, rate));
            }
            Shape::Spike {
                base,
                peak,
                at,
                for_,
            } => {
                let a = at.as_secs_f64().min(d);
                let b = (at.as_secs_f64() + for_.as_secs_f64()).min(d);
                pieces.push((0.0, a, *base, *base));
                pieces.push((a, b, *peak, *peak));
                pieces.push((b, d, *base, *base));
            }
        }
        pieces
    }

    /// The rate `t` after the load's start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        // Laid out a second past `t`, the piece holding `t` is its rate.
        self.pieces(t + 1.0)
            .into_iter()
            .find(|(s, e, _, _)| *s <= t && t < *e)
            .map_or(0.0, |(s, e, r0, r1)| r0 + (r1 - r0) * (t - s) / (e - s))
    }

    /// The greatest rate the shape reaches.
    pub fn peak(&self) -> f64 {
        self.rates().into_iter().fold(0.0, f64::max)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = crate::util::secs;
        match self {
            Shape::Constant { rate } => write!(f, "{rate}/s"),
            Shape::Ramp { from, to, over } => write!(f, "{from}/s → {to}/s over {}", d(*over)),
            Shape::Steps { base, steps } => {
                write!(f, "{base}/s")?;
                for (r, at) in steps {
                    write!(f, ", {r}/s from {}", d(*at))?;
                }
                Ok(())
            }
            Shape::Spike {
                base,
                peak,
                at,
                for_,
            } => write!(f, "{base}/s, {peak}/s from {} for {}", d(*at), d(*for_)),
        }
    }
}

/// One stretch of linear rate: r(t) = r0 + (r1 − r0)·(t − start)/len.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    len: f64,
    r0: f64,
    r1: f64,
    /// Arrivals due before the segment starts.
    n0: f64,
}

impl Segment {
    fn slope(&self) -> f64 {
        if self.len > 0.0 {
            (self.r1 - self.r0) / self.len
        } else {
            0.0
        }
    }
    /// Arrivals due in the first `tau` seconds of the segment.
    fn count(&self, tau: f64) -> f64 {
        self.r0 * tau + 0.5 * self.slope() * tau * tau
    }
    /// The τ at which `k` arrivals of this segment are due (k ≥ 0).
    fn time_of(&self, k: f64) -> f64 {
        if k <= 0.0 {
            return 0.0;
        }
        let a = 0.5 * self.slope();
        if a.abs() < 1e-12 {
            return if self.r0 > 0.0 {
                k / self.r0
            } else {
                f64::INFINITY
            };
        }
        // a·τ² + r0·τ − k = 0, the root on the segment's side of zero;
        // written as 2k / (r0 + √…) to stay exact when a is tiny.
        let disc = self.r0 * self.r0 + 4.0 * a * k;
        if disc < 0.0 {
            return f64::INFINITY;
        }
        let den = self.r0 + disc.sqrt();
        if den <= 0.0 {
            f64::INFINITY
        } else {
            2.0 * k / den
        }
    }
}

/// Tolerance on arrival counts: offsets are whole nanoseconds, so a count
/// at an arrival's own time can be off by rate × 1 ns.
const EPS: f64 = 1e-4;

/// A shape laid out over a load's duration: arrival i → its due offset.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    duration: f64,
    total: f64,
}

impl Schedule {
    /// Lays `shape` out over `duration`.
    pub fn new(shape: &Shape, duration: Duration) -> Schedule {
        let d = duration.as_secs_f64();
        let pieces = shape.pieces(d);
        let mut segments = Vec::new();
        let mut n = 0.0;
        for (s, e, r0, r1) in pieces {
            if e <= s {
                continue;
            }
            let seg = Segment {
                start: s,
                len: e - s,
                r0,
                r1,
                n0: n,
            };
            n += seg.count(seg.len);
            segments.push(seg);
        }
        Schedule {
            segments,
            duration: d,
            total: n,
        }
    }

    /// How many arrivals the whole schedule holds.
    pub fn total(&self) -> u64 {
        // As `at` counts them: arrival i exists while i < total − EPS.
        (self.total - EPS).ceil().max(0.0) as u64
    }

    /// The mean rate asked for over the schedule.
    pub fn mean_rate(&self) -> f64 {
        if self.duration > 0.0 {
            self.total / self.duration
        } else {
            0.0
        }
    }

    /// Arrivals due in `[0, t)`.
    pub fn due_by(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64().min(self.duration);
        match self.segments.iter().rev().find(|s| s.start <= t) {
            Some(s) => s.n0 + s.count(t - s.start),
            None => 0.0,
        }
    }

    /// When arrival `i` (from 0) is due, or None past the schedule's end.
    pub fn at(&self, i: u64) -> Option<Duration> {
        let k = i as f64;
        if k >= self.total - 1e-9 {
            return None;
        }
        let seg = self.segments.iter().rev().find(|s| s.n0 <= k + 1e-9)?;
        let t = seg.start + seg.time_of(k - seg.n0).min(seg.len);
        (t < self.duration).then(|| Duration::from_secs_f64(t))
    }

    /// The first arrival due at or after `t` (to within a microsecond's
    /// worth of arrivals: times are kept in nanoseconds).
    pub fn first_at_or_after(&self, t: Duration) -> u64 {
        (self.due_by(t) - EPS).ceil().max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_rate_now_follows_the_shape() {
        let ramp = Shape::Ramp {
            from: 10.0,
            to: 30.0,
            over: secs(10.0),
        };
        assert_eq!(
            (ramp.rate_at(secs(5.0)), ramp.rate_at(secs(60.0))),
            (20.0, 30.0)
        );
        let steps = Shape::Steps {
            base: 5.0,
            steps: vec![(10.0, secs(2.0)), (20.0, secs(4.0))],
        };
        assert_eq!(steps.rate_at(secs(1.0)), 5.0);
        assert_eq!(steps.rate_at(secs(3.0)), 10.0);
        assert_eq!(steps.rate_at(secs(9.0)), 20.0);
        let spike = Shape::Spike {
            base: 1.0,
            peak: 50.0,
            at: secs(2.0),
            for_: secs(1.0),
        };
        assert_eq!(
            (spike.rate_at(secs(2.5)), spike.rate_at(secs(3.5))),
            (50.0, 1.0)
        );
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::new(&Shape::Constant { rate: 100.0 }, secs(10.0));
        assert_eq!(s.total(), 1000);
        assert_eq!(s.at(0), Some(Duration::ZERO));
        assert_eq!(s.at(1), Some(Duration::from_millis(10)));
        assert_eq!(s.at(999), Some(Duration::from_millis(9990)));
        assert_eq!(s.at(1000), None);
        assert_eq!(s.first_at_or_after(secs(0.015)), 2);
        assert_eq!(s.first_at_or_after(secs(0.02)), 2);
        assert!((s.mean_rate() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_fractional_rate_holds() {
        let s = Schedule::new(&Shape::Constant { rate: 0.5 }, secs(10.0));
        assert_eq!(s.total(), 5);
        assert_eq!(s.at(4), Some(secs(8.0)));
    }

    #[test]
    fn ramp_counts_the_area_under_the_rate() {
        // 0 → 100/s over 10 s: 500 arrivals in the ramp, then 100/s.
        let s = Schedule::new(
            &Shape::Ramp {
                from: 0.0,
                to: 100.0,
                over: secs(10.0),
            },
            secs(20.0),
        );
        assert_eq!(s.total(), 1500);
        // N(t) = 5 t² in the ramp: arrival 125 is due at 5 s.
        let t = s.at(125).unwrap().as_secs_f64();
        assert!((t - 5.0).abs() < 1e-9, "{t}");
        let t = s.at(600).unwrap().as_secs_f64();
        assert!((t - 11.0).abs() < 1e-9, "{t}");
        // Times never go backwards.
        let mut last = Duration::ZERO;
        for i in 0..s.total() {
            let t = s.at(i).unwrap();
            assert!(t >= last, "arrival {i}");
            last = t;
        }
    }

    #[test]
    fn steps_and_spikes() {
        let s = Schedule::new(
            &Shape::Steps {
                base: 10.0,
                steps: vec![(20.0, secs(1.0)), (40.0, secs(2.0))],
            },
            secs(3.0),
        );
        assert_eq!(s.total(), 70);
        assert_eq!(s.at(10), Some(secs(1.0)));
        assert_eq!(s.at(30), Some(secs(2.0)));
        let s = Schedule::new(
            &Shape::Spike {
                base: 10.0,
                peak: 1000.0,
                at: secs(1.0),
                for_: secs(0.5),
            },
            secs(3.0),
        );
        assert_eq!(s.total(), 10 + 500 + 15);
        assert_eq!(s.at(510).unwrap(), secs(1.5));
        assert_eq!(s.first_at_or_after(secs(1.25)), 260);
    }

    #[test]
    fn each_arrival_time_inverts_the_count() {
        let shapes = [
            Shape::Constant { rate: 5000.0 },
            Shape::Ramp {
                from: 300.0,
                to: 7.0,
                over: secs(4.0),
            },
            Shape::Spike {
                base: 2.0,
                peak: 900.0,
                at: secs(3.0),
                for_: secs(1.0),
            },
        ];
        for shape in shapes {
            let s = Schedule::new(&shape, secs(6.0));
            for i in (0..s.total()).step_by(7) {
                let t = s.at(i).unwrap();
                assert!((s.due_by(t) - i as f64).abs() < EPS, "{shape:?} {i}");
                assert_eq!(s.first_at_or_after(t), i, "{shape:?} {i}");
            }
        }
    }
}
