//! Drills generated from a stack's alert rules, one scenario per alert, by
//! what its expression needs to fire: `up == 0` or `absent()` → stop the
//! service its job scrapes; `histogram_quantile(…) > x` → latency on the
//! fixture; a ratio or rate of error series (a 5xx status matcher, or an
//! error-named counter) → errors on the fixture; a gauge of a fixture
//! compared with a constant → the gauge pinned past it. Each drill: load
//! (on a fixture), a calm baseline, the fault, `expect_alert`,
//! `expect_teams`, the undo, `expect_resolved`. An alert none of these fits
//! is listed with the reason; alerts one fault provokes together allow each
//! other.

use crate::lint::metrics::{selectors, Catalog};
use crate::spec::fixture::{MetricType, Profile};
use crate::spec::prometheus::{job_targets, AlertRule};
use crate::spec::stack::{Kind, Stack};
use promql_parser::parser::{self, Expr};
use std::collections::BTreeMap;
use std::time::Duration;

/// A YAML scalar for any text: JSON's quoting, which YAML reads alike
/// (a route such as `/items/{id}` or a name with `: ` stays one value).
pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The fault that makes an alert fire.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Stop the service (`up == 0`, `absent()`).
    Stop(String),
    /// Add latency to a fixture's requests (seconds), on a route if named.
    Latency(String, f64, Option<String>),
    /// Make a fixture's requests fail, on a route if named.
    Errors(String, Option<String>),
    /// Pin a fixture's gauge at a value.
    Gauge(String, String, f64),
}

impl Fault {
    /// The service the fault is set on.
    pub fn service(&self) -> &str {
        match self {
            Fault::Stop(s) | Fault::Latency(s, ..) | Fault::Errors(s, _) | Fault::Gauge(s, ..) => s,
        }
    }

    fn chaos(&self) -> (String, String) {
        let route = |r: &Option<String>| {
            r.as_ref()
                .map_or(String::new(), |r| format!(", route: {}", q(r)))
        };
        let reset = |s: &str| format!("{{fixture: {}, reset: true}}", q(s));
        match self {
            Fault::Stop(s) => (
                format!("{{stop: {}}}", q(s)),
                format!("{{start: {}}}", q(s)),
            ),
            Fault::Latency(s, secs, r) => (
                format!(
                    "{{fixture: {}, set: {{latency: {}ms{}}}}}",
                    q(s),
                    (secs * 1000.0).round(),
                    route(r)
                ),
                reset(s),
            ),
            Fault::Errors(s, r) => (
                format!(
                    "{{fixture: {}, set: {{error_ratio: 1.0, error_status: 500{}}}}}",
                    q(s),
                    route(r)
                ),
                reset(s),
            ),
            Fault::Gauge(s, g, v) => (
                format!("{{fixture: {}, set: {{gauges: {{{}: {v}}}}}}}", q(s), q(g)),
                reset(s),
            ),
        }
    }
}

/// What became of one alert rule.
#[derive(Debug, Clone)]
pub enum Drafted {
    /// A scenario: its file name and text.
    Scenario {
        /// The alert.
        alert: String,
        /// `alertname.yaml`, lower-cased.
        file: String,
        /// The scenario's YAML.
        text: String,
    },
    /// No fault fits: why.
    Unclassified {
        /// The alert.
        alert: String,
        /// Why no drill was written.
        why: String,
    },
}

/// The service a job scrapes (its first static target's host).
fn service_of(stack: &Stack, job: &str) -> Option<String> {
    job_targets(&stack.prometheus.config, job)
        .into_iter()
        .filter_map(|t| t.rsplit_once(':').map(|(h, _)| h.to_string()))
        .find(|h| stack.doc.services.contains_key(h))
}

/// Every service a scrape job of the stack reaches, in job order.
fn cfg_services(stack: &Stack) -> Vec<String> {
    stack
        .prometheus
        .config
        .scrape_configs
        .iter()
        .filter_map(|sc| service_of(stack, &sc.job_name))
        .collect()
}

