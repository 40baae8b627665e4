//! What configs really get wrong though they parse: a counter compared with
//! a constant (true from its first increment on, for ever), a scrape target
//! that speaks no Prometheus exposition (never up), and kubelet-only labels
//! selected on standalone cAdvisor (the selector matches nothing, so the
//! alert can never fire). Each finding says how to fix it.

use super::metrics::{selectors, Catalog};
use super::{Finding, Severity};
use crate::components::{self, Catalogue};
use crate::spec::fixture::MetricType;
use crate::spec::prometheus::Prometheus;
use crate::spec::source::Source;
use crate::spec::stack::{Kind, Stack};
use promql_parser::parser::{Expr, VectorSelector};

/// Aggregations that keep a counter's values (a sum of counters grows too).
const KEEPS_VALUES: [&str; 6] = ["sum", "max", "min", "avg", "topk", "bottomk"];

/// The counter selector `e` is, unchanged but for aggregation, parentheses
/// or arithmetic with a number: what still only grows.
fn raw(e: &Expr) -> Option<&VectorSelector> {
    match e {
        Expr::VectorSelector(v) => Some(v),
        Expr::Paren(p) => raw(&p.expr),
        Expr::Aggregate(a) if KEEPS_VALUES.contains(&a.op.to_string().as_str()) => raw(&a.expr),
        Expr::Binary(b) if !b.op.is_comparison_operator() && !b.op.is_set_operator() => {
            match (number(&b.lhs), number(&b.rhs)) {
                (true, false) => raw(&b.rhs),
                (false, true) => raw(&b.lhs),
                _ => None,
            }
        }
        _ => None,
    }
}

fn number(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => number(&p.expr),
        _ => false,
    }
}

/// Whether `name` is a counter: certainly (its type is known), by its
/// `_total` suffix only (a gauge may wear it: prom-client's
/// `nodejs_active_handles_total`), or not.
fn counter(name: &str, catalog: Option<&Catalog>) -> Option<Severity> {
    match catalog.and_then(|c| c.type_of(name)) {
        Some(MetricType::Counter) => Some(Severity::Error),
        Some(_) => None,
        None => name.ends_with("_total").then_some(Severity::Warning),
    }
}

/// Each comparison of a counter with a constant in `ast`: the severity
/// (error when its type is known and it decides the alert) and the message.
pub fn counter_vs_constant(ast: &Expr, catalog: Option<&Catalog>) -> Vec<(Severity, String)> {
    let mut out = Vec::new();
    visit(ast, false, catalog, &mut out);
    out
}

/// Walks `e`; `guard` is set under `and`/`unless`, where the other side
/// decides whether the alert fires.
fn visit(e: &Expr, guard: bool, catalog: Option<&Catalog>, out: &mut Vec<(Severity, String)>) {
    match e {
        Expr::Binary(b) if matches!(b.op.to_string().as_str(), "and" | "unless") => {
            visit(&b.lhs, true, catalog, out);
            visit(&b.rhs, true, catalog, out);
        }
        Expr::Binary(b) => {
            if b.op.is_comparison_operator() {
                compared(&b.lhs, &b.rhs, guard, catalog, out);
            }
            visit(&b.lhs, guard, catalog, out);
            visit(&b.rhs, guard, catalog, out);
        }
        Expr::Paren(p) => visit(&p.expr, guard, catalog, out),
        Expr::Aggregate(a) => visit(&a.expr, guard, catalog, out),
        Expr::Unary(u) => visit(&u.expr, guard, catalog, out),
        Expr::Subquery(s) => visit(&s.expr, guard, catalog, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                visit(a, guard, catalog, out);
            }
        }
        _ => {}
    }
}

