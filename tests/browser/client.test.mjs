// statecast.js in Debian's Chromium, headless, driven by playwright-core:
// the client's contract, each check a line saying what it proves. The
// module is always the one the binary serves. Close codes the binary
// cannot be made to send on cue (1008, 1011, a refused upgrade of each
// status, a proxy that blocks WebSockets) come from a small Node server
// (the `ws` package) that speaks the multiplexed protocol; the rest run
// against the real binary.
//
// Usage: node client.test.mjs PATH_TO_STATECAST (built with --features jwt)
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { WebSocketServer } from "ws";
import { chromium } from "playwright-core";
import { start as launch } from "./statecast.mjs";

const binary = process.argv[2];
const running = [];
// A failed check ends itself, and the others still run: every failure is
// listed, then the run exits 1.
const fail = (why) => {
  throw new Error(why);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A hung check must not hang CI: the whole run has four minutes.
setTimeout(() => {
  console.error("FAIL: the run took over 240 s");
  for (const child of running) child.kill("SIGKILL");
  process.exit(1);
}, 240000).unref();

// The page whose log a timeout prints, and what any page threw.
let current = null;
const pageErrors = [];

async function until(what, ms, check) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(25);
  }
  const seen = current ? " (the client's states: " + JSON.stringify(await current.evaluate(() => log.states)) + ")" : "";
  fail("timed out after " + ms + " ms waiting for " + what + seen);
}

// Long enough for many retries at the test's backoff (20 ms, capped at
// 100 ms): a wait that proves something did NOT happen, never one that
// stands in for a condition.
const QUIET_MS = 1200;

async function statecast(args, env, listen) {
  const server = await launch(binary, ["--listen", listen || "127.0.0.1:0", ...args], env);
  running.push(server.child);
  return server;
}

async function publish(base, topic, data) {
  const reply = await fetch(base + "/api/v1/publish/" + topic, { method: "POST", body: JSON.stringify(data) });
  if (reply.status !== 200) fail("publish to " + topic + ": " + reply.status + " " + await reply.text());
  return (await reply.json()).seq;
}

// ---- A Node server speaking the multiplexed protocol, told what to do ----

const fake = { plan: null, upgrades: [], streams: [], auth: [], open: new Set() };
const served = {}; // path -> the binary's own bytes of the client

function snapshot(topic, seq, extra) {
  return JSON.stringify({ type: topic.replace(/-/g, "_") + "_update", topic, seq, data: { topic, seq, ...extra } });
}

const http = createServer((req, res) => {
  const url = new URL(req.url, "http://fake");
  if (url.pathname === "/") {
    res.writeHead(200, { "Content-Type": "text/html" });
    return res.end("<!doctype html><title>client test</title>");
  }
  if (served[url.pathname]) {
    res.writeHead(200, { "Content-Type": "text/javascript" });
    return res.end(served[url.pathname]);
  }
  if (url.pathname === "/healthz") {
    // As the binary's: 200 whatever the token.
    res.writeHead(200, { "Content-Type": "application/json" });
    return res.end("{\"status\":\"ok\"}\n");
  }
  if (url.pathname === "/api/v1/sse") {
    fake.streams.push(req.url);
    fake.auth.push(req.headers.authorization || null);
    return fake.plan.sse(res, url, fake.streams.length);
  }
  res.writeHead(404);
  res.end("no such endpoint " + url.pathname + "\n");
});
const wss = new WebSocketServer({ noServer: true });
http.on("upgrade", (req, socket, head) => {
  fake.upgrades.push(req.url);
  const url = new URL(req.url, "http://fake");
  const verdict = fake.plan.upgrade(url, fake.upgrades.length);
  if (verdict.status) {
    const body = verdict.body + "\n";
    socket.end("HTTP/1.1 " + verdict.status + " Refused\r\nContent-Type: text/plain\r\nContent-Length: " +
      Buffer.byteLength(body) + "\r\nConnection: close\r\n\r\n" + body);
    return;
  }
  if (verdict.drop) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    fake.open.add(ws);
    ws.on("close", () => fake.open.delete(ws));
    verdict.open(ws, url);
  });
});
await new Promise((r) => http.listen(0, "127.0.0.1", r));
const fakeBase = "http://127.0.0.1:" + http.address().port;

function reset(plan) {
  for (const ws of fake.open) ws.terminate();
  fake.plan = plan;
  fake.upgrades = [];
  fake.streams = [];
  fake.auth = [];
}

// Sends every requested topic's snapshot, seq 1.
const greet = (ws, url) => url.searchParams.getAll("topic").forEach((t) => ws.send(snapshot(t, 1)));
const refuseSse = (status, body) => (res) => {
  res.writeHead(status, { "Content-Type": "text/plain" });
  res.end(body + "\n");
};
function sseOpen(res, url, events) {
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
  url.searchParams.getAll("topic").forEach((t) => res.write("event: " + t + "\ndata: " + snapshot(t, 1) + "\n\n"));
  for (const e of events || []) res.write(e);
  // The server ends a stream after its close event.
  if (events && events.length) res.end();
}

// ---- The browser ----

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
}).catch((e) => {
  console.error("FAIL: the browser did not start: " + e.message);
  process.exit(1);
});

