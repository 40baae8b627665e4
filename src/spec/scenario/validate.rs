//! A scenario's located validation against its stack, one check per step
//! kind: every error found in one pass, each at its file:line:column,
//! before any container starts.

use super::{Chaos, ExpectDashboards, FixtureSet, LoadStep, Scenario, Step, TeamsFault};
use crate::error::{SpecError, SpecErrors};
use crate::spec::fixture::{MetricSource, MetricType, Profile};
use crate::spec::source::Source;
use crate::spec::stack::{Kind, Stack};
use crate::util::closest;

/// Every problem of `s`, or none.
pub(super) fn scenario(s: &Scenario) -> Result<(), SpecErrors> {
    let mut c = Checker {
        src: &s.source,
        stack: &s.stack,
        alerts: s
            .stack
            .prometheus
            .alert_rules()
            .into_iter()
            .map(|r| r.name)
            .collect(),
        errors: Vec::new(),
    };
    if !(s.doc.time_scale > 0.0 && s.doc.time_scale <= 1.0) {
        c.push("time_scale", "time_scale is in (0, 1]");
    }
    if s.doc.steps.is_empty() {
        c.push("steps", "a scenario needs at least one step");
    }
    for (i, step) in s.doc.steps.iter().enumerate() {
        let at = format!("steps.{i}");
        match step {
            Step::Load(l) => c.load(&at, l),
            Step::Chaos(ch) => c.chaos(&at, ch),
            Step::ExpectAlert(a) => c.alert(&format!("{at}.expect_alert.name"), &a.name),
            Step::ExpectResolved(a) => c.alert(&format!("{at}.expect_resolved.name"), &a.name),
            Step::ExpectTeams(t) => {
                c.alert(&format!("{at}.expect_teams.alert"), &t.alert);
                if !c
                    .stack
                    .doc
                    .services
                    .values()
                    .any(|s| s.kind == Kind::TeamsMock)
                {
                    c.push(
                        &format!("{at}.expect_teams"),
                        "the stack has no teams-mock service",
                    );
                }
            }
            Step::ExpectDashboards(d) => c.dashboards(&at, d),
            Step::Bench(b) => c.bench(&at, b),
            Step::ExpectCapacity(_) => {
                let benched = s.doc.steps[..i].iter().any(|x| matches!(x, Step::Bench(_)));
                if !benched {
                    c.push(
                        &format!("{at}.expect_capacity"),
                        "expect_capacity judges the knee of a `bench` step before it",
                    );
                }
            }
            Step::ExpectQuiet(_) | Step::Wait(_) => {}
        }
    }
    for (j, a) in s.doc.allow_alerts.iter().enumerate() {
        c.alert(&format!("allow_alerts.{j}"), &a.name);
    }
    SpecErrors { errors: c.errors }.into_result()
}

/// What the checks share: the file, the stack, its alert names, the errors.
struct Checker<'a> {
    src: &'a Source,
    stack: &'a Stack,
    alerts: Vec<String>,
    errors: Vec<SpecError>,
}

