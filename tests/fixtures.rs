//! Every fixture profile in a real stack. Each reference stack comes up with
//! the real Prometheus (offline images); every route of every fixture is
//! loaded, with a burst of errors; Prometheus must then hold every declared
//! family with its labels (and every bucket of a histogram), and every panel
//! of the seed's dashboards must return data. A second test drives each
//! chaos control and sees its effect in Prometheus.
//!
//! Docker is required: without it these tests fail, they never skip.

mod common;
use common::copy_dir;

use chrono::Utc;
use firedrill::images::{self, ImageSource};
use firedrill::observe::{Prometheus, Series};
use firedrill::panels::{self, Verdict};
use firedrill::render;
use firedrill::spec::fixture::{MetricType, Profile};
use firedrill::spec::stack::Stack;
use firedrill::stack::Running;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stack at a time on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Scrape and evaluation every 3 s instead of 15 s.
const SCALE: f64 = 0.2;

struct Up {
    stack: Stack,
    running: Running,
    prom: Prometheus,
    scrape: Duration,
}

async fn up(stack_file: &str) -> Up {
    let stack = Stack::load(Path::new(stack_file)).unwrap_or_else(|e| panic!("{e}"));
    let eff = render::render(&stack, SCALE).unwrap();
    let docker = firedrill::stack::connect().await.unwrap();
    let imgs = images::ensure(&docker, ImageSource::Offline).await.unwrap();
    let run_id = firedrill::stack::new_run_id();
    let running = Running::up(&docker, &stack, &eff, &imgs, &run_id)
        .await
        .unwrap();
    let prom = Prometheus::new(running.url("prometheus").unwrap());
    Up {
        scrape: eff.prometheus.config.scrape_interval(),
        stack,
        running,
        prom,
    }
}

impl Up {
    /// Every panel of the stack over `[start, now]`, at the tests' scale.
    async fn panels(
        &self,
        start: chrono::DateTime<Utc>,
        absent: &std::collections::BTreeMap<String, String>,
    ) -> Vec<panels::PanelCheck> {
        panels::check(
            &self.stack,
            &self.prom,
            (start, Utc::now()),
            self.scrape,
            SCALE,
            absent,
        )
        .await
        .unwrap()
    }

    /// The scrape job whose target is `service`.
    fn job(&self, service: &str) -> String {
        let sc = self
            .stack
            .prometheus
            .config
            .scrape_configs
            .iter()
            .find(|sc| {
                sc.static_configs
                    .iter()
                    .flat_map(|c| &c.targets)
                    .any(|t| t.split(':').next() == Some(service))
            });
        sc.unwrap_or_else(|| panic!("no job scrapes {service}"))
            .job_name
            .clone()
    }

