//! Clock evidence (H): the kernel's NTP state from `adjtimex`, and its
//! bearing on validity-window failures.
//!
//! IMPLEMENTATION PENDING (helper).

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