impl Checker<'_> {
    fn push(&mut self, at: &str, message: impl std::fmt::Display) {
        let e = self.src.error(at, message);
        self.errors.push(e);
    }

    /// Whether `name` is a service of the stack (an error if not).
    fn service(&mut self, at: &str, name: &str) -> bool {
        if self.stack.service(name).is_some() {
            return true;
        }
        let names: Vec<_> = self.stack.doc.services.keys().cloned().collect();
        let e = self
            .src
            .error(at, format!("unknown service `{name}`"))
            .with_help(format!(
                "services of {}: {}",
                self.stack.doc.name,
                names.join(", ")
            ));
        self.errors.push(e);
        false
    }

    /// `name` must be an alerting rule of the stack.
    fn alert(&mut self, at: &str, name: &str) {
        if self.alerts.iter().any(|a| a == name) {
            return;
        }
        let mut e = self.src.error(
            at,
            format!("no alerting rule is named `{name}` in the stack's rule files"),
        );
        if let Some(near) = closest(name, self.alerts.iter().map(String::as_str)) {
            e = e.with_help(format!("did you mean `{near}`?"));
        }
        self.errors.push(e);
    }

    fn load(&mut self, at: &str, l: &LoadStep) {
        let shapes = usize::from(l.ramp.is_some())
            + usize::from(!l.steps.is_empty())
            + usize::from(l.spike.is_some());
        if shapes > 1 {
            self.push(
                &format!("{at}.load"),
                "a load has one shape: `ramp`, `steps` or `spike`",
            );
        }
        let max = crate::load::MAX_RATE;
        if let Some(r) = l.shape(1.0).rates().into_iter().find(|r| *r > max) {
            self.push(
                &format!("{at}.load.rate"),
                format!("{r}/s is above the engine's bound of {max}/s"),
            );
        }
        let most = crate::load::MAX_IN_FLIGHT;
        if l.in_flight.is_some_and(|n| n == 0 || n > most) {
            self.push(
                &format!("{at}.load.in_flight"),
                format!("in_flight is between 1 and {most}"),
            );
        }
        self.route(&format!("{at}.load"), &l.target, &l.path);
    }

    /// `target` must be a fixture service that serves `path`, or a
    /// container (any path: its routes are its own); `at` is the step's
    /// key: `steps.0.load`.
    fn route(&mut self, at: &str, target: &str, path: &str) {
        let at_t = format!("{at}.target");
        if !self.service(&at_t, target) {
            return;
        }
        match self.stack.fixtures.get(target) {
            None if self.kind(target) == Some(Kind::Container) && !path.starts_with('/') => self
                .push(
                    &format!("{at}.path"),
                    format!("`{path}` is not an HTTP path (`/api/items`)"),
                ),
            None if self.kind(target) == Some(Kind::Container) => {}
            None => self.push(
                &at_t,
                format!("`{target}` is not a fixture or a container: load goes to a service that serves HTTP"),
            ),
            Some(p) if p.route(path).is_none() => self.push(
                &format!("{at}.path"),
                format!("fixture `{target}` serves no route `{path}`"),
            ),
            _ => {}
        }
    }

    fn bench(&mut self, at: &str, b: &super::BenchStep) {
        let at_b = format!("{at}.bench");
        self.route(&at_b, &b.target, &b.path);
        for (field, why) in b.search().problems() {
            // A default the step left out is placed at the step (its parent).
            self.push(&format!("{at_b}.{field}"), why);
        }
    }

    fn chaos(&mut self, at: &str, c: &super::ChaosStep) {
        let at_c = format!("{at}.chaos");
        match c.action() {
            Err(e) => self.push(&at_c, e),
            Ok(Chaos::Container(_, s)) => {
                self.service(&at_c, &s);
            }
            Ok(Chaos::FixtureSet(s, _)) | Ok(Chaos::FixtureReset(s)) => {
                let at_f = format!("{at_c}.fixture");
                if self.service(&at_f, &s) && !self.stack.fixtures.contains_key(&s) {
                    self.push(&at_f, format!("`{s}` is not a fixture service"));
                }
                if let (Some(set), Some(p)) = (&c.set, self.stack.fixtures.get(&s)) {
                    fixture_set(self.src, &format!("{at_c}.set"), set, p, &mut self.errors);
                }
                if let Some(n) = c.set.as_ref().and_then(|x| x.crash_loop) {
                    self.crash_loop(&format!("{at_c}.set.crash_loop"), &s, n);
                }
            }
            Ok(Chaos::PostgresHold(p, _)) | Ok(Chaos::PostgresRelease(p)) => {
                let at_p = format!("{at_c}.postgres");
                if self.service(&at_p, &p) && self.kind(&p) != Some(Kind::Postgres) {
                    self.push(&at_p, format!("`{p}` is not a postgres service"));
                }
                if c.connections
                    .is_some_and(|n| !(1..=super::MAX_CONNECTIONS).contains(&n))
                {
                    self.push(
                        &format!("{at_c}.connections"),
                        format!("1 to {} connections", super::MAX_CONNECTIONS),
                    );
                }
            }
            Ok(Chaos::GpuSaturate(g, _)) | Ok(Chaos::GpuRelease(g)) => self.gpu(&at_c, &g, c),
            Ok(Chaos::TeamsFault(t, _)) | Ok(Chaos::TeamsReset(t)) => {
                let at_t = format!("{at_c}.teams");
                if self.service(&at_t, &t) && self.kind(&t) != Some(Kind::TeamsMock) {
                    self.push(&at_t, format!("`{t}` is not a teams-mock service"));
                }
                if let Some(f) = &c.fault {
                    self.teams_fault(&format!("{at_c}.fault"), f);
                }
            }
        }
    }

    /// A GPU load names a dcgm-exporter service, and is bounded.
    fn gpu(&mut self, at_c: &str, g: &str, c: &super::ChaosStep) {
        let at_g = format!("{at_c}.gpu");
        if self.service(&at_g, g) && self.kind(g) != Some(Kind::DcgmExporter) {
            self.push(&at_g, format!("`{g}` is not a dcgm-exporter service: GPU chaos loads the GPU a dcgm-exporter reads"));
        }
        let most = super::MAX_GPU_FILL;
        if c.fill.is_some_and(|f| !(1..=most).contains(&f)) {
            self.push(
                &format!("{at_c}.fill"),
                format!("fill is 1 to {most} (% of the GPU's memory)"),
            );
        }
        if c.fill.is_some() && c.saturate != Some(super::GpuLoad::Vram) {
            self.push(
                &format!("{at_c}.fill"),
                "fill is for `saturate: vram`".to_string(),
            );
        }
        if c.for_.is_some_and(|d| d.0 > super::MAX_GPU_HOLD) {
            self.push(
                &format!("{at_c}.for"),
                "a GPU load lasts at most 1h".to_string(),
            );
        }
    }

    /// A crash loop is bounded, and needs a restart policy to loop.
    fn crash_loop(&mut self, at: &str, service: &str, n: u32) {
        if !(1..=super::MAX_CRASH_LOOP).contains(&n) {
            self.push(
                at,
                format!("a crash loop is 1 to {} crashes", super::MAX_CRASH_LOOP),
            );
        }
        let restart = self.stack.service(service).map(|x| x.restart);
        if restart.is_some_and(|r| r == crate::spec::stack::Restart::No) {
            self.push(
                at,
                format!("`{service}` has no restart policy (`restart: on-failure` in the stack file): it would crash once and stay down"),
            );
        }
    }

    fn kind(&self, service: &str) -> Option<Kind> {
        self.stack.service(service).map(|x| x.kind)
    }

    fn teams_fault(&mut self, at: &str, f: &TeamsFault) {
        if f.status.is_some_and(|s| !(400..=599).contains(&s)) {
            self.push(
                &format!("{at}.status"),
                "a fault status is an error status, 400-599",
            );
        }
        if f.status.is_some() && f.error_text.is_some() {
            self.push(at, "a fault answers `status` or `error_text`, not both");
        }
        if f.status.is_none() && f.delay.is_none() && f.error_text.is_none() {
            self.push(at, "a fault sets `status`, `delay` or `error_text`");
        }
    }

    fn dashboards(&mut self, at: &str, d: &ExpectDashboards) {
        let titles = crate::spec::dashboards::panel_titles(self.stack);
        if titles.is_empty() {
            self.push(
                &format!("{at}.expect_dashboards"),
                "the stack provisions no dashboard",
            );
        }
        for (j, e) in d.expect_empty.iter().enumerate() {
            if titles.iter().any(|(_, t)| *t == e.name) {
                continue;
            }
            let mut err = self.src.error(
                &format!("{at}.expect_dashboards.expect_empty.{j}"),
                format!("no dashboard of the stack has a panel `{}`", e.name),
            );
            if let Some(near) = closest(&e.name, titles.iter().map(|(_, t)| t.as_str())) {
                err = err.with_help(format!("did you mean `{near}`?"));
            }
            self.errors.push(err);
        }
    }
}

