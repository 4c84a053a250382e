//! The OpenAPI document is usable by a TypeScript front end: openapi-typescript turns
//! `openapi/openapi.json` into types; the typed client in `clients/typescript` (and its
//! deliberate misuses, which must stay errors) type-checks against them under `tsc --strict`;
//! and, compiled, it logs in, pages, reads, flags, syncs and files mail on a real bridge.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::bridge::{PASSWORD, TestBridge, USER};
use common::{corpus, tools};
use serde_json::Value;

/// Generation and a type check take a few seconds; this is for a wedged npm or node.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_type_checks_and_works_against_a_bridge() {
    let client = tools::in_repo("clients/typescript");
    let bin = client.join("node_modules/.bin");
    if tools::require(
        "typescript client test",
        &[bin.join("openapi-typescript"), bin.join("tsc")],
    )
    .is_none()
    {
        return;
    }

    // The types are generated on every run, from the committed document, so they are never
    // stale; `src/schema.d.ts` is ignored by git.
    let schema = client.join("src/schema.d.ts");
    let _ = tokio::fs::remove_file(&schema).await;
    succeed("npm run generate", npm_run(&client, "generate")).await;
    succeed("npm run check", npm_run(&client, "check")).await;

    // Compiled next to node_modules, so that node finds openapi-fetch from it.
    let build = tempfile::Builder::new()
        .prefix(".test-build-")
        .tempdir_in(&client)
        .expect("build dir");
    let mut tsc = tokio::process::Command::new(bin.join("tsc"));
    tsc.arg("--project")
        .arg(&client)
        .args(["--noEmit", "false", "--outDir"])
        .arg(build.path());
    succeed("tsc (emit)", tsc.kill_on_drop(true).output()).await;
    let runner = build.path().join("run.mjs");
    tokio::fs::write(
        &runner,
        "import { tour } from './tour.js';\n\
         const [baseUrl, user, password] = process.argv.slice(2);\n\
         console.log(JSON.stringify(await tour({ baseUrl }, user, password)));\n",
    )
    .await
    .expect("write run.mjs");

    let bridge = TestBridge::start().await;
    bridge
        .dovecot
        .deliver_many(USER, "INBOX", corpus::bulk(5, 11));
    let mut node = tokio::process::Command::new("node");
    node.arg(&runner).arg(&bridge.base).args([USER, PASSWORD]);
    let output = succeed("the client's tour", node.kill_on_drop(true).output()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the tour printed no JSON report ({e}): {stdout}"));
    println!("{report:#}");

    assert_eq!(report["user"], USER, "{report:#}");
    assert_eq!(report["mailboxes"][0], "INBOX", "{report:#}");
    assert_eq!(
        report["pageSizes"],
        serde_json::json!([2, 2, 1]),
        "{report:#}"
    );
    assert_eq!(report["messages"], 5, "{report:#}");
    assert_eq!(
        report["previews"],
        serde_json::json!({"shown": 5, "withoutPreviews": 0}),
        "{report:#}"
    );
    // Five unrelated messages, two threads a page: three pages, every thread listed once, and
    // the newest opened with as many messages as the list said.
    let threads = &report["threads"];
    assert_eq!(threads["total"], 5, "{report:#}");
    assert_eq!(threads["listed"], 5, "{report:#}");
    assert_eq!(threads["pages"], 3, "{report:#}");
    assert_eq!(threads["opened"], threads["openedMessages"], "{report:#}");
    let uid = &report["opened"]["uid"];
    assert_eq!(
        report["flagsAfterPatch"],
        serde_json::json!(["\\Flagged"]),
        "{report:#}"
    );
    assert_eq!(
        report["changedUids"],
        serde_json::json!([uid]),
        "{report:#}"
    );
    assert!(report["newUid"].is_u64(), "{report:#}");
    assert_eq!(
        report["eventStreamPath"], "/v1/events?ticket=…&mailbox=INBOX&mailbox=Archive",
        "{report:#}"
    );
    assert_eq!(
        report["missingMessageCode"], "message_not_found",
        "{report:#}"
    );
    assert_eq!(report["statusAfterLogout"], 401);

    let mut imap = bridge.imap().await;
    let new_uid = u32::try_from(report["newUid"].as_u64().expect("new uid")).expect("u32");
    assert_eq!(
        imap.uids("Archive").await,
        vec![new_uid],
        "filed in Archive"
    );
    // DirectImap names flags as async-imap's `Flag` prints them.
    let flags = imap.flags("Archive", new_uid).await;
    assert!(
        flags.iter().any(|f| f == "Flagged"),
        "the flag set through the client went along to Archive: {flags:?}"
    );
    assert_eq!(imap.uids("INBOX").await.len(), 4);
}

/// `npm run <script>` in `dir`, quietly.
fn npm_run(
    dir: &Path,
    script: &str,
) -> impl std::future::Future<Output = std::io::Result<Output>> + use<> {
    tokio::process::Command::new("npm")
        .args(["run", "--silent", script])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
}

/// The output of `run`, or a panic with it unless `what` succeeded in time.
async fn succeed(
    what: &str,
    run: impl std::future::Future<Output = std::io::Result<Output>>,
) -> Output {
    let output = tokio::time::timeout(STEP_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {STEP_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start (are node and npm on PATH?): {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}
