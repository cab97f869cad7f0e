//! Turns the results `cargo bench -p agora-experiments` leaves in `target/criterion` into
//! the tables and charts of docs/experiments.md: for each benchmark the median time of
//! one operation and the median absolute deviation of the samples (the spread), as a
//! Markdown table per experiment and an SVG chart per experiment (plotters' SVG backend
//! only, as in `crates/bench/src/plot.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;
use serde::Deserialize;

/// One benchmark's result.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The experiment (criterion's group), e.g. `counters`.
    pub group: String,
    /// The variant measured, e.g. `relaxed atomic`.
    pub variant: String,
    /// Its parameter, e.g. `8` threads, if any.
    pub param: Option<String>,
    /// Median time of one operation, ns.
    pub median_ns: f64,
    /// Median absolute deviation of the samples' per-operation times, ns.
    pub mad_ns: f64,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: Estimate,
    median_abs_dev: Estimate,
}

/// Every result under `dir` (criterion's output directory), in the order the benchmark
/// ran them within each group (criterion keeps no order, so: the order of [`ORDER`]).
pub fn load(dir: &Path) -> anyhow::Result<Vec<Measured>> {
    let mut found = Vec::new();
    collect(dir, &mut found)?;
    let mut all = Vec::new();
    for new in found {
        let read = |name: &str| -> anyhow::Result<String> {
            let path = new.join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let bench: BenchmarkJson = serde_json::from_str(&read("benchmark.json")?)
            .with_context(|| format!("{}: not a criterion benchmark.json", new.display()))?;
        let est: EstimatesJson = serde_json::from_str(&read("estimates.json")?)
            .with_context(|| format!("{}: not a criterion estimates.json", new.display()))?;
        all.push(Measured {
            group: bench.group_id,
            variant: bench.function_id.unwrap_or_default(),
            param: bench.value_str,
            median_ns: est.median.point_estimate,
            mad_ns: est.median_abs_dev.point_estimate,
        });
    }
    let variant_rank = |m: &Measured| {
        let order = variant_order(&m.group);
        order.iter().position(|x| *x == m.variant).unwrap_or(order.len())
    };
    all.sort_by_key(|m| {
        (rank(&m.group), m.group.clone(), param_key(m), variant_rank(m), m.variant.clone())
    });
    Ok(all)
}

/// The experiments, in the order of docs/experiments.md.
pub const ORDER: [&str; 6] = [
    "counters",
    "sessions-frontend",
    "sessions-customer-db",
    "disk-lines",
    "disk-fsync",
    "handoff",
];

/// The variants of `group`, in the order its module lists them.
fn variant_order(group: &str) -> Vec<&'static str> {
    use crate::{counters, disk, handoff, sessions};
    match group {
        "counters" => counters::Counter::ALL.map(|c| c.name()).to_vec(),
        "sessions-frontend" => sessions::FrontendTable::ALL.map(|c| c.name()).to_vec(),
        "sessions-customer-db" => sessions::DbTable::ALL.map(|c| c.name()).to_vec(),
        "disk-lines" => disk::Lines::ALL.map(|c| c.name()).to_vec(),
        "disk-fsync" => disk::Fsync::ALL.map(|c| c.name()).to_vec(),
        "handoff" => handoff::Handoff::ALL.map(|c| c.name()).to_vec(),
        _ => Vec::new(),
    }
}

fn rank(group: &str) -> usize {
    ORDER.iter().position(|g| *g == group).unwrap_or(ORDER.len())
}

/// Sorts parameters by the numbers in them (keys, then threads), not as text.
fn param_key(m: &Measured) -> Vec<u64> {
    m.param
        .as_deref()
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Finds every `new` directory holding a `benchmark.json` under `dir`.
fn collect(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") && path.join("benchmark.json").is_file() {
            found.push(path);
        } else {
            collect(&path, found)?;
        }
    }
    Ok(())
}

