//! What `init --compose` reads of Grafana's provisioning beyond its path:
//! the folders its dashboard providers read. (Prometheus' config is read
//! as the stack reads it, `spec::prometheus::PromConfig`.)

use serde_yaml_ng::Value;
use std::path::Path;

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
