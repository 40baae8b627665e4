//! The fixture and the Teams mock over real HTTP on 127.0.0.1, in-process:
//! what Prometheus and Alertmanager see of them, without containers.

use firedrill::fixture::{teams::Mock, Fixture};
use firedrill::observe::{Delivery, TeamsMock};
use firedrill::spec::fixture::Profile;
use serde_json::json;

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
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
    let bad = http
        .post(format!("{base}/webhook/s3cret"))
        .json(&json!({"type":"MessageCard","title":"no text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let wrong = http
        .post(format!("{base}/webhook/other"))
        .json(&card)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 404);
    let elsewhere = http
        .post(format!("{base}/webhookb2/s3cret"))
        .json(&card)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 404);
    let ds: Vec<Delivery> = TeamsMock::new(base).deliveries().await.unwrap();
    let summary: Vec<(String, u16, String)> = ds
        .iter()
        .map(|d| (d.format.clone(), d.http_status, d.status.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("message_card".to_string(), 200, "firing".to_string()),
            ("rejected".into(), 400, String::new()),
            ("rejected".into(), 404, String::new()),
            ("rejected".into(), 404, String::new()),
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
    let set = http
        .put(format!("{base}/-/control"))
        .json(&json!({"error_ratio": 1.0, "error_status": 503, "route": "/api/health"}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    for _ in 0..3 {
        assert_eq!(status(http.get(format!("{base}/api/health"))).await, 503);
    }
    // Other routes keep their profile.
    assert_eq!(status(http.post(format!("{base}/api/login"))).await, 200);
    let state: serde_json::Value = http
        .get(format!("{base}/-/control"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["error_status"], 503);
    http.delete(format!("{base}/-/control"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    assert_eq!(status(http.get(format!("{base}/api/health"))).await, 200);
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"http_request_duration_seconds_count{method="GET",route="/api/health",status_code="200"} 6"#,
        r#"http_requests_total{method="GET",route="/api/health",status_code="503"} 3"#,
        r#"http_requests_total{method="POST",route="/api/login",status_code="200"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert_eq!(status(http.get(format!("{base}/api/nope"))).await, 404);
}
