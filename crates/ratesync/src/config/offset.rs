//! The `utc_offset` key of fixed windows (`docs/design.md#fixed-windows`): the
//! offset, east of UTC, whose midnights (and Mondays, and 1sts of the month) the
//! windows start at. Written as ISO 8601 writes an offset, `"+05:30"`, or `"UTC"`.

use time::macros::format_description;
use time::UtcOffset;

use crate::algorithm::MAX_UTC_OFFSET_SECONDS;

/// `"+05:30"`, `"-08:00"`, `"UTC"` or `"Z"` (either case) as seconds east of UTC,
/// at most ±18:00 as ISO 8601 allows. The error is the message of a configuration
/// issue; it shows at most 40 characters of `text`.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("utc") || trimmed.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    // Two-digit hours and minutes with a mandatory sign: `+5:30` and `0530` are
    // refused rather than guessed at.
    let format = format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    let Ok(offset) = UtcOffset::parse(trimmed, &format) else {
        let shown: String = text.chars().take(40).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        return Err(format!(
            "expected a UTC offset such as \"+05:30\", \"-08:00\" or \"UTC\", got {shown:?}{more}"
        ));
    };
    let seconds = offset.whole_seconds();
    if seconds.abs() > MAX_UTC_OFFSET_SECONDS {
        return Err(format!(
            "{trimmed} is beyond the largest UTC offset, ±18:00"
        ));
    }
    Ok(seconds)
}

/// Seconds east of UTC as written in a configuration: `+05:30`, `-08:00`, `+00:00`
/// (seconds, which no configuration can give, are left out).
pub fn format_utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_iso_8601_writes_them() {
        assert_eq!(parse_utc_offset("+05:30"), Ok(19_800));
        assert_eq!(parse_utc_offset("-08:00"), Ok(-28_800));
        assert_eq!(parse_utc_offset(" +18:00 "), Ok(64_800));
        for utc in ["UTC", "utc", "Z", "z", "+00:00", "-00:00"] {
            assert_eq!(parse_utc_offset(utc), Ok(0), "{utc}");
        }
        for bad in [
            "5:30", "+5:30", "+0530", "+05", "05:30", "+05:60", "", "GMT",
        ] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
        let beyond = parse_utc_offset("+19:00").unwrap_err();
        assert!(beyond.contains("±18:00"), "{beyond}");
        let long = parse_utc_offset(&"x".repeat(100)).unwrap_err();
        assert!(long.len() < 140, "{long}");
    }

    #[test]
    fn offsets_format_back() {
        for (seconds, text) in [(19_800, "+05:30"), (-28_800, "-08:00"), (0, "+00:00")] {
            assert_eq!(format_utc_offset(seconds), text);
            assert_eq!(parse_utc_offset(text), Ok(seconds));
        }
        assert_eq!(format_utc_offset(-1_800), "-00:30");
        assert_eq!(parse_utc_offset("-00:30"), Ok(-1_800));
    }
}
