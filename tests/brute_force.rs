//! Password guessing gets nowhere: failed logins are counted per user name and per client
//! address, and past the limit the bridge answers 429 with `Retry-After` without asking the
//! IMAP server, which therefore sees only a few failed LOGINs. The client's address reaches
//! the server with IMAP ID.
//!
//! Dovecot runs with its default auth penalty here: failed logins hold back every later login
//! from the same address, and every login through the bridge comes from the bridge's address
//! unless Dovecot trusts the bridge (`login_trusted_networks`) and so charges the client
//! address the bridge forwards.

mod common;

use std::time::{Duration, Instant};

use common::bridge::{Link, PASSWORD, TestBridge, USER, json_of};
use common::dovecot::DovecotOptions;
use imap_bridge::config::{Config, Security};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Tries to log in, optionally as coming from `address` (through X-Forwarded-For).
async fn attempt(
    bridge: &TestBridge,
    user: &str,
    password: &str,
    address: Option<&str>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"username": user, "password": password}));
    if let Some(address) = address {
        req = req.header("x-forwarded-for", format!("198.51.100.99, {address}"));
    }
    let res = req.send().await.expect("login request");
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let (status, body) = json_of(res).await;
    (status, retry, body)
}

/// Failed LOGINs Dovecot's log reports for `user`.
fn failed_logins(bridge: &TestBridge, user: &str) -> usize {
    bridge
        .dovecot
        .log()
        .lines()
        .filter(|l| l.contains("imap-login") && l.contains("auth failed") && l.contains(user))
        .count()
}

