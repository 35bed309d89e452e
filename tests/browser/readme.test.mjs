// The README quickstart's page snippet, as it is written, in Debian's
// Chromium, headless, driven by playwright-core, against the real binary
// started with the README's own `statecast` command (on port 0 rather
// than 8002):
//   1. the snippet's WebSocket and its EventSource each log the topic's
//      snapshot, published before the page opened;
//   2. a publish (with the README's token) reaches both.
// The snippet is served as a page from another loopback port, as a
// reader trying it on their own machine would serve it. Any failure exits
// non-zero.
//
// Usage: node readme.test.mjs PATH_TO_STATECAST
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { start } from "./statecast.mjs";

const binary = process.argv[2];
let server = null;
const fail = (why) => {
  console.error("FAIL: " + why);
  server?.child.kill();
  process.exit(1);
};
const logged = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, ms, check) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  fail("timed out after " + ms + " ms waiting for " + what + "; the page logged " + JSON.stringify(logged));
}

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const block = (name) => {
  const m = readme.match(new RegExp("<!-- readme: " + name + " -->\\n```[a-z]*\\n([\\s\\S]*?)\\n```"));
  if (!m) fail("the README has no `" + name + "` block");
  return m[1];
};
const README_ADDR = "127.0.0.1:8002";

const command = block("serve").split("\n").find((l) => l.startsWith("statecast "));
if (!command) fail("the serve block has no statecast command");
const args = command.split(/\s+/).slice(1);
const token = args[args.indexOf("--publish-token") + 1];

server = await start(binary, ["--listen", "127.0.0.1:0", ...args]);
const base = "http://" + server.addr;
const publish = async (value) => {
  const response = await fetch(base + "/api/v1/publish/prices", {
    method: "POST",
    headers: { Authorization: "Bearer " + token },
    body: JSON.stringify(value),
  });
  if (response.status !== 200) fail("publish: " + response.status + " " + (await response.text()));
};
const first = { bid: 101.5, ask: 101.7 };
const second = { bid: 101.6, ask: 101.8 };
await publish(first);

let host = null;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
}).catch((e) => fail("the browser did not start: " + e.message));
try {
  const page = await browser.newPage();
  page.on("console", async (msg) => {
    logged.push(await Promise.all(msg.args().map((a) => a.jsonValue())));
  });
  page.on("pageerror", (e) => fail("the snippet threw: " + e));
  const html = "<!doctype html><title>quickstart</title>\n" + block("page").replaceAll(README_ADDR, server.addr);
  host = createServer((_, res) => res.writeHead(200, { "Content-Type": "text/html" }).end(html));
  await new Promise((resolve) => host.listen(0, "127.0.0.1", resolve));
  await page.goto("http://127.0.0.1:" + host.address().port + "/");

  const saw = (via, seq, data) => logged.some(([tag, msg]) =>
    tag === via && msg?.type === "prices_update" && msg.seq === seq && JSON.stringify(msg.data) === JSON.stringify(data));
  for (const via of ["ws", "sse"]) {
    await until(via + " to log the snapshot", 5000, () => saw(via, 1, first));
  }
  console.log("ok: the WebSocket and the EventSource logged the snapshot");
  await publish(second);
  for (const via of ["ws", "sse"]) {
    await until(via + " to log the update", 5000, () => saw(via, 2, second));
  }
  console.log("ok: both logged the update");
} finally {
  await browser.close();
  host?.close();
  server.child.kill();
}
