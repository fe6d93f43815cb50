//! Fixed windows and calendar quotas: at most `limit` units per window, the windows
//! fixed on the calendar (aligned to the Unix epoch, or to midnight, Monday or the
//! 1st of the month at a UTC offset), so that every process and every store agrees
//! when one ends (`docs/design.md#fixed-windows`). The state of a key is its
//! window's start and the units used in it: O(1), whatever the limit or the traffic.

use time::{Date, Month, OffsetDateTime, UtcOffset};

use super::RuleError;
use crate::decision::{Decision, DeniedBy};

const SECOND: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SECOND;
const WEEK: u64 = 7 * DAY;
/// 1970-01-01 was a Thursday: weeks start four days after the epoch.
const FIRST_MONDAY: u64 = 4 * DAY;
/// The longest month: how long a monthly window's state can matter.
const LONGEST_MONTH: u64 = 31 * DAY;
/// Longest window accepted (about 31 years), so that `start + length` never overflows.
pub const MAX_FIXED_WINDOW_SECONDS: f64 = 1e9;
/// The largest UTC offset accepted, in seconds (±18:00, as ISO 8601 allows).
pub const MAX_UTC_OFFSET_SECONDS: i32 = 18 * 3600;

/// A calendar period for [`FixedWindow::calendar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// From midnight to midnight.
    Day,
    /// From Monday midnight to the next.
    Week,
    /// From midnight of the 1st to the 1st of the next month.
    Month,
}

impl Period {
    /// The configuration name of the period.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// Where the windows of a [`FixedWindow`] lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Windows {
    /// Windows of `length` ns, one starting at every `phase + k·length` ns since the
    /// Unix epoch (`0 <= phase < length`).
    Every {
        /// The window length, in ns.
        length: u64,
        /// The offset of window starts from the epoch, in ns.
        phase: u64,
    },
    /// Calendar months, each starting at midnight of its 1st at `utc_offset` seconds
    /// east of UTC.
    Months {
        /// Seconds east of UTC.
        utc_offset: i32,
    },
}

/// A validated fixed-window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedWindow {
    limit: u32,
    windows: Windows,
    /// How the windows were configured (for reports): a calendar period, if any.
    period: Option<Period>,
    /// The UTC offset the windows are aligned to, in seconds east.
    utc_offset: i32,
}

/// The state of one key under a fixed window: the start of the window it counts in,
/// and the units used in that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCount {
    /// The start of the window counted in (ns since the Unix epoch; 0 for a key never
    /// seen).
    pub start: u64,
    /// Units admitted in that window.
    pub used: u64,
}

impl FixedWindow {
    /// At most `limit` units per window of `window_seconds`, windows aligned to the
    /// Unix epoch (a window of 3600 s starts on every UTC hour).
    pub fn new(limit: u32, window_seconds: f64) -> Result<Self, RuleError> {
        Self::with_window_nanos(limit, seconds_to_nanos(window_seconds)?)
    }

    /// The same with the window in nanoseconds.
    pub fn with_window_nanos(limit: u32, length: u64) -> Result<Self, RuleError> {
        check_limit(limit)?;
        if length == 0 || length > (MAX_FIXED_WINDOW_SECONDS * 1e9) as u64 {
            return Err(RuleError::TooSmall {
                field: "window_seconds",
            });
        }
        Ok(FixedWindow {
            limit,
            windows: Windows::Every { length, phase: 0 },
            period: None,
            utc_offset: 0,
        })
    }

    /// Windows of `window_seconds` that start at local midnight at `utc_offset`
    /// seconds east of UTC: the window must divide a day, so that every day starts one.
    pub fn aligned(limit: u32, window_seconds: f64, utc_offset: i32) -> Result<Self, RuleError> {
        let rule = Self::new(limit, window_seconds)?;
        check_offset(utc_offset)?;
        let Windows::Every { length, .. } = rule.windows else {
            unreachable!("`new` builds evenly spaced windows")
        };
        if !DAY.is_multiple_of(length) {
            return Err(RuleError::NotADivisorOfADay { window_seconds });
        }
        Ok(FixedWindow {
            windows: Windows::Every {
                length,
                phase: phase(0, length, utc_offset),
            },
            utc_offset,
            ..rule
        })
    }

