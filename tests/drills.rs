//! Broken-on-purpose stacks that firedrill must report as failed, for real:
//! Prometheus and Alertmanager in containers (offline images), the fixtures
//! and the Teams mock. For each seed-001 drill: a rule selecting the wrong
//! job, a webhook pointing to a wrong path, a `for` longer than the
//! scenario's window allows; then a renamed metric, a scrape target on
//! PostgreSQL's own port, a panel without data, a false alert, and a Teams
//! card that was not lost. The reference drills themselves pass in
//! tests/suite.rs, through the CLI.
//!
//! Docker is required: without it these tests fail, they never skip.

mod common;
use common::copy_dir;

use firedrill::images::ImageSource;
use firedrill::panels;
use firedrill::report::{DrillReport, Status, StepKind, Verdict};
use firedrill::Options;
use std::path::{Path, PathBuf};
/// Drills are timed, and must keep their verdict on a busy machine (a
/// 2-core CI runner is one): most run two at a time. A test holds both
/// slots (runs alone) when it measures the machine (a bench, a host burn,
/// the time-scale timeline) or looks at every process or container on it.
/// tokio's semaphore works across the tests' separate runtimes.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The machine to this test alone.
async fn alone() -> tokio::sync::SemaphorePermit<'static> {
    SLOTS.acquire_many(2).await.unwrap()
}

/// A copy of the repository's stack, fixtures and scenarios, to break.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["stack", "fixtures", "scenarios"] {
            copy_dir(Path::new(d), &dir.path().join(d));
        }
        Workspace { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// Writes scenarios/NAME.yaml on the seed-001 stack at ×0.1; `body` holds
    /// its steps (and whatever follows them).
    fn scenario(&self, name: &str, body: &str) -> PathBuf {
        let f = self.path(&format!("scenarios/{name}.yaml"));
        let text = format!("name: {name}\nstack: ../stack/stack.yaml\ntime_scale: 0.1\n{body}");
        std::fs::write(&f, text).unwrap();
        f
    }

    /// Replaces `from` by `to` in a file; `from` must be there exactly once.
    fn patch(&self, rel: &str, from: &str, to: &str) {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text.matches(from).count(),
            1,
            "`{from}` must occur once in {rel}"
        );
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

/// Runs a drill beside at most one other.
async fn run(scenario: &Path, fail_fast: bool) -> DrillReport {
    let _slot = SLOTS.acquire().await.unwrap();
    run_held(scenario, fail_fast).await
}

/// Runs a drill in a test that holds the machine ([`alone`]).
async fn run_held(scenario: &Path, fail_fast: bool) -> DrillReport {
    let opts = Options::default()
        .images(ImageSource::Offline)
        .fail_fast(fail_fast);
    let report = firedrill::suite::run_one(scenario, &opts)
        .await
        .expect("the drill runs");
    println!("{}", report.render());
    for s in &report.steps {
        println!("{}", s.line());
    }
    // Whatever the verdict, nothing of the run is left.
    let docker = firedrill::stack::connect()
        .await
        .expect("Docker is required for these tests");
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&report.run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default(),
        "run {} left containers or networks",
        report.run_id
    );
    report
}

/// Runs a broken variant: it must fail first at `step`, saying all of `needles`.
async fn assert_fails(ws: &Workspace, scenario: &str, step: &str, needles: &[&str]) -> String {
    let r = run(&ws.path(&format!("scenarios/{scenario}.yaml")), true).await;
    assert!(!r.passed(), "the broken stack must fail:\n{}", r.render());
    let f = r
        .steps
        .iter()
        .find(|s| s.status == Status::Fail)
        .expect("a failed step");
    assert_eq!(f.kind.name(), step, "{}", f.message);
    for n in needles {
        assert!(f.message.contains(n), "`{n}` missing from: {}", f.message);
    }
    f.message.clone()
}

/// (scenario, the alert's selector in rules.yml as written, the same with the wrong job)
const WRONG_JOB: [(&str, &str, &str); 3] = [
    (
        "backend-down",
        r#"expr: up{job="backend"} == 0"#,
        r#"expr: up{job="backend-api"} == 0"#,
    ),
    (
        "high-error-rate",
        r#"            sum(rate(http_request_duration_seconds_count{job="backend", status_code=~"5.."}[5m]))"#,
        r#"            sum(rate(http_request_duration_seconds_count{job="api", status_code=~"5.."}[5m]))"#,
    ),
    (
        "high-latency-p95",
        r#"            sum by (le, route) (rate(http_request_duration_seconds_bucket{job="backend"}[5m]))"#,
        r#"            sum by (le, route) (rate(http_request_duration_seconds_bucket{job="api"}[5m]))"#,
    ),
];

/// A rule-file edit (`patch`) that must make `scenario` fail at expect_alert.
async fn broken_rules(patch: (&str, &str, &str), needles: &[&str]) {
    let (scenario, from, to) = patch;
    let ws = Workspace::new();
    ws.patch("stack/prometheus/rules.yml", from, to);
    assert_fails(&ws, scenario, "expect_alert", needles).await;
}

async fn wrong_job(i: usize) {
    broken_rules(WRONG_JOB[i], &["firing within", "returns no series"]).await;
}

#[tokio::test]
async fn backend_down_wrong_job_fails() {
    wrong_job(0).await;
}

#[tokio::test]
async fn high_error_rate_wrong_job_fails() {
    wrong_job(1).await;
}

#[tokio::test]
async fn high_latency_p95_wrong_job_fails() {
    wrong_job(2).await;
}

async fn wrong_webhook(scenario: &str) {
    let ws = Workspace::new();
    // The URL comes from the environment instead of the mock: a wrong path.
    let var = format!(
        "FIREDRILL_TEST_WEBHOOK_{}",
        scenario.replace('-', "_").to_uppercase()
    );
    std::env::set_var(&var, "http://teams:8080/webhookb2/wrong-path");
    ws.patch(
        "stack/stack.yaml",
        "teams_mock: teams",
        &format!("env: {var}"),
    );
    let needles = [
        "expected a firing Teams card",
        "the mock rejected",
        "HTTP 404",
        "alertmanager_notifications_failed_total",
    ];
    let msg = assert_fails(&ws, scenario, "expect_teams", &needles).await;
    assert!(
        !msg.contains("wrong-path"),
        "a webhook URL leaked into the report: {msg}"
    );
}

#[tokio::test]
async fn backend_down_wrong_webhook_fails() {
    wrong_webhook("backend-down").await;
}

#[tokio::test]
async fn high_error_rate_wrong_webhook_fails() {
    wrong_webhook("high-error-rate").await;
}

