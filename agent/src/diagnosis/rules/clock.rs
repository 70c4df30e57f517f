//! Whether this host's clock explains a certificate date verdict it
//! reached: the rule behind clock-skew, shared by the failure rules
//! (`validity`), the probe and the host report.
//!
//! An unsynchronized clock is common (VMs and containers run without NTP)
//! and says only that nobody disciplines it; the kernel's maximum error
//! bounds how far it has drifted (16 s when it gives up counting). A
//! certificate that expired three days ago is expired whatever such a
//! clock says. clock-skew needs evidence that the clock is off, in the
//! direction that makes the certificate look bad, by about the gap:
//!
//! - a step of CLOCK_REALTIME against CLOCK_BOOTTIME since the agent first
//!   looked (forward for "expired", backward for "not yet valid");
//! - the hardware clock (RTC) disagreeing, when the system clock is not
//!   synchronized (a synchronized clock is the better of the two);
//! - a clock earlier than a time it is known to be past (the OS release
//!   file's date, the agent's own binary): it is behind, which explains
//!   "not yet valid";
//! - the clock's maximum error covering the gap (seconds, at most).
//!
//! Without one of these, the certificate is what is wrong, and the clock's
//! state is a note in the evidence.

use chrono::TimeDelta;

use crate::diagnosis::{Confidence, Evidence, Source};
use crate::evidence::clock::ClockState;

use super::cite::human_duration;
use super::signals::MAX_TRUSTED_CLOCK_ERROR_US;

/// How a certificate's dates looked by this host's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Past its notAfter: the clock would have to be ahead.
    Expired,
    /// Before its notBefore: the clock would have to be behind.
    NotYetValid,
}

/// The RTC counts whole seconds and drifts; smaller differences are noise.
const RTC_NOISE_SECONDS: i64 = 120;
/// A file's date can be a little ahead of this clock (copied from a machine
/// whose clock runs ahead, a build minutes ago): only a clock this far
/// behind a floor is taken as behind.
const FLOOR_MARGIN_SECONDS: i64 = 3600;
/// With the gap unknown (a TLS 1.3 chain nobody here could read), an offset
/// this large in the right direction is still telling.
const TELLING_OFFSET_SECONDS: i64 = 3600;

/// What the clock readings say about one date verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockJudgement {
    /// The clock is shown (high) or may well be (medium) off by about the
    /// gap, in the direction of the verdict: clock-skew.
    pub explains: Option<Confidence>,
    /// The readings behind the judgement, each compared with the gap.
    pub evidence: Vec<Evidence>,
}

impl ClockJudgement {
    /// The note a date verdict carries when the clock is untrustworthy but
    /// does not explain it: its state, and why that is not enough.
    pub fn note(&self) -> Vec<Evidence> {
        self.evidence.clone()
    }
}

fn seconds(gap: TimeDelta) -> i64 {
    gap.num_seconds().max(0)
}

fn words(s: i64) -> String {
    human_duration(TimeDelta::seconds(s.abs()))
}

/// How well an offset of `offset` seconds in the verdict's direction
/// explains a gap of `gap` seconds (None: unknown).
fn covers(offset: i64, gap: Option<i64>) -> Option<Confidence> {
    match gap {
        Some(gap) if offset >= gap => Some(Confidence::High),
        Some(gap) if offset * 2 >= gap => Some(Confidence::Medium),
        Some(_) => None,
        None if offset >= TELLING_OFFSET_SECONDS => Some(Confidence::Medium),
        None => None,
    }
}

fn gap_words(verdict: Verdict, gap: Option<i64>) -> String {
    match (verdict, gap) {
        (Verdict::Expired, Some(g)) => format!("the certificate expired {} ago", words(g)),
        (Verdict::NotYetValid, Some(g)) => {
            format!("the certificate becomes valid in {}", words(g))
        }
        (Verdict::Expired, None) => "the certificate looks expired".to_string(),
        (Verdict::NotYetValid, None) => "the certificate looks not yet valid".to_string(),
    }
}

/// A clock that cannot vouch for certificate dates on its own:
/// unsynchronized, or with a maximum error of a second or more.
pub fn untrustworthy(clock: &ClockState) -> bool {
    !clock.synchronized || clock.max_error_us >= MAX_TRUSTED_CLOCK_ERROR_US
}

