//! Login throttling. An attempt is counted when it is admitted, before its
//! password is checked, so that many guesses sent at once cannot all be
//! checked: past the limit they are refused (429) until earlier ones are
//! settled.
//!
//! - **Per address**: `per_address` failures (and attempts in flight) from one
//!   client address, then that address is refused until `window` has passed
//!   since its first failure. A stranger can only lock out their own address.
//! - **Per username**: `per_username` failures, then each further attempt must
//!   wait 1 s after the last failure, then 2 s, 4 s, ... up to `max_backoff`,
//!   and only one is checked at a time. An attacker gets about one guess per
//!   `max_backoff` on a username, whatever the number of their addresses.
//!   Failures are forgotten `window` after the last one.
//! - **Trusted addresses**: a successful login makes its address trusted for
//!   that username (for [`TRUST_FOR`], up to [`TRUSTED_PER_USER`] addresses).
//!   Attempts from a trusted address are counted on their own (username and
//!   address together), so a stranger guessing a username slows its logins
//!   from new addresses only: never from where it logged in before.
//!
//! The trade-off: a stranger can make a username's logins from new addresses
//! wait up to `max_backoff` between attempts for as long as they keep guessing;
//! nobody is ever locked out for longer than that at a time, and the state is
//! kept in memory, per server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginLimits;

/// How long an address stays trusted for a username after a login from it.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Trusted addresses kept per username (the most recent).
pub const TRUSTED_PER_USER: usize = 16;
/// The first wait past the per-username limit; each failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Entries are pruned when a map grows past this, so that a flood of distinct
/// usernames or addresses cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

pub struct LoginThrottle {
    limits: LoginLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Attempts on a username from addresses it has not logged in from.
    usernames: HashMap<String, Backoff>,
    /// Attempts on a username from one of its trusted addresses.
    pairs: HashMap<(String, IpAddr), Backoff>,
    /// Attempts per address ([`network_of`]).
    addresses: HashMap<IpAddr, Window>,
    trusted: HashMap<String, Vec<(IpAddr, Instant)>>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    in_flight: u32,
    last_failure: Option<Instant>,
}

struct Window {
    started: Instant,
    /// Failures plus attempts in flight.
    counted: u32,
}

/// Which counter an attempt on a username was admitted under.
#[derive(Clone, PartialEq)]
enum Counter {
    Username(String),
    Pair(String, IpAddr),
    /// A name longer than any user's: counted per address only.
    None,
}

/// An admitted attempt; settle it with [`LoginThrottle::succeeded`] or
/// [`LoginThrottle::failed`]. Dropped unsettled (the client hung up during the
/// check), it counts as failed.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    counter: Counter,
    address: IpAddr,
    settled: bool,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits an attempt and counts it, or says how long to wait.
    pub fn admit(&self, username: &str, address: IpAddr) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let limits = &self.limits;
        let mut state = self.state();
        state.prune(now, limits.window);
        let window = state
            .addresses
            .entry(network_of(address))
            .or_insert(Window {
                started: now,
                counted: 0,
            });
        if now.duration_since(window.started) >= limits.window {
            *window = Window {
                started: now,
                counted: 0,
            };
        }
        if window.counted >= limits.per_address {
            return Err(limits
                .window
                .saturating_sub(now.duration_since(window.started)));
        }
        let counter = if username.len() > super::users::MAX_USERNAME_LEN {
            Counter::None
        } else if state.is_trusted(username, address, now) {
            Counter::Pair(username.to_owned(), address)
        } else {
            Counter::Username(username.to_owned())
        };
        if let Some(backoff) = state.backoff(&counter) {
            backoff.admit(now, limits)?;
        }
        if let Some(window) = state.addresses.get_mut(&network_of(address)) {
            window.counted += 1;
        }
        Ok(Attempt {
            throttle: self,
            counter,
            address,
            settled: false,
        })
    }

    /// The password was right: the address becomes trusted for the username.
    /// Earlier failures on the username stay counted, so that a user's login
    /// gives no one fresh guesses.
    pub fn succeeded(&self, mut attempt: Attempt<'_>, username: &str) {
        attempt.settled = true;
        let now = Instant::now();
        let mut state = self.state();
        if let Some(window) = state.addresses.get_mut(&network_of(attempt.address)) {
            window.counted = window.counted.saturating_sub(1);
        }
        if let Some(backoff) = state.backoff(&attempt.counter) {
            backoff.in_flight = backoff.in_flight.saturating_sub(1);
        }
        if attempt.counter == Counter::None {
            return;
        }
        state.pairs.remove(&(username.to_owned(), attempt.address));
        let trusted = state.trusted.entry(username.to_owned()).or_default();
        trusted.retain(|(address, since)| {
            *address != attempt.address && now.duration_since(*since) < TRUST_FOR
        });
        trusted.push((attempt.address, now));
        if trusted.len() > TRUSTED_PER_USER {
            trusted.remove(0);
        }
    }

    /// The password was wrong (or the user unknown).
    pub fn failed(&self, mut attempt: Attempt<'_>) {
        attempt.settled = true;
        self.settle_failure(&attempt.counter);
    }

    fn settle_failure(&self, counter: &Counter) {
        let mut state = self.state();
        if let Some(backoff) = state.backoff(counter) {
            backoff.in_flight = backoff.in_flight.saturating_sub(1);
            backoff.failures = backoff.failures.saturating_add(1);
            backoff.last_failure = Some(Instant::now());
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle_failure(&self.counter);
        }
    }
}

impl State {
    fn backoff(&mut self, counter: &Counter) -> Option<&mut Backoff> {
        match counter {
            Counter::Username(name) => Some(self.usernames.entry(name.clone()).or_default()),
            Counter::Pair(name, address) => {
                Some(self.pairs.entry((name.clone(), *address)).or_default())
            }
            Counter::None => None,
        }
    }