    /// At most `limit` units per calendar `period`, at `utc_offset` seconds east of UTC.
    pub fn calendar(limit: u32, period: Period, utc_offset: i32) -> Result<Self, RuleError> {
        check_limit(limit)?;
        check_offset(utc_offset)?;
        let windows = match period {
            Period::Day => Windows::Every {
                length: DAY,
                phase: phase(0, DAY, utc_offset),
            },
            Period::Week => Windows::Every {
                length: WEEK,
                phase: phase(FIRST_MONDAY, WEEK, utc_offset),
            },
            Period::Month => Windows::Months { utc_offset },
        };
        Ok(FixedWindow {
            limit,
            windows,
            period: Some(period),
            utc_offset,
        })
    }

    /// The most units admitted in one window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Where the windows lie.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// The calendar period the rule was configured with, if any.
    pub fn period(&self) -> Option<Period> {
        self.period
    }

    /// The UTC offset the windows are aligned to, in seconds east of UTC.
    pub fn utc_offset(&self) -> i32 {
        self.utc_offset
    }

    /// The length of a window in nanoseconds; for months, the longest (31 days).
    pub fn window_nanos(&self) -> u64 {
        match self.windows {
            Windows::Every { length, .. } => length,
            Windows::Months { .. } => LONGEST_MONTH,
        }
    }

    /// The window that holds `now`: its start and its end (exclusive), ns since the
    /// Unix epoch.
    pub fn bounds(&self, now: u64) -> (u64, u64) {
        match self.windows {
            Windows::Every { length, phase } => {
                let start = (i128::from(now) - i128::from(phase)).div_euclid(i128::from(length))
                    * i128::from(length)
                    + i128::from(phase);
                (clamp(start), clamp(start + i128::from(length)))
            }
            Windows::Months { utc_offset } => month_bounds(now, utc_offset),
        }
    }

    /// The window a key counts in at `now`: the one holding `now`, or the key's own
    /// when it is newer (a store clock that stepped back never reopens an older one).
    fn current(&self, state: &WindowCount, now: u64) -> (WindowCount, u64) {
        let (start, end) = self.bounds(now);
        if state.start > start {
            return (*state, self.bounds(state.start).1);
        }
        let used = if state.start == start { state.used } else { 0 };
        (WindowCount { start, used }, end)
    }

    /// Decides an attempt of `cost` units at `now`, counting it in `state` when
    /// admitted. Returns the decision and the start of the window it was counted in
    /// (for a refund). The caller has checked `1 <= cost <= limit`.
    pub fn decide(&self, state: &mut WindowCount, now: u64, cost: u32) -> (Decision, u64) {
        let (window, end) = self.current(state, now);
        let limit = u64::from(self.limit);
        let used = window.used + u64::from(cost);
        if used <= limit {
            *state = WindowCount { used, ..window };
            let decision = Decision::admitted(limit, limit - used, end.saturating_sub(now));
            return (decision, window.start);
        }
        *state = window;
        (self.refusal(window.used, end, now), 0)
    }

    /// The decision an attempt of `cost` would get at `now`, counting nothing.
    pub fn peek(&self, state: &WindowCount, now: u64, cost: u32) -> Decision {
        let (window, end) = self.current(state, now);
        let limit = u64::from(self.limit);
        if window.used + u64::from(cost) <= limit {
            let reset = match window.used {
                0 => 0,
                _ => end.saturating_sub(now),
            };
            return Decision::admitted(limit, limit - window.used, reset);
        }
        self.refusal(window.used, end, now)
    }

