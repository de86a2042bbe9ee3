//! The machine a benchmark ran on — CPU model, cores and the load average at the start and the
//! end of the run — reported beside every figure, because absolute rates move with the machine
//! and with whatever else runs on it; only ratios measured in the same run compare.

use serde::Serialize;

/// CPU model, cores and load of the machine during one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// `model name` of the first processor in `/proc/cpuinfo` ("unknown" elsewhere).
    pub cpu_model: String,
    /// Processors the kernel lists (online cores or hardware threads).
    pub cores: usize,
    /// 1-, 5- and 15-minute load averages when the run started.
    pub load_start: [f64; 3],
    /// The same when the run ended (`None` until [`Machine::finish`]).
    pub load_end: Option<[f64; 3]>,
}

impl Machine {
    /// Reads the CPU model and the current load (the start of a run).
    pub fn start() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = match processors(&cpuinfo) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            listed => listed,
        };
        Self {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            cores,
            load_start: current_load().unwrap_or_default(),
            load_end: None,
        }
    }

    /// Records the load at the end of the run.
    pub fn finish(&mut self) {
        self.load_end = current_load();
    }

    /// One line for text reports: `AMD EPYC 7B13, 2 cores, load 1.20 → 3.40`.
    pub fn describe(&self) -> String {
        let end = self
            .load_end
            .map_or_else(|| "?".to_owned(), |load| format!("{:.2}", load[0]));
        format!(
            "{}, {} cores, load average (1 min) {:.2} at start → {end} at end",
            self.cpu_model, self.cores, self.load_start[0]
        )
    }
}

/// `model name` of the first processor listed in the text of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Processors listed in the text of `/proc/cpuinfo`.
pub fn processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(key, _)| key.trim() == "processor")
        })
        .count()
}

/// The three load averages of the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

fn current_load() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
        flags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";

    #[test]
    fn model_and_processors_from_cpuinfo() {
        assert_eq!(cpu_model(CPUINFO).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(processors(CPUINFO), 2);
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn load_averages_from_loadavg() {
        assert_eq!(
            parse_loadavg("2.18 1.21 0.50 3/412 1234\n"),
            Some([2.18, 1.21, 0.50])
        );
        assert_eq!(parse_loadavg("2.18 x"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn this_machine_is_described() {
        let mut machine = Machine::start();
        assert!(machine.cores >= 1);
        machine.finish();
        assert!(machine.describe().contains("cores"));
    }
}
