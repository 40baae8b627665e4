//! A dashboard's panel targets as Grafana loads them: panels nested in rows
//! and in collapsed rows, the `repeat` each inherits, the datasource each
//! uses (its own, else its panel's), and a refId for each.

use serde_json::Value;

/// One Prometheus query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    /// Dotted path of the `expr` in the dashboard JSON (`panels.2.targets.0.expr`).
    pub path: String,
    /// The panel's title.
    pub panel_title: String,
    /// The panel's id.
    pub panel_id: Option<i64>,
    /// The target's `refId`, default `A`.
    pub ref_id: String,
    /// The query as written, before interpolation.
    pub expr: String,
    /// The datasource reference as written (target's, else panel's).
    pub datasource: Option<Value>,
    /// The target's min interval (`interval`), else its panel's, if set.
    pub interval: Option<String>,
    /// The panel's `maxDataPoints`, if set (it feeds `$__interval`).
    pub max_data_points: Option<u64>,
    /// Whether the target is hidden (not run).
    pub hide: bool,
    /// The variable its panel (or the row around it) repeats by, if any:
    /// Grafana shows one panel per selected value.
    pub repeat: Option<String>,
}

/// Every Prometheus target of a dashboard, panels nested in rows included.
pub fn targets(dashboard: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    type Found<'a> = Vec<(&'a Value, String, Option<String>)>;
    let mut order: Found = Vec::new();
    // A panel's `repeat`, else the one of the row it sits in.
    fn collect<'a>(v: &'a Value, path: String, repeat: Option<String>, order: &mut Found<'a>) {
        for key in ["panels", "rows"] {
            if let Some(a) = v.get(key).and_then(Value::as_array) {
                // An expanded row holds the panels after it, up to the next row.
                let mut row: Option<String> = None;
                for (i, p) in a.iter().enumerate() {
                    let here = if path.is_empty() {
                        format!("{key}.{i}")
                    } else {
                        format!("{path}.{key}.{i}")
                    };
                    let own = p
                        .get("repeat")
                        .and_then(Value::as_str)
                        .filter(|r| !r.is_empty())
                        .map(|r| r.trim_start_matches('$').to_string());
                    if p.get("type").and_then(Value::as_str) == Some("row") {
                        row = own.clone();
                    }
                    let repeat = own.or_else(|| row.clone()).or_else(|| repeat.clone());
                    order.push((p, here.clone(), repeat.clone()));
                    collect(p, here, repeat, order);
                }
            }
        }
    }
    collect(dashboard, String::new(), None, &mut order);
    for (p, ppath, repeat) in order {
        let Some(ts) = p.get("targets").and_then(Value::as_array) else {
            continue;
        };
        let ref_ids = ref_ids(ts);
        for (ti, t) in ts.iter().enumerate() {
            let Some(expr) = t.get("expr").and_then(Value::as_str) else {
                continue;
            };
            out.push(Target {
                path: format!("{ppath}.targets.{ti}.expr"),
                panel_title: p
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                panel_id: p.get("id").and_then(Value::as_i64),
                ref_id: ref_ids[ti].clone(),
                expr: expr.to_string(),
                datasource: t
                    .get("datasource")
                    .filter(|d| !d.is_null())
                    .or_else(|| p.get("datasource"))
                    .filter(|d| !d.is_null())
                    .cloned(),
                interval: [t, p]
                    .iter()
                    .find_map(|x| {
                        x.get("interval")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                    })
                    .map(String::from),
                max_data_points: p
                    .get("maxDataPoints")
                    .and_then(Value::as_u64)
                    .filter(|n| *n > 0),
                hide: t.get("hide").and_then(Value::as_bool).unwrap_or(false),
                repeat: repeat.clone(),
            });
        }
    }
    out
}

