// Checks the GraphiQL page a service serves, as a person would use it: opens URL in headless
// Chromium (Debian's, driven by playwright-core), waits until GraphiQL has loaded the schema
// (the introspection answered and the documentation explorer shows the root types), types
// QUERY into the editor, prettifies it, clicks run, waits until the result pane shows
// EXPECTED, checks that the query carried the consistency token the service last sent (when
// it sent one), and takes a screenshot. Fails on a timeout, a script error, a
// Content-Security-Policy violation, an HTTP error or a request to any other origin than URL's.
//
// Usage: node browser-check.mjs URL OUT.png [QUERY [EXPECTED]]
//   QUERY defaults to "{ __typename }", EXPECTED to the text GraphiQL shows for its answer
//   ("__typename": "Query"). Environment: CHROMIUM (default /usr/bin/chromium).
// Exit code: 0 when every step passed, 1 otherwise (the screenshot is still written when
// the page opened, to show how far it got).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const STEP_MS = 30_000;
const [url, out, query = "{ __typename }", expected = '"__typename": "Query"'] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: node browser-check.mjs URL OUT.png [QUERY [EXPECTED]]");
  process.exit(1);
}
const origin = new URL(url).origin;
const problems = [];

function log(message) {
  console.log(`browser-check: ${message}`);
}

// Runs one step, bounded: a step that does not finish in STEP_MS fails the check.
async function step(name, action) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${STEP_MS} ms`)), STEP_MS);
  });
  try {
    const result = await Promise.race([action(), timeout]);
    log(`ok: ${name}`);
    return result;
  } catch (e) {
    throw new Error(`${name}: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

// The text of the CodeMirror editor inside `selector` (GraphiQL 3 uses CodeMirror 5).
function editorText(page, selector) {
  return page.evaluate((s) => {
    const cm = document.querySelector(`${s} .CodeMirror`);
    return cm && cm.CodeMirror ? cm.CodeMirror.getValue() : null;
  }, selector);
}

const profile = mkdtempSync(join(tmpdir(), "lifeguard-browser-check-"));
let context;
let failed = null;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: STEP_MS,
    viewport: { width: 1400, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  context.on("request", (request) => {
    const target = request.url();
    if (target.startsWith("data:") || target.startsWith("blob:")) return;
    if (new URL(target).origin !== origin) problems.push(`request to another origin: ${target}`);
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && new URL(r.url()).origin === origin) {
      problems.push(`HTTP ${r.status()} for ${r.url()}`);
    }
  });

  try {
    // Listening before the page opens, since GraphiQL introspects as soon as it starts;
    // settled either way, so that a failure before it is awaited is no unhandled rejection.
    const introspected = page
      .waitForResponse(
        (r) => r.request().method() === "POST" && (r.request().postData() ?? "").includes("__schema"),
        { timeout: STEP_MS },
      )
      .then(
        (response) => ({ response }),
        (error) => ({ error }),
      );
    await step(`open ${url}`, async () => {
      const response = await page.goto(url, { waitUntil: "load" });
      const type = response ? response.headers()["content-type"] ?? "" : "";
      if (!response || response.status() !== 200 || !type.startsWith("text/html")) {
        throw new Error(`HTTP ${response ? response.status() : "none"}, content type ${type}`);
      }
    });
    await step("GraphiQL renders", async () => {
      const editor = ".graphiql-container .graphiql-query-editor .CodeMirror";
      await page.waitForSelector(`${editor}, #lg-missing:not([hidden])`, { state: "visible" });
      if (await page.locator("#lg-missing").isVisible()) {
        throw new Error("the page says GraphiQL's assets are not installed (scripts/graphiql-assets)");
      }
    });
    await step("introspection answered", async () => {
      const { response: r, error } = await introspected;
      if (error) throw error;
      const body = await r.json();
      if (r.status() !== 200 || !body.data || body.errors) {
        throw new Error(`HTTP ${r.status()}: ${JSON.stringify(body).slice(0, 500)}`);
      }
    });
    await step("schema loaded (documentation explorer shows the root types)", async () => {
      await page.getByLabel("Show Documentation Explorer").click();
      const docs = page.locator(".graphiql-doc-explorer");
      await docs.getByText("Root Types").waitFor();
      await docs.locator(".graphiql-doc-explorer-root-type", { hasText: "query" }).first().waitFor();
    });
    await step(`type ${query} into the editor`, async () => {
      await page.locator(".graphiql-query-editor .CodeMirror").click();
      await page.keyboard.press("Control+A");
      await page.keyboard.press("Delete");
      // One line, so that no Enter picks an autocompletion; closing brackets the editor
      // inserted itself are typed over.
      await page.keyboard.type(query.replace(/\s+/g, " "), { delay: 10 });
      await page.keyboard.press("Escape");
      const typed = await editorText(page, ".graphiql-query-editor");
      if ((typed ?? "").replace(/\s+/g, " ").trim() !== query.replace(/\s+/g, " ").trim()) {
        throw new Error(`the editor holds ${JSON.stringify(typed)}`);
      }
    });
    await step("prettify (the screenshot shows the whole query)", async () => {
      await page.getByLabel(/^Prettify query/).click();
    });
    let sent;
    await step("click run", async () => {
      sent = page.waitForRequest((r) => r.method() === "POST" && !(r.postData() ?? "").includes("__schema"));
      await page.locator("button.graphiql-execute-button").click();
    });
    await step(`result pane shows ${expected}`, async () => {
      await page.waitForFunction(
        (text) => {
          const cm = document.querySelector(".graphiql-response .CodeMirror");
          return cm && cm.CodeMirror && cm.CodeMirror.getValue().includes(text);
        },
        expected,
        { timeout: STEP_MS, polling: 100 },
      );
      log(`result: ${(await editorText(page, ".graphiql-response")).replace(/\s+/g, " ")}`);
    });
    await step("the query carried the consistency token the service last sent, if any", async () => {
      const { response } = await introspected;
      const token = response.headers()["lifeguard-consistency-token"];
      const echoed = (await sent).headers()["lifeguard-consistency-token"];
      if (token && echoed !== token) throw new Error(`sent ${echoed}, the service sent ${token}`);
    });
  } finally {
    await step(`screenshot ${out}`, () => page.screenshot({ path: out })).catch((e) =>
      problems.push(e.message),
    );
  }
  if (problems.length) throw new Error(problems.join("\n  "));
} catch (e) {
  failed = e;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
if (failed) {
  console.error(`browser-check: FAIL: ${failed.message}`);
  if (problems.length && !failed.message.includes(problems[0])) {
    console.error(`  also: ${problems.join("\n  ")}`);
  }
  process.exit(1);
}
log(`ok: ${url}: GraphiQL loaded the schema, ran the query and showed the result`);
