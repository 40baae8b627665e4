//! Template variables as Grafana refreshes them when a dashboard loads
//! (`refresh: 1`) or its time range changes (`refresh: 2`), rather than as
//! someone else's Grafana saved them: what a query variable asks the data
//! source ([`VarQuery`], grafana-prometheus `metric_find_query`), its
//! results through the variable's regex and sort ([`options_from`],
//! Grafana's `metricNamesToVariableValues` and `sortVariableValues`), the
//! order chained variables resolve in ([`order`]), and which value stays
//! selected ([`Variable::refresh_options`], `validateVariableSelectionState`).
//! Pure: the caller asks Prometheus (panels.rs).

use super::Variable;
use regex::Regex;
use std::sync::LazyLock;

/// What a Prometheus query variable asks the data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarQuery {
    /// `label_names()`: every label name (`/api/v1/labels`).
    LabelNames,
    /// `label_values(label)` (`/api/v1/label/<l>/values`) or
    /// `label_values(metric{…}, label)` (the label of each series matching).
    LabelValues {
        /// The label whose values are listed.
        label: String,
        /// The series selector, if any.
        selector: Option<String>,
    },
    /// `metrics(regex)`: the metric names the regex matches.
    Metrics(String),
    /// `query_result(expr)`: each series of an instant query, as text
    /// `name{l="v",…} value timestamp_ms`.
    QueryResult(String),
    /// Anything else: a series selector; each matching series' name and labels.
    Series(String),
}

static LABEL_NAMES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^label_names\(\)\s*$").expect("regex"));
static LABEL_VALUES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^label_values\((?:(.+),\s*)?([a-zA-Z_$][a-zA-Z0-9_]*)\)\s*$").expect("regex")
});
static METRICS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^metrics\((.+)\)\s*$").expect("regex"));
static QUERY_RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^query_result\((.+)\)\s*$").expect("regex"));

impl VarQuery {
    /// What `query` asks, with Grafana's own patterns, in its order; None
    /// for an empty query.
    pub fn parse(query: &str) -> Option<VarQuery> {
        let q = query.trim();
        if q.is_empty() {
            return None;
        }
        let group = |c: &regex::Captures, i| c.get(i).map(|m: regex::Match| m.as_str().to_string());
        Some(if LABEL_NAMES.is_match(q) {
            VarQuery::LabelNames
        } else if let Some(c) = LABEL_VALUES.captures(q) {
            VarQuery::LabelValues {
                label: group(&c, 2).unwrap_or_default(),
                selector: group(&c, 1),
            }
        } else if let Some(c) = METRICS.captures(q) {
            VarQuery::Metrics(group(&c, 1).unwrap_or_default())
        } else if let Some(c) = QUERY_RESULT.captures(q) {
            VarQuery::QueryResult(group(&c, 1).unwrap_or_default())
        } else {
            VarQuery::Series(q.to_string())
        })
    }
}

/// A variable's regex as Grafana's `stringToJsRegex` reads it: `/re/flags`
/// (flags `g` all matches, `i`, `m`, `s`), else the whole text anchored.
/// JavaScript's look-arounds and back-references included (fancy-regex).
fn js_regex(written: &str) -> Result<(fancy_regex::Regex, bool), String> {
    let (pattern, flags) = match written.strip_prefix('/').and_then(|r| r.rsplit_once('/')) {
        Some((p, f)) if f.chars().all(|c| "gimys".contains(c)) => (p.to_string(), f),
        Some(_) => return Err(format!("`{written}` is not a valid regular expression")),
        None => (format!("^{written}$"), ""),
    };
    let inline: String = flags.chars().filter(|c| "ims".contains(*c)).collect();
    let pattern = if inline.is_empty() {
        pattern
    } else {
        format!("(?{inline}){pattern}")
    };
    fancy_regex::Regex::new(&pattern)
        .map(|r| (r, flags.contains('g')))
        .map_err(|e| format!("`{written}`: {e}"))
}

