//! The suite's plan, pure: which drills share a stack (same stack file and
//! `time_scale`), which of them can run at the same time (their
//! [`Footprint`]s do not clash), longest groups first; and how a drill's
//! runs settle into one verdict (a retry that passes is FLAKY).

use crate::render::Effective;
use crate::report::{Attempt, DrillReport, Verdict};
use crate::spec::scenario::{Chaos, Scenario, Step};
use crate::spec::stack::Kind;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// What a scenario does to its stack, to tell which drills can run together.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// The services it loads or sets a fault on.
    pub services: BTreeSet<String>,
    /// The names of the alerts it expects.
    pub alerts: BTreeSet<String>,
    /// The services whose metrics those alerts read (the targets of the
    /// jobs their rules select by name): a fault on one of them, from a
    /// drill beside, would decide whether they fire.
    pub reads: BTreeSet<String>,
    /// Why it must have the stack to itself, if it must.
    pub alone: Option<String>,
    /// Why it must have the whole machine to itself, if it must: a fault
    /// every process of the machine feels (a CPU or memory burn), which
    /// would slow the drills of other stacks as much as its own.
    pub host: Option<String>,
}

impl Footprint {
    /// What `sc` does to its stack, as `eff` renders it.
    pub fn of(sc: &Scenario, eff: &Effective) -> Footprint {
        let mut f = Footprint::default();
        let mut alone = Vec::new();
        for step in &sc.doc.steps {
            match step {
                Step::Load(l) => {
                    f.services.insert(l.target.clone());
                }
                Step::Chaos(c) => {
                    if let Ok(action) = c.action() {
                        f.chaos(sc, action, &mut alone);
                    }
                }
                // Its latencies are the machine's: a drill beside would
                // move the knee, and its load every drill beside feels.
                Step::Bench(b) => {
                    f.services.insert(b.target.clone());
                    let why = format!(
                        "it benches {}, whose latencies every process of the machine moves",
                        b.target
                    );
                    alone.push(why.clone());
                    f.host.get_or_insert(why);
                }
                Step::ExpectDashboards(_) => alone.push(
                    "it checks every dashboard panel, which other drills' faults change".into(),
                ),
                _ => {}
            }
        }
        let (expected, _) = sc.doc.expected_alerts();
        for (name, labels) in expected {
            f.alerts.insert(name.to_string());
            f.reads.extend(services_read(sc, eff, name));
            let (Some(am), Some(rule)) = (&eff.alertmanager, eff.prometheus.alert_rule(name))
            else {
                continue;
            };
            let mut all = rule.labels.clone();
            all.extend(labels.clone());
            all.insert("alertname".into(), name.to_string());
            for r in am.routes_for(&all) {
                if !r.groups_by_name() {
                    alone.push(format!(
                        "{name} is grouped by [{}] on receiver {}: another drill's alert could join its notification",
                        r.group_by.join(", "),
                        r.receiver
                    ));
                }
            }
        }
        if eff
            .alertmanager
            .as_ref()
            .is_some_and(|am| !am.config.inhibit_rules.is_empty())
        {
            alone.push(
                "Alertmanager has inhibit rules: one drill's alert could mute another's".into(),
            );
        }
        f.alone = alone.into_iter().next();
        f
    }

    /// What a chaos action touches: its service, and the whole machine or
    /// every drill on the stack when it reaches them (`alone` says why).
    fn chaos(&mut self, sc: &Scenario, action: Chaos, alone: &mut Vec<String>) {
        let mut machine = |why: String| {
            alone.push(why.clone());
            self.host.get_or_insert(why);
        };
        match action {
            Chaos::Container(a, s) => {
                let kind = sc.stack.doc.services.get(&s).map(|x| x.kind);
                if matches!(
                    kind,
                    Some(Kind::Prometheus | Kind::Alertmanager | Kind::TeamsMock)
                ) {
                    alone.push(format!(
                        "it sets `{a:?}` on {s}, which every drill goes through"
                    ));
                }
                self.services.insert(s);
            }
            Chaos::FixtureSet(s, set) => {
                if set.cpu_cores.is_some() || set.memory.is_some() {
                    machine(format!(
                        "it burns the host's CPU or memory from {s}, which every service feels"
                    ));
                }
                self.services.insert(s);
            }
            // The machine's GPU: every stack's dcgm-exporter reads it.
            Chaos::GpuSaturate(s, _) => {
                machine(format!(
                    "it loads the GPU that {s} reads, which every stack's GPU exporter reads"
                ));
                self.services.insert(s);
            }
            Chaos::TeamsFault(t, _) | Chaos::TeamsReset(t) => alone.push(format!(
                "it sets a fault on {t}, which every drill's cards go through"
            )),
            other => {
                self.services.insert(other.service().to_string());
            }
        }
    }

