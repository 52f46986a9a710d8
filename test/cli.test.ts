import { spawn } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./harness/processes.js";
import { callApi, cleanEnv, startServer, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

const CLI = `${REPO_ROOT}dist/warren.cjs`;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The user CLI, end to end: login, create, list, get, stop/start/restart, terminate. */
describe("warren CLI", () => {
  let server: ServerHandle;
  let home: string;
  let token: string;

  const warren = (args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) =>
    new Promise<Run>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], {
        env: cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, ".config"), ...options.env }),
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
      child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
      child.on("error", reject);
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(options.stdin ?? "");
    });

  beforeAll(async () => {
    home = tempDir("warren-cli-home-");
    server = await startServer();
    await callApi(server, "UserService/CreateUser", { name: "carol" });
    token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "carol", ttlSeconds: 3600 })).body.token;
  });

  afterAll(async () => {
    await server?.stop();
  });

  const serverUrl = () => `http://127.0.0.1:${server.httpPort}`;

  it("refuses to work before login, and refuses a bad token at login", async () => {
    const before = await warren(["workspace", "list"]);
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/^warren: not logged in: run `warren login --server URL`/);
    const bad = await warren(["login", "--server", serverUrl(), "--token", "wut_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("warren: token is invalid, expired or revoked\n");
  });

  it("logs in, storing the server and token readable by the user only", async () => {
    // The token comes on stdin, so it never shows in the process list.
    const res = await warren(["login", "--server", serverUrl()], { stdin: `${token}\n` });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const path = join(home, ".config", "warren", "config.json");
    expect(res.stdout).toContain(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ server: serverUrl(), token });
  });

  it("creates, lists, gets, stops, starts, restarts and terminates a workspace", async () => {
    const secretFile = join(home, "secret.txt");
    writeFileSync(secretFile, "from a file\n");
    const created = await warren([
      "workspace", "create", "cli-demo", "--port", "8000", "--public-port", "3000", "--ttl", "1h", "--env", "GREETING=hello", "--file", `CERT=${secretFile}`, "--json",
    ]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const body = JSON.parse(created.stdout) as { workspace: Record<string, unknown>; agentToken: string };
    expect(body.agentToken).toMatch(/^wat_/);
    expect(body.workspace).toMatchObject({
      name: "cli-demo",
      owner: "carol",
      ports: [{ port: 8000 }, { port: 3000, public: true }],
      variableNames: ["GREETING", "CERT"],
      desiredState: "WORKSPACE_DESIRED_STATE_RUNNING",
      actualState: "WORKSPACE_ACTUAL_STATE_CREATION_REQUESTED",
    });
    expect(body.workspace["expireTime"]).toBeDefined();

    const list = await warren(["workspace", "list", "--json"]);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as Array<{ name: string }>;
    expect(listed.map((w) => w.name)).toEqual(["cli-demo"]);

    const table = await warren(["workspace", "list"]);
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME\s+DESIRED\s+ACTUAL\s+CONNECTED\s+OWNER\s+EXPIRES\s+URL$/);
    expect(row).toMatch(/^cli-demo\s+Running\s+CreationRequested\s+no\s+carol\s+in (59m|1h)\s+http:\/\/8000-cli-demo\.warren\.localhost:\d+\/$/);

    const get = await warren(["workspace", "get", "cli-demo"]);
    expect(get.stdout).toMatch(/^Name:\s+cli-demo$/m);
    expect(get.stdout).toMatch(/^Variables:\s+GREETING, CERT$/m);
    expect(get.stdout).not.toContain("hello");

    const stop = await warren(["workspace", "stop", "cli-demo"]);
    expect(stop.stdout).toBe("workspace cli-demo: desired Stopped, actual CreationRequested\n");
    const start = await warren(["workspace", "start", "cli-demo", "--json"]);
    expect(JSON.parse(start.stdout).desiredState).toBe("WORKSPACE_DESIRED_STATE_RUNNING");
    const restart = await warren(["workspace", "restart", "cli-demo"]);
    expect(restart.stdout).toBe("workspace cli-demo: desired RestartRequested, actual CreationRequested\n");
    const terminate = await warren(["workspace", "terminate", "cli-demo", "--json"]);
    expect(terminate.code).toBe(0);
    expect(JSON.parse(terminate.stdout)).toMatchObject({ desiredState: "WORKSPACE_DESIRED_STATE_TERMINATED", actualState: "WORKSPACE_ACTUAL_STATE_TERMINATED" });
  });

  it("prints the server's message and exits non-zero on errors", async () => {
    const missing = await warren(["workspace", "get", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('warren: workspace "nope" not found\n');
    const invalid = await warren(["workspace", "create", "Bad_Name"]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^warren: name: "Bad_Name" is not a valid workspace name/);
    const usage = await warren(["workspace", "frobnicate", "x"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/"frobnicate" is not a workspace sub-command/);
    const flag = await warren(["workspace", "list", "--colour"]);
    expect(flag.code).toBe(2);
    const down = await warren(["workspace", "list", "--server", "http://127.0.0.1:1"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^warren: cannot reach http:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
  });
});
