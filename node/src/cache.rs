//! Cache headers for served metadata, as Notary sets them: current files get
//! a short `max-age` with `must-revalidate`, checksum- and version-named files
//! (immutable) a long one; an age of 0 turns caching off.

use axum::http::{header, HeaderMap, HeaderValue};
use time::OffsetDateTime;

/// Default age of current metadata, in seconds (Notary: 5 minutes).
pub const DEFAULT_CURRENT_MAX_AGE: u64 = 300;
/// Default age of consistent (checksum-named) metadata (Notary: 30 days).
pub const DEFAULT_CONSISTENT_MAX_AGE: u64 = 30 * 24 * 3600;

/// How one class of responses may be cached, with its `Cache-Control` value made once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// `max-age` and `s-maxage` in seconds; 0 disables caching.
    max_age: u64,
    /// The `Cache-Control` value, precomputed: it is set on every metadata answer.
    header: HeaderValue,
}

impl CachePolicy {
    /// The policy for current files (`<role>.json`).
    pub fn current(max_age: u64) -> Self {
        Self::new(max_age, true)
    }

    /// The policy for consistent files (`<role>.<checksum>.json`, `<version>.<role>.json`).
    pub fn consistent(max_age: u64) -> Self {
        Self::new(max_age, false)
    }

    fn new(max_age: u64, must_revalidate: bool) -> Self {
        let value = if max_age == 0 {
            "max-age=0, no-cache, no-store".to_string()
        } else if must_revalidate {
            format!("public, max-age={max_age}, s-maxage={max_age}, must-revalidate")
        } else {
            format!("public, max-age={max_age}, s-maxage={max_age}")
        };
        CachePolicy {
            max_age,
            header: HeaderValue::try_from(value).expect("digits, letters, commas and spaces"),
        }
    }

    /// The `Cache-Control` value.
    pub fn cache_control(&self) -> &HeaderValue {
        &self.header
    }

    /// Sets `Cache-Control` (and `Pragma: no-cache` when caching is off) and,
    /// when known, `Last-Modified`.
    pub fn apply(&self, headers: &mut HeaderMap, last_modified: Option<OffsetDateTime>) {
        headers.insert(header::CACHE_CONTROL, self.header.clone());
        if self.max_age == 0 {
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        if let Some(t) = last_modified {
            if let Some(v) = http_date(t).and_then(|s| HeaderValue::from_str(&s).ok()) {
                headers.insert(header::LAST_MODIFIED, v);
            }
        }
    }
}

/// Formats a time as an HTTP date (IMF-fixdate, RFC 9110), for example
/// `Sat, 21 Nov 2026 23:54:56 GMT`. Notary writes `UTC` instead of `GMT`
/// (Go's RFC 1123 layout); clients parse both, and `GMT` is the standard form.
pub fn http_date(t: OffsetDateTime) -> Option<String> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_default_values() {
        assert_eq!(
            CachePolicy::current(DEFAULT_CURRENT_MAX_AGE).cache_control(),
            "public, max-age=300, s-maxage=300, must-revalidate"
        );
        assert_eq!(
            CachePolicy::consistent(DEFAULT_CONSISTENT_MAX_AGE).cache_control(),
            "public, max-age=2592000, s-maxage=2592000"
        );
    }

    #[test]
    fn zero_disables_caching() {
        let mut h = HeaderMap::new();
        CachePolicy::current(0).apply(&mut h, None);
        assert_eq!(h[header::CACHE_CONTROL], "max-age=0, no-cache, no-store");
        assert_eq!(h[header::PRAGMA], "no-cache");
        assert!(h.get(header::LAST_MODIFIED).is_none());
    }

    #[test]
    fn last_modified_is_an_http_date() {
        let mut h = HeaderMap::new();
        let t = time::macros::datetime!(2026-11-21 23:54:56.21 UTC);
        CachePolicy::consistent(10).apply(&mut h, Some(t));
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=10, s-maxage=10");
        assert!(h.get(header::PRAGMA).is_none());
        assert_eq!(h[header::LAST_MODIFIED], "Sat, 21 Nov 2026 23:54:56 GMT");
        let t = time::macros::datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(http_date(t).unwrap(), "Fri, 02 Jan 2026 01:04:05 GMT");
    }
}
