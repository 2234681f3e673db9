//! When a schedule fires: a cron rule (5 fields, or 6 with seconds first) or a
//! RoboEasy-style `every` (daily, weekly, biweekly, monthly at a local time),
//! in an IANA time zone, between an optional start and end.
//!
//! Fires are computed in the schedule's zone by `croner` (on `jiff`'s bundled
//! time-zone database), whose rules for clock changes are the ones promised:
//! - a fixed local time that does not exist (spring forward) fires once, right
//!   after the gap;
//! - a fixed local time that happens twice (fall back) fires once, at its first
//!   occurrence;
//! - a rule with `*` or a step in the seconds, minutes or hours field keeps real
//!   elapsed time: it fires through both passes of a repeated hour and skips
//!   the missing one.
//!
//! `every` compiles to a cron rule; `biweekly` adds "every other week, counted
//! from the week of the start" on top of its weekly rule.
//!
//! [`plan`] decides which fires are due at a given time, and what becomes of
//! fires due while nobody could fire them.

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

const MILLIS_PER_WEEK: i64 = 7 * 24 * 3600 * 1000;

pub mod plan;

/// A rule that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        field,
        message: message.into(),
    }
}

/// How often an `every` rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    Weekly,
    Biweekly,
    Monthly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Biweekly => "biweekly",
            Frequency::Monthly => "monthly",
        }
    }

    pub fn parse(text: &str) -> Result<Frequency, RuleError> {
        match text {
            "daily" => Ok(Frequency::Daily),
            "weekly" => Ok(Frequency::Weekly),
            "biweekly" => Ok(Frequency::Biweekly),
            "monthly" => Ok(Frequency::Monthly),
            other => Err(invalid(
                "every.frequency",
                format!("{other:?} is not one of daily, weekly, biweekly, monthly"),
            )),
        }
    }
}

/// A RoboEasy-style rule: `at` a local time, on `weekdays` (weekly and
/// biweekly; Monday when none is given) or on `day` of the month (monthly;
/// the 1st when not given; 31 means the last day of every month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Every {
    pub frequency: Frequency,
    /// `HH:MM`, 24-hour.
    pub at: String,
    pub weekdays: Vec<String>,
    pub day: Option<u32>,
}

/// What the user wrote: one of the two forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    Cron(String),
    Every(Every),
}

/// For people: `cron 0 9 * * 1-5`, `weekly on mon, fri at 09:00`, `monthly on
/// day 31 at 18:00`.
impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let every = match self {
            When::Cron(pattern) => return write!(f, "cron {pattern}"),
            When::Every(every) => every,
        };
        write!(f, "{}", every.frequency.as_str())?;
        if !every.weekdays.is_empty() {
            write!(f, " on {}", every.weekdays.join(", "))?;
        }
        if let Some(day) = every.day {
            write!(f, " on day {day}")?;
        }
        write!(f, " at {}", every.at)
    }
}

/// A checked rule, ready to say when it fires.
#[derive(Debug, Clone)]
pub struct Rule {
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
    start_at: Option<Millis>,
    end_at: Option<Millis>,
    /// For biweekly rules: fires only in weeks an even number of weeks from
    /// the week holding this instant.
    every_other_week_from: Option<Millis>,
}

