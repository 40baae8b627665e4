//! The drill report people look at: one self-contained HTML file (no
//! network at view time) rendered from a template (minijinja, `report.html`
//! beside this file), with each alert's climb from the fault through
//! pending, firing, Alertmanager and Teams drawn against its computed
//! window as an SVG chart (plotters' SVG backend). Per drill: verdict,
//! steps, alert timelines, loads, dashboard panels; for the suite: a table
//! of drills and what they said of services, grouped by reason.

use super::*;
use crate::verify::between;
use plotters::prelude::*;
use std::collections::BTreeMap;

const TEMPLATE: &str = include_str!("report.html");

/// One alert's timeline: each event's time after the fault, seconds.
#[derive(Debug, Clone, Serialize)]
struct Timeline {
    title: String,
    chart: String,
    rows: Vec<(String, String, String)>,
}

/// What the template shows of one drill.
#[derive(Debug, Serialize)]
struct DrillView<'a> {
    r: &'a DrillReport,
    verdict: &'static str,
    class: &'static str,
    steps: Vec<(String, String, String, String)>,
    timelines: Vec<Timeline>,
    loads: Vec<(String, String, Vec<String>)>,
    /// Each bench: title, text, latency-against-rate chart.
    benches: Vec<(String, String, String)>,
    panels: Vec<PanelView>,
    /// Panel targets not run, by reason: (reason, how many).
    skipped_panels: Vec<(String, usize)>,
    cards: Vec<CardView>,
}

/// A Teams card as Teams shows it: its accent, title and lines.
#[derive(Debug, Serialize)]
struct CardView {
    kind: &'static str,
    colour: String,
    title: String,
    /// The text as Teams draws it: Markdown (both card kinds take it).
    body: String,
    when: String,
    refused: Option<String>,
}

/// A card's accent as CSS: a MessageCard's hex `themeColor`, an Adaptive
/// Card's named colour as Teams draws it.
fn accent(colour: &str) -> String {
    match colour {
        "Attention" => "#c4314b".into(),
        "Good" => "#237b4b".into(),
        "Warning" => "#c19c00".into(),
        "Accent" => "#6264a7".into(),
        c if c.len() == 6 && c.chars().all(|x| x.is_ascii_hexdigit()) => format!("#{c}"),
        _ => "#8a8886".into(),
    }
}

/// A card's text as HTML, rendered as Teams renders a MessageCard's
/// `text` or an Adaptive Card's TextBlock: Markdown, each line break kept.
/// Raw HTML in it (an annotation's) is shown as text, and a link as its
/// text alone: the report fetches and opens nothing.
fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let events = Parser::new(text).filter_map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Some(Event::Text(h)),
        Event::SoftBreak => Some(Event::HardBreak),
        Event::Start(Tag::Link { .. } | Tag::Image { .. })
        | Event::End(TagEnd::Link | TagEnd::Image) => None,
        e => Some(e),
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

fn card(r: &DrillReport, d: &crate::observe::Delivery) -> CardView {
    use crate::observe::CardFormat;
    let start = r.breakdowns.iter().filter_map(|b| b.fault_at).min();
    CardView {
        kind: match d.format {
            CardFormat::MessageCard => "MessageCard",
            CardFormat::AdaptiveCard => "Adaptive Card",
            CardFormat::Rejected => "rejected",
        },
        colour: accent(&d.colour),
        title: d.title.clone(),
        body: markdown(&d.text),
        when: match start.and_then(|s| (d.received_at - s).to_std().ok()) {
            Some(t) => format!("{:.1}s after the fault", t.as_secs_f64()),
            None => d.received_at.format("%H:%M:%S%.3f").to_string(),
        },
        refused: d
            .error
            .as_ref()
            .map(|e| format!("refused ({}): {e}", d.http_status)),
    }
}

/// A dashboard panel's target as the report shows it: what it drew.
#[derive(Debug, Serialize)]
struct PanelView {
    dashboard: String,
    panel: String,
    query: String,
    verdict: String,
    chart: Option<String>,
}

/// The HTML report of `reports`, run in `wall`.
pub fn html(reports: &[DrillReport], wall: Duration) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    // Every value escaped for HTML, whatever the template's name.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| format!("the report's template: {e}"))?;
    let drills: Vec<DrillView> = reports.iter().map(view).collect();
    let notes = text::grouped_notes(reports);
    let bound: Duration = reports.iter().map(|r| r.lower_bound).sum();
    let ctx = minijinja::context! {
        drills,
        notes => notes.into_iter().collect::<Vec<_>>(),
        table => text::suite_table(reports),
        counts => tally(reports).iter().map(|(v, n)| format!("{n} {}", v.word().to_lowercase())).collect::<Vec<_>>().join(", "),
        wall => format!("{:.1}s", wall.as_secs_f64()),
        bound => format!("{:.1}s", bound.as_secs_f64()),
    };
    env.get_template("report.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| format!("rendering the report: {e}"))
}