#[tokio::test]
async fn high_latency_p95_wrong_webhook_fails() {
    wrong_webhook("high-latency-p95").await;
}

/// (scenario, the alert's `for` as written in context, the same made longer)
const LONG_FOR: [(&str, &str, &str); 3] = [
    (
        "backend-down",
        "== 0\n        for: 1m",
        "== 0\n        for: 10m",
    ),
    (
        "high-error-rate",
        ") > 0.05\n        for: 5m",
        ") > 0.05\n        for: 30m",
    ),
    (
        "high-latency-p95",
        ") > 0.5\n        for: 5m",
        ") > 0.5\n        for: 30m",
    ),
];

async fn long_for(i: usize) {
    broken_rules(
        LONG_FOR[i],
        &[
            "the stack as configured allows",
            "the scenario requires within",
        ],
    )
    .await;
}

#[tokio::test]
async fn backend_down_long_for_fails() {
    long_for(0).await;
}

#[tokio::test]
async fn high_error_rate_long_for_fails() {
    long_for(1).await;
}

#[tokio::test]
async fn high_latency_p95_long_for_fails() {
    long_for(2).await;
}

/// Ctrl-C in the middle of a drill: the CLI tears the stack down and says so.
#[tokio::test]
async fn ctrl_c_tears_down() {
    interrupt_tears_down(libc::SIGINT).await;
}

/// SIGTERM (a CI job's timeout, `docker stop` of a runner) does the same.
#[tokio::test]
async fn sigterm_tears_down() {
    interrupt_tears_down(libc::SIGTERM).await;
}

/// A signal during the first of two drills: that stack is torn down, and
/// the second drill never starts.
async fn interrupt_tears_down(signal: libc::c_int) {
    let _alone = alone().await;
    // Interrupt once the stack is up and the first steps run.
    let (mut child, mut lines, mut seen) = spawn_drill(&[
        "scenarios/backend-down.yaml",
        "scenarios/high-error-rate.yaml",
    ])
    .await;
    // The load runs in the drill's own process: it has no child at all.
    assert_eq!(children(child.id().unwrap()), Vec::<String>::new());
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id().unwrap() as libc::pid_t, signal);
    }
    while let Ok(Some(l)) = lines.next_line().await {
        seen.push(l);
    }
    let status = child.wait().await.unwrap();
    let all = seen.join("\n");
    // Handled, not killed by it: the exit status says a signal stopped the run.
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted (Ctrl-C or SIGTERM)"), "{all}");
    // Said as what it was: not a failure of the stack.
    assert!(all.contains("INTERRUPTED backend-down"), "{all}");
    assert!(!all.contains("FAILED"), "{all}");
    assert!(
        !all.contains("drill scenarios/high-error-rate.yaml"),
        "the suite went on after the signal: {all}"
    );
    let run_id = run_id_of(&all);
    let docker = firedrill::stack::connect().await.unwrap();
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default()
    );
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// `firedrill drill` on `scenarios`, read until its first quiet period has
/// begun (the stack is up and the loads run): the child, the rest of its
/// output, and the lines so far.
async fn spawn_drill(scenarios: &[&str]) -> (tokio::process::Child, Lines, Vec<String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["drill", "--images", "offline"])
        .args(scenarios)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line()).await
    {
        let started = l.contains("expect_quiet");
        seen.push(l);
        if started {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("expect_quiet")),
        "the drill did not start: {seen:?}"
    );
    (child, lines, seen)
}

/// `firedrill down --run ID`, which must succeed.
fn down_run(run_id: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["down", "--run", run_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The run id a drill's output names.
fn run_id_of(output: &str) -> String {
    output
        .split("(run ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the run id is reported")
        .to_string()
}

/// The command lines of the processes whose parent is `pid`.
fn children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

/// Processes whose command line runs firedrill's load (the old child
/// process design): none may exist, whatever killed a drill.
fn firedrill_loads() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("firedrill") && cmd.contains(" load ") {
            out.push(cmd);
        }
    }
    out
}

/// SIGKILL gives the drill no chance to clean up: its containers stay
/// until `firedrill down`, but its load dies with it (it runs in the drill's
/// process), so nothing goes on sending.
#[tokio::test]
async fn sigkill_leaves_no_load_behind() {
    let _alone = alone().await;
    let (mut child, _rest, seen) = spawn_drill(&["scenarios/high-error-rate.yaml"]).await;
    let run_id = run_id_of(&seen.join("\n"));
    assert_eq!(children(child.id().unwrap()), Vec::<String>::new());
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    assert_eq!(firedrill_loads(), Vec::<String>::new());
    // The run's backend still runs (nothing tore it down): it must see no
    // more requests.
    let docker = firedrill::stack::connect().await.unwrap();
    let backend = docker
        .inspect_container(&format!("firedrill-{run_id}-backend"), None)
        .await
        .unwrap();
    let port = backend.network_settings.unwrap().ports.unwrap()["8000/tcp"]
        .as_ref()
        .unwrap()[0]
        .host_port
        .clone()
        .unwrap();
    let served = || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    // Requests already on the wire are still served, later on a busy
    // machine: the count must settle (still for 3 s, within 30 s). The
    // drill's load (20/s) would move it at every look.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (mut last, mut still) = (served().await, 0);
    while still < 6 {
        assert!(
            std::time::Instant::now() < give_up,
            "a load outlived its drill: the backend still counts requests ({last})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = served().await;
        (last, still) = (now, if now == last { still + 1 } else { 0 });
    }
    assert!(last > 0.0, "the load had reached the backend");
    down_run(&run_id);
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default()
    );
}

