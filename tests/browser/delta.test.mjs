// src/server/web/delta.js against the real server's output: 1,000
// publishes of a changing board (rows changed in place, added first,
// dropped last, removed from the middle, members added and removed, keys
// with "/" and "~"), each read by two SSE streams of one topic, one plain
// and one with ?delta=json-patch. After every publish, the state the
// applier made from the deltas equals the whole snapshot (as JSON, keys
// sorted), the state it started from is unchanged, and each delta's base
// is the seq held. Node only, no dependencies.
//
// Usage: node delta.test.mjs PATH_TO_STATECAST
import { readFileSync } from "node:fs";
import http from "node:http";
import { start } from "./statecast.mjs";

const binary = process.argv[2];
const PUBLISHES = 1000;
let server = null;
const fail = (why) => {
  console.error("FAIL: " + why);
  if (server) server.child.kill();
  process.exit(1);
};

const source = readFileSync(new URL("../../src/server/web/delta.js", import.meta.url), "utf8");
const applyDelta = new Function(source + "\nreturn applyDelta;")();

// Deterministic: mulberry32.
let seed = 12345;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const below = (n) => Math.floor(random() * n);

let nextId = 0;
const row = () => ({ id: nextId++, title: "workflow " + nextId, status: "queued", progress: 0,
  "cost/usd": 0, "a~b": [1, 2], phases: [] });
const board = { rows: Array.from({ length: 40 }, row), total: 0, updated: "t0" };

// One step of the story; returns the value to publish.
function step(i) {
  const rows = board.rows;
  switch (below(8)) {
    case 0: rows.unshift(row()); if (rows.length > 50) rows.pop(); break;
    case 1: if (rows.length > 5) rows.splice(below(rows.length), 1); break;
    case 2: { const r = rows[below(rows.length)]; r.extra = { note: "n" + i }; break; }
    case 3: { const r = rows[below(rows.length)]; delete r.extra; break; }
    case 4: { const r = rows[below(rows.length)]; r.phases.push({ name: "p" + r.phases.length, ok: random() < 0.5 }); break; }
    case 5: { const a = below(rows.length); const b = below(rows.length); [rows[a], rows[b]] = [rows[b], rows[a]]; break; }
    default: {
      const r = rows[below(rows.length)];
      r.progress = Math.round(random() * 1000) / 10;
      r["cost/usd"] = Math.round(random() * 100) / 100;
      r.status = ["queued", "running", "done", "failed"][below(4)];
      r["a~b"] = r["a~b"].concat([i]).slice(-3);
    }
  }
  board.total = i;
  board.updated = "t" + i;
  if (i % 97 === 0) board.flag = !board.flag;
  if (i % 211 === 0) delete board.flag;
  return JSON.parse(JSON.stringify(board));
}

const sorted = (v) => JSON.stringify(v, (_, x) =>
  x && typeof x === "object" && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x);

// An SSE stream's events, as JSON, handed to `onEvent`.
function stream(addr, path, onEvent) {
  return new Promise((resolve, reject) => {
    const req = http.get("http://" + addr + path, { headers: { Accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(path + ": " + res.statusCode));
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
          if (data.length) onEvent(JSON.parse(data.join("\n")));
        }
      });
      resolve(req);
    });
    req.on("error", reject);
  });
}

function publish(addr, value) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(value);
    const req = http.request("http://" + addr + "/api/v1/publish/board",
      { method: "POST", headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) } },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text).seq) : reject(new Error(res.statusCode + " " + text))));
      });
    req.on("error", reject);
    req.end(body);
  });
}

server = await start(binary, ["--topic", "board", "--listen", "127.0.0.1:0"]);
const timer = setTimeout(() => fail("timed out"), 120_000);
try {
  // The topic has no snapshot until its first publish.
  await publish(server.addr, step(0));
  const whole = new Map();
  const held = { seq: -1, data: undefined };
  let deltas = 0;
  let waiting = null;
  const check = () => waiting && waiting();
  const plain = await stream(server.addr, "/api/v1/sse/board", (m) => { whole.set(m.seq, m.data); check(); });
  const patched = await stream(server.addr, "/api/v1/sse/board?delta=json-patch", (m) => {
    if ("data" in m) {
      held.seq = m.seq;
      held.data = m.data;
    } else {
      if (m.base !== held.seq) fail("delta " + m.seq + " against " + m.base + ", held " + held.seq);
      const before = JSON.stringify(held.data);
      let next;
      try {
        next = applyDelta("json-patch", held.data, m.delta);
      } catch (e) {
        fail("seq " + m.seq + ": " + e.message);
      }
      if (JSON.stringify(held.data) !== before) fail("the base was modified at seq " + m.seq);
      held.seq = m.seq;
      held.data = next;
      deltas++;
    }
    check();
  });
  const got = (seq) => new Promise((resolve) => {
    waiting = () => { if (held.seq >= seq && whole.has(seq)) { waiting = null; resolve(); } };
    waiting();
  });
  await got(1);
  for (let i = 1; i <= PUBLISHES; i++) {
    const seq = await publish(server.addr, step(i));
    await got(seq);
    if (held.seq !== seq) fail("seq " + held.seq + " after publish " + seq);
    if (sorted(held.data) !== sorted(whole.get(seq))) {
      fail("seq " + seq + ": applied " + sorted(held.data) + "\n  whole " + sorted(whole.get(seq)));
    }
    whole.delete(seq - 1);
  }
  if (deltas < PUBLISHES * 0.9) fail("only " + deltas + " of " + PUBLISHES + " updates came as deltas");
  // Refusals the applier owes its caller.
  for (const [format, delta] of [["fossil", []], ["json-patch", [{ op: "remove", path: "/nope" }]],
    ["json-patch", [{ op: "jump", path: "" }]], ["json-patch", [{ op: "add", path: "/rows/999", value: 1 }]]]) {
    let threw = false;
    try { applyDelta(format, { rows: [] }, delta); } catch { threw = true; }
    if (!threw) fail("no error for " + format + " " + JSON.stringify(delta));
  }
  plain.destroy();
  patched.destroy();
  console.log("ok: " + PUBLISHES + " publishes, " + deltas + " deltas applied, each equal to its snapshot");
} finally {
  clearTimeout(timer);
  server.child.kill();
}
