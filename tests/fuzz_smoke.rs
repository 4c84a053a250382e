//! A short run of every fuzz target's properties inside the ordinary test suite, so that CI
//! exercises them without the long libFuzzer build (`scripts/fuzz` stays the real,
//! coverage-guided run). The properties are the very functions the cargo-fuzz targets call,
//! in `fuzz/properties/<target>.rs`.
//!
//! Each target first replays its committed seeds and regression inputs
//! (`fuzz/corpus/<target>/seed-*`), then runs inputs made from them by a seeded mutator (bit
//! flips, byte edits, deletions, duplicated ranges, splices and the target's own tokens, some
//! repeated many times) for `IMAP_BRIDGE_FUZZ_SMOKE_SECS` seconds (default 3), on a thread
//! with the stack the bridge's runtime threads get. `IMAP_BRIDGE_FUZZ_SMOKE_SEED` fixes the
//! mutator's seed (printed otherwise). An input that breaks a property is written to
//! `target/fuzz-smoke/<target>-<hash>` and named in the failure: replay it with
//! `scripts/fuzz`'s targets (`cargo fuzz run <target> <file>`) or commit it as a seed.

#[path = "../fuzz/properties/bodystructure.rs"]
mod bodystructure;
#[path = "../fuzz/properties/contained.rs"]
mod contained;
#[path = "../fuzz/properties/encoder.rs"]
mod encoder;
#[path = "../fuzz/properties/mime.rs"]
mod mime;
#[path = "../fuzz/properties/tokens.rs"]
mod tokens;
#[path = "../fuzz/properties/upstream.rs"]
mod upstream;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One fuzz target as the smoke run drives it.
struct Target {
    name: &'static str,
    property: fn(&[u8]),
    /// Largest input, as `scripts/fuzz` gives libFuzzer.
    max_len: usize,
    /// Tokens the mutator inserts, alone or repeated.
    tokens: &'static [&'static [u8]],
}

/// The stack of the bridge's runtime threads (src/main.rs): the parser recurses per nesting
/// level, and a debug build needs about 34 KiB per level.
const STACK: usize = 32 * 1024 * 1024;

/// Inputs kept for further mutation, at most.
const POOL: usize = 512;

fn smoke(target: Target) {
    let seeds = seeds(target.name);
    assert!(
        !seeds.is_empty(),
        "no seeds in fuzz/corpus/{}/",
        target.name
    );
    let budget = Duration::from_secs_f64(
        std::env::var("IMAP_BRIDGE_FUZZ_SMOKE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let seed = std::env::var("IMAP_BRIDGE_FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let name = target.name;
    let report = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(STACK)
        .spawn(move || run(&target, seeds, budget, seed))
        .expect("fuzz thread")
        .join()
        .expect("fuzz thread ended");
    println!("{name}: {report} (IMAP_BRIDGE_FUZZ_SMOKE_SEED={seed})");
}

/// Replays the seeds, then mutates until the budget is spent; returns what it did.
fn run(target: &Target, seeds: Vec<Vec<u8>>, budget: Duration, seed: u64) -> String {
    let started = Instant::now();
    for input in &seeds {
        check(target, input);
    }
    let replayed = seeds.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool = seeds;
    let mut runs = 0u64;
    while started.elapsed() < budget {
        let input = mutate(&mut rng, &pool, target);
        check(target, &input);
        runs += 1;
        if rng.random_ratio(1, 8) {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let at = rng.random_range(replayed..POOL);
                pool[at] = input;
            }
        }
    }
    format!(
        "{replayed} seeds, {runs} mutated inputs in {:.1} s",
        started.elapsed().as_secs_f64()
    )
}

/// Runs the property on `input`; on a panic, keeps the input and fails with where it is.
fn check(target: &Target, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.property)(input))) {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        let path = keep(target.name, input);
        panic!(
            "{}: a property broke on {} ({} bytes): {why}",
            target.name,
            path.display(),
            input.len()
        );
    }
}