/// A load whose target never answers: the drill cannot establish that its
/// load is warm, so it judges nothing and ends INCONCLUSIVE (exit 3, a
/// JUnit `<error>`), not FAILED: the stack broke no promise.
#[tokio::test]
async fn a_load_that_gets_no_answer_is_inconclusive() {
    let _alone = alone().await;
    let ws = Workspace::new();
    let f = ws.scenario(
        "no-answer",
        "steps:\n  - chaos: {fixture: backend, set: {hang: true}}\n  - load: {target: backend, path: /api/health, rate: 5/s}\n  - expect_quiet: {for: 30s}\n",
    );
    let junit = ws.path("r.xml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["drill", "--images", "offline"])
        .arg(&f)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("INCONCLUSIVE no-answer"), "{stdout}");
    assert!(stdout.contains("no answer within"), "{stdout}");
    assert!(stdout.contains("1 step(s) not run"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<error") && !xml.contains("<failure"), "{xml}");
}

/// The alert a fault should provoke is already firing: the baseline never
/// calms, so the fault would prove nothing. INCONCLUSIVE with the evidence,
/// after a retry on the reset stack that finds the same.
#[tokio::test]
async fn a_baseline_that_never_calms_is_inconclusive_even_on_a_retry() {
    let ws = Workspace::new();
    let f = ws.scenario(
        "never-calm",
        "steps:\n  - chaos: {stop: backend}\n  - expect_alert: {name: BackendDown, labels: {job: backend}}\n  - chaos: {pause: node-exporter}\n  - expect_alert: {name: BackendDown, labels: {job: backend}}\n",
    );
    let _alone = alone().await;
    let opts = Options::default().images(ImageSource::Offline).retries(1);
    let r = firedrill::suite::run_one(&f, &opts)
        .await
        .expect("the drill runs");
    println!("{}", r.render());
    assert_eq!(r.verdict, Verdict::Inconclusive);
    let calm = r.steps.last().unwrap();
    assert_eq!(
        (calm.kind, calm.status),
        (StepKind::Calm, Status::Inconclusive)
    );
    assert!(calm.message.contains("BackendDown"), "{}", calm.message);
    assert!(calm.message.contains("Firing"), "{}", calm.message);
    assert_eq!(r.not_run, 2);
    assert_eq!(r.attempts.len(), 1, "retried once");
    assert_eq!(r.attempts[0].verdict, Verdict::Inconclusive);
    assert_eq!(
        r.attempts[0].run_id, r.run_id,
        "the retry ran on the reset stack"
    );
    let docker = firedrill::stack::connect().await.unwrap();
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&r.run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default()
    );
}

/// `firedrill down` removes what a killed run (no teardown at all) left.
#[tokio::test]
async fn down_removes_leftovers_by_label() {
    let _alone = alone().await;
    let docker = firedrill::stack::connect().await.unwrap();
    let run_id = format!("test-down-{}", std::process::id());
    docker
        .create_network(bollard::network::CreateNetworkOptions {
            name: format!("firedrill-{run_id}"),
            labels: [(firedrill::stack::RUN_LABEL.to_string(), run_id.clone())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    docker
        .create_volume(bollard::volume::CreateVolumeOptions {
            name: format!("firedrill-{run_id}-disk"),
            driver: "local".to_string(),
            labels: [(firedrill::stack::RUN_LABEL.to_string(), run_id.clone())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers {
            networks: 1,
            volumes: 1,
            ..Default::default()
        }
    );
    down_run(&run_id);
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default()
    );
}

/// postgres_exporter's `pg_up` renamed in the rule: PostgresqlDown can never fire.
#[tokio::test]
async fn postgres_down_renamed_metric_fails() {
    let ws = Workspace::new();
    ws.patch(
        "stack/seed-002/prometheus/alert_rules.yml",
        r#"expr: pg_up{job="postgres"} == 0"#,
        r#"expr: postgres_up{job="postgres"} == 0"#,
    );
    assert_fails(&ws, "postgres-down", "expect_alert", &["returns no series"]).await;
}

/// PostgresqlTooManyConnections counting only active connections: a leaking
/// pool's connections are idle, so the drill's 85 held connections never
/// make it fire, and the drill fails at that alert.
#[tokio::test]
async fn postgres_connections_counted_only_when_active_fails() {
    let ws = Workspace::new();
    ws.patch(
        "stack/seed-002/prometheus/alert_rules.yml",
        r#"sum by (instance) (pg_stat_activity_count{job="postgres"})"#,
        r#"sum by (instance) (pg_stat_activity_count{job="postgres",state="active"})"#,
    );
    assert_fails(
        &ws,
        "postgres-connections",
        "expect_alert",
        &["PostgresqlTooManyConnections"],
    )
    .await;
}

/// Seed 002's prometheus.yml as written scrapes PostgreSQL's own port, which
/// speaks no HTTP: the drill stops at bring-up and names the target.
#[tokio::test]
async fn seed_002_target_on_the_postgres_port_fails_at_bring_up() {
    let ws = Workspace::new();
    ws.patch(
        "stack/seed-002/prometheus/prometheus.yml",
        "- targets: ['postgres_exporter:9187']",
        "- targets: ['postgre:5432']",
    );
    let r = run(&ws.path("scenarios/postgres-down.yaml"), true).await;
    assert!(!r.passed(), "{}", r.render());
    let e = r.error.as_deref().expect("bring-up fails");
    assert!(e.contains("http://postgre:5432/metrics"), "{e}");
    assert!(r.steps.is_empty(), "no step runs on a stack that is not up");
}

/// A panel of the seed's dashboard reads a renamed metric: expect_dashboards
/// fails and names the panel.
#[tokio::test]
async fn high_error_rate_panel_without_data_fails() {
    let ws = Workspace::new();
    ws.patch(
        "stack/grafana/dashboards/ft_transcendence.json",
        r#""expr": "process_resident_memory_bytes{job=\"backend\"}""#,
        r#""expr": "process_resident_memory{job=\"backend\"}""#,
    );
    assert_fails(
        &ws,
        "high-error-rate",
        "expect_dashboards",
        &["1 failed", "NO DATA"],
    )
    .await;
}

/// A dashboard exported from someone else's Grafana: its saved variables
/// name their job (`checkout-api`) and instances, not this stack's. Grafana
/// asks Prometheus again when it opens it, and so does the drill: chained
/// variables (`$instance` after `$job`), a regex, a panel repeated per
/// instance. Every panel Grafana would fill has data; then a panel whose
/// query is really wrong fails, named.
const EXPORTED: &str = r#"{
  "__inputs": [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}],
  "title": "Service overview (exported)",
  "schemaVersion": 39,
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus",
     "current": {"text": "Prometheus-prod", "value": "Prometheus-prod"}},
    {"name": "job", "type": "query", "datasource": "${DS_PROMETHEUS}",
     "query": "label_values(http_request_duration_seconds_count, job)",
     "refresh": 2, "sort": 1, "regex": "/^(?!alertmanager)(.*)$/",
     "current": {"text": "checkout-api", "value": "checkout-api"},
     "options": [{"text": "checkout-api", "value": "checkout-api"}]},
    {"name": "instance", "type": "query", "datasource": "${DS_PROMETHEUS}",
     "query": {"query": "label_values(up{job=\"$job\"}, instance)", "refId": "instance"},
     "refresh": 2, "multi": true, "includeAll": true, "regex": "/(?<value>[^:]+:\\d+)/",
     "current": {"text": ["10.3.7.12:8000"], "value": ["10.3.7.12:8000"]}}
  ]},
  "panels": [
    {"type": "timeseries", "title": "Requests ($job)", "datasource": "${DS_PROMETHEUS}",
     "targets": [{"refId": "A", "expr": "sum(rate(http_request_duration_seconds_count{job=\"$job\", instance=~\"$instance\"}[$__rate_interval]))"}]},
    {"type": "stat", "title": "Up $instance", "repeat": "instance", "datasource": "${DS_PROMETHEUS}",
     "targets": [{"refId": "A", "expr": "up{job=\"$job\", instance=~\"$instance\"}"}]}
  ]
}"#;