    async fn down(self) {
        let run_id = self.running.run_id.clone();
        self.running.down().await.unwrap();
        let docker = firedrill::stack::connect().await.unwrap();
        let left = firedrill::stack::leftovers(&docker, Some(&run_id))
            .await
            .unwrap();
        assert!(left.is_none(), "{left:?} of {run_id} left");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends every route of every fixture of the stack, round after round, until
/// `stop` (bounded: 3 minutes at most, one request per route per 250 ms).
fn load_all(up: &Up) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<usize>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (name, p) in &up.stack.fixtures {
        let base = up.running.url(name).unwrap();
        for r in &p.routes {
            let (stop, base, r) = (stop.clone(), base.clone(), r.clone());
            tasks.push(tokio::spawn(async move {
                let client = http();
                let deadline = Instant::now() + Duration::from_secs(180);
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let url = format!("{base}{}", r.request_path());
                    let method = r.method.parse().unwrap();
                    let mut req = client.request(method, url);
                    if let Some(b) = &r.body {
                        req = req.json(b);
                    }
                    let _ = req.send().await;
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                sent
            }));
        }
    }
    (stop, tasks)
}

async fn control(up: &Up, service: &str, body: Option<serde_json::Value>) {
    let url = format!("{}/-/control", up.running.url(service).unwrap());
    let r = match body {
        Some(b) => http().put(url).json(&b).send().await,
        None => http().delete(url).send().await,
    };
    assert!(r.unwrap().status().is_success());
}

/// Prometheus' answer to `expr` now.
async fn query(up: &Up, expr: &str) -> Vec<Series> {
    up.prom.query(expr, Utc::now()).await.unwrap()
}

/// The problems with one family as Prometheus holds it: absent, a label
/// missing, a bucket missing.
async fn family_problems(up: &Up, job: &str, f: &firedrill::spec::fixture::Family) -> Vec<String> {
    let name = match f.type_ {
        MetricType::Histogram => format!("{}_bucket", f.name),
        _ => f.name.clone(),
    };
    let series = query(up, &format!("{{__name__=\"{name}\",job=\"{job}\"}}")).await;
    if series.is_empty() {
        return vec![format!("{name}: not ingested")];
    }
    let mut out = Vec::new();
    // Labels with an empty value are absent in Prometheus, as they should be.
    let mut want: BTreeSet<String> = f.labels.iter().cloned().collect();
    want.extend(
        f.const_labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone()),
    );
    for l in want {
        if !series.iter().any(|s| s.metric.contains_key(&l)) {
            out.push(format!("{name}: label `{l}` missing"));
        }
    }
    for s in &f.series {
        let found = series.iter().any(|x| {
            s.labels
                .iter()
                .all(|(k, v)| x.metric.get(k).map(String::as_str).unwrap_or("") == v)
        });
        if !found {
            out.push(format!("{name}: series {:?} missing", s.labels));
        }
    }
    if f.type_ == MetricType::Histogram {
        let les: BTreeSet<String> = series
            .iter()
            .filter_map(|s| s.metric.get("le").cloned())
            .collect();
        let got: Vec<f64> = les.iter().filter_map(|l| l.parse().ok()).collect();
        for b in f.buckets.iter().chain([f64::INFINITY].iter()) {
            if !got
                .iter()
                .any(|g| (g - b).abs() < 1e-9 || (g.is_infinite() && b.is_infinite()))
            {
                out.push(format!("{name}: bucket le={b} missing"));
            }
        }
    }
    out
}

