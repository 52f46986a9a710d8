import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { prettyLine } from "../shared/log-format.js";
import { SERVER_BUNDLE } from "./harness/processes.js";
import { cleanEnv, startServer } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

/** The server run by `script` (bsdutils) under a pseudo-terminal, as a person runs `npm start`; resolves with what they see. */
function runUnderTerminal(env: Record<string, string>, until: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-q", "-e", "-c", `${process.execPath} ${SERVER_BUNDLE}`, "/dev/null"], {
      env: cleanEnv({
        WARREN_HTTP_ADDR: "127.0.0.1:0",
        WARREN_AGENT_ADDR: "127.0.0.1:0",
        WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
        WARREN_SSH_ADDR: "off",
        WARREN_DRAIN_DELAY: "0s",
        TERM: "dumb",
        ...env,
      }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let text = "";
    // The server may be gone by the time Ctrl-C is typed.
    child.stdin.on("error", () => {});
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no banner within 20 s; the terminal showed:\n${text}`));
    }, 20_000);
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8").replace(/\r\n/g, "\n");
      if (until(text)) {
        clearTimeout(timer);
        // Ctrl-C, as at a terminal: the server stops at once.
        child.stdin.write("\x03");
        setTimeout(() => child.kill("SIGTERM"), 2000).unref();
        child.on("close", () => resolve(text));
      }
    });
  });
}

describe("console for people", () => {
  it("under a terminal: a short banner with the URLs, the admin token and the next commands, and readable log lines", async () => {
    const dataDir = tempDir("warren-console-");
    const text = await runUnderTerminal({ WARREN_DATA_DIR: dataDir }, (t) => t.includes("./bin/warren-agent.js run"));
    const port = /Web, API, login\s+http:\/\/warren\.localhost:(\d+)\n/.exec(text)?.[1];
    expect(port, text).toBeDefined();
    expect(text).toMatch(/^ {2}Warren \d+\.\d+\.\d+\S* is ready$/m);
    expect(text).toMatch(/^ {2}Agents connect to\s+http:\/\/127\.0\.0\.1:\d+$/m);
    expect(text).toMatch(/^ {2}Metrics, health\s+http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
    // A fresh data directory: the token is generated now, shown this once, and kept there.
    const token = /^ {2}Admin token\s+(wadm_\S+) {2}\(generated now, shown this once; kept in \S+admin-token\)$/m.exec(text)?.[1];
    expect(token, text).toBeDefined();
    expect(text).toContain(`./bin/warren.js login --server http://warren.localhost:${port} --token ${token}`);
    expect(text).toMatch(/^ {2}State\s+in the data directory \(embedded store\): kept across restarts$/m);
    // Log lines are for reading: time, level, message, fields; no JSON objects.
    expect(text).toMatch(/^\d\d:\d\d:\d\d INFO {2}warren server ready version=\S+ /m);
    expect(text.split("\n").some((l) => l.startsWith("{"))).toBe(false);
  });

  it("WARREN_LOG_FORMAT=json keeps JSON lines and no banner, even on a terminal", async () => {
    const text = await runUnderTerminal({ WARREN_LOG_FORMAT: "json", WARREN_ADMIN_TOKEN: "an-admin-token-of-16+", WARREN_STORE: "memory" }, (t) => t.includes('"msg":"warren server ready"'));
    expect(text).not.toContain("is ready\n");
    const ready = text.split("\n").find((l) => l.includes('"msg":"warren server ready"'))!;
    expect(JSON.parse(ready)).toMatchObject({ level: "info", msg: "warren server ready" });
  });

  it("through a pipe: JSON lines and no banner (the default for containers and log shippers)", async () => {
    const server = await startServer();
    try {
      expect(server.proc.lines.find((l) => l.msg === "warren server ready")).toBeDefined();
      expect(server.proc.stdoutText.join("\n")).not.toContain("is ready");
    } finally {
      await server.stop();
    }
  });

  it("formats one log line for people", () => {
    const line = JSON.stringify({ level: "warn", time: "2026-12-07T01:02:03.456Z", pid: 1, name: "warren-server", msg: "agent version differs", workspace: "demo", note: "two words", n: 3 });
    expect(prettyLine(line)).toBe('01:02:03 WARN  agent version differs workspace=demo note="two words" n=3');
    expect(prettyLine("not json")).toBe("not json");
  });
});
