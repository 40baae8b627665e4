//! Rule-file checks: every expression parses (done on load), alert hygiene
//! (severity label, summary annotation, `for` of `up`-based alerts), label and
//! annotation templates, duplicate rules, and one-to-one vector matching that
//! fails at evaluation as soon as a side has two series for a match.

use super::metrics::Catalog;
use super::{from_spec, Finding, Report, Severity};
use crate::spec::prometheus::{load_rule_file, RuleFile};
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use promql_parser::parser::{self, Expr};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A rule file on its own (no stack: no metric or scrape checks).
pub fn lint_file(path: &Path) -> Report {
    let mut report = Report {
        files: 1,
        ..Default::default()
    };
    let src = match Source::read(path) {
        Ok(s) => s,
        Err(e) => {
            report.findings.push(from_spec(&e));
            return report;
        }
    };
    match load_rule_file(src, path.to_path_buf()) {
        Ok(rf) => {
            report.merge(lint_rules(&rf, None));
            report
                .findings
                .extend(duplicates(std::slice::from_ref(&rf)));
        }
        Err(e) => report.findings.extend(e.errors.iter().map(from_spec)),
    }
    report
}

/// Lints the rules of one rule file; with a stack and its catalog, also the metrics they select and `up` alerts' `for`.
pub fn lint_rules(rf: &RuleFile, stack: Option<(&Stack, &Catalog)>) -> Report {
    let mut r = Report::default();
    let src = &rf.source;
    for (gi, g) in rf.doc.groups.iter().enumerate() {
        for (ri, rule) in g.rules.iter().enumerate() {
            r.rules += 1;
            let at = format!("groups.{gi}.rules.{ri}");
            let Ok(ast) = parser::parse(&rule.expr) else {
                continue;
            };
            // A risk that depends on the data, not a certain failure: many
            // valid rules match one-to-one on series that are unique.
            r.findings.extend(vector_matching(&ast).map(|m| {
                Finding::at(
                    "vector-matching",
                    Severity::Warning,
                    src,
                    &format!("{at}.expr"),
                    m,
                )
            }));
            if let Some((stack, catalog)) = stack {
                r.findings
                    .extend(catalog.check(&ast, src, &format!("{at}.expr")));
                if let Some(name) = &rule.alert {
                    r.findings.extend(for_up(
                        stack,
                        &ast,
                        rule.for_.map(|d| d.0).unwrap_or_default(),
                        name,
                        src,
                        &at,
                    ));
                }
            }
            if rule.alert.is_some() {
                r.findings
                    .extend(semantic(&ast, stack.map(|s| s.1), src, &at));
            }
            if let Some(name) = &rule.alert {
                r.findings.extend(hygiene(rule, name, src, &at));
            }
            for (kind, map) in [("labels", &rule.labels), ("annotations", &rule.annotations)] {
                for (k, v) in map {
                    if let Err(e) = check_template(v) {
                        r.findings.push(Finding::at(
                            "template",
                            Severity::Error,
                            src,
                            &format!("{at}.{kind}.{k}"),
                            format!("{kind} `{k}`: {e}"),
                        ));
                    }
                }
            }
        }
    }
    r
}

/// An alert's hygiene: a severity label and a summary annotation.
fn hygiene(
    rule: &crate::spec::prometheus::Rule,
    name: &str,
    src: &Source,
    at: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if !rule.labels.contains_key("severity") {
        out.push(
            Finding::at(
                "alert-severity",
                Severity::Warning,
                src,
                at,
                format!("alert `{name}` has no `severity` label"),
            )
            .help("routing and on-call paging usually key on severity"),
        );
    }
    if !rule.annotations.contains_key("summary") {
        out.push(
            Finding::at(
                "alert-summary",
                Severity::Warning,
                src,
                at,
                format!("alert `{name}` has no `summary` annotation"),
            )
            .help("the notification's one-line text comes from it"),
        );
    }
    out
}

/// What an alert's expression gets wrong though it parses: a counter
/// against a constant; kubelet labels on the stack's standalone cAdvisor.
fn semantic(ast: &Expr, catalog: Option<&Catalog>, src: &Source, at: &str) -> Vec<Finding> {
    let expr = format!("{at}.expr");
    let mut out: Vec<Finding> = super::semantic::counter_vs_constant(ast, catalog)
        .into_iter()
        .map(|(sev, m)| {
            let name = m.split('`').nth(1).unwrap_or("x").to_string();
            Finding::at("counter-constant", sev, src, &expr, m)
                .help(super::semantic::counter_help(&name))
        })
        .collect();
    if catalog.is_some_and(Catalog::standalone_cadvisor) {
        out.extend(super::semantic::kubelet_labels(ast).into_iter().map(|m| {
            Finding::at("kubelet-labels", Severity::Error, src, &expr, m)
                .help(super::semantic::KUBELET_HELP)
        }));
    }
    out
}

/// An `up`-based alert whose `for` is under two scrape intervals fires on one failed scrape.
fn for_up(
    stack: &Stack,
    ast: &Expr,
    for_: std::time::Duration,
    name: &str,
    src: &Source,
    at: &str,
) -> Option<Finding> {
    let sels = super::metrics::selectors(ast);
    let up = sels.iter().find(|s| s.name.as_deref() == Some("up"))?;
    let cfg = &stack.prometheus.config;
    let interval = match up.job() {
        Some(job) => cfg.job_timing(&job).0,
        None => cfg.slowest_scrape().0,
    };
    (for_ < 2 * interval).then(|| {
        Finding::at("alert-for-up", Severity::Warning, src, &format!("{at}.for"), format!("alert `{name}` is based on `up` and its `for` ({}) is under two scrape intervals ({}): one failed scrape pages someone", crate::util::secs(for_), crate::util::secs(2 * interval)))
    })
}

