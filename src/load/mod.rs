//! The open-model load engine (DESIGN §9). Requests are due at exact
//! arrival times ([`schedule`]) whatever the service answers: a slow answer
//! does not delay the next request, as it would with a closed-model tool
//! (goose, whose throttle is a ceiling and whose users wait for answers).
//! Every load of every drill runs in the drill's own process on one tokio
//! runtime, over kept-alive HTTP/1.1 connections (`client`); each latency
//! is recorded from its due time (corrected for coordinated omission, as
//! wrk2 does) and from its real send (`stats`).
//!
//! Bounded in every direction: rate, duration, requests in flight, request
//! timeout, and only addresses on this machine. A [`Load`] that is dropped
//! (a drill stopped by a signal, a panic) aborts its scheduler and every
//! request it has in flight: nothing outlives it.

mod client;
pub mod schedule;
mod stats;

pub use schedule::{Schedule, Shape};
pub use stats::{Failure, LatencyMs, LoadSummary, Percentiles, Tick};

use crate::error::{bail, err, Context, Error, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use serde::Serialize;
use stats::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Upper bounds, whatever a scenario or the command line asks.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The longest a load (or a request's timeout) may be, 1h.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most requests a load may have in flight.
pub const MAX_IN_FLIGHT: usize = 4096;
/// Longer than any latency a drill injects: a request given up on is never
/// observed by the service's histograms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// An arrival still waiting for an in-flight slot this long after it came
/// due is dropped, not sent (k6's dropped iterations).
pub const MAX_LATE: Duration = Duration::from_secs(1);
/// A request sent this late with a slot free means the engine's thread did
/// not run: the machine stalled (the timer's own jitter is a millisecond).
pub const STALL: Duration = Duration::from_millis(250);

/// One load: what to send, where, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `http://127.0.0.1:PORT` (a published port of the run, or a local server).
    pub url: String,
    /// Path and query.
    pub path: String,
    /// The HTTP method, default GET.
    pub method: String,
    /// JSON body, sent with `content-type: application/json`.
    pub body: Option<String>,
    /// How the arrival rate moves over the load's life.
    pub shape: Shape,
    /// How long the load sends requests.
    pub duration: Duration,
    /// Requests in flight at most (= connections at most); default: enough
    /// for the peak rate with every request taking the whole timeout.
    pub in_flight: Option<usize>,
    /// How long a request may take before it is given up on, default 60s.
    pub timeout: Duration,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
}

impl Plan {
    /// A constant rate until `duration`, GET, default bounds.
    pub fn constant(url: &str, path: &str, rate: f64, duration: Duration) -> Plan {
        Plan {
            url: url.to_string(),
            path: path.to_string(),
            method: "GET".into(),
            body: None,
            shape: Shape::Constant { rate },
            duration,
            in_flight: None,
            timeout: DEFAULT_TIMEOUT,
            max_requests: None,
        }
    }

    /// The in-flight bound this plan runs with.
    pub fn in_flight_bound(&self) -> usize {
        self.in_flight.unwrap_or_else(|| {
            let need = self.shape.peak() * (self.timeout.as_secs_f64() + 1.0);
            (need.ceil() as usize).clamp(16, MAX_IN_FLIGHT)
        })
    }

    /// Checks the bounds and the target; the address to connect to.
    async fn check(&self) -> Result<(SocketAddr, String)> {
        for r in self.shape.rates() {
            if !(r.is_finite() && (0.0..=MAX_RATE).contains(&r)) {
                bail!(Load, "load rate {r}/s is outside [0, {MAX_RATE}]/s");
            }
        }
        if self.shape.peak() <= 0.0 {
            bail!(Load, "a load needs a rate above 0/s");
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            bail!(
                Load,
                "load duration {:?} is outside (0, {MAX_DURATION:?}]",
                self.duration
            );
        }
        if self.in_flight.is_some_and(|n| n == 0 || n > MAX_IN_FLIGHT) {
            bail!(Load, "in-flight bound is between 1 and {MAX_IN_FLIGHT}");
        }
        if self.timeout.is_zero() || self.timeout > MAX_DURATION {
            bail!(Load, "request timeout {:?} is out of bounds", self.timeout);
        }
        let method = self.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            bail!(Load, "load cannot send method {}", self.method);
        }
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            bail!(Load, "load path `{}` is not a path", self.path);
        }
        loopback(&self.url).await
    }
}