/// The services an expression's selectors reach: by their `job` matcher,
/// else by which job's catalog has the name.
fn services(stack: &Stack, catalog: &Catalog, ast: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    for s in selectors(ast) {
        let jobs = match s.job() {
            Some(j) => vec![j],
            None => s
                .name
                .as_deref()
                .map(|n| {
                    catalog
                        .jobs_exposing(n)
                        .into_iter()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        };
        for j in jobs {
            if let Some(svc) = service_of(stack, &j) {
                if !out.contains(&svc) {
                    out.push(svc);
                }
            }
        }
    }
    out
}

/// A route the expression's selectors name (`route="/predict"`).
fn route_of(ast: &Expr, profile: &Profile) -> Option<String> {
    selectors(ast).into_iter().find_map(|s| {
        s.matchers.iter().find_map(|m| {
            matches!(m.op, promql_parser::label::MatchOp::Equal)
                .then(|| profile.route(&m.value).map(|r| r.path.clone()))
                .flatten()
        })
    })
}

/// The comparison at the expression's top (through parentheses and
/// `and`/`unless` left sides): (the side with metrics, op, the constant).
fn comparison(e: &Expr) -> Option<(&Expr, String, f64)> {
    match e {
        Expr::Paren(p) => comparison(&p.expr),
        Expr::Binary(b) if b.op.is_comparison_operator() => match (&*b.lhs, &*b.rhs) {
            (s, Expr::NumberLiteral(n)) => Some((s, b.op.to_string(), n.val)),
            (Expr::NumberLiteral(n), s) => {
                Some((s, crate::promql::flip_comparison(&b.op.to_string()), n.val))
            }
            _ => None,
        },
        Expr::Binary(b) if b.op.is_set_operator() => comparison(&b.lhs),
        _ => None,
    }
}

fn has_call(e: &Expr, name: &str) -> bool {
    let mut found = false;
    let mut e = e.clone();
    crate::promql::walk(&mut e, &mut |x| {
        if let Expr::Call(c) = x {
            found |= c.func.name == name;
        }
    });
    found
}

/// A selector of error series: a status matcher that takes 500 and not
/// 200, or an error- or fail-named metric.
fn errorish(side: &Expr) -> bool {
    selectors(side).iter().any(|s| {
        s.matchers.iter().any(|m| {
            // A code (`5..`) or a class (`5xx`), as instrumentators write it.
            matches!(m.name.as_str(), "status" | "status_code" | "code")
                && (m.is_match("500") && !m.is_match("200")
                    || m.is_match("5xx") && !m.is_match("2xx"))
        }) || s
            .name
            .as_deref()
            .is_some_and(|n| n.contains("error") || n.contains("fail"))
    })
}

/// Whether `side` is `histogram_quantile(q, …)` itself (through
/// parentheses) of a `_seconds` histogram: Some(true); of another unit:
/// Some(false); scaled or wrapped: None.
fn quantile_of_seconds(side: &Expr) -> Option<bool> {
    match side {
        Expr::Paren(p) => quantile_of_seconds(&p.expr),
        Expr::Call(c) if c.func.name == "histogram_quantile" => Some(
            selectors(side)
                .iter()
                .filter_map(|s| s.name.as_deref())
                .all(|n| n.ends_with("_seconds_bucket")),
        ),
        _ => None,
    }
}

/// An exporter's view of its database (`pg_up == 0`): the database to stop.
fn database_down(stack: &Stack, ast: &Expr, names: &[String]) -> Option<String> {
    let down = names.iter().any(|n| n == "pg_up")
        && comparison(ast).is_some_and(|(_, op, n)| op == "==" && n == 0.0);
    down.then(|| {
        stack
            .doc
            .services
            .iter()
            .find(|(_, s)| s.kind == Kind::Postgres)
            .map(|(n, _)| n.clone())
    })
    .flatten()
}

/// A latency fault is set in seconds: the quantile compared must be one,
/// unscaled, of a `_seconds` histogram, and below what a request waits.
fn seconds_threshold(side: &Expr, n: f64) -> Result<(), String> {
    match quantile_of_seconds(side) {
        None => Err("its quantile is scaled or wrapped: write its latency fault yourself".into()),
        Some(false) => Err(
            "its quantile is not of a `_seconds` histogram: write its latency fault yourself"
                .into(),
        ),
        Some(true) if n > 20.0 => Err(format!(
            "its threshold of {n} s is past what a request waits for (20 s)"
        )),
        Some(true) => Ok(()),
    }
}

/// The fault that fires `rule`, or why none fits.
pub fn classify(stack: &Stack, catalog: &Catalog, rule: &AlertRule) -> Result<Fault, String> {
    let ast =
        parser::parse(&rule.expr).map_err(|e| format!("its expression does not parse: {e}"))?;
    let first = services(stack, catalog, &ast).first().cloned();
    let fixture = |s: &Option<String>| -> Result<(String, &Profile), String> {
        let s = s
            .clone()
            .ok_or("no job of the stack that it selects scrapes a service")?;
        match stack.fixtures.get(&s) {
            Some(p) => Ok((s, p)),
            None => Err(format!(
                "`{s}` is not a fixture: firedrill can stop it, not shape its metrics"
            )),
        }
    };
    let names: Vec<String> = selectors(&ast).into_iter().filter_map(|s| s.name).collect();
    // `up == 0` on every job: stop one of its services, a fixture first.
    let any = || {
        let all: Vec<String> = cfg_services(stack);
        all.iter()
            .find(|s| stack.fixtures.contains_key(*s))
            .or(all.first())
            .cloned()
    };
    if let Some(db) = database_down(stack, &ast, &names) {
        return Ok(Fault::Stop(db));
    }
    if has_call(&ast, "absent") || has_call(&ast, "absent_over_time") {
        return first
            .map(Fault::Stop)
            .ok_or("no service of the stack is what it finds absent".into());
    }
    let (side, op, n) =
        comparison(&ast).ok_or("its expression is not a comparison with a constant")?;
    if names.iter().all(|x| x == "up") && (op == "==" && n == 0.0 || op == "<" && n <= 1.0) {
        return first
            .or_else(any)
            .map(Fault::Stop)
            .ok_or("no service of the stack is scraped by the job it reads".into());
    }
    if has_call(side, "histogram_quantile") && op.starts_with('>') {
        let (s, p) = fixture(&first)?;
        seconds_threshold(side, n)?;
        return Ok(Fault::Latency(
            s.clone(),
            (n * 2.0).max(n + 0.2),
            route_of(&ast, p),
        ));
    }
    if errorish(side) && op.starts_with('>') {
        let (s, p) = fixture(&first)?;
        return Ok(Fault::Errors(s.clone(), route_of(&ast, p)));
    }
    let bare = crate::promql::bare_selector(side).is_some();
    if let ([g], true) = (names.as_slice(), bare) {
        let (s, p) = fixture(&first)?;
        let gauge = p
            .families
            .iter()
            .any(|f| f.name == *g && f.type_ == MetricType::Gauge);
        if gauge {
            let v = match op.as_str() {
                ">" | ">=" => n + n.abs().max(1.0) * 0.5,
                "<" | "<=" => n - n.abs().max(1.0) * 0.5,
                "!=" => n + 1.0,
                _ => n,
            };
            return Ok(Fault::Gauge(s.clone(), g.clone(), v));
        }
    }
    Err("its expression is none of: up == 0 or absent(), histogram_quantile(…) > x, an error rate or ratio, a fixture's gauge against a constant".into())
}

/// The scenario for `rule` under `fault`; `beside` are the alerts the same
/// fault provokes, allowed.
fn scenario(
    stack: &Stack,
    stack_rel: &str,
    (rule, stem): (&AlertRule, &str),
    fault: &Fault,
    beside: &[String],
) -> String {
    let svc = fault.service();
    let scale = if rule.for_ >= Duration::from_secs(60) {
        0.1
    } else {
        1.0
    };
    let mut out = format!(
        "# Generated by `firedrill init` from an alert rule (edit freely).\nname: {}\ndescription: {}\nstack: {}\ntime_scale: {scale}\n",
        q(stem),
        q(&format!(
            "{} fires when {}, and resolves when it is undone.",
            rule.name,
            match fault {
                Fault::Stop(s) => format!("{s} stops"),
                Fault::Latency(s, x, _) => format!("{s} answers {:.0} ms slower", x * 1000.0),
                Fault::Errors(s, _) => format!("{s}'s requests fail"),
                Fault::Gauge(s, g, v) => format!("{s}'s {g} reads {v}"),
            }
        )),
        q(stack_rel)
    );
    if !beside.is_empty() {
        out.push_str("allow_alerts:\n");
        for b in beside {
            out.push_str(&format!(
                "  - {{name: {}, reason: the same fault provokes it}}\n",
                q(b)
            ));
        }
    }
    out.push_str("steps:\n");
    if let Some(line) = load_step(stack, svc, fault) {
        out.push_str(&line);
    }
    let (set, undo) = fault.chaos();
    out.push_str(&format!(
        "  - expect_quiet: {{for: {}}}\n",
        if scale < 1.0 { "1m" } else { "10s" }
    ));
    out.push_str(&format!(
        "  - chaos: {set}\n  - expect_alert: {{name: {}}}\n",
        q(&rule.name)
    ));
    let teams = stack
        .doc
        .services
        .values()
        .any(|s| s.kind == Kind::TeamsMock);
    if teams {
        out.push_str(&format!(
            "  - expect_teams: {{alert: {}, status: firing}}\n",
            q(&rule.name)
        ));
    }
    out.push_str(&format!(
        "  - chaos: {undo}\n  - expect_resolved: {{name: {}}}\n",
        q(&rule.name)
    ));
    out
}

/// The drill's load on the fixture `svc` (none for other services): on
/// the route the fault names, else its first.
fn load_step(stack: &Stack, svc: &str, fault: &Fault) -> Option<String> {
    let p = stack.fixtures.get(svc)?;
    let r = match fault {
        Fault::Latency(_, _, Some(r)) | Fault::Errors(_, Some(r)) => p.route(r),
        _ => None,
    }
    .or(p.routes.first())?;
    // A route with workers serves workers ÷ its latency at most: keep the
    // load at half of that under the fault, or its queue sheds and fires
    // what the drill does not expect.
    let added = match fault {
        Fault::Latency(_, x, _) => *x,
        _ => 0.0,
    };
    let rate = r.capacity.map_or(20.0, |c| {
        let per = r.latency.mean().as_secs_f64() + added;
        (0.5 * f64::from(c.workers) / per.max(1e-3))
            .clamp(1.0, 20.0)
            .floor()
    });
    Some(format!(
        "  - load: {{target: {}, path: {}, rate: {rate}/s}}\n",
        q(svc),
        q(&r.path)
    ))
}

/// `HighErrorRate` → `high-error-rate`, `APIDown` → `api-down`.
pub fn file_stem(name: &str) -> String {
    let c: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        // A word starts at an upper case letter after a lower case one or
        // a digit, or before a lower case one after an acronym (`APIDown`).
        let starts = ch.is_uppercase()
            && i > 0
            && (!c[i - 1].is_uppercase() || c.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if starts && !out.ends_with('-') {
            out.push('-');
        }
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// One draft per alert rule of `stack`; `stack_rel` is the stack file as
/// the scenarios will name it.
pub fn draft(stack: &Stack, stack_rel: &str) -> Vec<Drafted> {
    let catalog = Catalog::of_stack(stack, None);
    let rules = stack.prometheus.alert_rules();
    let faults: Vec<(AlertRule, Result<Fault, String>)> = rules
        .into_iter()
        .map(|r| {
            let f = classify(stack, &catalog, &r);
            (r, f)
        })
        .collect();
    // Alerts one fault provokes together: a stop fires every alert on the
    // service's `up`; the others share a fixture's fault of the same kind.
    let mut by_fault: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, f) in &faults {
        if let Ok(f) = f {
            let key = match f {
                Fault::Stop(s) => format!("stop {s}"),
                Fault::Latency(s, ..) => format!("latency {s}"),
                Fault::Errors(s, _) => format!("errors {s}"),
                Fault::Gauge(s, g, _) => format!("gauge {s} {g}"),
            };
            by_fault.entry(key).or_default().push(r.name.clone());
        }
    }
    // Two rules of one name (a warning and a critical one) get two files.
    let mut stems: BTreeMap<String, usize> = BTreeMap::new();
    faults
        .iter()
        .map(|(r, f)| match f {
            Ok(fault) => {
                let base = file_stem(&r.name);
                let n = stems.entry(base.clone()).or_default();
                *n += 1;
                let stem = if *n == 1 { base } else { format!("{base}-{n}") };
                let beside: Vec<String> = by_fault
                    .values()
                    .find(|v| v.contains(&r.name))
                    .map(|v| v.iter().filter(|x| **x != r.name).cloned().collect())
                    .unwrap_or_default();
                Drafted::Scenario {
                    alert: r.name.clone(),
                    file: format!("{stem}.yaml"),
                    text: scenario(stack, stack_rel, (r, &stem), fault, &beside),
                }
            }
            Err(why) => Drafted::Unclassified {
                alert: r.name.clone(),
                why: why.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn names_become_file_stems() {
        assert_eq!(file_stem("HighErrorRate"), "high-error-rate");
        assert_eq!(file_stem("APIDown"), "api-down");
        assert_eq!(file_stem("OpenAIHighCost"), "open-ai-high-cost");
        assert_eq!(file_stem("Http5xx_Rate"), "http5xx-rate");
    }

    /// Seed 001's three alerts each get their fault; seed 002's exporter
    /// view of PostgreSQL stops PostgreSQL.
    #[test]
    fn each_alert_gets_the_fault_its_expression_needs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let stack = Stack::load(&root.join("stack/stack.yaml")).unwrap();
        let catalog = Catalog::of_stack(&stack, None);
        let fault = |name: &str| {
            let r = stack.prometheus.alert_rule(name).unwrap();
            classify(&stack, &catalog, &r)
        };
        assert_eq!(fault("BackendDown"), Ok(Fault::Stop("backend".into())));
        assert_eq!(
            fault("HighErrorRate"),
            Ok(Fault::Errors("backend".into(), None))
        );
        assert!(
            matches!(fault("HighLatencyP95"), Ok(Fault::Latency(s, x, None)) if s == "backend" && x >= 1.0)
        );
        let pg = Stack::load(&root.join("stack/seed-002/stack.yaml")).unwrap();
        let pc = Catalog::of_stack(&pg, None);
        let r = pg.prometheus.alert_rule("PostgresqlDown").unwrap();
        assert_eq!(classify(&pg, &pc, &r), Ok(Fault::Stop("postgre".into())));
    }
}
