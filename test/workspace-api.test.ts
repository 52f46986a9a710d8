import { gzipSync } from "node:zlib";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callApi, httpRequest, ROOT_DOMAIN, startServer, type ServerHandle } from "./harness/warren.js";

describe("workspace API (Connect, JSON over HTTP)", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("creates a workspace with its URLs and a one-time agent token", async () => {
    const res = await callApi<{ workspace: { name: string; urls: string[]; ports: unknown[]; connected?: boolean }; agentToken: string }>(
      server,
      "WorkspaceService/CreateWorkspace",
      { name: "demo", ports: [{ port: 8000 }, { port: 3000, public: true }] },
    );
    expect(res.status).toBe(200);
    expect(res.body.workspace.name).toBe("demo");
    expect(res.body.workspace.ports).toEqual([{ port: 8000 }, { port: 3000, public: true }]);
    expect(res.body.workspace.urls).toEqual([
      `http://8000-demo.${ROOT_DOMAIN}:${server.httpPort}/`,
      `http://3000-demo.${ROOT_DOMAIN}:${server.httpPort}/`,
    ]);
    expect(res.body.agentToken).toMatch(/^wat_[0-9a-f]{16}[A-Za-z0-9_-]{43}$/);
    // Shown once: reading the workspace never shows the token again.
    const got = await callApi<{ workspace: Record<string, unknown> }>(server, "WorkspaceService/GetWorkspace", { name: "demo" });
    expect(got.status).toBe(200);
    expect(JSON.stringify(got.body)).not.toContain(res.body.agentToken);
    expect(got.body.workspace["connected"]).toBeUndefined(); // false is omitted in proto3 JSON
    // SSH through the front door: the workspace's sshd on port 22 as user "warren" unless told otherwise.
    expect(got.body.workspace).toMatchObject({ sshPort: 22, sshUser: "warren", sshPublicKey: expect.stringMatching(/^ssh-ed25519 /) });
  });

  it("lists and deletes workspaces", async () => {
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "listed", ports: [] });
    const list = await callApi<{ workspaces: Array<{ name: string }> }>(server, "WorkspaceService/ListWorkspaces", {});
    expect(list.body.workspaces.map((w) => w.name)).toContain("listed");
    expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "listed" })).status).toBe(200);
    const gone = await callApi<{ code: string; message: string }>(server, "WorkspaceService/GetWorkspace", { name: "listed" });
    expect(gone.status).toBe(404);
    expect(gone.body).toEqual({ code: "not_found", message: 'workspace "listed" not found' });
  });

  it("refuses a taken name with already_exists", async () => {
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "twice", ports: [] });
    const again = await callApi<{ code: string }>(server, "WorkspaceService/CreateWorkspace", { name: "twice", ports: [] });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe("already_exists");
  });

  it("answers invalid_argument naming the field for bad input", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ name: "Bad_Name", ports: [] }, /^name: "Bad_Name" is not a valid workspace name/],
      [{ name: "-leading", ports: [] }, /^name:/],
      [{ name: "", ports: [] }, /^name: required/],
      [{ name: "x".repeat(64), ports: [] }, /^name:/],
      [{ name: "ports", ports: [{ port: 0 }] }, /^ports\[0\]\.port: 0 is not a port number/],
      [{ name: "ports", ports: [{ port: 70000 }] }, /^ports\[0\]\.port: 70000 is not a port number/],
      [{ name: "ports", ports: [{ port: 80 }, { port: 80 }] }, /^ports\[1\]\.port: 80 is listed twice/],
    ];
    for (const [body, message] of cases) {
      const res = await callApi<{ code: string; message: string }>(server, "WorkspaceService/CreateWorkspace", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe("invalid_argument");
      expect(res.body.message).toMatch(message);
    }
  });

  it("answers invalid_argument naming the field for lifecycle, variables and owner input", async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["CreateWorkspace", { name: "v", ports: [], variables: [{ name: "1BAD", value: "x" }] }, /^variables\[0\]\.name: "1BAD" is not a valid variable name/],
      ["CreateWorkspace", { name: "v", ports: [], variables: [{ name: "BIG", value: "x".repeat(70_000) }] }, /^variables\[0\]\.value: 70000 bytes is over the limit/],
      ["CreateWorkspace", { name: "v", ports: [], variables: "API_KEY=x" }, /variables/],
      ["CreateWorkspace", { name: "v", ports: [], ttlSeconds: 400 * 86_400 }, /^ttlSeconds: 34560000 is out of range/],
      ["CreateWorkspace", { name: "v", ports: [], agentTokenTtlSeconds: 400 * 86_400 }, /^agentTokenTtlSeconds: /],
      ["CreateWorkspace", { name: "v", ports: [], owner: "nobody" }, /^owner: no user "nobody"/],
      ["CreateWorkspace", { name: "v", ports: [], sshPort: 70000 }, /^sshPort: 70000 is not a port number/],
      ["CreateWorkspace", { name: "v", ports: [], sshUser: "Root; rm" }, /^sshUser: "Root; rm" is not a valid user name/],
      // A huge field inside a body the server accepts: refused naming the field, shortened.
      ["CreateWorkspace", { name: "x".repeat(500_000), ports: [] }, /^name: "x{80}" is not a valid workspace name/],
      ["StopWorkspace", { name: "Bad_Name" }, /^name: "Bad_Name" is not a valid workspace name/],
      ["StartWorkspace", { name: "" }, /^name: required/],
      ["RestartWorkspace", { name: "x", force: true }, /force/],
      ["TerminateWorkspace", { name: "-x" }, /^name:/],
      ["RotateAgentToken", { name: "x", agentTokenTtlSeconds: "soon" }, /agent_token_ttl_seconds|agentTokenTtlSeconds/],
    ];
    for (const [method, body, message] of cases) {
      const res = await callApi<{ code: string; message: string }>(server, `WorkspaceService/${method}`, body);
      expect(res.status, `${method} ${JSON.stringify(body).slice(0, 100)}`).toBe(400);
      expect(res.body.code).toBe("invalid_argument");
      expect(res.body.message).toMatch(message);
    }
  });

  it("rejects unknown fields and malformed JSON with invalid_argument", async () => {
    const unknown = await callApi<{ code: string; message: string }>(server, "WorkspaceService/CreateWorkspace", { name: "x", colour: "red" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.code).toBe("invalid_argument");
    expect(unknown.body.message).toMatch(/colour/);
    const res = await httpRequest({
      port: server.httpPort,
      host: ROOT_DOMAIN,
      method: "POST",
      path: "/warren.v1.WorkspaceService/CreateWorkspace",
      headers: { "content-type": "application/json", authorization: `Bearer ${server.adminToken}` },
      body: "{not json",
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString()).code).toBe("invalid_argument");
  });

  /** POSTs CreateWorkspace with these headers, `send` writing the body; resolves with the answer. */
  const postCreate = (headers: Record<string, string | number>, send: (req: http.ClientRequest) => void) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: server.httpPort,
          method: "POST",
          path: "/warren.v1.WorkspaceService/CreateWorkspace",
          headers: { host: ROOT_DOMAIN, "content-type": "application/json", authorization: `Bearer ${server.adminToken}`, ...headers },
        },
        (r) => {
          let body = "";
          r.setEncoding("utf8").on("data", (c: string) => (body += c));
          r.on("end", () => {
            resolve({ status: r.statusCode ?? 0, body });
            // A body not sent in full never comes: close, or shutdown waits for it.
            req.destroy();
          });
        },
      );
      req.on("error", reject);
      send(req);
    });

  it("refuses a huge body before reading it", async () => {
    // Announce 5 MiB, send 1 KiB: the answer must come without the rest being read.
    const res = await postCreate({ "content-length": 5 * 1024 * 1024 }, (req) => req.write("x".repeat(1024)));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^request body: 5242880 bytes is over/) });
  });

  it("refuses a huge chunked body once it passes the limit, naming the body", async () => {
    // No Content-Length: the size shows only while reading.
    const res = await postCreate({ "transfer-encoding": "chunked" }, (req) => {
      req.write(`{"name":"${"x".repeat(2 * 1024 * 1024)}`);
      req.end('"}');
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^request body: more than 1048576 bytes is over/) });
    // The server goes on answering.
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {})).status).toBe(200);
  });

  it("answers a gzip-bombed body invalid_argument, as the README says, not resource_exhausted (429)", async () => {
    // 2 KiB on the wire, 4 MiB once inflated.
    const bomb = gzipSync(Buffer.from(`{"name":"${"x".repeat(4 * 1024 * 1024)}"}`));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const res = await postCreate({ "content-encoding": "gzip", "content-length": bomb.length }, (req) => req.end(bomb));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^request body: .* is over the API's limit of 1048576 bytes/) });
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {})).status).toBe(200);
  });

  it("needs the admin token: unauthenticated without or with a wrong one", async () => {
    for (const token of ["", "wrong-token-wrong-token"]) {
      const res = await callApi<{ code: string }>(server, "WorkspaceService/ListWorkspaces", {}, token);
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("unauthenticated");
    }
  });
});
