// Starts the statecast binary with `args` (and `env`, default the test's
// own) and resolves, once it logs where
// it listens, to { child, addr }. Shared by the browser tests.
import { spawn } from "node:child_process";

export function start(binary, args, env) {
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"], env: env || process.env });
  return new Promise((resolve, reject) => {
    let log = "";
    child.stderr.on("data", (chunk) => {
      log += chunk;
      // The whole address: a chunk may end inside it.
      const m = log.match(/listening on (\S+) /);
      if (m) resolve({ child, addr: m[1] });
    });
    child.on("exit", (code) => reject(new Error("statecast exited " + code + ":\n" + log)));
  });
}