/// The exported dashboard beside the seed's, drilled under load.
///
/// Working: with it, Alertmanager's own overview from its mixin
/// (tests/data/realworld): `$job` saved empty, `$integration` saved All,
/// two panels repeated per integration. HighErrorRate fires and its card
/// goes to Teams, so the msteams latency panel has data once Prometheus has
/// scraped Alertmanager since (a minute, 6 s at ×0.1); the latency of an
/// integration that sent nothing is a quantile of nothing, drawn empty by
/// Grafana too, and excused.
///
/// Broken: the exported dashboard's repeated panel reads a label this stack
/// lacks, and the Prometheus mixin's dashboard is beside it: every query of
/// it asks `cluster=~".+"` (its All value), and no series here has a
/// `cluster` label, so Grafana would show each panel empty.
async fn exported_dashboard(broken: bool) -> DrillReport {
    let ws = Workspace::new();
    let mut dashboard = EXPORTED.to_string();
    let upstream = if broken {
        dashboard = dashboard.replace(
            r#"up{job=\"$job\", instance=~\"$instance\"}"#,
            r#"up{job=\"$job\", instance=~\"$instance\", env=\"prod\"}"#,
        );
        assert!(dashboard.contains("env="), "the broken query is in");
        "prometheus-mixin/prometheus.json"
    } else {
        "alertmanager-mixin/alertmanager-overview.json"
    };
    std::fs::write(ws.path("stack/grafana/dashboards/exported.json"), dashboard).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/realworld");
    let name = Path::new(upstream).file_name().unwrap();
    std::fs::copy(
        from.join(upstream),
        ws.path("stack/grafana/dashboards").join(name),
    )
    .unwrap();
    let steps = if broken {
        // 3 % of requests fail (HighErrorRate needs 5 %): the seed's 5xx
        // panel has data for sure, and no alert fires.
        "steps:\n  - load: {target: backend, path: /api/users, rate: 20/s}\n  - chaos: {fixture: backend, set: {error_ratio: 0.03, error_status: 503}}\n  - expect_dashboards: {}\n"
    } else {
        "steps:\n  - load: {target: backend, path: /api/users, rate: 20/s}\n  - chaos: {fixture: backend, set: {error_ratio: 0.3, error_status: 503}}\n  - expect_alert: {name: HighErrorRate, labels: {service: backend}}\n  - expect_teams: {alert: HighErrorRate, status: firing}\n  - wait: {for: 1m}\n  - expect_dashboards:\n      expect_empty:\n        - {name: '$integration: Notification Duration', reason: only an integration that sent something has a latency}\n"
    };
    run(&ws.scenario("exported-dashboard", steps), true).await
}

