//! PromQL helpers over promql-parser's AST: time-scaling an expression
//! (range selectors, subquery ranges and steps, offsets), and reading the
//! widest range window of an expression for the timing model.

use promql_parser::parser::{self, Expr, Offset};
use std::time::Duration;

fn scale(d: &mut Duration, f: f64) {
    let ms = (d.as_secs_f64() * 1000.0 * f).round().max(1.0);
    *d = Duration::from_millis(ms as u64);
}

fn scale_offset(o: &mut Option<Offset>, f: f64) {
    match o {
        Some(Offset::Pos(d)) | Some(Offset::Neg(d)) => scale(d, f),
        None => {}
    }
}

/// Visits every node of an expression, parents first.
pub fn walk(e: &mut Expr, visit: &mut dyn FnMut(&mut Expr)) {
    visit(e);
    match e {
        Expr::Aggregate(a) => {
            walk(&mut a.expr, visit);
            if let Some(p) = a.param.as_mut() {
                walk(p, visit);
            }
        }
        Expr::Unary(u) => walk(&mut u.expr, visit),
        Expr::Binary(b) => {
            walk(&mut b.lhs, visit);
            walk(&mut b.rhs, visit);
        }
        Expr::Paren(p) => walk(&mut p.expr, visit),
        Expr::Subquery(s) => walk(&mut s.expr, visit),
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                walk(a, visit);
            }
        }
        _ => {}
    }
}

/// `e` without its parentheses.
fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        _ => e,
    }
}

/// Whether `e` is an age in seconds: `time() - x` (how long ago `x`, a
/// timestamp such as cAdvisor's `container_last_seen`, was).
fn is_age(e: &Expr) -> bool {
    match unparen(e) {
        Expr::Binary(b) if b.op.id() == parser::token::T_SUB => {
            matches!(unparen(&b.lhs), Expr::Call(c) if c.func.name == "time")
        }
        _ => false,
    }
}

/// Multiplies every duration inside `expr` by `factor` and prints it back:
/// range selectors, subqueries, offsets, and the number of seconds an age
/// is compared with (`time() - container_last_seen > 60`), which is a
/// duration too.
pub fn scale_expr(expr: &str, factor: f64) -> crate::error::Result<String> {
    let mut ast = parser::parse(expr).map_err(crate::error::Error::Invalid)?;
    if (factor - 1.0).abs() < f64::EPSILON {
        return Ok(expr.to_string());
    }
    walk(&mut ast, &mut |e| match e {
        Expr::MatrixSelector(m) => {
            scale(&mut m.range, factor);
            scale_offset(&mut m.vs.offset, factor);
        }
        Expr::VectorSelector(v) => scale_offset(&mut v.offset, factor),
        Expr::Binary(b) => {
            if let Some(secs) = age_threshold(b) {
                *secs *= factor;
            }
        }
        Expr::Subquery(s) => {
            scale(&mut s.range, factor);
            if let Some(step) = s.step.as_mut() {
                scale(step, factor);
            }
            scale_offset(&mut s.offset, factor);
        }
        _ => {}
    });
    Ok(ast.to_string())
}

/// The seconds an age is compared with (`time() - x > 60`), if `b` is such
/// a comparison.
fn age_threshold(b: &mut parser::BinaryExpr) -> Option<&mut f64> {
    if !b.op.is_comparison_operator() {
        return None;
    }
    let seconds = match (is_age(&b.lhs), is_age(&b.rhs)) {
        (true, false) => &mut b.rhs,
        (false, true) => &mut b.lhs,
        _ => return None,
    };
    match seconds.as_mut() {
        Expr::NumberLiteral(n) => Some(&mut n.val),
        _ => None,
    }
}

/// The widest range window (range selector, subquery range) in `expr`, plus
/// offsets, or the seconds an age must pass: how far back a change can take
/// to show in the result.
pub fn max_lookback(expr: &str) -> crate::error::Result<Duration> {
    let mut ast = parser::parse(expr).map_err(crate::error::Error::Invalid)?;
    let mut max = Duration::ZERO;
    walk(&mut ast, &mut |e| {
        let (range, off) = match e {
            Expr::Binary(b) => match age_threshold(b) {
                Some(secs) => (Duration::from_secs_f64(secs.max(0.0)), None),
                None => return,
            },
            Expr::MatrixSelector(m) => (m.range, m.vs.offset.clone()),
            Expr::Subquery(s) => (s.range, s.offset.clone()),
            Expr::VectorSelector(v) => (Duration::ZERO, v.offset.clone()),
            _ => return,
        };
        let off = match off {
            Some(Offset::Pos(d)) => d,
            _ => Duration::ZERO,
        };
        max = max.max(range + off);
    });
    Ok(max)
}

