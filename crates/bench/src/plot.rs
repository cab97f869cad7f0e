//! `--plot DIR`: SVG charts. `latency-<scenario>.svg` shows p50, p95 and p99 of every
//! call (and of all calls, and of the floor) on a log scale; `throughput.svg` shows the
//! throughput of each scenario (mean and standard deviation over runs), or of each run
//! when one scenario ran. With `--fail`, the charts of a condition other than `none` end
//! in `-<condition>`, each run also gets `timeline-<scenario>-<condition>-run<N>.svg`
//! (successful calls per second, failures and p99 per 100 ms, the kill marked), and
//! `conditions-<scenario>.svg` sets the conditions side by side. Only plotters' SVG
//! backend is built: no fonts or image codecs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::args::Condition;
use crate::report::{Report, ScenarioReport, ordered_apis, thousands};
use crate::stats::{RunStats, Stats};
use crate::timeline::BUCKET;

const P50: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const P95: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const P99: RGBColor = RGBColor(0xc4, 0x4e, 0x52);

/// Writes every chart into `dir` (created if missing); returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let draw = |path: PathBuf, result: DrawResult| match result {
        Ok(()) => Ok(path),
        Err(e) => Err(anyhow::anyhow!("cannot draw {}: {e}", path.display())),
    };
    for scenario in &report.scenarios {
        let path = dir.join(format!("latency-{}.svg", name(scenario)));
        written.push(draw(path.clone(), latency(scenario, &path))?);
        if scenario.condition != Condition::None || scenario.frontends > 1 || scenario.replicas > 1
        {
            for run in &scenario.runs {
                let file = format!(
                    "timeline-{}-{}-run{}.svg",
                    scenario.scenario.name, scenario.condition, run.run
                );
                let path = dir.join(file);
                written.push(draw(path.clone(), timeline(scenario, run, &path))?);
            }
        }
    }
    let mut shapes: Vec<&str> = report.scenarios.iter().map(|s| s.scenario.name.as_str()).collect();
    shapes.dedup();
    for shape in shapes {
        let of_shape: Vec<&ScenarioReport> =
            report.scenarios.iter().filter(|s| s.scenario.name == shape).collect();
        if of_shape.len() > 1 {
            let path = dir.join(format!("conditions-{shape}.svg"));
            written.push(draw(path.clone(), conditions(&of_shape, &path))?);
        }
    }
    let path = dir.join("throughput.svg");
    throughput(report, &path)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    written.push(path);
    Ok(written)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A scenario's name in file names: with its condition when something failed.
fn name(s: &ScenarioReport) -> String {
    match s.condition {
        Condition::None => s.scenario.name.clone(),
        condition => format!("{}-{condition}", s.scenario.name),
    }
}

const OK: RGBColor = P50;
const FAILED: RGBColor = P99;
const LATENCY: RGBColor = P95;

/// One run over time: successful calls per second and failures per 100 ms bucket (left
/// axis), p99 response time per bucket (right axis), and the kill.
fn timeline(s: &ScenarioReport, run: &RunStats, path: &Path) -> DrawResult {
    let per_s = 1.0 / BUCKET.as_secs_f64();
    let end = run.timeline.last().map_or(1.0, |b| b.t_s + BUCKET.as_secs_f64());
    let highest =
        run.timeline.iter().map(|b| (b.ok + b.errors) as f64 * per_s).fold(10.0_f64, f64::max);
    let slowest = run.timeline.iter().map(|b| b.p99_response_us / 1000.0).fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{}, failure: {}, run {}: calls per second and p99 every {} ms",
        s.scenario.describe(),
        s.condition,
        run.run,
        BUCKET.as_millis()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .right_y_label_area_size(70)
        // Headroom above the data for the legend.
        .build_cartesian_2d(0.0_f64..end, 0.0_f64..highest * 1.6)?
        .set_secondary_coord(0.0_f64..end, 0.0_f64..slowest * 1.6);
    chart
        .configure_mesh()
        .x_desc("s from the run's start")
        .y_desc("calls/s")
        .y_label_formatter(&|y| thousands(*y))
        .draw()?;
    chart.configure_secondary_axes().y_desc("p99, ms").draw()?;
    let width = BUCKET.as_secs_f64();
    chart
        .draw_series(run.timeline.iter().filter(|b| b.errors > 0).map(|b| {
            let top = b.errors as f64 * per_s;
            Rectangle::new([(b.t_s, 0.0), (b.t_s + width * 0.8, top)], FAILED.filled())
        }))?
        .label("failed calls/s")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], FAILED.filled()));
    chart
        .draw_series(LineSeries::new(
            run.timeline.iter().map(|b| (b.t_s + width / 2.0, b.ok as f64 * per_s)),
            OK.stroke_width(2),
        ))?
        .label("successful calls/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], OK.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            run.timeline
                .iter()
                .filter(|b| b.ok + b.errors > 0)
                .map(|b| (b.t_s + width / 2.0, b.p99_response_us / 1000.0)),
            LATENCY.stroke_width(1),
        ))?
        .label("p99 (right axis)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LATENCY.stroke_width(1)));
    if let Some(f) = &run.failure {
        let label = format!("kill {}", f.killed.join(", "));
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(f.killed_at_s, 0.0), (f.killed_at_s, highest * 1.1)],
                BLACK.stroke_width(2),
            )))?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.stroke_width(2)));
        if let Some(ms) = f.recovered_after_ms {
            let at = f.killed_at_s + ms / 1000.0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(at, 0.0), (at, highest * 1.1)],
                    BLACK.mix(0.4).stroke_width(1),
                )))?
                .label("throughput back to 90 %")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.mix(0.4)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One scenario under each condition: throughput (mean ± standard deviation over runs) on
