//! Dashboard truth: what `histogram_quantile` over a service's own latency
//! histogram says of a step, against what the client measured, and the
//! bucket boundary that would bring the two together.
//!
//! The service's buckets are read from its exposition before and after the
//! step (their increase is the step's requests, summed over series as
//! `sum by (le)` does), and the quantile is interpolated exactly as
//! Prometheus' `bucketQuantile` does. The client's value is the latency from
//! each request's real send, the nearest thing to the service's own timer.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The quantiles compared.
pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// One quantile of one step: the dashboard's value against the client's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Truth {
    /// The histogram family (`http_request_duration_seconds`).
    pub family: String,
    /// The quantile (0.95).
    pub quantile: f64,
    /// What the client measured, ms.
    pub client_ms: f64,
    /// What `histogram_quantile` gives over the service's buckets, ms.
    pub dashboard_ms: f64,
    /// (dashboard − client) ÷ client.
    pub error: f64,
    /// What Prometheus itself answered for the step (`histogram_quantile`
    /// over `rate(…[step])` at its end), ms: in a drill, where it scrapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus_ms: Option<f64>,
    /// The bucket its rank fell in: its lower and upper bounds, s (the
    /// upper written `"+Inf"` for the last, as an exposition writes it).
    #[serde(serialize_with = "bounds")]
    pub bucket: (f64, f64),
    /// A boundary that would cut the error, if one helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<Advice>,
}

/// A bucket boundary to add, and the error with it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Advice {
    /// The boundary, s.
    pub le: f64,
    /// The error with it, estimated on the client's distribution.
    pub error: f64,
}

impl Truth {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} p{} dashboard {:.1} ms vs client {:.1} ms ({:+.0}%), interpolated between {} and {}",
            self.family,
            self.quantile * 100.0,
            self.dashboard_ms,
            self.client_ms,
            self.error * 100.0,
            secs(self.bucket.0),
            secs(self.bucket.1)
        );
        if let Some(p) = self.prometheus_ms {
            s.push_str(&format!("; Prometheus {p:.1} ms"));
        }
        if let Some(a) = &self.advice {
            s.push_str(&format!(
                ": a {} bucket would cut the error from {:.0}% to {:.0}%",
                secs(a.le),
                self.error.abs() * 100.0,
                a.error.abs() * 100.0
            ));
        }
        s
    }
}

fn bounds<S: serde::Serializer>(b: &(f64, f64), s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeTuple;
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&b.0)?;
    if b.1.is_infinite() {
        t.serialize_element("+Inf")?;
    } else {
        t.serialize_element(&b.1)?;
    }
    t.end()
}

fn secs(s: f64) -> String {
    if s.is_infinite() {
        "+Inf".into()
    } else {
        format!("{s} s")
    }
}

/// `histogram_quantile(q, …)` over cumulative buckets `(le, count)`, as
/// Prometheus' `bucketQuantile` computes it: −Inf/+Inf for q below 0 or
/// above 1; NaN without a `+Inf` bucket or observations; the upper bound of
/// the last finite bucket when the rank falls in `+Inf`; else linear
/// interpolation inside the bucket the rank falls in (from 0 for the first,
/// when its bound is positive).
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(b) = prepared(buckets) else {
        return f64::NAN;
    };
    let (i, mut rank) = locate(q, &b);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (start, mut count) = (if i == 0 { 0.0 } else { b[i - 1].0 }, b[i].1);
    if i > 0 {
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (b[i].0 - start) * (rank / count)
}

/// The bucket `q`'s rank falls in: its lower and upper bounds (`+Inf` for
/// the last), where `histogram_quantile` interpolates or gives up.
pub fn rank_bucket(q: f64, buckets: &[(f64, f64)]) -> Option<(f64, f64)> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let b = prepared(buckets)?;
    let (i, _) = locate(q, &b);
    Some((if i == 0 { 0.0 } else { b[i - 1].0 }, b[i].0))
}

/// Sorted by bound, counts made monotonic (a scrape mid-update, as
/// Prometheus' `ensureMonotonic`); none without a `+Inf` bucket, two
/// buckets and an observation.
fn prepared(buckets: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.len() < 2 || b.last().is_none_or(|l| !l.0.is_infinite()) {
        return None;
    }
    for i in 1..b.len() {
        b[i].1 = b[i].1.max(b[i - 1].1);
    }
    (b[b.len() - 1].1 > 0.0).then_some(b)
}

/// The index of the bucket `q`'s rank falls in, and the rank.
fn locate(q: f64, b: &[(f64, f64)]) -> (usize, f64) {
    let rank = q * b[b.len() - 1].1;
    let i = b.iter().position(|x| x.1 >= rank).unwrap_or(b.len() - 1);
    (i, rank)
}

