//! The configuration files that go into the containers: the user's files,
//! with every duration multiplied by the scenario's `time_scale` (DESIGN §6),
//! re-parsed so that the timing model reads exactly what Prometheus and
//! Alertmanager load.

use crate::error::{err, Context, Error, Result};
use crate::spec::alertmanager::{
    Alertmanager, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL,
};
use crate::spec::prometheus::{
    Prometheus, DEFAULT_EVALUATION_INTERVAL, DEFAULT_SCRAPE_INTERVAL, DEFAULT_SCRAPE_TIMEOUT,
};
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use crate::spec::Dur;
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Prometheus' `--rules.alert.resend-delay` default.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// Alertmanager's `global.resolve_timeout` default.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The stack as it runs: scaled configs, their parsed form, and the files.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The factor every duration was multiplied by.
    pub time_scale: f64,
    /// prometheus.yml and its rule files, scaled and parsed.
    pub prometheus: Prometheus,
    /// alertmanager.yml, scaled and parsed, if the stack has one.
    pub alertmanager: Option<Alertmanager>,
    /// (path inside the Prometheus container, content)
    pub prometheus_files: Vec<(String, String)>,
    /// The scaled alertmanager.yml, if the stack has one.
    pub alertmanager_file: Option<String>,
    /// Prometheus' alert resend delay (1m), scaled.
    pub resend_delay: Duration,
}

pub use crate::components::{AM_CONFIG, PROM_DIR};

fn key(k: &str) -> Value {
    Value::String(k.into())
}

/// Replaces `map[k]` (a duration string) by its scaled value; writes the
/// scaled default when absent and `default` is given, so defaults scale too.
fn scale_field(map: &mut Mapping, k: &str, f: f64, default: Option<Duration>) -> Result<()> {
    let cur = match map.get(key(k)) {
        Some(Value::String(s)) => Some(Dur::parse(s).map_err(|e| err!(Invalid, "{k}: {e}"))?),
        Some(other) => return Err(err!(Invalid, "{k}: expected a duration, found {other:?}")),
        None => default.map(Dur),
    };
    if let Some(d) = cur {
        map.insert(key(k), Value::String(d.scaled(f).to_string()));
    }
    Ok(())
}

fn mapping<'a>(v: &'a mut Value, k: &str) -> Option<&'a mut Mapping> {
    v.as_mapping_mut()?.get_mut(key(k))?.as_mapping_mut()
}

/// A config file parsed, with a `global` section (empty when it had none,
/// so that its defaults can be written in scaled).
fn with_global(text: &str, file: &str) -> Result<Value> {
    let mut v: Value = serde_yaml_ng::from_str(text)?;
    let root = v
        .as_mapping_mut()
        .ok_or_else(|| err!(Invalid, "{file} is not a mapping"))?;
    if !root.contains_key(key("global")) {
        root.insert(key("global"), Value::Mapping(Mapping::new()));
    }
    Ok(v)
}

