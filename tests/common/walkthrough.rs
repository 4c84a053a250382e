//! The README's walk-through ("Try it with curl"), run exactly as written against a bridge.
//!
//! `scripts/demo` prints the walk-through, and two runs check it: the demo's smoke run
//! (`examples/demo.rs --smoke`, part of `scripts/test`) against a fresh copy of the demo mailbox,
//! and `tests/deploy.rs` against the compose demo's Dovecot. The text is the README's own, taken
//! from every `sh` block of its "Try it with curl" section; the one change made to it is the
//! bridge's address in its `B=` line, as the demo prints it when it listens elsewhere.
//!
//! [`run`] runs that text with bash (`-eu -o pipefail`) in a scratch directory that holds the
//! repository's `examples/` (the walk-through reads `examples/draft.eml` and saves an attachment
//! where it runs), with `B` pointing at a recording proxy in front of the bridge. It fails
//! when bash fails, when any response is not 2xx or 304 or is an `application/problem+json`
//! problem, or when the number of requests is not the number of `curl` commands in the text
//! (each curl command makes one request on a connection of its own).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The README, as this build was compiled with it.
const README: &str = include_str!("../../README.md");
/// The heading of the walk-through's section.
const SECTION: &str = "## Try it with curl";
/// The walk-through's first line of code, naming the bridge's address.
const BASE_LINE: &str = "B=http://127.0.0.1:8080";
/// Longest time the whole walk-through may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The walk-through as the README writes it: its `sh` blocks, in order, one after the other.
pub fn script() -> Result<String, String> {
    let start = README
        .lines()
        .position(|line| line == SECTION)
        .ok_or_else(|| format!("README.md has no {SECTION:?} section"))?;
    let mut blocks = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in README.lines().skip(start + 1) {
        match &mut block {
            None if line.starts_with("## ") => break,
            None if line == "```sh" => block = Some(Vec::new()),
            None => {}
            Some(lines) if line == "```" => {
                blocks.push(lines.join("\n"));
                block = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    if blocks.is_empty() {
        return Err(format!("README.md's {SECTION:?} section has no sh block"));
    }
    let script = blocks.join("\n\n") + "\n";
    let base_lines = script.lines().filter(|l| *l == BASE_LINE).count();
    if base_lines != 1 {
        return Err(format!(
            "the walk-through should set the bridge's address once, as {BASE_LINE:?}; it does {base_lines} times"
        ));
    }
    Ok(script)
}

/// The walk-through for a bridge at `base` (`http://host:port`).
pub fn script_for(base: &str) -> Result<String, String> {
    Ok(script()?.replacen(BASE_LINE, &format!("B={base}"), 1))
}

/// One request the walk-through made, as the recording proxy saw it.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The request line, e.g. `GET /v1/mailboxes HTTP/1.1`.
    pub request: String,
    /// The final status code; `None` when no response head came back.
    pub status: Option<u16>,
    /// The response's media type, lower case, without parameters.
    pub content_type: Option<String>,
}

impl Exchange {
    /// A success: 2xx, or 304 for a conditional request, and not a problem report.
    pub fn succeeded(&self) -> bool {
        let status_ok = self
            .status
            .is_some_and(|s| (200..300).contains(&s) || s == 304);
        status_ok && self.content_type.as_deref() != Some("application/problem+json")
    }
}

/// What a successful run did.
#[derive(Debug)]
pub struct Report {
    /// Every request, in the order the connections were made.
    pub exchanges: Vec<Exchange>,
    /// What the walk-through printed.
    pub stdout: String,
}

/// Runs the README's walk-through against the bridge at `base` (`http://127.0.0.1:port`).
pub fn run(base: &str) -> Result<Report, String> {
    run_script(base, &script()?)
}

/// Runs `script`, a walk-through that sets `B` as [`BASE_LINE`] does, against the bridge at
/// `base`, and checks every request it made. Blocks until the script ends.
pub fn run_script(base: &str, script: &str) -> Result<Report, String> {
    let upstream: SocketAddr = base
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("{base} is not http://<ip>:<port>"))?;
    let expected = curl_commands(script);
    let proxy = Recorder::start(upstream)?;
    let script = script.replacen(BASE_LINE, &format!("B=http://{}", proxy.addr), 1);
    let dir = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::os::unix::fs::symlink(&examples, dir.path().join("examples"))
        .map_err(|e| format!("cannot link {}: {e}", examples.display()))?;
    let outcome = run_bash(dir.path(), &script);
    let exchanges = proxy.stop();
    let (stdout, stderr) = outcome?;
    let tail = |text: &str| {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(1500)..]
            .iter()
            .collect::<String>()
    };
    if let Some(failed) = exchanges.iter().find(|e| !e.succeeded()) {
        return Err(format!(
            "the walk-through's request `{}` was answered {} ({}); its output ends with:\n{}",
            failed.request,
            failed
                .status
                .map_or_else(|| "with nothing".to_owned(), |s| s.to_string()),
            failed.content_type.as_deref().unwrap_or("no content type"),
            tail(&stdout)
        ));
    }
    if exchanges.len() != expected {
        return Err(format!(
            "the walk-through has {expected} curl commands but made {} requests: {:?}",
            exchanges.len(),
            exchanges.iter().map(|e| &e.request).collect::<Vec<_>>()
        ));
    }
    if !stderr.trim().is_empty() {
        return Err(format!(
            "the walk-through wrote to stderr:\n{}",
            tail(&stderr)
        ));
    }
    Ok(Report { exchanges, stdout })
}