/// the left, p99 and the longest time without a successful call on the right.
fn conditions(reports: &[&ScenarioReport], path: &Path) -> DrawResult {
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let Some(first) = reports.first() else { return Ok(()) };
    let root = root.titled(
        &format!("{}: each failure condition", first.scenario.describe()),
        ("sans-serif", 20),
    )?;
    let (left, right) = root.split_horizontally(550);
    let n = reports.len();
    let labels: Vec<String> = reports.iter().map(|s| s.condition.to_string()).collect();
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };

    let highest = reports
        .iter()
        .map(|s| s.total.throughput_mean + s.total.throughput_stddev)
        .fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(&left)
        .caption("throughput, calls/s", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5_f64..n as f64 - 0.5, 0.0_f64..highest * 1.15)?;
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| thousands(*y))
        .disable_x_mesh()
        .draw()?;
    chart.draw_series(reports.iter().enumerate().map(|(i, s)| {
        let x = i as f64;
        Rectangle::new([(x - 0.3, 0.0), (x + 0.3, s.total.throughput_mean)], OK.filled())
    }))?;
    chart.draw_series(
        reports.iter().enumerate().filter(|(_, s)| s.total.throughput_stddev > 0.0).map(
            |(i, s)| {
                let (mean, sd) = (s.total.throughput_mean, s.total.throughput_stddev);
                ErrorBar::new_vertical(
                    i as f64,
                    mean - sd,
                    mean,
                    mean + sd,
                    BLACK.stroke_width(2),
                    12,
                )
            },
        ),
    )?;

    let gap = |s: &ScenarioReport| s.runs.iter().map(|r| r.longest_gap_ms).fold(0.0_f64, f64::max);
    let highest = reports
        .iter()
        .map(|s| gap(s).max(s.total.p99_response_us / 1000.0))
        .fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("ms: p99, and the longest time without a success", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5_f64..n as f64 - 0.5, 0.0_f64..highest * 1.15)?;
    chart.configure_mesh().x_labels(n + 1).x_label_formatter(&label).disable_x_mesh().draw()?;
    chart
        .draw_series(reports.iter().enumerate().map(|(i, s)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.3, 0.0), (x - 0.02, s.total.p99_response_us / 1000.0)],
                LATENCY.filled(),
            )
        }))?
        .label("p99 of all calls")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], LATENCY.filled()));
    chart
        .draw_series(reports.iter().enumerate().map(|(i, s)| {
            let x = i as f64;
            Rectangle::new([(x + 0.02, 0.0), (x + 0.3, gap(s))], FAILED.filled())
        }))?
        .label("longest time without a success (worst run)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], FAILED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

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
                let mut label =
                    format!("{} ({}+{})", s.scenario.name, s.scenario.sellers, s.scenario.buyers);
                if s.condition != Condition::None {
                    label = format!("{label}, {}", s.condition);
                }
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
