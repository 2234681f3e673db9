use std::collections::BTreeMap;

use jiff::civil::{date, Date};
use jiff::tz::TimeZone;

use super::*;

fn local(zone: &str, day: Date, hour: i8, minute: i8) -> Millis {
    day.at(hour, minute, 0, 0)
        .to_zoned(TimeZone::get(zone).unwrap())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

fn utc(day: Date) -> Millis {
    local("UTC", day, 0, 0)
}

fn cron(pattern: &str, zone: &str) -> Rule {
    Rule::new(&When::Cron(pattern.into()), zone, None, None, 0).expect("a valid rule")
}

/// The fires of a whole year, by local date.
fn fires_per_local_date(rule: &Rule, zone: &str) -> BTreeMap<Date, Vec<String>> {
    let tz = TimeZone::get(zone).unwrap();
    let mut per_day: BTreeMap<Date, Vec<String>> = BTreeMap::new();
    for fire in rule.fires_between(utc(date(2026, 1, 1)), utc(date(2027, 1, 1))) {
        let zoned = Timestamp::from_millisecond(fire)
            .unwrap()
            .to_zoned(tz.clone());
        per_day
            .entry(zoned.date())
            .or_default()
            .push(zoned.strftime("%H:%M%:z").to_string());
    }
    per_day
}

#[test]
fn daily_at_0230_fires_once_every_day_of_a_year_across_both_clock_changes() {
    // New York: 2026-03-08 02:00 -> 03:00 (02:30 does not exist);
    // 2026-11-01 02:00 -> 01:00. Berlin: 2026-03-29 02:00 -> 03:00;
    // 2026-10-25 03:00 -> 02:00 (02:30 happens twice).
    for (zone, spring, fall, fall_time) in [
        (
            "America/New_York",
            date(2026, 3, 8),
            date(2026, 11, 1),
            "02:30-05:00",
        ),
        (
            "Europe/Berlin",
            date(2026, 3, 29),
            date(2026, 10, 25),
            "02:30+02:00",
        ),
    ] {
        let rule = cron("30 2 * * *", zone);
        let per_day = fires_per_local_date(&rule, zone);
        // 2026-01-01 00:00 UTC is still 2025-12-31 in New York.
        let days: Vec<_> = per_day.keys().filter(|d| d.year() == 2026).collect();
        assert_eq!(days.len(), 365, "{zone}: one fire a day");
        assert!(
            per_day.values().all(|fires| fires.len() == 1),
            "{zone}: {per_day:?}"
        );
        // Spring forward: right after the gap; fall back: the first 02:30 only.
        assert_eq!(
            per_day[&spring],
            [if zone == "Europe/Berlin" {
                "03:00+02:00"
            } else {
                "03:00-04:00"
            }]
        );
        assert_eq!(per_day[&fall], [fall_time], "{zone}");
    }
}

#[test]
fn a_fixed_time_inside_the_repeated_hour_fires_once_at_its_first_occurrence() {
    // New York repeats 01:00-01:59 on 2026-11-01: first pass EDT (-04:00).
    let rule = cron("30 1 * * *", "America/New_York");
    let per_day = fires_per_local_date(&rule, "America/New_York");
    assert_eq!(per_day[&date(2026, 11, 1)], ["01:30-04:00"]);
}

#[test]
fn every_15_minutes_keeps_real_time_through_the_repeated_hour() {
    let zone = "Europe/Berlin";
    let rule = cron("*/15 * * * *", zone);
    // 2026-10-25: 02:00-02:59 happens at +02:00, then again at +01:00.
    let from = local(zone, date(2026, 10, 25), 1, 59);
    let until = local(zone, date(2026, 10, 25), 4, 0);
    let fires: Vec<Millis> = rule.fires_between(from, until).collect();
    // 01:59 +02:00 to 04:00 +01:00 (both ends in) is 3 h 1 min of real time:
    // a fire every quarter hour from 02:00 +02:00 on, 13 in all.
    assert_eq!(
        fires.len(),
        13,
        "{:?}",
        fires.iter().map(|f| rule.local_iso(*f)).collect::<Vec<_>>()
    );
    assert!(fires.windows(2).all(|w| w[1] - w[0] == 15 * 60 * 1000));
    let repeated: Vec<String> = fires
        .iter()
        .map(|f| rule.local_iso(*f))
        .filter(|iso| iso.contains("T02:"))
        .collect();
    assert_eq!(
        repeated.len(),
        8,
        "4 fires in each pass of 02:xx: {repeated:?}"
    );
    assert_eq!(
        repeated
            .iter()
            .filter(|iso| iso.ends_with("+02:00"))
            .count(),
        4
    );
}

#[test]
fn every_15_minutes_skips_the_missing_hour() {
    let zone = "Europe/Berlin";
    let rule = cron("*/15 * * * *", zone);
    let from = local(zone, date(2026, 3, 29), 1, 59);
    // One real hour: 01:59 +01:00 to 03:59 +02:00.
    let fires: Vec<String> = rule
        .fires_between(from, from + 3600 * 1000)
        .map(|f| rule.local_iso(f))
        .collect();
    assert_eq!(
        fires,
        [
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:15:00+02:00",
            "2026-03-29T03:30:00+02:00",
            "2026-03-29T03:45:00+02:00"
        ]
    );
}

#[test]
fn six_fields_have_seconds_first() {
    let rule = cron("*/10 * * * * *", "UTC");
    let from = utc(date(2026, 5, 1));
    assert_eq!(
        rule.next_fires(from, 3),
        [from + 10_000, from + 20_000, from + 30_000]
    );
}

#[test]
fn start_and_end_bound_the_fires() {
    let start = utc(date(2026, 6, 10));
    let end = utc(date(2026, 6, 13));
    let rule = Rule::new(
        &When::Cron("0 0 * * *".into()),
        "UTC",
        Some(start),
        Some(end),
        0,
    )
    .unwrap();
    let fires: Vec<Millis> = rule
        .fires_between(utc(date(2026, 6, 1)), utc(date(2026, 7, 1)))
        .collect();
    // The start counts, and so does the end.
    assert_eq!(
        fires,
        [start, utc(date(2026, 6, 11)), utc(date(2026, 6, 12)), end]
    );
    assert_eq!(rule.next_after(end), None);
}

#[test]
fn every_compiles_to_cron_in_the_zone() {
    let every = |frequency, at: &str, weekdays: &[&str], day| Every {
        frequency,
        at: at.into(),
        weekdays: weekdays.iter().map(|d| d.to_string()).collect(),
        day,
    };
    let zone = "America/Sao_Paulo";
    let anchor = local(zone, date(2026, 6, 1), 0, 0); // a Monday
    let rule = |e: Every| Rule::new(&When::Every(e), zone, None, None, anchor).unwrap();
    let daily = rule(every(Frequency::Daily, "06:00", &[], None));
    assert_eq!(daily.pattern(), "0 6 * * *");
    assert_eq!(
        daily.local_iso(daily.next_after(anchor).unwrap()),
        "2026-06-01T06:00:00-03:00"
    );

    let weekly = rule(every(Frequency::Weekly, "06:30", &["tue", "Friday"], None));
    let fires: Vec<String> = weekly
        .next_fires(anchor, 3)
        .iter()
        .map(|f| weekly.local_iso(*f))
        .collect();
    assert_eq!(
        fires,
        [
            "2026-06-02T06:30:00-03:00",
            "2026-06-05T06:30:00-03:00",
            "2026-06-09T06:30:00-03:00"
        ]
    );

    let biweekly = rule(every(Frequency::Biweekly, "07:00", &["monday"], None));
    let fires: Vec<String> = biweekly
        .next_fires(anchor, 3)
        .iter()
        .map(|f| biweekly.local_iso(*f))
        .collect();
    assert_eq!(
        fires,
        [
            "2026-06-01T07:00:00-03:00",
            "2026-06-15T07:00:00-03:00",
            "2026-06-29T07:00:00-03:00"
        ]
    );

    let monthly_last = rule(every(Frequency::Monthly, "23:00", &[], Some(31)));
    let fires: Vec<String> = monthly_last
        .next_fires(anchor, 2)
        .iter()
        .map(|f| monthly_last.local_iso(*f))
        .collect();
    assert_eq!(
        fires,
        ["2026-06-30T23:00:00-03:00", "2026-07-31T23:00:00-03:00"]
    );
}

#[test]
fn bad_rules_name_their_field() {
    let field = |when: When, zone: &str, start, end| {
        Rule::new(&when, zone, start, end, 0).unwrap_err().field
    };
    assert_eq!(
        field(When::Cron("0 0 * * *".into()), "Mars/Olympus", None, None),
        "timezone"
    );
    assert_eq!(
        field(When::Cron("0 0 30 2 *".into()), "UTC", None, None),
        "cron"
    );
    assert_eq!(
        field(When::Cron("61 * * * *".into()), "UTC", None, None),
        "cron"
    );
    assert_eq!(
        field(When::Cron("* * * * * * * *".into()), "UTC", None, None),
        "cron"
    );
    assert_eq!(
        field(When::Cron("0 0 * * *".into()), "UTC", Some(10), Some(5)),
        "end_at"
    );
    let every = |at: &str, weekdays: Vec<String>, day| {
        When::Every(Every {
            frequency: Frequency::Weekly,
            at: at.into(),
            weekdays,
            day,
        })
    };
    assert_eq!(
        field(every("25:00", vec![], None), "UTC", None, None),
        "every.at"
    );
    assert_eq!(
        field(
            every("06:00", vec!["funday".into()], None),
            "UTC",
            None,
            None
        ),
        "every.weekdays"
    );
    assert_eq!(
        Frequency::parse("hourly").unwrap_err().field,
        "every.frequency"
    );
}

#[test]
fn rules_read_as_people_write_them() {
    assert_eq!(
        When::Cron("0 9 * * 1-5".into()).to_string(),
        "cron 0 9 * * 1-5"
    );
    let every = |frequency, weekdays: &[&str], day| {
        When::Every(Every {
            frequency,
            at: "09:30".into(),
            weekdays: weekdays.iter().map(|d| d.to_string()).collect(),
            day,
        })
        .to_string()
    };
    assert_eq!(
        every(Frequency::Weekly, &["mon", "fri"], None),
        "weekly on mon, fri at 09:30"
    );
    assert_eq!(
        every(Frequency::Monthly, &[], Some(31)),
        "monthly on day 31 at 09:30"
    );
    assert_eq!(every(Frequency::Daily, &[], None), "daily at 09:30");
}
