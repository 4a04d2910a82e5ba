//! The `--svg` chart: time ratios (comparator ÷ poolmalloc) per case as
//! grouped bars on a logarithmic axis, so 2× slower and 2× faster are the
//! same distance from poolmalloc's line at 1. Written by hand; no plotting
//! crate.

use crate::report::{CaseResult, POOLMALLOC};
use std::fmt::Write as _;

/// Okabe-Ito colours, distinguishable with the common colour-vision deficiencies.
const COLOURS: [&str; 8] = ["#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#999999", "#F0E442"];
const NICE_TICKS: [f64; 23] = [
    0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 16.0, 20.0, 32.0, 50.0, 64.0,
    100.0, 200.0, 500.0,
];

const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 90.0;
const PLOT_HEIGHT: f64 = 320.0;
const BOTTOM: f64 = 130.0;
const BAR: f64 = 13.0;
const GROUP_GAP: f64 = 18.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One group of bars: a case and its (comparator, ratio) pairs.
type Group<'a> = (&'a str, Vec<(&'a str, f64)>);

/// The chart, or `None` when no case has a ratio to draw.
pub fn chart(cases: &[CaseResult], subtitle: &str) -> Option<String> {
    let groups: Vec<Group> = cases
        .iter()
        .map(|case| {
            let bars = case
                .comparators
                .iter()
                .filter(|c| c.allocator != POOLMALLOC)
                .filter_map(|c| c.time_ratio_to_poolmalloc.map(|r| (c.allocator.as_str(), r)))
                .filter(|(_, r)| *r > 0.0)
                .collect();
            (case.case.as_str(), bars)
        })
        .filter(|(_, bars): &Group| !bars.is_empty())
        .collect();
    if groups.is_empty() {
        return None;
    }
    let mut series: Vec<&str> = Vec::new();
    for (_, bars) in &groups {
        for (name, _) in bars {
            if !series.contains(name) {
                series.push(name);
            }
        }
    }
    let colour = |name: &str| COLOURS[series.iter().position(|s| *s == name).unwrap_or(0) % COLOURS.len()];

    // The axis spans every ratio and 1, with a little room, in log scale.
    let (lo, hi) = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, r)| *r))
        .fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = ((lo / 1.15).max(0.05), (hi * 1.15).min(500.0));
    let (llo, lhi) = (lo.ln(), hi.ln());
    let y = |r: f64| TOP + PLOT_HEIGHT * (lhi - r.clamp(lo, hi).ln()) / (lhi - llo);

    let widths: Vec<f64> = groups.iter().map(|(_, bars)| bars.len() as f64 * BAR + GROUP_GAP).collect();
    let plot_width: f64 = widths.iter().sum::<f64>().max(360.0);
    let width = LEFT + plot_width + RIGHT;
    let height = TOP + PLOT_HEIGHT + BOTTOM;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">Time relative to poolmalloc (comparator ÷ poolmalloc; above 1: poolmalloc is faster)</text>"##
    );
    let _ = writeln!(s, r##"<text x="{LEFT}" y="42" fill="#555">{}</text>"##, escape(subtitle));

    // Legend.
    let mut lx = LEFT;
    for name in &series {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="56" width="12" height="12" fill="{}"/><text x="{:.1}" y="66">{}</text>"##,
            colour(name),
            lx + 16.0,
            escape(name)
        );
        lx += 16.0 + 7.5 * name.len() as f64 + 18.0;
    }

    // Axis, grid and ticks.
    let ticks: Vec<f64> = {
        let inside: Vec<f64> = NICE_TICKS.iter().copied().filter(|t| (lo..=hi).contains(t)).collect();
        if inside.len() > 10 {
            inside.into_iter().filter(|t| (t.log2().fract()).abs() < 1e-9).collect()
        } else {
            inside
        }
    };
    for t in &ticks {
        let ty = y(*t);
        let (stroke, dash) = if *t == 1.0 { ("#333", "") } else { ("#ddd", r##" stroke-dasharray="3,3""##) };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="{stroke}"{dash}/><text x="{:.1}" y="{:.1}" text-anchor="end">{t}×</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            ty + 4.0
        );
    }
    let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>"##, TOP + PLOT_HEIGHT);
    let _ = writeln!(
        s,
        r##"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">time ratio (log scale)</text>"##,
        TOP + PLOT_HEIGHT / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">poolmalloc = 1</text>"##,
        LEFT + plot_width - 4.0,
        y(1.0) - 5.0
    );

    // Bars, from the line at 1 to the ratio.
    let mut gx = LEFT + GROUP_GAP / 2.0;
    for ((label, bars), w) in groups.iter().zip(&widths) {
        for (i, (name, r)) in bars.iter().enumerate() {
            let x = gx + i as f64 * BAR;
            let (top, bottom) = if *r >= 1.0 { (y(*r), y(1.0)) } else { (y(1.0), y(*r)) };
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {r:.3}×</title></rect>"##,
                BAR - 1.0,
                (bottom - top).max(0.5),
                colour(name),
                escape(label),
                escape(name)
            );
        }
        let cx = gx + bars.len() as f64 * BAR / 2.0;
        let ly = TOP + PLOT_HEIGHT + 14.0;
        let _ = writeln!(
            s,
            r##"<text transform="translate({cx:.1},{ly:.1}) rotate(-40)" text-anchor="end">{}</text>"##,
            escape(label)
        );
        gx += w;
    }
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ComparatorResult, Role};
    use crate::workloads::Metric;

    fn case(name: &str, ratios: &[(&str, Option<f64>)]) -> CaseResult {
        CaseResult {
            case: name.into(),
            workload: name.into(),
            variant: String::new(),
            threads: 2,
            metric: Metric::Seconds,
            deterministic: true,
            python: false,
            comparators: ratios
                .iter()
                .map(|(n, r)| {
                    let mut c = ComparatorResult::new(n, String::new(), Role::Allocator);
                    c.time_ratio_to_poolmalloc = *r;
                    c
                })
                .collect(),
            reference_case: None,
            checksum_mismatch: None,
        }
    }

    #[test]
    fn draws_one_bar_per_ratio_with_a_legend() {
        let cases = [
            case("a<b", &[("poolmalloc", Some(1.0)), ("mimalloc", Some(1.5)), ("system", Some(0.5))]),
            case("c", &[("poolmalloc", Some(1.0)), ("mimalloc", None)]),
        ];
        let svg = chart(&cases, "quick").unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.contains(">mimalloc</text>") && svg.contains(">system</text>"));
        assert!(svg.contains(">1×</text>"));
    }

    #[test]
    fn nothing_to_draw() {
        assert!(chart(&[case("c", &[("poolmalloc", Some(1.0))])], "").is_none());
    }
}