/// Runs `script` with bash in `dir`; stdout and stderr when it exits 0 in time.
fn run_bash(dir: &Path, script: &str) -> Result<(String, String), String> {
    let mut child = Command::new("bash")
        .args(["--noprofile", "--norc", "-eu", "-o", "pipefail", "-s"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(script.as_bytes())
        .map_err(|e| format!("cannot hand the walk-through to bash: {e}"))?;
    drop(stdin);
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut out);
        out
    });
    let stderr = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the walk-through took longer than {TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for bash: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if status.success() {
        Ok((stdout, stderr))
    } else {
        Err(format!(
            "the walk-through failed ({status}); stderr:\n{stderr}\nstdout:\n{stdout}"
        ))
    }
}

/// How many curl commands `script` runs: the word `curl` in command position, outside comments.
fn curl_commands(script: &str) -> usize {
    script
        .lines()
        .map(|line| match line.find(" #") {
            Some(comment) => &line[..comment],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        })
        .map(|code| {
            let bytes = code.as_bytes();
            code.match_indices("curl ")
                .filter(|(at, _)| *at == 0 || b" \t(;&|".contains(&bytes[at - 1]))
                .count()
        })
        .sum()
}

/// A loopback HTTP proxy that forwards bytes untouched and notes, per connection, the request
/// line and the final response's status and media type.
struct Recorder {
    addr: SocketAddr,
    exchanges: Arc<Mutex<Vec<Arc<Mutex<Exchange>>>>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("recording proxy: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("recording proxy: {e}"))?;
        let exchanges: Arc<Mutex<Vec<Arc<Mutex<Exchange>>>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = thread::spawn({
            let exchanges = exchanges.clone();
            let stopping = stopping.clone();
            move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let exchange = Arc::new(Mutex::new(Exchange::default()));
                    exchanges.lock().expect("exchanges").push(exchange.clone());
                    match TcpStream::connect(upstream) {
                        Ok(server) => forward(client, server, exchange),
                        Err(e) => {
                            exchange.lock().expect("exchange").request =
                                format!("(cannot reach the bridge: {e})");
                        }
                    }
                }
            }
        });
        Ok(Recorder {
            addr,
            exchanges,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// Stops accepting and returns what was recorded.
    fn stop(mut self) -> Vec<Exchange> {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.exchanges
            .lock()
            .expect("exchanges")
            .iter()
            .map(|e| e.lock().expect("exchange").clone())
            .collect()
    }
}

/// Copies both directions of one connection on two threads, noting its request line and the
/// head of its final response.
fn forward(client: TcpStream, server: TcpStream, exchange: Arc<Mutex<Exchange>>) {
    let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let request = exchange.clone();
    thread::spawn(move || {
        let mut head = Vec::new();
        pump(client_reader, server_writer, |bytes| {
            if !head.contains(&b'\n') {
                head.extend_from_slice(bytes);
                if let Some(end) = head.iter().position(|b| *b == b'\n') {
                    request.lock().expect("exchange").request =
                        String::from_utf8_lossy(&head[..end]).trim().to_owned();
                }
            }
        });
    });
    thread::spawn(move || {
        let mut head = Vec::new();
        let mut done = false;
        pump(server, client, |bytes| {
            if done {
                return;
            }
            head.extend_from_slice(bytes);
            // Interim 1xx heads (100 Continue) come before the final one.
            while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&head[..end]).into_owned();
                head.drain(..end + 4);
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok());
                if status.is_some_and(|s| (100..200).contains(&s)) {
                    continue;
                }
                let content_type = text
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
                    .map(|(_, value)| {
                        value
                            .split(';')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_ascii_lowercase()
                    });
                let mut exchange = exchange.lock().expect("exchange");
                exchange.status = status;
                exchange.content_type = content_type;
                done = true;
                break;
            }
        });
    });
}

/// Copies `from` to `to` until either ends, showing each piece to `see` first; then passes the
/// end on.
fn pump(mut from: TcpStream, mut to: TcpStream, mut see: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                see(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