// A page on `base`'s origin with the module as window.statecast, a log of
// what the client reported, and watch(options): options with a fast
// backoff and the log's callbacks.
async function client(base, real, init) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  if (init) await page.addInitScript(init);
  // The binary's origin: any document of its will do (a page.route'd one
  // would keep the page's WebSockets from opening).
  await page.goto(base + (real ? "/statecast.mjs" : "/"));
  await page.evaluate(async () => {
    window.statecast = await import("/statecast.mjs");
    window.log = { states: [], messages: [], errors: [], tokens: 0 };
    window.watch = (o) => Object.assign({
      baseDelay: 20,
      maxDelay: 100,
      onState: (s, r) => log.states.push(s + (r ? " " + r : "")),
      onMessage: (m) => log.messages.push(m),
      onError: (e) => log.errors.push(e),
    }, o);
  });
  current = page;
  return page;
}
const states = (page) => page.evaluate(() => log.states);

const checks = [];
const check = (name, run) => checks.push({ name, run });

// ---- The checks ----

check("the module, the classic script and the declarations agree", async () => {
  const server = await statecast(["--preset", "none", "--topic", "a"]);
  const base = "http://" + server.addr;
  for (const path of ["/statecast.mjs", "/statecast.js", "/statecast.d.ts"]) {
    const reply = await fetch(base + path);
    if (reply.status !== 200) fail(path + ": " + reply.status);
    served[path] = await reply.text();
  }
  const page = await client(base, true);
  const names = await page.evaluate(async () => {
    const module = Object.keys(window.statecast).sort();
    const script = document.createElement("script");
    script.src = "/statecast.js";
    await new Promise((resolve, reject) => {
      script.onload = resolve;
      script.onerror = reject;
      document.head.appendChild(script);
    });
    // The classic script sets the global; the module was only a local.
    return { module, script: Object.keys(globalThis.statecast).sort() };
  });
  if (names.module.join() !== names.script.join()) fail("module " + names.module + ", script " + names.script);
  for (const name of names.module) {
    if (!new RegExp("export (function|const) " + name + "\\b").test(served["/statecast.d.ts"])) fail("statecast.d.ts does not declare " + name);
  }
  // tsc checks the declarations as an importer and as a classic script sees them.
  try {
    execFileSync("node_modules/.bin/tsc", ["-p", "types/tsconfig.json"], { stdio: "pipe" });
  } catch (e) {
    fail("tsc: " + e.stdout + e.stderr);
  }
  const pack = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: "../../src/server/web", stdio: ["ignore", "pipe", "ignore"] }));
  const files = pack[0].files.map((f) => f.path).sort().join();
  if (files !== "dist/statecast.mjs,package.json,statecast.d.ts") fail("npm pack would ship " + files);
  // The package's module (made by its prepack) is the binary's, byte for byte.
  if (readFileSync("../../src/server/web/dist/statecast.mjs", "utf8") !== served["/statecast.mjs"]) {
    fail("dist/statecast.mjs (npm) differs from the binary's /statecast.mjs");
  }
  const version = JSON.parse(readFileSync("../../src/server/web/package.json", "utf8")).version;
  const VERSION = await page.evaluate(() => statecast.VERSION);
  if (version !== VERSION) fail("package.json says " + version + ", the module " + VERSION);
  await page.close();
  server.child.kill("SIGTERM");
  return "exports " + names.module.join(", ") + "; tsc --noEmit passes; npm pack ships " + files;
});

// The retry policy, one close code at a time, from the fake server: the
// first connection gets the snapshots and the close, the next stays open.
const retried = { 1001: false, 1006: true, 1011: true, 1012: false, 1013: true };
for (const [code, resumes] of Object.entries(retried)) {
  check("close " + code + " is retried" + (resumes ? ", resuming" : ", asking for snapshots again"), async () => {
    reset({
      upgrade: (url, n) => ({
        open: (ws) => {
          greet(ws, url);
          if (n > 1) return;
          if (code === "1006") setTimeout(() => ws.terminate(), 50);
          else ws.close(Number(code), "test close");
        },
      }),
    });
    const page = await client(fakeBase);
    await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a", "b"] })); });
    await until("a second connection to open", 5000, async () =>
      fake.upgrades.length === 2 && (await page.evaluate(() => conn.state)) === "open");
    const seen = await states(page);
    if (!seen.some((s) => s.startsWith("closed " + code))) fail("states " + JSON.stringify(seen));
    const since = fake.upgrades[1].includes("since=a:1") && fake.upgrades[1].includes("since=b:1");
    if (since !== resumes) fail("the retry after " + code + " asked " + fake.upgrades[1]);
    await page.close();
    return fake.upgrades[1];
  });
}

for (const [code, reason] of [[1008, "ping flood"], [1002, "protocol error"]]) {
  check("close " + code + " stops for good, saying why", async () => {
    reset({ upgrade: (url) => ({ open: (ws) => { greet(ws, url); ws.close(code, reason); } }) });
    const page = await client(fakeBase);
    await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"] })); });
    await until("the refusal", 5000, async () => (await page.evaluate(() => conn.state)) === "refused");
    await sleep(QUIET_MS);
    if (fake.upgrades.length !== 1) fail(fake.upgrades.length + " connections after " + code);
    const said = await page.evaluate(() => conn.reason);
    if (said !== code + " " + reason) fail("reason " + said);
    await page.close();
    return "state refused, reason \"" + said + "\"";
  });
}

