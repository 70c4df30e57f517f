//! Clock evidence (H): the kernel's NTP state from `adjtimex`, and its
//! bearing on validity-window failures.
//!
//! Read only: `adjtimex` with `modes = 0` never changes the clock.

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
    Ok(from_timex(state, &tx))
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
    }
}

impl ClockState {
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
}
