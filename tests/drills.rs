//! The reference drills, for real: Prometheus and Alertmanager in containers
//! (offline images), the fixture and the Teams mock. For each drill, three
//! broken-on-purpose stacks that firedrill must report as failed: a rule
//! selecting the wrong job, a webhook pointing to a wrong path, a `for`
//! longer than the scenario's window allows.
//!
//! Docker is required: without it these tests fail, they never skip.

use firedrill::drill::{self, Options};
use firedrill::images::ImageSource;
use firedrill::report::{DrillReport, Status};
use std::path::{Path, PathBuf};
/// Drills are timed: one at a time on a 2-core machine (tokio's mutex works
/// across the tests' separate runtimes).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A copy of the repository's stack, fixtures and scenarios, to break.
struct Workspace {
    dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
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

async fn run(scenario: &Path, fail_fast: bool) -> DrillReport {
    let _serial = SERIAL.lock().await;
    let opts = Options {
        images: ImageSource::Offline,
        fail_fast,
        ..Options::default()
    };
    let report = drill::run(scenario, &opts).await.expect("the drill runs");
    println!("{}", report.render());
    for s in &report.steps {
        println!("{}", s.line());
    }
    // Whatever the verdict, nothing of the run is left.
    let docker = firedrill::docker::connect()
        .await
        .expect("Docker is required for these tests");
    assert_eq!(
        firedrill::stack::run_leftovers(&docker, &report.run_id)
            .await
            .unwrap(),
        (0, 0),
        "run {} left containers or networks",
        report.run_id
    );
    report
}

fn first_failure(r: &DrillReport) -> (String, String) {
    assert!(!r.passed(), "the broken stack must fail:\n{}", r.render());
    let f = r
        .steps
        .iter()
        .find(|s| s.status == Status::Fail)
        .expect("a failed step");
    (f.kind.clone(), f.message.clone())
}

async fn reference(name: &str) {
    let r = run(Path::new(&format!("scenarios/{name}.yaml")), false).await;
    assert!(r.passed(), "{}", r.render());
    assert!(r.error.is_none());
    let b = &r.breakdowns[0];
    for (what, t) in [
        ("expr true", b.expr_true_at),
        ("pending", b.pending_at),
        ("firing", b.firing_at),
        ("teams", b.teams_at),
        ("teams resolved", b.teams_resolved_at),
    ] {
        assert!(t.is_some(), "{what} was not measured:\n{}", r.render());
    }
    assert!(
        r.loads.iter().all(|(_, l)| l.requests > 0),
        "the load sent nothing"
    );
}

#[tokio::test]
async fn backend_down_passes() {
    reference("backend-down").await;
}

#[tokio::test]
async fn high_error_rate_passes() {
    reference("high-error-rate").await;
}

#[tokio::test]
async fn high_latency_p95_passes() {
    reference("high-latency-p95").await;
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

async fn wrong_job(i: usize) {
    let (scenario, from, to) = WRONG_JOB[i];
    let ws = Workspace::new();
    ws.patch("stack/prometheus/rules.yml", from, to);
    let r = run(&ws.path(&format!("scenarios/{scenario}.yaml")), true).await;
    let (kind, msg) = first_failure(&r);
    assert_eq!(kind, "expect_alert", "{msg}");
    assert!(
        msg.contains("firing within") && msg.contains("returns no series"),
        "{msg}"
    );
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
    let r = run(&ws.path(&format!("scenarios/{scenario}.yaml")), true).await;
    let (kind, msg) = first_failure(&r);
    assert_eq!(kind, "expect_teams", "{msg}");
    assert!(msg.contains("expected a firing Teams card"), "{msg}");
    assert!(
        msg.contains("the mock rejected") && msg.contains("HTTP 404"),
        "{msg}"
    );
    assert!(
        msg.contains("alertmanager_notifications_failed_total"),
        "{msg}"
    );
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
    let (scenario, from, to) = LONG_FOR[i];
    let ws = Workspace::new();
    ws.patch("stack/prometheus/rules.yml", from, to);
    let r = run(&ws.path(&format!("scenarios/{scenario}.yaml")), true).await;
    let (kind, msg) = first_failure(&r);
    assert_eq!(kind, "expect_alert", "{msg}");
    assert!(
        msg.contains("the stack as configured allows")
            && msg.contains("the scenario requires within"),
        "{msg}"
    );
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
