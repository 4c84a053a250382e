//! What a deployment and a front end rely on besides the mail API: probes, the OpenAPI
//! document and docs, request ids, CORS, compression, and problem answers for stray requests.

mod common;

use std::time::Duration;

use common::bridge::{Link, TestBridge, json_of};
use common::dovecot::DovecotOptions;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn probes_report_liveness_and_upstream_readiness() {
    let mut bridge = TestBridge::start().await;
    let (status, body) = json_of(
        bridge
            .request(Method::GET, "/healthz", None)
            .send()
            .await
            .expect("healthz"),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = json_of(
        bridge
            .request(Method::GET, "/readyz", None)
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    bridge.dovecot.stop();
    // Readiness results are cached for two seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = json_of(
        bridge
            .request(Method::GET, "/readyz", None)
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        )
    );
    let (status, _) = json_of(
        bridge
            .request(Method::GET, "/healthz", None)
            .send()
            .await
            .expect("healthz"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on the IMAP server"
    );
}

#[tokio::test]
async fn the_committed_openapi_document_is_what_the_code_generates_and_serves() {
    let generated = imap_bridge::http::docs::render(&imap_bridge::http::openapi());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json");
    assert!(
        generated == committed,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- --print-openapi > openapi/openapi.json`"
    );

    let bridge = TestBridge::start().await;
    let served = bridge
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("openapi");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.text().await.expect("text"), committed);

    let docs = bridge
        .request(Method::GET, "/docs/", None)
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the docs page loads nothing from the internet"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let res = bridge
            .request(Method::GET, asset, None)
            .send()
            .await
            .expect("asset");
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{asset} is served by the bridge"
        );
    }
    let init = bridge
        .request(Method::GET, "/docs/swagger-initializer.js", None)
        .send()
        .await
        .expect("init")
        .text()
        .await
        .expect("js");
    assert!(
        init.contains("/openapi.json"),
        "the docs read the bridge's own document: {init}"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let bridge = TestBridge::start().await;
    let res = bridge
        .request(Method::GET, "/healthz", None)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let res = bridge
        .request(Method::GET, "/v1/mailboxes", None)
        .send()
        .await
        .expect("send");
    let id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
}

#[tokio::test]
async fn stray_requests_get_problems() {
    let bridge = TestBridge::start().await;
    let (status, body) = json_of(
        bridge
            .request(Method::GET, "/v2/anything", None)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = json_of(
        bridge
            .request(Method::DELETE, "/v1/auth/login", None)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn browsers_on_allowed_origins_may_call_and_responses_compress() {
    let bridge = TestBridge::start_with(DovecotOptions::default(), Link::Tls, |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let preflight = bridge
        .request(Method::OPTIONS, "/v1/mailboxes", None)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = bridge
        .request(Method::OPTIONS, "/v1/mailboxes", None)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "unknown origins get no CORS grant"
    );

    let token = bridge.login().await;
    bridge
        .dovecot
        .deliver_many(common::bridge::USER, "INBOX", common::corpus::bulk(100, 9));
    let res = bridge
        .request(
            Method::GET,
            "/v1/mailboxes/INBOX/messages?limit=100",
            Some(&token),
        )
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-encoding"], "gzip");
}
