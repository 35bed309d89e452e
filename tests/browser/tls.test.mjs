// The live page over https:// in Debian's Chromium, headless, driven by
// playwright-core, against the real binary serving TLS itself
// (--tls-cert, a build with --features tls). The certificate is made here
// with the openssl command; Chromium trusts it only through
// --ignore-certificate-errors-spki-list, the hash of the server key's
// SubjectPublicKeyInfo, computed with openssl too:
//   1. https://127.0.0.1:PORT/ renders every panel's snapshot (the
//      preset's defaults: no --demo, so nothing but this test publishes),
//      over its one multiplexed WebSocket, open on wss:// to the same
//      origin;
//   2. a publish over https:// shows on its panel;
//   3. a second server whose key is not in the list is refused by the same
//      browser, so the first page's trust came from the list alone.
// Any failure exits non-zero; a browser that cannot start is a failure.
//
// Usage: node tls.test.mjs PATH_TO_STATECAST
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { start as launch } from "./statecast.mjs";

const binary = process.argv[2];
const running = [];
const dir = mkdtempSync(join(tmpdir(), "statecast-browser-tls-"));
const cleanup = () => {
  running.forEach((child) => child.kill("SIGTERM"));
  rmSync(dir, { recursive: true, force: true });
};
const fail = (why) => {
  console.error("FAIL: " + why);
  cleanup();
  process.exit(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, ms, check) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  fail("timed out after " + ms + " ms waiting for " + what);
}

const openssl = (args, input) => execFileSync("openssl", args, { cwd: dir, input, stdio: ["pipe", "pipe", "pipe"] });
const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

// A throwaway authority, and a certificate for 127.0.0.1 it signs: NAME.pem, NAME.key.
openssl(["req", "-x509", ...ec, "-days", "1", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=statecast browser test CA"]);
writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
function certificate(name, serial) {
  openssl(["req", ...ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=127.0.0.1"]);
  openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(serial),
    "-days", "1", "-out", name + ".pem", "-extfile", "ext.cnf"]);
  return { cert: join(dir, name + ".pem"), key: join(dir, name + ".key") };
}
// base64(sha256(SubjectPublicKeyInfo DER)), what Chromium's flag takes.
const spki = (pair) =>
  openssl(["dgst", "-sha256", "-binary"], openssl(["pkey", "-in", pair.key, "-pubout", "-outform", "DER"])).toString("base64");

const trusted = certificate("trusted", 0x3001);
const unlisted = certificate("unlisted", 0x3002);
const ca = openssl(["x509", "-in", "ca.pem"]);

const start = async (pair) => {
  const server = await launch(binary, ["--listen", "127.0.0.1:0", "--tls-cert", pair.cert, "--tls-key", pair.key]);
  running.push(server.child);
  return server;
};

// An HTTPS request from this script, trusting the test authority only.
const https = (url, method, body) => new Promise((resolve, reject) => {
  const req = request(url, { method, ca }, (res) => {
    let text = "";
    res.on("data", (c) => { text += c; });
    res.on("end", () => resolve({ status: res.statusCode, text }));
  });
  req.on("error", reject);
  req.end(body);
});

const topics = ["queue", "adw-monitor", "system-status", "webhook-status", "workflow-history",
  "planned-features", "qc-metrics", "workflows", "routes"];

const server = await start(trusted);
const base = "https://" + server.addr;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--ignore-certificate-errors-spki-list=" + spki(trusted)],
}).catch((e) => fail("the browser did not start: " + e.message));
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.addInitScript(() => {
    window.__sockets = [];
    const Native = window.WebSocket;
    window.WebSocket = function (url, protocols) {
      const ws = new Native(url, protocols);
      const seen = { url: ws.url, open: false };
      window.__sockets.push(seen);
      ws.addEventListener("open", () => { seen.open = true; });
      return ws;
    };
    window.WebSocket.prototype = Native.prototype;
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const answer = await page.goto(base + "/").catch((e) => fail("the page over https://: " + e.message));
  if (answer.status() !== 200) fail("the page over https:// answered " + answer.status());

  // 1. Every panel renders its snapshot, over wss:// to the same origin.
  await until("every panel to render over https://", 10000, () =>
    page.evaluate((ts) => ts.every((t) => document.getElementById("panel-" + t)?.dataset.seq !== undefined), topics));
  const texts = await page.evaluate((ts) => ts.map((t) => document.querySelector("#panel-" + t + " .body").textContent), topics);
  texts.forEach((text, i) => { if (text.startsWith("cannot render")) fail(topics[i] + ": " + text); });
  const sockets = await page.evaluate(() => window.__sockets);
  const origin = "wss://" + server.addr + "/";
  // The page opens one multiplexed socket for every panel.
  if (sockets.length !== 1) fail("not one socket for the panels: " + JSON.stringify(sockets));
  const stray = sockets.filter((s) => !s.url.startsWith(origin) || !s.open);
  if (stray.length) fail("sockets not open on " + origin + ": " + JSON.stringify(stray));
  console.log("ok: every panel rendered over https://, its one socket open on " + origin);

  // 2. A publish over https:// shows on its panel.
  const marker = "Browser TLS test phase " + Date.now();
  const queue = { phases: [{ queue_id: "q-1", phase_number: 1, status: "running", phase_data: { title: marker, content: "" } }], total: 1, paused: false };
  const published = await https(base + "/api/v1/publish/queue", "POST", JSON.stringify(queue));
  if (published.status !== 200) fail("publish over https:// answered " + published.status + ": " + published.text);
  await until("the publish to show", 10000, () =>
    page.evaluate((m) => document.getElementById("panel-queue").textContent.includes(m), marker));
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("ok: a publish over https:// showed on its panel");

  // 3. A key not in the list is refused: Chromium checks, the list trusts.
  const other = await start(unlisted);
  const refused = await browser.newPage();
  const outcome = await refused.goto("https://" + other.addr + "/").then(
    (r) => "loaded with " + r.status(), (e) => e.message);
  if (!/ERR_CERT/.test(outcome)) fail("a server whose key is not in the list: " + outcome);
  console.log("ok: a server whose key is not in the list is refused (" + outcome.split("\n")[0] + ")");
} finally {
  await browser.close();
  cleanup();
}
