//! This host's figures from `/proc`, and its name: one parser each, for the `hello`
//! inventory and the event stream's host samples alike.
//!
//! The parsers take the files' text, so they are tested on fixed input and never fail:
//! what they cannot read comes back as `None` (or zero, where a partial answer is still
//! useful).

/// The three load averages of `/proc/loadavg`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAverage {
    /// Over 1 minute.
    pub one: f64,
    /// Over 5 minutes.
    pub five: f64,
    /// Over 15 minutes.
    pub fifteen: f64,
}

/// Total and available memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Physical memory.
    pub total_bytes: u64,
    /// Memory available for new work without swapping (`MemAvailable`, or `MemFree` on
    /// kernels before 3.14, which have no `MemAvailable`).
    pub available_bytes: u64,
}

/// A `/proc` file's text; empty when it cannot be read (no `/proc` in a container, or
/// not Linux).
pub fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Load averages from `/proc/loadavg` (`"2.48 2.09 1.71 3/129 9046"`); `None` when not
/// even the first is a number. A missing or garbled later field reads as zero.
pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut fields = text
        .split_whitespace()
        .map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite()));
    let one = fields.next()??;
    let mut next = || fields.next().flatten().unwrap_or(0.0);
    Some(LoadAverage {
        one,
        five: next(),
        fifteen: next(),
    })
}

/// Memory from `/proc/meminfo`; `None` without a readable `MemTotal`.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let value = words.next().and_then(|v| v.parse::<u64>().ok());
        // Values are in kB (KiB, in truth) when a unit is given.
        let scale = if words.next() == Some("kB") { 1024 } else { 1 };
        *slot = value.map(|v| v.saturating_mul(scale));
    }
    Some(Memory {
        total_bytes: total?,
        available_bytes: available.or(free).unwrap_or(0),
    })
}

/// Whole seconds since boot from `/proc/uptime` (`"3020.91 2971.45"`).
pub fn parse_uptime(text: &str) -> Option<u64> {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s as u64)
}

/// The host's CPUs, counted from the `cpuN` lines of `/proc/stat`; at least 1.
pub fn parse_stat_cpus(text: &str) -> u32 {
    let cpus = text
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .and_then(|r| r.split(' ').next())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(cpus).unwrap_or(u32::MAX).max(1)
}

/// This host's name, as the kernel knows it (`gethostname`), else `/etc/hostname`;
/// empty when neither can be read.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| read_proc("/etc/hostname").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg() {
        let l = parse_loadavg("2.48 2.09 1.71 3/129 9046\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (2.48, 2.09, 1.71));
        let l = parse_loadavg("1.5").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (1.5, 0.0, 0.0));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("garbage 1 2"), None);
        assert_eq!(parse_loadavg("nan 1 2"), None);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       24684084 kB\nMemFree:        19055916 kB\nMemAvailable:   23704820 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(Memory {
                total_bytes: 24684084 * 1024,
                available_bytes: 23704820 * 1024
            })
        );
        // An old kernel: no MemAvailable.
        assert_eq!(
            parse_meminfo("MemTotal: 100 kB\nMemFree: 40 kB\n"),
            Some(Memory {
                total_bytes: 100 * 1024,
                available_bytes: 40 * 1024
            })
        );
        assert_eq!(parse_meminfo("MemTotal: lots\n\nnonsense"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn uptime() {
        assert_eq!(parse_uptime("3020.91 2971.45\n"), Some(3020));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("garbage"), None);
        assert_eq!(parse_uptime("-3 1"), None);
    }

    #[test]
    fn stat_cpus() {
        let stat = "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 5\nctxt 6\n";
        assert_eq!(parse_stat_cpus(stat), 2);
        assert_eq!(parse_stat_cpus(""), 1);
    }

    #[test]
    fn this_host() {
        assert!(!hostname().is_empty());
        let memory = parse_meminfo(&read_proc("/proc/meminfo")).unwrap();
        assert!(memory.total_bytes >= memory.available_bytes && memory.available_bytes > 0);
        assert!(parse_loadavg(&read_proc("/proc/loadavg")).is_some());
        assert!(parse_stat_cpus(&read_proc("/proc/stat")) >= 1);
        assert!(parse_uptime(&read_proc("/proc/uptime")).unwrap() > 0);
    }
}