/// Judges whether `clock` explains a `verdict` reached `gap` outside the
/// certificate's window (None when the dates were not seen).
pub fn judge(clock: &ClockState, verdict: Verdict, gap: Option<TimeDelta>) -> ClockJudgement {
    let gap = gap.map(seconds);
    let mut evidence = vec![adjtimex_evidence(clock)];
    let mut best: Option<Confidence> = None;
    let mut take = |c: Option<Confidence>| {
        if c > best {
            best = c;
        }
    };
    let gap_text = gap_words(verdict, gap);

    // A step since the agent first looked: the clock moved by it.
    if let Some(step) = &clock.step {
        let toward = match verdict {
            Verdict::Expired => step.seconds,
            Verdict::NotYetValid => -step.seconds,
        };
        let c = if toward > 0 {
            covers(toward, gap)
        } else {
            None
        };
        take(c);
        evidence.push(Evidence::new(
            Source::Host,
            format!(
                "the clock was stepped {} by {} since {} (CLOCK_REALTIME against CLOCK_BOOTTIME); {gap_text}{}",
                if step.seconds > 0 { "forward" } else { "back" },
                words(step.seconds),
                step.since.format("%Y-%m-%d %H:%M:%S UTC"),
                if c.is_some() { ": the step explains it" } else { "" }
            ),
        ));
    }

    // The RTC, when the system clock is the one in doubt.
    if let Some(ahead) = clock.ahead_of_rtc()
        && ahead.abs() >= RTC_NOISE_SECONDS
    {
        let toward = match verdict {
            Verdict::Expired => ahead,
            Verdict::NotYetValid => -ahead,
        };
        let c = if untrustworthy(clock) && toward > 0 {
            covers(toward, gap)
        } else {
            None
        };
        take(c);
        evidence.push(Evidence::new(
            Source::Host,
            format!(
                "the hardware clock (RTC) reads {}: the system clock is {} {} of it; {gap_text}{}",
                clock
                    .rtc
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                words(ahead),
                if ahead > 0 { "ahead" } else { "behind" },
                if c.is_some() {
                    ": by the RTC it is valid"
                } else {
                    ""
                }
            ),
        ));
    }

    // A clock earlier than a time it is known to be past is behind.
    if let Some((floor, behind)) = clock.behind_floor()
        && behind >= FLOOR_MARGIN_SECONDS
    {
        let c = match verdict {
            // Behind by at least `behind`, maybe more.
            Verdict::NotYetValid => covers(behind, gap).or(Some(Confidence::Medium)),
            Verdict::Expired => None,
        };
        take(c);
        evidence.push(Evidence::new(
            Source::Host,
            format!(
                "the clock reads {} earlier than {} ({}): it is behind by at least that; {gap_text}",
                words(behind),
                floor.source,
                floor.time.format("%Y-%m-%d %H:%M UTC"),
            ),
        ));
    }

    // The clock's own bound on its error.
    let max_error = clock.max_error_us.max(0) / 1_000_000;
    if untrustworthy(clock) {
        match gap {
            Some(g) if g <= max_error => {
                take(Some(Confidence::Medium));
                evidence.push(Evidence::new(
                    Source::Host,
                    format!(
                        "the clock may be off by up to {} (its maximum error); {gap_text}: within that error",
                        words(max_error)
                    ),
                ));
            }
            Some(_) if best.is_none() => evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the clock's possible error ({}) cannot explain this: {gap_text}, and nothing shows the clock off by that much",
                    words(max_error)
                ),
            )),
            None if best.is_none() => evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the clock's possible error is {}, and nothing (RTC, a step, a known date) shows it off by more",
                    words(max_error)
                ),
            )),
            _ => {}
        }
    }
    ClockJudgement {
        explains: best,
        evidence,
    }
}

