//! Routing: where each alert of the stack goes through Alertmanager's tree,
//! and whether that receiver can notify anyone at all.

use super::{Finding, Report, Route, Severity};
use crate::spec::stack::Stack;

/// Lints a stack's routing: alerts reach an Alertmanager, and each receiver they route to can notify.
pub fn lint_routing(stack: &Stack) -> Report {
    let mut r = Report::default();
    let prom = &stack.prometheus;
    let alerts = prom.alert_rules();
    let Some(am) = &stack.alertmanager else {
        if !alerts.is_empty() {
            r.findings.push(Finding::at(
                "routing",
                Severity::Warning,
                &stack.source,
                "services",
                "the stack has alerting rules but no Alertmanager: alerts notify nobody",
            ));
        }
        return r;
    };
    let targets = prom
        .config
        .alerting
        .alertmanagers
        .iter()
        .flat_map(|a| &a.static_configs)
        .flat_map(|c| &c.targets)
        .count();
    if targets == 0 && !alerts.is_empty() {
        r.findings.push(Finding::at(
            "routing",
            Severity::Error,
            &prom.source,
            "alerting",
            "Prometheus sends its alerts to no Alertmanager (alerting.alertmanagers is empty)",
        ));
    }
    for a in alerts {
        let mut labels = a.labels.clone();
        labels.insert("alertname".into(), a.name.clone());
        let receivers: Vec<String> = am
            .routes_for(&labels)
            .into_iter()
            .map(|t| t.receiver)
            .collect();
        for name in &receivers {
            let idx = am.config.receivers.iter().position(|x| &x.name == name);
            if let Some(i) = idx.filter(|i| am.config.receivers[*i].integrations() == 0) {
                r.findings.push(Finding::at(
                    "routing",
                    Severity::Error,
                    &am.source,
                    &format!("receivers.{i}"),
                    format!("alert `{}` is routed to receiver `{name}`, which has no integration: its notifications are dropped", a.name),
                ));
            }
        }
        r.routes.push(Route {
            alert: a.name.clone(),
            receivers,
        });
    }
    r
}
