// Another site's page, in Debian's Chromium, against statecast on
// 127.0.0.1 with its defaults. The page is served by this script on its
// own port; Chromium maps evil.test to 127.0.0.1, as a DNS-rebinding or
// any other page's name might resolve. From http://evil.test:PORT/ the
// page's no-cors POST, WebSocket and EventSource must all fail, and the
// topic must be unchanged. The same page from http://localhost:PORT/ must
// succeed at all three, which proves the test can see success. Last,
// statecast's own page under the name evil.test (DNS rebinding) gets 421.
//
// Usage: node cross-site.test.mjs PATH_TO_STATECAST
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { start as launch } from "./statecast.mjs";

const binary = process.argv[2];
let running = null;
const fail = (why) => {
  console.error("FAIL: " + why);
  if (running) running.kill("SIGKILL");
  process.exit(1);
};

const start = () => launch(binary, ["--listen", "127.0.0.1:0"]);

// What the page tries, each for at most 3 s: a text/plain "simple" POST
// that needs no preflight, a WebSocket on adw-monitor, an EventSource on
// queue. Each result says whether the page got through.
const attack = (target) => `<!doctype html><title>attacker</title><script>
const target = ${JSON.stringify(target)};
const timeout = (ms) => new Promise((r) => setTimeout(() => r("timeout"), ms));
async function post() {
  try {
    await fetch(target + "/api/v1/publish/queue", {
      method: "POST", mode: "no-cors",
      body: JSON.stringify({ phases: [], total: 0, paused: true }),
    });
    return "sent";
  } catch (e) { return "failed"; }
}
function socket() {
  return new Promise((resolve) => {
    const ws = new WebSocket(target.replace("http", "ws") + "/api/v1/ws/adw-monitor");
    ws.onmessage = (e) => { ws.close(); resolve("read " + JSON.parse(e.data).type); };
    ws.onerror = () => resolve("failed");
    ws.onclose = () => resolve("failed");
  });
}
function stream() {
  return new Promise((resolve) => {
    const es = new EventSource(target + "/api/v1/sse/queue");
    es.onmessage = (e) => { es.close(); resolve("read " + JSON.parse(e.data).type); };
    es.onerror = () => { es.close(); resolve("failed"); };
  });
}
window.results = Promise.all([
  Promise.race([post(), timeout(3000)]),
  Promise.race([socket(), timeout(3000)]),
  Promise.race([stream(), timeout(3000)]),
]).then(([post, websocket, eventsource]) => ({ post, websocket, eventsource }));
</script>`;

async function paused(base) {
  const reply = await fetch(base + "/api/v1/state/queue");
  if (reply.status !== 200) fail("state from " + base + ": " + reply.status + " " + await reply.text());
  return (await reply.json()).data.paused;
}

const server = await start();
running = server.child;
const base = "http://" + server.addr;
const pages = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end(attack(base));
});
await new Promise((r) => pages.listen(0, "127.0.0.1", r));
const port = pages.address().port;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP evil.test 127.0.0.1"],
}).catch((e) => fail("the browser did not start: " + e.message));

try {
  if (await paused(base) !== false) fail("the queue starts unpaused");
  const run = async (origin) => {
    const page = await browser.newPage();
    await page.goto(origin + "/");
    const results = await page.evaluate(() => window.results);
    await page.close();
    return results;
  };

  const evil = await run("http://evil.test:" + port);
  console.log("from evil.test: " + JSON.stringify(evil));
  if (evil.websocket !== "failed") fail("evil.test's WebSocket: " + evil.websocket);
  if (evil.eventsource !== "failed") fail("evil.test's EventSource: " + evil.eventsource);
  // A no-cors POST always "succeeds" from the page's side: the proof is
  // that nothing changed.
  if (await paused(base) !== false) fail("evil.test's no-cors POST changed the queue");
  console.log("ok: evil.test could neither read nor write");

  const local = await run("http://localhost:" + port);
  console.log("from localhost: " + JSON.stringify(local));
  if (local.websocket !== "read adw_monitor_update") fail("localhost's WebSocket: " + local.websocket);
  if (local.eventsource !== "read queue_update") fail("localhost's EventSource: " + local.eventsource);
  if (await paused(base) !== true) fail("localhost's POST did not publish");
  console.log("ok: the same page from localhost read and wrote");

  // DNS rebinding: evil.test now resolves to statecast itself, so a page
  // there would be same-origin with it. Its Host gives it away.
  const port0 = base.split(":").pop();
  const page = await browser.newPage();
  const rebound = await page.goto("http://evil.test:" + port0 + "/");
  if (rebound.status() !== 421) fail("the page under evil.test's name: " + rebound.status());
  const own = await page.goto("http://localhost:" + port0 + "/");
  if (own.status() !== 200) fail("the page under localhost: " + own.status());
  console.log("ok: statecast's own page is 421 under evil.test's name, 200 under localhost");
} finally {
  await browser.close();
  pages.close();
  server.child.kill("SIGTERM");
}