fn view(r: &DrillReport) -> DrillView<'_> {
    let class = match r.verdict {
        Verdict::Passed => "passed",
        Verdict::Skipped => "skipped",
        Verdict::Flaky | Verdict::Inconclusive => "warn",
        _ => "failed",
    };
    let steps = r
        .steps
        .iter()
        .map(|s| {
            let mark = match s.status {
                Status::Pass => "✓",
                Status::Fail => "✗",
                Status::Inconclusive => "?",
            };
            let kind = if s.kind.is_precondition() {
                format!("· {}", s.kind)
            } else {
                format!("{} {}", s.index + 1, s.kind)
            };
            (
                mark.into(),
                kind,
                format!("{:.2}s", s.seconds),
                s.message.clone(),
            )
        })
        .collect();
    let loads = r.loads.iter().map(load_view).collect();
    let (panels, skipped_panels) = panel_views(r);
    DrillView {
        skipped_panels,
        cards: r.cards.iter().map(|d| card(r, d)).collect(),
        r,
        verdict: r.verdict.word(),
        class,
        steps,
        timelines: r.breakdowns.iter().map(timeline).collect(),
        loads,
        benches: r.benches.iter().map(super::bench_chart::view).collect(),
        panels,
    }
}

/// A load as the report shows it: where it went, its line, its charts.
fn load_view(l: &LoadReport) -> (String, String, Vec<String>) {
    let t = &l.summary.timeline;
    let x = |f: fn(&crate::load::Tick) -> f64| -> Vec<(f64, f64)> {
        t.iter().map(|k| (f64::from(k.second), f(k))).collect()
    };

    let charts = if t.is_empty() {
        vec![]
    } else {
        vec![
            series_chart(
                "requests per second",
                &[
                    ("asked", x(|k| k.asked)),
                    ("sent", x(|k| k.sent as f64)),
                    ("answered", x(|k| k.answered as f64)),
                    ("no answer", x(|k| k.failed as f64)),
                ],
            ),
            series_chart(
                "corrected latency, ms",
                &[("p50", x(|k| k.p50_ms)), ("p99", x(|k| k.p99_ms))],
            ),
        ]
    };
    (format!("{}{}", l.target, l.path), l.summary.line(), charts)
}

/// The panel targets the report replays, and those skipped by reason.
fn panel_views(r: &DrillReport) -> (Vec<PanelView>, Vec<(String, usize)>) {
    // The fault and the undo, where the drill measured them, on every panel.
    let unix =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_millis() as f64 / 1000.0);
    let marks: Vec<(&str, f64)> = [
        ("fault", r.breakdowns.iter().find_map(|b| unix(b.fault_at))),
        ("undo", r.breakdowns.iter().find_map(|b| unix(b.undo_at))),
    ]
    .into_iter()
    .filter_map(|(n, t)| t.map(|t| (n, t)))
    .collect();
    let mut skipped_panels: BTreeMap<String, usize> = BTreeMap::new();
    for p in &r.panels {
        if let crate::panels::Verdict::Skipped { reason } = &p.verdict {
            *skipped_panels.entry(reason.clone()).or_default() += 1;
        }
    }
    let panels = r
        .panels
        .iter()
        .filter(|p| !matches!(p.verdict, crate::panels::Verdict::Skipped { .. }))
        .map(|p| PanelView {
            dashboard: p.dashboard.clone(),
            panel: match p.variables.as_str() {
                "" => format!("{} ({})", p.panel, p.ref_id),
                v => format!("{} ({}) [{v}]", p.panel, p.ref_id),
            },
            query: p.query.clone(),
            verdict: p.verdict.to_string(),
            chart: (!p.lines.is_empty()).then(|| panel_chart(&p.lines, &marks)),
        })
        .collect();
    (panels, skipped_panels.into_iter().collect())
}

/// The events of a breakdown that were seen, seconds after the fault.
fn events(b: &Breakdown) -> Vec<(&'static str, f64)> {
    let at = |t| between(b.fault_at, t).map(|d| d.as_secs_f64());
    [
        ("expr true", b.expr_true_at),
        ("pending", b.pending_at),
        ("firing", b.firing_at),
        ("Alertmanager", b.alertmanager_at),
        ("Teams card", b.teams_at),
        ("undo", b.undo_at),
        ("resolved", b.resolved_at),
        ("Teams resolved", b.teams_resolved_at),
    ]
    .into_iter()
    .filter_map(|(name, t)| at(t).map(|s| (name, s)))
    .collect()
}