for (const [status, body, verdict] of [[401, "missing or wrong token", "stops"], [403, "token does not cover topic \"a\"", "stops"],
  [404, "unknown topic \"a\"", "stops"], [503, "shutting down", "retries"]]) {
  check("an upgrade refused with " + status + " " + verdict + " (learnt from one HTTP probe)", async () => {
    reset({ upgrade: () => ({ status, body }), sse: refuseSse(status, body) });
    const page = await client(fakeBase);
    await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"] })); });
    if (verdict === "stops") {
      await until("the refusal", 5000, async () => (await page.evaluate(() => conn.state)) === "refused");
      await sleep(QUIET_MS);
      if (fake.upgrades.length !== 1 || fake.streams.length !== 1) fail(fake.upgrades.length + " upgrades, " + fake.streams.length + " probes");
      const said = await page.evaluate(() => conn.reason);
      if (said !== status + " " + body) fail("reason " + said);
      await page.close();
      return "refused: \"" + said + "\"";
    }
    await until("three attempts", 5000, () => fake.upgrades.length >= 3);
    const seen = await states(page);
    if (seen.some((s) => s.startsWith("refused"))) fail("states " + JSON.stringify(seen));
    if (!seen.includes("closed " + status + " " + body)) fail("states " + JSON.stringify(seen));
    await page.close();
    return fake.upgrades.length + " attempts, each probed, never refused";
  });
}

check("WebSockets blocked, HTTP working: transport auto falls back to SSE, \"websocket\" keeps retrying", async () => {
  reset({ upgrade: () => ({ status: 400, body: "WebSockets are not allowed here" }), sse: (res, url) => sseOpen(res, url) });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a", "b"] })); });
  await until("both topics over SSE", 5000, () =>
    page.evaluate(() => conn.transport === "sse" && conn.state === "open" && conn.data("a") !== undefined && conn.data("b") !== undefined));
  if (fake.upgrades.length !== 1) fail(fake.upgrades.length + " upgrades");
  await page.evaluate(() => conn.close());
  reset(fake.plan);
  await page.evaluate(() => { window.strict = statecast.connect(watch({ topics: ["a"], transport: "websocket" })); });
  await until("three WebSocket attempts", 5000, () => fake.upgrades.length >= 3);
  const said = "closed the WebSocket was refused; HTTP works";
  const seen = await states(page);
  if (!seen.includes(said) || seen.some((s) => s.startsWith("refused"))) fail("transport websocket: " + JSON.stringify(seen));
  if (await page.evaluate(() => strict.transport) !== null) fail("transport websocket opened " + await page.evaluate(() => strict.transport));
  await page.close();
  return "auto: one refused upgrade, then SSE; websocket: " + fake.upgrades.length + " attempts, \"" + said + "\"";
});

check("token refresh: getToken is asked again after 4001, on WebSocket and on SSE", async () => {
  reset({
    upgrade: (url, n) => ({ open: (ws) => { greet(ws, url); if (n === 1) ws.close(4001, "token expired"); } }),
    sse: (res, url) => sseOpen(res, url, fake.streams.length === 1
      ? ["data: {\"type\":\"close\",\"data\":{\"code\":4001,\"reason\":\"token expired\"}}\n\n"] : []),
  });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"], getToken: async () => "t" + ++log.tokens })); });
  await until("the second WebSocket", 5000, async () => fake.upgrades.length === 2 && (await page.evaluate(() => conn.state)) === "open");
  if (!fake.upgrades[0].includes("token=t1") || !fake.upgrades[1].includes("token=t2")) fail("tokens " + fake.upgrades);
  await page.evaluate(() => conn.close());
  await page.evaluate(() => { window.sse = statecast.connect(watch({ topics: ["a"], transport: "sse", getToken: () => "s" + ++log.tokens })); });
  await until("the second stream", 5000, async () => fake.streams.length === 2 && (await page.evaluate(() => sse.state)) === "open");
  if (fake.auth[0] !== "Bearer s3" || fake.auth[1] !== "Bearer s4") fail("tokens " + fake.auth);
  await page.close();
  return fake.upgrades[1] + " then " + fake.streams[1] + " with " + fake.auth[1];
});

check("the SSE stream and the probe send the token as Authorization: Bearer, never in their URL", async () => {
  reset({ upgrade: () => ({ status: 401, body: "reading topics needs a valid token" }), sse: (res, url) => sseOpen(res, url) });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"], token: "s3cret-42" })); });
  await until("the fallback stream open", 5000, () => page.evaluate(() => conn.transport === "sse" && conn.data("a") !== undefined));
  // The first request is the probe of the refused upgrade, the second the stream.
  if (fake.streams.length !== 2) fail(fake.streams.length + " requests: " + fake.streams);
  if (fake.streams.some((u) => u.includes("s3cret"))) fail("a token in a URL: " + fake.streams);
  if (fake.auth.some((a) => a !== "Bearer s3cret-42")) fail("headers " + fake.auth);
  await page.close();
  return fake.streams.join(" then ") + ", each with " + fake.auth[0];
});

check("a connection cut after its snapshots backs off instead of reconnecting at once; 1013 waits at least maxDelay/4", async () => {
  const span = 1500;
  const counts = {};
  for (const code of [1011, 1013]) {
    reset({ upgrade: (url) => ({ open: (ws) => { greet(ws, url); setTimeout(() => ws.close(code, "cut"), 10); } }) });
    const page = await client(fakeBase);
    await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"], maxDelay: 2000 })); });
    await until("the first snapshot", 5000, () => page.evaluate(() => log.messages.length > 0));
    const from = fake.upgrades.length;
    await sleep(span);
    counts[code] = fake.upgrades.length - from;
    await page.evaluate(() => conn.close());
    await page.close();
  }
  // Without growth a reconnect comes every ~10 ms (base 20 ms): over 100 in
  // the window. Doubling from 20 ms to 2 s allows about ten; 1013's floor of
  // 500 ms, three.
  if (counts[1011] > 25) fail(counts[1011] + " reconnects in " + span + " ms after 1011");
  if (counts[1013] > 3) fail(counts[1013] + " reconnects in " + span + " ms after 1013");
  return "reconnects in " + span + " ms: " + counts[1011] + " after 1011, " + counts[1013] + " after 1013";
});

