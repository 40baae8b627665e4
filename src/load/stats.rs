//! What a load saw: counters readable while it runs (a drill waits for the
//! first answers), and two latency histograms, one from each request's due
//! time (corrected for coordinated omission, as wrk2 does) and one from the
//! moment it was really sent.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No connection (refused, reset at once: the service is down).
    Connect,
    /// No answer within the load's timeout.
    Timeout,
    /// The connection broke during the exchange.
    Io,
}

impl Failure {
    /// The name reports and JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
        }
    }
}

/// Counters and histograms shared by a load's scheduler and its requests.
#[derive(Debug)]
pub(crate) struct Shared {
    pub started: Instant,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub late: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub in_flight_max: AtomicU64,
    pub connections: AtomicU64,
    /// Nanoseconds after `started` of the first answer (0: none yet).
    first_answer_ns: AtomicU64,
    /// Nanoseconds after `started` when the scheduler stopped issuing.
    issued_until_ns: AtomicU64,
    /// When the engine sent requests more than [`super::STALL`] late with a
    /// slot free, and the worst lag around then (one entry a second at most).
    stalls: Mutex<Vec<(Instant, Duration)>>,
    detail: Mutex<Detail>,
}

#[derive(Debug)]
struct Detail {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    failures: BTreeMap<Failure, u64>,
    /// The errors the system gave, by failure and message.
    causes: BTreeMap<String, u64>,
    /// Per second of the load (at most [`TICKS`]): what was sent, answered
    /// or failed then, and the corrected latency of requests due then.
    ticks: Vec<TickAcc>,
}

/// The most seconds a load's timeline keeps (two hours).
const TICKS: usize = 7200;

#[derive(Debug, Default)]
struct TickAcc {
    sent: u64,
    answered: u64,
    failed: u64,
    latency: Option<Histogram<u64>>,
}

impl Detail {
    /// The second `at` falls in, if the timeline still has room.
    fn tick(&mut self, at: Duration) -> Option<&mut TickAcc> {
        let i = at.as_secs() as usize;
        if i >= TICKS {
            return None;
        }
        if self.ticks.len() <= i {
            self.ticks.resize_with(i + 1, TickAcc::default);
        }
        self.ticks.get_mut(i)
    }
}

/// One second of a load: what it sent, what came back, how slow.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    /// Seconds from the load's start.
    pub second: u32,
    /// Requests the schedule made due in that second (what was asked).
    #[serde(default)]
    pub asked: f64,
    /// Requests sent in that second.
    pub sent: u64,
    /// Answers that came back in it (any status).
    pub answered: u64,
    /// Requests that got no answer in it.
    pub failed: u64,
    /// The median corrected latency of requests due in it, ms.
    pub p50_ms: f64,
    /// Their 99th percentile, ms.
    pub p99_ms: f64,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 3 significant figures, growing as needed.
    Histogram::new(3).expect("a valid histogram")
}

impl Shared {
    pub fn new(started: Instant) -> Shared {
        Shared {
            started,
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            in_flight_max: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            first_answer_ns: AtomicU64::new(0),
            issued_until_ns: AtomicU64::new(0),
            stalls: Mutex::new(Vec::new()),
            detail: Mutex::new(Detail {
                corrected: histogram(),
                uncorrected: histogram(),
                status: BTreeMap::new(),
                failures: BTreeMap::new(),
                causes: BTreeMap::new(),
                ticks: Vec::new(),
            }),
        }
    }

    pub fn begin(&self) {
        let at = self.started.elapsed();
        if let Some(t) = self.detail.lock().expect("load stats lock").tick(at) {
            t.sent += 1;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight_max.fetch_max(now, Ordering::Relaxed);
    }

    /// An HTTP answer: `from_due` counts from the due time, `from_send`
    /// from the real send.
    pub fn answer(&self, status: u16, from_due: Duration, from_send: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.answered.fetch_add(1, Ordering::Relaxed) == 0 {
            let ns = (self.started.elapsed().as_nanos() as u64).max(1);
            let _ =
                self.first_answer_ns
                    .compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        }
        let now = self.started.elapsed();
        let mut d = self.detail.lock().expect("load stats lock");
        if let Some(t) = d.tick(now) {
            t.answered += 1;
        }
        // Latency goes to the second the request was due in.
        if let Some(t) = d.tick(now.saturating_sub(from_due)) {
            let h = t
                .latency
                .get_or_insert_with(|| Histogram::new(2).expect("a valid histogram"));
            let _ = h.record(from_due.as_micros().max(1) as u64);
        }
        // Auto-resizing: a recording fails only past u64's range.
        let _ = d.corrected.record(from_due.as_micros().max(1) as u64);
        let _ = d.uncorrected.record(from_send.as_micros().max(1) as u64);
        *d.status.entry(status).or_default() += 1;
    }

    pub fn fail(&self, why: Failure) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let at = self.started.elapsed();
        let mut d = self.detail.lock().expect("load stats lock");
        *d.failures.entry(why).or_default() += 1;
        if let Some(t) = d.tick(at) {
            t.failed += 1;
        }
    }

    /// The error behind a failure (counted by [`Shared::fail`]), so a
    /// report says why: `connect: Connection refused (os error 111)`.
    pub fn cause(&self, why: Failure, e: &std::io::Error) {
        let key = format!("{}: {e}", why.name());
        let mut d = self.detail.lock().expect("load stats lock");
        *d.causes.entry(key).or_default() += 1;
    }

