//! CPU time and memory from `/proc` (Linux). Every reader returns `None` where the file is missing
//! or unreadable (another OS, a process that has exited), so a report can say `null` instead of
//! failing.

/// Busy CPU time of the whole machine so far, in seconds, from the first line of `/proc/stat`:
/// everything but idle and iowait.
pub fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy as f64 / 100.0)
}

/// CPU time (user + system, all threads) a process has used so far, in seconds, from
/// `/proc/PID/stat` (`None` for this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ, the unit of these fields, is 100 on every Linux ABI that matters here.
    Some((utime + stime) as f64 / 100.0)
}

/// Resident set size of a process, in KiB (the `VmRSS` line of `/proc/PID/status`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// This process's soft limit on open file descriptors (`Max open files` in `/proc/self/limits`;
/// `None` if unreadable, `Some(u64::MAX)` if unlimited).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match line.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(cpu_seconds(None).is_some());
        assert!(machine_cpu_seconds().is_some());
        assert!(rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
