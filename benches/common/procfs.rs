//! What benches read from Linux's `/proc`: CPU time of a process or a process tree, resident
//! memory, and the TCP connections a process holds to a port.
#![allow(dead_code)] // each bench uses a subset

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

fn ticks(n: u64) -> Duration {
    Duration::from_nanos(n * 1_000_000_000 / ticks_per_second())
}

/// The fields of `/proc/<pid>/stat` a bench needs.
struct Stat {
    ppid: u32,
    /// utime + stime of the process (all its threads).
    own: u64,
    /// cutime + cstime: children it has waited for.
    reaped_children: u64,
}

fn stat(pid: u32) -> anyhow::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain anything, so fields count from the
    // last `)`: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt,
    // cmajflt, utime, stime, cutime, cstime.
    let rest = &text[text.rfind(')').context("malformed stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short stat")?
            .parse()
            .context("stat field")
    };
    Ok(Stat {
        ppid: u32::try_from(field(1)?)?,
        own: field(11)? + field(12)?,
        reaped_children: field(13)? + field(14)?,
    })
}

/// User + system CPU time of one process, all its threads.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    Ok(ticks(stat(pid)?.own))
}

/// User + system CPU time of `root` and every process below it, including descendants that
/// have exited and been reaped (their time moves to their parent's cutime/cstime), so the
/// difference of two readings is what the whole tree used in between.
pub fn tree_cpu(root: u32) -> anyhow::Result<Duration> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut stats = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading.
        if let Ok(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
            stats.insert(pid, s);
        }
    }
    anyhow::ensure!(stats.contains_key(&root), "process {root} is gone");
    let mut total = 0;
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        if let Some(s) = stats.get(&pid) {
            total += s.own + s.reaped_children;
        }
        pending.extend(children.get(&pid).into_iter().flatten());
    }
    Ok(ticks(total))
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    /// VmRSS: resident now, KiB.
    pub rss_kib: u64,
    /// VmHWM: the peak of VmRSS so far, KiB.
    pub hwm_kib: u64,
}

/// VmRSS and VmHWM of `pid`.
pub fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    Ok(Resident {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}

/// ESTABLISHED TCP connections that `pid` holds (as open file descriptors) to `remote_port`:
/// the socket inodes behind `/proc/<pid>/fd`, looked up in `/proc/<pid>/net/tcp` and `tcp6`.
pub fn established_to(pid: u32, remote_port: u16) -> anyhow::Result<usize> {
    let mut inodes = HashSet::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor may close between listing and reading.
        let Ok(target) = fs::read_link(fd?.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        if !Path::new(&path).exists() {
            continue;
        }
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        for line in fs::read_to_string(&path)?.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "01" && port == Some(remote_port) && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// CPU time the whole machine spent busy (all cores; everything in `/proc/stat`'s `cpu` line
/// but idle and iowait), so that what other processes used during a measurement shows.
pub fn machine_busy() -> anyhow::Result<Duration> {
    let text = fs::read_to_string("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().context("/proc/stat field"))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(fields.len() == 8, "short cpu line in /proc/stat");
    let idle = fields[3] + fields[4];
    Ok(ticks(fields.iter().sum::<u64>() - idle))
}
