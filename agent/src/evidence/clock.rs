//! Clock evidence (H): the kernel's NTP state from `adjtimex`, and the
//! independent readings that tell how far off the clock really is: the
//! hardware clock (RTC), times the clock cannot be before (files whose
//! dates prove the real time was at least that), and steps of
//! CLOCK_REALTIME against CLOCK_BOOTTIME.
//!
//! An unsynchronized clock (`STA_UNSYNC`) is common on VMs and containers
//! and says only that nobody disciplines it; its maximum error (16 s when
//! the kernel gives up) bounds how far it has drifted. Whether a clock
//! explains a certificate date verdict is the diagnosis's question
//! (`diagnosis::rules::clock`); this module only reads.
//!
//! Read only: `adjtimex` with `modes = 0` never changes the clock.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What `adjtimex(2)` (modes = 0, read only) reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// When it was read.
    pub now: DateTime<Utc>,
    /// `STA_UNSYNC` is clear and the state is not `TIME_ERROR`.
    pub synchronized: bool,
    /// Set status bits by name, e.g. ["STA_UNSYNC", "STA_PLL"].
    pub status: Vec<String>,
    /// Maximum error, microseconds.
    pub max_error_us: i64,
    /// Estimated error, microseconds.
    pub est_error_us: i64,
    /// Current offset, microseconds.
    pub offset_us: i64,
    /// The hardware clock (RTC) at the same moment, when it is readable and
    /// kept in UTC: an independent reading of the time. Absent on most VMs
    /// and containers, and when /etc/adjtime says the RTC keeps local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtc: Option<DateTime<Utc>>,
    /// Times the real time is known to be past: the modification time of
    /// the OS release file and of the agent's own binary. A clock that reads
    /// earlier than one of them is behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floors: Vec<TimeFloor>,
    /// CLOCK_REALTIME − CLOCK_BOOTTIME: the wall-clock time of this boot by
    /// this clock. It moves (by the step) when the clock is stepped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_wall: Option<DateTime<Utc>>,
    /// A step of the clock since it was first observed this boot (see
    /// [`StepWatch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<ClockStep>,
}

/// A time the real time is known to be past, and what proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFloor {
    pub time: DateTime<Utc>,
    /// e.g. "the modification time of /usr/lib/os-release".
    pub source: String,
}

/// A step of CLOCK_REALTIME against CLOCK_BOOTTIME.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStep {
    /// Seconds the clock moved, positive forward.
    pub seconds: i64,
    /// When the clock was first observed (the step happened since).
    pub since: DateTime<Utc>,
}

/// Steps smaller than this are slewing and rounding, not a step.
pub const MIN_STEP_SECONDS: i64 = 5;

/// Remembers the boot's wall-clock time as first observed (in this process
/// or, through [`StepWatch::with_baseline`], by an earlier agent run of the
/// same boot) and reports how far the clock has been stepped since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepWatch {
    /// `/proc/sys/kernel/random/boot_id` of the baseline.
    pub boot_id: Option<String>,
    /// The boot's wall time when first observed.
    pub boot_wall: Option<DateTime<Utc>>,
    /// When that was.
    pub observed: Option<DateTime<Utc>>,
}

impl StepWatch {
    /// A watch that starts from a baseline saved earlier (ignored when it
    /// belongs to another boot).
    pub fn with_baseline(saved: StepWatch) -> StepWatch {
        if saved.boot_id.is_some() && saved.boot_id == boot_id() {
            saved
        } else {
            StepWatch::default()
        }
    }