    /// A refusal: the window's end starts a new one, where any valid cost fits.
    fn refusal(&self, used: u64, end: u64, now: u64) -> Decision {
        let limit = u64::from(self.limit);
        let wait = end.saturating_sub(now);
        Decision::denied(
            DeniedBy::Rate,
            limit,
            limit.saturating_sub(used),
            wait,
            wait,
        )
    }

    /// Takes back up to `cost` units counted in the window that started at `start`
    /// (a refund or a settle); nothing once that window has ended.
    pub fn refund(&self, state: &mut WindowCount, start: u64, cost: u32) {
        if state.start == start {
            state.used -= state.used.min(u64::from(cost));
        }
    }

    /// When the key's window ends (0 for a key that used nothing): from then on it
    /// is indistinguishable from a fresh one.
    pub fn idle_at(&self, state: &WindowCount) -> u64 {
        match state.used {
            0 => 0,
            _ => self.bounds(state.start).1,
        }
    }
}

fn check_limit(limit: u32) -> Result<(), RuleError> {
    match limit {
        0 => Err(RuleError::NotPositive {
            field: "limit",
            value: 0.0,
        }),
        _ => Ok(()),
    }
}

fn check_offset(utc_offset: i32) -> Result<(), RuleError> {
    match utc_offset.abs() <= MAX_UTC_OFFSET_SECONDS {
        true => Ok(()),
        false => Err(RuleError::OutOfRange {
            field: "utc_offset",
            min: -f64::from(MAX_UTC_OFFSET_SECONDS),
            max: f64::from(MAX_UTC_OFFSET_SECONDS),
            value: f64::from(utc_offset),
        }),
    }
}

fn seconds_to_nanos(window_seconds: f64) -> Result<u64, RuleError> {
    if !window_seconds.is_finite() || window_seconds <= 0.0 {
        return Err(RuleError::NotPositive {
            field: "window_seconds",
            value: window_seconds,
        });
    }
    if window_seconds > MAX_FIXED_WINDOW_SECONDS {
        return Err(RuleError::TooLarge {
            field: "window_seconds",
            max: MAX_FIXED_WINDOW_SECONDS,
        });
    }
    Ok((window_seconds * 1e9).round() as u64)
}

/// The phase of windows of `length` whose boundaries fall on `boundary` (ns after
/// the epoch, in UTC) shifted to local time at `utc_offset` seconds east: local
/// midnight is UTC midnight minus the offset.
fn phase(boundary: u64, length: u64, utc_offset: i32) -> u64 {
    let shifted = i128::from(boundary) - i128::from(utc_offset) * i128::from(SECOND);
    shifted.rem_euclid(i128::from(length)) as u64
}

/// Nanoseconds since the epoch, clamped to what a u64 holds.
fn clamp(nanos: i128) -> u64 {
    nanos.clamp(0, i128::from(u64::MAX)) as u64
}

