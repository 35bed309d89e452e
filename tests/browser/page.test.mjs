// The live page at / in Debian's Chromium, headless, driven by
// playwright-core, against the real binary:
//   1. every panel renders its snapshot on load, over one multiplexed
//      socket (the module's connect()) that agreed to permessage-deflate
//      (Chromium offers it by default), the server having compressed what
//      was large enough;
//   2. an HTTP publish shows on its panel within 1 s;
//   3. with a 1 s ping interval the page stays 60 s with no socket closed;
//   4. the server stops and restarts: the page shows the outage, then
//      reconnects by itself and renders the new state;
//   5. EventSource on the SSE endpoint gets the snapshot and an update;
//   6. a screenshot is written under target/;
//   7. under --subscribe-token, the page opened as /?token=... renders
//      every panel, drops the token from its address and sends no
//      referrer, and opened without it renders none and says "refused".
// Any failure exits non-zero; a browser that cannot start is a failure.
//
// Usage: node page.test.mjs PATH_TO_STATECAST [STAY_SECONDS]
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { start as launch } from "./statecast.mjs";

const binary = process.argv[2];
const staySeconds = Number(process.argv[3] || 60);
const fail = (why) => {
  console.error("FAIL: " + why);
  process.exit(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const start = (listen) => launch(binary, ["--demo", "--ping-interval", "1s", "--listen", listen]);

async function until(what, ms, check) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  fail("timed out after " + ms + " ms waiting for " + what);
}

const topics = ["queue", "adw-monitor", "system-status", "webhook-status", "workflow-history",
  "planned-features", "qc-metrics", "workflows", "routes"];

let server = await start("127.0.0.1:0");
const base = "http://" + server.addr;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
}).catch((e) => fail("the browser did not start: " + e.message));
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // Count every WebSocket close the page sees, whatever its code.
  await page.addInitScript(() => {
    window.__closes = [];
    window.__extensions = [];
    window.__urls = [];
    const Native = window.WebSocket;
    window.WebSocket = function (url, protocols) {
      const ws = new Native(url, protocols);
      window.__urls.push(String(url));
      ws.addEventListener("close", (e) => window.__closes.push({ url, code: e.code }));
      ws.addEventListener("open", () => window.__extensions.push(ws.extensions));
      return ws;
    };
    window.WebSocket.prototype = Native.prototype;
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");

  // 1. Every panel renders its snapshot on load.
  await until("every panel to render", 5000, () =>
    page.evaluate((ts) => ts.every((t) => document.getElementById("panel-" + t)?.dataset.seq !== undefined), topics));
  const texts = await page.evaluate((ts) => ts.map((t) => document.querySelector("#panel-" + t + " .body").textContent), topics);
  texts.forEach((text, i) => { if (text.startsWith("cannot render")) fail(topics[i] + ": " + text); });
  console.log("ok: every panel rendered its snapshot");
  const urls = await page.evaluate(() => window.__urls);
  if (urls.length !== 1 || !topics.every((t) => new URL(urls[0]).searchParams.getAll("topic").includes(t)))
    fail("the page did not open one socket for every topic: " + JSON.stringify(urls));
  console.log("ok: one socket for all " + topics.length + " topics");
  const extensions = await page.evaluate(() => window.__extensions);
  const deflate = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  if (extensions.length === 0 || !extensions.every((e) => e === deflate))
    fail("sockets did not all agree to permessage-deflate: " + JSON.stringify(extensions));
  const metrics = await (await fetch(base + "/metrics")).text();
  const compressed = Number(metrics.match(/^statecast_compressed_messages_total (\S+)$/m)?.[1]);
  if (!(compressed > 0)) fail("no message was compressed for the page: " + compressed);
  console.log("ok: " + extensions.length + " sockets agreed to permessage-deflate; " + compressed + " messages compressed");

  // 2. An HTTP publish shows on its panel within 1 s.
  const marker = "Browser test phase " + Date.now();
  const queue = { phases: [{ queue_id: "q-1", phase_number: 1, status: "running", phase_data: { title: marker, content: "" } }], total: 1, paused: false };
  const published = Date.now();
  const res = await fetch(base + "/api/v1/publish/queue", { method: "POST", body: JSON.stringify(queue) });
  if (res.status !== 200) fail("publish answered " + res.status);
  // The demo republishes the queue too: look for the marker before it does.
  await until("the publish to show", 1000, () =>
    page.evaluate((m) => document.getElementById("panel-queue").textContent.includes(m), marker));
  console.log("ok: a publish showed on its panel in " + (Date.now() - published) + " ms");

  // 3. With a 1 s ping interval, no socket closes for the stay.
  await sleep(staySeconds * 1000);
  const closes = await page.evaluate(() => window.__closes);
  if (closes.length) fail("sockets closed during the stay: " + JSON.stringify(closes));
  console.log("ok: " + staySeconds + " s with a 1 s ping interval and no socket closed");

  // 4. Stop, see the outage, restart on the same address, see the new state.
  server.child.kill("SIGTERM");
  await until("the page to show the outage", 5000, () =>
    page.evaluate(() => [...document.querySelectorAll(".conn")].every((c) => c.textContent !== "open")));
  console.log("ok: the page shows the outage");
  server = await start(server.addr);
  await until("the page to reconnect by itself", 40000, () =>
    page.evaluate(() => [...document.querySelectorAll(".conn")].every((c) => c.textContent === "open")));
  const after = "After restart " + Date.now();
  await fetch(base + "/api/v1/publish/queue", { method: "POST",
    body: JSON.stringify({ phases: [{ phase_number: 1, status: "queued", phase_data: { title: after } }], paused: true }) });
  await until("the page to render the new server's state", 2000, () =>
    page.evaluate((m) => document.getElementById("panel-queue").textContent.includes(m), after));
  console.log("ok: the page reconnected by itself and rendered the new state");

  // 5. EventSource gets the snapshot and an update.
  const sse = page.evaluate(() => new Promise((resolve, reject) => {
    const seen = [];
    const es = new EventSource("/api/v1/sse/webhook-status");
    es.onmessage = (e) => {
      seen.push({ id: e.lastEventId, type: JSON.parse(e.data).type, status: JSON.parse(e.data).data.status });
      if (seen.length === 2) { es.close(); resolve(seen); }
    };
    setTimeout(() => reject(new Error("EventSource saw " + JSON.stringify(seen))), 5000);
  }));
  await sleep(300);
  await fetch(base + "/api/v1/publish/webhook-status", { method: "POST", body: JSON.stringify({ status: "sse-test" }) });
  const seen = await sse;
  if (seen[0].type !== "webhook_status_update" || seen[1].status !== "sse-test") fail("SSE saw " + JSON.stringify(seen));
  console.log("ok: EventSource got the snapshot (id " + seen[0].id + ") and the update (id " + seen[1].id + ")");

  // 6. A screenshot.
  mkdirSync("../../target/browser", { recursive: true });
  await page.screenshot({ path: "../../target/browser/page.png", fullPage: true });
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("ok: screenshot in target/browser/page.png");

  // 7. A subscribe token reaches the page's sockets from its own URL.
  const secret = "page-test-token-0123456789";
  const guarded = await launch(binary, ["--demo", "--listen", "127.0.0.1:0", "--subscribe-token", secret]);
  try {
    const withToken = await browser.newPage();
    await withToken.goto("http://" + guarded.addr + "/?token=" + secret);
    await until("every panel to render with the token", 5000, () =>
      withToken.evaluate((ts) => ts.every((t) => document.getElementById("panel-" + t)?.dataset.seq !== undefined), topics));
    // Read once, the token leaves the address bar, and no referrer carries it.
    const shown = await withToken.evaluate(() => [location.href, document.querySelector("meta[name=referrer]")?.content]);
    if (shown[0].includes(secret) || shown[1] !== "no-referrer") fail("address " + shown[0] + ", referrer policy " + shown[1]);
    const without = await browser.newPage();
    await without.goto("http://" + guarded.addr + "/");
    await sleep(1500);
    const rendered = await without.evaluate((ts) => ts.filter((t) => document.getElementById("panel-" + t)?.dataset.seq !== undefined), topics);
    if (rendered.length) fail("panels rendered without the token: " + rendered);
    await until("the page to say it was refused", 5000, () =>
      without.evaluate(() => [...document.querySelectorAll(".conn")].every((c) => c.textContent === "refused")));
    console.log("ok: under --subscribe-token the page renders with ?token= (then gone from the address bar) and not without it");
  } finally {
    guarded.child.kill("SIGTERM");
  }
} finally {
  await browser.close();
  server.child.kill("SIGTERM");
}
