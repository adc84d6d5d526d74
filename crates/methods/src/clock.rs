//! The wall clock, in the units bosun stores and shows.
//!
//! Dates are computed with `chrono`, the one date and time crate in bosun's dependency
//! graph, rather than by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_proto::Millis;
use chrono::{DateTime, SecondsFormat};

/// Time since the Unix epoch; zero if the clock reads before it.
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch; 0 if the clock reads before it.
pub fn now_millis() -> Millis {
    Millis::try_from(since_epoch().as_millis()).unwrap_or(Millis::MAX)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for milliseconds since the Unix epoch.
pub fn rfc3339_millis(ms: Millis) -> String {
    let mut text = String::with_capacity(24);
    write_rfc3339_millis(&mut text, ms);
    text
}

/// Append `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for `ms` to `out`, for writers that build a
/// line in one buffer. A time past chrono's range (year 262143) is written as the last
/// time it can represent.
pub fn write_rfc3339_millis(out: &mut String, ms: Millis) {
    let time = i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(DateTime::<chrono::Utc>::MAX_UTC);
    out.push_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_767_261_600_123),
            "2026-01-01T10:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
    }

    /// The civil-from-days computation the event stream used before, kept here as a
    /// reference the formatter must agree with.
    fn reference(ms: u64) -> String {
        let secs = ms / 1000;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms % 1000
        )
    }

    #[test]
    fn agrees_with_the_civil_calendar_through_year_9999() {
        // A stride that is prime in milliseconds visits every time of day and every day
        // of the month across the range.
        let last = 253_402_300_799_999u64; // 9999-12-31T23:59:59.999Z
        let mut ms = 0u64;
        while ms <= last {
            assert_eq!(rfc3339_millis(ms), reference(ms), "at {ms}");
            ms += 7_919_999_983;
        }
        assert_eq!(rfc3339_millis(last), reference(last));
    }

    #[test]
    fn appends_to_a_line() {
        let mut line = String::from("> ");
        write_rfc3339_millis(&mut line, 1_000);
        assert_eq!(line, "> 1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_millis() > 1_577_836_800_000);
        assert!(since_epoch() > Duration::from_secs(1_577_836_800));
    }
}