#[tokio::test]
async fn a_guessed_user_is_locked_for_the_window_and_the_server_sees_few_failures() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.login_failures_per_user = 3;
        c.login_failures_per_ip = 1000;
    })
    .await;
    bridge.dovecot.add_user("bob", "bobs-password");
    // Bob has a pooled session before the guessing starts, so his login below is answered by
    // the bridge's throttle and pool alone: a new LOGIN would first wait out the penalty
    // Dovecot charges the bridge's address for the guesses, which is not what this is about.
    bridge.login_as("bob", "bobs-password").await;

    // The first guesses side by side, so they do not wait out each other's penalty.
    let guesses = futures::future::join_all(
        ["guess-0", "guess-1", "guess-2"].map(|guess| attempt(&bridge, USER, guess, None)),
    )
    .await;
    for (i, (status, _, body)) in guesses.into_iter().enumerate() {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}: {body}");
    }
    for i in 3..20 {
        let (status, retry, body) = attempt(&bridge, USER, &format!("guess-{i}"), None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "guess {i}: {body}");
        assert_eq!(body["code"], "rate_limited");
        let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
        assert!((1..=300).contains(&retry), "{retry}");
    }
    // Letter case does not open another window.
    let (status, _, _) = attempt(&bridge, &USER.to_uppercase(), "guess", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Within the window even the right password waits: the bridge cannot tell who sends it.
    let (status, _, _) = attempt(&bridge, USER, PASSWORD, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Other users are not affected.
    bridge.login_as("bob", "bobs-password").await;

    let failures = failed_logins(&bridge, USER);
    assert!(
        (1..=3).contains(&failures),
        "the server saw {failures} failed logins for 20 guesses:\n{}",
        bridge.dovecot.log()
    );
}

#[tokio::test]
async fn one_address_guessing_many_users_is_stopped_and_a_success_clears_only_the_user() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.login_failures_per_user = 100;
        c.login_failures_per_ip = 4;
        c.trust_forwarded_for = true;
    })
    .await;
    // The user's pooled session exists before the guessing, so the bridge answers the user's
    // login from 203.0.113.8 below by its throttle and pool alone: a new LOGIN would first wait
    // out the penalty Dovecot charges the bridge's address for the guesses.
    let (status, _, body) = attempt(&bridge, USER, PASSWORD, Some("203.0.113.8")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Side by side, so they do not wait out each other's penalty.
    let users: Vec<String> = (0..4).map(|i| format!("user{i}")).collect();
    let guesses = futures::future::join_all(
        users
            .iter()
            .map(|user| attempt(&bridge, user, "x", Some("203.0.113.7"))),
    )
    .await;
    for (status, _, body) in guesses {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, retry, _) = attempt(&bridge, "user9", "x", Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    // Even the right password from that address waits; another address is fine.
    let (status, _, _) = attempt(&bridge, USER, PASSWORD, Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, body) = attempt(&bridge, USER, PASSWORD, Some("203.0.113.8")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The client's own X-Forwarded-For entries before the proxy's are not believed.
    let res = bridge
        .request(Method::POST, "/v1/auth/login", None)
        .header("x-forwarded-for", "203.0.113.50, 203.0.113.7")
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_client_address_reaches_the_server_with_imap_id() {
    let bridge = TestBridge::start_with(
        DovecotOptions {
            extra_config: "imap_id_log = *\n".into(),
            ..DovecotOptions::default()
        },
        Link::Tls,
        |c| c.trust_forwarded_for = true,
    )
    .await;
    let (status, _, body) = attempt(&bridge, USER, PASSWORD, Some("192.0.2.44")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let log = bridge.dovecot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("x-originating-ip=192.0.2.44") && l.contains("imap-bridge")),
        "Dovecot logged the ID:\n{log}"
    );
}

/// Like [`attempt`], also returning how long the bridge took to answer.
async fn timed_attempt(
    bridge: &TestBridge,
    user: &str,
    password: &str,
    address: Option<&str>,
) -> (StatusCode, Duration, serde_json::Value) {
    let started = Instant::now();
    let (status, _, body) = attempt(bridge, user, password, address).await;
    (status, started.elapsed(), body)
}

#[tokio::test]
async fn logins_held_back_by_dovecots_auth_penalty_are_answered_not_timed_out() {
    // The bridge's own timeouts (which the test harness keeps): the point is what users get.
    let defaults = Config::for_server("localhost", 993, Security::Tls);
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.imap_connect_timeout = defaults.imap_connect_timeout;
        c.imap_command_timeout = defaults.imap_command_timeout;
    })
    .await;
    bridge.dovecot.add_user("bob", "bobs-password");
    // As three failed logins in a row through the bridge leave it (after 18 s of them): Dovecot
    // holds every login from the bridge's address back by 15 s, its longest penalty.
    bridge.dovecot.set_auth_penalty("127.0.0.1", 3);

    let (wrong, right) = tokio::join!(
        timed_attempt(&bridge, USER, "guess-4", None),
        timed_attempt(&bridge, "bob", "bobs-password", None),
    );
    eprintln!(
        "connect timeout {} s, command timeout {} s: a wrong password got {} after {:.1?}, \
         another user's right one {} after {:.1?}",
        defaults.imap_connect_timeout,
        defaults.imap_command_timeout,
        wrong.0,
        wrong.1,
        right.0,
        right.1
    );
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED, "{}", wrong.2);
    assert_eq!(right.0, StatusCode::OK, "{}", right.2);
    assert!(
        right.1 > Duration::from_secs(12),
        "bob's login was not held back at the penalty's top level, so this test no longer shows \
         what it is about: {right:?}"
    );
}