check("a connection that stayed up resetAfter ms starts the backoff again", async () => {
  // Each connection lasts 150 ms, over resetAfter (100): every retry is
  // within base delay again, so fourteen come in about 2.5 s. Growing to
  // maxDelay instead, the fourteenth would take some 50 s.
  reset({ upgrade: (url) => ({ open: (ws) => { greet(ws, url); setTimeout(() => ws.close(1011, "cut"), 150); } }) });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"], maxDelay: 20000, resetAfter: 100 })); });
  await until("fourteen connections", 8000, () => fake.upgrades.length >= 14);
  await page.close();
  return fake.upgrades.length + " connections";
});

check("an SSE line over 16 MiB closes the stream, which is retried, instead of growing without bound", async () => {
  const long = "data: " + "x".repeat(17 * 1024 * 1024);
  reset({
    upgrade: () => ({ drop: true }),
    sse: (res, url, n) => {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      if (n === 1) res.write(long);
      else res.write("event: a\ndata: " + snapshot("a", 1) + "\n\n");
    },
  });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"], transport: "sse" })); });
  await until("the second stream's snapshot", 10000, () => page.evaluate(() => conn.data("a") !== undefined));
  const seen = await states(page);
  const said = seen.find((s) => s.startsWith("closed"));
  if (said !== "closed an SSE line or event over 16 MiB") fail("states " + JSON.stringify(seen));
  await page.close();
  return "\"" + said + "\", then stream " + fake.streams.length;
});

check("a statecast.error 503 for a topic keeps it and subscribes again later; 404 forgets it (WebSocket and SSE)", async () => {
  const err = (topic, status) => JSON.stringify({ type: "statecast.error", topic, status, error: "no room for topic " + topic });
  reset({
    upgrade: (url) => ({
      open: (ws) => {
        ws.send(snapshot("a", 1));
        ws.send(err("b", 503));
        ws.send(err("c", 404));
        ws.on("message", (raw) => {
          const cmd = JSON.parse(String(raw));
          if (cmd.op === "subscribe") cmd.topics.forEach((t) => ws.send(snapshot(t, 1)));
        });
      },
    }),
    // The first stream has no room for b; the next (opened again to ask) has.
    sse: (res, url, n) => {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write("event: a\ndata: " + snapshot("a", 1) + "\n\n");
      if (n === 1) res.write("data: " + err("b", 503) + "\n\n");
      else if (url.searchParams.getAll("topic").includes("b")) res.write("event: b\ndata: " + snapshot("b", 1) + "\n\n");
    },
  });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a", "b", "c"] })); });
  await until("b's snapshot after the 503", 5000, () => page.evaluate(() => conn.data("b") !== undefined));
  const ws = await page.evaluate(() => ({ topics: conn.topics, errors: log.errors.map((e) => e.topic + " " + e.status) }));
  if (ws.topics.join() !== "a,b") fail("topics " + ws.topics);
  if (fake.upgrades.length !== 1) fail(fake.upgrades.length + " upgrades: the subscribe should go over the open socket");
  await page.evaluate(() => conn.close());
  await page.evaluate(() => { window.sse = statecast.connect(watch({ topics: ["a", "b"], transport: "sse" })); });
  await until("b's snapshot over SSE after the 503", 5000, () => page.evaluate(() => sse.data("b") !== undefined));
  if (!fake.streams[1].includes("topic=b")) fail("the second stream asked " + fake.streams[1]);
  await page.close();
  return "WebSocket: topics " + ws.topics + ", errors " + ws.errors.join(", ") + "; SSE: " + fake.streams.length + " streams";
});