/// The address of a plain-http URL of this machine, and its `host:port`;
/// an error for any other (traffic goes to this machine only: the run's
/// published ports).
pub async fn loopback(u: &str) -> Result<(SocketAddr, String)> {
    let url = reqwest::Url::parse(u).context(Error::Load, format!("URL {u}"))?;
    if url.scheme() != "http" {
        bail!(Load, "load speaks plain http, not {u}");
    }
    let host = url
        .host_str()
        .ok_or_else(|| err!(Load, "URL {u} has no host"))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let host_bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host_bare, port))
        .await
        .context(Error::Load, format!("resolving {host}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            err!(
                Load,
                "load goes to this machine only (127.0.0.1, ::1), not {u}"
            )
        })?;
    Ok((addr, format!("{host}:{port}")))
}

/// Every load running in this process, on a thread of its own with a
/// single-threaded runtime: a request's scheduler, its exchange and its
/// connection's driver then wake each other without crossing threads (no
/// futex, no work stealing), which is most of what a request costs at low
/// rates. Dropping the engine stops every load and request at once.
pub struct Engine {
    runtime: tokio::runtime::Handle,
    /// Dropped (with the engine), the runtime's thread ends, and its tasks
    /// with it.
    _shutdown: tokio::sync::oneshot::Sender<()>,
    running: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// Starts the load engine's thread and runtime.
    pub fn new() -> Engine {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (shutdown, down) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("firedrill-load".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the load engine");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async {
                    let _ = down.await;
                });
                // Dropping the runtime here cancels every task still on it.
            })
            .expect("a thread for the load engine");
        Engine {
            runtime: handle_rx.recv().expect("the load engine's runtime starts"),
            _shutdown: shutdown,
            running: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts a load at once; it runs until its schedule ends or it is stopped.
    pub async fn start(&self, plan: Plan) -> Result<Load> {
        let (addr, authority) = plan.check().await?;
        let schedule = Schedule::new(&plan.shape, plan.duration);
        let requested = schedule.mean_rate();
        let shared = Arc::new(Shared::new(Instant::now()));
        let pool = Arc::new(client::Pool::new(
            addr,
            &authority,
            &plan.method.to_ascii_uppercase(),
            &plan.path,
            plan.body.as_deref().unwrap_or_default().as_bytes(),
            shared.clone(),
        ));
        let limits = Limits {
            in_flight: plan.in_flight_bound(),
            timeout: plan.timeout,
            max_requests: plan.max_requests.unwrap_or(u64::MAX),
        };
        let max_requests = limits.max_requests;
        let (stop, stopped) = watch::channel(false);
        let task = self
            .runtime
            .spawn(drive(schedule.clone(), pool, limits, stopped));
        let mut running = self.running.lock().expect("engine lock");
        running.retain(|h| !h.is_finished());
        running.push(task.abort_handle());
        Ok(Load {
            plan,
            shared,
            schedule,
            max_requests,
            requested,
            stop,
            task: Some(task),
        })
    }

    /// Aborts every load still running (and every request in flight).
    pub fn shutdown(&self) {
        for h in self.running.lock().expect("engine lock").drain(..) {
            h.abort();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A running load. Dropped, it stops at once.
pub struct Load {
    /// What the load sends, where, and when.
    pub plan: Plan,
    shared: Arc<Shared>,
    schedule: Schedule,
    max_requests: u64,
    requested: f64,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// When the first HTTP answer came back, if one has.
    pub fn first_answer(&self) -> Option<Instant> {
        self.shared.first_answer()
    }

    /// When the load started.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// The longest the engine sent a request past its due time with an
    /// in-flight slot free (its own thread did not run: the machine
    /// stalled), since `since`, if it was more than [`STALL`].
    pub fn stalled_since(&self, since: Instant) -> Option<Duration> {
        self.shared.stalled_since(since)
    }

    /// The figures so far, while it runs.
    pub fn snapshot(&self) -> LoadSummary {
        self.summary()
    }

    /// The figures, each second with what the schedule asked in it.
    fn summary(&self) -> LoadSummary {
        let mut s = self.shared.summary(self.requested);
        let due = |k: u32| {
            self.schedule
                .due_by(Duration::from_secs(u64::from(k)))
                .min(self.max_requests as f64)
        };
        for t in &mut s.timeline {
            t.asked = due(t.second + 1) - due(t.second);
        }
        s
    }

    /// Stops issuing now; requests still in flight are abandoned (counted
    /// as unfinished).
    pub async fn stop(mut self) -> LoadSummary {
        let _ = self.stop.send(true);
        self.join().await;
        self.summary()
    }

    /// As [`Load::finish`], with the latency of each answer from its real
    /// send (microseconds): what the service's own timer saw, and more.
    pub async fn finish_with_latencies(mut self) -> (LoadSummary, hdrhistogram::Histogram<u64>) {
        self.join().await;
        (self.summary(), self.shared.uncorrected())
    }

    /// Waits for the scheduler's task to end.
    async fn join(&mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Waits for the schedule to end and every answer to come back (each
    /// bounded by the request timeout).
    pub async fn finish(mut self) -> LoadSummary {
        self.join().await;
        self.summary()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

struct Limits {
    in_flight: usize,
    timeout: Duration,
    max_requests: u64,
}

/// The scheduler: sleeps until each arrival is due, sends it when fewer
/// than the bound are in flight, and drops arrivals that would go out more
/// than [`MAX_LATE`] late. The requests in flight are futures of this one
/// task (no task per request): a completion and the next arrival wake the
/// same task, with nothing to hand over between threads or tasks.
///
/// Two timers alternate, the next arrival's always armed while the current
/// one fires: tokio's time driver wakes its own thread (an eventfd write and
/// one more `epoll_wait`) for any timer registered while none earlier is
/// pending, which would cost two extra system calls and a wake-up on every
/// request (the next arrival's timer, the request's timeout).
// Longer than 80 lines on purpose: the scheduler's state (two timers, the
// set in flight, the arrival index) lives across every branch; split up it
// would be threaded through each piece by `&mut`. It is the hot loop that
// bench/load.sh measures.
async fn drive(
    schedule: Schedule,
    pool: Arc<client::Pool>,
    lim: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let shared = pool.shared.clone();
    let t0 = shared.started;
    let due_at = |i: u64| -> Option<Instant> {
        (i < lim.max_requests)
            .then(|| schedule.at(i))
            .flatten()
            .map(|o| t0 + o)
    };
    // Past the schedule, a timer that never fires in the load's life.
    let never = t0 + MAX_DURATION * 2;
    let mut requests = FuturesUnordered::new();
    let timer = |i: u64| Box::pin(tokio::time::sleep_until(due_at(i).unwrap_or(never).into()));
    let mut timers = [timer(0), timer(1)];
    // The arrival each timer waits for. Timers are set only when the
    // scheduler sleeps: at saturation (every arrival overdue) it never does.
    let mut armed: [u64; 2] = [0, 1];
    arm(&mut timers[1]).await;
    let mut i: u64 = 0;
    let mut stopped = false;
    'issue: while let Some(due) = due_at(i) {
        if due > Instant::now() {
            for k in [i, i + 1] {
                let slot = (k % 2) as usize;
                if armed[slot] != k {
                    timers[slot]
                        .as_mut()
                        .reset(due_at(k).unwrap_or(never).into());
                    arm(&mut timers[slot]).await;
                    armed[slot] = k;
                }
            }
            // Until it is due, answers come back (and free their slots).
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => { stopped = true; break 'issue }
                    Some(()) = requests.next(), if !requests.is_empty() => {}
                    _ = &mut timers[(i % 2) as usize] => break,
                }
            }
            // This timer has fired; it waits for the arrival after next,
            // while the next one's is still armed.
            let slot = (i % 2) as usize;
            timers[slot]
                .as_mut()
                .reset(due_at(i + 2).unwrap_or(never).into());
            arm(&mut timers[slot]).await;
            armed[slot] = i + 2;
        }
        let waited = requests.len() >= lim.in_flight;
        if waited {
            // No slot is free until an answer comes back.
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => { stopped = true; break 'issue }
                    Some(()) = requests.next() => {}
                }
                if requests.len() < lim.in_flight {
                    break;
                }
            }
            let now = Instant::now();
            if now > due + MAX_LATE {
                let j = schedule
                    .first_at_or_after(now - t0 - MAX_LATE)
                    .clamp(i + 1, lim.max_requests);
                shared.dropped.fetch_add(j - i, Ordering::Relaxed);
                i = j;
                // The first arrival kept may not be due yet: go round again.
                continue 'issue;
            }
        }
        let now = Instant::now();
        if waited && now > due {
            shared.late.fetch_add(1, Ordering::Relaxed);
        } else if !waited {
            // A slot was free: any lateness is the engine's own (its
            // thread did not run), which is evidence of a stalled machine.
            shared.lagged(now, now.saturating_duration_since(due));
        }
        shared.begin();
        requests.push(one(pool.clone(), due, lim.timeout));
        // Send it now (a future in the set runs when the set is polled).
        while let Some(Some(())) = requests.next().now_or_never() {}
        i += 1;
    }
    shared.stopped_issuing();
    if !stopped {
        // The schedule ran out: what is in flight ends within its timeout.
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                r = requests.next() => if r.is_none() { break },
            }
        }
    }
    // Whatever is still in flight is dropped with the set: unfinished.
}

/// Registers a timer with the driver now (a timer is registered on its
/// first poll), without waiting for it.
async fn arm(t: &mut std::pin::Pin<Box<tokio::time::Sleep>>) {
    std::future::poll_fn(|cx| {
        let _ = t.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await
}

async fn one(pool: Arc<client::Pool>, due: Instant, timeout: Duration) {
    let sent = Instant::now();
    let r = tokio::time::timeout(timeout, pool.exchange()).await;
    let end = Instant::now();
    match r {
        Ok(Ok(status)) => pool.shared.answer(status, end - due, end - sent),
        Ok(Err(f)) => pool.shared.fail(f),
        Err(_) => pool.shared.fail(Failure::Timeout),
    }
}

/// Splits `http://host:port/path?q` into the base URL and the path.
pub fn split_url(url: &str) -> Result<(String, String)> {
    let u = reqwest::Url::parse(url).context(Error::Load, format!("URL {url}"))?;
    let host = u
        .host_str()
        .ok_or_else(|| err!(Load, "URL {url} has no host"))?;
    let base = match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    };
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    Ok((base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let h = hits.clone();
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            )
            .route(
                "/slower",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(3200)).await;
                    "slower"
                }),
            )
            .fallback(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (url, hits)
    }

    /// Whether the server's count stops moving (still for 300 ms) within 5 s.
    /// Requests already on the wire when a load is stopped are still served,
    /// later on a busy machine: the count must settle, not freeze at once. A
    /// load that went on at 100/s would move it every 10 ms and never settle.
    async fn settles(hits: &std::sync::atomic::AtomicU64) -> bool {
        let give_up = Instant::now() + Duration::from_secs(5);
        let (mut last, mut since) = (hits.load(Ordering::Relaxed), Instant::now());
        while Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = hits.load(Ordering::Relaxed);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= Duration::from_millis(300) {
                return true;
            }
        }
        false
    }

    #[tokio::test]
    async fn holds_its_rate_and_counts_answers() {
        let (url, hits) = server().await;
        let engine = Engine::new();
        let load = engine
            .start(Plan::constant(&url, "/", 200.0, Duration::from_secs(1)))
            .await
            .unwrap();
        let s = load.finish().await;
        assert_eq!(s.requests, 200, "{s:?}");
        assert_eq!(s.answered, 200);
        assert_eq!(hits.load(Ordering::Relaxed), 200);
        assert_eq!(s.status_codes.get(&200), Some(&200));
        assert!((s.achieved_rate - 200.0).abs() < 10.0, "{s:?}");
        assert!(s.latency_ms.corrected.p50 > 0.0);
        assert!(s.latency_ms.corrected.max >= s.latency_ms.uncorrected.max);
        // Kept alive: far fewer connections than requests.
        assert!(s.connections < 20, "{s:?}");
    }

    #[tokio::test]
    async fn slow_answers_do_not_slow_the_arrivals() {
        let (url, _) = server().await;
        let engine = Engine::new();
        let plan = Plan::constant(&url, "/slow", 50.0, Duration::from_millis(600));
        let s = engine.start(plan).await.unwrap().finish().await;
        // 30 due in 0.6 s, each answered in 0.3 s: ~15 in flight at once.
        assert_eq!(s.requests, 30, "{s:?}");
        assert_eq!(s.answered, 30, "{s:?}");
        assert!(s.in_flight_max >= 10, "{s:?}");
        assert_eq!(s.late + s.dropped, 0, "{s:?}");
    }

    #[tokio::test]
    async fn a_full_in_flight_bound_makes_arrivals_late_then_dropped() {
        let (url, _) = server().await;
        let engine = Engine::new();
        let mut plan = Plan::constant(&url, "/slow", 100.0, Duration::from_secs(2));
        plan.in_flight = Some(2);
        let s = engine.start(plan).await.unwrap().finish().await;
        // Two slots, 0.3 s each: about 6.7 requests/s go out of 100/s asked.
        assert!(s.requests < 30, "{s:?}");
        assert!(s.late > 0 && s.dropped > 100, "{s:?}");
        assert_eq!(s.requests + s.dropped, 200, "{s:?}");
        // Corrected latency counts the wait for a slot; uncorrected does not.
        assert!(s.latency_ms.corrected.max > 900.0, "{s:?}");
        assert!(s.latency_ms.uncorrected.max < 600.0, "{s:?}");
    }

    #[tokio::test]
    async fn after_a_drop_the_next_arrival_still_waits_for_its_time() {
        // Every 2 s; one slot; answers take 3.2 s. Arrival 1 (due at 2 s)
        // gets a slot at 3.2 s, over a second late: dropped. Arrival 2 is due
        // at 4 s and must go then, not at once at 3.2 s.
        let (url, _) = server().await;
        let engine = Engine::new();
        let mut plan = Plan::constant(&url, "/slower", 0.5, Duration::from_secs(5));
        plan.in_flight = Some(1);
        let s = engine.start(plan).await.unwrap().finish().await;
        assert_eq!((s.requests, s.dropped, s.late), (2, 1, 0), "{s:?}");
        // Not sent before its time: corrected latency (from the due time)
        // is never below uncorrected (from the send).
        let (c, u) = (s.latency_ms.corrected, s.latency_ms.uncorrected);
        assert!(c.p50 >= 3100.0 && c.max >= u.max, "{s:?}");
    }

    #[tokio::test]
    async fn a_stopped_load_sends_nothing_more() {
        let (url, hits) = server().await;
        let engine = Engine::new();
        let load = engine
            .start(Plan::constant(&url, "/", 100.0, Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(load.first_answer().is_some());
        let s = load.stop().await;
        assert!(settles(&hits).await, "the load went on after stop");
        // Served at most what was sent: nothing went out after the summary.
        assert!(hits.load(Ordering::Relaxed) <= s.requests, "{s:?}");
        assert!(s.requests >= 10, "{s:?}");
        assert_eq!(s.requests, s.answered + s.unfinished, "{s:?}");
        // Dropped, the engine aborts whatever still runs.
        let load = engine
            .start(Plan::constant(&url, "/", 100.0, Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(load);
        assert!(settles(&hits).await, "the load outlived its handle");
        // And the engine stops whatever is left when it goes.
        let load = engine
            .start(Plan::constant(&url, "/", 100.0, Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(engine);
        assert!(settles(&hits).await, "the load outlived its engine");
        drop(load);
    }

    #[tokio::test]
    async fn a_panic_in_the_drill_stops_its_loads() {
        let (url, hits) = server().await;
        let engine = Arc::new(Engine::new());
        let e = engine.clone();
        let drill = tokio::spawn(async move {
            let _load = e
                .start(Plan::constant(&url, "/", 100.0, Duration::from_secs(60)))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            panic!("a drill panics with a load running");
        });
        assert!(drill.await.is_err());
        assert!(settles(&hits).await, "the load outlived the panic");
        assert!(hits.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn a_closed_port_is_counted_as_connect_failures() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let engine = Engine::new();
        let s = engine
            .start(Plan::constant(&url, "/", 50.0, Duration::from_millis(200)))
            .await
            .unwrap()
            .finish()
            .await;
        assert_eq!(s.answered, 0);
        assert_eq!(s.failures.get(&Failure::Connect), Some(&10), "{s:?}");
        // Each says why, in the system's words.
        assert_eq!(s.causes.values().sum::<u64>(), 10, "{s:?}");
        assert!(s.causes.keys().all(|c| c.starts_with("connect: ")), "{s:?}");
    }

    /// Each second of the timeline says what the schedule asked in it: a
    /// ramp's climb, not its mean.
    #[tokio::test]
    async fn the_timeline_asks_what_the_shape_asks() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let mut plan = Plan::constant(&url, "/", 10.0, Duration::from_secs(3));
        plan.shape = Shape::Ramp {
            from: 10.0,
            to: 40.0,
            over: Duration::from_secs(3),
        };
        let s = Engine::new().start(plan).await.unwrap().finish().await;
        let asked: Vec<f64> = s.timeline.iter().map(|t| t.asked).collect();
        // 10→20, 20→30, 30→40 per second: their means; nothing after (a
        // failure counted a moment past the end lands in a fourth second).
        assert!(asked.len() >= 3, "{s:?}");
        for (a, want) in asked.iter().zip([15.0, 25.0, 35.0, 0.0, 0.0]) {
            assert!((a - want).abs() < 1e-6, "{asked:?}");
        }
        assert_eq!(s.requests, 75, "{s:?}");
    }

    #[tokio::test]
    async fn only_this_machine_and_bounded() {
        let engine = Engine::new();
        let far = Plan::constant("http://10.1.2.3:80", "/", 1.0, Duration::from_secs(1));
        let e = engine.start(far).await.err().unwrap().to_string();
        assert!(e.contains("this machine only"), "{e}");
        let fast = Plan::constant("http://127.0.0.1:9", "/", 1e9, Duration::from_secs(1));
        assert!(engine.start(fast).await.is_err());
        let long = Plan::constant("http://127.0.0.1:9", "/", 1.0, Duration::from_secs(7200));
        assert!(engine.start(long).await.is_err());
    }

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8000/api/users?x=1").unwrap(),
            ("http://127.0.0.1:8000".into(), "/api/users?x=1".into())
        );
        assert_eq!(split_url("http://localhost:9").unwrap().1, "/".to_string());
    }
}
