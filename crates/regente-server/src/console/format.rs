//! Words and numbers as the console shows them. Times are written in UTC with
//! their epoch milliseconds beside them; the page's script rewrites them in the
//! browser's time zone, naming the zone (UTC stays when scripts are off).

use regente_store::Millis;

/// `2026-12-05 12:38:59 UTC`.
pub fn utc(ms: Millis) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A `<time>` element: UTC text that the page's script rewrites in the
/// browser's zone. Made of digits only, so safe to insert unescaped.
pub fn time_html(ms: Millis) -> String {
    format!(
        r#"<time datetime="{}" data-ms="{ms}">{}</time>"#,
        iso(ms),
        utc(ms)
    )
}

/// [`time_html`] for an instant that may not have come yet.
pub fn maybe_time_html(ms: Option<Millis>) -> String {
    ms.map_or_else(|| "—".to_owned(), time_html)
}

/// `2026-12-05T12:38:59Z`, for `<time datetime>`.
pub fn iso(ms: Millis) -> String {
    let text = utc(ms);
    format!("{}T{}Z", &text[..10], &text[11..19])
}

/// Year, month and day of a day count from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day of the week of an instant, 0 = Monday.
pub fn weekday(ms: Millis) -> usize {
    // 1970-01-01 was a Thursday.
    (ms.div_euclid(86_400_000) + 3).rem_euclid(7) as usize
}

/// `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 10 min`.
pub fn duration(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

/// A percentage with one decimal.
pub fn percent(value: f64) -> String {
    format!("{:.1} %", value * 100.0)
}

/// A JSON value as readable text.
pub fn json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_weekdays() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_474_339_000), "2026-12-05 12:38:59 UTC");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59 UTC");
        assert_eq!(weekday(0), 3);
        assert_eq!(weekday(1_796_474_339_000), 5);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_400), "12.4 s");
        assert_eq!(duration(185_000), "3 min 05 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
    }
}
