//! Reading a process's CPU time and peak memory from `/proc` (Linux).

use std::time::Duration;

/// Clock ticks per second used by `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time consumed so far by `pid`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| Duration::from_millis(t * 1000 / TICKS_PER_SECOND))
}

/// utime + stime from the text of `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident set size of `pid`, in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, "VmHWM:").map(|k| k * 1024)
}

/// A `Name:   1234 kB` line's value.
pub fn parse_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_even_with_odd_command_names() {
        let stat = "1234 (por tc) ullis) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tportcullis\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_kib(status, "VmRSS:"), Some(10240));
    }

    #[test]
    fn reads_this_process() {
        assert!(peak_rss(std::process::id()).unwrap() > 0);
        assert!(cpu_time(std::process::id()).is_some());
    }
}
