//! Small plots for the pipeline page, drawn on the server as inline SVG: one line over the last
//! hour, its time axis the hour up to the sample, its value axis from zero to the largest value.
//! Presentation attributes only (`stroke`, `fill`): the console's Content-Security-Policy allows
//! no inline style and no script, and needs none for these.

use std::fmt::Write;

use super::html::esc;
use super::pipeline_history::SPAN_MS;

const WIDTH: f64 = 96.0;
const HEIGHT: f64 = 24.0;

/// A plot of `points` (`(ms since the epoch, value)`) over the hour up to `now_ms`, labelled for
/// screen readers with `label` and the latest value; empty when there are no points.
pub fn spark(label: &str, points: &[(i64, f64)], now_ms: i64, latest: &str) -> String {
    if points.is_empty() {
        return String::new();
    }
    let from = now_ms - SPAN_MS;
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let x = |t: i64| ((t - from).clamp(0, SPAN_MS) as f64 / SPAN_MS as f64) * WIDTH;
    let y = |v: f64| {
        let top = 2.0;
        if max > 0.0 {
            HEIGHT - 1.0 - (v.max(0.0) / max) * (HEIGHT - 1.0 - top)
        } else {
            HEIGHT - 1.0
        }
    };
    let mut line = String::new();
    for (t, v) in points {
        let _ = write!(line, "{:.1},{:.1} ", x(*t), y(*v));
    }
    let (last_t, last_v) = points[points.len() - 1];
    let title = format!("{label} over the last hour; now {latest}");
    format!(
        r##"<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{0}"><title>{0}</title><line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#d9dde5" stroke-width="1"/><polyline fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round" points="{1}"/><circle cx="{2:.1}" cy="{3:.1}" r="2" fill="currentColor"/></svg>"##,
        esc(&title),
        line.trim_end(),
        x(last_t),
        y(last_v),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_spans_the_hour_and_escapes_its_label() {
        let now = 10 * SPAN_MS;
        let svg = spark(
            "lag <x>",
            &[(now - SPAN_MS, 0.0), (now - SPAN_MS / 2, 5.0), (now, 10.0)],
            now,
            "10",
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains(r#"points="0.0,23.0 48.0,12.5 96.0,2.0""#), "{svg}");
        assert!(svg.contains("lag &lt;x&gt; over the last hour; now 10"), "{svg}");
        assert!(!svg.contains("style"), "no inline style: the CSP forbids it");
        assert_eq!(spark("lag", &[], now, "0"), "");
        let flat = spark("lag", &[(now, 0.0)], now, "0");
        assert!(flat.contains(r#"points="96.0,23.0""#), "all zero lies on the axis: {flat}");
    }
}
