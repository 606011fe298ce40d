use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses a datetime into milliseconds since the Unix epoch (UTC).
///
/// Accepts RFC 3339 (`2024-05-01T12:00:00Z`, with an offset or fractional seconds), the
/// ClickHouse/SQL form `2024-05-01 12:00:00[.fff]` (taken as UTC) and a bare date `2024-05-01`.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, format) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with millisecond precision.
pub fn format_datetime(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let ms = 1_714_564_800_000; // 2024-05-01T12:00:00Z
        assert_eq!(parse_datetime("2024-05-01T12:00:00Z"), Some(ms));
        assert_eq!(parse_datetime("2024-05-01T14:00:00+02:00"), Some(ms));
        assert_eq!(parse_datetime("2024-05-01 12:00:00"), Some(ms));
        assert_eq!(parse_datetime("2024-05-01 12:00:00.250"), Some(ms + 250));
        assert_eq!(parse_datetime("2024-05-01"), Some(ms - 12 * 3_600_000));
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(format_datetime(ms), "2024-05-01T12:00:00.000Z");
    }
}