/// A time in the unit that suits it.
pub fn time(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// "median ± spread %".
fn cell(m: &Measured) -> String {
    let spread = if m.median_ns > 0.0 { 100.0 * m.mad_ns / m.median_ns } else { 0.0 };
    format!("{} ± {spread:.0} %", time(m.median_ns))
}

/// The Markdown table of one experiment: a row per variant, a column per parameter (or
/// one column when there are none).
pub fn table(results: &[&Measured]) -> String {
    let mut params: Vec<Option<String>> = Vec::new();
    let mut variants: Vec<&str> = Vec::new();
    for m in results {
        if !params.contains(&m.param) {
            params.push(m.param.clone());
        }
        if !variants.contains(&m.variant.as_str()) {
            variants.push(&m.variant);
        }
    }
    let mut out = String::from("| |");
    for p in &params {
        out += &format!(" {} |", p.as_deref().unwrap_or("per operation"));
    }
    out += "\n|---|";
    out += &"---:|".repeat(params.len());
    out += "\n";
    for v in variants {
        // Escaped so that Markdown shows `Mutex<HashMap>` rather than taking it for a tag.
        out += &format!("| {} |", v.replace('|', "\\|").replace('<', "\\<"));
        for p in &params {
            match results.iter().find(|m| m.variant == v && m.param == *p) {
                Some(m) => out += &format!(" {} |", cell(m)),
                None => out += " |",
            }
        }
        out += "\n";
    }
    out
}

/// Every experiment's table, under its name.
pub fn tables(all: &[Measured]) -> String {
    let mut out = String::new();
    for (group, results) in by_group(all) {
        out += &format!("{group}: median time per operation ± median absolute deviation\n\n");
        out += &table(&results);
        out += "\n";
    }
    out
}

fn by_group(all: &[Measured]) -> Vec<(String, Vec<&Measured>)> {
    let mut groups: BTreeMap<(usize, String), Vec<&Measured>> = BTreeMap::new();
    for m in all {
        groups.entry((rank(&m.group), m.group.clone())).or_default().push(m);
    }
    groups.into_iter().map(|((_, g), r)| (g, r)).collect()
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
];

/// Draws one chart per experiment into `dir` as `<experiment>.svg`; returns the files.
pub fn charts(all: &[Measured], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (group, results) in by_group(all) {
        let path = dir.join(format!("{group}.svg"));
        chart(&group, &results, &path)
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Horizontal bars on a log scale, one per benchmark, grouped by parameter and coloured
/// by variant; a whisker spans the median ± the median absolute deviation.
fn chart(group: &str, results: &[&Measured], path: &Path) -> DrawResult {
    let mut variants: Vec<&str> = Vec::new();
    for m in results {
        if !variants.contains(&m.variant.as_str()) {
            variants.push(&m.variant);
        }
    }
    let colour = |v: &str| {
        let i = variants.iter().position(|x| *x == v).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    // Top to bottom in table order.
    let rows: Vec<&Measured> = results.iter().rev().copied().collect();
    let n = rows.len();
    let low = rows.iter().map(|m| m.median_ns).fold(f64::MAX, f64::min).max(0.1);
    let high = rows.iter().map(|m| m.median_ns + m.mad_ns).fold(1.0_f64, f64::max);
    // Room on the right for the figures, and for the legend when there is one.
    let legend = results.iter().any(|m| m.param.is_some());
    let (lo, hi) = (low / 3.0, high * if legend { 20.0 } else { 6.0 });

    let height = 130 + 26 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{group}: time per operation (median, log scale)"), ("sans-serif", 20))
        .margin(15)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(230)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5_f64..n as f64 - 0.5)?;
    let labels: Vec<String> = rows
        .iter()
        .map(|m| match &m.param {
            Some(p) => p.clone(),
            None => m.variant.clone(),
        })
        .collect();
    chart
        .configure_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("time per operation")
        .x_label_formatter(&|x| time(*x))
        .disable_y_mesh()
        .draw()?;
    for v in &variants {
        let c = colour(v);
        chart
            .draw_series(rows.iter().enumerate().filter(|(_, m)| m.variant == *v).map(|(i, m)| {
                let y = i as f64;
                Rectangle::new([(lo, y - 0.35), (m.median_ns.max(lo), y + 0.35)], c.filled())
            }))?
            .label(v.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart.draw_series(rows.iter().enumerate().map(|(i, m)| {
        let y = i as f64;
        ErrorBar::new_horizontal(
            y,
            (m.median_ns - m.mad_ns).max(lo),
            m.median_ns.max(lo),
            m.median_ns + m.mad_ns,
            BLACK.stroke_width(1),
            8,
        )
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, m)| {
        Text::new(
            time(m.median_ns),
            ((m.median_ns + m.mad_ns) * 1.15, i as f64 + 0.25),
            ("sans-serif", 13),
        )
    }))?;
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
