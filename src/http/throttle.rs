//! Login throttling: login attempts are counted per user name and per client address, and past
//! a limit further attempts get 429 with `Retry-After` without reaching the IMAP server, so a
//! password-guessing client costs the upstream a handful of failed logins per window.
//!
//! An attempt counts from the moment it starts, not when the server answers: attempts still
//! waiting for the server (Dovecot's auth penalty holds a failed login's successor back by up
//! to 15 s) take their place in the count, so a guesser who sends many at once gets no more
//! than one who waits for each answer. What does not succeed stays counted whatever the reason
//! — a refusal, a timeout, an upstream error, a client that hung up — because the bridge cannot
//! tell a slow refusal from a slow server. The one exception is an attempt the caller settles
//! with [`Attempt::not_counted`] because the server could not be reached at all (see the login
//! handler): it told nobody anything, and an outage must not leave users locked out after it.
//!
//! A success gives back what the attempt took from the address's count and clears the user
//! name's count (its owner knows the password). Counting is a fixed window per key that starts
//! at the key's first attempt. IPv6 clients are counted per /64, the block one subscriber
//! usually holds.
//!
//! The counters live in a bounded cache whose entries expire with their window by themselves:
//! nothing scans a table under a lock, and at most [`MAX_KEYS`] keys are remembered. Past that
//! the cache keeps the keys used most often (TinyLFU), so a flood of one-off user names or
//! addresses does not push out the counter of a user who is being guessed.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::Sha256;

/// Most keys (user names and addresses together) remembered at once.
pub const MAX_KEYS: u64 = 100_000;

/// A counted key. User names are kept only as a keyed hash: the table holds no names, and
/// every entry has the same small size whatever the name's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(u128),
    Address(IpAddr),
}

/// One key's window.
#[derive(Debug)]
struct Window {
    started: Instant,
    attempts: AtomicU32,
}

impl Window {
    fn left(&self, window: Duration) -> Duration {
        window.saturating_sub(self.started.elapsed())
    }

    fn give_back(&self) {
        // Never below zero, even if a window was cleared meanwhile.
        let _ = self
            .attempts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// Login attempt counters.
pub struct LoginThrottle {
    per_user: u32,
    per_address: u32,
    window: Duration,
    hash_key: [u8; 32],
    counts: Cache<Key, Arc<Window>>,
}

/// A login attempt that was let through. Dropping it without settling it leaves it counted as
/// a failure, which is what every way of not succeeding should do.
#[must_use = "an attempt that is dropped counts as a failed login"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    user: (Key, Arc<Window>),
    address: Option<Arc<Window>>,
}

impl Attempt<'_> {
    /// The login succeeded: the user name's count is cleared, and the address gets back what
    /// the attempt took.
    pub fn succeeded(self) {
        self.throttle.counts.invalidate(&self.user.0);
        if let Some(address) = &self.address {
            address.give_back();
        }
    }

    /// The attempt does not count at all: the server was never reached.
    pub fn not_counted(self) {
        self.user.1.give_back();
        if let Some(address) = &self.address {
            address.give_back();
        }
    }
}

impl LoginThrottle {
    /// At most `per_user` attempts that did not succeed per user name and `per_address` per
    /// client address in `window`.
    pub fn new(per_user: u32, per_address: u32, window: Duration) -> Self {
        let mut hash_key = [0u8; 32];
        rand::fill(&mut hash_key);
        LoginThrottle {
            per_user,
            per_address,
            window,
            hash_key,
            counts: Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(window)
                .build(),
        }
    }

    /// Lets an attempt for `user` from `address` through and counts it, or answers
    /// `Err(retry_after)` when the user name or the address has no attempts left in its
    /// window.
    pub fn begin(&self, user: &str, address: Option<IpAddr>) -> Result<Attempt<'_>, Duration> {
        let user_key = Key::User(self.user_hash(user));
        let user_window = self.take(user_key, self.per_user)?;
        let address = match address {
            None => None,
            Some(address) => match self.take(Key::Address(block(address)), self.per_address) {
                Ok(window) => Some(window),
                Err(wait) => {
                    user_window.give_back();
                    return Err(wait);
                }
            },
        };
        Ok(Attempt {
            throttle: self,
            user: (user_key, user_window),
            address,
        })
    }

    /// Takes one attempt from `key`'s window, if it has one left.
    fn take(&self, key: Key, limit: u32) -> Result<Arc<Window>, Duration> {
        let window = self.counts.get_with(key, || {
            Arc::new(Window {
                started: Instant::now(),
                attempts: AtomicU32::new(0),
            })
        });
        // Taking and giving back on a miss keeps the count exact for attempts that race.
        if window.attempts.fetch_add(1, Ordering::SeqCst) >= limit {
            window.give_back();
            return Err(window.left(self.window).max(Duration::from_secs(1)));
        }
        Ok(window)
    }

    /// Keys remembered now (for tests and measurements; runs the cache's pending upkeep first).
    pub fn keys(&self) -> u64 {
        self.counts.run_pending_tasks();
        self.counts.entry_count()
    }

    fn user_hash(&self, user: &str) -> u128 {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("any key length");
        mac.update(user.to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"))
    }
}