// A JSON Patch differ, enough for the fake server's deltas: leaves
// replaced, keys added and removed, an array grown or shrunk by its last
// item, anything else replaced whole.
function diff(a, b, path = "", ops = []) {
  if (JSON.stringify(a) === JSON.stringify(b)) return ops;
  const key = (k) => path + "/" + String(k).replace(/~/g, "~0").replace(/\//g, "~1");
  const object = (v) => v !== null && typeof v === "object";
  if (Array.isArray(a) && Array.isArray(b)) {
    const same = (n) => JSON.stringify(a.slice(0, n)) === JSON.stringify(b.slice(0, n));
    if (b.length === a.length + 1 && same(a.length)) ops.push({ op: "add", path: path + "/-", value: b[a.length] });
    else if (a.length === b.length + 1 && same(b.length)) ops.push({ op: "remove", path: key(b.length) });
    else if (a.length === b.length) a.forEach((_, i) => diff(a[i], b[i], key(i), ops));
    else ops.push({ op: "replace", path, value: b });
  } else if (object(a) && object(b) && !Array.isArray(a) && !Array.isArray(b)) {
    for (const k of Object.keys(a)) if (!(k in b)) ops.push({ op: "remove", path: key(k) });
    for (const k of Object.keys(b)) {
      if (k in a) diff(a[k], b[k], key(k), ops);
      else ops.push({ op: "add", path: key(k), value: b[k] });
    }
  } else ops.push({ op: "replace", path, value: b });
  return ops;
}

// The n-th value of a topic that changes a little each time (so a patch
// is smaller than the snapshot, and the binary sends it): an item's
// status and counter, a list that grows and shrinks, a key that needs
// JSON Pointer escapes, a key that comes and goes.
function value(n) {
  const items = [];
  for (let i = 0; i < 20; i++) {
    items.push({ id: "item-" + i, title: "A fairly long title for item number " + i,
      status: ["queued", "running", "done"][Math.floor((n + i * 7) / 20) % 3], n: i === n % 20 ? n : 0 });
  }
  const v = { seq: n, items, tail: Array.from({ length: n % 4 }, (_, k) => k),
    "a/b~c": n % 3 === 0 ? { even: n % 2 === 0 } : [n % 4, n % 5], total: items.length };
  if (n % 11 === 0) v.note = "eleven " + n;
  return v;
}

check("deltas applied give the same state as full snapshots across 1,000 publishes; a bad base is fetched again in full", async () => {
  const PUBLISHES = 1000;
  const BAD = 500; // this publish goes to each delta client with a wrong base
  const truth = [null];
  const clients = new Set();
  let deltas = 0;
  let resubscribed = 0;
  const deliver = (c, n) => {
    const data = truth[n];
    if (c.delta && c.last === n - 1 && n > 1) {
      deltas += 1;
      c.push({ type: "a_update", topic: "a", seq: n, base: n === BAD ? n - 2 : n - 1, delta: diff(truth[n - 1], data) });
    } else c.push({ type: "a_update", topic: "a", seq: n, data });
    c.last = n;
  };
  const join = (c, url) => {
    c.delta = url.searchParams.get("delta") === "json-patch";
    c.last = 0;
    clients.add(c);
    if (truth.length > 1) deliver(c, truth.length - 1);
  };
  reset({
    upgrade: (url) => ({
      open: (ws) => {
        const c = { push: (m) => ws.send(JSON.stringify(m)) };
        join(c, url);
        ws.on("close", () => clients.delete(c));
        ws.on("message", (text) => {
          const cmd = JSON.parse(text);
          if (cmd.op === "unsubscribe") {
            clients.delete(c);
            ws.send(JSON.stringify({ type: "statecast.unsubscribed", topic: "a" }));
          } else if (cmd.op === "subscribe") {
            resubscribed += 1;
            join(c, url);
          }
        });
      },
    }),
    sse: (res, url) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const c = { push: (m) => res.write("event: a\ndata: " + JSON.stringify(m) + "\n\n") };
      if (url.searchParams.getAll("since").length) fail("a stream reopened after a bad base resumed: " + url);
      join(c, url);
      res.on("close", () => clients.delete(c));
    },
  });
  truth.push(value(1));
  const page = await client(fakeBase);
  await page.evaluate(() => {
    window.seen = { plain: {}, ws: {}, sse: {} };
    const keep = (name) => (m) => { if (m.topic === "a") seen[name][m.seq] = JSON.stringify(m.data); };
    window.conns = [
      statecast.connect(watch({ topics: ["a"], onMessage: keep("plain") })),
      statecast.connect(watch({ topics: ["a"], delta: "json-patch", onMessage: keep("ws") })),
      statecast.connect(watch({ topics: ["a"], delta: "json-patch", transport: "sse", onMessage: keep("sse") })),
    ];
  });
  await until("three clients", 5000, () => clients.size === 3);
  for (let n = 2; n <= PUBLISHES; n++) {
    truth.push(value(n));
    for (const c of clients) deliver(c, n);
    await new Promise(setImmediate);
  }
  await until("every client to hold the last publish", 10000, () =>
    page.evaluate((n) => ["plain", "ws", "sse"].every((k) => seen[k][n] !== undefined), PUBLISHES));
  const seen = await page.evaluate(() => seen);
  for (const [name, got] of Object.entries(seen)) {
    for (const [seq, data] of Object.entries(got)) {
      if (data !== JSON.stringify(truth[seq])) fail(name + " holds at seq " + seq + ": " + data + ", not " + JSON.stringify(truth[seq]));
    }
  }
  if (Object.keys(seen.plain).length !== PUBLISHES) fail("the plain client saw " + Object.keys(seen.plain).length + " publishes");
  if (deltas < 2 * (PUBLISHES - 50)) fail("only " + deltas + " deltas were sent");
  if (resubscribed !== 1) fail("the WebSocket client resubscribed " + resubscribed + " times after the bad base");
  if (fake.streams.length !== 2) fail(fake.streams.length + " SSE streams: the bad base should reopen it once");
  await page.close();
  return deltas + " deltas sent; " + Object.keys(seen.ws).length + " and " + Object.keys(seen.sse).length +
    " states over WebSocket and SSE, each equal to the snapshot of its seq";
});

// Object keys in one order, so two encodings of one value compare equal.
const canonical = (v) => JSON.stringify(v, (k, x) => (x && typeof x === "object" && !Array.isArray(x)
  ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x));

