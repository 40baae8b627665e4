//! A bench as the HTML report draws it: corrected p50 and p99 against the
//! rate asked, with the SLO's latency as a horizontal line and the knee as
//! a vertical one (SVG, through the report's chart helper).

use crate::bench::BenchReport;
use plotters::prelude::*;

/// What the template shows of one bench: its title, its text, its chart.
pub(super) fn view(b: &BenchReport) -> (String, String, String) {
    (
        format!("{} ({})", b.url, b.slo.describe()),
        b.render(),
        chart(b),
    )
}

/// Latency against rate; each search's steps sorted by rate.
fn chart(b: &BenchReport) -> String {
    let mut pts: Vec<(f64, f64, f64)> = b
        .steps
        .iter()
        .map(|s| (s.requested_rps, s.p50_ms, s.p99_ms))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    pts.sort_by(|x, y| x.0.total_cmp(&y.0));
    let x1 = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let slo = b.slo.p99_ms.or(b.slo.p90_ms).or(b.slo.p50_ms);
    // The SLO line stays in view; a step far past it is clipped above it.
    let top = pts.iter().map(|p| p.2).fold(0.0, f64::max);
    let y1 = slo.map_or(top, |s| top.min(s * 4.0).max(s * 1.5)).max(1.0) * 1.1;
    let knee = b.knee_rps;
    super::html::svg_chart((760, 240), "a bench's chart", |root| {
        let mut c = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x1, 0f64..y1)?;
        c.configure_mesh()
            .x_desc("requests per second asked")
            .y_desc("corrected latency, ms")
            .draw()?;
        let clip = |v: f64| v.min(y1);
        for (i, (name, pick)) in [("p50", 1usize), ("p99", 2)].into_iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let line = pts
                .iter()
                .map(|p| (p.0, clip(if pick == 1 { p.1 } else { p.2 })));
            c.draw_series(LineSeries::new(line, colour.stroke_width(2)).point_size(3))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        if let Some(s) = slo {
            c.draw_series(LineSeries::new([(0.0, s), (x1, s)], RED.stroke_width(1)))?
                .label(format!("SLO {s} ms"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        if let Some(k) = knee {
            c.draw_series(LineSeries::new([(k, 0.0), (k, y1)], BLACK.stroke_width(1)))?
                .label(format!("knee {k:.1}/s"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Knee, Slo, Step, Usage};

    #[test]
    fn the_chart_draws_latency_the_slo_and_the_knee() {
        let step = |rate: f64, p99: f64| Step {
            run: 1,
            requested_rps: rate,
            achieved_rps: rate,
            p50_ms: p99 / 4.0,
            p90_ms: p99 / 2.0,
            p99_ms: p99,
            uncorrected_p99_ms: p99,
            error_ratio: 0.0,
            holds: p99 <= 250.0,
            broken: None,
            truth: vec![],
            target: Usage::default(),
            started: chrono::Utc::now(),
            ended: chrono::Utc::now(),
            load: Default::default(),
        };
        let b = BenchReport {
            url: "http://127.0.0.1:1/work".into(),
            slo: Slo {
                p99_ms: Some(250.0),
                ..Default::default()
            },
            knee_rps: Some(300.0),
            knee: Knee {
                runs: vec![Some(300.0)],
                mean: Some(300.0),
                min: Some(300.0),
                max: Some(300.0),
                above_range: false,
            },
            steps: vec![step(400.0, 9000.0), step(100.0, 20.0), step(300.0, 120.0)],
            headroom: vec![],
        };
        let (title, text, svg) = view(&b);
        assert!(title.contains("p99 ≤ 250 ms"), "{title}");
        assert!(text.contains("knee: 300.0/s"), "{text}");
        for want in [
            "<svg",
            "SLO 250 ms",
            "knee 300.0/s",
            "requests per second asked",
        ] {
            assert!(svg.contains(want), "{want} missing");
        }
    }
}