fn aggregated_by(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Aggregate(a) => match &a.modifier {
            Some(promql_parser::parser::LabelModifier::Include(l)) => Some(l.labels.clone()),
            _ => Some(vec![]),
        },
        Expr::Paren(p) => aggregated_by(&p.expr),
        _ => None,
    }
}

fn is_selector(e: &Expr) -> bool {
    matches!(e, Expr::VectorSelector(_)) || matches!(e, Expr::Paren(p) if is_selector(&p.expr))
}

/// One-to-one `on(...)` matching between two raw selectors: any duplicate
/// match key on a side makes the whole rule fail at evaluation.
pub fn vector_matching(ast: &Expr) -> Option<String> {
    let mut found = None;
    let mut ast = ast.clone();
    crate::promql::walk(&mut ast, &mut |e| {
        if let Expr::Binary(b) = e {
            if let Some(m) = &b.modifier {
                let one_to_one = matches!(
                    m.card,
                    promql_parser::parser::VectorMatchCardinality::OneToOne
                );
                if let Some(promql_parser::parser::LabelModifier::Include(on)) = &m.matching {
                    let raw = |x: &Expr| is_selector(x) && aggregated_by(x).is_none();
                    if one_to_one && raw(&b.lhs) && raw(&b.rhs) && found.is_none() {
                        found = Some(format!(
                            "one-to-one match on({}) between two unaggregated selectors: if either side has two series with the same ({}) the rule fails at evaluation (many-to-many); aggregate by them or use group_left/group_right",
                            on.labels.join(", "),
                            on.labels.join(", ")
                        ));
                    }
                }
            }
        }
    });
    found
}

/// Duplicate rules (same name and labels) across a set of files' groups, as promtool's lint.
pub fn duplicates(files: &[RuleFile]) -> Vec<Finding> {
    let mut seen: HashMap<(String, BTreeMap<String, String>), ()> = HashMap::new();
    let mut out = Vec::new();
    for rf in files {
        for (gi, g) in rf.doc.groups.iter().enumerate() {
            for (ri, r) in g.rules.iter().enumerate() {
                let Some(name) = r.alert.as_ref().or(r.record.as_ref()) else {
                    continue;
                };
                if seen.insert((name.clone(), r.labels.clone()), ()).is_some() {
                    out.push(Finding::at("duplicate-rule", Severity::Error, &rf.source, &format!("groups.{gi}.rules.{ri}"), format!("rule `{name}` is defined twice with the same labels")).help("two rules writing the same series make recordings and alerts inconsistent"));
                }
            }
        }
    }
    out
}

/// A light check of a Go template as Prometheus renders it: balanced
/// actions, closed blocks, and only defined variables.
pub fn check_template(t: &str) -> crate::error::Result<()> {
    let mut vars: Vec<String> = ["$labels", "$value", "$externalLabels", "$externalURL", "$"]
        .map(String::from)
        .to_vec();
    let mut blocks = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed action `{{`")?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &after[end + 2..];
        if action.starts_with("/*") {
            continue;
        }
        let first = action.split_whitespace().next().unwrap_or("");
        match first {
            "if" | "range" | "with" | "define" | "block" => blocks.push(first.to_string()),
            "end" => {
                blocks.pop().ok_or("`end` without an open if/range/with")?;
            }
            _ => {}
        }
        // Declarations: `$x := ...`, also inside range: `range $i, $v := ...`.
        if let Some((lhs, _)) = action.split_once(":=") {
            for v in lhs.split([' ', ',']).filter(|w| w.starts_with('$')) {
                vars.push(v.to_string());
            }
        }
        for word in action.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '_')) {
            if word.starts_with('$') && !vars.iter().any(|v| v == word) {
                return Err(crate::error::Error::Invalid(format!("undefined variable `{word}` (known: $labels, $value, $externalLabels, $externalURL)")));
            }
        }
    }
    if rest.contains("}}") && !t.contains("{{") {
        return Err("`}}` without `{{`".into());
    }
    if let Some(b) = blocks.last() {
        return Err(crate::error::Error::Invalid(format!(
            "`{b}` is not closed by `end`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("{{ $labels.instance }} is {{ $value | humanize }}").is_ok());
        assert!(check_template("{{ if gt $value 1.0 }}high{{ end }}").is_ok());
        assert!(check_template("{{ range $i, $v := query \"up\" }}{{ $v }}{{ end }}").is_ok());
        assert!(check_template("{{ $label.foo }}")
            .unwrap_err()
            .to_string()
            .contains("`$label`"));
        assert!(check_template("{{ if true }}x")
            .unwrap_err()
            .to_string()
            .contains("not closed"));
        assert!(check_template("{{ $labels.x ").is_err());
    }

    #[test]
    fn many_to_many_risk() {
        let p = |e| vector_matching(&parser::parse(e).unwrap());
        assert!(p("join_1 + on(a) join_2").is_some());
        assert!(p("a * on(instance) group_left(version) b").is_none());
        assert!(p("sum by (a) (x) / on(a) sum by (a) (y)").is_none());
        assert!(p("a / b").is_none());
    }
}
