import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_BUNDLE, requireBuilt, SERVER_BUNDLE } from "./harness/processes.js";
import { cleanEnv, startServer } from "./harness/warren.js";

function run(bundle: string, args: string[], env: Record<string, string> = {}) {
  requireBuilt();
  const r = spawnSync(process.execPath, [bundle, ...args], { env: cleanEnv(env), encoding: "utf8", timeout: 15_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("configuration", () => {
  it("stops at start with one line naming a bad setting, exit code 2", () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [[], { WARREN_HTTP_ADDR: "nonsense" }, /^warren-server: invalid WARREN_HTTP_ADDR \(WARREN_HTTP_ADDR\): "nonsense" is not host:port\n$/],
      [["--agent-addr", "127.0.0.1:99999"], {}, /^warren-server: invalid --agent-addr \(WARREN_AGENT_ADDR\): port 99999 is out of range/],
      [[], { WARREN_ROOT_DOMAIN: "not a domain" }, /WARREN_ROOT_DOMAIN.*is not a DNS name/],
      [[], { WARREN_STREAM_WAIT_TIMEOUT: "forever" }, /WARREN_STREAM_WAIT_TIMEOUT.*is not a duration/],
      [[], { WARREN_LOG_LEVEL: "loud" }, /WARREN_LOG_LEVEL.*is not one of fatal, error/],
      [[], { WARREN_ADMIN_TOKEN: "short" }, /WARREN_ADMIN_TOKEN.*at least 16 characters/],
      [["--no-such-flag"], {}, /^warren-server: unknown flag --no-such-flag/],
      [["--config", "/nonexistent/warren.yaml"], {}, /^warren-server: config file \/nonexistent\/warren.yaml: not found/],
    ];
    for (const [args, env, message] of cases) {
      const r = run(SERVER_BUNDLE, args, env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("reads a config file, refuses unknown keys, and lets env and flags win over it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "warren-config-"));
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "rootDomain: ws.example.com\ncolour: red\n");
    const r = run(SERVER_BUNDLE, ["--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown setting "colour"/);

    const good = join(dir, "good.yaml");
    writeFileSync(good, "rootDomain: file.example.com\nlogLevel: warn\n");
    const server = await startServer({ WARREN_LOG_LEVEL: undefined, WARREN_ROOT_DOMAIN: "env.example.com" }, ["--config", good, "--log-level", "info"]);
    const ready = await server.proc.waitFor((l) => l.msg === "warren server ready");
    expect(ready["rootDomain"]).toBe("env.example.com");
    await server.stop();
  });

  it("--help lists every setting with its variable and default; --version prints the version", () => {
    const help = run(SERVER_BUNDLE, ["--help"]);
    expect(help.code).toBe(0);
    for (const name of ["WARREN_ROOT_DOMAIN", "WARREN_HTTP_ADDR", "WARREN_AGENT_ADDR", "WARREN_OBSERVABILITY_ADDR", "WARREN_ADMIN_TOKEN"]) {
      expect(help.stdout).toContain(name);
    }
    expect(help.stdout).toMatch(/--http-addr <value>\s+WARREN_HTTP_ADDR\s+.*\(default: 127\.0\.0\.1:8080\)/);
    expect(help.stdout).toMatch(/\(default: warren\.localhost\)/);
    expect(run(SERVER_BUNDLE, ["--version"]).stdout).toMatch(/^warren-server \d+\.\d+\.\d+/);
    const agentHelp = run(AGENT_BUNDLE, ["--help"]);
    expect(agentHelp.code).toBe(0);
    for (const name of ["WARREN_SERVER", "WARREN_TOKEN", "WARREN_TOKEN_FILE", "WARREN_POOL_MIN_IDLE", "WARREN_POOL_MAX_STREAMS"]) {
      expect(agentHelp.stdout).toContain(name);
    }
  });

  it("the agent refuses bad settings with exit code 2", () => {
    const r = run(AGENT_BUNDLE, [], { WARREN_SERVER: "ftp://x", WARREN_TOKEN: "t" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^warren-agent: invalid WARREN_SERVER \(WARREN_SERVER\): "ftp:\/\/x": use http:\/\/ \(h2c\) or https:\/\//);
    const pool = run(AGENT_BUNDLE, ["--pool-min-idle", "0"], { WARREN_SERVER: "http://127.0.0.1:1", WARREN_TOKEN: "t" });
    expect(pool.code).toBe(2);
    expect(pool.stderr).toMatch(/--pool-min-idle.*0 is out of range 1-1000/);
  });

  it("generates and prints an admin token when none is set", async () => {
    const server = await startServer({ WARREN_ADMIN_TOKEN: undefined });
    const line = await server.proc.waitFor((l) => typeof l["adminToken"] === "string");
    expect(String(line["adminToken"])).toMatch(/^wadm_[A-Za-z0-9_-]{43}$/);
    await server.stop();
  });
});
