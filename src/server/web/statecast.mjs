// statecast.mjs: the statecast client, no dependencies. docs/client.md is
// its reference.
//
//   import { connect } from "/statecast.mjs";
//   const conn = connect({
//     topics: ["queue", "system-status"],
//     getToken: () => fetch("/my-token").then((r) => r.text()),
//     onMessage(msg) { if (msg.topic) render(msg.topic, msg.data); else note(msg); },
//     onState(state, reason) { badge(state, reason); },
//   });
//
// One source, served three ways by the binary: /statecast.mjs (this text),
// /statecast.js (this text as a classic script: wrapped in a function, the
// export statement at the end turned into the `statecast` global, at build
// time) and /statecast.d.ts. So: no `import`, and one `export { .. }`, last.
// delta.js, the delta applier, is included at build time (see below).
//
// What a close asks of the client is in POLICY below; an upgrade refused
// before it opened (which the WebSocket API reports only as 1006) is probed
// once over HTTP, whose status it can read.

const VERSION = "2.0.0";

// Each close code's verdict: "retry" after a full-jitter delay; "fresh":
// retry too, but the server is going away and its next run counts seq
// from scratch, so a held seq proves nothing there; "refresh": the signed
// token expired, ask for a new one and reconnect at once; "stop": the
// server refused us on purpose (a broken rule), and retrying would only
// repeat it. Any other code is retried.
const POLICY = {
  1001: "fresh", // going away: the server stopping, or it heard nothing
  1002: "stop", // protocol error: our frames broke RFC 6455
  1003: "stop", // unsupported data
  1007: "stop", // invalid data
  1008: "stop", // policy: a broken rule (a ping flood)
  1009: "stop", // our message was too big
  1011: "retry", // a bug on the server, this connection only
  1012: "fresh", // service restart, spread over the server's drain window
  1013: "retry", // try again later: a slow consumer, or an overload
  4001: "refresh", // the signed token expired
};

// HTTP statuses that say the request itself is refused: retrying the same
// request gets the same answer. Anything else (5xx, 408, 429, no answer)
// may pass later.
const REFUSALS = [400, 401, 403, 404, 405, 414, 421, 431];

const DEFAULTS = {
  transport: "auto",
  baseDelay: 500,
  maxDelay: 30000,
  staleAfter: 30000,
  resetAfter: 30000,
  delta: null,
};

// An SSE line (or an event's data) longer than this is not a message the
// server sends: the stream is dropped and retried rather than held.
const MAX_LINE = 16 * 1024 * 1024;

// The delta applier, applyDelta(format, base, delta), lives in delta.js;
// the build puts it in place of the next line, which must stay as it is
// (src/server/assets.rs for the binary, build.mjs for the npm package).
// @include delta.js

// A multiplexed connection: every topic over one WebSocket, or one SSE
// stream.
function connect(options) {
  const o = settings(options);
  const topics = [];
  for (const t of list(o.topics)) if (!topics.includes(t)) topics.push(t);
  return link(o, {
    mux: true,
    topics,
    ws: "/api/v1/ws",
    sse: "/api/v1/sse",
  });
}

// One topic on its own route (`/api/v1/ws/<topic>`), as before `connect`.
// The SSE route of the same topic is the fallback and the probe.
function subscribe(path, options) {
  const o = settings(Object.assign({ transport: "websocket" }, options || {}));
  const p = String(path);
  return link(o, {
    mux: false,
    topics: [""],
    ws: p,
    sse: p.replace("/api/v1/ws/", "/api/v1/sse/"),
  });
}

function settings(options) {
  const o = Object.assign({}, DEFAULTS, options || {});
  if (!["auto", "websocket", "sse"].includes(o.transport)) {
    throw new TypeError("statecast: transport must be \"auto\", \"websocket\" or \"sse\", not " + JSON.stringify(o.transport));
  }
  // Asked for by name, a WebSocket that cannot exist is a mistake to say
  // now, not a fallback to hide.
  if (o.transport === "websocket" && typeof WebSocket === "undefined") {
    throw new TypeError("statecast: transport \"websocket\" needs a global WebSocket (a browser, Node 22+); use \"auto\" or \"sse\"");
  }
  if (o.url == null && typeof location === "undefined") {
    throw new TypeError("statecast: give url (the server's address): there is no page to take it from");
  }
  return o;
}

