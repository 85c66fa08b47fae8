//! The delivery trends as SVG, drawn server-side with `plotters` (its SVG backend; text is
//! left to the browser's fonts): one chart per metric of [`delivery::METRICS`], a bar per week
//! for deployments, a line through the weeks that have a value for the others.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::delivery::{METRICS, Week};

const SIZE: (u32, u32) = (640, 280);
const BAR: RGBColor = RGBColor(36, 87, 197);
const LINE: RGBColor = RGBColor(180, 35, 24);

/// Why a chart could not be drawn (the SVG backend writes into a string: only a bug).
#[derive(Debug, thiserror::Error)]
#[error("drawing the {metric} chart: {message}")]
pub struct ChartError {
    metric: String,
    message: String,
}

/// One metric of a week, in the chart's unit.
fn value(metric: &str, week: &Week, unit_secs: f64) -> Option<f64> {
    match metric {
        "deployment-frequency" => Some(f64::from(week.deployments)),
        "lead-time" => week.lead_time_secs.map(|s| s / unit_secs),
        "change-failure-rate" => week.change_failure_rate.map(|r| r * 100.0),
        _ => week.time_to_restore_secs.map(|s| s / unit_secs),
    }
}

/// Hours, or minutes when every value is under two hours.
fn time_unit(metric: &str, weeks: &[Week]) -> (f64, &'static str) {
    let max = weeks.iter().filter_map(|w| value(metric, w, 1.0)).fold(0.0, f64::max);
    if max < 7200.0 { (60.0, "minutes") } else { (3600.0, "hours") }
}

/// True for the metrics this module draws.
pub fn known(metric: &str) -> bool {
    METRICS.iter().any(|(name, _, _)| *name == metric)
}

/// The chart of `metric` over `weeks` (oldest first), titled with `scope`.
pub fn svg(metric: &str, scope: &str, weeks: &[Week]) -> Result<String, ChartError> {
    let error = |e: &dyn std::fmt::Display| ChartError { metric: metric.to_owned(), message: e.to_string() };
    let title = METRICS.iter().find(|(name, _, _)| *name == metric).map_or(metric, |(_, title, _)| title);
    let (unit_secs, unit) = match metric {
        "deployment-frequency" => (1.0, "deployments"),
        "change-failure-rate" => (1.0, "% failed"),
        _ => time_unit(metric, weeks),
    };
    let values: Vec<Option<f64>> = weeks.iter().map(|w| value(metric, w, unit_secs)).collect();
    let top = values.iter().flatten().fold(0.0, |a: f64, b| a.max(*b));
    let top = if metric == "change-failure-rate" { 100.0 } else { (top * 1.15).max(1.0) };
    let labels: Vec<String> = weeks.iter().map(|w| w.start.format("%m-%d").to_string()).collect();
    let count = u32::try_from(weeks.len()).unwrap_or(u32::MAX).max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title} · {scope}"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d((0..count).into_segmented(), 0.0..top)
            .map_err(|e| error(&e))?;
        let label = |x: &SegmentValue<u32>| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(usize::try_from(*i).unwrap_or(usize::MAX)).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len().min(13))
            .x_label_formatter(&label)
            .y_desc(unit)
            .draw()
            .map_err(|e| error(&e))?;
        let points: Vec<(u32, f64)> = (0..count).zip(values.iter()).filter_map(|(i, v)| v.map(|v| (i, v))).collect();
        if metric == "deployment-frequency" {
            // A week without deployments has no bar (not one of height zero).
            let points = points.into_iter().filter(|(_, v)| *v > 0.0);
            let bars = Histogram::vertical(&chart).style(BAR.filled()).margin(6).data(points);
            chart.draw_series(bars).map_err(|e| error(&e))?;
        } else {
            let at = |(i, v): &(u32, f64)| (SegmentValue::CenterOf(*i), *v);
            chart.draw_series(LineSeries::new(points.iter().map(at), LINE.stroke_width(2))).map_err(|e| error(&e))?;
            let dots = points.iter().map(|p| Circle::new(at(p), 3, LINE.filled()));
            chart.draw_series(dots).map_err(|e| error(&e))?;
        }
        root.present().map_err(|e| error(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone as _, Utc};

    fn weeks() -> Vec<Week> {
        let start = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).single().expect("date");
        (0..3)
            .map(|i| Week {
                start: start + Duration::weeks(i),
                deployments: u32::try_from(i).expect("small") * 2,
                failures: 0,
                lead_time_secs: (i != 1).then_some(3.0 * 3600.0 * (i + 1) as f64),
                change_failure_rate: None,
                time_to_restore_secs: None,
            })
            .collect()
    }

    #[test]
    fn bars_for_deployments_and_a_line_for_times() {
        let bars = svg("deployment-frequency", "writer", &weeks()).expect("svg");
        assert!(bars.starts_with("<svg") && bars.contains("Deployments per week · writer"), "{bars}");
        assert!(bars.contains("03-02") && bars.contains("03-16"), "week labels");
        // Two weeks with deployments: two bars (the background is a rect too).
        let filled = format!("fill=\"#{:02X}{:02X}{:02X}\"", BAR.0, BAR.1, BAR.2);
        assert_eq!(bars.matches(&filled).count(), 2, "{bars}");
        let line = svg("lead-time", "everything", &weeks()).expect("svg");
        assert!(line.contains("<polyline") && line.contains("hours"), "{line}");
        assert_eq!(line.matches("<circle").count(), 2, "weeks without a value have no point");
    }

    #[test]
    fn only_the_four_metrics() {
        assert!(known("lead-time") && known("time-to-restore") && !known("../etc"));
    }
}