/// Brings a reference stack up, loads it with an error burst in the middle,
/// then checks every family of every fixture and every dashboard panel.
async fn families_and_panels(stack_file: &str, broken: Option<&BrokenPanels>) {
    let _serial = SERIAL.lock().await;
    let up = up(stack_file).await;
    let start = Utc::now();
    let (stop, tasks) = load_all(&up);
    tokio::time::sleep(3 * up.scrape).await;
    let names: Vec<String> = up.stack.fixtures.keys().cloned().collect();
    for n in &names {
        control(&up, n, Some(serde_json::json!({"error_ratio": 1.0}))).await;
    }
    tokio::time::sleep(2 * up.scrape).await;
    for n in &names {
        control(&up, n, None).await;
    }
    tokio::time::sleep(4 * up.scrape).await;
    let mut problems = Vec::new();
    let mut families = 0;
    // A fixture with no families (a synthetic host) is not scraped.
    for (service, p) in up
        .stack
        .fixtures
        .iter()
        .filter(|(_, p)| !p.families.is_empty())
    {
        let job = up.job(service);
        for f in &p.families {
            families += 1;
            problems.extend(family_problems(&up, &job, f).await);
        }
    }
    let absent = up.running.skipped();
    let checks = up.panels(start, &absent).await;
    if let Some(b) = broken {
        b.check(&up, start, &absent).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    up.down().await;
    println!(
        "{families} families checked, {} panel targets, {sent} requests",
        checks.len()
    );
    assert!(sent > 0);
    assert!(families > 0 && !checks.is_empty());
    problems.extend(panel_problems(&checks));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every panel target without data; only cAdvisor's may be skipped, and
/// only block I/O may be empty: the fixtures keep everything in memory,
/// so their cgroups do no block I/O and cAdvisor has no device series.
fn panel_problems(checks: &[panels::PanelCheck]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in checks {
        println!("{}", c.line());
        match &c.verdict {
            Verdict::Data { .. } => {}
            _ if c.query.contains("container_fs_reads_bytes_total")
                || c.query.contains("container_fs_writes_bytes_total") => {}
            Verdict::Skipped { reason } => assert!(
                reason.contains("cadvisor"),
                "only cAdvisor panels may be skipped here: {}",
                c.line()
            ),
            _ => problems.push(format!("{} — {}", c.line(), c.query)),
        }
    }
    problems
}

/// Seed 002: the real PostgreSQL and postgres_exporter, both built offline
/// from Debian packages. The exporter logs in with the run's generated
/// password and exposes the families the seed's alerts and dashboard read.
#[tokio::test(flavor = "multi_thread")]
async fn seed_002_postgres_is_scraped_and_panels_have_data() {
    let _serial = SERIAL.lock().await;
    let up = up("stack/seed-002/stack.yaml").await;
    let start = Utc::now();
    tokio::time::sleep(5 * up.scrape).await;
    let mut problems = Vec::new();
    for (expr, what) in [
        (
            r#"pg_up{job="postgres"} == 1"#,
            "the exporter reaches PostgreSQL",
        ),
        (
            r#"pg_settings_max_connections{job="postgres"} == 100"#,
            "PostgreSQL's settings",
        ),
        (
            r#"pg_stat_activity_count{job="postgres", datname="app", state="active"} >= 1"#,
            "the exporter's own session, active, in the stack's database",
        ),
        (
            r#"pg_database_size_bytes{job="postgres", datname="app"} > 0"#,
            "the size of the database the stack created",
        ),
        (
            r#"increase(pg_stat_database_xact_commit{job="postgres", datname="app"}[1m]) > 0"#,
            "commits, counted",
        ),
        (
            r#"pg_static{job="postgres", short_version=~"17[.].*"}"#,
            "PostgreSQL 17",
        ),
    ] {
        if query(&up, expr).await.is_empty() {
            problems.push(format!("{what}: `{expr}` returns nothing"));
        }
    }
    let absent = up.running.skipped();
    let checks = up.panels(start, &absent).await;
    // The password is the run's own: no service may log it.
    let mut leaks = Vec::new();
    for name in up.running.services.keys() {
        let logs = up.running.logs(name, 1000).await;
        for secret in up.running.secret_values() {
            if logs.contains(secret) {
                leaks.push(name.clone());
            }
        }
    }
    up.down().await;
    assert!(!checks.is_empty());
    problems.extend(panel_problems(&checks));
    assert!(leaks.is_empty(), "a secret is in the logs of {leaks:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_000_profiles_are_ingested_and_panels_have_data() {
    families_and_panels("stack/seed-000/stack.yaml", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_003_profile_is_ingested_and_panels_have_data() {
    let broken = BrokenPanels {
        file: "stack/seed-003/grafana/dashboards/ml-api-dashboard.json",
        patches: &[
            // A renamed metric and a wrong label: both panels go blank.
            ("model_loaded{job=", "model_is_loaded{job="),
            (
                r#"active_requests{job=\"ml-api\"}"#,
                r#"active_requests{job=\"ml_api\"}"#,
            ),
        ],
        blank: &["Model Status", "Active Requests"],
    };
    families_and_panels("stack/seed-003/stack.yaml", Some(&broken)).await;
}

/// A dashboard broken on purpose, checked against the same running stack:
/// the broken panels must be reported without data, the others with.
struct BrokenPanels {
    file: &'static str,
    patches: &'static [(&'static str, &'static str)],
    blank: &'static [&'static str],
}

impl BrokenPanels {
    async fn check(
        &self,
        up: &Up,
        start: chrono::DateTime<Utc>,
        absent: &BTreeMap<String, String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["stack", "fixtures"] {
            copy_dir(Path::new(d), &dir.path().join(d));
        }
        let file = dir.path().join(self.file);
        let mut text = std::fs::read_to_string(&file).unwrap();
        for (from, to) in self.patches {
            assert_eq!(
                text.matches(from).count(),
                1,
                "`{from}` once in {}",
                self.file
            );
            text = text.replace(from, to);
        }
        std::fs::write(&file, text).unwrap();
        let stack_file = Path::new(self.file)
            .ancestors()
            .find(|a| a.join("stack.yaml").is_file())
            .unwrap()
            .join("stack.yaml");
        let stack = Stack::load(&dir.path().join(stack_file)).unwrap();
        let checks = panels::check(
            &stack,
            &up.prom,
            (start, Utc::now()),
            up.scrape,
            SCALE,
            absent,
        )
        .await
        .unwrap();
        for c in &checks {
            let blank = self.blank.contains(&c.panel.as_str());
            match (&c.verdict, blank) {
                (Verdict::NoData, true) | (Verdict::Data { .. }, false) => {}
                (Verdict::Skipped { .. }, false) => {}
                _ => panic!("broken dashboard: {}", c.line()),
            }
        }
        assert!(self
            .blank
            .iter()
            .all(|b| checks.iter().any(|c| &c.panel == b)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_004_profiles_are_ingested_and_panels_have_data() {
    families_and_panels("stack/seed-004/stack.yaml", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_001_profile_is_ingested_and_panels_have_data() {
    families_and_panels("stack/stack.yaml", None).await;
}

/// Polls `expr` until it returns a series (or the time runs out).
async fn eventually(up: &Up, expr: &str, what: &str) {
    let deadline = Instant::now() + 8 * up.scrape + Duration::from_secs(10);
    loop {
        if !query(up, expr).await.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: `{expr}` stayed empty");
        tokio::time::sleep(up.scrape / 2).await;
    }
}

/// Each chaos control of a fixture, seen where an alert would see it.
#[tokio::test(flavor = "multi_thread")]
async fn every_chaos_control_shows_in_prometheus() {
    let _serial = SERIAL.lock().await;
    let up = up("stack/seed-003/stack.yaml").await;
    let (stop, tasks) = load_all(&up);
    let job = r#"job="ml-api""#;
    let w = format!("{}ms", (4 * up.scrape).as_millis());
    let set = |v: serde_json::Value| control(&up, "ml-api", Some(v));
    let checks: Vec<(serde_json::Value, String, &str)> = vec![
        (
            serde_json::json!({"latency": "700ms"}),
            format!("histogram_quantile(0.5, sum by (le) (rate(api_request_duration_seconds_bucket{{{job}}}[{w}]))) > 0.5"),
            "latency in the request histogram",
        ),
        (
            serde_json::json!({"error_ratio": 1.0, "error_status": 503}),
            format!("sum(rate(api_requests_total{{{job},status=\"503\"}}[{w}])) > 0 and sum(rate(api_errors_total{{{job}}}[{w}])) > 0"),
            "errors in the counters",
        ),
        (
            serde_json::json!({"model_loaded": false}),
            format!("model_loaded{{{job}}} == 0"),
            "model unloaded",
        ),
        (
            serde_json::json!({"memory": "300MiB"}),
            format!("process_resident_memory_bytes{{{job}}} > 300 * 1024 * 1024"),
            "memory in process_resident_memory_bytes",
        ),
        (
            serde_json::json!({"cpu_cores": 1}),
            format!("rate(process_cpu_seconds_total{{{job}}}[{w}]) > 0.5"),
            "CPU in process_cpu_seconds_total",
        ),
        (
            serde_json::json!({"gauges": {"api_active_requests": 42}}),
            format!("api_active_requests{{{job}}} == 42"),
            "a pinned gauge",
        ),
        (
            serde_json::json!({"hang": true}),
            format!("up{{{job}}} == 0"),
            "up == 0 while hung",
        ),
    ];
    for (body, expr, what) in &checks {
        // The baseline first: the effect is the fault's, not already there.
        assert!(
            query(&up, expr).await.is_empty(),
            "{what}: `{expr}` holds before the fault"
        );
        set(body.clone()).await;
        eventually(&up, expr, what).await;
        control(&up, "ml-api", None).await;
        let back = format!("up{{{job}}} == 1");
        eventually(&up, &back, "back up after reset").await;
        println!("ok: {what}");
    }
    // Let the windows of the last fault pass before exit, the one fault for good.
    tokio::time::sleep(5 * up.scrape).await;
    set(serde_json::json!({"exit": 3})).await;
    eventually(&up, &format!("up{{{job}}} == 0"), "up == 0 after exit").await;
    assert!(!up.running.is_running("ml-api").await.unwrap());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    up.down().await;
}

/// The v0 variant of vLLM renames the cache gauge and the per-token latency.
#[test]
fn vllm_v0_variant_has_the_old_names() {
    let p = Profile::load_variant(Path::new("fixtures/vllm.yaml"), Some("v0")).unwrap();
    assert!(p.family("vllm:gpu_cache_usage_perc").is_some());
    assert!(p.family("vllm:time_per_output_token_seconds").is_some());
    assert!(p.family("vllm:kv_cache_usage_perc").is_none());
    let e = Profile::load_variant(Path::new("fixtures/vllm.yaml"), Some("v9")).unwrap_err();
    assert!(e.errors[0].message.contains("no variant `v9`"), "{e}");
}
