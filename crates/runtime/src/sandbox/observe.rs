//! What runs inside a runtime, read from `/proc` for every process in its cgroup, so a
//! supervisor tick can hand it to the policy's runtime detectors.

use std::path::{Path, PathBuf};

use super::cgroup::driver_for;
use super::KernelCgroup;

/// One process in a runtime, as `/proc` showed it at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    /// The pid in the host's pid namespace.
    pub pid: i32,
    /// The executable (`/proc/<pid>/exe`); `None` for kernel threads or when unreadable.
    pub exe: Option<PathBuf>,
    /// The command line, one argument per item.
    pub cmdline: Vec<String>,
    /// User plus system CPU time used so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory (`VmRSS`).
    pub rss_bytes: u64,
    /// The real uid on the host.
    pub uid: Option<u32>,
}

/// The processes in `cgroup` now; a process that ends while it is read is left out.
pub fn list_processes(cgroup: &KernelCgroup) -> Vec<ProcessInfo> {
    driver_for(cgroup.version, Path::new("/"))
        .pids(cgroup)
        .into_iter()
        .filter_map(read_process)
        .collect()
}

fn read_process(pid: i32) -> Option<ProcessInfo> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from field 3 after the command name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let status_field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let cmdline = std::fs::read(dir.join("cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    Some(ProcessInfo {
        pid,
        exe: std::fs::read_link(dir.join("exe")).ok(),
        cmdline,
        cpu_seconds: ticks as f64 / clock_ticks_per_second() as f64,
        rss_bytes: status_field("VmRSS:").unwrap_or(0) * 1024,
        uid: status_field("Uid:").map(|uid| uid as u32),
    })
}

fn clock_ticks_per_second() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100)
}
