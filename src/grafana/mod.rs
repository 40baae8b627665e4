//! Grafana, as far as firedrill needs it without Grafana: dashboards (panels
//! nested in rows included), their Prometheus targets, template variables,
//! and query interpolation exactly as Grafana's Prometheus data source does
//! it (grafana-prometheus `interpolateQueryExpr`, pkg/promlib built-ins).
//! Lint parses the result; drills run it against Prometheus.

use serde_json::Value;
use std::time::Duration;

mod targets;
mod vars;
pub use targets::{targets, Target};
pub use vars::{options_from, order, sort_options, VarQuery};

/// A dashboard template variable, with the values it currently stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// The variable's name, as queries write it (`$job`).
    pub name: String,
    /// Its type (`query`, `custom`, `constant`, `interval`, …), default `query`.
    pub kind: String,
    /// Whether several values can be selected at once.
    pub multi: bool,
    /// Whether it offers an All option.
    pub include_all: bool,
    /// What All stands for (`allValue`), when set.
    pub all_value: Option<String>,
    /// Selected values (`$__all` when All is selected).
    pub current: Vec<String>,
    /// The selected values as shown (their text).
    pub current_text: Vec<String>,
    /// Every option value, All excluded.
    pub options: Vec<String>,
    /// What it asks its data source (`label_values(up, job)`), or its
    /// options as written (custom, interval, constant).
    pub query: String,
    /// The regex its query's results go through (`/(.*):\d+/`), if any.
    pub regex: Option<String>,
    /// How its options are sorted (Grafana's `sort`, 0 to 8).
    pub sort: i64,
    /// When Grafana asks again: 0 never (the saved options stand), 1 on
    /// dashboard load, 2 on time range change.
    pub refresh: i64,
}

/// Time context of a query: what `$__interval`, `$__range`… stand for.
#[derive(Debug, Clone, Copy)]
pub struct TimeContext {
    /// The dashboard's time range (`$__range`), default 1h.
    pub range: Duration,
    /// The most data points per series, default 1100.
    pub max_data_points: u64,
    /// The data source's scrape interval (Grafana's default 15s).
    pub scrape: Duration,
}

impl Default for TimeContext {
    fn default() -> Self {
        TimeContext {
            range: Duration::from_secs(3600),
            max_data_points: 1100,
            scrape: Duration::from_secs(15),
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => vec![],
        other => vec![other.to_string()],
    }
}

/// A boolean field of a variable's JSON, false when absent.
fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A text field of a variable's JSON, None when absent or empty.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl Variable {
    /// A variable from its JSON in `templating.list`, or None without a name.
    pub fn from_json(v: &Value) -> Option<Variable> {
        let name = v.get("name")?.as_str()?.to_string();
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("query")
            .to_string();
        let current = v
            .get("current")
            .map(|c| strings(c.get("value").unwrap_or(&Value::Null)))
            .unwrap_or_default();
        let current_text = v
            .get("current")
            .map(|c| strings(c.get("text").unwrap_or(&Value::Null)))
            .unwrap_or_default();
        let mut options: Vec<String> = v
            .get("options")
            .and_then(Value::as_array)
            .map(|o| {
                o.iter()
                    .filter_map(|x| x.get("value"))
                    .flat_map(strings)
                    .filter(|s| s != "$__all")
                    .collect()
            })
            .unwrap_or_default();
        let query = match v.get("query") {
            Some(Value::String(s)) => s.clone(),
            Some(q) => q
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            None => String::new(),
        };
        // custom and interval variables list their options in `query`.
        if options.is_empty() && matches!(kind.as_str(), "custom" | "interval") {
            options = query
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if options.is_empty()
            && matches!(kind.as_str(), "constant" | "textbox")
            && !query.is_empty()
        {
            options = vec![query.clone()];
        }
        let mut current = current;
        if current.is_empty() {
            current = options.first().cloned().into_iter().collect();
        }
        // Grafana's model: a query variable refreshes on load unless it says.
        let refresh = v
            .get("refresh")
            .and_then(Value::as_i64)
            .unwrap_or(i64::from(kind == "query"));
        Some(Variable {
            name,
            kind,
            multi: flag(v, "multi"),
            include_all: flag(v, "includeAll"),
            all_value: text(v, "allValue"),
            current_text: if current_text.is_empty() {
                current.clone()
            } else {
                current_text
            },
            current,
            options,
            regex: text(v, "regex"),
            sort: v.get("sort").and_then(Value::as_i64).unwrap_or(0),
            refresh,
            query,
        })
    }

    /// The values the variable stands for, and whether they are a custom all value.
    fn values(&self) -> (Vec<String>, bool) {
        if self.current.iter().any(|v| v == "$__all") {
            return match &self.all_value {
                Some(a) => (vec![a.clone()], true),
                None => (self.options.clone(), false),
            };
        }
        (self.current.clone(), false)
    }
}

/// Template variables of a dashboard (`templating.list`).
pub fn variables(dashboard: &Value) -> Vec<Variable> {
    dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Variable::from_json).collect())
        .unwrap_or_default()
}