#[tokio::test]
async fn an_exported_dashboard_shows_this_stack_as_grafana_would() {
    let r = exported_dashboard(false).await;
    assert!(r.passed(), "{}", r.render());
    let mine: Vec<_> = r
        .panels
        .iter()
        .filter(|p| p.dashboard == "exported.json")
        .collect();
    assert!(
        mine.iter()
            .all(|p| p.variables.contains("job=backend") && p.variables.contains("instance=")),
        "{mine:#?}"
    );
    // The repeated panel: once per instance of the job.
    assert!(
        mine.iter()
            .any(|p| p.panel == "Up $instance" && p.variables.contains("instance=backend:8000")),
        "{mine:#?}"
    );
    // Alertmanager's overview: `$job` found live, each panel repeated per
    // integration Alertmanager has, and every target of a panel checked
    // under its own refId (the mixin names none: Grafana gives A, B, C).
    let am: Vec<_> = r
        .panels
        .iter()
        .filter(|p| p.dashboard == "alertmanager-overview.json")
        .collect();
    assert!(
        am.iter().all(|p| p.variables.contains("job=alertmanager")),
        "{am:#?}"
    );
    let latency = |integration: &str| {
        am.iter()
            .filter(|p| {
                p.panel == "$integration: Notification Duration"
                    && p.variables.ends_with(&format!("integration={integration}"))
            })
            .map(|p| {
                (
                    p.ref_id.as_str(),
                    matches!(p.verdict, panels::Verdict::Data { .. }),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        latency("msteams"),
        [("A", true), ("B", true), ("C", true)],
        "{am:#?}"
    );
    assert!(latency("email").iter().all(|(_, data)| !data), "{am:#?}");
    assert!(
        am.iter()
            .filter(|p| p.panel != "$integration: Notification Duration")
            .all(|p| matches!(p.verdict, panels::Verdict::Data { .. })),
        "{am:#?}"
    );

    let r = exported_dashboard(true).await;
    let f = r
        .steps
        .iter()
        .find(|s| s.status == Status::Fail)
        .expect("a failed step");
    assert_eq!(f.kind.name(), "expect_dashboards", "{}", f.message);
    let mixin: Vec<_> = r
        .panels
        .iter()
        .filter(|p| p.dashboard == "prometheus.json")
        .collect();
    assert!(
        mixin.len() >= 15 && mixin.iter().all(|p| p.verdict == panels::Verdict::NoData),
        "{mixin:#?}"
    );
    assert!(
        f.message.contains(&format!("{} failed", mixin.len() + 1))
            && f.message.contains("Up $instance")
            && f.message.contains("Prometheus Stats")
            && f.message.contains("NO DATA"),
        "{}",
        f.message
    );
}

/// HighLatencyP95's threshold cut to 1 ms: it fires under the ordinary load
/// of the high-error-rate drill, whose steps all pass; the false-alert guard
/// fails the drill and names it.
#[tokio::test]
async fn high_error_rate_false_alert_fails() {
    let ws = Workspace::new();
    ws.patch("stack/prometheus/rules.yml", ") > 0.5\n", ") > 0.001\n");
    let r = run(&ws.path("scenarios/high-error-rate.yaml"), false).await;
    assert!(!r.passed(), "{}", r.render());
    assert!(
        r.unexpected_alerts
            .iter()
            .any(|a| a.starts_with("HighLatencyP95")),
        "{:?}",
        r.unexpected_alerts
    );
    assert!(r.render().contains("false alert: HighLatencyP95"));
}

/// Without the fault the card is posted, and `status: lost` fails.
#[tokio::test]
async fn teams_lost_fails_when_the_card_is_posted() {
    let ws = Workspace::new();
    ws.patch(
        "scenarios/teams-429-lost.yaml",
        "fault: {status: 429}",
        "fault: {delay: 1ms}",
    );
    assert_fails(
        &ws,
        "teams-429-lost",
        "expect_teams",
        &["to be lost; it was posted"],
    )
    .await;
}

/// DESIGN §6: the same drill at ×1 and at ×0.1 gives the same timeline once
/// scaled: each phase after detection (expression true → pending → firing →
/// Teams) agrees within one evaluation interval of the ×1 stack. Detection
/// itself depends on where the fault falls in the scrape cycle, so it is
/// only bounded, not compared.
#[tokio::test]
async fn time_scale_keeps_the_timeline() {
    let ws = Workspace::new();
    let scenario = |scale: &str| {
        format!(
            "name: scale-{scale}\nstack: ../stack/stack.yaml\ntime_scale: {scale}\nsteps:\n  - load: {{target: backend, path: /api/health, rate: 5/s}}\n  - expect_quiet: {{for: 15s}}\n  - chaos: {{stop: backend}}\n  - expect_alert: {{name: BackendDown, labels: {{job: backend}}}}\n  - expect_teams: {{alert: BackendDown, status: firing}}\n"
        )
    };
    let mut phases = Vec::new();
    for scale in ["1", "0.1"] {
        let f = ws.path(&format!("scenarios/scale-{scale}.yaml"));
        std::fs::write(&f, scenario(scale)).unwrap();
        // The timeline is compared across two runs: measured alone.
        let r = {
            let _alone = alone().await;
            run_held(&f, true).await
        };
        assert!(r.passed(), "{}", r.render());
        let b = &r.breakdowns[0];
        let s = |a: Option<chrono::DateTime<chrono::Utc>>,
                 z: Option<chrono::DateTime<chrono::Utc>>| {
            (z.unwrap() - a.unwrap()).num_milliseconds() as f64 / 1000.0
        };
        let k: f64 = scale.parse().unwrap();
        phases.push([
            s(b.expr_true_at, b.pending_at) / k,
            s(b.pending_at, b.firing_at) / k,
            s(b.firing_at, b.teams_at) / k,
            s(b.fault_at, b.teams_at) / k,
        ]);
    }
    // The ×1 stack evaluates every 15 s and scrapes every 15 s.
    let (eval, scrape) = (15.0, 15.0);
    let names = ["expr true → pending", "pending → firing", "firing → Teams"];
    for (i, name) in names.iter().enumerate() {
        let (one, tenth) = (phases[0][i], phases[1][i]);
        println!("{name}: ×1 {one:.2}s, ×0.1 scaled {tenth:.2}s");
        assert!(
            (one - tenth).abs() <= eval,
            "{name}: ×1 took {one:.2}s, ×0.1 took {tenth:.2}s once scaled"
        );
    }
    let (one, tenth) = (phases[0][3], phases[1][3]);
    println!("fault → Teams: ×1 {one:.2}s, ×0.1 scaled {tenth:.2}s");
    assert!(
        (one - tenth).abs() <= eval + scrape,
        "fault → Teams: ×1 {one:.2}s, ×0.1 {tenth:.2}s once scaled"
    );
}

/// BackendDown rewritten to fire when the backend is up: the baseline is
/// not quiet, and expect_quiet fails, naming the alert.
#[tokio::test]
async fn alert_firing_at_baseline_fails_expect_quiet() {
    let ws = Workspace::new();
    ws.patch(
        "stack/prometheus/rules.yml",
        r#"expr: up{job="backend"} == 0"#,
        r#"expr: up{job="backend"} == 1"#,
    );
    ws.scenario(
        "quiet",
        "steps:\n  - load: {target: backend, path: /api/health, rate: 5/s}\n  - expect_quiet: {for: 5m}\n",
    );
    assert_fails(&ws, "quiet", "expect_quiet", &["BackendDown", "is firing"]).await;
}

/// A `keep_firing_for: 10m` added to BackendDown: the alert lingers after
/// the undo longer than the scenario accepts, and expect_resolved fails at
/// once.
#[tokio::test]
async fn backend_down_lingering_alert_fails_expect_resolved() {
    let ws = Workspace::new();
    ws.patch(
        "stack/prometheus/rules.yml",
        "expr: up{job=\"backend\"} == 0\n        for: 1m\n",
        "expr: up{job=\"backend\"} == 0\n        for: 1m\n        keep_firing_for: 10m\n",
    );
    ws.patch(
        "scenarios/backend-down.yaml",
        "expect_resolved: {name: BackendDown, labels: {job: backend}}",
        "expect_resolved: {name: BackendDown, labels: {job: backend}, within: 2m}",
    );
    assert_fails(
        &ws,
        "backend-down",
        "expect_resolved",
        &["to resolve after the undo", "keep_firing_for"],
    )
    .await;
}

/// Teams fails for 10 minutes (1 min at ×0.1), longer than the 3 minutes of
/// lateness the scenario accepts: expect_teams fails and says the card was
/// refused.
#[tokio::test]
async fn teams_outage_longer_than_allowed_fails() {
    let ws = Workspace::new();
    ws.patch(
        "scenarios/teams-5xx-late.yaml",
        "fault: {status: 503, for: 3m}",
        "fault: {status: 503, for: 10m}",
    );
    assert_fails(
        &ws,
        "teams-5xx-late",
        "expect_teams",
        &["refused", "HTTP 503"],
    )
    .await;
}

/// A suite shares one stack per stack file: a drill that fails half-way
/// leaves the backend stopped and BackendDown fired and notified; the reset
/// puts the stack back, and the same alert fires and reaches Teams again in
/// the next drill within group_wait, as on a fresh stack (a stale
/// Alertmanager group would hold it until group_interval).
#[tokio::test]
async fn a_shared_stack_is_reset_between_drills() {
    let _alone = alone().await;
    let ws = Workspace::new();
    let leaves = ws.scenario(
        "leaves-backend-down",
        "steps:\n  - expect_quiet: {for: 30s}\n  - chaos: {stop: backend}\n  - expect_alert: {name: BackendDown, labels: {job: backend}}\n  - expect_teams: {alert: BackendDown, status: firing}\n  - expect_alert: {name: HighErrorRate, within: 1s}\n",
    );
    // No stack can fire HighErrorRate in 1 s: the last step fails, and
    // fail-fast leaves the backend stopped.
    let opts = Options::default()
        .images(ImageSource::Offline)
        .fail_fast(true);
    let files = [leaves, ws.path("scenarios/backend-down.yaml")];
    let reports = firedrill::suite::run(&files, &opts)
        .await
        .expect("the suite runs");
    for r in &reports {
        println!("{}", r.render());
    }
    let (first, second) = (&reports[0], &reports[1]);
    assert!(!first.passed(), "the first drill must fail half-way");
    assert_eq!(first.steps.last().unwrap().status, Status::Fail);
    assert!(second.passed(), "the drill after a reset must pass");
    assert_eq!(first.run_id, second.run_id, "one stack for both");
    assert!(first.fresh_stack && !second.fresh_stack);
    let docker = firedrill::stack::connect().await.unwrap();
    assert_eq!(
        firedrill::stack::leftovers(&docker, Some(&first.run_id))
            .await
            .unwrap(),
        firedrill::stack::Leftovers::default()
    );
}

/// Seed 000's container, GPU and host drills on rules written for other
/// exporters: cAdvisor selected by the kubelet's `container` label and
/// dcgm-exporter by `pod`, labels that a standalone cAdvisor (official or
/// firedrill's stand-in) and dcgm-exporter outside Kubernetes do not have,
/// and host memory by node_exporter's names before 0.16 (no `_bytes`).
/// Each drill must fail at its first such alert, saying its rule matches
/// nothing. One stack for all seven, as the suite shares it.
#[tokio::test(flavor = "multi_thread")]
async fn seed_000_container_gpu_and_host_drills_fail_on_rules_for_other_exporters() {
    let ws = Workspace::new();
    let rules = ws.path("stack/seed-000/prometheus/rules/alerts.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let broken = text
        .replace(r#"{name!=""}"#, r#"{container!=""}"#)
        .replace(r#"{name="vllm"}"#, r#"{container="vllm"}"#)
        .replace(r#"{name="tts"}"#, r#"{container="tts"}"#)
        .replace(
            "DCGM_FI_DEV_XID_ERRORS",
            r#"DCGM_FI_DEV_XID_ERRORS{pod!=""}"#,
        )
        .replace("node_memory_MemAvailable_bytes", "node_memory_MemAvailable");
    assert_ne!(text, broken);
    std::fs::write(&rules, broken).unwrap();
    // (scenario, the first alert it expects from a container or GPU rule)
    let drills = [
        ("ai-llm-down", "ContainerMissing"),
        ("ai-container-oom", "ContainerHighMemory"),
        ("ai-container-cpu", "ContainerHighCpu"),
        ("ai-llm-container", "ContainerMemoryNoLimit"),
        ("ai-host-cpu", "TtsContainerMemoryHigh"),
        ("ai-gpu", "GpuXidError"),
        ("ai-host-full", "HostHighMemory"),
    ];
    // Twice as compressed as the reference drills: a rule that matches
    // nothing fails as surely at ×0.05, in half the time.
    for (s, _) in &drills {
        let rel = format!("scenarios/{s}.yaml");
        ws.patch(&rel, "time_scale: 0.1\n", "time_scale: 0.05\n");
    }
    let paths: Vec<PathBuf> = drills
        .iter()
        .map(|(s, _)| ws.path(&format!("scenarios/{s}.yaml")))
        .collect();
    let _alone = alone().await;
    let opts = Options::default()
        .images(ImageSource::Offline)
        .fail_fast(true);
    let reports = firedrill::suite::run(&paths, &opts)
        .await
        .expect("the suite runs");
    assert_eq!(reports.len(), drills.len());
    for (scenario, alert) in drills {
        let r = reports
            .iter()
            .find(|r| r.scenario == scenario)
            .expect("a report per drill");
        println!("{}", r.render());
        // Where containers can have a GPU, the fixture's GPU drill is not
        // run (the real exporter plays dcgm-exporter): skipped, and said.
        if r.verdict == firedrill::Verdict::Skipped {
            let why = r.skipped.as_deref().unwrap_or_default();
            assert!(
                scenario == "ai-gpu" && why.contains("GPU"),
                "{scenario}: {why}"
            );
            continue;
        }
        assert!(!r.passed(), "{scenario} must fail on the broken rules");
        let f = r
            .steps
            .iter()
            .find(|s| s.status == Status::Fail)
            .expect("a failed step");
        assert_eq!(f.kind.name(), "expect_alert", "{scenario}: {}", f.message);
        for needle in [alert, "returns no series"] {
            assert!(
                f.message.contains(needle),
                "{scenario}: `{needle}` missing from: {}",
                f.message
            );
        }
    }
}

/// The capacity drill passes on the app as it is (4 workers, at most
/// 400/s): its knee is found, each step says what the service's own
/// histogram and Prometheus answered against the client, what the app
/// used, and which alerts rang at which rate. With chaos cutting the
/// workers to two (200/s at most), the same gate fails: a capacity
/// regression is caught.
#[tokio::test]
async fn capacity_gate_fails_when_workers_are_cut() {
    let ws = Workspace::new();
    // The knee is the machine's: measured with no other drill beside it.
    let r = {
        let _alone = alone().await;
        run_held(&ws.path("scenarios/capacity.yaml"), false).await
    };
    assert!(r.passed(), "{}", r.render());
    let b = &r.benches[0];
    let knee = b.knee_rps.expect("a knee");
    assert!((300.0..=500.0).contains(&knee), "knee {knee}");
    assert!(
        b.steps.iter().any(|s| !s.holds),
        "the SLO must break by 500/s"
    );
    let first = &b.steps[0];
    assert!(first.target.cpu_cores.is_some() && first.target.rss_mib.is_some());
    let p50 = first
        .truth
        .iter()
        .find(|t| t.quantile == 0.5 && t.family == "http_request_duration_seconds")
        .expect("the service's histogram against the client");
    assert!(p50.client_ms > 0.0 && p50.dashboard_ms > 0.0, "{p50:?}");
    assert!(
        b.steps
            .iter()
            .flat_map(|s| &s.truth)
            .any(|t| t.prometheus_ms.is_some()),
        "Prometheus' quantiles for the steps"
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""knee_rps":"#), "{json}");
    let xml = firedrill::report::junit(std::slice::from_ref(&r));
    assert!(
        xml.contains(&format!(r#"name="bench.0.knee_rps" value="{knee:.1}""#)),
        "{xml}"
    );
    assert!(r.render().contains("bench http://"), "{}", r.render());
    ws.patch(
        "scenarios/capacity.yaml",
        "  - bench:",
        "  - chaos: {fixture: app, set: {workers: 2, route: /work}}\n  - bench:",
    );
    // The regressed bench loads the machine: alone too.
    let _alone = alone().await;
    let r = run_held(&ws.path("scenarios/capacity.yaml"), true).await;
    assert_eq!(
        r.steps
            .iter()
            .find(|s| s.status == Status::Fail)
            .map(|s| s.kind.name()),
        Some("expect_capacity")
    );
    assert!(failed_step(&r).contains("300.0/s"), "{}", failed_step(&r));
}

/// `firedrill init` writes a drill per alert of seed 001 from its rules;
/// each validates, and the latency one (the threshold doubled, on the
/// histogram's quantile) passes on the stack: the generated fault really
/// fires the alert, its card arrives, and the undo resolves it.
#[tokio::test]
async fn a_drill_generated_from_the_rules_passes() {
    let ws = Workspace::new();
    let out = ws.path("generated");
    let w = firedrill::init::write_drills(&ws.path("stack/stack.yaml"), &out).unwrap();
    assert_eq!(w.files.len(), 3, "{:?}", w.unclassified);
    assert!(w.unclassified.is_empty(), "{:?}", w.unclassified);
    for f in &w.files {
        firedrill::Scenario::load(f, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let r = run(&out.join("high-latency-p95.yaml"), false).await;
    assert!(r.passed(), "{}", r.render());
}

/// Seed 001's Compose layout (tests/data/compose, written from its seed)
/// through `firedrill init --compose`: the stack reads the project's own
/// Prometheus, Alertmanager and Grafana files, the backend (a build of its
/// own) is a fixture inferred from the rules and the dashboard, and every
/// generated drill passes: each alert fires, its card reaches the Teams
/// mock through the Compose secret's path, and it resolves.
#[tokio::test]
async fn a_compose_project_imported_passes_its_generated_drills() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/data/compose/seed-001"), dir.path());
    let out = dir.path().join("firedrill");
    let done = firedrill::init::import::import(
        &dir.path().join("docker-compose.yml"),
        &out,
        Default::default(),
    )
    .unwrap();
    assert!(done.unmapped.is_empty(), "{:?}", done.unmapped);
    assert_eq!(done.drills.files.len(), 3, "{:?}", done.drills.unclassified);
    // As a user runs them: one suite, the drills sharing the stack.
    let _alone = alone().await;
    let opts = Options::default().images(ImageSource::Offline);
    let reports = firedrill::suite::run(&done.drills.files, &opts)
        .await
        .unwrap();
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert!(r.passed(), "{}", r.render());
    }
}

/// `firedrill up` keeps the stack; `chaos RUN` stops the backend, `watch
/// RUN` sees BackendDown go pending, then firing, then its card; `down`
/// removes every container. A fault that is not set (the backend left
/// running) shows no such change: the watch can fail.
#[tokio::test]
async fn a_kept_stack_takes_chaos_by_hand_and_is_watched() {
    let _alone = alone().await;
    let docker = firedrill::stack::connect().await.unwrap();
    let images = firedrill::images::ensure(&docker, ImageSource::Offline)
        .await
        .unwrap();
    let up = firedrill::live::up(&docker, &images, Path::new("stack/stack.yaml"), 0.1)
        .await
        .unwrap();
    let id = up.run_id.clone();
    let watch = |secs: u64| {
        let (docker, id) = (docker.clone(), id.clone());
        async move {
            let mut seen = Vec::new();
            firedrill::live::watch(
                &docker,
                &id,
                std::time::Duration::from_secs(secs),
                |_, e| seen.push(e),
                std::future::pending::<()>(),
            )
            .await
            .map(|_| seen)
        }
    };
    // Each step's outcome is kept, and the run removed, before any assert.
    let calm = watch(12).await;
    let stop = firedrill::live::parse_action("stop backend").unwrap();
    let line = firedrill::live::chaos(&docker, &id, &stop).await;
    let fire = watch(40).await;
    firedrill::stack::sweep(&docker, Some(&id)).await.unwrap();
    assert!(up.urls.iter().any(|(s, _, _)| s == "prometheus"), "{up:?}");
    assert_eq!(line.unwrap(), "stop backend");
    let (calm, fire) = (calm.unwrap(), fire.unwrap());
    let left = firedrill::stack::leftovers(&docker, Some(&id))
        .await
        .unwrap();
    assert_eq!(left.containers + left.networks, 0, "{left:?}");
    use firedrill::live::Event;
    let backend_down = |e: &Event, to: &str| matches!(e, Event::Alert { alert, to: t, .. } if alert.starts_with("BackendDown{") && *t == to);
    assert!(!calm.iter().any(|e| backend_down(e, "pending")), "{calm:?}");
    assert!(fire.iter().any(|e| backend_down(e, "pending")), "{fire:?}");
    assert!(fire.iter().any(|e| backend_down(e, "firing")), "{fire:?}");
    assert!(
        fire.iter()
            .any(|e| matches!(e, Event::Card { title, .. } if title.contains("BackendDown"))),
        "{fire:?}"
    );
    // The run is gone: acting on it is refused with why.
    let e = firedrill::live::chaos(&docker, &id, &stop)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is it up?"), "{e}");
}

/// A stack docker-compose started (tests/data/attach), removed whatever
/// the test's outcome.
struct ComposeStack {
    project: String,
    env: Vec<(String, String)>,
}

impl ComposeStack {
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("docker-compose")
            .args([
                "-p",
                &self.project,
                "-f",
                "tests/data/attach/docker-compose.yml",
            ])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("docker-compose runs (.ci/run installs it)")
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        self.run(&["down", "-v", "--remove-orphans", "-t", "2"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `drill --attach`: a stack docker-compose brought up (firedrill's images,
/// its own files) is drilled as it runs: chaos stops the backend's
/// container found by Compose's labels, BackendDown fires and its card
/// reaches the stack's Teams mock; with the mock left out of the attach
/// file, delivery is judged by Alertmanager's own counter, and said so;
/// with no fault set, the same drill fails. The stack is left as it was.
#[tokio::test]
async fn a_stack_started_by_docker_compose_is_drilled_attached() {
    let _alone = alone().await;
    let docker = firedrill::stack::connect().await.unwrap();
    let images = firedrill::images::ensure(&docker, ImageSource::Offline)
        .await
        .unwrap();
    let ports: Vec<(&str, u16)> = ["prometheus", "alertmanager", "backend", "teams"]
        .into_iter()
        .map(|s| (s, free_port()))
        .collect();
    let mut env: Vec<(String, String)> = ports
        .iter()
        .map(|(s, p)| (format!("{}_PORT", s.to_uppercase()), p.to_string()))
        .collect();
    env.push((
        "PROMETHEUS_IMAGE".into(),
        images.pinned[&firedrill::spec::stack::Kind::Prometheus].clone(),
    ));
    env.push((
        "ALERTMANAGER_IMAGE".into(),
        images.pinned[&firedrill::spec::stack::Kind::Alertmanager].clone(),
    ));
    env.push(("FIREDRILL_IMAGE".into(), images.firedrill.clone()));
    let project = format!("fdattach{:08x}", rand_u32());
    let stack = ComposeStack {
        project: project.clone(),
        env,
    };
    let up = stack.run(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let attach = |name: &str, with_teams: bool| {
        let mut text = format!(
            "stack: {}\nproject: {project}\nservices:\n",
            std::fs::canonicalize("tests/data/attach/stack.yaml")
                .unwrap()
                .display()
        );
        for (s, p) in &ports {
            if with_teams || *s != "teams" {
                text.push_str(&format!("  {s}: {{port: {p}}}\n"));
            }
        }
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let scenario = PathBuf::from("tests/data/attach/scenarios/backend-down.yaml");
    let drill = |file: PathBuf, scenario: PathBuf| async move {
        let opts = Options::default().attach(Some(file));
        let mut r = firedrill::suite::run(&[scenario], &opts).await.unwrap();
        let r = r.pop().unwrap();
        println!("{}", r.render());
        for s in &r.steps {
            println!("{}", s.line());
        }
        r
    };
    let with_mock = drill(attach("attach.yaml", true), scenario.clone()).await;
    let by_counter = drill(attach("no-mock.yaml", false), scenario.clone()).await;
    let quiet = dir.path().join("no-fault.yaml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(&quiet, text.replace("  - chaos: {stop: backend}\n", "")).unwrap();
    let no_fault = drill(attach("attach.yaml", true), quiet.clone()).await;
    let no_fault_counted = drill(attach("no-mock.yaml", false), quiet).await;
    // A drill that stops the backend and never starts it: it fails, and
    // the backend is put back as it was found.
    let undone = dir.path().join("never-undone.yaml");
    std::fs::write(&undone, text.replace("  - chaos: {start: backend}\n", "")).unwrap();
    let never_undone = drill(attach("attach.yaml", true), undone).await;
    // Compose's containers are still running: attaching removes nothing,
    // and what a drill stopped is started again.
    let ps = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&ps.stdout).lines().count();
    drop(stack);
    assert_eq!(left, 4, "the attached stack's containers stay up");
    assert!(with_mock.passed(), "{}", with_mock.render());
    let card = step_message(&with_mock, StepKind::ExpectTeams);
    assert!(card.contains("firing card for BackendDown"), "{card}");
    assert!(by_counter.passed(), "{}", by_counter.render());
    let counted = step_message(&by_counter, StepKind::ExpectTeams);
    assert!(
        counted.contains("no Teams mock in reach") && counted.contains("msteams notification"),
        "{counted}"
    );
    let resolved = by_counter
        .steps
        .iter()
        .rfind(|s| s.kind == StepKind::ExpectTeams)
        .map(|s| s.message.clone())
        .unwrap_or_default();
    assert!(resolved.contains("since the last card"), "{resolved}");
    // Without a fault, no card and no notification: both ways fail.
    let unsent = step_message(&no_fault_counted, StepKind::ExpectTeams);
    assert!(unsent.contains("sent no msteams notification"), "{unsent}");
    assert!(!no_fault.passed(), "{}", no_fault.render());
    assert!(!never_undone.passed(), "{}", never_undone.render());
    assert_eq!(never_undone.restored, ["backend: started again"]);
    assert!(
        failed_step(&no_fault).contains("expect_alert"),
        "{}",
        no_fault.render()
    );
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}

/// The message of the first step of `kind`.
fn step_message(r: &DrillReport, kind: StepKind) -> String {
    r.steps
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| s.message.clone())
        .unwrap_or_default()
}

/// The first step that did not pass, as its line.
fn failed_step(r: &DrillReport) -> String {
    r.steps
        .iter()
        .find(|s| s.status != Status::Pass)
        .map(|s| s.line())
        .unwrap_or_default()
}

/// A copy of tests/data/container (a team's own service built from its
/// Dockerfile), to break.
fn container_stack() -> Workspace {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/data/container"), dir.path());
    Workspace { dir }
}

/// `kind: container`: the team's image is built from its context with its
/// arguments, run with its command, files, limits and restart policy, ready
/// by its own HEALTHCHECK; restart and stop fire their alerts, which reach
/// Teams and resolve.
#[tokio::test]
async fn a_team_container_is_built_run_and_drilled() {
    let ws = container_stack();
    let r = run(&ws.path("scenarios/queue.yaml"), false).await;
    assert!(r.passed(), "{}", r.render());
    let docker = firedrill::stack::connect().await.unwrap();
    let images = docker
        .list_images(Some(bollard::image::ListImagesOptions::<String> {
            filters: [("reference".into(), vec!["firedrill/build-queue".into()])].into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let labels = images.first().expect("the built image").labels.clone();
    assert_eq!(
        labels
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("2.4.1"),
        "the build argument reached the build"
    );
}

/// Without the file copied in, the guard on it fires: the baseline is not quiet.
#[tokio::test]
async fn a_container_missing_its_config_file_fails() {
    let ws = container_stack();
    ws.patch(
        "stack.yaml",
        "      /etc/queue/textfile/queue.prom: textfile/queue.prom",
        "      /etc/queue/elsewhere/queue.prom: textfile/queue.prom",
    );
    let r = run(&ws.path("scenarios/queue.yaml"), true).await;
    assert!(!r.passed(), "{}", r.render());
    let f = failed_step(&r);
    assert!(
        f.contains("expect_quiet") && f.contains("QueueDepthUnknown"),
        "{f}"
    );
}

/// A healthcheck that never passes, and a build that fails: each stops the
/// drill before any step with its cause, and nothing of the run is left.
#[tokio::test]
async fn a_container_that_never_gets_healthy_or_fails_to_build_stops_the_bring_up() {
    let ws = container_stack();
    ws.patch("stack.yaml",
        "    restart: unless-stopped\n",
        "    restart: unless-stopped\n    healthcheck: {test: [\"CMD\", \"/bin/node_exporter\", \"--no-such-flag\"], interval: 1s, retries: 2}\n",
    );
    let r = run(&ws.path("scenarios/queue.yaml"), true).await;
    let e = r.error.as_deref().expect("the bring-up fails");
    assert!(
        e.contains("queue is unhealthy") && e.contains("no-such-flag"),
        "{e}"
    );
    assert!(r.steps.is_empty(), "no step runs on a stack that is not up");

    let ws = container_stack();
    ws.patch(
        "queue/Dockerfile",
        "COPY build_info.prom",
        "COPY build-info.prom",
    );
    let r = run(&ws.path("scenarios/queue.yaml"), true).await;
    let e = r.error.as_deref().expect("the build fails");
    assert!(e.contains("services.queue: building its image"), "{e}");
    assert!(e.contains("build-info.prom"), "the engine's own words: {e}");
    assert!(r.steps.is_empty());
}
