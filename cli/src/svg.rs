//! The `--svg` chart: two panels side by side, time and peak RSS, each as
//! poolmalloc ÷ comparator per case (below 1: poolmalloc took less), in
//! grouped bars on a logarithmic axis, so 2× less and 2× more are the same
//! distance from the line at 1. Only the allocators are drawn: locked mode
//! (up to 100× here, which would squash the rest), the other poolmalloc
//! modes and the poolmalloc APIs stay in the tables. Written by hand; no
//! plotting crate.

use crate::report::{CaseResult, Role, POOLMALLOC};
use std::fmt::Write as _;

/// Okabe-Ito colours, distinguishable with the common colour-vision
/// deficiencies, ordered so that the first five differ most (no two blues
/// or two oranges among them).
const COLOURS: [&str; 8] = ["#E69F00", "#0072B2", "#009E73", "#CC79A7", "#999999", "#D55E00", "#56B4E9", "#F0E442"];
const NICE_TICKS: [f64; 23] = [
    0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 16.0, 20.0, 32.0, 50.0, 64.0,
    100.0, 200.0, 500.0,
];
/// The comparator the chart leaves out.
const LOCKED: &str = "poolmalloc-locked";

const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const PANEL_GAP: f64 = 40.0;
const TOP: f64 = 100.0;
const PLOT_HEIGHT: f64 = 300.0;
const BOTTOM: f64 = 130.0;
const BAR: f64 = 9.0;
const GROUP_GAP: f64 = 12.0;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One group of bars: a case and its (comparator, ratio) pairs.
type Group<'a> = (&'a str, Vec<(&'a str, f64)>);

/// The groups of one panel: poolmalloc ÷ each allocator, from the
/// comparator ÷ poolmalloc ratio that `pick` reads.
fn groups<'a>(
    cases: &'a [CaseResult],
    pick: impl Fn(&crate::report::ComparatorResult) -> Option<f64>,
) -> Vec<Group<'a>> {
    cases
        .iter()
        .map(|case| {
            let bars = case
                .comparators
                .iter()
                .filter(|c| c.allocator != POOLMALLOC && c.allocator != LOCKED && c.role == Role::Allocator)
                .filter_map(|c| pick(c).filter(|r| *r > 0.0).map(|r| (c.allocator.as_str(), 1.0 / r)))
                .collect();
            (case.case.as_str(), bars)
        })
        .filter(|(_, bars): &Group| !bars.is_empty())
        .collect()
}

/// The chart, or `None` when no case has a ratio to draw.
pub fn chart(cases: &[CaseResult], subtitle: &str) -> Option<String> {
    let time = groups(cases, |c| c.time_ratio_to_poolmalloc);
    let rss = groups(cases, |c| c.rss_ratio_to_poolmalloc);
    if time.is_empty() && rss.is_empty() {
        return None;
    }
    let mut series: Vec<&str> = Vec::new();
    for (_, bars) in time.iter().chain(&rss) {
        for (name, _) in bars {
            if !series.contains(name) {
                series.push(name);
            }
        }
    }
    let width_of = |g: &[Group]| g.iter().map(|(_, bars)| bars.len() as f64 * BAR + GROUP_GAP).sum::<f64>().max(300.0);
    let (tw, rw) = (width_of(&time), width_of(&rss));
    let width = LEFT + tw + PANEL_GAP + LEFT + rw + RIGHT;
    let height = TOP + PLOT_HEIGHT + BOTTOM;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">poolmalloc ÷ each allocator: time (left) and peak RSS (right); below 1, poolmalloc took less</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="42" fill="#555">{} (locked mode, the other poolmalloc modes and the APIs are in the tables)</text>"##,
        escape(subtitle)
    );
    let colour = |name: &str| COLOURS[series.iter().position(|s| *s == name).unwrap_or(0) % COLOURS.len()];
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
    panel(&mut s, LEFT, tw, &time, "time", &colour);
    panel(&mut s, LEFT + tw + PANEL_GAP + LEFT, rw, &rss, "peak RSS", &colour);
    s.push_str("</svg>\n");
    Some(s)
}

/// Draws one panel whose plot area starts at `left` and is `plot_width`
/// wide.
fn panel(
    s: &mut String,
    left: f64,
    plot_width: f64,
    groups: &[Group],
    what: &str,
    colour: &dyn Fn(&str) -> &'static str,
) {
    let _ = writeln!(s, r##"<text x="{left:.1}" y="{:.1}" font-weight="bold">{what}</text>"##, TOP - 12.0);
    if groups.is_empty() {
        let _ = writeln!(s, r##"<text x="{left:.1}" y="{:.1}" fill="#555">no figures</text>"##, TOP + 20.0);
        return;
    }
    // The axis spans every ratio and 1, with a little room, in log scale.
    let (lo, hi) = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, r)| *r))
        .fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = ((lo / 1.15).max(0.05), (hi * 1.15).min(500.0));
    let (llo, lhi) = (lo.ln(), hi.ln());
    let y = |r: f64| TOP + PLOT_HEIGHT * (lhi - r.clamp(lo, hi).ln()) / (lhi - llo);

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
            r##"<line x1="{left:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="{stroke}"{dash}/><text x="{:.1}" y="{:.1}" text-anchor="end">{t}×</text>"##,
            left + plot_width,
            left - 6.0,
            ty + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left:.1}" y1="{TOP}" x2="{left:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + PLOT_HEIGHT
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">{what} ratio (log scale)</text>"##,
        left - 52.0,
        TOP + PLOT_HEIGHT / 2.0
    );

    // Bars, from the line at 1 to the ratio.
    let mut gx = left + GROUP_GAP / 2.0;
    for (label, bars) in groups {
        for (i, (name, r)) in bars.iter().enumerate() {
            let x = gx + i as f64 * BAR;
            let (top, bottom) = if *r >= 1.0 { (y(*r), y(1.0)) } else { (y(1.0), y(*r)) };
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {what}: poolmalloc ÷ {} = {r:.3}×</title></rect>"##,
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
        gx += bars.len() as f64 * BAR + GROUP_GAP;
    }
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
                    c.rss_ratio_to_poolmalloc = r.map(|r| r * 2.0);
                    c
                })
                .collect(),
            reference_case: None,
            checksum_mismatch: None,
        }
    }

    #[test]
    fn draws_time_and_rss_bars_per_ratio_with_a_legend() {
        let cases = [
            case(
                "a<b",
                &[
                    ("poolmalloc", Some(1.0)),
                    ("mimalloc", Some(1.6)),
                    ("glibc", Some(0.5)),
                    ("poolmalloc-locked", Some(40.0)),
                ],
            ),
            case("c", &[("poolmalloc", Some(1.0)), ("mimalloc", None)]),
        ];
        let svg = chart(&cases, "quick").unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Two allocators in two panels; locked mode left out.
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(!svg.contains("poolmalloc-locked"));
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.contains(">mimalloc</text>") && svg.contains(">glibc</text>"));
        // poolmalloc ÷ comparator: the reciprocal of comparator ÷ poolmalloc.
        assert!(svg.contains("a&lt;b time: poolmalloc ÷ mimalloc = 0.625×"), "{svg}");
        assert!(svg.contains("a&lt;b peak RSS: poolmalloc ÷ glibc = 1.000×"), "{svg}");
        assert!(svg.contains(">1×</text>"));
    }

    #[test]
    fn nothing_to_draw() {
        assert!(chart(&[case("c", &[("poolmalloc", Some(1.0))])], "").is_none());
    }
}
