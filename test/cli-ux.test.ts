import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliHome, runCli } from "./harness/cli.js";
import { callApi, createWorkspace, eventually, startServer, type ServerHandle } from "./harness/warren.js";

/** Item 5 of issue 17: the CLI as people expect it. */
describe("warren CLI: help, mistakes, whoami, logout, open", () => {
  let server: ServerHandle;
  let home: string;
  let token: string;

  beforeAll(async () => {
    server = await startServer();
    home = cliHome();
    await callApi(server, "UserService/CreateUser", { name: "dora" });
    token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "dora", ttlSeconds: 7200 })).body.token;
  });

  afterAll(async () => {
    await server?.stop();
  });

  const url = () => `http://127.0.0.1:${server.httpPort}`;

  it("`warren help` and --help list every command", async () => {
    for (const args of [["help"], ["--help"], ["workspace", "--help"]]) {
      const run = await runCli(home, args);
      expect(run.code).toBe(0);
      for (const command of ["login", "logout", "whoami", "token create", "workspace expose", "open NAME", "port-forward NAME --tcp"]) expect(run.stdout).toContain(command);
    }
  });

  it("unknown flags, commands and sub-commands are answered in our words with a suggestion, exit 2", async () => {
    const flag = await runCli(home, ["workspace", "create", "demo", "--prot", "8000"]);
    expect(flag).toMatchObject({ code: 2, stderr: "warren: unknown flag --prot; did you mean --port? (see warren help)\n" });
    const command = await runCli(home, ["wrokspace", "list"]);
    expect(command).toMatchObject({ code: 2, stderr: `warren: "wrokspace" is not a warren command; did you mean "workspace"? (see warren help)\n` });
    const sub = await runCli(home, ["workspace", "lsit"]);
    expect(sub).toMatchObject({ code: 2, stderr: `warren: "lsit" is not a workspace sub-command; did you mean "list"? (see warren help)\n` });
    const missing = await runCli(home, ["workspace", "list", "--server"]);
    expect(missing).toMatchObject({ code: 2, stderr: "warren: --server needs a value (see warren help)\n" });
  });

  it("login from stdin, whoami says who with the token's expiry in relative time, logout forgets the token", async () => {
    const login = await runCli(home, ["login", "--server", url()], { stdin: `${token}\n` });
    expect(login.code).toBe(0);
    const me = await runCli(home, ["whoami"]);
    expect(me.code).toBe(0);
    expect(me.stdout).toBe(`user dora on ${url()} (token expires in 1h)\n`);
    const json = await runCli(home, ["whoami", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ server: url(), user: "dora", tokenExpireTime: expect.any(String) });
    const admin = await runCli(home, ["whoami", "--token", server.adminToken]);
    expect(admin.stdout).toBe(`the admin on ${url()}\n`);

    const out = await runCli(home, ["logout"]);
    expect(out.stdout).toBe(`Logged out of ${url()}; removed ${join(home, ".config", "warren", "config.json")}\n`);
    expect(existsSync(join(home, ".config", "warren", "config.json"))).toBe(false);
    const after = await runCli(home, ["whoami"]);
    expect(after.code).toBe(2);
    expect(after.stderr).toMatch(/^warren: not logged in/);
  });

  it("tables show relative times; --json keeps the timestamps", async () => {
    await createWorkspace(server, "timely", [8000], { ttlSeconds: 3 * 3600 + 60, owner: "dora" });
    const list = await runCli(home, ["workspace", "list", "--server", url(), "--token", token]);
    expect(list.stdout).toMatch(/^timely\s+Running\s+CreationRequested\s+no\s+dora\s+in 3h\s+http:/m);
    const json = await runCli(home, ["workspace", "list", "--json", "--server", url(), "--token", token]);
    expect(JSON.parse(json.stdout)[0].expireTime).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it("`warren open NAME [PORT]` opens the workspace URL with $BROWSER; a port it does not expose is an error", async () => {
    await createWorkspace(server, "openme", [8000, 9000], { owner: "dora" });
    const opened = join(home, "opened.txt");
    const browser = join(home, "fake-browser");
    writeFileSync(browser, `#!/bin/sh\necho "$1" >> ${opened}\n`);
    chmodSync(browser, 0o755);
    const env = { BROWSER: browser };
    const first = await runCli(home, ["open", "openme", "--server", url(), "--token", token], { env });
    expect(first.code).toBe(0);
    const second = await runCli(home, ["open", "openme", "9000", "--server", url(), "--token", token], { env });
    expect(second.stdout).toBe(`Opening http://9000-openme.warren.localhost:${server.httpPort}/\n`);
    await eventually(() => existsSync(opened) && readFileSync(opened, "utf8").split("\n").length >= 3, 5000, "the browser started twice");
    expect(readFileSync(opened, "utf8")).toBe(`http://8000-openme.warren.localhost:${server.httpPort}/\nhttp://9000-openme.warren.localhost:${server.httpPort}/\n`);
    const bad = await runCli(home, ["open", "openme", "7000", "--server", url(), "--token", token], { env });
    expect(bad).toMatchObject({ code: 1, stderr: `warren: port 7000 is not exposed by workspace "openme" (expose it with \`warren workspace expose openme 7000\`)\n` });
  });
});