check("on the binary, deltas over WebSocket and SSE give the states full snapshots give, across 1,000 publishes", async () => {
  const PUBLISHES = 1000;
  const server = await statecast(["--preset", "none", "--topic", "a"]);
  const base = "http://" + server.addr;
  await publish(base, "a", value(1));
  // Counts the delta frames the page's WebSockets receive.
  const page = await client(base, true, () => {
    window.__deltas = 0;
    const Native = window.WebSocket;
    window.WebSocket = function (url, protocols) {
      const ws = new Native(url, protocols);
      ws.addEventListener("message", (e) => { if (String(e.data).includes("\"base\":")) window.__deltas += 1; });
      return ws;
    };
    window.WebSocket.prototype = Native.prototype;
  });
  await page.evaluate(() => {
    window.seen = { plain: {}, ws: {}, sse: {} };
    const keep = (name) => (m) => { seen[name][m.seq] = m.data; };
    window.subs = [
      statecast.subscribe("/api/v1/ws/a", watch({ onMessage: keep("plain") })),
      statecast.subscribe("/api/v1/ws/a", watch({ delta: "json-patch", onMessage: keep("ws") })),
      statecast.subscribe("/api/v1/ws/a", watch({ delta: "json-patch", transport: "sse", onMessage: keep("sse") })),
    ];
  });
  await until("three subscribers", 5000, () => page.evaluate(() => subs.every((s) => s.state === "open" && s.seq === 1)));
  for (let n = 2; n <= PUBLISHES; n++) await publish(base, "a", value(n));
  await until("every subscriber to hold the last publish", 10000, () =>
    page.evaluate((n) => subs.every((s) => s.seq === n), PUBLISHES));
  const seen = await page.evaluate(() => seen);
  for (const [name, got] of Object.entries(seen)) {
    for (const [seq, data] of Object.entries(got)) {
      if (canonical(data) !== canonical(value(Number(seq)))) fail(name + " holds at seq " + seq + ": " + JSON.stringify(data));
    }
  }
  const deltas = await page.evaluate(() => window.__deltas);
  if (deltas < PUBLISHES / 2) fail("only " + deltas + " deltas reached the WebSocket");
  await page.close();
  server.child.kill("SIGTERM");
  return deltas + " deltas over WebSocket; " + Object.keys(seen.ws).length + ", " + Object.keys(seen.sse).length + " and " +
    Object.keys(seen.plain).length + " states (delta WebSocket, delta SSE, plain), each the snapshot of its seq";
});

check("a signed token that expires (4001 from the binary) is refreshed through getToken", async () => {
  const secret = "client-test-secret-0123456789abcdef";
  const env = { ...process.env, STATECAST_JWT_SECRET: secret };
  const server = await statecast(["--preset", "none", "--topic", "a"], env);
  const base = "http://" + server.addr;
  const page = await client(base, true);
  let minted = 0;
  await page.exposeFunction("mint", () => {
    minted += 1;
    return execFileSync(binary, ["token", "--topics", "a", "--exp", "2s"], { env }).toString().trim();
  });
  await page.evaluate(() => { window.sub = statecast.subscribe("/api/v1/ws/a", watch({ getToken: () => window.mint() })); });
  await until("the token to expire and the client to come back", 10000, async () =>
    minted >= 2 && (await page.evaluate(() => sub.state)) === "open");
  const seen = await states(page);
  if (!seen.includes("closed 4001 token expired")) fail("states " + JSON.stringify(seen));
  await page.close();
  server.child.kill("SIGTERM");
  return minted + " tokens minted; states " + seen.join(" -> ");
});

check("a restart (1012 from the binary on SIGTERM) is retried, and the new process's snapshot asked for again", async () => {
  const args = ["--preset", "none", "--topic", "a", "--drain", "0"];
  let server = await statecast(args);
  const base = "http://" + server.addr;
  await publish(base, "a", { run: "old" });
  const page = await client(base, true);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"] })); });
  await until("the old run's snapshot", 5000, () => page.evaluate(() => conn.data("a")?.run === "old"));
  server.child.kill("SIGTERM");
  await until("the 1012", 5000, async () => (await states(page)).some((s) => s.startsWith("closed 1012")));
  // Its port must be free before the next run binds it.
  if (server.child.exitCode === null && server.child.signalCode === null) {
    await new Promise((r) => server.child.once("exit", r));
  }
  // The new process counts from 1 again: a client that resumed with
  // since=a:1 would be sent nothing, and keep the old run's data.
  server = await statecast(args, undefined, server.addr);
  await publish(base, "a", { run: "new" });
  await until("the new run's snapshot", 10000, () => page.evaluate(() => conn.state === "open" && conn.data("a")?.run === "new"));
  const seq = await page.evaluate(() => conn.seq("a"));
  if (seq !== 1) fail("seq " + seq);
  const restart = (await states(page)).find((s) => s.startsWith("closed 1012"));
  await page.close();
  server.child.kill("SIGTERM");
  return "\"" + restart + "\", then the new run's seq 1";
});

check("a refused upgrade on the binary (no subscribe token) stops with its 401 and words", async () => {
  const server = await statecast(["--preset", "none", "--topic", "a", "--subscribe-token", "client-test-token-0123456789"]);
  const base = "http://" + server.addr;
  const page = await client(base, true);
  await page.evaluate(() => { window.sub = statecast.subscribe("/api/v1/ws/a", watch({})); });
  await until("the refusal", 5000, async () => (await page.evaluate(() => sub.state)) === "refused");
  const said = await page.evaluate(() => sub.reason);
  if (!said.startsWith("401 ")) fail("reason " + said);
  await page.close();
  server.child.kill("SIGTERM");
  return "refused: \"" + said + "\"";
});