/// A fixture change names only routes and gauges its profile has.
fn fixture_set(src: &Source, at: &str, set: &FixtureSet, p: &Profile, errors: &mut Vec<SpecError>) {
    for g in set.gauges.keys() {
        match p.family(g) {
            Some(f) if f.type_ == MetricType::Gauge => {}
            Some(f) if f.source == MetricSource::Constant => {}
            Some(_) => errors.push(src.error(
                &format!("{at}.gauges"),
                format!("`{g}` is not a gauge or a constant counter: it cannot be pinned"),
            )),
            None => {
                let mut e = src.error(
                    &format!("{at}.gauges"),
                    format!("profile `{}` has no family `{g}`", p.name),
                );
                let names = p.families.iter().map(|f| f.name.as_str());
                if let Some(near) = crate::util::closest(g, names) {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                errors.push(e);
            }
        }
    }
    if let Some(r) = &set.route {
        if p.route(r).is_none() {
            errors.push(src.error(
                &format!("{at}.route"),
                format!("profile `{}` serves no route `{r}`", p.name),
            ));
        }
    }
    if set.error_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        errors.push(src.error(
            &format!("{at}.error_ratio"),
            "error_ratio is between 0 and 1",
        ));
    }
    if set
        .amount_factor
        .is_some_and(|f| !(f >= 0.0 && f.is_finite()))
    {
        errors.push(src.error(&format!("{at}.amount_factor"), "a factor ≥ 0"));
    }
    workers(src, at, set, p, errors);
    let disk = p.host.as_ref().is_some_and(|h| h.disk.is_some());
    for (k, asked) in [
        ("disk_used", set.disk_used.is_some()),
        ("disk_files", set.disk_files.is_some()),
    ] {
        if asked && !disk {
            errors.push(src.error(
                &format!("{at}.{k}"),
                format!(
                    "profile `{}` plays no host with a disk (`host: {{disk: …}}`)",
                    p.name
                ),
            ));
        }
    }
}

/// `workers` needs a route with a `capacity` among those the set applies to.
fn workers(src: &Source, at: &str, set: &FixtureSet, p: &Profile, errors: &mut Vec<SpecError>) {
    let Some(w) = set.workers else {
        return;
    };
    let limited = p
        .routes
        .iter()
        .filter(|r| {
            set.route
                .as_ref()
                .is_none_or(|x| &r.path == x || r.matches(x))
        })
        .any(|r| r.capacity.is_some());
    if !(1..=4096).contains(&w) {
        errors.push(src.error(&format!("{at}.workers"), "workers is between 1 and 4096"));
    } else if !limited {
        errors.push(src.error(
            &format!("{at}.workers"),
            format!(
                "no route of profile `{}` it applies to has a `capacity`",
                p.name
            ),
        ));
    }
}
