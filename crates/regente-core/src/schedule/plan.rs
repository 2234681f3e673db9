//! Which of a schedule's fires are due now, and what becomes of each: a pure
//! function of the rule, where the schedule stands (its first unhandled fire)
//! and the time, so that the scheduler, a restarted server and a new leader all
//! decide alike, and tests can give every time by hand.
//!
//! - A fire is **due** once its time plus its jitter has passed.
//! - A due fire older than the catch-up window is **missed**: recorded, never
//!   run.
//! - Of the due fires inside the window, `run_latest` runs the latest and
//!   records the others as missed; `run_all` runs each, the latest
//!   [`RUN_ALL_CAP`] at most, and records the older ones as missed. Right on
//!   time there is one due fire, and both run it.
//! - One plan looks at [`MAX_FIRES_PER_PLAN`] fires at most, so that a long
//!   downtime of a frequent schedule is handled in bounded steps: the schedule
//!   moves on by what was decided, and the next plan goes on from there.

use std::collections::VecDeque;

use super::{invalid, Millis, Rule, RuleError};

/// Fires of the catch-up window run by `run_all` at most; older ones are missed.
pub const RUN_ALL_CAP: usize = 100;
/// Fires one plan looks at, at most.
pub const MAX_FIRES_PER_PLAN: usize = 1000;

/// What a fire does while an earlier run of the same schedule is live
/// (PENDENT or RUNNING).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Skipped (recorded and counted) while a run is PENDENT or RUNNING.
    Skip,
    /// Queued while no run waits (one RUNNING and one PENDENT at most);
    /// skipped otherwise.
    BufferOne,
    /// Always queued.
    Allow,
}

impl Overlap {
    pub fn parse(text: &str) -> Result<Overlap, RuleError> {
        match text {
            "skip" => Ok(Overlap::Skip),
            "buffer_one" => Ok(Overlap::BufferOne),
            "allow" => Ok(Overlap::Allow),
            other => Err(invalid(
                "overlap",
                format!("{other:?} is not one of skip, buffer_one, allow"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::Allow => "allow",
        }
    }

    /// Whether a fire may queue a run while `pendent` runs of the schedule wait
    /// and `running` run.
    pub fn allows(self, pendent: u64, running: u64) -> bool {
        match self {
            Overlap::Skip => pendent + running == 0,
            Overlap::BufferOne => pendent == 0,
            Overlap::Allow => true,
        }
    }
}

/// What happens to fires due while nobody could fire them (the server was
/// down, or no server led).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// One run, for the latest due fire inside the window.
    RunLatest,
    /// A run for each due fire inside the window ([`RUN_ALL_CAP`] at most).
    RunAll,
}

impl Misfire {
    pub fn parse(text: &str) -> Result<Misfire, RuleError> {
        match text {
            "run_latest" => Ok(Misfire::RunLatest),
            "run_all" => Ok(Misfire::RunAll),
            other => Err(invalid(
                "misfire",
                format!("{other:?} is not one of run_latest, run_all"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::RunLatest => "run_latest",
            Misfire::RunAll => "run_all",
        }
    }

    /// Due fires inside the window that run, at most.
    fn runs_at_most(self) -> usize {
        match self {
            Misfire::RunLatest => 1,
            Misfire::RunAll => RUN_ALL_CAP,
        }
    }
}

/// Why a fire was missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// It was due longer ago than the catch-up window.
    OutsideWindow,
    /// A later due fire ran instead (`run_latest`, or past `run_all`'s cap).
    Superseded,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::OutsideWindow => "outside_window",
            MissReason::Superseded => "superseded",
        }
    }
}

/// How a schedule catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catchup {
    pub window_ms: Millis,
    pub misfire: Misfire,
    /// The largest delay added to a fire (0: none).
    pub jitter_ms: Millis,
}

/// What to do now: the fires to run and those missed, oldest first, and where
/// the schedule stands after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub run: Vec<Millis>,
    pub missed: Vec<(Millis, MissReason)>,
    /// The first fire this plan leaves unhandled; `None` when the rule fires no
    /// more.
    pub next_fire_at: Option<Millis>,
    /// When that fire is due (its time plus its jitter).
    pub next_due_at: Option<Millis>,
}

impl Plan {
    /// Whether the plan decides anything.
    pub fn is_empty(&self) -> bool {
        self.run.is_empty() && self.missed.is_empty()
    }
}

/// The delay of one fire, in `0..=jitter_ms`: drawn from the schedule and the
/// fire, so that every server (and every restart) agrees on it.
pub fn jitter(schedule_id: &str, scheduled_for: Millis, jitter_ms: Millis) -> Millis {
    if jitter_ms <= 0 {
        return 0;
    }
    // FNV-1a: stable across builds and machines, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schedule_id
        .as_bytes()
        .iter()
        .chain(scheduled_for.to_le_bytes().iter())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % (jitter_ms as u64 + 1)) as Millis
}

