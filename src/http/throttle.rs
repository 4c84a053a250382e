//! Login throttling: failed logins are counted per user name and per client address, and past
//! a limit further attempts get 429 with `Retry-After` without reaching the IMAP server, so a
//! password-guessing client costs the upstream a handful of failed LOGINs per window.
//!
//! Counting is a fixed window per key that starts at the first failure. A successful login
//! clears the user name's count (its owner knows the password), never the address's. IPv6
//! clients are counted per /64, the block one subscriber usually holds. The table is bounded:
//! when full, expired windows are dropped, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered at once.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed-login counters.
pub struct LoginThrottle {
    per_user: u32,
    per_address: u32,
    window: Duration,
    counts: Mutex<HashMap<Key, Window>>,
}

impl LoginThrottle {
    /// At most `per_user` failures per user name and `per_address` per client address in
    /// `window`.
    pub fn new(per_user: u32, per_address: u32, window: Duration) -> Self {
        LoginThrottle {
            per_user,
            per_address,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `user` or `address` used up its failures.
    pub fn check(&self, user: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let counts = self.counts.lock().expect("throttle poisoned");
        let mut wait = Duration::ZERO;
        for (key, limit) in self.keys(user, address) {
            if let Some(w) = counts.get(&key)
                && w.failures >= limit
            {
                let left = (w.started + self.window).saturating_duration_since(now);
                wait = wait.max(left);
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut counts = self.counts.lock().expect("throttle poisoned");
        if counts.len() >= MAX_KEYS {
            counts.retain(|_, w| now.duration_since(w.started) < self.window);
            if counts.len() >= MAX_KEYS
                && let Some(oldest) = counts
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone())
            {
                counts.remove(&oldest);
            }
        }
        for (key, _) in self.keys(user, address) {
            let w = counts.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= self.window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// Clears the user name's count after a successful login.
    pub fn succeeded(&self, user: &str) {
        self.counts
            .lock()
            .expect("throttle poisoned")
            .remove(&Key::User(user.to_lowercase()));
    }

    fn keys(&self, user: &str, address: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::User(user.to_lowercase()), self.per_user)];
        if let Some(address) = address {
            keys.push((Key::Address(block(address)), self.per_address));
        }
        keys
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

    #[test]
    fn a_user_name_is_throttled_after_its_failures_whatever_the_address() {
        let t = LoginThrottle::new(3, 100, Duration::from_secs(60));
        for i in 0..3 {
            assert!(t.check("Alice", ip(&format!("10.0.0.{i}"))).is_ok());
            t.failed("Alice", ip(&format!("10.0.0.{i}")));
        }
        let wait = t.check("alice", ip("10.9.9.9")).expect_err("throttled");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        assert!(t.check("bob", ip("10.9.9.9")).is_ok(), "others are not");
        t.succeeded("ALICE");
        assert!(
            t.check("alice", ip("10.9.9.9")).is_ok(),
            "cleared by a success"
        );
    }

    #[test]
    fn an_address_is_throttled_across_user_names_and_ipv6_by_its_64() {
        let t = LoginThrottle::new(100, 2, Duration::from_secs(60));
        t.failed("a", ip("2001:db8:1:2::1"));
        t.failed("b", ip("2001:db8:1:2:ffff::9"));
        assert!(t.check("c", ip("2001:db8:1:2::77")).is_err(), "same /64");
        assert!(t.check("c", ip("2001:db8:1:3::1")).is_ok(), "another /64");
        t.failed("a", ip("::ffff:192.0.2.1"));
        t.failed("b", ip("192.0.2.1"));
        assert!(
            t.check("c", ip("192.0.2.1")).is_err(),
            "mapped IPv4 is IPv4"
        );
        t.succeeded("c");
        assert!(
            t.check("c", ip("192.0.2.1")).is_err(),
            "a success clears no address"
        );
    }

    #[test]
    fn windows_expire() {
        let t = LoginThrottle::new(1, 1, Duration::from_millis(30));
        t.failed("a", ip("192.0.2.1"));
        assert!(t.check("a", None).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(t.check("a", ip("192.0.2.1")).is_ok());
    }
}