/// A value as a regex, as Grafana's `regex` format writes it (kbn's
/// `regexEscape`): each metacharacter, `/` and backslash behind one backslash.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value as a regex inside a PromQL double-quoted string, as the
/// Prometheus data source's default (`prometheusSpecialRegexEscape`) writes
/// it: a metacharacter behind two backslashes (the string keeps one for the
/// regex), a backslash as four.
fn prom_regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\\\"),
            c if "$^*+?.()|{}[]".contains(c) => {
                out.push_str(r"\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn string_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A variable's value in a query, with an explicit `${var:format}` or the
/// Prometheus data source's default.
pub fn format_value(var: &Variable, format: Option<&str>) -> String {
    let (values, custom_all) = var.values();
    if custom_all && format.is_none() {
        // A custom all value goes in as written.
        return values.join(",");
    }
    let multi_form = |vals: Vec<String>| {
        if vals.len() == 1 {
            vals[0].clone()
        } else {
            format!("({})", vals.join("|"))
        }
    };
    match format {
        None => {
            if !var.multi && !var.include_all {
                values.first().map(|v| string_escape(v)).unwrap_or_default()
            } else {
                multi_form(values.iter().map(|v| prom_regex_escape(v)).collect())
            }
        }
        Some("regex") => {
            if custom_all {
                values.join("|")
            } else {
                multi_form(values.iter().map(|v| regex_escape(v)).collect())
            }
        }
        Some("csv") | Some("raw") => values.join(","),
        Some("pipe") => values.join("|"),
        Some("json") => {
            if values.len() == 1 && !var.multi {
                serde_json::to_string(&values[0]).unwrap_or_default()
            } else {
                serde_json::to_string(&values).unwrap_or_default()
            }
        }
        Some("doublequote") => each(&values, ",", |v| format!("\"{}\"", v.replace('"', "\\\""))),
        Some("singlequote") => each(&values, ",", |v| format!("'{}'", v.replace('\'', "\\'"))),
        Some("sqlstring") => each(&values, ",", |v| format!("'{}'", v.replace('\'', "''"))),
        Some("lucene") => lucene(&values),
        Some("percentencode") => each(&values, ",", percent_encode),
        Some("text") => var.current_text.join(" + "),
        Some("queryparam") => each(&values, "&", |v| {
            format!("var-{}={}", var.name, percent_encode(v))
        }),
        // `glob`, and Grafana's fallback for an unknown format.
        Some(_) => {
            if values.len() == 1 {
                values[0].clone()
            } else {
                format!("{{{}}}", values.join(","))
            }
        }
    }
}

/// Each value formatted, joined with `sep`.
fn each(values: &[String], sep: &str, f: impl Fn(&str) -> String) -> String {
    values.iter().map(|v| f(v)).collect::<Vec<_>>().join(sep)
}

/// Grafana's `lucene` format: escaped, several as `("a" OR "b")`.
fn lucene(values: &[String]) -> String {
    let esc = |v: &str| {
        let mut o = String::new();
        for c in v.chars() {
            if "+-=&|><!(){}[]^\"~*?:\\/ ".contains(c) {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    if values.len() == 1 {
        esc(&values[0])
    } else {
        format!("({})", each(values, " OR ", |v| format!("\"{}\"", esc(v))))
    }
}

/// Grafana's `roundInterval` (packages/grafana-data rangeutil).
pub fn round_interval(ms: u64) -> Duration {
    const TABLE: &[(u64, u64)] = &[
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
    ];
    let v = TABLE
        .iter()
        .find(|(lim, _)| ms < *lim)
        .map(|(_, v)| *v)
        .unwrap_or(31_536_000_000);
    Duration::from_millis(v)
}

fn dur(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        promql_parser::util::display_duration(&d)
    }
}

/// `$__interval` for a target: the range over the data points, rounded as
/// Grafana rounds it, never below the target's or the scrape's min interval.
pub fn interval(t: &TimeContext, min_interval: Option<&str>) -> Duration {
    let raw = (t.range.as_millis() as u64) / t.max_data_points.max(1);
    let min = min_interval
        .and_then(|s| promql_parser::util::parse_duration(s.trim_start_matches('>').trim()).ok())
        .unwrap_or(t.scrape);
    round_interval(raw).max(min)
}

/// Interpolates a panel query as Grafana's Prometheus data source does.
pub fn interpolate(
    expr: &str,
    vars: &[Variable],
    t: &TimeContext,
    min_interval: Option<&str>,
) -> String {
    interpolate_as(expr, vars, t, min_interval, None)
}

/// [`interpolate`], with `default` as the format of a variable written
/// without one (Grafana interpolates a variable's regex with `regex`).
pub fn interpolate_as(
    expr: &str,
    vars: &[Variable],
    t: &TimeContext,
    min_interval: Option<&str>,
    default: Option<&str>,
) -> String {
    let iv = interval(t, min_interval);
    let rate = (iv + t.scrape).max(4 * t.scrape);
    let range_s = t.range.as_secs_f64().round() as u64;
    // Built-ins first, `_ms`/`_s` forms before their prefixes.
    let builtins: [(&str, String); 7] = [
        ("__rate_interval_ms", rate.as_millis().to_string()),
        ("__rate_interval", dur(rate)),
        ("__interval_ms", iv.as_millis().to_string()),
        ("__interval", dur(iv)),
        ("__range_ms", t.range.as_millis().to_string()),
        ("__range_s", range_s.to_string()),
        ("__range", format!("{range_s}s")),
    ];
    let lookup = |name: &str, format: Option<&str>| -> Option<String> {
        if let Some((_, v)) = builtins.iter().find(|(n, _)| *n == name) {
            return Some(v.clone());
        }
        vars.iter()
            .find(|v| v.name == name)
            .map(|v| format_value(v, format.or(default)))
    };
    let mut out = String::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &expr[i..];
        let ident_len = |s: &str| {
            s.bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count()
        };
        // `${name:format}` and the deprecated `[[name:format]]`.
        let braced = [("${", "}"), ("[[", "]]")]
            .into_iter()
            .find_map(|(open, close)| {
                let inner = rest.strip_prefix(open)?;
                let end = inner.find(close)?;
                let body = &inner[..end];
                let (name, fmt) = match body.split_once(':') {
                    Some((n, f)) => (n, Some(f)),
                    None => (body, None),
                };
                Some((lookup(name, fmt)?, open.len() + end + close.len()))
            });
        if let Some((v, len)) = braced {
            out.push_str(&v);
            i += len;
            continue;
        }
        if let Some(inner) = rest.strip_prefix('$') {
            // Grafana's `\$(\w+)`: the whole word is the name; an unknown one stays.
            let n = ident_len(inner);
            if n > 0 {
                if let Some(v) = lookup(&inner[..n], None) {
                    out.push_str(&v);
                    i += 1 + n;
                    continue;
                }
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;
    use serde_json::json;

    fn var(j: Value) -> Variable {
        Variable::from_json(&j).unwrap()
    }

    fn ctx() -> TimeContext {
        TimeContext {
            range: Duration::from_secs(3600),
            max_data_points: 1100,
            scrape: Duration::from_secs(15),
        }
    }

    #[test]
    fn builtins() {
        // 3600 s / 1100 points = 3.27 s → 5 s, below scrape 15 s → 15 s.
        let e = interpolate("rate(x[$__rate_interval]) + $__interval_ms + $__range_s + x[$__range] + y[$__interval]", &[], &ctx(), None);
        assert_eq!(e, "rate(x[1m]) + 15000 + 3600 + x[3600s] + y[15s]");
        let wide = TimeContext {
            range: Duration::from_secs(7 * 86400),
            ..ctx()
        };
        assert_eq!(
            interpolate("$__interval $__rate_interval", &[], &wide, None),
            "10m 10m15s"
        );
        assert_eq!(interpolate("$__interval", &[], &ctx(), Some("1m")), "1m");
        // A word that is no variable stays as written.
        assert_eq!(
            interpolate("$__intervalx $nope", &[], &ctx(), None),
            "$__intervalx $nope"
        );
    }

    #[test]
    fn single_multi_all() {
        let single =
            var(json!({"name":"job","type":"custom","query":"a.b,c","current":{"value":"a.b"}}));
        let multi = var(
            json!({"name":"inst","type":"custom","multi":true,"query":"h1:9100,h2:9100","current":{"value":["h1:9100","h2:9100"]}}),
        );
        let all = var(
            json!({"name":"ns","type":"query","includeAll":true,"current":{"value":"$__all"},"options":[{"value":"$__all"},{"value":"a"},{"value":"b.c"}]}),
        );
        let all_custom = var(
            json!({"name":"pod","type":"query","includeAll":true,"allValue":".*","current":{"value":["$__all"]}}),
        );
        let vars = [single, multi, all, all_custom];
        assert_eq!(
            interpolate(
                r#"up{job="$job",instance=~"$inst",ns=~"${ns}",pod=~"[[pod]]"}"#,
                &vars,
                &ctx(),
                None
            ),
            r#"up{job="a.b",instance=~"(h1:9100|h2:9100)",ns=~"(a|b\\.c)",pod=~".*"}"#
        );
        // As Prometheus reads it: a valid string holding the regex `b\.c`.
        let q = interpolate(r#"up{ns=~"$ns"}"#, &vars, &ctx(), None);
        assert!(promql_parser::parser::parse(&q).is_ok(), "{q}");
    }

    #[test]
    fn formats() {
        let v = var(
            json!({"name":"v","type":"custom","multi":true,"current":{"value":["a.b","c"],"text":["A","C"]}}),
        );
        let f = |fmt| format_value(&v, Some(fmt));
        assert_eq!(f("csv"), "a.b,c");
        assert_eq!(f("regex"), r"(a\.b|c)");
        assert_eq!(f("pipe"), "a.b|c");
        assert_eq!(f("raw"), "a.b,c");
        assert_eq!(f("json"), r#"["a.b","c"]"#);
        assert_eq!(f("doublequote"), r#""a.b","c""#);
        assert_eq!(f("singlequote"), "'a.b','c'");
        assert_eq!(f("sqlstring"), "'a.b','c'");
        assert_eq!(f("glob"), "{a.b,c}");
        assert_eq!(f("lucene"), r#"("a.b" OR "c")"#);
        assert_eq!(f("percentencode"), "a.b,c");
        assert_eq!(f("text"), "A + C");
        assert_eq!(f("queryparam"), "var-v=a.b&var-v=c");
        assert_eq!(f("nonsense"), "{a.b,c}");
        assert_eq!(
            interpolate("${v:pipe}", std::slice::from_ref(&v), &ctx(), None),
            "a.b|c"
        );
    }

    #[test]
    fn single_value_is_string_escaped() {
        let v = var(json!({"name":"q","type":"textbox","query":"say \"hi\""}));
        assert_eq!(
            interpolate(r#"x{l="$q"}"#, &[v], &ctx(), None),
            r#"x{l="say \"hi\""}"#
        );
    }
}
