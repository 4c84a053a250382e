#!/usr/bin/env node
// Opens the bridge's /docs page in headless Chromium and checks it the way a person would use
// it: Swagger UI renders every operation of /openapi.json, the page loads nothing from any other
// host, and "Try it out" on GET /v1/mailboxes, authorised through the Authorize dialog, shows
// a 200 answer listing INBOX.
//
//   node docs-check.mjs <bridge-base-url> [bearer-token]
//
// The token may also come from DOCS_CHECK_TOKEN; CHROMIUM overrides /usr/bin/chromium.
// Progress goes to stderr; the last line on stdout is a JSON summary. Exit status 0 when every
// check passed, 1 when one failed, 2 when the check could not run.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const STEP_TIMEOUT_MS = 20_000;
/** Resolving and rendering all operations takes Swagger UI over ten seconds on a slow machine. */
const EXPAND_TIMEOUT_MS = 45_000;
/**
 * A loopback bridge is shown to the browser under this name (Chromium resolves it to the
 * loopback address), as a deployment would be: Swagger UI treats `localhost` and `127.0.0.1`
 * specially (it never calls its online validator for them), so only a real-looking name shows
 * what the page would load in production.
 */
const PUBLIC_NAME = "imap-bridge.test";

const started = Date.now();
function log(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`docs-check [${seconds}s]: ${message}\n`);
}

function usage(message) {
  log(message);
  log("usage: node docs-check.mjs <bridge-base-url> [bearer-token]  (or DOCS_CHECK_TOKEN)");
  process.exit(2);
}

const [baseArg, tokenArg] = process.argv.slice(2);
if (!baseArg) usage("missing the bridge's base URL");
const token = tokenArg ?? process.env.DOCS_CHECK_TOKEN;
if (!token) usage("missing the bearer token");

const bridge = new URL(baseArg);
const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(bridge.hostname);
/** The origin the browser uses for the bridge. */
const origin = new URL(bridge.href);
if (loopback) origin.hostname = PUBLIC_NAME;
const pageBase = origin.origin;

const summary = {
  ok: false,
  docs_url: `${pageBase}/docs`,
  operations_in_document: 0,
  operations_listed: 0,
  missing_operations: [],
  unexpected_operations: [],
  requests: 0,
  request_urls: [],
  external_requests: [],
  failed_requests: [],
  page_errors: [],
  try_it_out: null,
  failures: [],
};

function fail(message) {
  log(`FAIL ${message}`);
  summary.failures.push(message);
}

function finish(exitCode) {
  summary.ok = exitCode === 0 && summary.failures.length === 0;
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.ok ? 0 : exitCode || 1);
}

/** `METHOD /path` of every operation in the document. */
async function documentedOperations() {
  const response = await fetch(new URL("/openapi.json", bridge));
  if (!response.ok) throw new Error(`GET /openapi.json answered ${response.status}`);
  const document = await response.json();
  const operations = [];
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of HTTP_METHODS) {
      if (item[method]) operations.push(`${method.toUpperCase()} ${path}`);
    }
  }
  return operations.sort();
}

/** `METHOD /path` of every operation block Swagger UI rendered. */
async function listedOperations(page) {
  const listed = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "?";
      const pathElement = block.querySelector(".opblock-summary-path");
      // Swagger UI puts zero-width spaces into long paths so they can wrap.
      const path =
        pathElement?.getAttribute("data-path") ?? pathElement?.textContent?.replace(/\u200b/g, "").trim() ?? "?";
      return `${method.toUpperCase()} ${path}`;
    }),
  );
  return [...new Set(listed)].sort();
}

/**
 * Waits until Swagger UI shows `expected` operation blocks, or reports what it shows instead.
 * Returns whether it rendered any.
 */
async function waitForOperations(page, expected) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll(".opblock").length >= n, expected, {
      timeout: STEP_TIMEOUT_MS,
    });
    return true;
  } catch {
    const shown = await page.locator(".opblock").count();
    const errors = await page.locator(".errors-wrapper").allTextContents();
    const loading = await page.locator(".loading-container").count();
    fail(
      `Swagger UI rendered ${shown} of ${expected} operations within ${STEP_TIMEOUT_MS} ms` +
        (errors.length ? `; it shows errors: ${errors.join(" | ")}` : "") +
        (loading ? "; it is still loading" : ""),
    );
    return shown > 0;
  }
}