    fn is_trusted(&self, username: &str, address: IpAddr, now: Instant) -> bool {
        self.trusted.get(username).is_some_and(|trusted| {
            trusted
                .iter()
                .any(|(a, since)| *a == address && now.duration_since(*since) < TRUST_FOR)
        })
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        let stale = |backoff: &Backoff| {
            backoff.in_flight == 0
                && backoff
                    .last_failure
                    .is_none_or(|last| now.duration_since(last) >= window)
        };
        if self.usernames.len() >= MAX_TRACKED {
            self.usernames.retain(|_, b| !stale(b));
        }
        if self.pairs.len() >= MAX_TRACKED {
            self.pairs.retain(|_, b| !stale(b));
        }
        if self.addresses.len() >= MAX_TRACKED {
            self.addresses
                .retain(|_, w| now.duration_since(w.started) < window);
        }
        if self.trusted.len() >= MAX_TRACKED {
            self.trusted.retain(|_, trusted| {
                trusted.retain(|(_, since)| now.duration_since(*since) < TRUST_FOR);
                !trusted.is_empty()
            });
        }
    }
}

impl Backoff {
    fn admit(&mut self, now: Instant, limits: &LoginLimits) -> Result<(), Duration> {
        if let Some(last) = self.last_failure {
            if now.duration_since(last) >= limits.window {
                self.failures = 0;
                self.last_failure = None;
            }
        }
        let counted = self.failures + self.in_flight;
        if counted >= limits.per_username {
            if self.in_flight > 0 {
                // Past the limit, one attempt at a time.
                return Err(FIRST_BACKOFF);
            }
            let excess = (counted - limits.per_username).min(30);
            let wait = (FIRST_BACKOFF * 2u32.pow(excess)).min(limits.max_backoff);
            if let Some(last) = self.last_failure {
                let ready = last + wait;
                if now < ready {
                    return Err(ready - now);
                }
            }
        }
        self.in_flight += 1;
        Ok(())
    }
}

/// The address an address's attempts are counted under: an IPv6 address's /64,
/// which one client usually holds whole (so that it cannot take a fresh
/// address for every few guesses); an IPv4 address itself, also when written
/// as IPv4-mapped IPv6.
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_username: u32, per_address: u32) -> LoginLimits {
        LoginLimits {
            window: Duration::from_secs(900),
            per_username,
            per_address,
            max_backoff: Duration::from_secs(60),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn attempts_in_flight_count_before_their_check() {
        let throttle = LoginThrottle::new(limits(3, 100));
        let admitted: Vec<_> = (0..3)
            .map(|_| throttle.admit("target", ip(1)).expect("under the limit"))
            .collect();
        assert!(throttle.admit("target", ip(2)).is_err());
        for attempt in admitted {
            throttle.failed(attempt);
        }
        // Past the limit, the next attempt waits for the first step.
        let wait = throttle.admit("target", ip(3)).err().expect("a wait");
        assert!(wait <= FIRST_BACKOFF && wait > Duration::ZERO, "{wait:?}");
    }

    #[test]
    fn an_attempt_dropped_unsettled_counts_as_failed() {
        let throttle = LoginThrottle::new(limits(1, 100));
        drop(throttle.admit("target", ip(1)).unwrap());
        assert!(throttle.admit("target", ip(1)).is_err());
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap() {
        let limits = limits(2, 1000);
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..12 {
            loop {
                match backoff.admit(now, &limits) {
                    Ok(()) => break,
                    Err(wait) => {
                        now += wait;
                    }
                }
            }
            waits.push(now.duration_since(backoff.last_failure.unwrap_or(start)));
            backoff.in_flight -= 1;
            backoff.failures += 1;
            backoff.last_failure = Some(now);
        }
        let secs: Vec<u64> = waits.iter().skip(2).map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn a_trusted_address_is_not_slowed_by_a_strangers_guesses() {
        let throttle = LoginThrottle::new(limits(2, 100));
        let home = ip(1);
        let ok = throttle.admit("user", home).unwrap();
        throttle.succeeded(ok, "user");
        for _ in 0..2 {
            let guess = throttle.admit("user", ip(66)).unwrap();
            throttle.failed(guess);
        }
        assert!(
            throttle.admit("user", ip(66)).is_err(),
            "the stranger waits"
        );
        assert!(
            throttle.admit("user", ip(67)).is_err(),
            "and so does any new address"
        );
        let ok = throttle.admit("user", home).expect("home is not slowed");
        throttle.succeeded(ok, "user");
    }

    #[test]
    fn an_address_is_refused_past_its_limit_whatever_the_username() {
        let throttle = LoginThrottle::new(limits(100, 3));
        for n in 0..3 {
            let attempt = throttle.admit(&format!("guess-{n}"), ip(9)).unwrap();
            throttle.failed(attempt);
        }
        assert!(throttle.admit("admin", ip(9)).is_err());
        assert!(throttle.admit("admin", ip(10)).is_ok());
    }

    #[test]
    fn the_addresses_of_one_ipv6_network_share_one_limit() {
        let throttle = LoginThrottle::new(limits(100, 3));
        let host = |n: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, n));
        for n in 0..3 {
            let attempt = throttle.admit(&format!("guess-{n}"), host(n)).unwrap();
            throttle.failed(attempt);
        }
        assert!(throttle.admit("admin", host(99)).is_err());
        let next_network = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(throttle.admit("admin", next_network).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(network_of(mapped), "192.0.2.9".parse::<IpAddr>().unwrap());
    }
}