    /// Fills `state.step` from the baseline, taking `state` as the baseline
    /// when there is none yet.
    pub fn observe(&mut self, state: &mut ClockState) {
        let Some(now_boot) = state.boot_wall else {
            return;
        };
        match self.boot_wall {
            None => {
                self.boot_id = boot_id();
                self.boot_wall = Some(now_boot);
                self.observed = Some(state.now);
            }
            Some(first) => {
                let seconds = (now_boot - first).num_seconds();
                if seconds.abs() >= MIN_STEP_SECONDS {
                    state.step = Some(ClockStep {
                        seconds,
                        since: self.observed.unwrap_or(state.now),
                    });
                }
            }
        }
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("adjtimex failed")]
    Adjtimex(#[source] std::io::Error),
}

/// The kernel status bits (include/uapi/linux/timex.h), in bit order.
const STATUS_BITS: [(libc::c_int, &str); 16] = [
    (libc::STA_PLL, "STA_PLL"),
    (libc::STA_PPSFREQ, "STA_PPSFREQ"),
    (libc::STA_PPSTIME, "STA_PPSTIME"),
    (libc::STA_FLL, "STA_FLL"),
    (libc::STA_INS, "STA_INS"),
    (libc::STA_DEL, "STA_DEL"),
    (libc::STA_UNSYNC, "STA_UNSYNC"),
    (libc::STA_FREQHOLD, "STA_FREQHOLD"),
    (libc::STA_PPSSIGNAL, "STA_PPSSIGNAL"),
    (libc::STA_PPSJITTER, "STA_PPSJITTER"),
    (libc::STA_PPSWANDER, "STA_PPSWANDER"),
    (libc::STA_PPSERROR, "STA_PPSERROR"),
    (libc::STA_CLOCKERR, "STA_CLOCKERR"),
    (libc::STA_NANO, "STA_NANO"),
    (libc::STA_MODE, "STA_MODE"),
    (libc::STA_CLK, "STA_CLK"),
];

/// Names of the set bits of an `adjtimex` status word; unknown bits as
/// `0x...`.
pub fn status_names(status: i32) -> Vec<String> {
    let mut names = Vec::new();
    let mut known = 0;
    for (bit, name) in STATUS_BITS {
        known |= bit;
        if status & bit != 0 {
            names.push(name.to_string());
        }
    }
    let unknown = status & !known;
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    names
}

/// Reads the kernel's clock discipline state.
pub fn read() -> Result<ClockState, ClockError> {
    // SAFETY: timex is plain data; all-zero is a valid value and means
    // modes = 0, i.e. read only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return Err(ClockError::Adjtimex(std::io::Error::last_os_error()));
    }
    let mut clock = from_timex(state, &tx);
    clock.rtc = read_rtc(Path::new(RTC_SINCE_EPOCH), Path::new(ADJTIME));
    clock.floors = read_floors();
    clock.boot_wall = boot_wall();
    Ok(clock)
}

const RTC_SINCE_EPOCH: &str = "/sys/class/rtc/rtc0/since_epoch";
const ADJTIME: &str = "/etc/adjtime";
/// Files whose modification time the real time is past: the OS release
/// (its package's build date), then the agent's binary.
const FLOOR_FILES: [&str; 2] = ["/usr/lib/os-release", "/etc/os-release"];

/// The RTC's reading, unless /etc/adjtime says it keeps local time (its
/// "seconds since the epoch" are then off by the time zone).
fn read_rtc(since_epoch: &Path, adjtime: &Path) -> Option<DateTime<Utc>> {
    let local = std::fs::read_to_string(adjtime)
        .ok()
        .and_then(|text| text.lines().nth(2).map(|l| l.trim() == "LOCAL"))
        .unwrap_or(false);
    if local {
        return None;
    }
    let secs: i64 = std::fs::read_to_string(since_epoch)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(secs, 0)
}

fn read_floors() -> Vec<TimeFloor> {
    let mut floors = Vec::new();
    if let Some(floor) = FLOOR_FILES.iter().find_map(|f| file_floor(Path::new(f))) {
        floors.push(floor);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(mut floor) = file_floor(&exe)
    {
        floor.source = format!(
            "the agent's binary {} (built or installed then)",
            exe.display()
        );
        floors.push(floor);
    }
    floors
}

fn file_floor(path: &Path) -> Option<TimeFloor> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(TimeFloor {
        time: DateTime::<Utc>::from(modified),
        source: format!("the modification time of {}", path.display()),
    })
}

/// CLOCK_REALTIME − CLOCK_BOOTTIME, read back to back.
fn boot_wall() -> Option<DateTime<Utc>> {
    let read = |id| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid clock id and an exclusively borrowed timespec.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        (rc == 0).then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
    };
    let real = read(libc::CLOCK_REALTIME)?;
    let boot = read(libc::CLOCK_BOOTTIME)?;
    let ns = real - boot;
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(secs, nanos)
}

/// Builds the state from `adjtimex`'s return value and the filled timex.
fn from_timex(state: libc::c_int, tx: &libc::timex) -> ClockState {
    let nano = tx.status & libc::STA_NANO != 0;
    // With STA_NANO the offset and the time's sub-second part are in ns.
    let (offset_us, sub_ns) = if nano {
        (tx.offset / 1000, tx.time.tv_usec)
    } else {
        (tx.offset, tx.time.tv_usec.saturating_mul(1000))
    };
    let now = u32::try_from(sub_ns)
        .ok()
        .and_then(|ns| DateTime::from_timestamp(tx.time.tv_sec, ns))
        .unwrap_or_else(Utc::now);
    ClockState {
        now,
        synchronized: tx.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR,
        status: status_names(tx.status),
        max_error_us: tx.maxerror,
        est_error_us: tx.esterror,
        offset_us,
        rtc: None,
        floors: Vec::new(),
        boot_wall: None,
        step: None,
    }
}

