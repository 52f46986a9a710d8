import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, trackChild } from "./processes.js";
import { tempDir } from "./temp-dirs.js";
import { cleanEnv } from "./warren.js";

/**
 * The app a simulated CI job serves: `hello from the job` on /, a page whose script talks to
 * the app over a WebSocket on /ws-page (echo on /echo), and /exit?code=N, which answers and
 * then exits with code N (the job's command ending). Listens on APP_PORT.
 */
const APP = `
const http = require("node:http");
const { WebSocketServer } = require(${JSON.stringify(join(REPO_ROOT, "node_modules", "ws"))});
const page = '<!doctype html><title>job app</title><p id="status">connecting</p><script>' +
  'const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo");' +
  'ws.onopen = () => ws.send("ping from the browser");' +
  'ws.onmessage = (e) => { document.getElementById("status").textContent = "echo: " + e.data; };' +
  'ws.onerror = () => { document.getElementById("status").textContent = "websocket failed"; };' +
  '</script>';
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://app");
  if (url.pathname === "/exit") {
    res.end("bye\\n", () => setTimeout(() => process.exit(Number(url.searchParams.get("code") ?? 0)), 50));
    return;
  }
  if (url.pathname === "/ws-page") {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(page);
    return;
  }
  res.end("hello from the job\\n");
});
new WebSocketServer({ server, path: "/echo" }).on("connection", (ws) => ws.on("message", (m) => ws.send("job says " + m)));
server.listen(Number(process.env.APP_PORT), "127.0.0.1");
process.on("SIGTERM", () => process.exit(143));
`;

/**
 * The job's script, as a CI system would run it: install the agent from the server with its
 * install.sh, then `warren-agent ci --port $APP_PORT [CI_FLAGS] -- node app.cjs`, and exit
 * with the agent's code.
 */
const JOB = `#!/bin/sh
set -u
cd "$JOB_DIR"
if [ ! -x bin/warren-agent ]; then
  curl -fsSL "$WARREN_SERVER/-/agent/install.sh" | WARREN_INSTALL_DIR="$JOB_DIR/bin" sh >/dev/null || exit 90
fi
./bin/warren-agent ci --port "$APP_PORT" \${CI_FLAGS:-} -- "$NODE" app.cjs
code=$?
echo "job: agent exited with $code"
exit $code
`;

/** A directory holding the job's script and app (the job's checkout). */
export function jobDir(): string {
  const dir = tempDir("warren-ci-job-");
  writeFileSync(join(dir, "app.cjs"), APP);
  writeFileSync(join(dir, "job.sh"), JOB, { mode: 0o755 });
  return dir;
}

/** A running process whose plain-text output is kept for the test to wait on. */
export class JobProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;

  constructor(command: string, args: string[], env: Record<string, string | undefined>) {
    this.child = spawn(command, args, { env: cleanEnv({ WARREN_LOG_LEVEL: undefined, ...env }), stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (c: string) => (this.stdout += c));
    this.child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.stderr += c));
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : null))));
    trackChild(this.child);
  }

  /** Resolves with the first match of `re` in stdout, now or later. */
  async waitFor(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.stdout);
      if (m) return m;
      if (this.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`no ${re} in the job's output (${this.child.exitCode !== null ? `exited ${this.child.exitCode}` : "timed out"}):\n${this.stdout}\n${this.stderr}`.slice(-4000));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Runs the job's script (job.sh in `dir`) with the CI variables given. */
export function runJob(dir: string, env: Record<string, string | undefined>): JobProcess {
  return new JobProcess("/bin/sh", [join(dir, "job.sh")], { JOB_DIR: dir, NODE: process.execPath, ...env });
}
