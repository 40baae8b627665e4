//! The dashboards a stack provisions: their files, and the panel titles a
//! scenario may name in `expect_dashboards` (checked before any container
//! starts).

use super::stack::{Kind, Stack};
use crate::grafana;
use std::path::PathBuf;

/// The dashboard files of every Grafana service of the stack.
pub fn dashboard_files(stack: &Stack) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for svc in stack
        .doc
        .services
        .values()
        .filter(|s| s.kind == Kind::Grafana)
    {
        let Some(dir) = svc.dashboards.as_ref().map(|d| stack.source.relative(d)) else {
            continue;
        };
        let mut stack_dirs = vec![dir];
        while let Some(d) = stack_dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack_dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// (dashboard file name, panel title) of every panel target of the stack.
pub fn panel_titles(stack: &Stack) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in dashboard_files(stack) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(dashboard) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for t in grafana::targets(&dashboard) {
            out.push((name.clone(), t.panel_title));
        }
    }
    out.dedup();
    out
}