impl ClockState {
    /// A state read at `now` with nothing but adjtimex's view (tests,
    /// fixtures).
    pub fn adjtimex_only(now: DateTime<Utc>, synchronized: bool, max_error_us: i64) -> ClockState {
        ClockState {
            now,
            synchronized,
            status: if synchronized {
                vec!["STA_PLL".to_string()]
            } else {
                vec!["STA_UNSYNC".to_string()]
            },
            max_error_us,
            est_error_us: max_error_us,
            offset_us: 0,
            rtc: None,
            floors: Vec::new(),
            boot_wall: None,
            step: None,
        }
    }

    /// How far this clock is ahead of the RTC, in seconds (negative:
    /// behind). The RTC has a one-second resolution.
    pub fn ahead_of_rtc(&self) -> Option<i64> {
        self.rtc.map(|rtc| (self.now - rtc).num_seconds())
    }

    /// The latest floor the clock reads earlier than, and by how many
    /// seconds: the clock is behind by at least that much.
    pub fn behind_floor(&self) -> Option<(&TimeFloor, i64)> {
        self.floors
            .iter()
            .filter(|f| f.time > self.now)
            .max_by_key(|f| f.time)
            .map(|f| (f, (f.time - self.now).num_seconds()))
    }

    /// One line for evidence, e.g. "clock not synchronized (STA_UNSYNC),
    /// max error 16000000 µs".
    pub fn describe(&self) -> String {
        let has = |bit: &str| self.status.iter().any(|s| s == bit);
        if self.synchronized {
            let how = if has("STA_PLL") {
                " (STA_PLL)"
            } else if has("STA_FLL") {
                " (STA_FLL)"
            } else {
                ""
            };
            format!(
                "clock synchronized{how}, offset {} µs, estimated error {} µs, max error {} µs",
                self.offset_us, self.est_error_us, self.max_error_us
            )
        } else if has("STA_UNSYNC") {
            format!(
                "clock not synchronized (STA_UNSYNC), max error {} µs",
                self.max_error_us
            )
        } else {
            // synchronized is false without STA_UNSYNC only for TIME_ERROR
            // (e.g. STA_CLOCKERR, or PPS trouble).
            format!(
                "clock not synchronized (adjtimex state TIME_ERROR, status {}), max error {} µs",
                self.status.join("|"),
                self.max_error_us
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_are_named() {
        assert!(status_names(0).is_empty());
        assert_eq!(status_names(0x0041), ["STA_PLL", "STA_UNSYNC"]);
        assert_eq!(status_names(0x2001), ["STA_PLL", "STA_NANO"]);
        assert_eq!(status_names(0x8000), ["STA_CLK"]);
        assert_eq!(status_names(0x1_0040), ["STA_UNSYNC", "0x10000"]);
        assert_eq!(status_names(0xffff).len(), 16);
    }

    fn timex(status: i32, offset: i64, usec: i64) -> libc::timex {
        // SAFETY: plain data, all-zero is valid.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.status = status;
        tx.offset = offset;
        tx.maxerror = 16_000_000;
        tx.esterror = 16_000_000;
        tx.time.tv_sec = 1_764_381_197;
        tx.time.tv_usec = usec;
        tx
    }

    #[test]
    fn units_follow_sta_nano() {
        let s = from_timex(
            libc::TIME_OK,
            &timex(libc::STA_PLL | libc::STA_NANO, 2_500_000, 123_456_789),
        );
        assert!(s.synchronized);
        assert_eq!(s.offset_us, 2_500);
        assert_eq!(s.now.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(s.now.timestamp(), 1_764_381_197);
        assert_eq!(
            s.describe(),
            "clock synchronized (STA_PLL), offset 2500 µs, estimated error 16000000 µs, max error 16000000 µs"
        );
        let s = from_timex(libc::TIME_OK, &timex(libc::STA_PLL, -42, 123_456));
        assert_eq!(s.offset_us, -42);
        assert_eq!(s.now.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn unsync_and_time_error_are_not_synchronized() {
        let s = from_timex(libc::TIME_ERROR, &timex(libc::STA_UNSYNC, 0, 0));
        assert!(!s.synchronized);
        assert_eq!(
            s.describe(),
            "clock not synchronized (STA_UNSYNC), max error 16000000 µs"
        );
        let s = from_timex(
            libc::TIME_ERROR,
            &timex(libc::STA_PLL | libc::STA_CLOCKERR, 0, 0),
        );
        assert!(!s.synchronized);
        assert!(s.describe().contains("TIME_ERROR"), "{}", s.describe());
        // A garbage sub-second value falls back to the wall clock.
        let s = from_timex(libc::TIME_OK, &timex(0, 0, -5));
        assert!((Utc::now() - s.now).num_seconds().abs() < 5);
    }

    #[test]
    fn read_reports_a_consistent_state() {
        // This machine's clock may or may not be synchronized: check only
        // that what read() says hangs together.
        let s = read().unwrap();
        assert!((Utc::now() - s.now).num_seconds().abs() < 5, "{s:?}");
        let unsync = s.status.iter().any(|b| b == "STA_UNSYNC");
        if unsync {
            assert!(!s.synchronized);
        }
        assert!(s.max_error_us >= 0 && s.est_error_us >= 0, "{s:?}");
        assert!(s.status.iter().all(|b| b.starts_with("STA_")), "{s:?}");
        let text = s.describe();
        assert_eq!(text.contains("not synchronized"), !s.synchronized, "{text}");
    }

    #[test]
    fn the_rtc_is_read_only_when_it_keeps_utc() {
        let dir = std::env::temp_dir().join(format!("tlsdoctor-rtc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rtc = dir.join("since_epoch");
        let adjtime = dir.join("adjtime");
        std::fs::write(&rtc, "1764381197\n").unwrap();
        assert_eq!(
            read_rtc(&rtc, &adjtime).map(|t| t.timestamp()),
            Some(1_764_381_197)
        );
        std::fs::write(&adjtime, "0.0 0 0.0\n0\nUTC\n").unwrap();
        assert!(read_rtc(&rtc, &adjtime).is_some());
        std::fs::write(&adjtime, "0.0 0 0.0\n0\nLOCAL\n").unwrap();
        assert_eq!(read_rtc(&rtc, &adjtime), None);
        std::fs::write(&rtc, "garbage").unwrap();
        std::fs::remove_file(&adjtime).unwrap();
        assert_eq!(read_rtc(&rtc, &adjtime), None);
        assert_eq!(read_rtc(&dir.join("missing"), &adjtime), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn offsets_against_the_rtc_and_the_floors() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut s = ClockState::adjtimex_only(now, false, 16_000_000);
        assert_eq!(s.ahead_of_rtc(), None);
        assert!(s.behind_floor().is_none());
        s.rtc = Some(now - chrono::Duration::days(2));
        assert_eq!(s.ahead_of_rtc(), Some(2 * 86_400));
        s.floors = vec![
            TimeFloor {
                time: now - chrono::Duration::days(400),
                source: "os-release".into(),
            },
            TimeFloor {
                time: now + chrono::Duration::hours(3),
                source: "binary".into(),
            },
        ];
        let (floor, behind) = s.behind_floor().unwrap();
        assert_eq!(floor.source, "binary");
        assert_eq!(behind, 3 * 3600);
    }

    #[test]
    fn a_step_is_measured_against_the_first_observation_of_this_boot() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let boot = now - chrono::Duration::hours(5);
        let mut watch = StepWatch::default();
        let mut first = ClockState::adjtimex_only(now, true, 1000);
        first.boot_wall = Some(boot);
        watch.observe(&mut first);
        assert_eq!(first.step, None);
        // Slewing by a second is no step.
        let mut later = first.clone();
        later.boot_wall = Some(boot + chrono::Duration::seconds(1));
        watch.observe(&mut later);
        assert_eq!(later.step, None);
        // Set three days ahead.
        let mut stepped = first.clone();
        stepped.boot_wall = Some(boot + chrono::Duration::days(3));
        watch.observe(&mut stepped);
        assert_eq!(
            stepped.step,
            Some(ClockStep {
                seconds: 3 * 86_400,
                since: now
            })
        );
        // A baseline of another boot is dropped.
        let other = StepWatch {
            boot_id: Some("not-this-boot".into()),
            boot_wall: Some(boot),
            observed: Some(now),
        };
        assert_eq!(StepWatch::with_baseline(other), StepWatch::default());
        let same = StepWatch {
            boot_id: boot_id(),
            boot_wall: Some(boot),
            observed: Some(now),
        };
        assert_eq!(StepWatch::with_baseline(same.clone()), same);
    }

    #[test]
    fn read_fills_the_boot_wall_time_and_floors() {
        let s = read().unwrap();
        let boot = s.boot_wall.expect("CLOCK_BOOTTIME is readable");
        assert!(boot <= s.now, "{s:?}");
        assert!(!s.floors.is_empty(), "{s:?}");
    }
}
