// Writes dist/statecast.mjs, the npm package's module: statecast.mjs with
// delta.js in place of its include line, the rule src/server/assets.rs
// follows for the binary (tests/browser/client.test.mjs holds the two
// byte for byte equal). Run by `npm pack` and `npm publish` (prepack).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const here = (name) => new URL(name, import.meta.url);
const source = readFileSync(here("statecast.mjs"), "utf8");
const delta = readFileSync(here("delta.js"), "utf8");
const line = "// @include delta.js\n";
const at = source.indexOf(line);
if (at < 0) throw new Error("statecast.mjs has no include line: " + JSON.stringify(line));
mkdirSync(here("dist/"), { recursive: true });
writeFileSync(here("dist/statecast.mjs"), source.slice(0, at) + delta + source.slice(at + line.length));
