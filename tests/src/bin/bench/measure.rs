//! What every phase shares: agent off / on interleaving, the spread over
//! rounds, percentiles, and the agent's CPU and memory from /proc.

use std::fmt;
use std::time::Instant;

use tlsdoctor_tests::agent::Agent;

use crate::Settings;

/// One round's measurement without and with the agent.
pub struct OffOn<T> {
    pub off: T,
    pub on: T,
}

/// `measure` once without the agent and once with it (`Some(agent)`), for
/// `s.rounds` rounds. The order alternates (off, on | on, off | ...) so that
/// a drift of the machine over the run does not land on one side. The agent
/// runs with `agent_args` and is started once per round.
pub fn off_on<T>(
    s: &Settings,
    agent_args: &[&str],
    mut measure: impl FnMut(Option<&Agent>) -> T,
) -> Vec<OffOn<T>> {
    let mut rounds = Vec::new();
    for round in 0..s.rounds {
        let on_first = round % 2 == 1;
        let mut off = None;
        if !on_first {
            off = Some(measure(None));
        }
        let agent = Agent::start(agent_args);
        let on = measure(Some(&agent));
        agent.stop();
        let off = match off {
            Some(off) => off,
            None => measure(None),
        };
        rounds.push(OffOn { off, on });
    }
    rounds
}

/// Median and range of one figure over the rounds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    /// `median (min–max)` with `decimals` digits.
    pub fn fmt(&self, decimals: usize) -> String {
        if self.n <= 1 {
            return format!("{:.*}", decimals, self.median);
        }
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals, self.median, decimals, self.min, decimals, self.max
        )
    }

    /// As [`Spread::fmt`] with a sign on each figure (differences).
    pub fn fmt_signed(&self, decimals: usize) -> String {
        if self.n <= 1 {
            return format!("{:+.*}", decimals, self.median);
        }
        format!(
            "{:+.*} ({:+.*} … {:+.*})",
            decimals, self.median, decimals, self.min, decimals, self.max
        )
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Spread::fmt(self, 3))
    }
}

/// The `p` quantile (0..=1) of sorted `values`; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time (user + system, all threads, exited ones included) of `pid`,
/// ns: the process's CPU-time clock (ns resolution), else /proc/PID/stat
/// (clock ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: out-pointers to locals of the right types.
    let precise = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut ts) == 0
    };
    if precise {
        return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .map(|ticks| ticks * 1_000_000_000 / hz)
        .unwrap_or(0)
}

/// The agent's CPU over a stretch of time, as a share of one core. `None`
/// agent: nothing to measure (the agent-off side of a round).
pub struct CpuMeter {
    pid: Option<u32>,
    cpu0: u64,
    t0: Instant,
}

impl CpuMeter {
    pub fn start(agent: Option<&Agent>) -> CpuMeter {
        let pid = agent.map(Agent::pid);
        CpuMeter {
            pid,
            cpu0: pid.map(cpu_ns).unwrap_or(0),
            t0: Instant::now(),
        }
    }

    /// (CPU ns used since start, % of one core); `None` without an agent.
    pub fn stop(&self) -> Option<(u64, f64)> {
        let pid = self.pid?;
        let used = cpu_ns(pid).saturating_sub(self.cpu0);
        let wall = self.t0.elapsed().as_nanos().max(1) as f64;
        Some((used, used as f64 / wall * 100.0))
    }
}

/// A `/proc/PID/status` value in KiB (`VmRSS:`, `VmHWM:`), 0 if unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The agent CPU shares of the on-side of rounds, `median (min–max) %`.
pub fn agent_share(shares: impl IntoIterator<Item = f64>) -> String {
    format!("{} %", Spread::of(shares).fmt(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of([1.0, 4.0]).median, 2.5);
        assert_eq!(Spread::of([f64::NAN]).n, 0);
    }

    #[test]
    fn cpu_clock_of_this_process_moves() {
        let pid = std::process::id();
        let a = cpu_ns(pid);
        let t = Instant::now();
        while t.elapsed().as_millis() < 20 {}
        assert!(cpu_ns(pid) > a);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
