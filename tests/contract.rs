//! The OpenAPI document as a contract: Schemathesis (installed by `scripts/setup`) generates
//! requests from `/openapi.json` of a live bridge in front of a real Dovecot holding realistic
//! mail, and checks every answer against the document: no server error, documented status
//! codes, content types and headers, response bodies and SSE events matching their schemas,
//! schema-valid requests accepted and schema-violating ones refused. Zero failures allowed.

mod common;

use std::path::Path;

use common::bridge::{Link, TestBridge, USER};
use common::corpus;
use common::dovecot::DovecotOptions;
use common::oauth::Introspection;
use common::tools;
use serde_json::Value;

/// Runs Schemathesis against `bridge` with `args` after `run <document>`, and returns its JSON
/// report after printing what it said.
async fn schemathesis(
    bridge: &TestBridge,
    token: &str,
    seeds: &Seeds,
    args: &[&str],
    report: &Path,
) -> Value {
    // Schemathesis expands environment variables in its settings but not in dictionary
    // entries, so the live values go into a copy of the settings.
    let settings = std::fs::read_to_string(tools::in_repo("tests/contract/schemathesis.toml"))
        .expect("the Schemathesis settings")
        .replace("${CONTRACT_STATE}", &seeds.state)
        .replace("${CONTRACT_THREAD}", &seeds.thread);
    let config = report.with_extension("toml");
    std::fs::write(&config, settings).expect("write the settings");
    let output = tokio::process::Command::new(tools::in_repo(".venv-tools/bin/schemathesis"))
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(bridge.url("/openapi.json"))
        .args(args)
        .args(["--no-color", "--report", "json", "--report-json-path"])
        .arg(report)
        .env("PYTHONPATH", tools::in_repo("tests/contract"))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("CONTRACT_BASE_URL", &bridge.base)
        .env("CONTRACT_TOKEN", token)
        // Schemathesis keeps a cache directory in its working directory.
        .current_dir(report.parent().expect("the report's directory"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis starts");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(report).unwrap_or_else(|e| {
        panic!(
            "schemathesis wrote no report ({e}); exit status {}",
            output.status
        )
    });
    serde_json::from_str(&text).expect("the report is JSON")
}

/// Real values of the live bridge for Schemathesis's dictionaries.
struct Seeds {
    /// A delta-sync state of INBOX.
    state: String,
    /// The id of INBOX's newest thread.
    thread: String,
}

/// Asserts a clean Schemathesis run: every selected operation tested, no failure, no error.
fn assert_clean(report: &Value, what: &str) -> u64 {
    let operations = &report["operations"];
    assert_eq!(
        operations["tested"], operations["selected"],
        "{what}: every selected operation is tested: {operations}"
    );
    assert_eq!(
        report["failures"],
        Value::Array(vec![]),
        "{what}: no failures"
    );
    assert_eq!(report["errors"], Value::Array(vec![]), "{what}: no errors");
    assert_eq!(report["exit_code"], 0, "{what}: schemathesis passed");
    report["test_cases"]["generated"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_keeps_the_contract_of_the_openapi_document() {
    let schemathesis_bin = tools::in_repo(".venv-tools/bin/schemathesis");
    if tools::require("contract test", &[schemathesis_bin]).is_none() {
        return;
    }
    // Schemathesis sends hundreds of generated logins one at a time, and until the bridge's
    // throttle stops them (20 per address) each reaches Dovecot and fails. brute_force.rs tests
    // what Dovecot's auth delays do to logins; here they would only get in the way:
    // The user logs in with an OAuth 2.0 access token, so that both login forms and the
    // refresh of a token-based session have their positive cases.
    let provider = Introspection::start();
    let opts = DovecotOptions {
        // every later login would wait up to 15 s, past Schemathesis's 5 s request timeout;
        auth_penalty: false,
        // 2 s per failure, one after another, on the suite's longest test.
        auth_failure_delay_secs: 0,
        oauth2_introspection: Some(provider.url()),
        ..DovecotOptions::default()
    };
    let bridge = TestBridge::start_with(opts, Link::Tls, |_| {}).await;
    for message in corpus::realistic() {
        bridge.dovecot.deliver(
            USER,
            message.mailbox,
            &message.raw,
            message.flags,
            Some(message.internal_date()),
        );
    }
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(200, 7));
    let access = provider.issue(USER);
    let login = bridge
        .request(reqwest::Method::POST, "/v1/auth/login", None)
        .json(&serde_json::json!({"username": USER, "access_token": access}))
        .send()
        .await
        .expect("login");
    let (status, body) = common::bridge::json_of(login).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, list) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/messages?limit=1")
        .await;
    assert_eq!(status, 200, "{list}");
    let state = list["state"].as_str().expect("a state").to_owned();
    let (status, threads) = bridge
        .get_json(&token, "/v1/mailboxes/INBOX/threads?limit=1")
        .await;
    assert_eq!(status, 200, "{threads}");
    let thread = threads["threads"][0]["thread_id"]
        .as_str()
        .expect("a thread id")
        .to_owned();
    let seeds = Seeds { state, thread };
    let reports = tempfile::tempdir().expect("report dir");

    // Everything but logout, which would revoke the token for the rest of the run.
    let main = schemathesis(
        &bridge,
        &token,
        &seeds,
        &["--exclude-operation-id", "logout"],
        &reports.path().join("main.json"),
    )
    .await;
    let cases = assert_clean(&main, "all operations but logout");
    assert_eq!(
        main["operations"]["selected"].as_u64(),
        main["operations"]["total"].as_u64().map(|n| n - 1),
        "only logout is left out"
    );

    // Then logout on its own: its first call revokes the token, the rest get 401.
    let logout = schemathesis(
        &bridge,
        &token,
        &seeds,
        &["--include-operation-id", "logout"],
        &reports.path().join("logout.json"),
    )
    .await;
    let logout_cases = assert_clean(&logout, "logout");
    println!(
        "schemathesis: {} operations, {} test cases, no failures",
        main["operations"]["total"],
        cases + logout_cases
    );
    assert!(cases > 500, "a real run, not a skipped one: {cases} cases");
}
