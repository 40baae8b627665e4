//! The Prometheus text exposition (and OpenMetrics' text) as a service
//! serves it at `/metrics`: its samples with their labels (escapes undone,
//! so a `}` or `,` inside a value is a character of it), and each family's
//! HELP and TYPE. firedrill's own parser: `prometheus-parse` cuts a label
//! value at its first `}`, and route templates such as `/items/{id}` have one.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`http_requests_total`, `…_bucket`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A family's metadata: its HELP and TYPE lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// The HELP text (escapes undone).
    pub help: String,
    /// The TYPE (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub type_: String,
}

/// Every sample of an exposition, in order; lines that do not parse are
/// left out.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

/// One sample line, if it is one.
pub fn sample(line: &str) -> Option<Sample> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..end];
    let (labels, rest) = match line[end..].strip_prefix('{') {
        Some(r) => labels(r)?,
        None => (Vec::new(), &line[end..]),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Each family's HELP and TYPE, by the name they are written with.
pub fn metadata(text: &str) -> BTreeMap<String, Meta> {
    let mut out: BTreeMap<String, Meta> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        let (Some("#"), Some(kind), Some(name)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let rest = words.next().unwrap_or_default();
        let m = out.entry(name.to_string()).or_default();
        match kind {
            "HELP" => m.help = rest.replace("\\n", "\n").replace("\\\\", "\\"),
            "TYPE" => m.type_ = rest.trim().to_string(),
            _ => {}
        }
    }
    out
}

/// `k="v",…}` then the rest of the line: the labels and what follows.
pub fn labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
            chars.next();
        }
        let (start, c) = *chars.peek()?;
        if c == '}' {
            return Some((out, &s[start + 1..]));
        }
        let eq = s[start..].find('=')? + start;
        let key = s[start..eq].trim().to_string();
        while chars.peek().is_some_and(|(i, _)| *i <= eq) {
            chars.next();
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_metadata_are_read() {
        let text = "# HELP http_requests_total Total requests.\n# TYPE http_requests_total counter\nhttp_requests_total{route=\"/items/{id}\",code=\"200\"} 3\nup 1 1700000000\n# EOF\n";
        let s = samples(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels[0], ("route".into(), "/items/{id}".into()));
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 1.0));
        let m = metadata(text);
        assert_eq!(m["http_requests_total"].type_, "counter");
        assert_eq!(m["http_requests_total"].help, "Total requests.");
    }
}
