//! `--plot DIR`: SVG charts. `latency-<scenario>.svg` shows p50, p95 and p99 of every
//! call (and of all calls, and of the floor) on a log scale; `throughput.svg` shows the
//! throughput of each scenario (mean and standard deviation over runs), or of each run
//! when one scenario ran. Only plotters' SVG backend is built: no fonts or image codecs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::report::{Report, ScenarioReport, ordered_apis, thousands};
use crate::stats::Stats;

const P50: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const P95: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const P99: RGBColor = RGBColor(0xc4, 0x4e, 0x52);

/// Writes every chart into `dir` (created if missing); returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for scenario in &report.scenarios {
        let path = dir.join(format!("latency-{}.svg", scenario.scenario.name));
        latency(scenario, &path)
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
        written.push(path);
    }
    let path = dir.join("throughput.svg");
    throughput(report, &path)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    written.push(path);
    Ok(written)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One series of bars: its legend, colour, and the figure it shows.
type Bar = (&'static str, RGBColor, fn(&Stats) -> f64);

fn latency(s: &ScenarioReport, path: &Path) -> DrawResult {
    let mut rows: Vec<(String, &Stats)> =
        ordered_apis(&s.apis).into_iter().map(|(n, st)| (n.to_owned(), st)).collect();
    rows.push(("all calls".to_owned(), &s.total));
    if let Some(floor) = &s.floor {
        rows.push(("floor: ping_deep".to_owned(), &floor.ping_deep));
        rows.push(("floor: ping".to_owned(), &floor.ping));
    }
    // Top to bottom in report order.
    rows.reverse();
    let n = rows.len();
    let highest = rows.iter().map(|(_, st)| st.p99_response_us).fold(10.0_f64, f64::max);

    let height = 120 + 30 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("{}: response time, µs (log scale)", s.scenario.describe());
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .margin_right(60)
        .x_label_area_size(40)
        .y_label_area_size(190)
        .build_cartesian_2d((1.0_f64..highest * 3.0).log_scale(), -0.5_f64..n as f64 - 0.5)?;
    let names: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("µs")
        .x_label_formatter(&|x| thousands(*x))
        .disable_y_mesh()
        .draw()?;

    let percentiles: [Bar; 3] = [
        ("p50", P50, |st| st.p50_response_us),
        ("p95", P95, |st| st.p95_response_us),
        ("p99", P99, |st| st.p99_response_us),
    ];
    for (k, (label, color, value)) in percentiles.into_iter().enumerate() {
        let top = 0.35 - 0.25 * k as f64;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, st))| {
                let y = i as f64;
                Rectangle::new(
                    [(1.0, y + top), (value(st).max(1.0), y + top - 0.22)],
                    color.filled(),
                )
            }))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn throughput(report: &Report, path: &Path) -> DrawResult {
    // (label, mean, spread) per bar: scenarios when several ran, else the runs of the one.
    let bars: Vec<(String, f64, f64)> = if report.scenarios.len() > 1 {
        report
            .scenarios
            .iter()
            .map(|s| {
                let label =
                    format!("{} ({}+{})", s.scenario.name, s.scenario.sellers, s.scenario.buyers);
                (label, s.total.throughput_mean, s.total.throughput_stddev)
            })
            .collect()
    } else {
        report
            .scenarios
            .iter()
            .flat_map(|s| s.runs.iter())
            .map(|r| (format!("run {}", r.run), r.throughput_ops_per_s, 0.0))
            .collect()
    };
    let n = bars.len().max(1);
    let highest = bars.iter().map(|(_, m, sd)| m + sd).fold(1.0_f64, f64::max);
    let title = if report.scenarios.len() > 1 {
        "Throughput per scenario, calls/s (mean ± standard deviation over runs)".to_owned()
    } else {
        let s = report.scenarios.first().map(|s| s.scenario.name.clone()).unwrap_or_default();
        format!("Scenario {s}: throughput per run, calls/s")
    };

    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5_f64..n as f64 - 0.5, 0.0_f64..highest * 1.15)?;
    let labels: Vec<String> = bars.iter().map(|(l, ..)| l.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| thousands(*y))
        .y_desc("calls/s")
        .disable_x_mesh()
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, mean, _))| {
        let x = i as f64;
        Rectangle::new([(x - 0.3, 0.0), (x + 0.3, *mean)], P50.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().filter(|(_, (_, _, sd))| *sd > 0.0).map(
        |(i, (_, mean, sd))| {
            ErrorBar::new_vertical(i as f64, mean - sd, *mean, mean + sd, BLACK.stroke_width(2), 12)
        },
    ))?;
    root.present()?;
    Ok(())
}