fn timeline(b: &Breakdown) -> Timeline {
    let labels = b
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let window = b.timing.as_ref().map(|t| t.teams_bound().as_secs_f64());
    Timeline {
        title: format!("{}{{{labels}}}", b.alert),
        chart: chart(&events(b), window),
        rows: b
            .rows()
            .into_iter()
            .map(|(stage, took, bound)| {
                let took = took.map_or("—".into(), |d| format!("{:.2}s", d.as_secs_f64()));
                (stage.to_string(), took, bound)
            })
            .collect(),
    }
}

/// Draws a chart on a white SVG of `size`; a drawing that fails (it does
/// not with the SVG backend) leaves what was drawn, and says so in the log.
pub(super) fn svg_chart(
    size: (u32, u32),
    what: &str,
    draw: impl FnOnce(
        &DrawingArea<SVGBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root).map_err(|e| e.to_string()))
            .and_then(|()| root.present().map_err(|e| e.to_string()));
        if let Err(e) = drawn {
            tracing::warn!("{what}: {e}");
        }
    }
    svg
}

/// A bar per event from the fault to when it was seen, and the window the
/// card had to arrive in, as SVG.
pub fn chart(events: &[(&str, f64)], window: Option<f64>) -> String {
    let last = events
        .iter()
        .map(|e| e.1)
        .fold(window.unwrap_or(0.0), f64::max);
    let xmax = (last * 1.1).max(1.0);
    let rows = events.len().max(1) as f64;
    let height = 50 + 26 * events.len().max(1) as u32;
    svg_chart((760, height), "an alert's chart", |root| {
        let mut c = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(0)
            .build_cartesian_2d(0f64..xmax, 0f64..rows)?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("seconds after the fault")
            .draw()?;
        if let Some(w) = window {
            c.draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (w, rows)],
                RGBColor(46, 160, 67).mix(0.12).filled(),
            )))?;
            c.draw_series(std::iter::once(PathElement::new(
                vec![(w, 0.0), (w, rows)],
                RGBColor(46, 160, 67).stroke_width(2),
            )))?;
        }
        for (i, (name, t)) in events.iter().enumerate() {
            let y = rows - i as f64 - 1.0;
            let colour = if *name == "undo" {
                RGBColor(207, 34, 46)
            } else {
                RGBColor(9, 105, 218)
            };
            c.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.25), (*t, y + 0.75)],
                colour.mix(0.75).filled(),
            )))?;
            c.draw_series(std::iter::once(Text::new(
                format!("{name} {t:.1}s"),
                (xmax * 0.005, y + 0.85),
                ("sans-serif", 13).into_font(),
            )))?;
        }
        Ok(())
    })
}