/**
 * Opens every operation, which makes Swagger UI resolve and render its parameters, bodies and
 * responses, and fails on what it could not resolve (listed above the operations) or render.
 */
async function expandAll(page) {
  // One click per operation, dispatched in the page: Playwright's own clicks would wait for
  // each re-render in turn.
  const count = await page.$$eval(".opblock .opblock-summary-control", (buttons) => {
    for (const button of buttons) button.click();
    return buttons.length;
  });
  try {
    await page.waitForFunction(
      (n) =>
        document.querySelectorAll(".opblock .opblock-body .responses-wrapper").length >= n &&
        document.querySelectorAll(".opblock-body .loading-container").length === 0,
      count,
      { timeout: EXPAND_TIMEOUT_MS },
    );
  } catch {
    const opened = await page.locator(".opblock .opblock-body .responses-wrapper").count();
    fail(`Swagger UI showed the responses of ${opened} of ${count} opened operations within ${EXPAND_TIMEOUT_MS} ms`);
  }
  const specErrors = await page.locator(".errors-wrapper").allInnerTexts();
  if (specErrors.length)
    fail(`Swagger UI reports errors in the document: ${specErrors.join(" | ").replace(/\s+/g, " ")}`);
  // Swagger UI replaces a component that throws with this notice.
  const unrendered = await page.getByText("Could not render").allInnerTexts();
  if (unrendered.length) fail(`Swagger UI could not render parts of the page: ${unrendered.join(" | ")}`);
}

/** Puts `token` into the bearer scheme through Swagger UI's Authorize dialog. */
async function authorize(page) {
  await page.locator(".scheme-container button.authorize").click();
  const dialog = page.locator(".modal-ux");
  await dialog.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
  await dialog.locator(".auth-container input").first().fill(token);
  await dialog.locator(".auth-btn-wrapper button.authorize").click();
  // Once authorised the dialog offers "Logout" for the scheme.
  await dialog.locator(".auth-btn-wrapper button.btn", { hasText: "Logout" }).waitFor({ timeout: STEP_TIMEOUT_MS });
  await dialog.locator(".auth-btn-wrapper button.btn-done, button.close-modal").first().click();
  await dialog.waitFor({ state: "hidden", timeout: STEP_TIMEOUT_MS });
}

/** Expands GET /v1/mailboxes, runs it with "Try it out" and "Execute", and reads the answer. */
async function tryListMailboxes(page, requests) {
  const block = page.locator(".opblock.opblock-get").filter({
    has: page.locator('.opblock-summary-path[data-path="/v1/mailboxes"]'),
  });
  if ((await block.count()) !== 1) {
    fail(`expected one GET /v1/mailboxes block, found ${await block.count()}`);
    return;
  }
  if ((await block.locator(".opblock-body").count()) === 0) await block.locator(".opblock-summary").first().click();
  await block.locator(".opblock-body").waitFor({ timeout: STEP_TIMEOUT_MS });
  // The bridge enables tryItOutEnabled, so the block may open in "Try it out" mode already
  // (its button then reads "Cancel").
  const tryOut = block.locator("button.try-out__btn");
  if ((await tryOut.count()) > 0 && /try it out/i.test(await tryOut.first().innerText())) {
    await tryOut.first().click();
  }
  const requestsBefore = requests.length;
  await block.locator("button.execute").click();
  const live = block.locator(".live-responses-table");
  await live.waitFor({ timeout: STEP_TIMEOUT_MS });
  const statusCell = live.locator("tbody .response .response-col_status").first();
  await statusCell.waitFor({ timeout: STEP_TIMEOUT_MS });
  // The cell reads "200" or, for answers the document does not list, "404 Undocumented".
  const status = (await statusCell.innerText()).trim().split(/\s+/)[0];
  const body = (await live.locator("tbody .response .response-col_description").first().innerText()).trim();
  const sent = requests
    .slice(requestsBefore)
    .find((r) => r.method === "GET" && new URL(r.url).pathname === "/v1/mailboxes");

  summary.try_it_out = {
    operation: "GET /v1/mailboxes",
    status,
    shows_inbox: body.includes("INBOX"),
    sent_bearer_token: sent?.authorization === `Bearer ${token}`,
    request_url: sent?.url ?? null,
  };
  if (!sent) fail("Execute sent no GET /v1/mailboxes request");
  else if (sent.authorization !== `Bearer ${token}`)
    fail(`Execute sent Authorization ${JSON.stringify(sent.authorization ?? null)}, not the token from Authorize`);
  const shown = body.replace(/\s+/g, " ").slice(0, 400);
  if (status !== "200") fail(`Try it out on GET /v1/mailboxes shows status ${status}: ${shown}`);
  else if (!body.includes("INBOX")) fail(`Try it out on GET /v1/mailboxes shows no INBOX: ${shown}`);
}

