//! CPU pinning for benchmarks: Envoy on CPUs of its own, the load generator, the upstream and
//! host-shim on the others, so that the plugins' cost is not mixed with the load generator's
//! scheduling (on a 2-core machine the method's noise was as large as the effect measured).
//!
//! Pinning uses util-linux's `taskset`, which sets the affinity of every thread of a process.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// A CPU list as `taskset -c` reads it (`1`, `0,2`, `2-3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// Parses `1`, `0,2` or `2-3`; refuses CPUs this machine does not have.
    pub fn parse(text: &str, cpus_online: usize) -> Result<Self> {
        let mut cpus = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let first: usize = first
                .parse()
                .with_context(|| format!("CPU list `{text}`: `{part}` is not a CPU number"))?;
            let last: usize = last
                .parse()
                .with_context(|| format!("CPU list `{text}`: `{part}` is not a CPU range"))?;
            if first > last || last >= cpus_online {
                bail!(
                    "CPU list `{text}`: `{part}` is not within CPUs 0-{}",
                    cpus_online.saturating_sub(1)
                );
            }
            cpus.extend(first..=last);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(Self(cpus))
    }

    /// The CPUs of this machine not in the list; an error when none is left.
    pub fn complement(&self, cpus_online: usize) -> Result<Self> {
        let rest: Vec<usize> = (0..cpus_online).filter(|c| !self.0.contains(c)).collect();
        if rest.is_empty() {
            bail!("pinning Envoy to every CPU leaves none for the load generator");
        }
        Ok(Self(rest))
    }

    /// The list as `taskset -c` takes it.
    pub fn to_taskset(&self) -> String {
        self.0
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Pins every thread of process `pid` to these CPUs (threads it starts later inherit it).
    pub fn pin(&self, pid: u32) -> Result<()> {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", &self.to_taskset(), &pid.to_string()])
            .output()
            .context("running taskset (util-linux)")?;
        if !out.status.success() {
            bail!(
                "taskset could not pin process {pid} to CPUs {}: {}",
                self.to_taskset(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The number of CPUs online, whatever this process's affinity (`/proc/cpuinfo`).
pub fn online() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_parse_and_their_complement_is_the_rest() {
        let l = CpuList::parse("1,3-4", 6).unwrap();
        assert_eq!(l.to_taskset(), "1,3,4");
        assert_eq!(l.complement(6).unwrap().to_taskset(), "0,2,5");
    }

    #[test]
    fn cpus_the_machine_lacks_and_garbage_are_refused() {
        for bad in ["2", "0-9", "x", "1-", "3-1", ""] {
            assert!(CpuList::parse(bad, 2).is_err(), "{bad} accepted");
        }
        let all = CpuList::parse("0-1", 2).unwrap();
        assert!(all.complement(2).is_err());
    }

    #[test]
    fn a_pinned_process_runs_on_the_cpus_given() {
        let cpu = CpuList::parse("0", online()).unwrap();
        // Pin a child, not the test runner (other tests share its threads).
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let pinned = cpu.pin(child.id());
        let shown = Command::new("taskset")
            .args(["-p", &child.id().to_string()])
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        pinned.unwrap();
        // `pid N's current affinity mask: 1` (CPU 0 only).
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.trim().ends_with("mask: 1"), "{shown}");
    }
}