/// When a fire is due: its time plus its jitter.
pub fn due_at(schedule_id: &str, scheduled_for: Millis, jitter_ms: Millis) -> Millis {
    scheduled_for + jitter(schedule_id, scheduled_for, jitter_ms)
}

/// Decides the fires of `rule` due at `now`, starting at `next_fire_at` (the
/// schedule's first unhandled fire).
pub fn plan(
    rule: &Rule,
    schedule_id: &str,
    next_fire_at: Millis,
    catchup: &Catchup,
    now: Millis,
) -> Plan {
    let due = |fire: Millis| due_at(schedule_id, fire, catchup.jitter_ms) <= now;
    let window_start = now - catchup.window_ms;
    let runs_at_most = catchup.misfire.runs_at_most();
    let mut missed = Vec::new();
    // The latest due fires inside the window, `runs_at_most` of them.
    let mut latest: VecDeque<Millis> = VecDeque::with_capacity(runs_at_most + 1);
    let mut looked = 0;
    let mut fire = Some(next_fire_at);
    while let Some(at) = fire.filter(|at| due(*at)) {
        if looked == MAX_FIRES_PER_PLAN {
            break;
        }
        looked += 1;
        if at < window_start {
            missed.push((at, MissReason::OutsideWindow));
        } else {
            latest.push_back(at);
            if latest.len() > runs_at_most {
                let superseded = latest.pop_front().expect("a fire kept");
                missed.push((superseded, MissReason::Superseded));
            }
        }
        fire = rule.next_after(at);
    }
    let more_due = fire.is_some_and(due);
    let (run, next_fire_at) = if more_due && !latest.is_empty() {
        // Later fires are due too: whether these are among the latest is for
        // the next plan to say, which starts with them.
        (Vec::new(), latest.front().copied())
    } else {
        (latest.into_iter().collect(), fire)
    };
    Plan {
        run,
        missed,
        next_fire_at,
        next_due_at: next_fire_at.map(|at| due_at(schedule_id, at, catchup.jitter_ms)),
    }
}