/// One comparison: a raw counter on one side, a number on the other.
fn compared(
    lhs: &Expr,
    rhs: &Expr,
    guard: bool,
    catalog: Option<&Catalog>,
    out: &mut Vec<(Severity, String)>,
) {
    let side = match (number(lhs), number(rhs)) {
        (false, true) => lhs,
        (true, false) => rhs,
        _ => return,
    };
    let Some(name) = raw(side).and_then(|v| v.name.clone()) else {
        return;
    };
    let Some(sev) = counter(&name, catalog) else {
        return;
    };
    out.push(if guard {
        (
            Severity::Warning,
            format!("`{name}` is a counter: as a guard of `and`/`unless`, comparing it with a constant holds for ever once passed, so it guards nothing after that"),
        )
    } else {
        (
            sev,
            format!("`{name}` is a counter: it only grows (until its process restarts), so comparing it with a constant is true from the first increments on and stays true: the alert fires at baseline and never resolves"),
        )
    });
}

/// The help for [`counter_vs_constant`].
pub fn counter_help(name_hint: &str) -> String {
    format!("compare its rate per second, `rate({name_hint}[5m]) > x`, or what it gained in a window, `increase({name_hint}[1h]) > x`")
}

/// Labels the kubelet adds to cAdvisor's series; standalone cAdvisor has
/// `id`, `name`, `image` and `container_label_*` instead.
const KUBELET_LABELS: [&str; 5] = [
    "container",
    "pod",
    "namespace",
    "pod_name",
    "container_name",
];

/// Each selector of a cAdvisor series (`container_*`) in `ast` whose
/// matcher on a kubelet-only label needs a value: on standalone cAdvisor
/// the label is absent (empty), so the selector matches nothing.
pub fn kubelet_labels(ast: &Expr) -> Vec<String> {
    selectors(ast)
        .into_iter()
        .filter_map(|s| {
            let name = s.name.filter(|n| n.starts_with("container_"))?;
            let m = s
                .matchers
                .iter()
                .find(|m| KUBELET_LABELS.contains(&m.name.as_str()) && !m.is_match(""))?;
            Some(format!(
                "`{name}` selects `{}` on standalone cAdvisor, which has no such label (the kubelet adds container, pod and namespace): the selector matches nothing, so what reads it never fires or draws",
                m.name
            ))
        })
        .collect()
}

/// The help for [`kubelet_labels`].
pub const KUBELET_HELP: &str = "select containers by cAdvisor's own labels: `name` (the container's name, e.g. {name!=\"\"} or {name=\"api\"}), `image`, or `container_label_com_docker_compose_service`";

/// Well-known ports of servers that speak their own protocol, not the
/// Prometheus exposition, and where their metrics are.
const WIRE_PORTS: [(&str, &str, &str); 9] = [
    (
        "5432",
        "PostgreSQL's wire protocol",
        "scrape postgres_exporter (:9187)",
    ),
    (
        "3306",
        "MySQL's wire protocol",
        "scrape mysqld_exporter (:9104)",
    ),
    ("6379", "Redis' protocol", "scrape redis_exporter (:9121)"),
    (
        "27017",
        "MongoDB's wire protocol",
        "scrape mongodb_exporter (:9216)",
    ),
    (
        "5672",
        "AMQP",
        "scrape RabbitMQ's prometheus plugin (:15692)",
    ),
    (
        "9092",
        "Kafka's protocol",
        "scrape a Kafka exporter (:9308) or the JMX exporter",
    ),
    (
        "2181",
        "ZooKeeper's protocol",
        "scrape its Prometheus metrics provider (:7000)",
    ),
    (
        "11211",
        "memcached's protocol",
        "scrape memcached_exporter (:9150)",
    ),
    (
        "9000",
        "MinIO's S3 API, whose metrics are not at /metrics",
        "set `metrics_path: /minio/v2/metrics/cluster`",
    ),
];

