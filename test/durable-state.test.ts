import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parsePublicKey } from "../server/domain/ssh-public-key.js";
import { generateEd25519KeyPair } from "../server/ssh/ssh-keygen.js";
import { EmbeddedStore } from "../server/store/embedded-store.js";
import { freePort, startApp, type App } from "./harness/apps.js";
import { CLUSTER_SECRET, startCluster, startClusterServer, startRedis, type RedisHandle } from "./harness/cluster.js";
import { SERVER_BUNDLE } from "./harness/processes.js";
import { IS_ROOT } from "./harness/sshd.js";
import { callApi, cleanEnv, eventually, httpRequest, startAgent, startServer, testDataDir, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

const SECRET_KEY = "durable-state-test-secret-0123456789abcdef";

/** Things to stop after each test, last started first. */
const running: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.stop().catch(() => undefined);
});

async function server(env: Record<string, string | undefined>): Promise<ServerHandle> {
  const s = await startServer(env);
  running.push(s);
  return s;
}

async function agent(s: { agentUrl: string }, token: string, options: Parameters<typeof startAgent>[2] = {}): Promise<AgentHandle> {
  const a = await startAgent(s, token, options);
  running.push(a);
  return a;
}

async function app(): Promise<App> {
  const a = await startApp((req, res) => res.end(`hello from ${req.url}`));
  running.push({ stop: () => a.close() });
  return a;
}

/** Runs the server bundle to its end (backup, restore, or a start that must fail). */
function runServer(args: string[], env: Record<string, string>, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [SERVER_BUNDLE, ...args], { env: cleanEnv(env), encoding: "utf8", timeout: 20_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | null }).code ?? null) : 0, stdout, stderr });
    });
    child.stdin!.end(input ?? "");
  });
}

const ok = (res: { status: number; body: unknown }) => {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as unknown;
};

/** A request through the tunnel to a workspace port, with a token. */
const through = (s: ServerHandle, workspace: string, port: number, token: string, path = "/") =>
  httpRequest({ port: s.httpPort, host: workspaceHost(workspace, port), path, headers: { "x-warren-token": token } });