/// "adjtimex: clock not synchronized (STA_UNSYNC), maximum error 16.000 s, …".
pub fn adjtimex_evidence(clock: &ClockState) -> Evidence {
    let state = if clock.synchronized {
        "synchronized".to_string()
    } else if clock.status.is_empty() {
        "not synchronized".to_string()
    } else {
        format!("not synchronized ({})", clock.status.join(" "))
    };
    Evidence::new(
        Source::Host,
        format!(
            "adjtimex: clock {state}, maximum error {:.3} s, offset {:.3} s, read {}",
            clock.max_error_us as f64 / 1e6,
            clock.offset_us as f64 / 1e6,
            clock.now.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    )
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::evidence::clock::{ClockStep, TimeFloor};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The clock states of the table.
    #[derive(Clone, Copy, Debug)]
    enum State {
        /// NTP-synchronized, 12 ms maximum error.
        Synced,
        /// STA_UNSYNC, 16 s maximum error: this VM, most containers.
        Unsync,
        /// Unsynchronized and the RTC 3 days behind the system clock.
        RtcBehind3d,
        /// Unsynchronized and the RTC 3 days ahead.
        RtcAhead3d,
        /// Synchronized, the RTC 3 days behind (the RTC is the wrong one).
        SyncedRtcBehind3d,
        /// Stepped forward by 3 days since the agent started.
        SteppedForward3d,
        /// Stepped back by 3 days.
        SteppedBack3d,
        /// Reads 2 days earlier than the agent's binary was built.
        BehindBuild2d,
    }

    fn clock(state: State) -> ClockState {
        let unsync = ClockState::adjtimex_only(now(), false, 16_000_000);
        let synced = ClockState::adjtimex_only(now(), true, 12_000);
        let three_days = TimeDelta::days(3);
        match state {
            State::Synced => synced,
            State::Unsync => unsync,
            State::RtcBehind3d => ClockState {
                rtc: Some(now() - three_days),
                ..unsync
            },
            State::RtcAhead3d => ClockState {
                rtc: Some(now() + three_days),
                ..unsync
            },
            State::SyncedRtcBehind3d => ClockState {
                rtc: Some(now() - three_days),
                ..synced
            },
            State::SteppedForward3d => ClockState {
                step: Some(ClockStep {
                    seconds: 3 * 86_400,
                    since: now() - TimeDelta::hours(1),
                }),
                ..synced
            },
            State::SteppedBack3d => ClockState {
                step: Some(ClockStep {
                    seconds: -3 * 86_400,
                    since: now() - TimeDelta::hours(1),
                }),
                ..synced
            },
            State::BehindBuild2d => ClockState {
                floors: vec![TimeFloor {
                    time: now() + TimeDelta::days(2),
                    source: "the agent's binary".into(),
                }],
                ..unsync
            },
        }
    }

    /// (gap, clock state) → clock-skew or not, for both verdicts.
    #[test]
    fn the_clock_explains_a_date_verdict_only_by_about_the_gap() {
        use Confidence::{High, Medium};
        use State::*;
        use Verdict::{Expired, NotYetValid};
        let secs = TimeDelta::seconds;
        let days = TimeDelta::days;
        #[rustfmt::skip]
        let table: &[(Verdict, Option<TimeDelta>, State, Option<Confidence>)] = &[
            // A synchronized clock explains nothing.
            (Expired, Some(secs(5)), Synced, None),
            (Expired, Some(days(3)), Synced, None),
            (Expired, None, Synced, None),
            // Unsynchronized, 16 s of possible error: seconds, never days.
            (Expired, Some(secs(10)), Unsync, Some(Medium)),
            (NotYetValid, Some(secs(15)), Unsync, Some(Medium)),
            (Expired, Some(secs(17)), Unsync, None),
            (Expired, Some(days(3)), Unsync, None),
            (NotYetValid, Some(days(5)), Unsync, None),
            (Expired, None, Unsync, None),
            // The RTC says the system clock runs 3 days ahead.
            (Expired, Some(days(2)), RtcBehind3d, Some(High)),
            (Expired, Some(days(3) - secs(60)), RtcBehind3d, Some(High)),
            (Expired, Some(days(5)), RtcBehind3d, Some(Medium)),
            (Expired, Some(days(30)), RtcBehind3d, None),
            (Expired, None, RtcBehind3d, Some(Medium)),
            // ...which makes certificates look expired, not early.
            (NotYetValid, Some(days(2)), RtcBehind3d, None),
            (NotYetValid, Some(days(2)), RtcAhead3d, Some(High)),
            (Expired, Some(days(2)), RtcAhead3d, None),
            // A synchronized clock beats the RTC.
            (Expired, Some(days(2)), SyncedRtcBehind3d, None),
            // Steps, in their direction.
            (Expired, Some(days(2)), SteppedForward3d, Some(High)),
            (Expired, Some(days(40)), SteppedForward3d, None),
            (NotYetValid, Some(days(2)), SteppedForward3d, None),
            (NotYetValid, Some(days(2)), SteppedBack3d, Some(High)),
            (Expired, Some(days(2)), SteppedBack3d, None),
            // Behind a known date: it is behind, so "not yet valid".
            (NotYetValid, Some(days(1)), BehindBuild2d, Some(High)),
            (NotYetValid, Some(days(10)), BehindBuild2d, Some(Medium)),
            (NotYetValid, None, BehindBuild2d, Some(Medium)),
            (Expired, Some(days(1)), BehindBuild2d, None),
        ];
        for (verdict, gap, state, expected) in table {
            let j = judge(&clock(*state), *verdict, *gap);
            assert_eq!(
                j.explains, *expected,
                "{verdict:?} by {gap:?} with {state:?}: {:#?}",
                j.evidence
            );
            assert!(j.evidence[0].fact.starts_with("adjtimex:"), "{j:#?}");
        }
    }

    #[test]
    fn a_clock_that_does_not_explain_says_why() {
        let j = judge(
            &clock(State::Unsync),
            Verdict::Expired,
            Some(TimeDelta::days(3)),
        );
        assert_eq!(j.explains, None);
        let text: Vec<&str> = j.evidence.iter().map(|e| e.fact.as_str()).collect();
        assert!(text[0].contains("STA_UNSYNC"), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("16 seconds") && t.contains("expired 3 days ago")),
            "{text:?}"
        );
        // A synchronized clock needs no note beyond its state.
        let j = judge(
            &clock(State::Synced),
            Verdict::Expired,
            Some(TimeDelta::days(3)),
        );
        assert_eq!(j.evidence.len(), 1);
    }
}
