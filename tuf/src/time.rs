//! Times in metadata: RFC 3339 with up to nanosecond precision, written as
//! Go's `time.RFC3339Nano` does (fraction without trailing zeros, `Z` for UTC).

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 time such as `2026-12-05T23:54:56.210201815Z`.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Formats a time as Go's `RFC3339Nano` in UTC.
pub fn format_rfc3339_nano(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Default lifetimes Notary gives each role's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Root: 10 years.
    pub root: Duration,
    /// Targets and delegations: 3 years.
    pub targets: Duration,
    /// Snapshot: 3 years.
    pub snapshot: Duration,
    /// Timestamp: 14 days.
    pub timestamp: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        // Notary counts years as 365 days: a root made on 2026-11-21
        // expires on 2036-11-18 (the fixtures show it).
        Lifetimes {
            root: Duration::days(10 * 365),
            targets: Duration::days(3 * 365),
            snapshot: Duration::days(3 * 365),
            timestamp: Duration::days(14),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_round_trip() {
        for s in [
            "2026-12-05T23:54:56.210201815Z",
            "2029-11-20T23:54:56.2Z",
            "2036-11-18T23:54:56Z",
        ] {
            assert_eq!(format_rfc3339_nano(parse_rfc3339(s).unwrap()), s);
        }
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let t = parse_rfc3339("2026-01-01T02:00:00.5+02:00").unwrap();
        assert_eq!(format_rfc3339_nano(t), "2026-01-01T00:00:00.5Z");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_rfc3339("tomorrow").is_none());
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_none());
    }
}
