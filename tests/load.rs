//! `firedrill load` as a user runs it, against a fixture served on this
//! machine (no Docker): the JSON it writes has the figures it promises, and
//! it refuses to send anywhere but this machine. How fast and how cheaply it
//! holds a rate is measured by `bench/load.sh`, not asserted here.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn firedrill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firedrill"))
}

/// A fixture on a free port of 127.0.0.1, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(profile: &str) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = firedrill()
        .args(["fixture", "serve", "--profile", profile, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Ready when the fixture itself answers over HTTP: a bare connect could
    // reach something else that took the port meanwhile, or the probe's own
    // socket (a TCP self-connect to a port nothing listens on yet).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !try_get(&served.url, "/metrics")
        .is_some_and(|r| r.contains("process_start_time_seconds"))
    {
        assert!(Instant::now() < deadline, "the fixture did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    served
}

/// A plain HTTP/1.0 GET (the body, headers and all).
fn get(url: &str, path: &str) -> String {
    try_get(url, path).expect("the fixture answers")
}

fn try_get(url: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    // A self-connected socket reads its own request back and never ends.
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn load_writes_the_figures_it_promises() {
    let fx = serve("fixtures/backend.yaml");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let out = firedrill()
        .arg("load")
        .arg(format!("{}/api/health", fx.url))
        .args(["--rate", "200/s", "--duration", "2s", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("400 requests"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Every arrival of the schedule is sent and answered.
    assert_eq!(v["requests"], 400, "{v:#}");
    assert_eq!(v["answered"], 400, "{v:#}");
    assert_eq!(v["dropped"], 0, "{v:#}");
    assert_eq!(v["status_codes"]["200"], 400, "{v:#}");
    assert_eq!(v["requested_rate"], 200.0, "{v:#}");
    assert!(v["achieved_rate"].as_f64().unwrap() > 0.0, "{v:#}");
    for view in ["corrected", "uncorrected"] {
        for q in ["p50", "p90", "p99", "max"] {
            let ms = v["latency_ms"][view][q].as_f64().unwrap();
            assert!(ms > 0.0, "{view} {q}: {v:#}");
        }
    }
    // The fixture counted them: the load reached the service for real.
    let metrics = get(&fx.url, "/metrics");
    assert!(
        metrics.contains(
            r#"http_requests_total{method="GET",route="/api/health",status_code="200"} 400"#
        ),
        "{metrics}"
    );
}

#[test]
fn load_goes_to_this_machine_only_and_within_bounds() {
    for (args, why) in [
        (
            vec!["http://10.1.2.3/", "--rate", "1", "--duration", "1s"],
            "this machine only",
        ),
        (
            vec!["http://127.0.0.1:9/", "--rate", "1e9", "--duration", "1s"],
            "outside",
        ),
        (
            vec!["http://127.0.0.1:9/", "--rate", "1", "--duration", "3h"],
            "outside",
        ),
    ] {
        let out = firedrill().arg("load").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// `firedrill bench` on a one-worker route with a queue of two: at 2/s a
/// request never finds the queue full (a stalled machine bunches two at
/// most), at 200/s most are shed (503), so the SLO on errors holds at the
/// first rate and breaks at the second whatever the machine's speed. The knee and each step are in the JSON; a gate above
/// the knee fails the run.
#[test]
fn bench_finds_the_knee_and_gates_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("one-worker.yaml");
    std::fs::write(
        &profile,
        "name: one-worker\nport: 8000\nmetrics_path: /metrics\nfamilies:\n  - {name: process_start_time_seconds, type: gauge, help: Start time., source: process_start_time_seconds}\n  - {name: http_request_duration_seconds, type: histogram, help: Duration., labels: [route, status_code], buckets: [0.005, 0.01, 0.025, 0.05, 0.1], source: request_duration}\nroutes:\n  - {method: GET, path: /work, latency: {exponential: 20ms}, capacity: {workers: 1, queue: 2}}\n",
    )
    .unwrap();
    let fx = serve(profile.to_str().unwrap());
    let json = dir.path().join("bench.json");
    let out = firedrill()
        .arg("bench")
        .arg(format!("{}/work", fx.url))
        .args([
            "--slo",
            "errors=10%",
            "--from",
            "2",
            "--to",
            "200",
            "--steps",
            "2",
        ])
        .args([
            "--refine",
            "0",
            "--step",
            "2s",
            "--at-least",
            "50",
            "--json",
        ])
        .arg(&json)
        .arg("--metrics")
        .arg(format!("{}/metrics", fx.url))
        .args(["--match", "route=/work"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the knee is below 50.0/s"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["knee_rps"], 2.0, "{v:#}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{v:#}");
    assert_eq!(steps[0]["requested_rps"], 2.0, "{v:#}");
    assert_eq!(steps[0]["holds"], true, "{v:#}");
    assert_eq!(steps[0]["error_ratio"], 0.0, "{v:#}");
    assert_eq!(steps[1]["holds"], false, "{v:#}");
    assert!(steps[1]["error_ratio"].as_f64().unwrap() > 0.5, "{v:#}");
    for k in ["achieved_rps", "p99_ms"] {
        assert!(steps[1][k].as_f64().unwrap() > 0.0, "{k}: {v:#}");
    }
    // Dashboard truth: the service's own histogram over each step, each
    // quantile interpolated inside the bucket it names, against the client.
    for step in steps {
        let truth = step["truth"].as_array().expect("truth per step");
        assert_eq!(truth.len(), 3, "{v:#}");
        for t in truth {
            let (lo, hi) = (t["bucket"][0].as_f64().unwrap(), t["bucket"][1].as_f64());
            let ms = t["dashboard_ms"].as_f64().unwrap();
            assert!(t["client_ms"].as_f64().unwrap() > 0.0, "{t}");
            assert!(
                ms >= lo * 1000.0 && hi.is_none_or(|hi| ms <= hi * 1000.0),
                "{t}"
            );
        }
    }
    assert!(stdout.contains("p95 dashboard"), "{stdout}");
}
