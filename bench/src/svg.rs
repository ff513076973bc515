//! A hand-written SVG of latency distributions: one row per series, every sample a dot on a
//! logarithmic time axis, with its p50, p95 and p99 marked.

use std::fmt::Write;

use crate::stats::percentile;

pub struct Series {
    pub label: String,
    /// Milliseconds.
    pub samples: Vec<f64>,
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 270.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 56.0;
const ROW: f64 = 46.0;
const BOTTOM: f64 = 64.0;

pub fn latency_plot(title: &str, series: &[Series]) -> String {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.samples.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = 10f64.powf(
        all.iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor(),
    );
    let hi = 10f64.powf(
        all.iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .log10()
            .ceil(),
    );
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.1, 1000.0)
    };
    let x = |v: f64| {
        LEFT + (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (WIDTH - LEFT - RIGHT)
    };
    let height = TOP + ROW * series.len() as f64 + BOTTOM;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="24" font-size="15" font-weight="bold">{}</text>"##,
        LEFT,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="42" fill="#555">each dot one invocation; black bar p50, orange p95, red p99 (nearest rank)</text>"##
    );
    // Grid: 1, 2, 5 of every decade.
    let axis_y = TOP + ROW * series.len() as f64;
    let mut decade = lo;
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v > hi * 1.0001 {
                break;
            }
            let major = m == 1.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{axis_y}" stroke="{1}" stroke-width="1"/>"##,
                x(v),
                if major { "#bbb" } else { "#e6e6e6" }
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="{}">{}</text>"##,
                x(v),
                axis_y + 16.0,
                if major { "#000" } else { "#888" },
                tick(v)
            );
        }
        decade *= 10.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">milliseconds (log scale)</text>"##,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        axis_y + 40.0
    );
    for (row, s) in series.iter().enumerate() {
        let mid = TOP + ROW * row as f64 + ROW / 2.0;
        if row % 2 == 1 {
            let _ = writeln!(
                svg,
                r##"<rect x="0" y="{}" width="{WIDTH}" height="{ROW}" fill="#000" fill-opacity="0.03"/>"##,
                mid - ROW / 2.0
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{} (n={})</text>"##,
            LEFT - 10.0,
            mid + 4.0,
            escape(&s.label),
            s.samples.len()
        );
        for (i, v) in s.samples.iter().enumerate() {
            // A fixed spread, so the plot is the same for the same samples.
            let jitter = ((i as f64 * 0.618_034).fract() - 0.5) * (ROW * 0.5);
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="#1f77b4" fill-opacity="0.45"/>"##,
                x(*v),
                mid + jitter
            );
        }
        for (p, color, half) in [
            (50.0, "#000", 0.42),
            (95.0, "#ff7f0e", 0.32),
            (99.0, "#d62728", 0.32),
        ] {
            let v = percentile(&s.samples, p);
            if v.is_finite() {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{color}" stroke-width="2.5"><title>p{p}: {v:.2} ms</title></line>"##,
                    x(v),
                    mid - ROW * half,
                    mid + ROW * half
                );
            }
        }
        let p50 = percentile(&s.samples, 50.0);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#000">{}</text>"##,
            x(p50) + 4.0,
            mid - ROW * 0.3,
            tick_ms(p50)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn tick(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn tick_ms(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