/// The address as counted: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as IPv4).
fn block(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("an address"))
    }

    /// An attempt that fails.
    fn fail(t: &LoginThrottle, user: &str, address: Option<IpAddr>) {
        drop(t.begin(user, address).expect("let through"));
    }

    #[test]
    fn a_user_name_is_throttled_after_its_failures_whatever_the_address() {
        let t = LoginThrottle::new(3, 100, Duration::from_secs(60));
        for i in 0..3 {
            fail(&t, "Alice", ip(&format!("10.0.0.{i}")));
        }
        let wait = t.begin("alice", ip("10.9.9.9")).err().expect("throttled");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        t.begin("bob", ip("10.9.9.9"))
            .expect("others are not")
            .succeeded();
        // The right password from elsewhere is no different: the bridge cannot tell who sends it.
        assert!(t.begin("ALICE", ip("10.9.9.8")).is_err());
    }

    #[test]
    fn attempts_in_flight_count_so_a_burst_gets_no_more_than_the_limit() {
        let t = LoginThrottle::new(5, 100, Duration::from_secs(60));
        let burst: Vec<_> = (0..10).map(|_| t.begin("alice", ip("192.0.2.1"))).collect();
        assert_eq!(burst.iter().filter(|a| a.is_ok()).count(), 5);
        drop(burst);
        assert!(
            t.begin("alice", ip("192.0.2.2")).is_err(),
            "all five failed"
        );
    }

    #[test]
    fn a_success_clears_the_user_and_gives_the_address_its_attempt_back() {
        let t = LoginThrottle::new(3, 2, Duration::from_secs(60));
        fail(&t, "alice", ip("192.0.2.1"));
        fail(&t, "alice", ip("192.0.2.2"));
        t.begin("alice", ip("192.0.2.1"))
            .expect("a third attempt")
            .succeeded();
        for _ in 0..2 {
            fail(&t, "alice", ip("192.0.2.3"));
        }
        t.begin("alice", ip("192.0.2.4"))
            .expect("cleared")
            .succeeded();
        // Successes from one address (a NAT, an office) never use up its attempts.
        for _ in 0..10 {
            t.begin("carol", ip("192.0.2.1"))
                .expect("successes are free")
                .succeeded();
        }
        fail(&t, "dave", ip("192.0.2.1"));
        assert!(
            t.begin("erin", ip("192.0.2.1")).is_err(),
            "its two failures"
        );
    }

    #[test]
    fn an_attempt_that_is_not_counted_costs_nothing() {
        let t = LoginThrottle::new(1, 1, Duration::from_secs(60));
        for _ in 0..5 {
            t.begin("alice", ip("192.0.2.1"))
                .expect("let through")
                .not_counted();
        }
        fail(&t, "alice", ip("192.0.2.1"));
        assert!(t.begin("alice", None).is_err());
    }

    #[test]
    fn an_address_is_throttled_across_user_names_and_ipv6_by_its_64() {
        let t = LoginThrottle::new(100, 2, Duration::from_secs(60));
        fail(&t, "a", ip("2001:db8:1:2::1"));
        fail(&t, "b", ip("2001:db8:1:2:ffff::9"));
        assert!(t.begin("c", ip("2001:db8:1:2::77")).is_err(), "same /64");
        t.begin("c", ip("2001:db8:1:3::1"))
            .expect("another /64")
            .succeeded();
        fail(&t, "a", ip("::ffff:192.0.2.1"));
        fail(&t, "b", ip("192.0.2.1"));
        assert!(
            t.begin("c", ip("192.0.2.1")).is_err(),
            "mapped IPv4 is IPv4"
        );
    }

    #[test]
    fn an_attempt_refused_for_its_address_takes_nothing_from_the_user() {
        let t = LoginThrottle::new(1, 1, Duration::from_secs(60));
        fail(&t, "guessed", ip("192.0.2.1"));
        for _ in 0..3 {
            assert!(t.begin("alice", ip("192.0.2.1")).is_err());
        }
        t.begin("alice", ip("192.0.2.2"))
            .expect("alice has her attempt")
            .succeeded();
    }

    #[test]
    fn windows_expire() {
        let t = LoginThrottle::new(1, 1, Duration::from_millis(30));
        fail(&t, "a", ip("192.0.2.1"));
        assert!(t.begin("a", None).is_err());
        std::thread::sleep(Duration::from_millis(40));
        t.begin("a", ip("192.0.2.1"))
            .expect("a new window")
            .succeeded();
    }
}