#[tokio::test]
async fn requests_queued_behind_logins_held_back_by_dovecots_auth_penalty_are_served() {
    let defaults = Config::for_server("localhost", 993, Security::Tls);
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.pool_wait_timeout = defaults.pool_wait_timeout;
    })
    .await;
    let token = bridge.login().await;
    // The server drops the user's pooled session, and failed logins by others leave the
    // bridge's address at the penalty's top level.
    bridge.dovecot.kick(USER);
    bridge
        .dovecot
        .wait_for_connections(USER, 0, Duration::from_secs(5));
    bridge.dovecot.set_auth_penalty("127.0.0.1", 3);

    // More requests at once than the user may have sessions (4): the rest wait for one.
    let answers = futures::future::join_all((0..6).map(|_| async {
        let started = Instant::now();
        let (status, body) = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=1")
            .await;
        (status, started.elapsed(), body["code"].clone())
    }))
    .await;
    eprintln!("pool wait {} s: {answers:?}", defaults.pool_wait_timeout);
    for (status, took, code) in &answers {
        assert_eq!(
            *status,
            StatusCode::OK,
            "{code} after {took:?}: {answers:?}"
        );
    }
}

/// Dovecot with its default auth penalty and, when `trusted`, the bridge's address in
/// `login_trusted_networks`; a bridge that believes X-Forwarded-For.
async fn bridge_forwarding_client_addresses(trusted: bool) -> TestBridge {
    let extra_config = if trusted {
        "login_trusted_networks = 127.0.0.1/8\n".to_owned()
    } else {
        String::new()
    };
    let bridge = TestBridge::start_with(
        DovecotOptions {
            extra_config,
            ..DovecotOptions::default()
        },
        Link::Tls,
        |c| c.trust_forwarded_for = true,
    )
    .await;
    bridge.dovecot.add_user("bob", "bobs-password");
    bridge
}

