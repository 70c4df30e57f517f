//! Error-log evidence (H): the server's own SSL lines near a failure's time
//! (nginx logs client handshake errors at `info`, Apache at `ssl:info`),
//! each mapped to the cause it indicates.
//!
//! IMPLEMENTATION PENDING (helper).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::diagnosis::Cause;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub file: String,
    /// 1-based line number in the file.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// "info", "error", "crit", "ssl:info", ...
    pub level: String,
    pub text: String,
    /// Client address:port the line names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The cause this line indicates, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicates: Option<Cause>,
}