    /// Why the two cannot run at the same time on one stack, if they cannot.
    pub fn clash(&self, other: &Footprint) -> Option<String> {
        if let Some(why) = self.alone.as_ref().or(other.alone.as_ref()) {
            return Some(why.clone());
        }
        if let Some(s) = self.services.intersection(&other.services).next() {
            return Some(format!("both touch {s}"));
        }
        if let Some(a) = self.alerts.intersection(&other.alerts).next() {
            return Some(format!("both expect {a}"));
        }
        for (a, b) in [(self, other), (other, self)] {
            if let Some(s) = a.services.intersection(&b.reads).next() {
                return Some(format!(
                    "one touches {s}, whose metrics the other's alerts read"
                ));
            }
        }
        None
    }
}

/// The services whose metrics alert `name`'s rule reads: the targets of
/// the jobs it selects by name that are services of the stack.
fn services_read(sc: &Scenario, eff: &Effective, name: &str) -> BTreeSet<String> {
    let Some(rule) = eff.prometheus.alert_rule(name) else {
        return BTreeSet::new();
    };
    let cfg = &eff.prometheus.config;
    crate::promql::jobs(&rule.expr)
        .iter()
        .flat_map(|job| crate::spec::prometheus::job_targets(cfg, job))
        .filter_map(|t| t.split(':').next().map(str::to_string))
        .filter(|host| sc.stack.doc.services.contains_key(host))
        .collect()
}

/// One stack and the drills run on it, wave after wave; the drills of a
/// wave run at the same time. Indexes are into the suite's scenarios.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The waves in order, each the indexes of its drills.
    pub waves: Vec<Vec<usize>>,
}

/// Groups longest first (by the sum of their drills' lower bounds), so that
/// stacks run side by side finish close together.
pub fn longest_first(items: &[(Scenario, Effective)], groups: &mut [Group]) {
    let bound = |g: &Group| -> Duration {
        g.waves
            .iter()
            .flatten()
            .map(|&i| {
                let (sc, eff) = &items[i];
                crate::verify::lower_bound(&sc.doc, eff, Default::default())
            })
            .sum()
    };
    groups.sort_by_key(|g| std::cmp::Reverse(bound(g)));
}

