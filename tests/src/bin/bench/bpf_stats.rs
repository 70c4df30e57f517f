//! Run time and run count of the agent's BPF programs, as the kernel keeps
//! them while BPF statistics are on (`BPF_ENABLE_STATS`, the same switch as
//! `sysctl kernel.bpf_stats_enabled=1`, released when its fd closes).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use aya::programs::loaded_programs;
use aya::sys::{Stats, enable_stats};

/// BPF statistics are kept while this lives.
pub struct StatsOn(#[allow(dead_code)] OwnedFd);

impl StatsOn {
    pub fn enable() -> StatsOn {
        StatsOn(enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS (root, kernel ≥ 5.8)"))
    }
}

/// One program's counters at one moment.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    /// A uprobe or uretprobe (a trap per run), not a tracepoint.
    pub uprobe: bool,
    pub run_ns: u64,
    pub runs: u64,
}

/// The programs `pid` holds open, by program id.
pub type Snapshot = BTreeMap<u32, Program>;

/// `BPF_PROG_TYPE_KPROBE`, the type of uprobe programs (uapi/linux/bpf.h).
const PROG_TYPE_KPROBE: u32 = 2;

/// The BPF programs `pid` holds: id -> program type, from the `prog_id:`
/// and `prog_type:` lines of its fdinfo.
fn program_ids(pid: u32) -> BTreeMap<u32, u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeMap::new();
    };
    let field = |info: &str, key: &str| -> Option<u32> {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| Some((field(&info, "prog_id:")?, field(&info, "prog_type:")?)))
        .collect()
}

pub fn snapshot(pid: u32) -> Snapshot {
    let ids = program_ids(pid);
    loaded_programs()
        .flatten()
        .filter(|p| ids.contains_key(&p.id()))
        .map(|p| {
            (
                p.id(),
                Program {
                    name: p.name_as_str().unwrap_or("?").to_string(),
                    uprobe: ids.get(&p.id()) == Some(&PROG_TYPE_KPROBE),
                    run_ns: p.run_time().as_nanos() as u64,
                    runs: p.run_count(),
                },
            )
        })
        .collect()
}

/// What ran between two snapshots, summed by program name (a name can be
/// loaded more than once, e.g. an entry and a return probe).
pub fn delta(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, Program> {
    let mut out: BTreeMap<String, Program> = BTreeMap::new();
    for (id, a) in after {
        let (ns0, runs0) = before.get(id).map(|b| (b.run_ns, b.runs)).unwrap_or((0, 0));
        let e = out.entry(a.name.clone()).or_insert(Program {
            name: a.name.clone(),
            uprobe: a.uprobe,
            run_ns: 0,
            runs: 0,
        });
        e.run_ns += a.run_ns.saturating_sub(ns0);
        e.runs += a.runs.saturating_sub(runs0);
    }
    out
}