/// An instant as ISO-8601 with an offset (`2026-03-08T02:30:00-05:00`, or `Z`).
pub fn parse_instant(field: &'static str, text: &str) -> Result<Millis, RuleError> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|at| at.as_millisecond())
        .map_err(|_| {
            invalid(
                field,
                format!(
                    "{text:?} is not an ISO-8601 time with an offset (e.g. 2026-05-01T08:00:00-03:00) \
                     nor epoch milliseconds"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::super::When;
    use super::*;

    const MINUTE: Millis = 60_000;
    const HOUR: Millis = 60 * MINUTE;
    /// 2026-05-01T00:00:00Z.
    const T0: Millis = 1_777_593_600_000;

    fn every_10_minutes() -> Rule {
        Rule::new(&When::Cron("*/10 * * * *".into()), "UTC", None, None, 0).unwrap()
    }

    fn catchup(misfire: Misfire) -> Catchup {
        Catchup {
            window_ms: HOUR,
            misfire,
            jitter_ms: 0,
        }
    }

    #[test]
    fn on_time_one_fire_runs_and_the_next_is_ahead() {
        let rule = every_10_minutes();
        for misfire in [Misfire::RunLatest, Misfire::RunAll] {
            let plan = plan(&rule, "s", T0, &catchup(misfire), T0 + 3);
            assert_eq!(plan.run, [T0]);
            assert!(plan.missed.is_empty());
            assert_eq!(plan.next_fire_at, Some(T0 + 10 * MINUTE));
            assert_eq!(plan.next_due_at, plan.next_fire_at);
        }
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let plan = plan(
            &every_10_minutes(),
            "s",
            T0,
            &catchup(Misfire::RunAll),
            T0 - 1,
        );
        assert!(plan.is_empty());
        assert_eq!(plan.next_fire_at, Some(T0));
    }

    #[test]
    fn after_3_hours_down_run_latest_runs_one_and_misses_the_rest() {
        // Fires at T0, T0+10 min, ..., T0+3 h: 19 due.
        let now = T0 + 3 * HOUR;
        let plan = plan(
            &every_10_minutes(),
            "s",
            T0,
            &catchup(Misfire::RunLatest),
            now,
        );
        assert_eq!(plan.run, [now]);
        let outside: Vec<Millis> = plan
            .missed
            .iter()
            .filter(|(_, why)| *why == MissReason::OutsideWindow)
            .map(|(at, _)| *at)
            .collect();
        // Older than now - 1 h: T0 ... T0 + 1 h 50 min.
        assert_eq!(outside.len(), 12);
        assert_eq!(outside.last(), Some(&(now - HOUR - 10 * MINUTE)));
        let superseded = plan.missed.len() - outside.len();
        // now - 1 h ... now - 10 min.
        assert_eq!(superseded, 6);
        assert_eq!(plan.missed.len() + plan.run.len(), 19);
        assert_eq!(plan.next_fire_at, Some(now + 10 * MINUTE));
    }

    #[test]
    fn after_3_hours_down_run_all_runs_each_fire_of_the_window() {
        let now = T0 + 3 * HOUR;
        let plan = plan(&every_10_minutes(), "s", T0, &catchup(Misfire::RunAll), now);
        let window: Vec<Millis> = (0..=6).map(|n| now - HOUR + n * 10 * MINUTE).collect();
        assert_eq!(plan.run, window);
        assert_eq!(plan.missed.len(), 12);
        assert!(plan
            .missed
            .iter()
            .all(|(_, why)| *why == MissReason::OutsideWindow));
    }

    #[test]
    fn run_all_runs_the_latest_100_of_a_crowded_window() {
        let rule = Rule::new(&When::Cron("* * * * * *".into()), "UTC", None, None, 0).unwrap();
        // 500 fires due, all inside the hour.
        let now = T0 + 499_000;
        let plan = plan(&rule, "s", T0, &catchup(Misfire::RunAll), now);
        assert_eq!(plan.run.len(), RUN_ALL_CAP);
        assert_eq!(plan.run.first(), Some(&(now - 99_000)));
        assert_eq!(plan.missed.len(), 400);
        assert!(plan
            .missed
            .iter()
            .all(|(_, why)| *why == MissReason::Superseded));
    }

    #[test]
    fn a_long_backlog_is_decided_in_bounded_plans_that_add_up() {
        let rule = Rule::new(&When::Cron("* * * * * *".into()), "UTC", None, None, 0).unwrap();
        // 3 h of a fire per second: 10,801 due; the window holds the last 3,601.
        let now = T0 + 3 * HOUR;
        let mut next = Some(T0);
        let (mut runs, mut missed, mut plans) = (Vec::new(), 0, 0);
        while let Some(at) = next {
            let plan = plan(&rule, "s", at, &catchup(Misfire::RunLatest), now);
            if plan.is_empty() {
                break;
            }
            plans += 1;
            assert!(plan.run.len() + plan.missed.len() <= MAX_FIRES_PER_PLAN);
            runs.extend(plan.run);
            missed += plan.missed.len();
            next = plan.next_fire_at;
        }
        assert_eq!(runs, [now]);
        assert_eq!(missed, 10_800);
        assert!(plans >= 11, "{plans} plans");
        assert_eq!(next, Some(now + 1000));
    }

    #[test]
    fn jitter_delays_a_fire_the_same_way_everywhere() {
        let rule = every_10_minutes();
        let catchup = Catchup {
            jitter_ms: 30_000,
            ..catchup(Misfire::RunLatest)
        };
        let delay = jitter("sched", T0, 30_000);
        assert!((0..=30_000).contains(&delay));
        assert_eq!(delay, jitter("sched", T0, 30_000));
        assert_ne!(
            (0..20)
                .map(|n| jitter("sched", T0 + n * 600_000, 30_000))
                .collect::<std::collections::HashSet<_>>()
                .len(),
            1,
            "fires get different delays"
        );
        assert_eq!(jitter("sched", T0, 0), 0);
        let early = plan(&rule, "sched", T0, &catchup, T0 + delay - 1);
        assert!(early.is_empty());
        assert_eq!(early.next_due_at, Some(T0 + delay));
        let due = plan(&rule, "sched", T0, &catchup, T0 + delay);
        assert_eq!(due.run, [T0]);
    }

    #[test]
    fn the_end_of_the_rule_ends_the_plan() {
        let rule = Rule::new(
            &When::Cron("*/10 * * * *".into()),
            "UTC",
            None,
            Some(T0 + 10 * MINUTE),
            0,
        )
        .unwrap();
        let plan = plan(&rule, "s", T0, &catchup(Misfire::RunAll), T0 + HOUR);
        assert_eq!(plan.run, [T0, T0 + 10 * MINUTE]);
        assert_eq!(plan.next_fire_at, None);
        assert_eq!(plan.next_due_at, None);
    }

    #[test]
    fn overlap_rules() {
        assert!(Overlap::Skip.allows(0, 0));
        assert!(!Overlap::Skip.allows(0, 1));
        assert!(!Overlap::Skip.allows(1, 0));
        assert!(Overlap::BufferOne.allows(0, 1));
        assert!(!Overlap::BufferOne.allows(1, 1));
        assert!(Overlap::Allow.allows(5, 5));
        for overlap in [Overlap::Skip, Overlap::BufferOne, Overlap::Allow] {
            assert_eq!(Overlap::parse(overlap.as_str()), Ok(overlap));
        }
        assert_eq!(Overlap::parse("queue").unwrap_err().field, "overlap");
        assert_eq!(Misfire::parse("run_some").unwrap_err().field, "misfire");
    }

    #[test]
    fn instants_with_an_offset() {
        assert_eq!(parse_instant("start_at", "2026-05-01T00:00:00Z"), Ok(T0));
        assert_eq!(
            parse_instant("start_at", "2026-04-30T21:00:00-03:00"),
            Ok(T0)
        );
        assert_eq!(
            parse_instant("end_at", "2026-05-01 00:00")
                .unwrap_err()
                .field,
            "end_at"
        );
    }
}