// Calls a handler of the page's. One that throws must not stop the client
// (an SSE stream's read loop would end with it, its state left "open"):
// its error is thrown again on its own, where the page's error reporting
// sees it.
function call(handler, ...args) {
  if (typeof handler !== "function") return;
  try {
    handler(...args);
  } catch (e) {
    setTimeout(() => {
      throw e;
    });
  }
}

function list(topics) {
  if (topics == null) return [];
  return (Array.isArray(topics) ? topics : [topics]).map(String);
}

// Topic names and tokens are percent-encoded (the server decodes `topic=`,
// `since=` and `token=`), but for `/` and `:`, which a query may hold as
// they are and which read better in a log: `adw-state/x`, `since=a:3`.
function param(value) {
  return encodeURIComponent(value).replace(/%2F/g, "/").replace(/%3A/g, ":");
}

// Both transports, the retry policy, seq and delta bookkeeping, for either
// route shape.
function link(o, route) {
  const topics = route.topics;
  const seqs = new Map(); // topic ("" on a per-topic route) -> last seq
  const held = new Map(); // topic -> last data
  const resyncing = new Set(); // topics asked for again after a bad delta
  let generation = 0; // bumped on every attempt: stale callbacks are ignored
  let attempt = 0;
  let openedAt = 0; // when the current connection opened; 0: not open
  let retryTimer = null;
  let staleTimer = null;
  let ws = null;
  let stream = null; // the SSE fetch's AbortController
  let useSse = o.transport === "sse" || typeof WebSocket === "undefined";

  const c = {
    state: "connecting",
    reason: null,
    transport: null,
    stale: false,
    closed: false,
  };

  function setState(state, reason) {
    c.state = state;
    c.reason = reason == null ? null : String(reason);
    call(o.onState, state, c.reason);
  }

  function setStale(stale) {
    if (c.stale !== stale) {
      c.stale = stale;
      call(o.onStale, stale);
    }
  }

  function heard() {
    setStale(false);
    clearTimeout(staleTimer);
    staleTimer = setTimeout(() => setStale(true), o.staleAfter);
  }

  function base(secure, plain) {
    const origin = typeof location !== "undefined" ? location.protocol + "//" + location.host : "";
    const url = String(o.url || origin).replace(/\/+$/, "");
    return url.replace(/^(ws|http)(s?):/, (_, scheme, s) => (s ? secure : plain) + ":");
  }

  // A WebSocket cannot carry a header, so its token rides in the URL;
  // fetch sends it as `Authorization: Bearer` (see auth) where it can.
  function query(path, token) {
    const q = [];
    if (route.mux) for (const t of topics) q.push("topic=" + param(t));
    if (token) q.push("token=" + param(token));
    if (o.delta) q.push("delta=" + param(o.delta));
    for (const [t, seq] of seqs) {
      if (route.mux && !topics.includes(t)) continue;
      q.push("since=" + (route.mux ? param(t) + ":" : "") + seq);
    }
    if (!q.length) return path;
    return path + (path.indexOf("?") < 0 ? "?" : "&") + q.join("&");
  }

  // Whether fetch may send the token as a header: from another origin an
  // Authorization header needs a CORS preflight the server does not answer,
  // so there the token stays in the URL.
  function bearer() {
    if (typeof location === "undefined") return true;
    try {
      return new URL(base("https", "http")).origin === location.origin;
    } catch (e) {
      return false;
    }
  }

  // fetch's URL and options: the token as a header, not in a URL a log
  // keeps, and no redirect followed, so a proxy's Location cannot take the
  // token elsewhere.
  function request(path, t, extra) {
    const header = Boolean(t) && bearer();
    const headers = Object.assign({}, extra);
    if (header) headers.Authorization = "Bearer " + t;
    const url = base("https", "http") + (path === null ? query(route.sse, header ? null : t) : path);
    return [url, { cache: "no-store", redirect: "error", headers }];
  }

  function token() {
    const t = o.getToken ? o.getToken() : typeof o.token === "function" ? o.token() : o.token;
    return Promise.resolve(t);
  }

  // Ends whatever attempt is under way without its handlers acting.
  function drop() {
    generation += 1;
    clearTimeout(retryTimer);
    if (ws) {
      const old = ws;
      ws = null;
      try { old.close(1000); } catch (e) { /* already closing */ }
    }
    if (stream) {
      stream.abort();
      stream = null;
    }
  }

  async function open() {
    if (c.closed) return;
    drop();
    const gen = generation;
    setState("connecting");
    let t;
    try {
      t = await token();
    } catch (e) {
      if (gen === generation) retry("getToken failed: " + (e && e.message ? e.message : e));
      return;
    }
    if (gen !== generation || c.closed) return;
    if (useSse) openStream(gen, t);
    else openSocket(gen, t);
  }

  function openSocket(gen, t) {
    let sock;
    try {
      sock = new WebSocket(base("wss", "ws") + query(route.ws, t));
    } catch (e) {
      // A malformed URL: nothing later would fix it.
      refuse("cannot open a WebSocket: " + unquery(e.message));
      return;
    }
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      if (gen !== generation) return;
      opened = true;
      openedAt = Date.now();
      c.transport = "websocket";
      setState("open");
      heard();
    };
    sock.onmessage = (event) => {
      if (gen === generation) receive(event.data);
    };
    sock.onclose = (event) => {
      if (gen !== generation) return;
      ws = null;
      clearTimeout(staleTimer);
      // 1006 before open: the upgrade was refused or never answered, and
      // the browser hides which. Ask over HTTP.
      if (!opened && event.code === 1006) probe(gen, t);
      else closed(event.code, event.reason);
    };
  }

  async function openStream(gen, t) {
    if (route.mux && !topics.length) {
      // The SSE route needs a topic; nothing to listen to until one is added.
      c.transport = "sse";
      setState("open");
      return;
    }
    const ctl = new AbortController();
    stream = ctl;
    let reply;
    try {
      const [url, init] = request(null, t, { Accept: "text/event-stream" });
      reply = await fetch(url, Object.assign({ signal: ctl.signal }, init));
    } catch (e) {
      if (gen === generation) retry("no answer over HTTP");
      return;
    }
    if (gen !== generation) return;
    if (reply.status !== 200) {
      const why = await body(reply);
      if (gen !== generation) return;
      refusedOrRetry(reply.status, why);
      return;
    }
    c.transport = "sse";
    openedAt = Date.now();
    setState("open");
    heard();
    // The stream's own verdict: a final close event (4001 at the token's
    // expiry), and a `retry:` before a drain's end.
    let code = null;
    let reason = "";
    let wait = null;
    let data = [];
    let size = 0; // of data's lines
    let buffer = "";
    let scanned = 0; // buffer's start holds no newline up to here
    let tooLong = false;
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    // The close event is final: act on it without waiting for the end.
    while (code === null) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        break;
      }
      if (gen !== generation) return;
      if (chunk.done) break;
      heard();
      buffer += decoder.decode(chunk.value, { stream: true });
      let nl;
      // Only the new part is searched: a long line arriving in many chunks
      // is scanned once, not once a chunk.
      while (code === null && (nl = buffer.indexOf("\n", scanned)) >= 0) {
        let line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        scanned = 0;
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) {
            const msg = parse(data.join("\n"));
            data = [];
            size = 0;
            if (msg && msg.type === "close" && msg.data && typeof msg.data.code === "number" && msg.topic === undefined) {
              code = msg.data.code;
              reason = String(msg.data.reason || "");
            } else if (msg) {
              handle(msg);
              if (gen !== generation) return;
            }
          }
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") {
          data.push(value);
          size += value.length + 1;
        } else if (field === "retry" && /^\d+$/.test(value)) wait = Number(value);
      }
      scanned = buffer.length;
      if (buffer.length + size > MAX_LINE) {
        tooLong = true;
        break;
      }
    }
    if (gen !== generation) return;
    ctl.abort();
    stream = null;
    clearTimeout(staleTimer);
    if (tooLong) retry("an SSE line or event over 16 MiB");
    else if (code !== null) closed(code, reason);
    // A drain ends the stream after a `retry:` the server spread over its
    // window: come back then, to what may be a new process.
    else if (wait !== null) {
      seqs.clear();
      later("the server is restarting", wait);
    } else closed(1006, "the stream ended");
  }

  // The WebSocket never opened. The SSE route of the same subscription
  // has the same access rules, and fetch can read its status.
  async function probe(gen, t) {
    let status = 0;
    let why = "";
    const ctl = new AbortController();
    const path = route.mux && !topics.length ? "/healthz" : null;
    try {
      const [url, init] = path === "/healthz" ? request(path, null) : request(null, t);
      const reply = await fetch(url, Object.assign({ signal: ctl.signal }, init));
      status = reply.status;
      if (status !== 200) why = await body(reply);
    } catch (e) {
      status = 0;
    }
    ctl.abort();
    if (gen !== generation) return;
    if (status === 200 && path === "/healthz") {
      // /healthz answers whatever the token: it proves the server is
      // there, not that the upgrade would be let in, nor that SSE works.
      retry("the WebSocket did not open");
      return;
    }
    if (status === 200) {
      // HTTP works where the WebSocket does not: a proxy or a firewall
      // blocks WebSockets.
      if (o.transport === "auto") {
        useSse = true;
        open();
      } else retry("the WebSocket was refused; HTTP works");
      return;
    }
    if (status === 0) retry("no answer");
    else refusedOrRetry(status, why);
  }

  function refusedOrRetry(status, why) {
    const reason = status + (why ? " " + why : "");
    if (REFUSALS.includes(status)) refuse(reason);
    else retry(reason);
  }

  function closed(code, reason) {
    const verdict = POLICY[code] || "retry";
    const why = code + (reason ? " " + reason : "");
    // A connection that stayed up resetAfter ms proved the server well:
    // the backoff starts again. One cut sooner (a slow consumer, a proxy's
    // idle cut) keeps growing it, or each reconnect would come within
    // baseDelay and fetch every snapshot again.
    const lasted = openedAt ? Date.now() - openedAt : 0;
    openedAt = 0;
    if (lasted >= o.resetAfter) attempt = 0;
    if (verdict === "stop") return refuse(why);
    if (verdict === "fresh") seqs.clear();
    if (verdict === "refresh") {
      // A new token is asked for at once; a token that stays expired is
      // refused at the upgrade (401), and the probe stops there.
      later(why, Math.random() * o.baseDelay);
      return;
    }
    // 1013 asks for a pause: never sooner than a quarter of maxDelay.
    retry(why, code === 1013 ? o.maxDelay / 4 : 0);
  }

  function refuse(reason) {
    drop();
    clearTimeout(staleTimer);
    setState("refused", reason);
  }

  // Full jitter: anywhere between 0 and the capped exponential delay, so
  // clients cut off together do not come back together.
  // A floor (1013's) lifts the whole range above it.
  function retry(reason, floor) {
    const least = floor || 0;
    const cap = Math.max(least, Math.min(o.maxDelay, o.baseDelay * Math.pow(2, attempt)));
    attempt += 1;
    later(reason, least + Math.random() * (cap - least));
  }

  function later(reason, ms) {
    drop();
    setState("closed", reason);
    retryTimer = setTimeout(open, ms);
  }

  function parse(text) {
    try {
      const msg = JSON.parse(text);
      return msg && typeof msg === "object" && !Array.isArray(msg) ? msg : null;
    } catch (e) {
      return null;
    }
  }

  function receive(text) {
    heard();
    const msg = parse(text);
    if (msg) handle(msg);
  }

  function handle(msg) {
    if (typeof msg.type === "string" && msg.type.startsWith("statecast.")) {
      control(msg);
      return;
    }
    const topic = route.mux ? msg.topic : "";
    // What is still in flight for a topic just unsubscribed.
    if (route.mux && typeof topic === "string" && !topics.includes(topic)) return;
    if (typeof msg.seq === "number" && typeof topic === "string") {
      if (msg.base !== undefined && msg.delta !== undefined) {
        if (resyncing.has(topic)) return;
        if (seqs.get(topic) !== msg.base || !held.has(topic)) {
          resync(topic);
          return;
        }
        let data;
        try {
          data = applyDelta(o.delta, held.get(topic), msg.delta);
        } catch (e) {
          resync(topic);
          return;
        }
        const full = Object.assign({}, msg, { data });
        delete full.base;
        delete full.delta;
        msg = full;
      } else {
        // A snapshot already held (same seq) is not delivered again.
        if (seqs.get(topic) === msg.seq && !resyncing.has(topic)) return;
        resyncing.delete(topic);
      }
      seqs.set(topic, msg.seq);
      held.set(topic, msg.data);
    }
    call(o.onMessage, msg);
  }

  function control(msg) {
    if (msg.type === "statecast.error") {
      // A topic the server refused for good (400, 403, 404) is dropped;
      // one it had no room for (503) is kept and asked for again later.
      if (typeof msg.topic === "string") {
        if (msg.status === 503) again(msg.topic);
        else forget([msg.topic]);
      }
      call(o.onError, msg);
    }
  }

  // Asks for a topic the server had no room for again, after the backoff.
  // An SSE stream is opened again with the whole list (which asks for it).
  const waiting = new Set();
  let againTimer = null;
  function again(topic) {
    if (!topics.includes(topic)) return;
    seqs.delete(topic);
    held.delete(topic);
    waiting.add(topic);
    if (againTimer !== null) return;
    const cap = Math.min(o.maxDelay, o.baseDelay * Math.pow(2, attempt));
    attempt += 1;
    againTimer = setTimeout(() => {
      againTimer = null;
      const names = [...waiting].filter((t) => topics.includes(t));
      waiting.clear();
      if (c.closed || !names.length) return;
      if (ws && ws.readyState === 1) for (const t of names) send({ op: "subscribe", topics: [t] });
      else if (stream) open();
      // No connection: the next one asks for every topic anyway.
    }, Math.random() * cap);
  }

  // A delta that does not apply to what is held: ask for the topic in
  // full, without resuming, so state is never wrong.
  function resync(topic) {
    resyncing.add(topic);
    seqs.delete(topic);
    held.delete(topic);
    if (route.mux && ws && ws.readyState === 1) {
      send({ op: "unsubscribe", topics: [topic] });
      send({ op: "subscribe", topics: [topic] });
    } else open();
  }

  function send(command) {
    try {
      ws.send(JSON.stringify(command));
    } catch (e) { /* closing: the next connection asks again */ }
  }

  function forget(names) {
    for (const t of names) {
      const i = topics.indexOf(t);
      if (i >= 0) topics.splice(i, 1);
      seqs.delete(t);
      held.delete(t);
      resyncing.delete(t);
    }
  }

  // The WebSocket sends commands; an SSE stream is opened again with the
  // new list (resuming the rest, so they send nothing again).
  // A request already sent with the old list (a socket still opening, a
  // stream) is started again. A subscribe goes one topic a command: the
  // server refuses a command over --max-topics-per-connection whole,
  // naming no topic, but a topic past the limit by name, which is then
  // forgotten here as any refused topic is.
  function change(op, names) {
    if (c.closed || !names.length) return;
    if (ws && ws.readyState === 1) {
      if (op === "subscribe") for (const t of names) send({ op, topics: [t] });
      else send({ op, topics: names });
    } else if (ws || stream || (useSse && c.state === "open")) open();
  }

  c.close = () => {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(againTimer);
    drop();
    clearTimeout(staleTimer);
    setState("closed", "closed by the page");
  };
  c.data = (topic) => held.get(route.mux ? String(topic) : "");
  if (route.mux) {
    Object.defineProperty(c, "topics", { get: () => topics.slice(), enumerable: true });
    c.seq = (topic) => seqs.get(String(topic));
    c.subscribe = (names) => {
      const added = [];
      for (const t of list(names)) if (!topics.includes(t) && !added.includes(t)) added.push(t);
      topics.push(...added);
      change("subscribe", added);
    };
    c.unsubscribe = (names) => {
      const removed = list(names).filter((t) => topics.includes(t));
      forget(removed);
      change("unsubscribe", removed);
    };
  } else {
    Object.defineProperty(c, "seq", { get: () => (seqs.has("") ? seqs.get("") : null), enumerable: true });
  }
  // Started once the caller has the handle: `const conn = connect({..})`
  // with an onState that reads `conn` works.
  queueMicrotask(open);
  return c;
}

// An error's text may quote a URL, and with it a token: keep the query out.
function unquery(text) {
  return String(text).replace(/\?[^\s'"]*/g, "");
}

async function body(reply) {
  try {
    return (await reply.text()).trim().slice(0, 200);
  } catch (e) {
    return "";
  }
}

export { connect, subscribe, applyDelta, VERSION };
