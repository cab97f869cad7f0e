//! What the figures were measured on: cores, CPU model, memory, kernel, and whether this
//! binary was built with optimisations (a debug build is several times slower).

use serde::Serialize;

/// The machine and the build, as the report records them.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// Physical memory, MiB.
    pub ram_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `release` or `debug`.
    pub build_profile: &'static str,
    /// This agora's version.
    pub agora_version: &'static str,
    /// Load average (1, 5, 15 minutes) when the bench started: other work on the machine.
    pub load_average: Vec<f64>,
}

impl Machine {
    /// Reads what this machine says about itself; unknown fields are empty or 0.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            ram_mib: ram_kib / 1024,
            kernel,
            build_profile: if cfg!(debug_assertions) { "debug" } else { "release" },
            agora_version: env!("CARGO_PKG_VERSION"),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect(),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, {:.1} GiB RAM, Linux {}, {} build, load average {:?} at start",
            self.cores,
            if self.cpu_model.is_empty() { "unknown CPU" } else { &self.cpu_model },
            self.ram_mib as f64 / 1024.0,
            self.kernel,
            self.build_profile,
            self.load_average,
        )
    }
}