/// The calendar month holding `now` at `utc_offset` seconds east of UTC.
fn month_bounds(now: u64, utc_offset: i32) -> (u64, u64) {
    let offset = UtcOffset::from_whole_seconds(utc_offset).unwrap_or(UtcOffset::UTC);
    let local = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    let (year, month) = (local.year(), local.month());
    let (next_year, next_month) = match month {
        Month::December => (year + 1, Month::January),
        _ => (year, month.next()),
    };
    let midnight_of_the_first = |year, month| {
        Date::from_calendar_date(year, month, 1)
            .map(|date| date.midnight().assume_offset(offset).unix_timestamp_nanos())
            .unwrap_or(i128::from(u64::MAX))
    };
    (
        clamp(midnight_of_the_first(year, month)),
        clamp(midnight_of_the_first(next_year, next_month)),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-12-07 00:00:00 UTC, a Monday.
    const MONDAY: u64 = 1_796_601_600 * SECOND;

    #[test]
    fn a_daily_quota_resets_at_midnight() {
        let fw = FixedWindow::calendar(3, Period::Day, 0).unwrap();
        let mut state = WindowCount::default();
        let evening = MONDAY + 23 * 3600 * SECOND;
        for _ in 0..3 {
            assert!(fw.decide(&mut state, evening, 1).0.allowed());
        }
        let (d, _) = fw.decide(&mut state, evening, 1);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_secs(3600));
        assert_eq!(d.reset_after(), Duration::from_secs(3600));
        assert!(!fw.decide(&mut state, MONDAY + DAY - 1, 1).0.allowed());
        let (d, start) = fw.decide(&mut state, MONDAY + DAY, 1);
        assert!(d.allowed() && d.remaining == 2 && start == MONDAY + DAY);
    }

    #[test]
    fn calendar_periods_follow_the_offset() {
        let ist = 5 * 3600 + 1800;
        let day = FixedWindow::calendar(1, Period::Day, ist).unwrap();
        // Local midnight in India is 18:30 UTC the day before.
        let local_midnight = MONDAY - 5 * 3600 * SECOND - 1800 * SECOND;
        assert_eq!(day.bounds(MONDAY), (local_midnight, local_midnight + DAY));
        let week = FixedWindow::calendar(1, Period::Week, 0).unwrap();
        assert_eq!(week.bounds(MONDAY + 3 * DAY), (MONDAY, MONDAY + WEEK));
        let month = FixedWindow::calendar(1, Period::Month, 0).unwrap();
        // December 2026 started on Tuesday the 1st; January 2027 has 31 days.
        let december = MONDAY - 6 * DAY;
        assert_eq!(month.bounds(MONDAY), (december, december + 31 * DAY));
        let (_, end) = month.bounds(december + 31 * DAY);
        assert_eq!(end, december + 62 * DAY);
        let west = FixedWindow::calendar(1, Period::Month, -8 * 3600).unwrap();
        // At 00:00 UTC on December 1st it is still November 30th at UTC-08:00.
        assert_eq!(
            west.bounds(december).0,
            december - 30 * DAY + 8 * 3600 * SECOND
        );
    }

    #[test]
    fn windows_are_aligned_to_the_epoch_or_to_local_midnight() {
        let hourly = FixedWindow::new(1, 3600.0).unwrap();
        assert_eq!(
            hourly.bounds(MONDAY + 90 * 60 * SECOND).0,
            MONDAY + 3600 * SECOND
        );
        let half_hourly = FixedWindow::aligned(1, 3600.0, 1800).unwrap();
        assert_eq!(half_hourly.bounds(MONDAY).0, MONDAY - 1800 * SECOND);
        assert_eq!(
            FixedWindow::aligned(1, 7.0 * 3600.0, 3600),
            Err(RuleError::NotADivisorOfADay {
                window_seconds: 7.0 * 3600.0
            })
        );
    }

    #[test]
    fn a_refund_gives_back_only_in_its_window() {
        let fw = FixedWindow::new(5, 10.0).unwrap();
        let mut state = WindowCount::default();
        let (_, start) = fw.decide(&mut state, MONDAY, 4);
        fw.refund(&mut state, start, 3);
        assert_eq!(state.used, 1);
        fw.refund(&mut state, start, 3);
        assert_eq!(state.used, 0, "never below zero");
        assert!(fw.decide(&mut state, MONDAY + 10 * SECOND, 5).0.allowed());
        fw.refund(&mut state, start, 5);
        assert_eq!(state.used, 5, "the old window's refund finds nothing");
    }

    #[test]
    fn a_clock_that_steps_back_keeps_the_newer_window() {
        let fw = FixedWindow::new(2, 10.0).unwrap();
        let mut state = WindowCount::default();
        assert!(fw.decide(&mut state, MONDAY + 10 * SECOND, 2).0.allowed());
        let (d, _) = fw.decide(&mut state, MONDAY + 9 * SECOND, 1);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_secs(11));
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert!(FixedWindow::new(0, 1.0).is_err());
        for w in [0.0, -1.0, f64::NAN, 1e10] {
            assert!(FixedWindow::new(1, w).is_err(), "{w}");
        }
        assert!(FixedWindow::calendar(1, Period::Day, 19 * 3600).is_err());
    }
}