    /// A request sent `lag` past its due time with a slot free.
    pub fn lagged(&self, at: Instant, lag: Duration) {
        if lag <= super::STALL {
            return;
        }
        let mut s = self.stalls.lock().expect("stalls lock");
        let full = s.len() >= 4096;
        match s.last_mut() {
            Some((t, worst)) if at.duration_since(*t) < Duration::from_secs(1) => {
                *worst = (*worst).max(lag)
            }
            _ if !full => s.push((at, lag)),
            _ => {}
        }
    }

    /// The worst stall since `since`, if any.
    pub fn stalled_since(&self, since: Instant) -> Option<Duration> {
        self.stalls
            .lock()
            .expect("stalls lock")
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, l)| *l)
            .max()
    }

    pub fn stopped_issuing(&self) {
        let ns = self.started.elapsed().as_nanos() as u64;
        self.issued_until_ns.store(ns.max(1), Ordering::Relaxed);
    }

    /// When the first answer came back, if one has.
    pub fn first_answer(&self) -> Option<Instant> {
        match self.first_answer_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.started + Duration::from_nanos(ns)),
        }
    }

    /// The latency of each answer from its real send, in microseconds.
    pub fn uncorrected(&self) -> Histogram<u64> {
        self.detail
            .lock()
            .expect("load stats lock")
            .uncorrected
            .clone()
    }

    /// The figures as they stand; `requested` is the schedule's mean rate.
    pub fn summary(&self, requested: f64) -> LoadSummary {
        let d = self.detail.lock().expect("load stats lock");
        let issued = match self.issued_until_ns.load(Ordering::Relaxed) {
            0 => self.started.elapsed(),
            ns => Duration::from_nanos(ns),
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let answered = self.answered.load(Ordering::Relaxed);
        let failed: u64 = d.failures.values().sum();
        LoadSummary {
            requests: sent,
            answered,
            unfinished: sent.saturating_sub(answered + failed),
            requested_rate: requested,
            achieved_rate: if issued.is_zero() {
                0.0
            } else {
                sent as f64 / issued.as_secs_f64()
            },
            seconds: issued.as_secs_f64(),
            late: self.late.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            in_flight_max: self.in_flight_max.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            status_codes: d.status.clone(),
            failures: d.failures.clone(),
            causes: d.causes.clone(),
            latency_ms: LatencyMs {
                corrected: Percentiles::of(&d.corrected),
                uncorrected: Percentiles::of(&d.uncorrected),
            },
            timeline: d
                .ticks
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let q = |p| {
                        t.latency
                            .as_ref()
                            .map_or(0.0, |h| h.value_at_quantile(p) as f64 / 1000.0)
                    };
                    Tick {
                        second: i as u32,
                        asked: 0.0,
                        sent: t.sent,
                        answered: t.answered,
                        failed: t.failed,
                        p50_ms: q(0.5),
                        p99_ms: q(0.99),
                    }
                })
                .collect(),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Both views of latency: from the due time (what a user arriving on
/// schedule felt) and from the send (what the service took).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyMs {
    /// From each request's due time (coordinated omission corrected).
    pub corrected: Percentiles,
    /// From each request's send.
    pub uncorrected: Percentiles,
}

/// What a load did, for reports and `firedrill load --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadSummary {
    /// Requests sent.
    pub requests: u64,
    /// Requests that got an HTTP answer (any status).
    pub answered: u64,
    /// Still in flight when the load was stopped.
    pub unfinished: u64,
    /// The schedule's mean rate, per second.
    pub requested_rate: f64,
    /// Requests sent per second while the load issued them.
    pub achieved_rate: f64,
    /// How long the load issued requests.
    pub seconds: f64,
    /// Sent late: no in-flight slot was free when they came due.
    pub late: u64,
    /// Never sent: more than the lateness bound overdue (k6's dropped iterations).
    pub dropped: u64,
    /// The most requests in flight at once.
    pub in_flight_max: u64,
    /// Connections opened.
    pub connections: u64,
    /// Answers by HTTP status.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests that got no answer, by cause.
    pub failures: BTreeMap<Failure, u64>,
    /// The errors behind failures, by failure and the system's message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, u64>,
    /// Latency percentiles, in milliseconds.
    pub latency_ms: LatencyMs,
    /// Second by second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Tick>,
}

impl LoadSummary {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let codes: Vec<String> = self
            .status_codes
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .chain(self.failures.iter().map(|(f, n)| format!("{f:?}×{n}")))
            .collect();
        let causes: String = self
            .causes
            .iter()
            .map(|(c, n)| format!("; {c} ×{n}"))
            .collect();
        let c = &self.latency_ms.corrected;
        let u = &self.latency_ms.uncorrected;
        format!(
            "{} requests at {:.1}/s of {:.1}/s asked ({} late, {} dropped, {} unfinished) [{}]; latency p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms (uncorrected p99 {:.1} ms){}",
            self.requests,
            self.achieved_rate,
            self.requested_rate,
            self.late,
            self.dropped,
            self.unfinished,
            codes.join(" "),
            c.p50,
            c.p90,
            c.p99,
            c.max,
            u.p99,
            causes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each request lands in the second it was sent, answered or failed
    /// in; its latency in the second it was due.
    #[test]
    fn the_timeline_counts_each_second() {
        let s = Shared::new(Instant::now() - Duration::from_millis(2500));
        s.begin();
        s.begin();
        s.answer(200, Duration::from_millis(1200), Duration::from_millis(5));
        s.fail(Failure::Connect);
        let t = s.summary(2.0).timeline;
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!((t[2].sent, t[2].answered, t[2].failed), (2, 1, 1));
        // Due 1.2 s before it came back (at 2.5 s): the second 1.
        assert!(t[1].p99_ms >= 1100.0 && t[2].p99_ms == 0.0, "{t:?}");
    }
}
