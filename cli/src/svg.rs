//! The `--svg` chart, drawn with `plotters`: two panels side by side, time
//! and peak RSS, each as poolmalloc ÷ comparator per case (below 1:
//! poolmalloc took less), in grouped bars on a logarithmic axis, so 2× less
//! and 2× more are the same distance from the line at 1. Only the
//! allocators are drawn: locked mode (up to 100× here, which would squash
//! the rest), the other poolmalloc modes and the poolmalloc APIs stay in the
//! tables.

use crate::report::{CaseResult, ComparatorResult, Role, POOLMALLOC};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Okabe-Ito colours, distinguishable with the common colour-vision
/// deficiencies, ordered so that the first five differ most (no two blues
/// or two oranges among them).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0xF0, 0xE4, 0x42),
];
/// The comparator the chart leaves out.
const LOCKED: &str = "poolmalloc-locked";
/// Pixels per bar, and the height of the chart.
const BAR: u32 = 9;
const HEIGHT: u32 = 560;

/// One group of bars: a case and its (comparator, ratio) pairs.
type Group<'a> = (&'a str, Vec<(&'a str, f64)>);

/// The groups of one panel: poolmalloc ÷ each allocator, from the
/// comparator ÷ poolmalloc ratio that `pick` reads.
fn groups<'a>(cases: &'a [CaseResult], pick: impl Fn(&ComparatorResult) -> Option<f64>) -> Vec<Group<'a>> {
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

/// Bar slots of a panel: one per bar and one between groups.
fn slots(groups: &[Group]) -> u32 {
    groups.iter().map(|(_, bars)| bars.len() as u32 + 1).sum::<u32>().max(30)
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
    let colour = |name: &str| COLOURS[series.iter().position(|s| *s == name).unwrap_or(0) % COLOURS.len()];
    let (tw, rw) = (slots(&time) * BAR + 90, slots(&rss) * BAR + 90);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (tw + rw, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let (top, body) = root.split_vertically(80);
        let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
        top.draw_text(
            "poolmalloc ÷ each allocator: time (left) and peak RSS (right); below 1, poolmalloc took less",
            &text(15),
            (10, 8),
        )
        .ok()?;
        let note = format!("{subtitle} (locked mode, the other poolmalloc modes and the APIs are in the tables)");
        top.draw_text(&note, &text(12).color(&RGBColor(0x55, 0x55, 0x55)), (10, 30)).ok()?;
        let mut x = 10;
        for name in &series {
            top.draw(&Rectangle::new([(x, 54), (x + 12, 66)], colour(name).filled())).ok()?;
            top.draw_text(name, &text(12), (x + 16, 54)).ok()?;
            x += 16 + 8 * name.len() as i32 + 18;
        }
        let (left, right) = body.split_horizontally(tw);
        panel(&left, &time, "time", &colour)?;
        panel(&right, &rss, "peak RSS", &colour)?;
        root.present().ok()?;
    }
    Some(svg)
}

/// Draws one panel of grouped bars from the line at 1 to each ratio.
fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    groups: &[Group],
    what: &str,
    colour: &dyn Fn(&str) -> RGBColor,
) -> Option<()> {
    let (lo, hi) = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, r)| *r))
        .fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = ((lo / 1.15).max(0.05), (hi * 1.15).min(500.0));
    let mut chart = ChartBuilder::on(area)
        .caption(what, ("sans-serif", 13))
        .margin(8)
        .x_label_area_size(120)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..f64::from(slots(groups)), (lo..hi).log_scale())
        .ok()?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(format!("{what} ratio (log scale)"))
        .y_label_formatter(&|v| format!("{v:.2}×"))
        .draw()
        .ok()?;
    let width = f64::from(slots(groups));
    chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 1.0), (width, 1.0)], BLACK))).ok()?;
    let label = TextStyle::from(("sans-serif", 11).into_font().transform(FontTransform::Rotate270))
        .pos(Pos::new(HPos::Right, VPos::Center));
    let mut x = 0.5;
    for (case, bars) in groups {
        for (i, (name, r)) in bars.iter().enumerate() {
            let x0 = x + i as f64;
            let rect = Rectangle::new([(x0, r.min(1.0)), (x0 + 0.85, r.max(1.0))], colour(name).filled());
            chart.draw_series(std::iter::once(rect)).ok()?;
        }
        let centre = x + bars.len() as f64 / 2.0;
        chart.draw_series(std::iter::once(Text::new(case.to_string(), (centre, lo), label.clone()))).ok()?;
        x += bars.len() as f64 + 1.0;
    }
    Some(())
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
    fn draws_time_and_rss_bars_per_allocator_with_a_legend() {
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
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two allocators in two panels, plus one legend swatch each, in
        // their own colours; locked mode left out.
        assert_eq!(svg.matches(r##"fill="#E69F00""##).count(), 3, "{svg}");
        assert_eq!(svg.matches(r##"fill="#0072B2""##).count(), 3, "{svg}");
        assert!(!svg.contains("poolmalloc-locked"));
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.contains("\nmimalloc\n</text>") && svg.contains("\nglibc\n</text>"), "{svg}");
        assert!(svg.contains("time ratio (log scale)") && svg.contains("peak RSS ratio (log scale)"));
    }

    #[test]
    fn nothing_to_draw() {
        assert!(chart(&[case("c", &[("poolmalloc", Some(1.0))])], "").is_none());
    }
}
