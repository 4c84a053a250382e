//! The interactive docs work in a real browser: headless Chromium opens `/docs`, Swagger UI lists
//! every operation of the OpenAPI document, the page loads nothing from other hosts, and a
//! logged-in user can authorise and run "Try it out" on the mailbox list.
//! The browser side is `tests/browser/docs-check.mjs`.

mod common;

use std::time::Duration;

use common::bridge::TestBridge;
use common::tools;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The check itself takes a few seconds; this is for a wedged browser.
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_lists_every_operation_and_runs_try_it_out_in_a_browser() {
    let browser_dir = tools::in_repo("tests/browser");
    if tools::require(
        "docs browser test",
        &[
            browser_dir.join("node_modules/playwright-core"),
            CHROMIUM.into(),
        ],
    )
    .is_none()
    {
        return;
    }
    let bridge = TestBridge::start().await;
    let token = bridge.login().await;

    let check = tokio::process::Command::new("node")
        .arg(browser_dir.join("docs-check.mjs"))
        .arg(&bridge.base)
        .arg(&token)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| panic!("docs-check.mjs took longer than {CHECK_TIMEOUT:?}"))
        .expect("node runs docs-check.mjs (is node on PATH?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the docs check failed ({}):\n--- summary\n{stdout}\n--- log\n{stderr}",
        output.status
    );

    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary on stdout:\n{stdout}\n{stderr}"));
    println!("{summary:#}");
    assert_eq!(
        summary["operations_listed"].as_u64(),
        Some(committed_operation_count()),
        "Swagger UI lists every operation of openapi/openapi.json: {summary:#}"
    );
    assert_eq!(
        summary["external_requests"].as_array().map(Vec::len),
        Some(0),
        "{summary:#}"
    );
    assert_eq!(summary["try_it_out"]["status"], "200", "{summary:#}");
    assert_eq!(summary["try_it_out"]["shows_inbox"], true, "{summary:#}");
}

/// Operations in the committed document (the bridge serves exactly that file, as `ops.rs`
/// checks).
fn committed_operation_count() -> u64 {
    let text = std::fs::read_to_string(tools::in_repo("openapi/openapi.json"))
        .expect("openapi/openapi.json");
    let document: Value = serde_json::from_str(&text).expect("the document is JSON");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| methods.iter().filter(|m| item.get(**m).is_some()).count() as u64)
        .sum()
}