/// The cumulative buckets of `family` in an exposition (text or OpenMetrics),
/// summed over the series whose labels include `matchers`, by `le`.
pub fn buckets(text: &str, family: &str, matchers: &[(String, String)]) -> Vec<(f64, f64)> {
    let prefix = format!("{family}_bucket{{");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = crate::observe::exposition::labels(rest) else {
            continue;
        };
        let Some(le) = labels.iter().find(|(k, _)| k == "le") else {
            continue;
        };
        let wanted = matchers
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v));
        let (Ok(le), Some(Ok(v))) = (
            le.1.parse::<f64>(),
            value.split_whitespace().next().map(str::parse::<f64>),
        ) else {
            continue;
        };
        if !wanted {
            continue;
        }
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some(e) => e.1 += v,
            None => by_le.push((le, v)),
        }
    }
    by_le.sort_by(|x, y| x.0.total_cmp(&y.0));
    by_le
}

/// The sum of every series of `name` in an exposition (`process_cpu_seconds_total`),
/// if it has one.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = match rest.chars().next() {
            Some('{') => crate::observe::exposition::labels(&rest[1..])?.1,
            Some(' ') => rest,
            _ => continue, // a longer name that begins with this one
        };
        if let Some(Ok(v)) = value.split_whitespace().next().map(str::parse::<f64>) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// The increase of each bucket from `before` to `after` (a counter reset —
/// a restarted service — counts from zero).
pub fn increase(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, a)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
            (*le, if a >= &b { a - b } else { *a })
        })
        .collect()
}

/// What a layout of buckets would give for `q` on the client's latencies
/// (µs): each bucket counts the client's requests at or under its bound.
fn on_client(q: f64, les: &[f64], client: &Histogram<u64>) -> f64 {
    let cumulative: Vec<(f64, f64)> = les
        .iter()
        .map(|&le| {
            let n = if le.is_infinite() {
                client.len()
            } else {
                client.count_between(0, (le * 1e6) as u64)
            };
            (le, n as f64)
        })
        .collect();
    histogram_quantile(q, &cumulative)
}

/// Each quantile of a step: the dashboard's value over `increase` (the
/// step's buckets) against the client's, with a boundary that would help.
pub fn compare(family: &str, step_buckets: &[(f64, f64)], client: &Histogram<u64>) -> Vec<Truth> {
    if client.is_empty() {
        return Vec::new();
    }
    let les: Vec<f64> = step_buckets.iter().map(|b| b.0).collect();
    QUANTILES
        .iter()
        .filter_map(|&q| {
            let dashboard = histogram_quantile(q, step_buckets);
            let truth = client.value_at_quantile(q) as f64 / 1e6;
            if !dashboard.is_finite() || truth <= 0.0 {
                return None;
            }
            let error = (dashboard - truth) / truth;
            let (lo, hi) = rank_bucket(q, step_buckets)?;
            Some(Truth {
                family: family.to_string(),
                quantile: q,
                client_ms: truth * 1e3,
                dashboard_ms: dashboard * 1e3,
                error,
                prometheus_ms: None,
                bucket: (lo, hi),
                advice: advise(q, truth, &les, (lo, hi), client, error),
            })
        })
        .collect()
}