/// Named series over seconds of a load, as lines with a legend, as SVG.
fn series_chart(y_desc: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let lines: Vec<crate::panels::Line> = series
        .iter()
        .map(|(name, pts)| crate::panels::Line {
            legend: name.to_string(),
            points: pts.clone(),
        })
        .collect();
    let pts = || lines.iter().flat_map(|l| l.points.iter());
    let x1 = pts().map(|p| p.0).fold(1.0, f64::max);
    let y1 = pts().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
    svg_chart((760, 200), "a load's chart", |root| {
        let mut c = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x1, 0f64..y1)?;
        c.configure_mesh()
            .x_desc("seconds of the load")
            .y_desc(y_desc)
            .draw()?;
        for (i, l) in lines.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(
                l.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(l.legend.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        Ok(())
    })
}

/// What a panel drew over the drill, each series a line, with the fault
/// and the undo marked, as SVG; x in seconds from the first sample.
pub fn panel_chart(lines: &[crate::panels::Line], marks: &[(&str, f64)]) -> String {
    let pts = || lines.iter().flat_map(|l| l.points.iter());
    let t0 = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let t1 = pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    if !t0.is_finite() {
        return String::new();
    }
    let pad = ((hi - lo).abs() * 0.1).max(hi.abs() * 0.05).max(1e-9);
    let (y0, y1) = (lo.min(0.0).min(lo - pad), hi + pad);
    let x1 = (t1 - t0).max(1.0);
    svg_chart((760, 200), "a panel's chart", |root| {
        let mut c = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x1, y0..y1)?;
        c.configure_mesh().x_desc("seconds into the drill").draw()?;
        for (i, l) in lines.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(
                l.points.iter().map(|p| (p.0 - t0, p.1)),
                colour.stroke_width(2),
            ))?;
        }
        for (name, t) in marks.iter().filter(|m| m.1 >= t0 && m.1 <= t1) {
            let x = t - t0;
            let red = RGBColor(207, 34, 46);
            c.draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                red.stroke_width(1),
            )))?;
            c.draw_series(std::iter::once(Text::new(
                name.to_string(),
                (x, y1),
                ("sans-serif", 12).into_font().color(&red),
            )))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_renders_every_drill_with_its_charts() {
        let s = crate::spec::scenario::Scenario::load(
            std::path::Path::new("scenarios/backend-down.yaml"),
            None,
        )
        .unwrap();
        let mut r = DrillReport::new(&s, "t-1");
        let t0 = chrono::Utc::now();
        let at = |s: i64| Some(t0 + chrono::Duration::milliseconds(s));
        r.breakdowns.push(Breakdown {
            alert: "BackendDown".into(),
            labels: [("job".to_string(), "backend<x>".to_string())].into(),
            fault_at: at(0),
            expr_true_at: at(1500),
            pending_at: at(2000),
            firing_at: at(12000),
            alertmanager_at: at(12010),
            teams_at: at(13100),
            undo_at: None,
            resolved_at: None,
            teams_resolved_at: None,
            timing: None,
        });
        r.cards.push(crate::observe::Delivery {
            received_at: t0 + chrono::Duration::milliseconds(13100),
            format: crate::observe::CardFormat::MessageCard,
            http_status: 200,
            title: "[FIRING:1] BackendDown".into(),
            status: crate::observe::CardStatus::Firing,
            alertnames: vec!["BackendDown".into()],
            error: None,
            text: "# Alerts Firing\nBackend <b>down</b>\n- severity = critical\n[runbook](http://runbooks/x)".into(),
            colour: "8C1A1A".into(),
        });
        r.verdict = r.judge();
        let mut skipped = DrillReport::new(&s, "");
        skipped.scenario = "needs-a-gpu".into();
        skipped.skipped = Some("needs a GPU".into());
        skipped.verdict = skipped.judge();
        let page = html(&[r, skipped], Duration::from_secs(20)).unwrap();
        if let Ok(p) = std::env::var("FIREDRILL_HTML_OUT") {
            std::fs::write(p, &page).unwrap();
        }
        assert!(page.contains("<span class=\"verdict passed\">PASSED</span> backend-down"));
        assert!(page.contains("<span class=\"verdict skipped\">SKIPPED</span> needs-a-gpu"));
        assert!(page.contains("Skipped: needs a GPU"));
        // Labels are escaped; the chart is inlined as SVG.
        assert!(page.contains("backend&lt;x&gt;"), "{page}");
        assert!(page.contains("Teams card 13.1s"));
        // The card as Teams shows it: its accent, title, lines, escaped.
        assert!(page.contains("border-top-color: #8C1A1A"), "{page}");
        assert!(
            page.contains("MessageCard, 13.1s after the fault"),
            "{page}"
        );
        // Its Markdown drawn, its HTML shown as text, its link as text.
        assert!(page.contains("<h1>Alerts Firing</h1>"), "{page}");
        assert!(
            page.contains("<p>Backend &lt;b&gt;down&lt;/b&gt;</p>"),
            "{page}"
        );
        assert!(page.contains("<li>severity = critical"), "{page}");
        assert!(
            page.contains("runbook") && !page.contains("runbooks/x"),
            "{page}"
        );
        assert_eq!(page.matches("<svg").count(), 1);
        // Nothing is fetched at view time.
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    }

    #[test]
    fn a_panel_chart_draws_its_lines_and_marks_the_fault() {
        let line = |n: &str, k: f64| crate::panels::Line {
            legend: n.into(),
            points: (0..30)
                .map(|i| (1000.0 + f64::from(i), k * f64::from(i)))
                .collect(),
        };
        let svg = panel_chart(
            &[line("{a}", 1.0), line("{b}", 2.0)],
            &[("fault", 1010.0), ("undo", 5000.0)],
        );
        // Two series (the axes' ticks are thinner), the fault marked in red.
        assert_eq!(svg.matches("stroke-width=\"2\"").count(), 2, "{svg}");
        assert!(
            svg.contains("#CF222E") && svg.contains("fault") && !svg.contains("undo"),
            "{svg}"
        );
        assert_eq!(panel_chart(&[], &[]), "");
    }

    #[test]
    fn a_chart_draws_each_event_and_the_window() {
        let svg = chart(
            &[("pending", 1.0), ("firing", 31.0), ("Teams card", 33.5)],
            Some(38.5),
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Teams card 33.5s"), "{svg}");
        assert!(svg.contains("seconds after the fault"));
        // The background, the window's band and a bar per event; the
        // window's edge as a green line.
        assert_eq!(svg.matches("<rect").count(), 1 + 1 + 3, "{svg}");
        assert!(
            svg.contains(r##"stroke="#2EA043" stroke-width="2""##),
            "{svg}"
        );
    }
}
