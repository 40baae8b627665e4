//! firedrill's stand-in for cAdvisor, run from the project's own image when
//! cAdvisor's cannot be had: it reads the Docker API (stats with
//! `one_shot`, inspect, events) for the run's containers every second, as
//! cAdvisor's housekeeping does, and serves the latest reading with
//! cAdvisor's names, labels and semantics (families.rs). Every value is a measurement of
//! a real container; README "cAdvisor stand-in" lists each difference.
//!
//! What cAdvisor does and this keeps:
//! - a container is exported while its cgroup exists (running or paused);
//!   a stopped or removed one disappears;
//! - every sample carries the collection time as an explicit timestamp, so
//!   Prometheus writes no staleness marker when a container goes: its
//!   series stay visible for the 5 m lookback, which is why "container
//!   missing" rules read `time() - container_last_seen`;
//! - `container_memory_working_set_bytes` is usage − inactive file pages;
//! - `container_spec_memory_limit_bytes` is 0 without a limit;
//! - the CFS families exist only when a CPU quota is set (`--cpus` included);
//! - `container_oom_events_total` counts the kernel's OOM kills in the
//!   container (Docker's `oom` events), `container_start_time_seconds`
//!   moves on every restart.

use crate::error::Result;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bollard::container::{InspectContainerOptions, ListContainersOptions, StatsOptions};
use bollard::models::ContainerInspectResponse;
use bollard::system::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

mod families;
pub(crate) use families::escape;
pub use families::{render, Sample};
use std::time::{Duration, Instant};

/// How often the containers are read (cAdvisor's `--housekeeping_interval`).
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// A scrape is refused when no collection has succeeded for this long.
const STALE: Duration = Duration::from_secs(10);

/// How often the writable layer's size is measured: walking it costs, and
/// cAdvisor too refreshes disk usage about once a minute.
const FS_EVERY: Duration = Duration::from_secs(60);

/// cgroup v1 and v2 name the inactive file pages differently.
fn inactive_file(s: &bollard::container::MemoryStatsStats) -> (u64, u64, u64) {
    use bollard::container::MemoryStatsStats::*;
    match s {
        V1(v) => (v.total_inactive_file, v.total_rss, v.total_cache),
        V2(v) => (v.inactive_file, v.anon, v.file),
    }
}

/// The cgroup path Docker gives a container, for cAdvisor's `id` label.
fn cgroup_id(driver: &str, parent: Option<&str>, id: &str) -> String {
    match (driver, parent.filter(|p| !p.is_empty())) {
        ("systemd", None) => format!("/system.slice/docker-{id}.scope"),
        ("systemd", Some(p)) => format!("/{p}/docker-{id}.scope"),
        (_, Some(p)) => format!("/{}/{id}", p.trim_matches('/')),
        _ => format!("/docker/{id}"),
    }
}