/// The round boundary inside `(lo, hi)` that brings the estimate closest to
/// the client's value, if the error is worth cutting (over 10 %) and the
/// boundary at least halves it.
fn advise(
    q: f64,
    truth: f64,
    les: &[f64],
    (lo, hi): (f64, f64),
    client: &Histogram<u64>,
    error: f64,
) -> Option<Advice> {
    if error.abs() <= 0.1 || !hi.is_finite() {
        return None;
    }
    let mut best: Option<Advice> = None;
    for exp in -4..=2 {
        for m in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 8.0] {
            // Rounded to the microsecond: 1.5 × 10⁻¹ is 0.15, not 0.15000000000000002.
            let le = (m * 10f64.powi(exp) * 1e6).round() / 1e6;
            if le <= lo || le >= hi {
                continue;
            }
            let mut with: Vec<f64> = les.to_vec();
            with.push(le);
            with.sort_by(f64::total_cmp);
            let e = (on_client(q, &with, client) - truth) / truth;
            if best.as_ref().is_none_or(|b| e.abs() < b.error.abs()) {
                best = Some(Advice { le, error: e });
            }
        }
    }
    best.filter(|b| b.error.abs() <= error.abs() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    /// Prometheus' own cases (promql/testdata/histograms.test shapes).
    #[test]
    fn quantiles_as_prometheus_interpolates_them() {
        let b = [
            (0.1, 50.0),
            (0.2, 70.0),
            (0.4, 90.0),
            (1.0, 100.0),
            (INF, 100.0),
        ];
        assert!((histogram_quantile(0.5, &b) - 0.1).abs() < 1e-12);
        assert!((histogram_quantile(0.6, &b) - 0.15).abs() < 1e-12);
        assert!((histogram_quantile(0.95, &b) - 0.7).abs() < 1e-12);
        // In +Inf: the last finite bound. No +Inf bucket, or nothing: NaN.
        let over = [(0.1, 1.0), (INF, 10.0)];
        assert_eq!(histogram_quantile(0.99, &over), 0.1);
        assert!(histogram_quantile(0.5, &b[..4]).is_nan());
        assert!(histogram_quantile(0.5, &[(0.1, 0.0), (INF, 0.0)]).is_nan());
        // Out of order and non-monotonic input is put right first.
        let messy = [(INF, 100.0), (0.1, 50.0), (0.2, 40.0), (1.0, 100.0)];
        assert!((histogram_quantile(0.5, &messy) - 0.1).abs() < 1e-12);
        assert_eq!(histogram_quantile(-0.1, &b), f64::NEG_INFINITY);
        assert_eq!(histogram_quantile(1.1, &b), f64::INFINITY);
        // Where the rank falls: in +Inf, the value is the last finite bound
        // but the bucket is (1, +Inf).
        assert_eq!(rank_bucket(0.95, &b), Some((0.4, 1.0)));
        assert_eq!(rank_bucket(0.99, &over), Some((0.1, INF)));
        let t = Truth {
            family: "h".into(),
            prometheus_ms: None,
            quantile: 0.99,
            client_ms: 1.0,
            dashboard_ms: 100.0,
            error: 99.0,
            bucket: (0.1, INF),
            advice: None,
        };
        let text = "process_cpu_seconds_total{} 1.5\nprocess_cpu_seconds_total_x 9\nprocess_resident_memory_bytes 2048 1700000000\n";
        assert_eq!(sample(text, "process_cpu_seconds_total"), Some(1.5));
        assert_eq!(sample(text, "process_resident_memory_bytes"), Some(2048.0));
        assert_eq!(sample(text, "process_open_fds"), None);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""bucket":[0.1,"+Inf"]"#), "{json}");
    }

    #[test]
    fn buckets_are_read_summed_and_differenced() {
        let text = concat!(
            "# TYPE h histogram\n",
            "h_bucket{method=\"GET\",route=\"/a/{id}\",status_code=\"200\",le=\"0.1\"} 3\n",
            "h_bucket{method=\"GET\",route=\"/a/{id}\",status_code=\"200\",le=\"+Inf\"} 4\n",
            "h_bucket{method=\"GET\",route=\"/a/{id}\",status_code=\"500\",le=\"0.1\"} 1\n",
            "h_bucket{method=\"GET\",route=\"/a/{id}\",status_code=\"500\",le=\"+Inf\"} 1.0\n",
            "h_bucket{route=\"/b\",le=\"0.1\"} 7\n",
            "h_bucket{route=\"/b\",le=\"+Inf\"} 7\n",
            "h_count{route=\"/b\"} 7\n",
            "hx_bucket{route=\"/b\",le=\"0.1\"} 9\n",
        );
        let m = vec![("route".to_string(), "/a/{id}".to_string())];
        assert_eq!(buckets(text, "h", &m), [(0.1, 4.0), (INF, 5.0)]);
        assert_eq!(buckets(text, "h", &[]), [(0.1, 11.0), (INF, 12.0)]);
        let before = [(0.1, 1.0), (INF, 2.0)];
        assert_eq!(
            increase(&before, &[(0.1, 4.0), (INF, 1.0)]),
            [(0.1, 3.0), (INF, 1.0)]
        );
    }

    /// Requests of 120 ms in buckets of 0.1 and 0.25 s: the dashboard says
    /// p95 = 0.2425 s (+102 %), and a 0.15 s bucket brings it to 0.1475 s.
    #[test]
    fn the_truth_and_the_advice() {
        let mut client = Histogram::<u64>::new(3).unwrap();
        client.record_n(120_000, 1000).unwrap();
        let les = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, INF];
        let step: Vec<(f64, f64)> = les
            .iter()
            .map(|&le| (le, if le >= 0.25 { 1000.0 } else { 0.0 }))
            .collect();
        let t = compare("h", &step, &client);
        let p95 = t.iter().find(|t| t.quantile == 0.95).unwrap();
        assert!((p95.dashboard_ms - 242.5).abs() < 1e-6, "{p95:?}");
        assert_eq!(p95.bucket, (0.1, 0.25));
        let a = p95.advice.as_ref().expect("advice");
        assert_eq!(a.le, 0.15, "{a:?}");
        assert!(a.error.abs() < p95.error.abs() / 2.0, "{a:?}");
        assert!(
            p95.line()
                .contains("a 0.15 s bucket would cut the error from"),
            "{}",
            p95.line()
        );
    }
}