async function main() {
  const expected = await documentedOperations();
  summary.operations_in_document = expected.length;
  log(`the document has ${expected.length} operations; opening ${pageBase}/docs`);

  const userDataDir = await mkdtemp(join(tmpdir(), "imap-bridge-docs-check-"));
  const args = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Keep Chromium from trying https:// first for the bridge's plain-HTTP name.
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
  ];
  if (loopback) args.push(`--host-resolver-rules=MAP ${PUBLIC_NAME} ${bridge.hostname}`);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args,
    timeout: STEP_TIMEOUT_MS,
  });
  const requests = [];
  try {
    context.on("request", (request) => {
      requests.push({ method: request.method(), url: request.url(), authorization: request.headers().authorization });
    });
    context.on("requestfailed", (request) => {
      summary.failed_requests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
    });
    context.on("response", (response) => {
      if (response.status() >= 400) summary.failed_requests.push(`${response.request().method()} ${response.url()}: ${response.status()}`);
    });
    // Anything bound elsewhere is recorded by the listener above and never leaves the machine.
    await context.route("**/*", (route) =>
      new URL(route.request().url()).origin === pageBase ? route.continue() : route.abort("blockedbyclient"),
    );

    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => summary.page_errors.push(String(error)));

    await page.goto(`${pageBase}/docs`, { waitUntil: "load", timeout: STEP_TIMEOUT_MS });
    const rendered = await waitForOperations(page, expected.length);
    // Let late loads (fonts, images, badges) show up in the record.
    await page.waitForLoadState("networkidle", { timeout: STEP_TIMEOUT_MS }).catch(() => {});

    const listed = await listedOperations(page);
    summary.operations_listed = listed.length;
    summary.missing_operations = expected.filter((op) => !listed.includes(op));
    summary.unexpected_operations = listed.filter((op) => !expected.includes(op));
    if (summary.missing_operations.length)
      fail(`Swagger UI does not list ${summary.missing_operations.join(", ")}`);
    if (summary.unexpected_operations.length)
      fail(`Swagger UI lists operations the document lacks: ${summary.unexpected_operations.join(", ")}`);

    log(`Swagger UI lists ${listed.length} operations`);
    if (rendered) {
      await expandAll(page);
      log("opened every operation");
      await authorize(page);
      log("authorised with the bearer token");
      await tryListMailboxes(page, requests);
      log(`Try it out on GET /v1/mailboxes shows ${summary.try_it_out?.status}`);
      await page.waitForLoadState("networkidle", { timeout: STEP_TIMEOUT_MS }).catch(() => {});
    } else {
      fail("Swagger UI rendered nothing, so Try it out was not attempted");
    }
  } finally {
    checkRequests(requests);
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
}

/** Fails on requests to other hosts, thrown page errors, and docs assets that did not load. */
function checkRequests(requests) {
  summary.requests = requests.length;
  summary.request_urls = [...new Set(requests.map((r) => `${r.method} ${r.url}`))];
  summary.external_requests = requests.filter((r) => new URL(r.url).origin !== pageBase).map((r) => r.url);
  if (summary.external_requests.length)
    fail(`the docs page requested other hosts than ${pageBase}: ${summary.external_requests.join(", ")}`);
  if (summary.page_errors.length) fail(`the page threw: ${summary.page_errors.join(" | ")}`);
  const brokenAssets = summary.failed_requests.filter((line) => {
    const url = line.split(" ")[1] ?? "";
    return url.startsWith(`${pageBase}/docs`) || url.startsWith(`${pageBase}/openapi.json`);
  });
  if (brokenAssets.length) fail(`docs assets failed to load: ${brokenAssets.join(", ")}`);
}

try {
  await main();
  finish(0);
} catch (error) {
  // Playwright colours its call logs; the summary is read as plain text.
  fail(`the check could not finish: ${String(error?.stack ?? error).replace(/\x1b\[[0-9;]*m/g, "")}`);
  finish(summary.operations_in_document ? 1 : 2);
}
