//! Prints the tables of docs/experiments.md from the results of the last
//! `cargo bench -p agora-experiments`, and draws its charts.
//!
//! Usage: `experiments-report [CRITERION_DIR] [CHART_DIR]` (defaults: `target/criterion`
//! and `docs/experiments`, from the workspace root).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let results = args.next().map_or_else(|| PathBuf::from("target/criterion"), PathBuf::from);
    let charts = args.next().map_or_else(|| PathBuf::from("docs/experiments"), PathBuf::from);
    let run = || -> anyhow::Result<()> {
        let all = agora_experiments::report::load(&results)?;
        if all.is_empty() {
            anyhow::bail!(
                "no results under {}: run cargo bench -p agora-experiments",
                results.display()
            );
        }
        print!("{}", agora_experiments::report::tables(&all));
        for path in agora_experiments::report::charts(&all, &charts)? {
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("experiments-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}