/// A query's results as the variable's options, (text, value) each: through
/// `regex` (no match: left out; named groups `text` / `value`; else the
/// first group; with `g`, one option per match), unique by value, sorted
/// by `sort`. An invalid regex is an error, as Grafana reports it.
pub fn options_from(
    results: &[String],
    regex: Option<&str>,
    sort: i64,
) -> Result<Vec<(String, String)>, String> {
    let re = regex.map(js_regex).transpose()?;
    let mut out: Vec<(String, String)> = Vec::new();
    for r in results {
        let Some((re, global)) = &re else {
            out.push((r.clone(), r.clone()));
            continue;
        };
        let found = if *global {
            re.captures_iter(r.as_str()).collect::<Result<Vec<_>, _>>()
        } else {
            re.captures(r.as_str()).map(|c| c.into_iter().collect())
        };
        let matches = found.map_err(|e| format!("the variable's regex on `{r}`: {e}"))?;
        if matches.is_empty() {
            continue;
        }
        let named = |n: &str| {
            matches.iter().find_map(|m| {
                m.name(n)
                    .map(|x| x.as_str().to_string())
                    .filter(|x| !x.is_empty())
            })
        };
        let (value, text) = (named("value"), named("text"));
        let grouped = re.captures_len() > 1;
        let first = |m: &fancy_regex::Captures<str>| {
            m.get(1).map_or(String::new(), |x| x.as_str().to_string())
        };
        if value.is_some() || text.is_some() {
            let v = value.clone().or(text.clone()).unwrap_or_default();
            out.push((text.or(value).unwrap_or_default(), v));
        } else if grouped && matches.len() > 1 {
            out.extend(matches.iter().map(|m| (first(m), first(m))));
        } else if grouped {
            out.push((first(&matches[0]), first(&matches[0])));
        } else {
            out.push((r.clone(), r.clone()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(_, v)| seen.insert(v.clone()));
    sort_options(&mut out, sort);
    Ok(out)
}

/// The first run of digits in `s` as a number, -1 without one (Grafana's
/// numerical sort key).
fn number_in(s: &str) -> i64 {
    let digits: String = s
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(-1)
}

/// Natural order: runs of digits compare as numbers, the rest by letter.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    let chunks = |s: &str| -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match v.last_mut() {
                Some((ld, run)) if *ld == d => run.push(c),
                _ => v.push((d, c.to_string())),
            }
        }
        v
    };
    for (x, y) in chunks(a).iter().zip(chunks(b).iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                x.1.parse::<u128>()
                    .unwrap_or(0)
                    .cmp(&y.1.parse().unwrap_or(0))
            }
            _ => x.1.to_lowercase().cmp(&y.1.to_lowercase()),
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts options as Grafana's `sort` says, by their text (label): 1/2
/// alphabetical, 3/4 by the first number in it, 5/6 case-insensitive, 7/8
/// natural; even modes descending; 0 (or unknown) leaves the data source's
/// order.
pub fn sort_options(opts: &mut [(String, String)], sort: i64) {
    match (sort + 1) / 2 {
        1 => opts.sort_by(|a, b| a.0.cmp(&b.0)),
        2 => opts.sort_by_key(|o| number_in(&o.0)),
        3 => opts.sort_by_key(|o| o.0.to_lowercase()),
        4 => opts.sort_by(|a, b| natural(&a.0, &b.0)),
        _ => return,
    }
    if sort % 2 == 0 {
        opts.reverse();
    }
}

/// Whether `text` refers to the variable `name` (`$name`, `${name…}`, `[[name…]]`).
fn mentions(text: &str, name: &str) -> bool {
    let word_end = |rest: &str| {
        rest.chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    };
    text.match_indices(&format!("${name}"))
        .any(|(i, m)| word_end(&text[i + m.len()..]))
        || [
            format!("${{{name}}}"),
            format!("${{{name}:"),
            format!("[[{name}]]"),
            format!("[[{name}:"),
        ]
        .iter()
        .any(|p| text.contains(p.as_str()))
}

/// The order variables resolve in: one whose query or regex uses another
/// comes after it (Grafana refreshes a variable's dependants after it);
/// otherwise, and in a cycle, the dashboard's order.
pub fn order(vars: &[Variable]) -> Vec<usize> {
    let uses = |i: usize, j: usize| {
        i != j && {
            let v = &vars[i];
            let name = &vars[j].name;
            mentions(&v.query, name) || v.regex.as_deref().is_some_and(|r| mentions(r, name))
        }
    };
    let mut done: Vec<usize> = Vec::new();
    while done.len() < vars.len() {
        let ready = (0..vars.len()).find(|&i| {
            !done.contains(&i) && (0..vars.len()).all(|j| done.contains(&j) || !uses(i, j))
        });
        // A cycle: the first left, as the dashboard lists it.
        let next = ready.unwrap_or_else(|| {
            (0..vars.len())
                .find(|i| !done.contains(i))
                .expect("one left")
        });
        done.push(next);
    }
    done
}

