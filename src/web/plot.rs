//! The timeline plot of a trial page, drawn on the server as inline SVG: its start, primary
//! completion and completion dates (one panel) and its enrollment count (another) across its
//! stored versions. Each version is one `<g class="version" data-version="N">` holding its
//! points, so a reader (or a test) finds exactly one group per version. Pure.

use chrono::{Datelike, NaiveDate};

use super::html::esc;

/// What the plot shows of one version.
#[derive(Debug, Clone, Default)]
pub struct PlotPoint {
    /// The stored version number.
    pub version: u32,
    /// Its detection day, for the axis label.
    pub label: String,
    /// `status.startDate`.
    pub start: Option<NaiveDate>,
    /// `status.primaryCompletionDate`.
    pub primary_completion: Option<NaiveDate>,
    /// `status.completionDate`.
    pub completion: Option<NaiveDate>,
    /// `design.enrollmentCount`.
    pub enrollment: Option<f64>,
}

const W: f64 = 720.0;
const H: f64 = 180.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 30.0;

/// The series of the dates panel: CSS class, label, colour, accessor.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PlotPoint) -> Option<f64>,
);

fn days(d: Option<NaiveDate>) -> Option<f64> {
    d.map(|d| f64::from(d.num_days_from_ce()))
}

const DATE_SERIES: [Series; 3] = [
    ("start", "start", "#1f77b4", |p| days(p.start)),
    ("primary", "primary completion", "#ff7f0e", |p| {
        days(p.primary_completion)
    }),
    ("completion", "completion", "#2ca02c", |p| {
        days(p.completion)
    }),
];

fn x_of(i: usize, n: usize) -> f64 {
    if n <= 1 {
        LEFT + (W - LEFT - RIGHT) / 2.0
    } else {
        LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
    }
}

fn scale(lo: f64, hi: f64) -> impl Fn(f64) -> f64 {
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    move |v| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo))
}

fn date_label(v: f64) -> String {
    NaiveDate::from_num_days_from_ce_opt(v.round() as i32)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The plot for `points` (oldest version first), as an `<svg>` element.
pub fn timeline_svg(points: &[PlotPoint]) -> String {
    let n = points.len();
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"dates and enrollment across versions\">",
        H * 2.0,
        H * 2.0
    );
    // Panel 1: dates.
    let all: Vec<f64> = points
        .iter()
        .flat_map(|p| DATE_SERIES.iter().filter_map(move |s| (s.3)(p)))
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let dy = scale(lo, hi);
    s.push_str("<g class=\"panel dates\">");
    s.push_str(&axis(0.0, "dates"));
    if lo.is_finite() {
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\" font-size=\"10\">{}</text><text x=\"4\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            dy(hi) + 4.0,
            date_label(hi),
            dy(lo) + 4.0,
            date_label(lo)
        ));
    }
    for (class, label, colour, get) in DATE_SERIES {
        s.push_str(&polyline(points, |p| get(p).map(&dy), class, colour, 0.0));
        let _ = label;
    }
    s.push_str("</g>");
    // Panel 2: enrollment.
    let counts: Vec<f64> = points.iter().filter_map(|p| p.enrollment).collect();
    let clo = counts
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let chi = counts.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ey = scale(clo, chi.max(1.0));
    s.push_str("<g class=\"panel enrollment\">");
    s.push_str(&axis(H, "enrollment"));
    if chi.is_finite() {
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\" font-size=\"10\">{chi}</text>",
            H + ey(chi) + 4.0
        ));
    }
    s.push_str(&polyline(
        points,
        |p| p.enrollment.map(&ey),
        "enrollment",
        "#9467bd",
        H,
    ));
    s.push_str("</g>");
    // One group per version with its points.
    for (i, p) in points.iter().enumerate() {
        let x = x_of(i, n);
        s.push_str(&format!(
            "<g class=\"version\" data-version=\"{}\"><title>v{} ({})</title>",
            p.version,
            p.version,
            esc(&p.label)
        ));
        for (class, label, colour, get) in DATE_SERIES {
            if let Some(v) = get(p) {
                s.push_str(&format!(
                    "<circle class=\"pt {class}\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>v{} {label}: {}</title></circle>",
                    dy(v),
                    p.version,
                    date_label(v)
                ));
            }
        }
        if let Some(c) = p.enrollment {
            s.push_str(&format!(
                "<circle class=\"pt enrollment\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#9467bd\"><title>v{} enrollment: {c}</title></circle>",
                H + ey(c),
                p.version
            ));
        }
        s.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">v{}</text></g>",
            H * 2.0 - 8.0,
            p.version
        ));
    }
    s.push_str("</svg>");
    s
}

fn axis(y0: f64, name: &str) -> String {
    format!(
        "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{name}</text>",
        y0 + H - BOTTOM,
        W - RIGHT,
        y0 + H - BOTTOM,
        W - RIGHT,
        y0 + 12.0
    )
}

fn polyline(
    points: &[PlotPoint],
    y: impl Fn(&PlotPoint) -> Option<f64>,
    class: &str,
    colour: &str,
    y0: f64,
) -> String {
    let n = points.len();
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| y(p).map(|v| format!("{:.1},{:.1}", x_of(i, n), y0 + v)))
        .collect();
    if coords.len() < 2 {
        return String::new();
    }
    format!(
        "<polyline class=\"line {class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
        coords.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_per_version_and_a_point_per_known_value() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let pts = vec![
            PlotPoint {
                version: 1,
                label: "2026-05-01".into(),
                start: d("2025-01-01"),
                primary_completion: d("2027-01-01"),
                completion: d("2027-06-01"),
                enrollment: Some(100.0),
            },
            PlotPoint {
                version: 2,
                label: "<b>".into(),
                start: d("2025-01-01"),
                primary_completion: d("2028-01-01"),
                completion: None,
                enrollment: Some(12.0),
            },
        ];
        let svg = timeline_svg(&pts);
        assert_eq!(svg.matches("<g class=\"version\"").count(), 2);
        assert_eq!(svg.matches("class=\"pt enrollment\"").count(), 2);
        assert_eq!(svg.matches("class=\"pt completion\"").count(), 1);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("(<b>)"));
        assert!(!timeline_svg(&[]).contains("NaN"));
    }
}
