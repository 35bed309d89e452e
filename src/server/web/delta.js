// applyDelta(format, base, delta): the browser's half of `?delta=`.
//
// Contract:
// - format: the name given as `?delta=`; only "json-patch" (RFC 6902) is
//   known. base: the `data` the client holds, for the message's `base` seq.
//   delta: the message's `delta`, as JSON.parse gave it.
// - Returns the new data, the value whole snapshot `seq` would have carried.
//   `base` is never modified: what changed is copied along its path (the
//   rest is shared with `base`), so a view can compare by identity. Equal
//   as JSON to the whole snapshot; a member added to an object comes last,
//   where the snapshot may have it elsewhere.
// - Throws an Error on an unknown format or an op it cannot apply (a path
//   that is not there, an op other than add/remove/replace/move/copy/test).
//   The client must then drop its state and reconnect without `since`,
//   which brings the whole snapshot again.
// - A client applies a delta only when its `base` is the seq it holds;
//   the server sends a delta only then, so a mismatch is a bug: reconnect.
//
// The server sends add, remove and replace; move, copy and test are here
// so any RFC 6902 patch applies. Plain script, no modules, so that a
// client for the browser can carry it unchanged;
// tests/browser/delta.test.mjs evaluates it as it is.
function applyDelta(format, base, delta) {
  if (format !== "json-patch") throw new Error("unknown delta format " + format);
  if (!Array.isArray(delta)) throw new Error("a json-patch delta is an array of ops");
  // Containers copied during this call: each is copied once, then written.
  const copied = new Set();
  let root = base;

  const parse = (path) => {
    if (typeof path !== "string" || (path !== "" && path[0] !== "/")) {
      throw new Error("bad path " + JSON.stringify(path));
    }
    return path === "" ? [] : path.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
  };
  const own = (v) => {
    if (v === null || typeof v !== "object" || copied.has(v)) return v;
    const c = Array.isArray(v) ? v.slice() : Object.assign({}, v);
    copied.add(c);
    return c;
  };
  const index = (arr, token, adding) => {
    if (adding && token === "-") return arr.length;
    if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error("bad array index " + token);
    const i = Number(token);
    if (i > arr.length || (!adding && i === arr.length)) throw new Error("index out of range " + token);
    return i;
  };
  const isKey = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
  // The value at `tokens` (no copy), or throws.
  const get = (tokens) => {
    let v = root;
    for (const t of tokens) {
      if (Array.isArray(v)) v = v[index(v, t, false)];
      else if (v !== null && typeof v === "object" && isKey(v, t)) v = v[t];
      else throw new Error("no such path /" + tokens.join("/"));
    }
    return v;
  };
  // The parent container of `tokens`, copied along the way from the root.
  const parentOf = (tokens) => {
    root = own(root);
    let v = root;
    for (const t of tokens.slice(0, -1)) {
      let key = t;
      if (Array.isArray(v)) key = index(v, t, false);
      else if (v === null || typeof v !== "object" || !isKey(v, t)) throw new Error("no such path /" + tokens.join("/"));
      v[key] = own(v[key]);
      v = v[key];
    }
    if (v === null || typeof v !== "object") throw new Error("no container at /" + tokens.join("/"));
    return v;
  };
  const add = (tokens, value) => {
    if (tokens.length === 0) { root = value; return; }
    const parent = parentOf(tokens);
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent)) parent.splice(index(parent, last, true), 0, value);
    else parent[last] = value;
  };
  const remove = (tokens) => {
    if (tokens.length === 0) throw new Error("cannot remove the root");
    const parent = parentOf(tokens);
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent)) return parent.splice(index(parent, last, false), 1)[0];
    if (!isKey(parent, last)) throw new Error("no such path /" + tokens.join("/"));
    const old = parent[last];
    delete parent[last];
    return old;
  };
  const equal = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  for (const op of delta) {
    const path = parse(op && op.path);
    switch (op.op) {
      case "add": add(path, op.value); break;
      case "remove": remove(path); break;
      case "replace": {
        if (path.length === 0) { root = op.value; break; }
        const parent = parentOf(path);
        const last = path[path.length - 1];
        if (Array.isArray(parent)) parent[index(parent, last, false)] = op.value;
        else if (isKey(parent, last)) parent[last] = op.value; // keeps the key's place
        else throw new Error("no such path " + op.path);
        break;
      }
      case "move": { const v = remove(parse(op.from)); add(path, v); break; }
      case "copy": add(path, get(parse(op.from))); break;
      case "test": if (!equal(get(path), op.value)) throw new Error("test failed at " + op.path); break;
      default: throw new Error("unknown op " + JSON.stringify(op && op.op));
    }
  }
  return root;
}
