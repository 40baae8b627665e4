//! What `init --compose` reads of the user's own config files, beyond
//! their paths: a Prometheus config's rule files and its static targets'
//! ports, and the folders Grafana's dashboard providers read.

use serde_yaml_ng::Value;
use std::path::Path;

/// A Prometheus config's `rule_files` patterns.
pub(super) fn rule_files(text: &str) -> Vec<String> {
    let doc: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
    doc.get("rule_files")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The ports of `host` among a Prometheus config's static targets.
pub(super) fn scrape_ports(text: &str, host: &str) -> Vec<u16> {
    let doc: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for sc in doc
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        for c in sc
            .get("static_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for t in c
                .get("targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                if let Some((h, p)) = t.as_str().and_then(|t| t.rsplit_once(':')) {
                    if h == host {
                        out.extend(p.parse::<u16>().ok());
                    }
                }
            }
        }
    }
    out
}

/// Grafana dashboard providers' `options.path`, from the provisioning folder.
pub(super) fn dashboard_paths(prov: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(prov.join("dashboards")) else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(doc) = serde_yaml_ng::from_str::<Value>(&text) else {
            continue;
        };
        for p in doc
            .get("providers")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(path) = p
                .get("options")
                .and_then(|o| o.get("path"))
                .and_then(Value::as_str)
            {
                out.push(path.to_string());
            }
        }
    }
    out
}