/// Scrape targets that speak no Prometheus exposition: a stack service
/// whose component has none (an error: it is known), or a well-known
/// server port (a warning: a port can be remapped).
pub fn scrape_targets(prom: &Prometheus, stack: Option<&Stack>) -> Vec<Finding> {
    let src: &Source = &prom.source;
    let mut out = Vec::new();
    for (i, sc) in prom.config.scrape_configs.iter().enumerate() {
        let path = sc.metrics_path.as_deref().unwrap_or("/metrics");
        if sc.rewrites_address() {
            continue; // a probe: its targets are what it probes, not what it scrapes
        }
        for (j, c) in sc.static_configs.iter().enumerate() {
            for (k, t) in c.targets.iter().enumerate() {
                let at = format!("scrape_configs.{i}.static_configs.{j}.targets.{k}");
                let (host, port) = t.rsplit_once(':').unwrap_or((t, ""));
                let service = stack.and_then(|s| s.service(host).map(|x| (x.kind, s)));
                if let Some((kind, _)) = service {
                    if let Catalogue::NoExposition(why) = components::of(kind).catalogue {
                        out.push(
                            Finding::at(
                                "scrape-target",
                                Severity::Error,
                                src,
                                &at,
                                format!("job {} scrapes {t}: {why}, no Prometheus exposition, so the target is never up", sc.job_name),
                            )
                            .help(exporter_of(kind, stack)),
                        );
                    }
                    continue;
                }
                let Some((_, what, fix)) = WIRE_PORTS.iter().find(|(p, _, _)| *p == port) else {
                    continue;
                };
                if port == "9000" && path != "/metrics" {
                    continue;
                }
                out.push(
                    Finding::at(
                        "scrape-target",
                        Severity::Warning,
                        src,
                        &at,
                        format!(
                            "job {} scrapes {t}{path}: port {port} is {what}, no Prometheus exposition, so the target would never be up",
                            sc.job_name
                        ),
                    )
                    .help(fix.to_string()),
                );
            }
        }
    }
    out
}

/// Where a component's metrics are: its exporter in the stack, if any.
fn exporter_of(kind: Kind, stack: Option<&Stack>) -> String {
    let exporter = match kind {
        Kind::Postgres => Some(Kind::PostgresExporter),
        _ => None,
    };
    let found = exporter.and_then(|e| {
        stack?
            .doc
            .services
            .iter()
            .find(|(_, s)| s.kind == e)
            .map(|(n, s)| {
                let port = s.port.unwrap_or(components::of(e).port);
                format!("scrape its exporter, {n}:{port}")
            })
    });
    found.unwrap_or_else(|| "scrape its exporter instead".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::parse;

    fn cvc(e: &str) -> Vec<Severity> {
        counter_vs_constant(&parse(e).unwrap(), None)
            .into_iter()
            .map(|x| x.0)
            .collect()
    }

    #[test]
    fn a_counter_against_a_constant_is_found_and_its_rate_is_not() {
        for bad in [
            "process_cpu_seconds_total > 0.8",
            "sum by (job) (http_requests_total{code=~\"5..\"}) > 10",
            "0.8 < (process_cpu_seconds_total / 2)",
            "up == 0 or errors_total > 5",
            // A guard: a warning too (by name alone it is one anyway).
            "rate(errors_total[5m]) > 1 and requests_total > 100",
        ] {
            assert_eq!(cvc(bad), [Severity::Warning], "{bad}");
        }
        for good in [
            "rate(process_cpu_seconds_total[1m]) > 0.8",
            "increase(errors_total[1h]) > 5",
            "errors_total - errors_total offset 1h > 5",
            "count(errors_total) > 3",
            "pg_stat_activity_count > 80",
            "sum(errors_total) / sum(requests_total) > 0.1",
        ] {
            assert!(cvc(good).is_empty(), "{good}");
        }
    }

    #[test]
    fn kubelet_labels_on_standalone_cadvisor_match_nothing() {
        let f = |e: &str| kubelet_labels(&parse(e).unwrap());
        assert_eq!(
            f(r#"sum by (name) (rate(container_cpu_usage_seconds_total{container!=""}[5m])) > 0.9"#).len(),
            1
        );
        assert_eq!(f(r#"container_memory_usage_bytes{pod="api-0"}"#).len(), 1);
        assert!(f(r#"container_memory_usage_bytes{name!=""}"#).is_empty());
        assert!(f(r#"container_memory_usage_bytes{container=""}"#).is_empty());
        assert!(f(r#"kube_pod_container_status_restarts_total{container="x"}"#).is_empty());
    }
}