/// Each target's refId; one without takes the first letter no other target
/// of the panel has, as Grafana gives it when it loads the panel
/// (`PanelModel.ensureQueryIds` → `getNextRefId`: A…Z, then AA, AB…).
fn ref_ids(targets: &[Value]) -> Vec<String> {
    let mut taken: Vec<String> = targets
        .iter()
        .filter_map(|t| t.get("refId").and_then(Value::as_str))
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect();
    let letters = |mut n: usize| {
        let mut s = String::new();
        loop {
            s.insert(0, (b'A' + (n % 26) as u8) as char);
            if n < 26 {
                return s;
            }
            n = n / 26 - 1;
        }
    };
    targets
        .iter()
        .map(|t| match t.get("refId").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => {
                let id = (0..)
                    .map(letters)
                    .find(|l| !taken.contains(l))
                    .expect("a free letter");
                taken.push(id.clone());
                id
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grafana::{interpolate, TimeContext};
    use serde_json::json;

    #[test]
    fn nested_row_panels() {
        let d = json!({"panels":[
            {"id":1,"type":"row","collapsed":true,"panels":[{"id":2,"title":"in row","targets":[{"refId":"A","expr":"up"}]}]},
            {"id":3,"title":"top","datasource":{"uid":"p"},"targets":[{"refId":"B","expr":"sum(up)"},{"refId":"C","query":"loki"}]}]});
        let t = targets(&d);
        assert_eq!(
            t.iter().map(|t| t.panel_title.as_str()).collect::<Vec<_>>(),
            ["in row", "top"]
        );
        assert_eq!(t[1].datasource, Some(json!({"uid":"p"})));
        assert_eq!(t[0].path, "panels.0.panels.0.targets.0.expr");
    }

    /// A row's `repeat` reaches the panels in it; a panel's own `interval`
    /// and `maxDataPoints` feed its targets' `$__interval`.
    #[test]
    fn repeats_and_panel_intervals_reach_targets() {
        let d = json!({"panels":[
            {"type":"row","repeat":"instance","collapsed":true,"panels":[
                {"title":"in row","interval":"2m","maxDataPoints":60,"targets":[{"expr":"up"}]}]},
            {"title":"own","repeat":"$job","targets":[{"expr":"up","interval":"30s"}]},
            {"type":"row","title":"plain row"},
            {"title":"plain","targets":[{"expr":"up"}]},
            {"type":"row","title":"expanded","repeat":"pod"},
            {"title":"under it","targets":[{"expr":"up"}]}]});
        let t = targets(&d);
        let seen: Vec<_> = t
            .iter()
            .map(|t| {
                (
                    t.repeat.as_deref(),
                    t.interval.as_deref(),
                    t.max_data_points,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (Some("instance"), Some("2m"), Some(60)),
                (Some("job"), Some("30s"), None),
                (None, None, None),
                (Some("pod"), None, None)
            ]
        );
        // An hour over 60 points: 1m per point, raised to the panel's 2m.
        let hour = TimeContext {
            range: std::time::Duration::from_secs(3600),
            max_data_points: 60,
            scrape: std::time::Duration::from_secs(15),
        };
        assert_eq!(
            interpolate("$__interval", &[], &hour, t[0].interval.as_deref()),
            "2m"
        );
        assert_eq!(interpolate("$__interval", &[], &hour, None), "1m");
    }

    #[test]
    fn targets_without_ref_ids_get_the_free_letters() {
        let t = |r: Option<&str>| match r {
            Some(r) => serde_json::json!({"refId": r, "expr": "up"}),
            None => serde_json::json!({"expr": "up"}),
        };
        let ids = super::ref_ids(&[t(None), t(Some("A")), t(None), t(Some("")), t(Some("C"))]);
        assert_eq!(ids, ["B", "A", "D", "E", "C"]);
        let many: Vec<_> = (0..28).map(|_| t(None)).collect();
        let ids = super::ref_ids(&many);
        assert_eq!(
            (ids[25].as_str(), ids[26].as_str(), ids[27].as_str()),
            ("Z", "AA", "AB")
        );
    }
}