impl Variable {
    /// New options from the data source, and the selection Grafana keeps:
    /// All stays All (when offered); a multi-value variable keeps the
    /// values still offered; a single value stays if offered (by text or
    /// value); else the first option (All, when offered), or none.
    pub fn refresh_options(&mut self, opts: Vec<(String, String)>) {
        let offered = |v: &String| opts.iter().any(|(t, x)| x == v || t == v);
        let all = self.include_all && self.current.iter().any(|v| v == "$__all");
        let kept: Vec<String> = if all {
            vec!["$__all".into()]
        } else {
            self.current
                .iter()
                .filter(|v| offered(v))
                .cloned()
                .collect()
        };
        let kept = match kept.first() {
            Some(_) if self.multi || all => kept,
            Some(v) => vec![v.clone()],
            None if self.include_all => vec!["$__all".into()],
            None => opts.first().map(|o| o.1.clone()).into_iter().collect(),
        };
        self.current_text = kept
            .iter()
            .map(|v| match opts.iter().find(|(t, x)| x == v || t == v) {
                Some((t, _)) => t.clone(),
                None if v == "$__all" => "All".into(),
                None => v.clone(),
            })
            .collect();
        self.current = if kept.is_empty() {
            vec![String::new()]
        } else {
            kept
        };
        self.options = opts.into_iter().map(|(_, v)| v).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn var(j: serde_json::Value) -> Variable {
        Variable::from_json(&j).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn queries_are_read_as_grafana_reads_them() {
        assert_eq!(VarQuery::parse("label_names()"), Some(VarQuery::LabelNames));
        assert_eq!(
            VarQuery::parse("label_values(up{job=~\"$job\"}, instance)"),
            Some(VarQuery::LabelValues {
                label: "instance".into(),
                selector: Some("up{job=~\"$job\"}".into())
            })
        );
        assert_eq!(
            VarQuery::parse("label_values(job)"),
            Some(VarQuery::LabelValues {
                label: "job".into(),
                selector: None
            })
        );
        assert_eq!(
            VarQuery::parse("metrics(node_.*)"),
            Some(VarQuery::Metrics("node_.*".into()))
        );
        assert_eq!(
            VarQuery::parse("query_result(topk(3, up))"),
            Some(VarQuery::QueryResult("topk(3, up)".into()))
        );
        assert_eq!(
            VarQuery::parse("up{job=\"x\"}"),
            Some(VarQuery::Series("up{job=\"x\"}".into()))
        );
        assert_eq!(VarQuery::parse("  "), None);
    }

    #[test]
    fn regex_groups_pick_text_and_value() {
        let r = s(&["web-1:9100", "web-2:9100", "db:5432"]);
        // The first group; a result the regex does not match is left out.
        assert_eq!(
            options_from(&r, Some("/(web-\\d+):.*/"), 0).unwrap(),
            vec![
                ("web-1".into(), "web-1".into()),
                ("web-2".into(), "web-2".into())
            ]
        );
        // Named groups: text and value apart (the web hosts share a value).
        assert_eq!(
            options_from(&r, Some("/(?<text>[a-z]+)-?\\d*:(?<value>\\d+)/"), 0).unwrap(),
            vec![("web".into(), "9100".into()), ("db".into(), "5432".into())]
        );
        // Unique by value: both web hosts share port 9100.
        assert_eq!(
            options_from(&r, Some("/:(?<value>\\d+)/"), 0)
                .unwrap()
                .len(),
            2
        );
        // Without slashes, the whole result must match; `i` ignores case.
        assert_eq!(options_from(&r, Some("db:5432"), 0).unwrap().len(), 1);
        assert_eq!(
            options_from(&s(&["DB"]), Some("/db/i"), 0).unwrap().len(),
            1
        );
        // `g`: one option per match.
        let many = options_from(&s(&["a=1,b=2"]), Some("/(\\w)=\\d/g"), 0).unwrap();
        assert_eq!(
            many,
            vec![("a".into(), "a".into()), ("b".into(), "b".into())]
        );
        assert!(options_from(&r, Some("/(/"), 0).is_err());
        // JavaScript's look-arounds, as Grafana runs them.
        let jobs = options_from(
            &s(&["alertmanager", "backend"]),
            Some("/^(?!alertmanager)(.*)$/"),
            0,
        );
        assert_eq!(jobs.unwrap(), vec![("backend".into(), "backend".into())]);
    }

    #[test]
    fn sorts_follow_grafanas_modes() {
        let texts = |o: Vec<(String, String)>| o.into_iter().map(|x| x.0).collect::<Vec<_>>();
        let r = s(&["b10", "B2", "a1", "b2"]);
        assert_eq!(
            texts(options_from(&r, None, 0).unwrap()),
            s(&["b10", "B2", "a1", "b2"])
        );
        assert_eq!(
            texts(options_from(&r, None, 1).unwrap()),
            s(&["B2", "a1", "b10", "b2"])
        );
        assert_eq!(
            texts(options_from(&r, None, 2).unwrap()),
            s(&["b2", "b10", "a1", "B2"])
        );
        assert_eq!(
            texts(options_from(&r, None, 3).unwrap()),
            s(&["a1", "B2", "b2", "b10"])
        );
        assert_eq!(
            texts(options_from(&r, None, 5).unwrap()),
            s(&["a1", "b10", "B2", "b2"])
        );
        assert_eq!(
            texts(options_from(&r, None, 7).unwrap()),
            s(&["a1", "B2", "b2", "b10"])
        );
        assert_eq!(
            texts(options_from(&r, None, 8).unwrap()),
            s(&["b10", "b2", "B2", "a1"])
        );
    }

    #[test]
    fn chained_variables_resolve_after_what_they_use() {
        let vars = vec![
            var(
                json!({"name": "instance", "query": "label_values(up{job=~\"$job\", cluster=~\"${cluster}\"}, instance)"}),
            ),
            var(json!({"name": "job", "query": "label_values(up{cluster=~\"$cluster\"}, job)"})),
            var(json!({"name": "cluster", "query": "label_values(up, cluster)"})),
            var(json!({"name": "jobs", "query": "label_values(up, jobs)"})),
        ];
        assert_eq!(order(&vars), vec![2, 1, 0, 3]);
        // `$jobs` is not `$job`.
        assert!(!mentions("up{x=\"$jobs\"}", "job"));
    }

    #[test]
    fn a_saved_value_that_does_not_exist_gives_way() {
        let opts = |v: &[&str]| {
            v.iter()
                .map(|x| (x.to_string(), x.to_string()))
                .collect::<Vec<_>>()
        };
        // Someone else's model name: the first option instead.
        let mut single =
            var(json!({"name": "model", "current": {"text": "llama-70b", "value": "llama-70b"}}));
        single.refresh_options(opts(&["qwen-7b", "mistral"]));
        assert_eq!(single.current, s(&["qwen-7b"]));
        // Still offered: kept.
        let mut kept = var(json!({"name": "model", "current": {"value": "mistral"}}));
        kept.refresh_options(opts(&["qwen-7b", "mistral"]));
        assert_eq!(kept.current, s(&["mistral"]));
        // Multi: what is still offered stays; nothing: All when offered.
        let mut multi =
            var(json!({"name": "i", "multi": true, "current": {"value": ["a", "gone"]}}));
        multi.refresh_options(opts(&["a", "b"]));
        assert_eq!(multi.current, s(&["a"]));
        let mut all = var(
            json!({"name": "i", "multi": true, "includeAll": true, "current": {"value": ["gone"]}}),
        );
        all.refresh_options(opts(&["a", "b"]));
        assert_eq!(all.current, s(&["$__all"]));
        assert_eq!(all.options, s(&["a", "b"]));
        // Nothing offered, no All: none, and `$i` is empty.
        let mut none = var(json!({"name": "i", "current": {"value": "gone"}}));
        none.refresh_options(vec![]);
        assert_eq!(none.current, s(&[""]));
    }
}