/// Writes a failing input under `target/fuzz-smoke/`.
fn keep(name: &str, input: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{:016x}", hasher.finish()));
    let _ = std::fs::write(&path, input);
    path
}

/// The committed seeds of `target`, sorted by name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// One to four mutations of an input from the pool.
fn mutate(rng: &mut StdRng, pool: &[Vec<u8>], target: &Target) -> Vec<u8> {
    let mut input = pool[rng.random_range(0..pool.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = input.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                input[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.random_range(0..len);
                input[at] = rng.random();
            }
            2 => {
                let at = rng.random_range(0..=len);
                input.insert(at, rng.random());
            }
            3 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len.min(from + 64));
                input.drain(from..to);
            }
            4 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len.min(from + 256));
                let copy = input[from..to].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, copy);
            }
            5 => {
                let other = &pool[rng.random_range(0..pool.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            6 => {
                let token = target.tokens[rng.random_range(0..target.tokens.len())];
                let at = rng.random_range(0..=len);
                input.splice(at..at, token.iter().copied());
            }
            _ => {
                // Repeated tokens reach limits that single edits never would (nesting depth,
                // line length, part counts).
                let token = target.tokens[rng.random_range(0..target.tokens.len())];
                let times = rng.random_range(2..=300);
                let at = rng.random_range(0..=len);
                let run: Vec<u8> = token.repeat(times);
                input.splice(at..at, run);
            }
        }
    }
    input.truncate(target.max_len);
    input
}

#[test]
fn bodystructure() {
    smoke(Target {
        name: "bodystructure",
        property: bodystructure::run,
        max_len: 65536,
        tokens: &[
            b"(",
            b")",
            b" NIL",
            b"\"",
            b" ",
            b"{5}\r\n",
            b"BODYSTRUCTURE (",
            b"(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 1 1)",
            b"(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 9 NIL (\"attachment\" NIL) NIL NIL)",
            b" \"mixed\")",
            b"\"message\" \"rfc822\" ",
            b"INTERNALDATE ",
            b"INTERNALDATE \"06-May-2024 12:00:00 +0000\" ",
            b"ENVELOPE (",
            b"UID 7 ",
            b"FLAGS (\\Seen \\Recent) ",
            b"=?utf-8?b?w7w=?=",
        ],
    });
}

#[test]
fn upstream() {
    smoke(Target {
        name: "upstream",
        property: upstream::run,
        max_len: 65536,
        tokens: &[
            b"\r\n",
            b"* ",
            b"* OK ",
            b"b1 OK ",
            b"+ ",
            b"(",
            b")",
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"{5}\r\n",
            b"~{3}\r\n",
            b"{4097}",
            b"INTERNALDATE NIL",
            b"* 1 FETCH (",
            b"BODY[] ",
            b"[BADCHARSET (",
        ],
    });
}

#[test]
fn encoder() {
    smoke(Target {
        name: "encoder",
        property: encoder::run,
        max_len: 20000,
        tokens: &[
            b"\xff",
            b"\xfe",
            b"\xffm",
            b"\xffs",
            b"\xffl",
            b"\xffk",
            b"\xffu1:5,7",
            b"{5}",
            b"\"",
            b"\\",
            b"\r\n",
            b"&-",
            b"\xc3\xbc",
        ],
    });
}

#[test]
fn mime() {
    smoke(Target {
        name: "mime",
        property: mime::run,
        max_len: 65536,
        tokens: &[
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
            b"--b\r\n",
            b"--b--\r\n",
            b"=?utf-8?q?",
            b"?=",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"=\r\n",
            b"=C3=BC",
            b"; charset=iso-2022-jp",
            b"\x1b$B",
        ],
    });
}

#[test]
fn tokens() {
    smoke(Target {
        name: "tokens",
        property: tokens::run,
        max_len: 4096,
        tokens: &[
            b"s1.",
            b"c1.",
            b".",
            b"0",
            b"9223372036854775807",
            b"9223372036854775808",
            b"18446744073709551615",
            b"4294967295",
            b"4294967296",
            b"deadbeef",
        ],
    });
}
