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
    let mut skipped = Vec::new();
    for r in &reports {
        let name = r["scenario"].as_str().unwrap();
        if r["verdict"] == "skipped" {
            // Only a GPU drill, where the machine lacks what it needs, saying so.
            let why = r["skipped"].as_str().unwrap_or_default();
            assert!(why.contains("GPU"), "{name} skipped: {why}");
            skipped.push(name);
            continue;
        }
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
    // Where containers can have no GPU the real GPU drill is skipped; where
    // they can, the fixture's: one of the two, never both, never another.
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        ["ai-gpu", "ai-gpu-saturate"].contains(&skipped[0]),
        "{skipped:?}"
    );
    let distinct = |k: &str| {
        reports
            .iter()
            .filter(|r| r["verdict"] != "skipped")
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
    // The HTML report, written beside the JSON, renders in a real browser.
    // A chart per alert measured, and per panel target that drew a line.
    let charts = reports
        .iter()
        .map(|r| {
            let drew = r["panels"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["lines"].as_array().is_some_and(|l| !l.is_empty()))
                .count();
            let loads = r["loads"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["timeline"].as_array().is_some_and(|t| !t.is_empty()))
                .count();
            // A bench: its latency against the rate.
            let benches = r["benches"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["steps"].as_array().is_some_and(|s| !s.is_empty()))
                .count();
            // A load: its rates and its latency.
            r["breakdowns"].as_array().unwrap().len() + drew + 2 * loads + benches
        })
        .sum::<usize>();
    in_chromium(&json.with_extension("html"), charts);
}

/// Opens `page` in headless Chromium (Debian's `chromium`, which .ci/run
/// installs): no console message (the report has no script: any is an
/// error), `charts` SVG charts in the rendered DOM, none of them empty, and
/// a screenshot, kept in target/ for people to look at.
fn in_chromium(page: &std::path::Path, charts: usize) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let chromium = |args: &[&str]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .args(args)
            .arg(&url)
            .output()
            .expect("headless Chromium runs (Debian's `chromium`: .ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = chromium(&["--dump-dom"]);
    let (dom, log) = (
        String::from_utf8_lossy(&dom.stdout).to_string(),
        String::from_utf8_lossy(&dom.stderr).to_string(),
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let svgs: Vec<&str> = dom.split("<svg").skip(1).collect();
    assert_eq!(
        svgs.len(),
        charts,
        "one chart per alert measured and per panel drawn"
    );
    for (i, svg) in svgs.iter().enumerate() {
        let svg = &svg[..svg.find("</svg>").expect("a closed chart")];
        // Besides the background: bars (an alert's timeline) or series
        // (a panel's or a load's lines, drawn thicker than the axes).
        let bars = svg.matches("<rect").count().saturating_sub(1);
        let series = svg.matches(r#"stroke-width="2""#).count();
        assert!(bars + series >= 1, "chart {i} is empty: {svg}");
        assert!(svg.contains("<text"), "chart {i} has no axes: {svg}");
    }
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("firedrill-report.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(&[&shot, "--window-size=1200,2400"]);
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(
        size > 20_000,
        "a blank screenshot ({size} bytes): {}",
        png.display()
    );
    println!("report screenshot: {}", png.display());
}