describe("the embedded store keeps state across restarts", () => {
  it("keeps users, access tokens, SSH keys, workspaces and variables; the agent reconnects with its token; the generated admin token stays", async () => {
    const dataDir = testDataDir();
    const agentAddr = `127.0.0.1:${await freePort()}`;
    const env = { WARREN_DATA_DIR: dataDir, WARREN_ADMIN_TOKEN: undefined, WARREN_AGENT_ADDR: agentAddr };
    const first = await server(env);
    // Generated once, printed once, kept with mode 0600.
    const generated = await first.proc.waitFor((l) => typeof l["adminToken"] === "string" && /generated the admin token/.test(String(l.msg)));
    const adminToken = String(generated["adminToken"]);
    for (const file of ["admin-token", "secret-key"]) expect(statSync(join(dataDir, file)).mode & 0o777, file).toBe(0o600);
    expect(readFileSync(join(dataDir, "admin-token"), "utf8").trim()).toBe(adminToken);

    ok(await callApi(first, "UserService/CreateUser", { name: "alice" }, adminToken));
    const access = ok(await callApi<{ token: string }>(first, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 3600 }, adminToken)) as { token: string };
    const key = generateEd25519KeyPair("alice@laptop");
    ok(await callApi(first, "UserService/AddSshKey", { user: "alice", publicKey: key.publicKey }, adminToken));
    const port = await freePort();
    const workload = `require("http").createServer((q, s) => s.end("key=" + process.env.API_KEY)).listen(${port}, "127.0.0.1"); process.on("SIGTERM", () => process.exit(0));`;
    const created = ok(
      await callApi(first, "WorkspaceService/CreateWorkspace", { name: "keep", ports: [{ port }], variables: [{ name: "API_KEY", value: "v4lue-kept" }] }, access.token),
    ) as { agentToken: string };
    const a = await agent(first, created.agentToken, { args: ["run", "--", process.execPath, "-e", workload] });
    await eventually(async () => (await through(first, "keep", port, access.token)).body.toString() === "key=v4lue-kept", 15_000, "the workload through the tunnel");
    await first.stop();

    const second = await server(env);
    // Not printed again: the log says where it is kept.
    const kept = await second.proc.waitFor((l) => /admin token: the one generated on the first start/.test(String(l.msg)));
    expect(kept["path"]).toBe(join(dataDir, "admin-token"));
    expect(second.proc.output()).not.toContain(adminToken);
    // The same agent process reconnects with the token it has and serves again.
    await eventually(async () => (await through(second, "keep", port, access.token)).status === 200, 20_000, "the agent to reconnect");
    expect(a.proc.child.exitCode).toBeNull();
    const users = ok(await callApi<{ users: Array<{ name: string }> }>(second, "UserService/ListUsers", {}, adminToken)) as { users: Array<{ name: string }> };
    expect(users.users.map((u) => u.name)).toEqual(["alice"]);
    const keys = ok(await callApi(second, "UserService/ListSshKeys", { user: "alice" }, adminToken)) as { keys: Array<{ fingerprint: string }> };
    expect(keys.keys.map((k) => k.fingerprint)).toEqual([parsePublicKey(key.publicKey).fingerprint]);
    const ws = ok(await callApi(second, "WorkspaceService/GetWorkspace", { name: "keep" }, access.token)) as { workspace: { owner: string; variableNames: string[] } };
    expect(ws.workspace.owner).toBe("alice");
    expect(ws.workspace.variableNames).toEqual(["API_KEY"]);
    // The variable still opens (the generated server secret was kept): a restarted workload gets it.
    ok(await callApi(second, "WorkspaceService/RestartWorkspace", { name: "keep" }, access.token));
    await eventually(async () => (await through(second, "keep", port, access.token)).body.toString() === "key=v4lue-kept", 20_000, "the restarted workload");
  });

  it("loses no acknowledged write when the server is killed with SIGKILL in the middle of many concurrent API calls", async () => {
    const dataDir = testDataDir();
    const first = await server({ WARREN_DATA_DIR: dataDir });
    const acknowledged: string[] = [];
    const killAfter = 40;
    let next = 0;
    let cutOff = 0;
    // Twenty clients keep writing until the kill lands, so it always cuts calls in flight (a
    // fixed batch of 150 could all be answered before the signal arrived on a quiet machine).
    const client = async () => {
      while (first.proc.child.exitCode === null && first.proc.child.signalCode === null) {
        const name = `user-${next++}`;
        try {
          const res = await callApi(first, "UserService/CreateUser", { name });
          if (res.status !== 200) continue;
          acknowledged.push(name);
          if (acknowledged.length === killAfter) first.proc.kill("SIGKILL");
        } catch {
          // Cut off by the kill: not acknowledged, may or may not be stored.
          cutOff++;
          return;
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, client));
    await first.proc.exited;
    expect(acknowledged.length).toBeGreaterThanOrEqual(killAfter);
    expect(cutOff).toBeGreaterThan(0);

    const second = await server({ WARREN_DATA_DIR: dataDir });
    const users = ok(await callApi(second, "UserService/ListUsers", {})) as { users: Array<{ name: string }> };
    const stored = new Set(users.users.map((u) => u.name));
    expect(acknowledged.filter((name) => !stored.has(name))).toEqual([]);
  });
});

