//! The fixture and the Teams mock over real HTTP on 127.0.0.1, in-process:
//! what Prometheus and Alertmanager see of them, without containers.

use firedrill::fixture::{teams::Mock, Fixture};
use firedrill::observe::{CardFormat, CardStatus, Delivery, TeamsMock};
use firedrill::spec::fixture::Profile;
use serde_json::json;

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// Changes a fixture's behaviour; the answer is what is in force.
async fn set_control(
    http: &reqwest::Client,
    base: &str,
    set: &serde_json::Value,
) -> serde_json::Value {
    let r = http
        .put(format!("{base}/-/control"))
        .json(set)
        .send()
        .await
        .unwrap();
    r.error_for_status().unwrap().json().await.unwrap()
}

/// What a fixture says is in force (`GET /-/control`).
async fn control_state(http: &reqwest::Client, base: &str) -> serde_json::Value {
    http.get(format!("{base}/-/control"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Puts a fixture back to its profile.
async fn reset_control(http: &reqwest::Client, base: &str) {
    http.delete(format!("{base}/-/control"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

async fn serve(router: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn teams_mock_accepts_rejects_and_records() {
    let base = serve(Mock::new("s3cret".into()).router()).await;
    let http = reqwest::Client::new();
    let card = json!({"@context":"http://schema.org/extensions","type":"MessageCard","title":"[FIRING:1] BackendDown",
        "summary":"[FIRING:1] BackendDown","text":"Labels:\n  - alertname = BackendDown\n","themeColor":"8C1A1A"});
    let ok = http
        .post(format!("{base}/webhook/s3cret"))
        .json(&card)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (ok.status().as_u16(), ok.text().await.unwrap()),
        (200, "1".to_string())
    );
    assert_eq!(
        status(
            http.post(format!("{base}/webhook/s3cret"))
                .json(&json!({"type":"MessageCard","title":"no text"}))
        )
        .await,
        400
    );
    assert_eq!(
        status(http.post(format!("{base}/webhook/other")).json(&card)).await,
        404
    );
    assert_eq!(
        status(http.post(format!("{base}/webhookb2/s3cret")).json(&card)).await,
        404
    );
    let ds: Vec<Delivery> = TeamsMock::new(base).deliveries().await.unwrap();
    let summary: Vec<(CardFormat, u16, CardStatus)> = ds
        .iter()
        .map(|d| (d.format, d.http_status, d.status))
        .collect();
    use CardFormat::*;
    assert_eq!(
        summary,
        [
            (MessageCard, 200, CardStatus::Firing),
            (Rejected, 400, CardStatus::Unknown),
            (Rejected, 404, CardStatus::Unknown),
            (Rejected, 404, CardStatus::Unknown),
        ]
    );
    assert_eq!(ds[1].error.as_deref(), Some("Summary or Text is required."));
    // The token is a secret: no record repeats it.
    assert!(!serde_json::to_string(&ds).unwrap().contains("s3cret"));
}

#[tokio::test]
async fn fixture_serves_metrics_and_obeys_its_control_api() {
    let profile = Profile::load(std::path::Path::new("fixtures/backend.yaml")).unwrap();
    let base = serve(Fixture::new(profile).router()).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(status(http.get(format!("{base}/api/health"))).await, 200);
    }
    let set = set_control(
        &http,
        &base,
        &json!({"error_ratio": 1.0, "error_status": 503, "route": "/api/health"}),
    )
    .await;
    assert_eq!(set["error_ratio"], 1.0);
    for _ in 0..3 {
        assert_eq!(status(http.get(format!("{base}/api/health"))).await, 503);
    }
    // Other routes keep their profile.
    assert_eq!(status(http.post(format!("{base}/api/login"))).await, 200);
    let state = control_state(&http, &base).await;
    assert_eq!(state["error_status"], 503);
    reset_control(&http, &base).await;
    assert_eq!(status(http.get(format!("{base}/api/health"))).await, 200);
    let text = metrics_text(&http, &base).await;
    for want in [
        r#"http_request_duration_seconds_count{method="GET",route="/api/health",status_code="200"} 6"#,
        r#"http_requests_total{method="GET",route="/api/health",status_code="503"} 3"#,
        r#"http_requests_total{method="POST",route="/api/login",status_code="200"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert_eq!(status(http.get(format!("{base}/api/nope"))).await, 404);
}

/// The fixture's /metrics page.
async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// A sample of one unlabelled family from the fixture's /metrics.
async fn sample(http: &reqwest::Client, base: &str, family: &str) -> f64 {
    let text = metrics_text(http, base).await;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{family}{{}} ")))
        .unwrap_or_else(|| panic!("no {family} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn backend() -> (reqwest::Client, String) {
    let profile = Profile::load(std::path::Path::new("fixtures/backend.yaml")).unwrap();
    (
        reqwest::Client::new(),
        serve(Fixture::new(profile).router()).await,
    )
}

#[tokio::test]
async fn memory_hog_shows_in_resident_memory() {
    let (http, base) = backend().await;
    let before = sample(&http, &base, "process_resident_memory_bytes").await;
    let st = set_control(&http, &base, &json!({"memory": "96MiB"})).await;
    assert_eq!(st["memory_held_bytes"], 96 << 20);
    let held = sample(&http, &base, "process_resident_memory_bytes").await;
    assert!(
        held - before >= 90.0 * 1024.0 * 1024.0,
        "RSS {before} → {held}"
    );
    reset_control(&http, &base).await;
    let after = sample(&http, &base, "process_resident_memory_bytes").await;
    assert!(
        held - after >= 80.0 * 1024.0 * 1024.0,
        "RSS not released: {held} → {after}"
    );
}

#[tokio::test]
async fn cpu_burn_shows_in_cpu_seconds() {
    let (http, base) = backend().await;
    let before = sample(&http, &base, "process_cpu_seconds_total").await;
    let st = set_control(&http, &base, &json!({"cpu_cores": 1})).await;
    assert_eq!(st["cpu_cores_burning"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let burnt = sample(&http, &base, "process_cpu_seconds_total").await;
    reset_control(&http, &base).await;
    assert!(burnt - before >= 0.3, "CPU seconds {before} → {burnt}");
}

#[tokio::test]
async fn hang_stops_answering_until_undone() {
    let (http, base) = backend().await;
    set_control(&http, &base, &json!({"hang": true})).await;
    let short = |path: &str| {
        http.get(format!("{base}{path}"))
            .timeout(std::time::Duration::from_millis(500))
            .send()
    };
    assert!(short("/api/health").await.unwrap_err().is_timeout());
    assert!(short("/metrics").await.unwrap_err().is_timeout());
    // The control API still answers, and says so.
    let st = control_state(&http, &base).await;
    assert_eq!(st["hung"], true);
    reset_control(&http, &base).await;
    assert_eq!(status(http.get(format!("{base}/api/health"))).await, 200);
}

#[tokio::test]
async fn model_unloaded_answers_503_and_shows_in_model_loaded() {
    let text = "name: ml\nfamilies:\n  - {name: model_loaded, type: gauge, source: model_loaded}\nroutes:\n  - {method: POST, path: /predict, latency: {median: 1ms, p99: 2ms}, needs_model: true}\n";
    let p = Profile::from_source(&firedrill::spec::source::Source::from_text(
        std::path::Path::new("ml.yaml"),
        text.into(),
    ))
    .unwrap();
    let base = serve(Fixture::new(p).router()).await;
    let http = reqwest::Client::new();
    assert_eq!(status(http.post(format!("{base}/predict"))).await, 200);
    assert_eq!(sample(&http, &base, "model_loaded").await, 1.0);
    set_control(&http, &base, &json!({"model_loaded": false})).await;
    assert_eq!(status(http.post(format!("{base}/predict"))).await, 503);
    assert_eq!(sample(&http, &base, "model_loaded").await, 0.0);
}

#[tokio::test]
async fn exit_ends_the_process_with_its_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args([
            "fixture",
            "serve",
            "--profile",
            "fixtures/backend.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/-/ready")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the fixture did not start");
    set_control(&http, &base, &json!({"exit": 3})).await;
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code.code(), Some(3));
}