#[tokio::test]
async fn a_dovecot_that_trusts_the_bridge_charges_failed_logins_to_the_client_address() {
    let bridge = bridge_forwarding_client_addresses(true).await;
    let (status, failed, _) = timed_attempt(&bridge, USER, "guess", Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, other, body) =
        timed_attempt(&bridge, "bob", "bobs-password", Some("203.0.113.8")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, same, body) = timed_attempt(&bridge, USER, PASSWORD, Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eprintln!(
        "trusted bridge: failed login from 203.0.113.7 {failed:.2?}, then a login from \
         203.0.113.8 {other:.2?}, and one from 203.0.113.7 {same:.2?}"
    );
    assert!(
        other < Duration::from_secs(1),
        "another client's login waited {other:?}"
    );
    assert!(
        same > Duration::from_millis(1500),
        "the failing client's own next login did not wait ({same:?}): Dovecot no longer \
         charges the forwarded address"
    );
}

#[tokio::test]
async fn a_dovecot_that_does_not_trust_the_bridge_holds_back_every_client_after_a_failure() {
    let bridge = bridge_forwarding_client_addresses(false).await;
    let (status, failed, _) = timed_attempt(&bridge, USER, "guess", Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, other, body) =
        timed_attempt(&bridge, "bob", "bobs-password", Some("203.0.113.8")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eprintln!(
        "untrusted bridge: failed login from 203.0.113.7 {failed:.2?}, then a login from \
         203.0.113.8 {other:.2?}"
    );
    assert!(
        other > Duration::from_millis(1500),
        "another client's login did not wait ({other:?})"
    );
}

/// Four users who keep logging in and working, each from an address of its own behind the
/// trusted proxy, while one client guesses alice's password.
const OTHERS: [(&str, &str, &str); 4] = [
    ("bob", "bobs-password", "198.51.100.11"),
    ("carol", "carols-password", "198.51.100.12"),
    ("dave", "daves-password", "198.51.100.13"),
    ("erin", "erins-password", "198.51.100.14"),
];

/// The guesser's address.
const GUESSER: &str = "203.0.113.7";

/// What a guesser and the others got.
struct Siege {
    bridge: TestBridge,
    /// Each guess's status, `Retry-After` and time to answer.
    guesses: Vec<(StatusCode, Option<String>, Duration)>,
    /// How long each of the others' logins took, all users together.
    logins: Vec<Duration>,
    /// Logins followed by a listing of mailboxes, all 200.
    worked: usize,
}

/// One client sends eight wrong passwords for alice, one after another, while the others log
/// in and list their mailboxes over and over; with the bridge's default throttle (5 per user
/// name, 20 per address) and timeouts, and Dovecot's default auth settings, trusting the
/// bridge's address when `trusted`.
async fn guess_while_others_work(trusted: bool) -> Siege {
    let bridge = bridge_forwarding_client_addresses(trusted).await;
    for (user, password, _) in &OTHERS[1..] {
        bridge.dovecot.add_user(user, password);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let guesser = async {
        let mut guesses = Vec::new();
        for i in 0..8 {
            let started = Instant::now();
            let (status, retry, _) =
                attempt(&bridge, USER, &format!("guess-{i}"), Some(GUESSER)).await;
            guesses.push((status, retry, started.elapsed()));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        guesses
    };
    let workers = OTHERS.iter().map(|(user, password, address)| {
        let (bridge, done) = (&bridge, &done);
        async move {
            let mut logins = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let started = Instant::now();
                let (status, _, body) = attempt(bridge, user, password, Some(address)).await;
                logins.push(started.elapsed());
                assert_eq!(status, StatusCode::OK, "{user}'s login: {body}");
                let token = body["access_token"].as_str().expect("a token");
                let (status, list) = bridge.get_json(token, "/v1/mailboxes").await;
                assert_eq!(status, StatusCode::OK, "{user}'s mailboxes: {list}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            logins
        }
    });
    let (guesses, logins) = tokio::join!(guesser, futures::future::join_all(workers));
    let worked = logins.iter().map(Vec::len).sum();
    Siege {
        bridge,
        guesses,
        logins: logins.into_iter().flatten().collect(),
        worked,
    }
}

impl Siege {
    /// Checks what the guesser got: 401 for its first five guesses, then 429 with
    /// `Retry-After`, never a 5xx; and that the server saw at most five failed logins.
    fn guesser_was_stopped(&self) {
        for (i, (status, retry, took)) in self.guesses.iter().enumerate() {
            if i < 5 {
                assert_eq!(
                    *status,
                    StatusCode::UNAUTHORIZED,
                    "guess {} after {took:?}: {:?}",
                    i + 1,
                    self.guesses
                );
            } else {
                assert_eq!(
                    *status,
                    StatusCode::TOO_MANY_REQUESTS,
                    "guess {}: {:?}",
                    i + 1,
                    self.guesses
                );
                let retry: u64 = retry
                    .as_deref()
                    .expect("Retry-After")
                    .parse()
                    .expect("seconds");
                assert!((1..=300).contains(&retry), "{retry}");
            }
        }
        // Dovecot logs a failed login when the connection closes, just after the answer.
        std::thread::sleep(Duration::from_millis(500));
        let failures = failed_logins(&self.bridge, USER);
        assert!(
            failures <= 5,
            "the server saw {failures} failed logins:\n{}",
            self.bridge.dovecot.log()
        );
    }

    fn describe(&self) -> String {
        let mut logins = self.logins.clone();
        logins.sort();
        let median = logins[logins.len() / 2];
        let slowest = logins[logins.len() - 1];
        let over_a_second = logins
            .iter()
            .filter(|d| **d > Duration::from_secs(1))
            .count();
        let guesses: Vec<String> = self
            .guesses
            .iter()
            .map(|(status, _, took)| format!("{} in {took:.1?}", status.as_u16()))
            .collect();
        format!(
            "guesses: {}; the others' {} logins: median {median:.2?}, slowest {slowest:.2?}, \
             {over_a_second} over 1 s; {} logins followed by a listing",
            guesses.join(", "),
            logins.len(),
            self.worked
        )
    }
}

#[tokio::test]
async fn a_guesser_is_stopped_and_others_log_in_at_once_on_a_dovecot_that_trusts_the_bridge() {
    let siege = guess_while_others_work(true).await;
    eprintln!("login_trusted_networks = 127.0.0.1/8: {}", siege.describe());
    siege.guesser_was_stopped();
    let slowest = siege.logins.iter().max().expect("logins");
    assert!(
        *slowest < Duration::from_secs(1),
        "another user's login waited {slowest:?}: {}",
        siege.describe()
    );
    assert!(
        siege.guesses[1].2 > Duration::from_millis(3500),
        "the guesser's own second guess was not held back by its penalty: {}",
        siege.describe()
    );
}

#[tokio::test]
async fn a_guesser_is_stopped_and_holds_back_others_on_a_dovecot_that_does_not_trust_the_bridge() {
    let siege = guess_while_others_work(false).await;
    eprintln!("no login_trusted_networks: {}", siege.describe());
    siege.guesser_was_stopped();
    // Each failed guess raises the penalty on the bridge's own address, and every login
    // through the bridge waits it out (4, 8, then 15 s), whoever it is for.
    let held_back = siege
        .logins
        .iter()
        .filter(|d| **d > Duration::from_millis(3500))
        .count();
    assert!(
        held_back >= 4,
        "the others' logins were not held back by the guesses: {}",
        siege.describe()
    );
}

#[tokio::test]
async fn a_token_whose_password_the_server_now_refuses_is_401_at_once_and_costs_one_failed_login() {
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;
    assert_eq!(
        bridge.get_json(&token, "/v1/mailboxes").await.0,
        StatusCode::OK
    );
    // The password changes on the server, and the server ends the user's sessions (without
    // that, a session opened before the change would go on working, as it does for any client).
    bridge.dovecot.add_user(USER, "a-new-password");
    bridge.dovecot.kick(USER);
    bridge.wait_for_connections(0, Duration::from_secs(5)).await;
    // Time for the server's BYE to reach the pooled session, which is then found ended.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Ten requests with the old token at once, then ten one after another.
    let burst =
        futures::future::join_all((0..10).map(|_| bridge.get_json(&token, "/v1/mailboxes"))).await;
    for answer in &burst {
        common::bridge::assert_problem(
            answer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a request carrying the old password",
        );
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let answer = bridge
            .get_json(&token, "/v1/mailboxes/INBOX/messages")
            .await;
        slowest = slowest.max(started.elapsed());
        common::bridge::assert_problem(
            &answer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a later request carrying the old password",
        );
    }
    eprintln!("later requests with the old password: slowest answer {slowest:.1?}");
    assert!(
        slowest < Duration::from_millis(500),
        "answered from the server, not from memory: {slowest:?}"
    );
    // Dovecot logs a failed login when the connection closes, just after the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        failed_logins(&bridge, USER),
        1,
        "twenty requests cost the server one failed login:\n{}",
        bridge.dovecot.log()
    );

    // A login always asks the server: the old password is refused again, the new one works,
    // and the old token stays refused without asking.
    let (status, _, body) = attempt(&bridge, USER, PASSWORD, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let fresh = bridge.login_as(USER, "a-new-password").await;
    assert_eq!(
        bridge.get_json(&fresh, "/v1/mailboxes").await.0,
        StatusCode::OK
    );
    common::bridge::assert_problem(
        &bridge.get_json(&token, "/v1/mailboxes").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the old token after a login with the new password",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        failed_logins(&bridge, USER),
        2,
        "the login with the old password, and nothing else:\n{}",
        bridge.dovecot.log()
    );
}

#[tokio::test]
async fn logins_during_an_outage_get_503_and_are_not_counted() {
    // A server that accepts no connection at all: the port of a listener that is gone.
    let gone = common::bridge::free_local_addr();
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.imap_port = Some(gone.port());
    })
    .await;
    for i in 0..8 {
        let (status, retry, body) = attempt(&bridge, USER, PASSWORD, Some("203.0.113.9")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("upstream_unavailable")
            ),
            "attempt {}: {body}",
            i + 1
        );
        assert!(retry.is_some(), "503 says when to come back");
    }
}