/// The jobs `expr` selects by name (`{job="postgres"}`): whose targets'
/// metrics it reads. Empty when it selects none by name.
pub fn jobs(expr: &str) -> std::collections::BTreeSet<String> {
    let mut jobs = std::collections::BTreeSet::new();
    let Ok(mut ast) = parser::parse(expr) else {
        return jobs;
    };
    walk(&mut ast, &mut |e| {
        let vs = match e {
            Expr::VectorSelector(v) => v,
            Expr::MatrixSelector(m) => &m.vs,
            _ => return,
        };
        let all = vs.matchers.matchers.iter();
        let or = vs.matchers.or_matchers.iter().flatten();
        for m in all.chain(or) {
            if m.name == "job" && m.op == promql_parser::label::MatchOp::Equal {
                jobs.insert(m.value.clone());
            }
        }
    });
    jobs
}

/// The selector `e` is, through parentheses and `sum`/`max`/`min`/`avg`
/// only: a side whose value is the metric's own (no arithmetic, no
/// function), so a value pinned on the metric is the value compared.
pub fn bare_selector(e: &Expr) -> Option<&promql_parser::parser::VectorSelector> {
    match e {
        Expr::VectorSelector(v) => Some(v),
        Expr::Paren(p) => bare_selector(&p.expr),
        Expr::Aggregate(a)
            if matches!(a.op.to_string().as_str(), "sum" | "max" | "min" | "avg") =>
        {
            bare_selector(&a.expr)
        }
        _ => None,
    }
}

/// The comparison operator with its sides swapped (`5 < x` is `x > 5`).
pub fn flip_comparison(op: &str) -> String {
    match op {
        ">" => "<",
        "<" => ">",
        ">=" => "<=",
        "<=" => ">=",
        o => o,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_are_read_off_the_selectors() {
        let e = r#"sum(pg_stat_activity_count{job="postgres"}) > 0.8 * max(rate(x{job="a", le="1"}[5m])) or y{job=~"b.*"}"#;
        let j: Vec<String> = super::jobs(e).into_iter().collect();
        assert_eq!(j, ["a", "postgres"]);
        assert!(super::jobs("up == 0").is_empty());
    }

    use super::*;

    #[test]
    fn scales_ranges_subqueries_offsets() {
        let e = scale_expr(
            "max_over_time(rate(x[5m])[15m:30s]) > 1 and y offset 1h",
            0.1,
        )
        .unwrap();
        assert_eq!(
            e,
            "max_over_time(rate(x[30s])[1m30s:3s]) > 1 and y offset 6m"
        );
        let e = scale_expr("rate(x[15s])", 0.1).unwrap();
        assert_eq!(e, "rate(x[1s500ms])");
    }

    #[test]
    fn scales_the_seconds_an_age_is_compared_with() {
        let e = scale_expr("time() - container_last_seen{name!=\"\"} > 60", 0.1).unwrap();
        assert_eq!(e, "time() - container_last_seen{name!=\"\"} > 6");
        let e = scale_expr("120 < (time() - x)", 0.5).unwrap();
        assert_eq!(e, "60 < (time() - x)");
        // Not an age: left alone.
        let e = scale_expr("x - y > 60", 0.1).unwrap();
        assert_eq!(e, "x - y > 60");
    }

    #[test]
    fn lookback() {
        let e = "sum(rate(a[5m])) / sum(rate(b[1m] offset 10m))";
        assert_eq!(max_lookback(e).unwrap(), Duration::from_secs(660));
        assert_eq!(max_lookback("up == 0").unwrap(), Duration::ZERO);
        // An age must pass its threshold before the comparison holds.
        let e = "time() - container_last_seen > 6";
        assert_eq!(max_lookback(e).unwrap(), Duration::from_secs(6));
    }
}