check("eight topics over one SSE stream (HTTP/1.1, six connections a host at most), all live", async () => {
  const names = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
  const server = await statecast(["--preset", "none", ...names.flatMap((t) => ["--topic", t])]);
  const base = "http://" + server.addr;
  for (const t of names) await publish(base, t, { round: 1 });
  const page = await client(base, true);
  const streams = [];
  page.on("request", (r) => { if (r.url().includes("/api/v1/sse")) streams.push(r.url()); });
  await page.evaluate((names) => { window.conn = statecast.connect(watch({ topics: names, transport: "sse" })); }, names);
  const rounds = (n) => page.evaluate(([names, n]) => names.every((t) => conn.data(t)?.round === n), [names, n]);
  await until("every topic's snapshot", 5000, () => rounds(1));
  for (const t of names) await publish(base, t, { round: 2 });
  await until("every topic's update", 5000, () => rounds(2));
  if (streams.length !== 1) fail(streams.length + " streams: " + streams.join(" "));
  if (await page.evaluate(() => conn.transport) !== "sse") fail("transport " + await page.evaluate(() => conn.transport));
  await page.close();
  server.child.kill("SIGTERM");
  return "one stream: " + streams[0];
});

check("a throwing onMessage stops nothing, on SSE and on WebSocket: later updates still arrive, the error is thrown on its own", async () => {
  const server = await statecast(["--preset", "none", "--topic", "a"]);
  const base = "http://" + server.addr;
  await publish(base, "a", { round: 1 });
  const page = await client(base, true);
  await page.evaluate(() => {
    const throwing = (m) => {
      log.messages.push(m.data.round);
      throw new Error("a handler bug, round " + m.data.round);
    };
    window.conns = [
      statecast.connect(watch({ topics: ["a"], transport: "sse", onMessage: throwing })),
      statecast.connect(watch({ topics: ["a"], transport: "websocket", onMessage: throwing })),
    ];
  });
  await until("both connections to open with round 1", 5000, () =>
    page.evaluate(() => conns.every((c) => c.state === "open" && c.data("a")?.round === 1)));
  await publish(base, "a", { round: 2 });
  await until("both to get round 2 after the handler threw on round 1", 5000, () =>
    page.evaluate(() => conns.every((c) => c.data("a")?.round === 2) && log.messages.filter((r) => r === 2).length === 2));
  // The page's errors are this check's own: each thrown again, on its own.
  await until("the handlers' errors to reach the page", 5000, () => pageErrors.filter((e) => e.includes("a handler bug")).length >= 4);
  const thrown = pageErrors.splice(0).filter((e) => !e.includes("a handler bug"));
  if (thrown.length) fail("other page errors: " + thrown.join("; "));
  const said = await page.evaluate(() => conns.map((c) => c.transport + " " + c.state).join(", "));
  await page.close();
  server.child.kill("SIGTERM");
  return said + "; 4 errors thrown again";
});

check("connect() reports its first state after it returns: an onState that reads the handle works", async () => {
  const server = await statecast(["--preset", "none", "--topic", "a"]);
  const base = "http://" + server.addr;
  await publish(base, "a", { round: 1 });
  const page = await client(base, true);
  const threw = await page.evaluate(() => {
    try {
      const conn = statecast.connect(watch({ topics: ["a"], onState: (s) => log.states.push(s + " " + conn.state) }));
      window.conn = conn;
      return null;
    } catch (e) {
      return String(e);
    }
  });
  if (threw) fail("connect threw: " + threw);
  await until("the connection to open", 5000, () => page.evaluate(() => conn.state === "open" && conn.data("a")?.round === 1));
  const seen = await states(page);
  if (seen[0] !== "connecting connecting" || !seen.includes("open open")) fail("states " + JSON.stringify(seen));
  await page.close();
  server.child.kill("SIGTERM");
  return "states " + seen.join(" -> ");
});

check("a base64 token (+, / and =) is accepted: connect over WebSocket and SSE, and subscribe", async () => {
  const token = "q1+Zx/8kP0aT3vLm9cWn4g==";
  const server = await statecast(["--preset", "none", "--topic", "a", "--subscribe-token", token]);
  const base = "http://" + server.addr;
  await publish(base, "a", { round: 1 });
  const page = await client(base, true);
  await page.evaluate((token) => {
    window.conns = [
      statecast.connect(watch({ topics: ["a"], token })),
      statecast.connect(watch({ topics: ["a"], token, transport: "sse" })),
      statecast.subscribe("/api/v1/ws/a", watch({ token })),
    ];
  }, token);
  await until("all three open with the snapshot", 5000, () =>
    page.evaluate(() => conns.every((c) => c.state === "open" && c.data("a")?.round === 1)));
  const said = await page.evaluate(() => conns.map((c) => c.transport).join(", "));
  await page.close();
  server.child.kill("SIGTERM");
  return "open over " + said;
});