/// Groups scenarios by stack (when `share`), then packs each group's drills
/// into waves of at most `jobs` that do not clash, first fit, in file order.
pub fn plan(items: &[(Scenario, Effective)], share: bool, jobs: usize) -> Vec<Group> {
    let prints: Vec<Footprint> = items.iter().map(|(s, e)| Footprint::of(s, e)).collect();
    let key = |i: usize| {
        let (s, e) = &items[i];
        let path = s.stack_path.canonicalize().unwrap_or(s.stack_path.clone());
        (path, e.time_scale.to_bits())
    };
    // (stack file, time_scale bits): alike stacks; none when not sharing.
    type Key = Option<(PathBuf, u64)>;
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for i in 0..items.len() {
        let k = share.then(|| key(i));
        match groups.iter_mut().find(|(gk, _)| k.is_some() && *gk == k) {
            Some((_, members)) => members.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(_, members)| {
            let mut waves: Vec<Vec<usize>> = Vec::new();
            for i in members {
                let fits = |w: &Vec<usize>| {
                    w.len() < jobs.max(1)
                        && w.iter().all(|&j| prints[i].clash(&prints[j]).is_none())
                };
                match waves.iter_mut().find(|w| fits(w)) {
                    Some(w) => w.push(i),
                    None => waves.push(vec![i]),
                }
            }
            Group { waves }
        })
        .collect()
}

/// Why scenario `sc` cannot run on this machine, if it cannot: `no_gpu` is
/// why the machine gives containers no GPU, when it gives none. GPU chaos
/// needs a real GPU; a fixture's chaos on a GPU component needs the fixture
/// to play it (no GPU).
pub fn unmet(sc: &Scenario, no_gpu: Option<&str>) -> Option<String> {
    let gpu = |s: &str| {
        sc.stack
            .service(s)
            .is_some_and(|x| crate::components::of(x.kind).gpu)
    };
    sc.doc.steps.iter().find_map(|step| {
        let Step::Chaos(c) = step else { return None };
        match (c.action().ok()?, no_gpu) {
            (Chaos::GpuSaturate(s, _), Some(why)) if gpu(&s) => {
                Some(format!("its GPU chaos on `{s}` needs a GPU: {why}"))
            }
            (Chaos::FixtureSet(s, _) | Chaos::FixtureReset(s), None) if gpu(&s) => Some(format!(
                "`{s}` reads this machine's GPU, not its fixture profile: the drill's fixture chaos does not apply here (GPU chaos drills it)"
            )),
            _ => None,
        }
    })
}

/// Leaves the drills in `out` out of the groups' waves (and the waves and
/// groups left empty).
pub fn leave_out(groups: &mut Vec<Group>, out: &std::collections::BTreeMap<usize, String>) {
    for g in groups.iter_mut() {
        for w in g.waves.iter_mut() {
            w.retain(|i| !out.contains_key(i));
        }
        g.waves.retain(|w| !w.is_empty());
    }
    groups.retain(|g| !g.waves.is_empty());
}

/// The report of a drill's latest run, judged, with its earlier runs (`prev`,
/// when this one is a retry) kept as attempts: a retry that passes makes the
/// drill FLAKY, never plain PASSED.
pub fn settle(prev: Option<DrillReport>, mut r: DrillReport) -> DrillReport {
    r.verdict = r.judge();
    if let Some(prev) = prev {
        let mut attempts = prev.attempts.clone();
        attempts.push(Attempt {
            verdict: prev.verdict,
            run_id: prev.run_id.clone(),
            wall: prev.wall,
            why: prev.why_not_green(),
            step: prev.first_not_passed().map(|s| (s.index, s.kind)),
        });
        r.attempts = attempts;
        if r.verdict == Verdict::Passed {
            r.verdict = Verdict::Flaky;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, steps: &str) -> (Scenario, Effective) {
        on_stack("seed-004", name, steps)
    }

    fn on_stack(stack: &str, name: &str, steps: &str) -> (Scenario, Effective) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let path = dir.join(format!("{name}.yaml"));
        let text = format!(
            "name: {name}\nstack: ../stack/{stack}/stack.yaml\ntime_scale: 0.1\nsteps:\n{steps}"
        );
        let source = crate::spec::source::Source::from_text(&path, text);
        let sc = Scenario::from_source(source, None).expect("a valid scenario");
        let eff = crate::render::render(&sc.stack, sc.doc.time_scale).unwrap();
        (sc, eff)
    }

    /// GPU chaos needs a GPU; the fixture's chaos on dcgm-exporter needs
    /// the fixture to play it: each drill is skipped where the other runs.
    #[test]
    fn gpu_drills_say_what_the_machine_lacks() {
        let real = on_stack(
            "seed-000",
            "x",
            "  - chaos: {gpu: dcgm-exporter, saturate: sm}\n  - expect_alert: {name: GpuUtilizationHigh}\n",
        );
        let fixture = on_stack(
            "seed-000",
            "y",
            "  - chaos: {fixture: dcgm-exporter, set: {gauges: {DCGM_FI_DEV_GPU_UTIL: 100}}}\n  - expect_alert: {name: GpuUtilizationHigh}\n",
        );
        let other = on_stack("seed-000", "z", "  - chaos: {stop: llm}\n");
        let no_gpu = Some("this machine has no NVIDIA driver");
        let why = unmet(&real.0, no_gpu).unwrap();
        assert!(
            why.contains("needs a GPU: this machine has no NVIDIA driver"),
            "{why}"
        );
        assert_eq!(unmet(&fixture.0, no_gpu), None);
        assert_eq!(unmet(&real.0, None), None);
        assert!(unmet(&fixture.0, None)
            .unwrap()
            .contains("fixture chaos does not apply"));
        assert_eq!(unmet(&other.0, no_gpu), None);
        assert_eq!(unmet(&other.0, None), None);
        // Left out of the plan, and the wave and group left empty with it.
        let mut groups = vec![Group {
            waves: vec![vec![0, 1], vec![2]],
        }];
        leave_out(&mut groups, &[(2, String::new())].into());
        assert_eq!(groups[0].waves, vec![vec![0, 1]]);
        leave_out(
            &mut groups,
            &[(0, String::new()), (1, String::new())].into(),
        );
        assert!(groups.is_empty());
    }

    /// Stopping the exporter decides whether a PostgreSQL alert fires:
    /// the two drills touch different services, yet cannot share a wave.
    #[test]
    fn a_fault_on_what_an_alert_reads_clashes_with_it() {
        let exporter_down = on_stack(
            "seed-002",
            "x",
            "  - chaos: {stop: postgres_exporter}\n  - expect_alert: {name: PostgresExporterDown}\n",
        );
        let connections = on_stack(
            "seed-002",
            "y",
            "  - chaos: {postgres: postgre, connections: 85}\n  - expect_alert: {name: PostgresqlTooManyConnections}\n",
        );
        let (a, b) = (
            Footprint::of(&exporter_down.0, &exporter_down.1),
            Footprint::of(&connections.0, &connections.1),
        );
        assert!(a.services.is_disjoint(&b.services));
        assert_eq!(
            b.clash(&a).unwrap(),
            "one touches postgres_exporter, whose metrics the other's alerts read"
        );
    }

    #[test]
    fn disjoint_drills_share_a_wave_and_clashing_ones_do_not() {
        let items = vec![
            // django, DjangoHighResponseTime*
            scenario(
                "a",
                "  - chaos: {fixture: django, set: {latency: 1500ms}}\n  - expect_alert: {name: DjangoHighResponseTime}\n",
            ),
            // fastapi, FastAPIHighLatency: beside a
            scenario(
                "b",
                "  - chaos: {fixture: fastapi, set: {latency: 4s, route: /health}}\n  - expect_alert: {name: FastAPIHighLatency}\n",
            ),
            // django again: clashes with a
            scenario(
                "c",
                "  - chaos: {fixture: django, set: {error_ratio: 0.5}}\n  - expect_alert: {name: HighAuthFailureRate}\n",
            ),
            // checks dashboards: alone
            scenario("d", "  - expect_dashboards: {}\n"),
            // a Teams fault: alone
            scenario(
                "e",
                "  - chaos: {teams: teams, fault: {status: 500}}\n",
            ),
        ];
        assert_eq!(
            plan(&items, true, 4),
            vec![Group {
                waves: vec![vec![0, 1], vec![2], vec![3], vec![4]]
            }]
        );
        // One job: one drill at a time, still on one stack.
        assert_eq!(plan(&items, true, 1)[0].waves.len(), 5);
        // No sharing: a stack per drill.
        assert_eq!(plan(&items, false, 4).len(), 5);
        let fp = |i: usize| Footprint::of(&items[i].0, &items[i].1);
        assert_eq!(fp(0).clash(&fp(2)).unwrap(), "both touch django");
        assert!(fp(3).clash(&fp(1)).unwrap().contains("dashboard"));
        assert!(fp(4).clash(&fp(1)).unwrap().contains("fault on teams"));
    }

    #[test]
    fn a_retry_that_passes_is_flaky_and_keeps_the_first_run() {
        use crate::report::{Outcome, StepKind, StepResult};
        let (sc, _) = scenario("a", "  - expect_quiet: {for: 1s}\n");
        let run = |id: &str, o: Outcome| {
            let mut r = DrillReport::new(&sc, id);
            r.steps.push(StepResult::new(
                0,
                StepKind::ExpectQuiet,
                o,
                Duration::from_secs(1),
            ));
            r
        };
        let first = settle(None, run("r1", Outcome::inconclusive("no answer")));
        assert_eq!(first.verdict, Verdict::Inconclusive);
        let second = settle(Some(first), run("r1", Outcome::fail("HighX is firing")));
        assert_eq!(second.verdict, Verdict::Failed);
        let third = settle(Some(second), run("r1", Outcome::pass("quiet")));
        assert_eq!(third.verdict, Verdict::Flaky);
        let kept: Vec<Verdict> = third.attempts.iter().map(|a| a.verdict).collect();
        assert_eq!(kept, [Verdict::Inconclusive, Verdict::Failed]);
        assert!(third.attempts[1].why.contains("HighX is firing"));
        assert!(third.render().contains("FLAKY a"));
        // Never plain green: the exit code says so unless flaky is ok.
        let all = [third];
        assert_eq!(crate::report::exit_code(&all, false), 4);
        assert_eq!(crate::report::exit_code(&all, true), 0);
        let xml = crate::report::junit(&all);
        assert!(xml.contains("flakyFailure"), "{xml}");
    }
}
