//! Bad input is refused with file, line and column before any container
//! starts: malformed scenarios, unknown names, broken rule files and profiles.

use firedrill::report::render_spec_errors;
use firedrill::spec::scenario::Scenario;
use std::path::Path;
use std::process::Command;

/// A temporary copy of these folders of the repository, to break.
fn copy_of(dirs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in dirs {
        assert!(Command::new("cp")
            .arg("-r")
            .arg(d)
            .arg(dir.path())
            .status()
            .unwrap()
            .success());
    }
    dir
}

fn error_of(file: &str) -> String {
    let e = Scenario::load(Path::new(file), None).expect_err("must be refused");
    render_spec_errors(&e)
}

/// The error of a scenario with `steps` (YAML lines) on reference stack
/// `stack`, written in `dir` as `s.yaml`.
fn steps_error(dir: &Path, stack: &str, steps: &str) -> String {
    let f = dir.join("s.yaml");
    let stack = std::fs::canonicalize(stack).unwrap();
    let text = format!("name: s\nstack: {}\nsteps:\n{steps}", stack.display());
    std::fs::write(&f, text).unwrap();
    error_of(f.to_str().unwrap())
}

#[test]
fn unknown_step() {
    insta::assert_snapshot!(error_of("tests/data/bad/unknown-step.yaml"));
}

#[test]
fn unknown_service() {
    insta::assert_snapshot!(error_of("tests/data/bad/unknown-service.yaml"));
}

#[test]
fn unknown_alert_suggests_the_closest() {
    insta::assert_snapshot!(error_of("tests/data/bad/unknown-alert.yaml"));
}

#[test]
fn malformed_duration() {
    insta::assert_snapshot!(error_of("tests/data/bad/bad-duration.yaml"));
}

#[test]
fn unknown_route_of_the_fixture() {
    insta::assert_snapshot!(error_of("tests/data/bad/unknown-route.yaml"));
}

#[test]
fn every_reference_scenario_is_valid() {
    for f in firedrill::suite::scenario_files(&["scenarios".into()]).unwrap() {
        firedrill::drill::check(&f, None).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
    }
}

/// A stack whose rule file has invalid PromQL and a glob matching nothing.
#[test]
fn broken_rule_files_are_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        "global: {scrape_interval: 15s}\nrule_files: [rules.yml, 'missing/*.yml']\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m]) > 1\n        for: 1m\n",
    )
    .unwrap();
    let e = firedrill::spec::prometheus::Prometheus::load(&dir.path().join("prometheus.yml"))
        .unwrap_err();
    let msgs: Vec<String> = e
        .errors
        .iter()
        .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("2:25: rule_files pattern `missing/*.yml` matches no file")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("5:15: invalid PromQL")),
        "{msgs:?}"
    );
}

