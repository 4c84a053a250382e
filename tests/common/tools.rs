//! External tools that some tests drive — Schemathesis, the npm packages under `clients/` and
//! `tests/browser/`, Debian's Chromium and HAProxy — all installed by `scripts/setup`.
//!
//! A test whose tool is missing is skipped with a message saying so, unless
//! `IMAP_BRIDGE_REQUIRE_TOOLS` is set (as `scripts/test`, and so CI, does): then it fails, so
//! the suite never passes by silently testing less.

use std::path::{Path, PathBuf};

/// A path below the crate's root.
pub fn in_repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `paths` when every one of them exists. Otherwise `None` after printing that `test` is
/// skipped, or a panic when tools are required.
pub fn require(test: &str, paths: &[PathBuf]) -> Option<()> {
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    let why = format!(
        "{test}: missing {} — run scripts/setup to install it",
        missing.join(", ")
    );
    if std::env::var_os("IMAP_BRIDGE_REQUIRE_TOOLS").is_some() {
        panic!("{why} (IMAP_BRIDGE_REQUIRE_TOOLS is set, so this is a failure)");
    }
    eprintln!("SKIPPED {why}; set IMAP_BRIDGE_REQUIRE_TOOLS=1 to fail instead");
    None
}