impl Rule {
    /// Checks `when` in `zone` (an IANA name). `anchor` is where a biweekly
    /// rule counts its weeks from when it has no `start_at` (its creation).
    pub fn new(
        when: &When,
        zone: &str,
        start_at: Option<Millis>,
        end_at: Option<Millis>,
        anchor: Millis,
    ) -> Result<Rule, RuleError> {
        let time_zone = TimeZone::get(zone).map_err(|_| {
            invalid(
                "timezone",
                format!("{zone:?} is not a known IANA time zone (e.g. America/Sao_Paulo)"),
            )
        })?;
        if let (Some(start), Some(end)) = (start_at, end_at) {
            if end <= start {
                return Err(invalid("end_at", "must be after start_at"));
            }
        }
        let (pattern, biweekly) = match when {
            When::Cron(pattern) => (pattern.trim().to_owned(), false),
            When::Every(every) => (
                every_to_cron(every)?,
                every.frequency == Frequency::Biweekly,
            ),
        };
        let field = match when {
            When::Cron(_) => "cron",
            When::Every(_) => "every",
        };
        if pattern.split_whitespace().count() > 6 {
            return Err(invalid(
                field,
                "has more than 6 fields (seconds, minutes, hours, day of month, month, day of week)",
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(field, format!("{pattern:?} is not a valid cron rule: {e}")))?;
        let rule = Rule {
            cron,
            zone: time_zone,
            zone_name: zone.to_owned(),
            start_at,
            end_at,
            every_other_week_from: biweekly.then(|| start_at.unwrap_or(anchor)),
        };
        // A rule that can never fire (e.g. 30 February) is refused now.
        let probe = start_at.unwrap_or(anchor);
        if rule.cron_after(probe).is_none() {
            return Err(invalid(field, format!("{pattern:?} never fires")));
        }
        Ok(rule)
    }

    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The cron pattern the rule runs on.
    pub fn pattern(&self) -> &str {
        self.cron.pattern.as_str()
    }

    /// The first fire strictly after `after`, if the rule fires again.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        // The start is inclusive: a fire at start_at counts.
        let mut cursor = match self.start_at {
            Some(start) if start > after => start - 1,
            _ => after,
        };
        loop {
            let fire = self.cron_after(cursor)?;
            if self.end_at.is_some_and(|end| fire > end) {
                return None;
            }
            if self.in_an_active_week(fire) {
                return Some(fire);
            }
            cursor = fire;
        }
    }

    /// Every fire in `(after, until]`, oldest first.
    pub fn fires_between(&self, after: Millis, until: Millis) -> impl Iterator<Item = Millis> + '_ {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let fire = self.next_after(cursor).filter(|fire| *fire <= until)?;
            cursor = fire;
            Some(fire)
        })
    }

    /// The next `count` fires after `after`.
    pub fn next_fires(&self, after: Millis, count: usize) -> Vec<Millis> {
        let mut fires = Vec::with_capacity(count);
        let mut cursor = after;
        while fires.len() < count {
            let Some(fire) = self.next_after(cursor) else {
                break;
            };
            fires.push(fire);
            cursor = fire;
        }
        fires
    }

    /// `at` as an ISO-8601 local time with its offset, in the rule's zone.
    pub fn local_iso(&self, at: Millis) -> String {
        Timestamp::from_millisecond(at)
            .map(|t| t.to_zoned(self.zone.clone()))
            .map(|zoned| zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .unwrap_or_default()
    }

    fn cron_after(&self, after: Millis) -> Option<Millis> {
        let start = Timestamp::from_millisecond(after)
            .ok()?
            .to_zoned(self.zone.clone());
        // Cron has whole seconds: a start inside a second searches from that
        // second, and a fire found at it is not "after" the start.
        let start = start.round(jiff::Unit::Second).ok()?;
        let start = if start.timestamp().as_millisecond() > after {
            start.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?
        } else {
            start
        };
        let fire: Zoned = self.cron.find_next_occurrence(&start, false).ok()?;
        let fire = fire.timestamp().as_millisecond();
        (fire > after)
            .then_some(fire)
            .or_else(|| self.cron_after(fire))
    }

    fn in_an_active_week(&self, fire: Millis) -> bool {
        let Some(anchor) = self.every_other_week_from else {
            return true;
        };
        let week_of = |at: Millis| -> Option<i64> {
            // Weeks start on Monday, local time.
            let zoned = Timestamp::from_millisecond(at)
                .ok()?
                .to_zoned(self.zone.clone());
            let monday = zoned
                .date()
                .checked_sub(
                    jiff::Span::new().days(i64::from(zoned.weekday().to_monday_zero_offset())),
                )
                .ok()?;
            let noon = monday.at(12, 0, 0, 0).to_zoned(TimeZone::UTC).ok()?;
            Some(
                noon.timestamp()
                    .as_millisecond()
                    .div_euclid(MILLIS_PER_WEEK),
            )
        };
        match (week_of(anchor), week_of(fire)) {
            (Some(anchor), Some(fire)) => (fire - anchor).rem_euclid(2) == 0,
            _ => true,
        }
    }
}

fn every_to_cron(every: &Every) -> Result<String, RuleError> {
    let (hour, minute) = every
        .at
        .split_once(':')
        .and_then(|(h, m)| {
            let hour: u32 = h.parse().ok()?;
            let minute: u32 = m.parse().ok()?;
            (h.len() <= 2 && m.len() == 2 && hour < 24 && minute < 60).then_some((hour, minute))
        })
        .ok_or_else(|| invalid("every.at", format!("{:?} is not a time HH:MM", every.at)))?;
    match every.frequency {
        Frequency::Daily => Ok(format!("{minute} {hour} * * *")),
        Frequency::Weekly | Frequency::Biweekly => {
            let days = if every.weekdays.is_empty() {
                vec!["1".to_owned()]
            } else {
                every
                    .weekdays
                    .iter()
                    .map(|name| weekday_number(name).map(|n| n.to_string()))
                    .collect::<Result<Vec<_>, _>>()?
            };
            Ok(format!("{minute} {hour} * * {}", days.join(",")))
        }
        Frequency::Monthly => match every.day.unwrap_or(1) {
            day @ 1..=30 => Ok(format!("{minute} {hour} {day} * *")),
            31 => Ok(format!("{minute} {hour} L * *")),
            day => Err(invalid(
                "every.day",
                format!("{day} is not a day of the month (1 to 31; 31 means the last day)"),
            )),
        },
    }
}

/// Cron's number of a weekday name (Sunday is 0).
fn weekday_number(name: &str) -> Result<u32, RuleError> {
    const NAMES: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|full| *full == lower || (lower.len() == 3 && full.starts_with(&lower)))
        .map(|n| n as u32)
        .ok_or_else(|| {
            invalid(
                "every.weekdays",
                format!("{name:?} is not a weekday (monday ... sunday, or mon ... sun)"),
            )
        })
}

#[cfg(test)]
mod tests;