/// The CLI refuses bad input with exit code 2 before it talks to Docker:
/// DOCKER_HOST points nowhere, so reaching Docker would be another error.
#[test]
fn cli_refuses_before_any_container() {
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args([
            "drill",
            "scenarios/backend-down.yaml",
            "tests/data/bad/unknown-alert.yaml",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "tests/data/bad/unknown-alert.yaml:5:26: no alerting rule is named `BackendDwn`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Docker"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[test]
fn cli_fixture_check() {
    let ok = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["fixture", "check", "fixtures/backend.yaml"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("p.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string("fixtures/backend.yaml")
            .unwrap()
            .replace("type: histogram", "type: histogramm"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["fixture", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("p.yaml:11:11: families[0].type: unknown variant `histogramm`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A malformed dashboard of the stack stops a drill before any container.
#[test]
fn malformed_dashboard_refuses_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["stack", "fixtures", "scenarios"] {
        let out = Command::new("cp")
            .arg("-r")
            .arg(d)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(out.success());
    }
    let dash = dir
        .path()
        .join("stack/grafana/dashboards/ft_transcendence.json");
    let text = std::fs::read_to_string(&dash).unwrap();
    std::fs::write(&dash, text.replacen("\"panels\": [", "\"panels\": [,", 1)).unwrap();
    let e = firedrill::drill::check(&dir.path().join("scenarios/backend-down.yaml"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ft_transcendence.json:18:") && e.contains("invalid JSON"),
        "{e}"
    );
}

/// Every error of a stack's broken fixture profile is reported, not the first only.
#[test]
fn all_profile_errors_reach_the_stack() {
    let dir = copy_of(&["stack", "fixtures"]);
    let p = dir.path().join("fixtures/backend.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .replace("[0.005, 0.01, 0.025", "[0.01, 0.005, 0.025")
        .replace("error_ratio: 0.002", "error_ratio: 2");
    std::fs::write(&p, text).unwrap();
    let e = firedrill::spec::stack::Stack::load(&dir.path().join("stack/stack.yaml")).unwrap_err();
    let msgs: Vec<&str> = e.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].contains("must increase strictly") && msgs[1].contains("between 0 and 1"),
        "{msgs:?}"
    );
}

/// A secret with two sources, in seed 002's stack, is located at its line.
#[test]
fn secret_with_two_sources_is_located() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("cp")
        .arg("-r")
        .arg("stack")
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    let p = dir.path().join("stack/seed-002/stack.yaml");
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "        generated: postgres-password\n",
        "        generated: postgres-password\n        env: PGPASSWORD\n",
        1,
    );
    std::fs::write(&p, text).unwrap();
    let e = firedrill::spec::stack::Stack::load(&p).unwrap_err();
    let out = render_spec_errors(&e);
    assert!(
        out.contains("exactly one of `teams_mock`, `env` or `generated`"),
        "{out}"
    );
    assert!(out.contains("stack.yaml:25:13"), "the secret's line: {out}");
}

/// The error of a scenario `s.yaml` on the seed-001 stack whose lines after
/// `name` and `stack` are `rest`.
fn error_of_scenario(rest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.yaml");
    let stack = std::fs::canonicalize("stack/stack.yaml").unwrap();
    std::fs::write(&f, format!("name: s\nstack: {}\n{rest}", stack.display())).unwrap();
    error_of(f.to_str().unwrap())
}

/// An excused panel or allowed alert must exist in the stack.
#[test]
fn unknown_excused_panel_and_allowed_alert_are_located() {
    let out = error_of_scenario(
        "steps:\n  - expect_dashboards:\n      expect_empty:\n        - {panel: Request rate total (reqs/s), reason: none}\nallow_alerts:\n  - {alert: BackendDwn, reason: flaky}\n",
    );
    assert!(
        out.contains("no dashboard of the stack has a panel `Request rate total (reqs/s)`")
            && out.contains("did you mean `Request rate total (req/s)`"),
        "{out}"
    );
    assert!(out.contains("s.yaml:6:11"), "{out}");
    assert!(
        out.contains("`BackendDwn`") && out.contains("did you mean `BackendDown`"),
        "{out}"
    );
}

/// A load under 1/s cannot be throttled: refused where it is written.
#[test]
fn load_bounds_and_shapes_are_located() {
    // The open-model engine holds fractional rates: 30/m is valid now.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ok.yaml");
    let stack = std::fs::canonicalize("stack/stack.yaml").unwrap();
    std::fs::write(
        &f,
        format!(
            "name: ok\nstack: {}\nsteps:\n  - load: {{target: backend, path: /api/users, rate: 30/m}}\n",
            stack.display()
        ),
    )
    .unwrap();
    Scenario::load(&f, None).expect("30/m is a rate the engine holds");
    let out = error_of_scenario(
        "steps:\n  - load: {target: backend, path: /api/users, rate: 2000000/s}\n",
    );
    assert!(
        out.contains("s.yaml:4:") && out.contains("above the engine's bound"),
        "{out}"
    );
    let out = error_of_scenario(
        "steps:\n  - load: {target: backend, rate: 5/s, ramp: {to: 9/s, over: 1m}, spike: {rate: 50/s, at: 1m, for: 5s}}\n",
    );
    assert!(
        out.contains("s.yaml:4:") && out.contains("one shape"),
        "{out}"
    );
    let out = error_of_scenario("steps:\n  - load: {target: backend, rate: 0/s}\n");
    assert!(out.contains("must be positive"), "{out}");
}

/// Container limits, names and a crash loop with nowhere to loop are
/// refused where they are written, in seed 000's stack and a scenario on it.
#[test]
fn container_limits_names_and_crash_loops_are_located() {
    let dir = copy_of(&["stack", "fixtures"]);
    let p = dir.path().join("stack/seed-000/stack.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replacen("    mem_limit: 256MiB\n", "    mem_limit: 1MiB\n", 1)
        .replacen("    cpus: 0.5\n", "    cpus: 0\n", 1)
        .replacen("container_name: stt\n", "container_name: tts\n", 1);
    std::fs::write(&p, text).unwrap();
    let out = render_spec_errors(&firedrill::spec::stack::Stack::load(&p).unwrap_err());
    for needle in [
        "Docker's smallest memory limit is 6MiB",
        "a CPU limit is a number of cores above 0",
        "another service is already named `tts`",
    ] {
        assert!(out.contains(needle), "`{needle}` missing: {out}");
    }
    // A crash loop on a service that Docker does not restart.
    let out = steps_error(
        dir.path(),
        "stack/seed-000/stack.yaml",
        "  - chaos: {fixture: tts, set: {crash_loop: 3}}\n",
    );
    assert!(out.contains("`tts` has no restart policy"), "{out}");
    assert!(out.contains("s.yaml:4:"), "located: {out}");
}

/// Volumes: a host path, an undeclared volume, a tmpfs without a size, a
/// bind through driver options; a synthetic host's bad memory and disk; a
/// disk fill asked of a fixture that plays no host. Each located.
#[test]
fn volumes_and_synthetic_hosts_are_located() {
    let dir = copy_of(&["stack", "fixtures"]);
    let p = dir.path().join("stack/seed-000/stack.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replacen(
            "volumes: [host-proc:/host/proc:ro, host-disk:/rootfs/data:ro]",
            "volumes: [/proc:/host/proc:ro, host-disks:/rootfs/data:ro]",
            1,
        )
        .replacen("o: size=1m}", "o: nr_inodes=10}", 1)
        .replacen(
            "host-disk: {driver_opts: {type: tmpfs, device: tmpfs, o: \"size=64m,nr_inodes=4096\"}}",
            "host-disk: {driver_opts: {type: none, device: /var, o: bind}}",
            1,
        );
    std::fs::write(&p, text).unwrap();
    let host = dir.path().join("fixtures/host.yaml");
    let text = std::fs::read_to_string(&host)
        .unwrap()
        .replacen("memory: 1GiB", "memory: 16GiB", 1)
        .replacen("device: /dev/vdb", "device: /dev/my disk", 1);
    std::fs::write(&host, text).unwrap();
    let out = render_spec_errors(&firedrill::spec::stack::Stack::load(&p).unwrap_err());
    for needle in [
        "`/proc` is a path of this machine",
        "no volume `host-disks` in the stack's `volumes`",
        "did you mean `host-disk`?",
        "a tmpfs volume needs a size",
        "no path of this machine",
        "a synthetic host has 64MiB to 8GiB of memory",
        "host.yaml:",
        "a mount table field",
    ] {
        assert!(out.contains(needle), "`{needle}` missing: {out}");
    }
    // A disk fill asked of a fixture with no synthetic host.
    let out = steps_error(
        dir.path(),
        "stack/seed-000/stack.yaml",
        "  - chaos: {fixture: tts, set: {disk_used: 1MiB}}\n",
    );
    assert!(out.contains("plays no host with a disk"), "{out}");
    assert!(out.contains("s.yaml:4:"), "located: {out}");
}

/// Held connections: on a service that is not PostgreSQL, beyond the bound,
/// and with neither a count nor a reset. Each located.
#[test]
fn postgres_connections_are_bounded_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let out = steps_error(
        dir.path(),
        "stack/seed-002/stack.yaml",
        "  - chaos: {postgres: teams, connections: 5}\n  - chaos: {postgres: postgre, connections: 5000}\n  - chaos: {postgres: postgre}\n",
    );
    for needle in [
        "s.yaml:4:",
        "`teams` is not a postgres service",
        "s.yaml:5:",
        "1 to 1000 connections",
        "s.yaml:6:",
        "`postgres` takes either `connections: N` or `reset: true`",
    ] {
        assert!(out.contains(needle), "`{needle}` missing: {out}");
    }
}

#[test]
fn gpu_chaos_is_bounded_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let out = steps_error(
        dir.path(),
        "stack/seed-000/stack.yaml",
        "  - chaos: {gpu: prometheus, saturate: sm}\n  - chaos: {gpu: dcgm-exporter, saturate: vram, fill: 100}\n  - chaos: {gpu: dcgm-exporter, saturate: sm, fill: 50}\n  - chaos: {gpu: dcgm-exporter, saturate: sm, for: 2h}\n  - chaos: {fixture: host, saturate: sm}\n",
    );
    for needle in [
        "s.yaml:4:",
        "`prometheus` is not a dcgm-exporter service",
        "s.yaml:5:",
        "fill is 1 to 99",
        "s.yaml:6:",
        "fill is for `saturate: vram`",
        "s.yaml:7:",
        "a GPU load lasts at most 1h",
        "s.yaml:8:",
        "`saturate`, `fill` and `for` go with `gpu",
    ] {
        assert!(out.contains(needle), "`{needle}` missing: {out}");
    }
    // An unknown load is refused where it is written, before the rest.
    let out = steps_error(
        dir.path(),
        "stack/seed-000/stack.yaml",
        "  - chaos: {gpu: dcgm-exporter, saturate: tensor}\n",
    );
    assert!(
        out.contains("s.yaml:4:") && out.contains("sm") && out.contains("vram"),
        "{out}"
    );
}

/// A log is plain text: no colour codes when stderr is not a terminal, nor
/// on one when NO_COLOR is set.
#[test]
fn logs_have_no_colour_codes_off_a_terminal() {
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["lint", "stack/stack.yaml", "--live", "http://127.0.0.1:1"])
        .env("FIREDRILL_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG"), "no log to look at: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a log: {err:?}");
}

/// Cutting workers needs a route with a capacity, and a count in bounds;
/// each refusal names the line.
#[test]
fn workers_chaos_needs_a_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let e = steps_error(
        dir.path(),
        "stack/stack.yaml",
        "  - chaos: {fixture: backend, set: {workers: 2}}\n  - chaos: {fixture: backend, set: {workers: 0, route: /api/health}}\n",
    );
    assert!(
        e.contains("s.yaml:4:")
            && e.contains("no route of profile `backend` it applies to has a `capacity`"),
        "{e}"
    );
    assert!(
        e.contains("s.yaml:5:") && e.contains("workers is between 1 and 4096"),
        "{e}"
    );
}

/// A bench names a fixture route, rates that go up within the engine's
/// bound, and an SLO it knows; `expect_capacity` needs a bench before it.
/// Each refusal names the line, before any container starts.
#[test]
fn a_bench_is_checked_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let e = steps_error(
        dir.path(),
        "stack/capacity/stack.yaml",
        concat!(
            "  - expect_capacity: {at_least: 300/s}\n",
            "  - bench: {target: app, path: /nowhere, slo: {p99: 250ms}, from: 100/s, to: 500/s}\n",
            "  - bench: {target: app, path: /work, slo: {p99: 250ms}, from: 500/s, to: 100/s,\n",
            "            steps: 1}\n",
            "  - bench: {target: prometheus, slo: {p99: 1s}, from: 1/s, to: 2/s}\n",
        ),
    );
    for (line, want) in [
        (
            "s.yaml:4:",
            "expect_capacity judges the knee of a `bench` step before it",
        ),
        ("s.yaml:5:", "fixture `app` serves no route `/nowhere`"),
        ("s.yaml:6:", "rates go up: from 500/s to 100/s"),
        ("s.yaml:7:", "steps is 2 to 50"),
        ("s.yaml:8:", "`prometheus` is not a fixture"),
    ] {
        assert!(e.contains(line) && e.contains(want), "{line} {want}:\n{e}");
    }
    let e = steps_error(
        dir.path(),
        "stack/capacity/stack.yaml",
        "  - bench: {target: app, path: /work, slo: {p95: 250ms}, from: 1/s, to: 2/s}\n",
    );
    assert!(
        e.contains("s.yaml:4:") && e.contains("p50, p90, p99 or errors"),
        "{e}"
    );
}

/// An attach file is checked against its stack before anything is
/// touched: a service the stack lacks, and a Prometheus with no port, are
/// named at their line and column; `drill --attach` exits 2 with them.
#[test]
fn an_attach_file_is_checked_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("attach.yaml");
    let stack = std::fs::canonicalize("tests/data/attach/stack.yaml").unwrap();
    let text = format!(
        "stack: {}\nservices:\n  alertmanager: {{port: 9093}}\n  backnd: {{port: 8000}}\n",
        stack.display()
    );
    std::fs::write(&f, text).unwrap();
    let e = firedrill::spec::attach::Attach::load(&f).expect_err("must be refused");
    let text = render_spec_errors(&e);
    assert!(
        text.contains("attach.yaml:4:3") && text.contains("no service `backnd`"),
        "{text}"
    );
    assert!(
        text.contains("attach.yaml:2:") && text.contains("`prometheus` needs its port"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["drill", "--attach"])
        .arg(&f)
        .arg("tests/data/attach/scenarios")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no service `backnd`"), "{err}");
    // A valid file, and a scenario that would remove one of the user's
    // containers: refused at the step, before anything is touched.
    let text = format!(
        "stack: {}\nservices:\n  prometheus: {{port: 9}}\n  alertmanager: {{port: 9}}\n",
        stack.display()
    );
    std::fs::write(&f, text).unwrap();
    let sc = dir.path().join("remove.yaml");
    std::fs::write(
        &sc,
        format!(
            "name: r\nstack: {}\nsteps:\n  - chaos: {{remove: backend}}\n",
            stack.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["drill", "--attach"])
        .arg(&f)
        .arg(&sc)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("remove.yaml:4:10") && err.contains("cannot be made again"),
        "{err}"
    );
}

/// A `kind: container` service is checked with the stack: no port and no
/// image, a build context with no Dockerfile, a file to copy that does not
/// exist, a healthcheck Docker cannot run, a secret with two destinations,
/// container keys on the Teams mock and a config file on a container; each
/// at its line and column.
#[test]
fn a_container_service_is_checked_before_it_runs() {
    let dir = copy_of(&["tests/data/container"]);
    let stack = dir.path().join("container/stack.yaml");
    let text = std::fs::read_to_string(&stack).unwrap();
    let text = text
        .replace("      context: queue\n", "      context: prometheus\n")
        .replace(
            "      /etc/queue/textfile/queue.prom: textfile/queue.prom\n",
            "      /etc/queue/textfile/queue.prom: textfile/missing.prom\n    healthcheck: {test: [\"/bin/true\"]}\n    secrets: [{path: /run/a, var: A, env: A}]\n",
        )
        + "  teams2:\n    kind: teams-mock\n    image: x/y:1\n  worker:\n    kind: container\n    config: w.yml\n";
    std::fs::write(&stack, text).unwrap();
    let e = firedrill::spec::stack::Stack::load(&stack).expect_err("must be refused");
    let text = render_spec_errors(&e);
    for (at, says) in [
        ("stack.yaml:21:5", "no Dockerfile in the build context"),
        ("stack.yaml:31:39", "textfile/missing.prom does not exist"),
        ("stack.yaml:32:19", "a healthcheck test is"),
        ("stack.yaml:33:15", "exactly one of `path`"),
        (
            "stack.yaml:39:12",
            "`image` is for `kind: container` services",
        ),
        ("stack.yaml:40:3", "needs `image`"),
        ("stack.yaml:40:3", "needs `port`"),
        ("stack.yaml:42:13", "a container takes no `config`"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(at) && l.contains(says)),
            "{at} {says}:\n{text}"
        );
    }
}
