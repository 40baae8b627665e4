//! The main job, as a user types it: `firedrill drill scenarios/` through
//! the CLI, every reference drill of every reference stack, with JSON and
//! JUnit results. Each must pass, with its timeline measured, and the Teams
//! fault drills must show what really happens to a card.
//!
//! Docker is required: without it this test fails, it never skips.

use serde_json::Value;
use std::process::Command;

fn firedrill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firedrill"))
}

/// The first step of `scenario` of `kind` whose message holds `needle`.
fn says(reports: &[Value], scenario: &str, kind: &str, needle: &str) {
    let r = reports
        .iter()
        .find(|r| r["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no report for {scenario}"));
    let found = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == kind && s["message"].as_str().unwrap_or("").contains(needle));
    assert!(found, "{scenario}: no {kind} step says `{needle}`: {r:#}");
}

#[test]
fn every_reference_drill_passes_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    let out = firedrill()
        .args(["drill", "scenarios/", "--images", "offline", "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .expect("firedrill runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the main job failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scenarios = std::fs::read_dir("scenarios").unwrap().count();
    assert_eq!(reports.len(), scenarios, "one report per scenario");
    for r in &reports {
        let name = r["scenario"].as_str().unwrap();
        assert_eq!(r["verdict"], "passed", "{name}");
        assert!(r["error"].is_null(), "{name}: {}", r["error"]);
        // Each load ran in this process, was warm before anything was
        // judged, and held its rate.
        let steps = r["steps"].as_array().unwrap();
        if steps.iter().any(|s| s["kind"] == "load") {
            assert!(
                steps.iter().any(|s| s["kind"] == "warm"),
                "{name}: no warm-up"
            );
        }
        for l in r["loads"].as_array().unwrap() {
            assert!(l["answered"].as_u64().unwrap() > 0, "{name}: {l}");
            assert_eq!(l["dropped"], 0, "{name}: {l}");
        }
        assert_eq!(r["unexpected_alerts"], serde_json::json!([]), "{name}");
        assert!(r["lower_bound"].as_f64().unwrap() > 0.0, "{name}");
        assert!(
            r["wall"].as_f64().unwrap() >= r["lower_bound"].as_f64().unwrap(),
            "{name}: faster than its lower bound"
        );
        // Every alert whose card was posted has its timeline measured in
        // Prometheus (Alertmanager's own time is its updatedAt, which each
        // resend moves: it is reported when it precedes the card, not required).
        for b in r["breakdowns"].as_array().unwrap() {
            if b["teams_at"].is_null() {
                continue;
            }
            for k in ["fault_at", "expr_true_at", "pending_at", "firing_at"] {
                assert!(!b[k].is_null(), "{name}: {} has no {k}", b["alert"]);
            }
        }
    }
    // One stack per stack file, reset between waves; drills that cannot
    // disturb each other ran side by side, and passed.
    let distinct = |k: &str| {
        reports
            .iter()
            .map(|r| r[k].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(
        distinct("run_id"),
        distinct("stack"),
        "a stack per stack file"
    );
    assert!(
        reports
            .iter()
            .any(|r| !r["beside"].as_array().unwrap().is_empty()),
        "no drill ran beside another"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="0""#), "{xml}");
    assert_eq!(
        xml.matches("<testsuite ").count(),
        scenarios,
        "a JUnit suite per drill"
    );
    assert!(stdout.contains("sum of lower bounds"), "{stdout}");
    assert!(
        stdout.contains("0 failed, 0 inconclusive, 0 flaky"),
        "{stdout}"
    );
    // What each Teams fault does to the card.
    says(
        &reports,
        "teams-5xx-late",
        "expect_teams",
        "refused attempt(s)",
    );
    says(
        &reports,
        "teams-5xx-late",
        "expect_teams",
        " late (allow_late",
    );
    says(
        &reports,
        "teams-429-lost",
        "expect_teams",
        r#"alertmanager_notifications_failed_total{integration="msteams",reason="clientError"}"#,
    );
    says(
        &reports,
        "teams-429-lost",
        "expect_teams",
        "posted after 1 refused attempt(s)",
    );
    says(
        &reports,
        "teams-200-error-lost",
        "expect_teams",
        "Alertmanager counted it as sent",
    );
    // Dashboards were checked under load, panel by panel.
    says(
        &reports,
        "high-error-rate",
        "expect_dashboards",
        "with data",
    );
}
