// statecast.js: a small client for statecast topics, no dependencies.
//
//   const sub = statecast.subscribe("/api/v1/ws/queue", {
//     onMessage(msg) { render(msg.data); },      // each new snapshot or event
//     onState(state) { badge(state); },          // "connecting" | "open" | "closed" | "refused"
//     staleAfter: 30000,                         // ms of silence before .stale is set
//     onStale(stale) { dim(stale); },
//     token: "...",     // sent as ?token=; a function is called on each
//                       // (re)connect, so a signed token can be refreshed
//   });
//   sub.close();
//
// Reconnects with exponential backoff and full jitter (so a restart never
// causes a stampede), resumes with ?since=<seq> so an unchanged topic sends
// nothing again, and stops on a 1008 policy close. A restart (1012) or an
// overload (1013) is retried like any other close, with jitter.
(function (global) {
  "use strict";

  function subscribe(path, options) {
    const o = Object.assign(
      { baseDelay: 500, maxDelay: 30000, staleAfter: 30000 },
      options || {}
    );
    const sub = { seq: null, stale: false, state: "connecting", closed: false };
    let ws = null;
    let attempt = 0;
    let retryTimer = null;
    let staleTimer = null;

    function setState(state) {
      sub.state = state;
      if (o.onState) o.onState(state);
    }

    function setStale(stale) {
      if (sub.stale !== stale) {
        sub.stale = stale;
        if (o.onStale) o.onStale(stale);
      }
    }

    function heard() {
      setStale(false);
      clearTimeout(staleTimer);
      staleTimer = setTimeout(() => setStale(true), o.staleAfter);
    }

    function url() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const base = o.url || scheme + "//" + location.host;
      const query = [];
      const token = typeof o.token === "function" ? o.token() : o.token;
      if (token) query.push("token=" + encodeURIComponent(token));
      if (sub.seq !== null) query.push("since=" + sub.seq);
      if (!query.length) return base + path;
      return base + path + (path.indexOf("?") < 0 ? "?" : "&") + query.join("&");
    }

    function connect() {
      if (sub.closed) return;
      setState("connecting");
      ws = new WebSocket(url());
      ws.onopen = () => {
        attempt = 0;
        setState("open");
        heard();
      };
      ws.onmessage = (event) => {
        heard();
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        // A snapshot already held (same seq) is not rendered again.
        if (typeof msg.seq === "number") {
          if (msg.seq === sub.seq) return;
          sub.seq = msg.seq;
        }
        if (o.onMessage) o.onMessage(msg);
      };
      ws.onclose = (event) => {
        clearTimeout(staleTimer);
        if (sub.closed) return;
        // 1008: the server refused us on purpose (we broke a rule: a ping
        // flood); retrying would only repeat it. An overload (1013, a slow
        // consumer) is not our fault: it is retried below.
        if (event.code === 1008) {
          setState("refused");
          return;
        }
        // 4001: the signed token expired; the next attempt asks `token`
        // again, which a caller that refreshes tokens passes as a function.
        // 1012 (a restart, which the server spreads over its drain window)
        // or 1001: the server is going away. Its next run counts seq from
        // scratch, so a seq held from this one proves nothing there: ask
        // for the snapshot again. 1013 (overloaded): same server, same seq.
        if (event.code === 1001 || event.code === 1012) sub.seq = null;
        setState("closed");
        // Full jitter: anywhere between 0 and the capped exponential delay.
        const cap = Math.min(o.maxDelay, o.baseDelay * Math.pow(2, attempt));
        attempt += 1;
        retryTimer = setTimeout(connect, Math.random() * cap);
      };
    }

    sub.close = () => {
      sub.closed = true;
      clearTimeout(retryTimer);
      clearTimeout(staleTimer);
      if (ws) ws.close(1000);
    };
    connect();
    return sub;
  }

  global.statecast = { subscribe: subscribe };
})(typeof window !== "undefined" ? window : this);