fn unix_secs(rfc3339: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// Per interface: cAdvisor's eight network counters, in [`NET`]'s order.
fn net(stats: &bollard::container::Stats) -> BTreeMap<String, [u64; 8]> {
    let all = stats.networks.clone().unwrap_or_default();
    all.into_iter()
        .map(|(i, n)| {
            let v = [
                n.rx_bytes,
                n.rx_packets,
                n.rx_errors,
                n.rx_dropped,
                n.tx_bytes,
                n.tx_packets,
                n.tx_errors,
                n.tx_dropped,
            ];
            (i, v)
        })
        .collect()
}

/// Per block device: bytes read and written (cgroup v1 writes `Read`, v2 `read`).
fn io(stats: &bollard::container::Stats) -> BTreeMap<String, [u64; 2]> {
    let mut io: BTreeMap<String, [u64; 2]> = BTreeMap::new();
    let entries = stats
        .blkio_stats
        .io_service_bytes_recursive
        .iter()
        .flatten();
    for e in entries {
        let d = io.entry(format!("{}:{}", e.major, e.minor)).or_default();
        match e.op.to_ascii_lowercase().as_str() {
            "read" => d[0] += e.value,
            "write" => d[1] += e.value,
            _ => {}
        }
    }
    io
}

/// A sample from what Docker says of one container.
pub fn sample(
    inspect: &ContainerInspectResponse,
    stats: &bollard::container::Stats,
    driver: &str,
    at_ms: i64,
) -> Sample {
    let id = inspect.id.clone().unwrap_or_default();
    let host = inspect.host_config.clone().unwrap_or_default();
    let config = inspect.config.clone().unwrap_or_default();
    let state = inspect.state.clone().unwrap_or_default();
    let period = match host.cpu_period {
        Some(p) if p > 0 => p as u64,
        _ => 100_000,
    };
    let quota = match (host.cpu_quota, host.nano_cpus) {
        (Some(q), _) if q > 0 => Some((q as u64, period)),
        (_, Some(n)) if n > 0 => Some(((n as u64).saturating_mul(period) / 1_000_000_000, period)),
        _ => None,
    };
    let mem = &stats.memory_stats;
    let usage = mem.usage.unwrap_or(0);
    let (inactive, rss, cache) = mem.stats.as_ref().map(inactive_file).unwrap_or_default();
    let t = &stats.cpu_stats.throttling_data;
    Sample {
        id: cgroup_id(driver, host.cgroup_parent.as_deref(), &id),
        name: inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.clone().unwrap_or_default(),
        labels: config
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        at_ms,
        started: state.started_at.as_deref().map(unix_secs).unwrap_or(0.0),
        cpu_total_ns: stats.cpu_stats.cpu_usage.total_usage,
        cpu_user_ns: stats.cpu_stats.cpu_usage.usage_in_usermode,
        cpu_system_ns: stats.cpu_stats.cpu_usage.usage_in_kernelmode,
        quota,
        throttling: (t.periods, t.throttled_periods, t.throttled_time),
        shares: match host.cpu_shares {
            Some(s) if s > 0 => s as u64,
            _ => 1024,
        },
        mem_usage: usage,
        mem_working_set: usage.saturating_sub(inactive),
        mem_rss: rss,
        mem_cache: cache,
        mem_limit: host.memory.filter(|m| *m > 0).unwrap_or(0) as u64,
        mem_failcnt: mem.failcnt,
        mem_max_usage: mem.max_usage,
        oom_events: 0,
        net: net(stats),
        io: io(stats),
        fs_usage: None,
        tasks: stats.pids_stats.current,
    }
}

/// The exporter's state: the engine, which containers to watch, what the
/// event stream has counted, the last size of each writable layer.
struct Exporter {
    docker: Docker,
    /// `key=value`: only containers with this label (the run's).
    label: Option<String>,
    driver: String,
    oom: Mutex<HashMap<String, u64>>,
    fs: Mutex<HashMap<String, (Instant, u64)>>,
    /// The latest collection, rendered, and when it was made.
    latest: RwLock<Option<(Instant, String)>>,
}

impl Exporter {
    /// Every watched container with its cgroup (running or paused), measured.
    async fn collect(self: &Arc<Self>) -> Result<Vec<Sample>> {
        let filters: HashMap<String, Vec<String>> = self
            .label
            .iter()
            .map(|l| ("label".to_string(), vec![l.clone()]))
            .collect();
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters,
                ..Default::default()
            }))
            .await?;
        let jobs = list.into_iter().filter_map(|c| c.id).map(|id| {
            let me = self.clone();
            async move { me.one(&id).await }
        });
        let mut samples: Vec<Sample> = futures_util::future::join_all(jobs)
            .await
            .into_iter()
            // A container that went between the list and its stats is gone.
            .filter_map(|r| r.ok())
            .collect();
        samples.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(samples)
    }

    async fn one(&self, id: &str) -> Result<Sample> {
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let mut stream = self.docker.stats(
            id,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        let stats = stream
            .next()
            .await
            .ok_or_else(|| crate::error::err!(Docker, "no stats for {id}"))??;
        let mut s = sample(
            &inspect,
            &stats,
            &self.driver,
            chrono::Utc::now().timestamp_millis(),
        );
        s.oom_events = self
            .oom
            .lock()
            .expect("oom lock")
            .get(id)
            .copied()
            .unwrap_or(0);
        s.fs_usage = self.fs_usage(id).await;
        Ok(s)
    }

    /// The writable layer's size, measured at most once per [`FS_EVERY`].
    async fn fs_usage(&self, id: &str) -> Option<u64> {
        let known = self.fs.lock().expect("fs lock").get(id).copied();
        if let Some((at, v)) = known {
            if at.elapsed() < FS_EVERY {
                return Some(v);
            }
        }
        let i = self
            .docker
            .inspect_container(id, Some(InspectContainerOptions { size: true }))
            .await
            .ok()?;
        let v = i.size_rw.map(|v| v.max(0) as u64)?;
        self.fs
            .lock()
            .expect("fs lock")
            .insert(id.to_string(), (Instant::now(), v));
        Some(v)
    }

    /// Counts Docker's `oom` events per container, for as long as it runs.
    async fn watch_ooms(self: Arc<Self>) {
        loop {
            let mut filters: HashMap<String, Vec<String>> = [
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), vec!["oom".to_string()]),
            ]
            .into();
            if let Some(l) = &self.label {
                filters.insert("label".into(), vec![l.clone()]);
            }
            let mut events = self.docker.events(Some(EventsOptions::<String> {
                filters,
                ..Default::default()
            }));
            while let Some(Ok(ev)) = events.next().await {
                if let Some(id) = ev.actor.and_then(|a| a.id) {
                    *self.oom.lock().expect("oom lock").entry(id).or_default() += 1;
                }
            }
            // The stream ended (the engine restarted): watch again.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// This container's own `firedrill.run` label, read through the engine
/// (Docker names a container's host after its id), so that the stand-in
/// watches its run's containers only.
async fn own_run_label(docker: &Docker) -> Option<String> {
    let host = std::fs::read_to_string("/etc/hostname").ok()?;
    let me = docker.inspect_container(host.trim(), None).await.ok()?;
    let run = me.config?.labels?.remove(crate::stack::RUN_LABEL)?;
    Some(format!("{}={run}", crate::stack::RUN_LABEL))
}

/// The latest collection, as cAdvisor serves it: a scrape never waits for
/// the Docker API. Refused once the collections have stopped succeeding
/// for [`STALE`].
async fn metrics(State(x): State<Arc<Exporter>>) -> axum::response::Response {
    let latest = x.latest.read().expect("latest lock").clone();
    match latest {
        Some((at, text)) if at.elapsed() < STALE => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        _ => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no recent reading of the Docker engine\n",
        )
            .into_response(),
    }
}