fn scale_prometheus_yml(text: &str, f: f64) -> Result<String> {
    let mut v = with_global(text, "prometheus.yml")?;
    let g = mapping(&mut v, "global").ok_or_else(|| err!(Invalid, "global is not a mapping"))?;
    scale_field(g, "scrape_interval", f, Some(DEFAULT_SCRAPE_INTERVAL))?;
    scale_field(g, "scrape_timeout", f, Some(DEFAULT_SCRAPE_TIMEOUT))?;
    scale_field(
        g,
        "evaluation_interval",
        f,
        Some(DEFAULT_EVALUATION_INTERVAL),
    )?;
    // Prometheus refuses a global timeout above the global interval.
    let gi = Dur::parse(g[&key("scrape_interval")].as_str().unwrap_or("1m"))
        .map_err(|e| err!(Invalid, e))?;
    let gt = Dur::parse(g[&key("scrape_timeout")].as_str().unwrap_or("10s"))
        .map_err(|e| err!(Invalid, e))?;
    if gt > gi {
        g.insert(key("scrape_timeout"), Value::String(gi.to_string()));
    }
    if let Some(Value::Sequence(jobs)) = v
        .as_mapping_mut()
        .and_then(|m| m.get_mut(key("scrape_configs")))
    {
        for job in jobs.iter_mut().filter_map(Value::as_mapping_mut) {
            scale_field(job, "scrape_interval", f, None)?;
            scale_field(job, "scrape_timeout", f, None)?;
        }
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

fn scale_rules(text: &str, f: f64) -> Result<String> {
    let mut v: Value = serde_yaml_ng::from_str(text)?;
    if let Some(Value::Sequence(groups)) = v.as_mapping_mut().and_then(|m| m.get_mut(key("groups")))
    {
        for g in groups.iter_mut().filter_map(Value::as_mapping_mut) {
            scale_field(g, "interval", f, None)?;
            scale_field(g, "query_offset", f, None)?;
            if let Some(Value::Sequence(rules)) = g.get_mut(key("rules")) {
                for r in rules.iter_mut().filter_map(Value::as_mapping_mut) {
                    scale_field(r, "for", f, None)?;
                    scale_field(r, "keep_firing_for", f, None)?;
                    if let Some(Value::String(e)) = r.get(key("expr")) {
                        let scaled = crate::promql::scale_expr(e, f)
                            .map_err(|err| err!(Invalid, "{e}: {err}"))?;
                        r.insert(key("expr"), Value::String(scaled));
                    }
                }
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

fn scale_routes(route: &mut Mapping, f: f64, root: bool) -> Result<()> {
    let d = |x| if root { Some(x) } else { None };
    scale_field(route, "group_wait", f, d(DEFAULT_GROUP_WAIT))?;
    scale_field(route, "group_interval", f, d(DEFAULT_GROUP_INTERVAL))?;
    scale_field(route, "repeat_interval", f, d(DEFAULT_REPEAT_INTERVAL))?;
    if let Some(Value::Sequence(children)) = route.get_mut(key("routes")) {
        for c in children.iter_mut().filter_map(Value::as_mapping_mut) {
            scale_routes(c, f, false)?;
        }
    }
    Ok(())
}

fn scale_alertmanager_yml(text: &str, f: f64) -> Result<String> {
    let mut v = with_global(text, "alertmanager.yml")?;
    if let Some(g) = mapping(&mut v, "global") {
        scale_field(g, "resolve_timeout", f, Some(DEFAULT_RESOLVE_TIMEOUT))?;
    }
    if let Some(r) = mapping(&mut v, "route") {
        scale_routes(r, f, true)?;
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

/// A rendered prometheus.yml with no rule file: Prometheus loading it drops
/// every rule group and its state (a shared stack's reset).
pub fn without_rules(prometheus_yml: &str) -> Result<String> {
    let mut v: Value = serde_yaml_ng::from_str(prometheus_yml)?;
    if let Some(m) = v.as_mapping_mut() {
        m.remove(key("rule_files"));
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

/// Renders the stack's configs at `time_scale` and parses them back.
pub fn render(stack: &Stack, time_scale: f64) -> Result<Effective> {
    let f = time_scale;
    let prom_src = &stack.prometheus.source;
    let prom_text = scale_prometheus_yml(&prom_src.text, f)
        .context(Error::Invalid, "scaling prometheus.yml")?;
    let mut rule_texts: HashMap<PathBuf, String> = HashMap::new();
    let mut prometheus_files = vec![(format!("{PROM_DIR}/prometheus.yml"), prom_text.clone())];
    for rf in &stack.prometheus.rule_files {
        let scaled = scale_rules(&rf.source.text, f).context(
            Error::Invalid,
            format!("scaling {}", rf.source.path.display()),
        )?;
        prometheus_files.push((format!("{PROM_DIR}/{}", rf.rel.display()), scaled.clone()));
        rule_texts.insert(rf.source.path.clone(), scaled);
    }
    let prometheus = Prometheus::from_source(Source::from_text(&prom_src.path, prom_text), |p| {
        rule_texts
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("{} was not rendered", p.display())))
    })
    .map_err(|e| err!(Invalid, "the scaled configuration does not load: {e:?}"))?;
    let (alertmanager, alertmanager_file) = match &stack.alertmanager {
        Some(am) => {
            let text = scale_alertmanager_yml(&am.source.text, f)
                .context(Error::Invalid, "scaling alertmanager.yml")?;
            let parsed =
                Alertmanager::from_source(Source::from_text(&am.source.path, text.clone()))?;
            (Some(parsed), Some(text))
        }
        None => (None, None),
    };
    Ok(Effective {
        time_scale: f,
        prometheus,
        alertmanager,
        prometheus_files,
        alertmanager_file,
        resend_delay: Dur(DEFAULT_RESEND_DELAY).scaled(f).0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_defaults_scale_too() {
        let out = scale_prometheus_yml(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n",
            0.1,
        )
        .unwrap();
        assert!(out.contains("scrape_interval: 6s"), "{out}");
        assert!(out.contains("scrape_timeout: 1s"), "{out}");
        assert!(out.contains("evaluation_interval: 6s"), "{out}");
        assert!(out.contains("scrape_interval: 500ms"), "{out}");
    }

    #[test]
    fn a_config_without_rules_keeps_everything_else() {
        let text = "global:\n  scrape_interval: 1s\nrule_files:\n- rules.yml\nscrape_configs:\n- job_name: a\n";
        let out = without_rules(text).unwrap();
        assert!(
            !out.contains("rules.yml") && out.contains("job_name: a"),
            "{out}"
        );
    }

    #[test]
    fn rules_and_routes_scale() {
        let r = scale_rules(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m]) > 1\n    for: 5m\n",
            0.1,
        )
        .unwrap();
        assert!(
            r.contains("for: 30s") && r.contains("rate(x[30s]) > 1"),
            "{r}"
        );
        let a = scale_alertmanager_yml("route:\n  receiver: t\n  routes:\n  - receiver: t\n    group_wait: 10s\nreceivers:\n- name: t\n", 0.1).unwrap();
        assert!(
            a.contains("group_wait: 3s")
                && a.contains("group_wait: 1s")
                && a.contains("group_interval: 30s"),
            "{a}"
        );
    }
}
