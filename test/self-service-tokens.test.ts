import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callApi, startServer, type ServerHandle } from "./harness/warren.js";

/** A user manages their own access tokens (the dashboard does it with the session cookie). */
describe("self-service access tokens", () => {
  let server: ServerHandle;
  let alice: string;
  let bobTokenId: string;

  beforeAll(async () => {
    server = await startServer();
    for (const name of ["alice", "bob"]) await callApi(server, "UserService/CreateUser", { name });
    alice = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice" })).body.token;
    bobTokenId = (await callApi<{ id: string }>(server, "UserService/CreateAccessToken", { user: "bob", name: "bob's laptop" })).body.id;
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("creates, lists and revokes the caller's own tokens, with names", async () => {
    const made = await callApi<{ token: string; id: string }>(server, "UserService/CreateAccessToken", { name: "ci", ttlSeconds: 3600 }, alice);
    expect(made.status).toBe(200);
    const list = await callApi<{ tokens: { id: string; name: string; user: string; current: boolean }[] }>(server, "UserService/ListAccessTokens", {}, alice);
    expect(list.body.tokens.map((t) => [t.user, t.name ?? "", t.current ?? false])).toEqual([
      ["alice", "", true],
      ["alice", "ci", false],
    ]);
    expect(JSON.stringify(list.body)).not.toContain(made.body.token);
    expect((await callApi(server, "UserService/RevokeAccessToken", { id: made.body.id }, alice)).status).toBe(200);
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, made.body.token)).status).toBe(401);
  });

  it("refuses someone else's tokens: creating is denied, listing and revoking answer like a missing user or token", async () => {
    const others = await callApi<{ message: string }>(server, "UserService/ListAccessTokens", { user: "bob" }, alice);
    const nobody = await callApi<{ message: string }>(server, "UserService/ListAccessTokens", { user: "nobody" }, alice);
    expect(others).toMatchObject({ status: 404, body: { message: 'user "bob" not found' } });
    expect(nobody).toMatchObject({ status: 404, body: { message: 'user "nobody" not found' } });
    expect((await callApi(server, "UserService/CreateAccessToken", { user: "bob" }, alice)).status).toBe(403);
    const revoke = await callApi<{ code: string; message: string }>(server, "UserService/RevokeAccessToken", { id: bobTokenId }, alice);
    expect(revoke.status).toBe(404);
    expect(revoke.body.message).toBe(`access token "${bobTokenId}" not found`);
    // Still bob's, as the admin sees.
    const bobs = await callApi<{ tokens: { id: string; name: string }[] }>(server, "UserService/ListAccessTokens", { user: "bob" });
    expect(bobs.body.tokens).toEqual([expect.objectContaining({ id: bobTokenId, name: "bob's laptop" })]);
  });

  it("keeps users the admin's business", async () => {
    expect((await callApi(server, "UserService/CreateUser", { name: "mallory" }, alice)).status).toBe(403);
    expect((await callApi(server, "UserService/ListUsers", {}, alice)).status).toBe(403);
  });
});