/// Ready once a first collection has succeeded.
async fn healthz(State(x): State<Arc<Exporter>>) -> axum::response::Response {
    match x.latest.read().expect("latest lock").is_some() {
        true => "ok".into_response(),
        false => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

impl Exporter {
    /// Collects every [`HOUSEKEEPING`], as cAdvisor's housekeeping does.
    async fn housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.collect().await {
                Ok(samples) => {
                    *self.latest.write().expect("latest lock") =
                        Some((Instant::now(), render(&samples)));
                }
                Err(e) => tracing::warn!("cannot read the Docker engine: {e}"),
            }
        }
    }
}

/// Serves the stand-in on `listen` until SIGTERM or Ctrl-C: `/metrics`
/// and `/healthz` (cAdvisor's paths). `label` (`key=value`) limits it to
/// the containers carrying that label; by default, its own run's.
pub async fn serve(listen: &str, label: Option<String>) -> Result<()> {
    let docker = crate::stack::connect().await?;
    let label = match label {
        Some(l) => Some(l),
        None => own_run_label(&docker).await,
    };
    let driver = docker
        .info()
        .await?
        .cgroup_driver
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|| "cgroupfs".into());
    let x = Arc::new(Exporter {
        docker,
        label,
        driver,
        oom: Mutex::new(HashMap::new()),
        fs: Mutex::new(HashMap::new()),
        latest: RwLock::new(None),
    });
    tokio::spawn(x.clone().watch_ooms());
    tokio::spawn(x.clone().housekeeping());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(x);
    super::serve_app(listen, app, "cAdvisor stand-in".into()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::container::{MemoryStatsStats, MemoryStatsStatsV1, Stats};
    use bollard::models::{ContainerConfig, ContainerState, HostConfig};

    fn stats(json: serde_json::Value) -> Stats {
        serde_json::from_value(json).unwrap()
    }

    fn base_stats() -> serde_json::Value {
        // cgroup v1 names every field; those the test reads are set below.
        let mut v1 = serde_json::Map::new();
        for k in "cache dirty mapped_file total_inactive_file pgpgout rss total_mapped_file writeback unevictable pgpgin total_unevictable pgmajfault total_rss total_rss_huge total_writeback total_inactive_anon rss_huge hierarchical_memory_limit total_pgfault total_active_file active_anon total_active_anon total_pgpgout total_cache total_dirty inactive_anon active_file pgfault inactive_file total_pgmajfault total_pgpgin hierarchical_memsw_limit shmem total_shmem".split(' ') {
            v1.insert(k.into(), 0.into());
        }
        v1.insert("total_inactive_file".into(), 120.into());
        v1.insert("total_rss".into(), 150.into());
        v1.insert("total_cache".into(), 130.into());
        serde_json::json!({
            "read": "2026-11-24T08:00:00Z", "preread": "0001-01-01T00:00:00Z",
            "num_procs": 0, "pids_stats": {"current": 7},
            "networks": {"eth0": {"rx_bytes": 100, "rx_packets": 2, "rx_errors": 0, "rx_dropped": 0,
                                   "tx_bytes": 50, "tx_packets": 1, "tx_errors": 0, "tx_dropped": 0}},
            "memory_stats": {"usage": 300, "max_usage": 400, "failcnt": 3, "limit": 9000,
                             "stats": v1},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 10},
                {"major": 8, "minor": 0, "op": "Write", "value": 20}]},
            "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000u64, "usage_in_usermode": 2_000_000_000u64,
                                        "usage_in_kernelmode": 500_000_000u64},
                          "throttling_data": {"periods": 50, "throttled_periods": 20, "throttled_time": 3_000_000_000u64}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_usermode": 0, "usage_in_kernelmode": 0},
                             "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "storage_stats": {}, "name": "/x", "id": "abc"
        })
    }

    fn inspect(host: HostConfig) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/firedrill-1-tts".into()),
            config: Some(ContainerConfig {
                image: Some("firedrill/firedrill:1".into()),
                labels: Some([("firedrill.run".to_string(), "r1".to_string())].into()),
                ..Default::default()
            }),
            state: Some(ContainerState {
                started_at: Some("2026-11-24T07:59:00Z".into()),
                ..Default::default()
            }),
            host_config: Some(host),
            ..Default::default()
        }
    }

    #[test]
    fn memory_and_cpu_follow_cadvisor() {
        let st = stats(base_stats());
        assert!(matches!(
            st.memory_stats.stats,
            Some(MemoryStatsStats::V1(MemoryStatsStatsV1 { .. }))
        ));
        let s = sample(&inspect(HostConfig::default()), &st, "cgroupfs", 1_000);
        assert_eq!(s.id, "/docker/abc");
        assert_eq!(s.name, "firedrill-1-tts");
        // Working set: usage less inactive file pages.
        assert_eq!(s.mem_working_set, 180);
        // No limit: 0, not the host's memory Docker reports as `limit`.
        assert_eq!(s.mem_limit, 0);
        assert_eq!(s.quota, None);
        let text = render(&[s]);
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container_label_firedrill_run=\"r1\",cpu=\"total\",id=\"/docker/abc\",image=\"firedrill/firedrill:1\",name=\"firedrill-1-tts\"} 2.5 1000"
        ), "{text}");
        assert!(text.contains("container_spec_memory_limit_bytes{") && text.contains("} 0 1000"));
        // CFS families only under a quota.
        assert!(
            !text.contains("container_cpu_cfs_throttled_periods_total"),
            "{text}"
        );
        assert!(text.contains(
            "container_fs_writes_bytes_total{container_label_firedrill_run=\"r1\",device=\"8:0\""
        ));
        assert!(
            text.contains("container_start_time_seconds{") && text.contains(" 1795507140 1000"),
            "{text}"
        );
    }

    #[test]
    fn a_cpu_limit_brings_the_cfs_families_and_a_memory_limit_is_exported() {
        let host = HostConfig {
            nano_cpus: Some(500_000_000),
            memory: Some(256 << 20),
            cgroup_parent: Some("/drills".into()),
            ..Default::default()
        };
        let s = sample(&inspect(host), &stats(base_stats()), "cgroupfs", 1_000);
        assert_eq!(s.quota, Some((50_000, 100_000)));
        assert_eq!(s.id, "/drills/abc");
        let text = render(&[s]);
        assert!(
            text.contains("container_cpu_cfs_throttled_periods_total{"),
            "{text}"
        );
        assert!(text.contains("} 20 1000"));
        assert!(
            text.contains("container_cpu_cfs_throttled_seconds_total{")
                && text.contains("} 3 1000")
        );
        assert!(text.contains("} 268435456 1000"));
        assert!(text.contains("container_spec_cpu_quota{") && text.contains("} 50000 1000"));
    }

    #[test]
    fn systemd_cgroups_and_label_names() {
        assert_eq!(
            cgroup_id("systemd", None, "abc"),
            "/system.slice/docker-abc.scope"
        );
    }
}