describe("the data directory: lock, schema versions, corruption", () => {
  it("refuses a second server on the same data directory, naming it", async () => {
    const dataDir = testDataDir();
    await server({ WARREN_DATA_DIR: dataDir });
    const second = await runServer([], { WARREN_DATA_DIR: dataDir, WARREN_HTTP_ADDR: "127.0.0.1:0", WARREN_AGENT_ADDR: "127.0.0.1:0", WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0", WARREN_SSH_ADDR: "off" });
    expect(second.code).toBe(2);
    expect(second.stderr.trim()).toBe(
      `warren-server: another warren-server is using the data directory ${dataDir} (it holds ${join(dataDir, "server.lock")}); stop it, or give this server its own WARREN_DATA_DIR`,
    );
  });

  it("migrates a data directory of the previous layout (SSH host key only) and keeps its host key", async () => {
    const dataDir = testDataDir();
    const pair = generateEd25519KeyPair("warren-server");
    writeFileSync(join(dataDir, "ssh_host_ed25519_key"), pair.privateKey, { mode: 0o600 });
    writeFileSync(join(dataDir, "ssh_host_ed25519_key.pub"), `${pair.publicKey}\n`);
    const s = await server({ WARREN_DATA_DIR: dataDir, WARREN_LOG_LEVEL: "info" });
    const migrated = await s.proc.waitFor((l) => l.msg === "migrated the data directory to the current store schema");
    expect([migrated["from"], migrated["to"]]).toEqual([0, 1]);
    const ready = await s.proc.waitFor((l) => l.msg === "warren server ready");
    expect(ready["sshHostKey"]).toBe(parsePublicKey(pair.publicKey).fingerprint);
    ok(await callApi(s, "UserService/CreateUser", { name: "after-migration" }));
    await s.stop();
    const again = await server({ WARREN_DATA_DIR: dataDir, WARREN_LOG_LEVEL: "info" });
    expect(again.proc.lines.some((l) => l.msg === "migrated the data directory to the current store schema")).toBe(false);
    const users = ok(await callApi(again, "UserService/ListUsers", {})) as { users: Array<{ name: string }> };
    expect(users.users.map((u) => u.name)).toEqual(["after-migration"]);
  });

  it("refuses a data directory written by a newer server, naming both schema versions", async () => {
    const dataDir = testDataDir();
    const store = await EmbeddedStore.open({ path: join(dataDir, "store"), dataDir });
    await store.setSchemaVersion(2);
    await store.close();
    const res = await runServer([], { WARREN_DATA_DIR: dataDir, WARREN_SSH_ADDR: "off" });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(new RegExp(`^warren-server: the data directory ${dataDir} holds store schema version 2, written by a newer warren-server; this one \\(.+\\) reads schema version 1 at most`));
  });

  it("stops at start with one line naming a corrupt store file", async () => {
    const dataDir = testDataDir();
    mkdirSync(join(dataDir, "store"));
    writeFileSync(join(dataDir, "store", "data.mdb"), Buffer.alloc(64 * 1024, "garbage "));
    const res = await runServer([], { WARREN_DATA_DIR: dataDir, WARREN_SSH_ADDR: "off" });
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^warren-server: the store ${join(dataDir, "store", "data.mdb")} is corrupt or unreadable \\(not an LMDB store`));
  });

  it("stops at start with one line naming an unreadable store file", async () => {
    const dataDir = testDataDir();
    // A directory where the file should be: no permission trick works for root.
    mkdirSync(join(dataDir, "store", "data.mdb"), { recursive: true });
    const res = await runServer([], { WARREN_DATA_DIR: dataDir, WARREN_SSH_ADDR: "off" });
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(`warren-server: cannot read the store ${join(dataDir, "store", "data.mdb")}: EISDIR\n`);
  });

  it("keeps WARREN_STORE=memory for tests only, saying so", async () => {
    const dataDir = testDataDir();
    const s = await server({ WARREN_DATA_DIR: dataDir, WARREN_STORE: "memory" });
    await s.proc.waitFor((l) => /WARREN_STORE=memory: every user, token and workspace is lost/.test(String(l.msg)));
    expect(() => statSync(join(dataDir, "store"))).toThrow();
  });
});

describe.skipIf(!IS_ROOT)("a full disk (a small tmpfs as the data directory)", () => {
  const mount = join(testDataDir(), "small");
  afterAll(() => {
    spawnSync("umount", [mount]);
  });

  it("answers API writes unavailable naming the data directory while tunnels keep serving, and recovers when space returns", async () => {
    mkdirSync(mount);
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mount], { encoding: "utf8" });
    expect(mounted.status, mounted.stderr).toBe(0);
    const dataDir = join(mount, "data");
    const s = await server({ WARREN_DATA_DIR: dataDir });
    const web = await app();
    const created = ok(await callApi(s, "WorkspaceService/CreateWorkspace", { name: "full", ports: [{ port: web.port }] })) as { agentToken: string };
    await agent(s, created.agentToken);
    await eventually(async () => (await through(s, "full", web.port, s.adminToken)).status === 200, 10_000, "the tunnel");

    // Fill the disk: writes go until ENOSPC.
    const filler = join(mount, "filler");
    try {
      writeFileSync(filler, Buffer.alloc(4 << 20));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    }
    let refused: { status: number; body: { code?: string; message?: string } } | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await callApi<{ code?: string; message?: string }>(s, "UserService/CreateUser", { name: `full-${i}` });
      if (res.status !== 200) refused = res;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.body.code).toBe("unavailable");
    expect(refused?.body.message).toContain(`cannot write to the data directory ${dataDir}`);
    // The data path does not need the disk.
    const served = await through(s, "full", web.port, s.adminToken, "/still");
    expect(served.status).toBe(200);
    expect(served.body.toString()).toBe("hello from /still");

    rmSync(filler);
    ok(await callApi(s, "UserService/CreateUser", { name: "after-space-returned" }));
    const users = ok(await callApi(s, "UserService/ListUsers", {})) as { users: Array<{ name: string }> };
    expect(users.users.map((u) => u.name)).toContain("after-space-returned");
  });
});

describe("backup, restore and moving to a cluster", () => {
  let redis: RedisHandle | undefined;
  afterAll(async () => {
    await redis?.stop();
  });

  it("backs up a running embedded server, restores into Redis, and a cluster of two serves the same workspaces and access tokens", async () => {
    const dataDir = testDataDir();
    const single = await server({ WARREN_DATA_DIR: dataDir, WARREN_SECRET_KEY: SECRET_KEY });
    ok(await callApi(single, "UserService/CreateUser", { name: "bob" }));
    const access = ok(await callApi(single, "UserService/CreateAccessToken", { user: "bob", ttlSeconds: 3600 })) as { token: string };
    const web = await app();
    const created = ok(
      await callApi(single, "WorkspaceService/CreateWorkspace", { name: "moved", ports: [{ port: web.port }], variables: [{ name: "SECRET_THING", value: "pl4intext-never-in-backup" }] }, access.token),
    ) as { agentToken: string };

    // While the server runs.
    const backup = await runServer(["backup"], { WARREN_DATA_DIR: dataDir });
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stderr).toMatch(/^warren-server: backed up \d+ records from the embedded store in /);
    const file = backup.stdout;
    expect(file.split("\n")[0]).toContain('"format":"warren-backup"');
    // Tokens hashed, variables sealed: neither the access token nor the value is in the file.
    expect(file).toContain('"kind":"workspace"');
    expect(file).not.toContain(access.token);
    expect(file).not.toContain(created.agentToken);
    expect(file).not.toContain("pl4intext-never-in-backup");
    await single.stop();

    redis = await startRedis();
    const clusterEnv = { WARREN_REDIS_URL: redis.url, WARREN_CLUSTER_SECRET: CLUSTER_SECRET };
    const restored = await runServer(["restore"], clusterEnv, file);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toMatch(/^warren-server: restored \d+ records into Redis at /);
    const again = await runServer(["restore"], clusterEnv, file);
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe("warren-server restore: the store already holds records; restore --force replaces them with the backup's");

    const [a, b] = await startCluster(redis, ["moved-a", "moved-b"], { WARREN_SECRET_KEY: SECRET_KEY });
    running.push(a!, b!);
    for (const s of [a!, b!]) {
      const list = ok(await callApi(s, "WorkspaceService/ListWorkspaces", {}, access.token)) as { workspaces: Array<{ name: string; owner: string }> };
      expect(list.workspaces.map((w) => [w.name, w.owner])).toEqual([["moved", "bob"]]);
    }
    // The agent's old token connects to one server; the other serves the workspace with bob's old token.
    await agent(a!, created.agentToken);
    await eventually(async () => (await through(b!, "moved", web.port, access.token, "/x")).body.toString() === "hello from /x", 15_000, "the moved workspace");
  });

  it("refuses to restore into the embedded store of a running server", async () => {
    const dataDir = testDataDir();
    await server({ WARREN_DATA_DIR: dataDir });
    const res = await runServer(["restore"], { WARREN_DATA_DIR: dataDir }, '{"format":"warren-backup","formatVersion":1,"schemaVersion":1}\n');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`another warren-server is using the data directory ${dataDir}`);
  });
});

describe("Redis as the system of record", () => {
  const redises: RedisHandle[] = [];
  afterAll(async () => {
    for (const r of redises) await r.stop();
  });

  it("warns loudly at start when the cluster's Redis does not persist, and not when it keeps an AOF", async () => {
    const volatile = await startRedis();
    redises.push(volatile);
    const s = await startClusterServer(volatile, "no-persistence");
    running.push(s);
    const warning = await s.proc.waitFor((l) => /the cluster's Redis does not persist/.test(String(l.msg)));
    expect(warning.level).toBe("error");
    expect(String(warning.msg)).toContain("every workspace, user and access token vanishes when Redis restarts");

    const durable = await startRedis(undefined, ["--appendonly", "yes"]);
    redises.push(durable);
    const t = await startClusterServer(durable, "aof");
    running.push(t);
    await t.proc.waitFor((l) => l.msg === "the cluster's Redis persists (AOF)");
    expect(t.proc.lines.some((l) => /does not persist/.test(String(l.msg)))).toBe(false);
  });
});
