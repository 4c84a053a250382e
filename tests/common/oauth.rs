//! A small OAuth 2.0 token introspection endpoint (RFC 7662) on loopback, playing the identity
//! provider's part for a real Dovecot whose `oauth2` passdb asks it whether an access token is
//! valid and whose it is (see [`DovecotOptions::oauth2`](super::dovecot::DovecotOptions)).
//!
//! Tests issue tokens for users and revoke them as a provider would let them expire. Dovecot
//! posts `token=<token>` (`introspection_mode = post`) and reads `active` and `username` from
//! the JSON answer. Every introspection is counted, so a test can tell whether Dovecot asked.
//!
//! It depends only on `std`, like `dovecot.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The introspection endpoint and the tokens it knows.
pub struct Introspection {
    addr: SocketAddr,
    tokens: Arc<Mutex<HashMap<String, Grant>>>,
    asked: Arc<AtomicUsize>,
    next: AtomicU64,
}

#[derive(Debug, Clone)]
struct Grant {
    username: String,
    active: bool,
}

impl Introspection {
    /// Starts serving on a free loopback port, for as long as the test process runs.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the introspection endpoint");
        let addr = listener.local_addr().expect("its address");
        let tokens: Arc<Mutex<HashMap<String, Grant>>> = Arc::default();
        let asked = Arc::new(AtomicUsize::new(0));
        let (known, counter) = (tokens.clone(), asked.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (known, counter) = (known.clone(), counter.clone());
                thread::spawn(move || serve(stream, &known, &counter));
            }
        });
        Introspection {
            addr,
            tokens,
            asked,
            next: AtomicU64::new(1),
        }
    }

    /// The URL to give Dovecot as `introspection_url`.
    pub fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// A new active access token for `username`: RFC 6750 `b64token` characters, shaped like
    /// the providers' (`ya29.`…).
    pub fn issue(&self, username: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let token = format!("ya29.test-{n}-{nanos:08x}_Ab-cD~e+f/g==");
        self.tokens.lock().expect("tokens").insert(
            token.clone(),
            Grant {
                username: username.to_owned(),
                active: true,
            },
        );
        token
    }

    /// Makes `token` inactive, as an expired or revoked token is.
    pub fn revoke(&self, token: &str) {
        if let Some(grant) = self.tokens.lock().expect("tokens").get_mut(token) {
            grant.active = false;
        }
    }

    /// How many introspection requests Dovecot has made.
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }
}

/// Answers one connection's requests (Dovecot keeps connections alive).
fn serve(stream: TcpStream, tokens: &Mutex<HashMap<String, Grant>>, asked: &AtomicUsize) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        asked.fetch_add(1, Ordering::Relaxed);
        let token = form_value(&String::from_utf8_lossy(&body), "token");
        let grant = token.and_then(|t| tokens.lock().expect("tokens").get(&t).cloned());
        let json = match grant {
            Some(Grant {
                username,
                active: true,
            }) => format!(r#"{{"active":true,"username":"{username}","scope":"mail"}}"#),
            _ => r#"{"active":false}"#.to_owned(),
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
