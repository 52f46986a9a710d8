import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliHome, runCli } from "./harness/cli.js";
import { callApi, startServer, type ServerHandle } from "./harness/warren.js";

/** `warren token create|list|revoke`: a user's own access tokens, end to end. */
describe("warren token", () => {
  let server: ServerHandle;
  let home: string;
  let erinToken: string;
  let frankTokenId: string;
  const url = () => `http://127.0.0.1:${server.httpPort}`;
  const as = (token: string) => ["--server", url(), "--token", token];

  beforeAll(async () => {
    server = await startServer();
    home = cliHome();
    for (const name of ["erin", "frank"]) await callApi(server, "UserService/CreateUser", { name });
    erinToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "erin", ttlSeconds: 3 * 86_400 })).body.token;
    frankTokenId = (await callApi<{ id: string }>(server, "UserService/CreateAccessToken", { user: "frank", name: "frank's laptop" })).body.id;
    expect((await runCli(home, ["login", "--server", url()], { stdin: `${erinToken}\n` })).code).toBe(0);
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("creates a token shown once, lists it with relative times and --json, and revokes it: it stops working at once", async () => {
    const made = await runCli(home, ["token", "create", "--name", "ci", "--ttl", "2h"]);
    expect(made.code).toBe(0);
    const [, id, secret] = /^New access token ([0-9a-f]{16}) \(shown once; expires in 1h\):\n {2}(wut_\S+)\n$/.exec(made.stdout) ?? [];
    expect(secret, made.stdout).toBeDefined();
    expect((await runCli(home, ["whoami", ...as(secret!)])).stdout).toBe(`user erin on ${url()} (token expires in 1h)\n`);

    const table = await runCli(home, ["token", "list"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+NAME\s+CREATED\s+EXPIRES\s+CURRENT$/);
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/))).toEqual([
      [expect.stringMatching(/^[0-9a-f]{16}$/), "-", "just now", "in 2d", "yes"],
      [id, "ci", "just now", "in 1h"],
    ]);
    expect(table.stdout).not.toContain(secret);

    const json = JSON.parse((await runCli(home, ["token", "list", "--json"])).stdout) as Array<Record<string, unknown>>;
    expect(json).toHaveLength(2);
    expect(json[1]).toMatchObject({ id, user: "erin", name: "ci", createTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), expireTime: expect.stringMatching(/^\d{4}-/) });
    expect(JSON.stringify(json)).not.toContain(secret!.slice(4));
    const createdJson = JSON.parse((await runCli(home, ["token", "create", "--json"])).stdout) as { token: string; id: string; expireTime: string };
    expect(createdJson).toMatchObject({ token: expect.stringMatching(/^wut_/), id: expect.stringMatching(/^[0-9a-f]{16}$/), expireTime: expect.any(String) });

    const revoked = await runCli(home, ["token", "revoke", id!]);
    expect(revoked).toMatchObject({ code: 0, stdout: `access token ${id} revoked\n` });
    expect(await runCli(home, ["whoami", ...as(secret!)])).toMatchObject({ code: 1, stderr: "warren: token is invalid, expired or revoked\n" });
    expect(JSON.parse((await runCli(home, ["token", "revoke", createdJson.id, "--json"])).stdout)).toEqual({});
    expect((await runCli(home, ["token", "list", "--json"])).stdout).not.toContain(id);
  });

  it("someone else's token is answered exactly like one that does not exist", async () => {
    const others = await runCli(home, ["token", "revoke", frankTokenId]);
    expect(others).toMatchObject({ code: 1, stderr: `warren: access token "${frankTokenId}" not found\n` });
    const missing = await runCli(home, ["token", "revoke", "0123456789abcdef"]);
    expect(missing).toMatchObject({ code: 1, stderr: 'warren: access token "0123456789abcdef" not found\n' });
    // Frank's token still works, and only frank (or the admin) sees it.
    const franks = await callApi<{ tokens: Array<{ id: string }> }>(server, "UserService/ListAccessTokens", { user: "frank" });
    expect(franks.body.tokens.map((t) => t.id)).toEqual([frankTokenId]);
    expect((await runCli(home, ["token", "list"])).stdout).not.toContain(frankTokenId);
  });

  it("says what is wrong with a bad sub-command, id or --ttl", async () => {
    expect(await runCli(home, ["token", "lst"])).toMatchObject({ code: 2, stderr: `warren: "lst" is not a token sub-command; did you mean "list"? (see warren help)\n` });
    expect(await runCli(home, ["token", "revoke"])).toMatchObject({ code: 2, stderr: "warren: token revoke needs a token id (see warren token list)\n" });
    expect(await runCli(home, ["token", "revoke", "nope"])).toMatchObject({ code: 1, stderr: 'warren: id: "nope" is not a token id (16 hex digits)\n' });
    const ttl = await runCli(home, ["token", "create", "--ttl", "soon"]);
    expect(ttl.code).toBe(2);
    expect(ttl.stderr).toMatch(/^warren: --ttl: /);
  });
});