check("a page on another allowed origin imports /statecast.mjs from the binary, connects, and stops on a wrong token's 401", async () => {
  const token = "client-test-token-0123456789";
  const server = await statecast(["--preset", "none", "--topic", "a", "--subscribe-token", token]);
  const base = "http://" + server.addr;
  await publish(base, "a", { round: 1 });
  const host = createServer((_, res) => res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>elsewhere</title>"));
  await new Promise((r) => host.listen(0, "127.0.0.1", r));
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    current = page;
    await page.goto("http://127.0.0.1:" + host.address().port + "/");
    const imported = await page.evaluate(async ([base, token]) => {
      window.log = { states: [] };
      let sc;
      try {
        sc = await import(base + "/statecast.mjs");
      } catch (e) {
        return String(e);
      }
      const fast = { url: base, topics: ["a"], baseDelay: 20, maxDelay: 100 };
      window.good = sc.connect(Object.assign({ token }, fast));
      window.bad = sc.connect(Object.assign({ token: "wrong-token-0123456789", onState: (s, r) => log.states.push(s + (r ? " " + r : "")) }, fast));
      return null;
    }, [base, token]);
    if (imported) fail("the import failed: " + imported);
    await until("the right token's snapshot and the wrong one's refusal", 5000, () =>
      page.evaluate(() => good.state === "open" && good.data("a")?.round === 1 && bad.state === "refused"));
    const said = await page.evaluate(() => bad.reason);
    if (!said.startsWith("401 ")) fail("reason " + said);
    await page.close();
    return "the wrong token: \"" + said + "\"";
  } finally {
    host.close();
    server.child.kill("SIGTERM");
  }
});

check("subscribe() past --max-topics-per-connection: the refused names leave conn.topics, each with its onError", async () => {
  const server = await statecast(["--preset", "none", "--topic", "a", "--topic", "b", "--topic", "c", "--max-topics-per-connection", "1"]);
  const base = "http://" + server.addr;
  await publish(base, "a", { round: 1 });
  const page = await client(base, true);
  await page.evaluate(() => { window.conn = statecast.connect(watch({ topics: ["a"] })); });
  await until("the connection to open", 5000, () => page.evaluate(() => conn.state === "open" && conn.data("a")?.round === 1));
  await page.evaluate(() => conn.subscribe(["b", "c"]));
  await until("an error for each", 5000, () => page.evaluate(() => log.errors.length >= 2));
  const topics = await page.evaluate(() => conn.topics);
  if (topics.join() !== "a") fail("conn.topics " + JSON.stringify(topics));
  const errors = await page.evaluate(() => log.errors.map((e) => e.topic + " " + e.status));
  await page.close();
  server.child.kill("SIGTERM");
  return "topics [a]; errors " + errors.join(", ");
});

check("with no topics, a refused upgrade is retried: /healthz's 200 proves nothing of the token, nor switches to SSE", async () => {
  reset({ upgrade: () => ({ status: 401, body: "reading topics needs a valid token" }), sse: refuseSse(401, "reading topics needs a valid token") });
  const page = await client(fakeBase);
  await page.evaluate(() => { window.conn = statecast.connect(watch({})); });
  await until("three upgrades", 5000, () => fake.upgrades.length >= 3);
  const transport = await page.evaluate(() => conn.transport);
  const seen = await states(page);
  if (transport !== null || seen.some((s) => s.startsWith("open") || s.startsWith("refused"))) fail("transport " + transport + ", states " + JSON.stringify(seen));
  await page.close();
  return fake.upgrades.length + " upgrades, never open";
});

check("docs/client.md's whole page, as written, served from another site: the badge says open, and each publish is shown", async () => {
  const docs = readFileSync(new URL("../../docs/client.md", import.meta.url), "utf8");
  const m = docs.match(/<!-- client: page -->\n```html\n([\s\S]*?)\n```/);
  if (!m) fail("docs/client.md has no `client: page` block");
  const server = await statecast(["--preset", "none", "--topic", "prices", "--publish-token", "change-me-0123456789"]);
  const base = "http://" + server.addr;
  const post = async (data) => {
    const reply = await fetch(base + "/api/v1/publish/prices", {
      method: "POST", headers: { Authorization: "Bearer change-me-0123456789" }, body: JSON.stringify(data),
    });
    if (reply.status !== 200) fail("publish: " + reply.status);
  };
  await post({ bid: 101.5, ask: 101.7 });
  const html = m[1].replaceAll("127.0.0.1:8002", server.addr);
  const host = createServer((_, res) => res.writeHead(200, { "Content-Type": "text/html" }).end(html));
  await new Promise((r) => host.listen(0, "127.0.0.1", r));
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    current = null;
    // localhost, as the docs say: another site than 127.0.0.1.
    await page.goto("http://localhost:" + host.address().port + "/page.html");
    const shown = () => page.evaluate(() => [document.getElementById("badge").textContent, document.getElementById("prices").textContent]);
    await until("the badge to say open and the snapshot shown", 5000, async () => {
      const [badge, prices] = await shown();
      return badge === "open" && prices.includes("101.5");
    });
    await post({ bid: 101.6, ask: 101.8 });
    await until("the update shown", 5000, async () => (await shown())[1].includes("101.6"));
    await page.close();
    return "badge open, both publishes shown";
  } finally {
    host.close();
    server.child.kill("SIGTERM");
  }
});

let failed = 0;
for (const { name, run } of checks) {
  try {
    const said = await run();
    if (pageErrors.length) fail("page errors: " + pageErrors.splice(0).join("; "));
    console.log("ok: " + name + (said ? " (" + said + ")" : ""));
  } catch (e) {
    failed += 1;
    console.error("FAIL: " + name + ": " + (e.message || e));
    if (current && !current.isClosed()) await current.close();
  }
}
await browser.close();
http.close();
for (const child of running) child.kill("SIGTERM");
if (failed) console.error(failed + " of " + checks.length + " checks failed");
process.exit(failed ? 1 : 0);
