//! `firedrill init --compose`: the seeds' Compose layouts (tests/data/compose,
//! written from ../shared/seeds) made stacks and drills, with no container.
//! The drills of seed 001 run for real in tests/drills.rs.

mod common;

use common::copy_dir;
use firedrill::init::import::{import, Own};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of a seed's Compose project, with the secret file Compose would
/// read (never committed) holding a webhook URL that must never come out.
struct Project {
    dir: tempfile::TempDir,
}

const URL: &str = "https://example.invalid/webhookb2/never-printed";

impl Project {
    fn new(seed: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&Path::new("tests/data/compose").join(seed), dir.path());
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/teams-webhook-url"), URL).unwrap();
        Project { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn compose(&self) -> PathBuf {
        self.path("docker-compose.yml")
    }
}

/// Every file under `dir`, as text.
fn texts(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(texts(&p));
        } else {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

#[test]
fn seed_001_becomes_a_stack_with_a_drill_per_alert() {
    let p = Project::new("seed-001");
    let out = p.path("firedrill");
    let done = import(&p.compose(), &out, Own::Fixtures).unwrap();
    assert!(done.unmapped.is_empty(), "{:?}", done.unmapped);
    assert_eq!(done.drills.files.len(), 3, "{:?}", done.drills.unclassified);
    assert!(done.drills.unclassified.is_empty());
    // The backend (a build of its own) is a fixture inferred from the rules
    // and the dashboard: the histogram the p95 and error ratio read.
    assert_eq!(done.fixtures, [out.join("fixtures/backend.yaml")]);
    let stack = firedrill::spec::stack::Stack::load(&done.stack).unwrap();
    assert_eq!(stack.doc.name, "ft_transcendence");
    let backend = &stack.fixtures["backend"];
    assert!(backend
        .families
        .iter()
        .any(|f| f.name == "http_request_duration_seconds"));
    // The user's own files, unchanged: the rules (named by an absolute path
    // in the container) and the dashboard are theirs.
    assert_eq!(stack.prometheus.rule_files.len(), 1);
    let text = std::fs::read_to_string(&done.stack).unwrap();
    assert!(text.contains("ops/prometheus/prometheus.yml"), "{text}");
    assert!(text.contains("ops/grafana/dashboards"), "{text}");
    // The Compose secret mounted at the config's webhook_url_file is the
    // Teams mock's URL in a drill.
    assert!(
        text.contains(
            r#"{path: "/etc/alertmanager/secrets/teams-webhook-url", teams_mock: "teams"}"#
        ),
        "{text}"
    );
    for f in &done.drills.files {
        firedrill::Scenario::load(f, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    // No secret of the project ends up in what was written.
    for (f, t) in texts(&out) {
        for secret in [URL, "placeholder"] {
            assert!(!t.contains(secret), "{} holds a secret", f.display());
        }
    }
    // Nothing is overwritten.
    let again = import(&p.compose(), &out, Own::Fixtures)
        .unwrap_err()
        .to_string();
    assert!(again.contains("does not overwrite"), "{again}");
}

#[test]
fn the_cli_prints_what_it_mapped_and_never_the_url() {
    let p = Project::new("seed-001");
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["init", "--compose"])
        .arg(p.compose())
        .arg("--out")
        .arg(p.path("fd"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("fixtures/backend.yaml"), "{text}");
    assert!(text.contains("3 drill(s) written"), "{text}");
    assert!(
        !text.contains(URL) && !text.contains("placeholder"),
        "{text}"
    );
}

/// Compose's interpolation: a required variable left unset is an error at
/// its line and column, before anything is written.
#[test]
fn an_unset_required_variable_is_named_where_it_is_used() {
    let p = Project::new("seed-001");
    std::fs::remove_file(p.path(".env")).unwrap();
    let project = firedrill::init::compose::Project::load_with(&p.compose(), &|_: &str| None);
    let e = project.unwrap_err().to_string();
    assert!(e.contains("DATABASE_URL: set DATABASE_URL in .env"), "{e}");
    assert!(e.contains("docker-compose.yml:14:21"), "{e}");
    // The environment wins over .env, as in Compose.
    let p = Project::new("seed-001");
    let env = |k: &str| (k == "PROMETHEUS_VERSION").then(|| "v2.99.0".to_string());
    let project = firedrill::init::compose::Project::load_with(&p.compose(), &env).unwrap();
    let prom = &project
        .services
        .iter()
        .find(|(n, _)| n == "prometheus")
        .unwrap()
        .1;
    assert_eq!(prom.image.as_deref(), Some("prom/prometheus:v2.99.0"));
}

/// A Teams URL written in clear in alertmanager.yml: the stack reads a
/// copy that takes it from a file (the mock's URL in a drill); the URL is
/// neither copied nor printed.
#[test]
fn a_teams_url_in_clear_is_replaced_by_the_mock() {
    let p = Project::new("seed-001");
    let am = p.path("ops/alertmanager/alertmanager.yml");
    let text = std::fs::read_to_string(&am).unwrap().replace(
        "webhook_url_file: /etc/alertmanager/secrets/teams-webhook-url",
        &format!("webhook_url: {URL}"),
    );
    std::fs::write(&am, text).unwrap();
    let out = p.path("firedrill");
    let done = import(&p.compose(), &out, Own::Fixtures).unwrap();
    assert_eq!(done.rewritten.len(), 1, "{:?}", done.rewritten);
    let stack = firedrill::spec::stack::Stack::load(&done.stack).unwrap();
    let am = stack.alertmanager.expect("alertmanager");
    assert!(
        am.source.path.starts_with(&out),
        "{}",
        am.source.path.display()
    );
    for (f, t) in texts(&out) {
        assert!(!t.contains(URL), "{} holds the URL", f.display());
    }
}

/// A Compose file with no Prometheus is refused with why; one whose
/// service cannot be parsed names its line.
#[test]
fn what_cannot_be_drilled_is_said() {
    let p = Project::new("seed-001");
    let c = p.compose();
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(&c, text.replace("prom/prometheus:", "example/tsdb:")).unwrap();
    let e = import(&c, &p.path("out"), Own::Fixtures)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no prometheus service"), "{e}");
    std::fs::write(
        &c,
        text.replace("    restart: unless-stopped", "    restart: [1, 2]"),
    )
    .unwrap();
    let e = import(&c, &p.path("out2"), Own::Fixtures)
        .unwrap_err()
        .to_string();
    assert!(e.contains("docker-compose.yml:17:5"), "{e}");
    assert!(e.contains("restart"), "{e}");
}

/// Imports a seed's layout straight from tests/data (its config files are
/// the repository's copies of the seed's) into a temporary folder.
fn import_seed(seed: &str) -> (tempfile::TempDir, firedrill::init::import::Imported) {
    let out = tempfile::tempdir().unwrap();
    let compose = Path::new("tests/data/compose")
        .join(seed)
        .join("docker-compose.yml");
    let done = import(&compose, &out.path().join("fd"), Own::Fixtures).unwrap();
    firedrill::spec::stack::Stack::load(&done.stack).unwrap();
    for f in &done.drills.files {
        firedrill::Scenario::load(f, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    (out, done)
}

fn kinds(done: &firedrill::init::import::Imported) -> Vec<(String, String)> {
    let stack = firedrill::spec::stack::Stack::load(&done.stack).unwrap();
    stack
        .doc
        .services
        .iter()
        .map(|(n, s)| (n.clone(), format!("{:?}", s.kind)))
        .collect()
}

/// Seed 000: the apps (built, or images firedrill does not know) are
/// fixtures keeping their container names and limits; the Teams bridge is
/// said to be replaced by the mock; the webhook in .env never comes out.
#[test]
fn seed_000_apps_become_fixtures_and_the_bridge_is_named() {
    let (out, done) = import_seed("seed-000");
    let mut fixtures: Vec<_> = kinds(&done)
        .into_iter()
        .filter(|(_, k)| k == "Fixture")
        .map(|(n, _)| n)
        .collect();
    fixtures.sort();
    assert_eq!(
        fixtures,
        [
            "llm",
            "mcp-external",
            "mcp-internal",
            "qdrant",
            "stt",
            "tts"
        ]
    );
    let text = std::fs::read_to_string(&done.stack).unwrap();
    assert!(
        text.contains("container_name: \"vllm\"\n    cpus: 1.5"),
        "{text}"
    );
    assert!(
        text.contains("mem_limit: 268435456\n    restart: on-failure"),
        "{text}"
    );
    assert_eq!(done.unmapped.len(), 1, "{:?}", done.unmapped);
    assert!(
        done.unmapped[0].1.contains("a bridge to Teams"),
        "{:?}",
        done.unmapped
    );
    for (f, t) in texts(out.path()) {
        assert!(
            !t.contains("never-printed"),
            "{} holds the webhook",
            f.display()
        );
    }
}

/// Seed 002: PostgreSQL and its exporter keep user and database; the
/// password (in .env, and inside the exporter's DSN) becomes one made for
/// the run; services no job scrapes are listed with why.
#[test]
fn seed_002_database_passwords_are_made_for_the_run() {
    let (out, done) = import_seed("seed-002");
    let k = kinds(&done);
    assert!(k.contains(&("postgre".into(), "Postgres".into())), "{k:?}");
    assert!(
        k.contains(&("postgres_exporter".into(), "PostgresExporter".into())),
        "{k:?}"
    );
    let text = std::fs::read_to_string(&done.stack).unwrap();
    assert!(
        text.contains("DATA_SOURCE_URI: \"postgre:5432/app?sslmode=disable\""),
        "{text}"
    );
    assert!(text.contains("generated: postgres-password"), "{text}");
    let mut left: Vec<&str> = done.unmapped.iter().map(|(s, _)| s.as_str()).collect();
    left.sort();
    assert_eq!(left, ["minio", "neo4j", "neo4j_exporter"]);
    assert!(done
        .unmapped
        .iter()
        .all(|(_, why)| why.contains("no scrape job reaches")));
    for (f, t) in texts(out.path()) {
        assert!(
            !t.contains("never-printed"),
            "{} holds the password",
            f.display()
        );
    }
}

/// Seed 003: the ML API is a fixture under the container name cAdvisor's
/// rules select; Alertmanager's config comes from a bound folder, Grafana
/// from the grafana-oss image.
#[test]
fn seed_003_keeps_the_container_name_its_rules_select() {
    let (_out, done) = import_seed("seed-003");
    assert!(done.unmapped.is_empty(), "{:?}", done.unmapped);
    let k = kinds(&done);
    assert!(k.contains(&("grafana".into(), "Grafana".into())), "{k:?}");
    assert!(k.contains(&("cadvisor".into(), "Cadvisor".into())), "{k:?}");
    let text = std::fs::read_to_string(&done.stack).unwrap();
    assert!(text.contains("container_name: \"ml-api\""), "{text}");
    assert!(!done.drills.files.is_empty());
}

/// Seed 004: two apps of their own are fixtures (a rated name with no
/// `_total` is a gauge the app raises, as the seed's exposition has it);
/// the webhook receiver no job scrapes is listed.
#[test]
fn seed_004_two_apps_and_a_receiver_left_out() {
    let (_out, done) = import_seed("seed-004");
    assert_eq!(done.fixtures.len(), 2, "{:?}", done.fixtures);
    assert_eq!(done.unmapped.len(), 1, "{:?}", done.unmapped);
    assert_eq!(done.unmapped[0].0, "coach_ai_webhook");
    let fastapi = std::fs::read_to_string(
        done.fixtures
            .iter()
            .find(|f| f.ends_with("fastapi.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        fastapi.contains("name: openai_cost_total_usd\n  type: gauge"),
        "{fastapi}"
    );
}

/// `--containers`: the team's own services run as they are. Seed 001's
/// backend keeps its build context, port, plain environment and restart
/// policy; its DATABASE_URL (a DSN with a password) becomes a secret read
/// at drill time, its value written nowhere; a service with a healthcheck
/// and a config file keeps both.
#[test]
fn containers_run_the_teams_own_services_as_they_are() {
    let p = Project::new("seed-001");
    let extra = "\n  worker:\n    image: team/worker:1.4\n    command: --queue jobs --verbose\n    expose: [\"9200\"]\n    environment: {API_TOKEN: abc123secret, LOG_LEVEL: info}\n    volumes: [\"./ops/prometheus/rules.yml:/etc/worker/rules.yml:ro\"]\n    healthcheck: {test: [\"CMD\", \"/bin/worker\", \"--check\"], interval: 2s, retries: 5}\n";
    let text = std::fs::read_to_string(p.compose()).unwrap();
    let text = text.replacen("\nservices:\n", &format!("\nservices:{extra}"), 1);
    std::fs::write(p.compose(), text).unwrap();
    let out = p.path("firedrill");
    let done = import(&p.compose(), &out, Own::Containers).unwrap();
    assert!(done.fixtures.is_empty(), "no fixture: {:?}", done.fixtures);
    let stack = firedrill::spec::stack::Stack::load(&done.stack).unwrap();
    let backend = &stack.doc.services["backend"];
    assert_eq!(backend.kind, firedrill::spec::stack::Kind::Container);
    let ctx = backend.build.as_ref().expect("build").spec().context;
    assert!(
        stack.source.relative(&ctx).join("Dockerfile").is_file(),
        "{ctx}"
    );
    assert_eq!(backend.port, Some(8000));
    assert_eq!(
        backend.env.get("NODE_ENV").map(String::as_str),
        Some("production")
    );
    let secret = &backend.secrets[0];
    assert_eq!(
        (secret.var.as_deref(), secret.env.as_deref()),
        (Some("DATABASE_URL"), Some("DATABASE_URL"))
    );
    let worker = &stack.doc.services["worker"];
    assert_eq!(worker.image.as_deref(), Some("team/worker:1.4"));
    assert_eq!(worker.port, Some(9200));
    assert_eq!(worker.args, ["--queue", "jobs", "--verbose"]);
    assert_eq!(worker.secrets[0].var.as_deref(), Some("API_TOKEN"));
    assert_eq!(
        worker.env.get("LOG_LEVEL").map(String::as_str),
        Some("info")
    );
    let rules = stack
        .source
        .relative(&worker.files["/etc/worker/rules.yml"]);
    assert!(
        rules.ends_with("ops/prometheus/rules.yml"),
        "{}",
        rules.display()
    );
    let h = worker.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(h.docker_test(), ["CMD", "/bin/worker", "--check"]);
    assert_eq!(
        (h.interval.map(|d| d.0.as_secs()), h.retries),
        (Some(2), Some(5))
    );
    // Only `stop` fits a container's alerts: the others are listed, with why.
    assert_eq!(done.drills.files.len(), 1, "{:?}", done.drills.unclassified);
    for (f, t) in texts(&out) {
        for secret in ["abc123secret", "placeholder", URL] {
            assert!(!t.contains(secret), "{secret} in {}", f.display());
        }
    }
}
