import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary } from "@bufbuild/protobuf";
import { DialRequestSchema, DialResponseSchema, ForwardDialStatus } from "../shared/gen/warren/v1/private_pb.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { encodeGrpcMessage } from "../shared/grpc-message.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { freePort, listen, startApp, type App } from "./harness/apps.js";
import { CLUSTER_SECRET, startCluster, startClusterServer, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, upgradeAndCount, workspaceHost, type AgentHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

/** An app that says which workspace it belongs to, so a misrouted request shows. */
async function namedApp(name: string): Promise<App> {
  return startApp((req, res) => res.end(JSON.stringify({ workspace: name, path: req.url })), { webSocketEcho: true });
}

async function get(server: ClusterServerHandle, workspace: string, port: number, path = "/") {
  return httpRequest({ port: server.httpPort, host: workspaceHost(workspace, port), path, headers: { "x-warren-token": server.adminToken } });
}

function metric(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function metrics(server: ClusterServerHandle): Promise<string> {
  const res = await httpRequest({ port: server.observabilityPort, host: "127.0.0.1", path: "/metrics" });
  return res.body.toString();
}

describe("cluster: three servers, one Redis", () => {
  let redis: RedisHandle;
  let servers: ClusterServerHandle[];
  const apps = new Map<string, App>();
  const agents: AgentHandle[] = [];
  let deadPort: number;
  const names = ["ws-a", "ws-b", "ws-c"];

  beforeAll(async () => {
    redis = await startRedis();
    servers = await startCluster(redis, ["s1", "s2", "s3"]);
    deadPort = await freePort();
    // Each workspace's agent connects to a different server; workspaces are created on s1 only.
    for (const [i, name] of names.entries()) {
      const app = await namedApp(name);
      apps.set(name, app);
      const ws = await createWorkspace(servers[0]!, name, [app.port, deadPort]);
      agents.push(await startAgent(servers[i]!, ws.agentToken));
    }
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all((servers ?? []).map((s) => s.stop()));
    for (const app of apps.values()) await app.close();
    await redis?.stop();
  });

  it("requests through every server reach every workspace (HTTP)", async () => {
    for (const server of servers) {
      for (const name of names) {
        const port = apps.get(name)!.port;
        for (let i = 0; i < 3; i++) {
          const res = await get(server, name, port, `/from-${server.id}/${i}`);
          expect(res.status, `${server.id} -> ${name}: ${res.body}`).toBe(200);
          expect(JSON.parse(res.body.toString())).toEqual({ workspace: name, path: `/from-${server.id}/${i}` });
        }
      }
    }
    // s1 holds ws-a only: it forwarded the others, and s2, s3 served forwarded dials.
    const m1 = await metrics(servers[0]!);
    expect(metric(m1, "warren_forwards_total", 'outcome="ok"')).toBeGreaterThanOrEqual(2);
    expect(metric(await metrics(servers[1]!), "warren_forwarded_dials_total", 'outcome="ok"')).toBeGreaterThanOrEqual(1);
  });

  it("keeps forwarded connections alive: many requests on few tunnel streams", async () => {
    const { Agent, request } = await import("undici");
    const dispatcher = new Agent({ connections: 2 });
    const server = servers[0]!;
    const port = apps.get("ws-c")!.port;
    const before = apps.get("ws-c")!.connections;
    for (let i = 0; i < 20; i++) {
      const res = await request(`http://127.0.0.1:${server.httpPort}/k${i}`, {
        dispatcher,
        headers: { host: workspaceHost("ws-c", port), "x-warren-token": server.adminToken },
      });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ workspace: "ws-c", path: `/k${i}` });
    }
    await dispatcher.close();
    expect(apps.get("ws-c")!.connections - before).toBeLessThanOrEqual(3);
  });

  it("WebSockets through every server reach every workspace", async () => {
    for (const server of servers) {
      for (const name of names) {
        const port = apps.get(name)!.port;
        const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, {
          headers: { host: workspaceHost(name, port), "x-warren-token": server.adminToken },
        });
        const received: string[] = [];
        await new Promise<void>((resolve, reject) => {
          ws.on("error", reject);
          ws.on("message", (data: Buffer) => {
            received.push(data.toString());
            if (received.length === 1) ws.send(`ping ${server.id} ${name}`);
            else resolve();
          });
        });
        ws.close();
        expect(JSON.parse(received[0]!)).toEqual({ hello: workspaceHost(name, port) });
        expect(received[1]).toBe(`ping ${server.id} ${name}`);
      }
    }
  });

  it("carries bulk bytes both ways and a half-close across servers intact", async () => {
    // An app that hashes uploads, streams deterministic downloads, and answers a raw upgrade
    // with the byte count once the client half-closes.
    const bulk = http.createServer((req, res) => {
      if (req.method === "POST") {
        const hash = createHash("sha256");
        req.on("data", (c: Buffer) => hash.update(c));
        req.on("end", () => res.end(hash.digest("hex")));
        return;
      }
      const block = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < block.length; i++) block[i] = i % 251;
      let left = 16;
      res.writeHead(200, { "content-length": String(16 * block.length) });
      const pump = () => {
        while (left > 0) {
          left--;
          if (!res.write(block)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    });
    bulk.on("upgrade", (_req, socket: net.Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: count\r\nConnection: Upgrade\r\n\r\n");
      let n = 0;
      socket.on("data", (c: Buffer) => (n += c.length));
      socket.on("end", () => socket.end(`received ${n} bytes`));
    });
    const port = await listen(bulk);
    try {
      const ws = await createWorkspace(servers[0]!, "ws-bulk", [port]);
      agents.push(await startAgent(servers[1]!, ws.agentToken));
      const upload = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < upload.length; i++) upload[i] = (i * 7) % 256;
      const expected = createHash("sha256").update(upload).digest("hex");
      const block = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < block.length; i++) block[i] = i % 251;
      const download = createHash("sha256");
      for (let i = 0; i < 16; i++) download.update(block);
      const downloadHash = download.digest("hex");
      for (const server of [servers[0]!, servers[2]!]) {
        await eventually(async () => (await get(server, "ws-bulk", port)).status === 200, 3000, "ws-bulk reachable");
        const up = await httpRequest({ port: server.httpPort, host: workspaceHost("ws-bulk", port), method: "POST", headers: { "x-warren-token": server.adminToken }, body: upload });
        expect(up.status).toBe(200);
        expect(up.body.toString()).toBe(expected);
        const down = await get(server, "ws-bulk", port);
        expect(down.body.length).toBe(16 * 1024 * 1024);
        expect(createHash("sha256").update(down.body).digest("hex")).toBe(downloadHash);
        const text = await upgradeAndCount(server, workspaceHost("ws-bulk", port), 300_000);
        expect(text).toMatch(/^HTTP\/1.1 101/);
        expect(text.endsWith("received 300000 bytes")).toBe(true);
      }
    } finally {
      bulk.close();
      bulk.closeAllConnections();
    }
  });

  it("a dial error on the holding server comes back with its code and message", async () => {
    // Nothing listens on deadPort inside ws-b, which s2 holds; ask s1 and s3.
    for (const server of [servers[0]!, servers[2]!]) {
      const res = await get(server, "ws-b", deadPort);
      expect(res.status).toBe(502);
      expect(res.body.toString()).toMatch(new RegExp(`nothing is listening on port ${deadPort} in workspace "ws-b"`));
    }
    // A workspace with no agent anywhere: a fast 503 that names it.
    await createWorkspace(servers[0]!, "ws-none", [deadPort]);
    const started = Date.now();
    const res = await get(servers[1]!, "ws-none", deadPort);
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe('workspace "ws-none" is not connected\n');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("the API reports an agent connected to any server", async () => {
    const res = await callApi<{ workspace: { connected?: boolean } }>(servers[0]!, "WorkspaceService/GetWorkspace", { name: "ws-c" });
    expect(res.status).toBe(200);
    expect(res.body.workspace.connected).toBe(true);
    const none = await callApi<{ workspace: { connected?: boolean } }>(servers[0]!, "WorkspaceService/GetWorkspace", { name: "ws-none" });
    expect(none.body.workspace.connected ?? false).toBe(false);
  });

  it("refuses a private call with a wrong or missing cluster secret", async () => {
    const server = servers[1]!;
    const idOf = async (name: string) => (await callApi<{ workspace: { id: string } }>(server, "WorkspaceService/GetWorkspace", { name })).body.workspace.id;
    const ids: Record<string, string> = { "ws-b": await idOf("ws-b"), "ws-c": await idOf("ws-c") };
    const call = (authorization: string | undefined, workspace = "ws-b", workspaceId: string | undefined = ids[workspace]) =>
      new Promise<{ status: string | undefined; message: string | undefined; body: Buffer }>((resolve, reject) => {
        const session = http2.connect(`http://127.0.0.1:${server.privatePort}`);
        session.on("error", reject);
        const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": "/warren.v1.PrivateService/Dial", "content-type": "application/grpc" };
        if (authorization) headers["authorization"] = authorization;
        const stream = session.request(headers);
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let message: string | undefined;
        stream.on("response", (h) => {
          status = h["grpc-status"] as string | undefined;
          message = h["grpc-message"] as string | undefined;
        });
        stream.on("trailers", (h) => {
          status ??= h["grpc-status"] as string | undefined;
        });
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("close", () => {
          session.close();
          resolve({ status, message, body: Buffer.concat(chunks) });
        });
        // A dial for ws-b, which s2 holds: only the secret stands in the way.
        stream.end(encodeGrpcMessage(DialRequestSchema, create(DialRequestSchema, { msg: { case: "dial", value: { workspace, workspaceId, port: 80 } } })));
      });
    const wrong = await call("Bearer wrong-secret-0123456789abcdef");
    expect(wrong.status).toBe("16");
    expect(decodeURIComponent(wrong.message ?? "")).toMatch(/cluster secret/);
    expect(wrong.body.length).toBe(0);
    const missing = await call(undefined);
    expect(missing.status).toBe("16");
    const answer = (body: Buffer) => fromBinary(DialResponseSchema, new GrpcFrameDecoder(1 << 20).push(body)[0]!);
    // The right secret gets s2's answer: its agent refuses port 80, which ws-b does not expose.
    const right = await call(`Bearer ${CLUSTER_SECRET}`);
    expect(right.status).toBe("0");
    expect(answer(right.body).msg).toMatchObject({ case: "dialResult", value: { status: ForwardDialStatus.PORT_NOT_ALLOWED } });
    // A forwarded dial is never forwarded again: s2 does not hold ws-c (s3 does) and says so.
    const elsewhere = await call(`Bearer ${CLUSTER_SECRET}`, "ws-c");
    expect(answer(elsewhere.body).msg).toMatchObject({
      case: "dialResult",
      value: { status: ForwardDialStatus.NOT_CONNECTED, message: 'workspace "ws-c" is not connected to server s2' },
    });
    // Issue 12, incarnations: a dial naming ws-b with another incarnation's id never reaches
    // ws-b's agent; one without an id (an older server) is refused with a message that says why.
    const otherIncarnation = await call(`Bearer ${CLUSTER_SECRET}`, "ws-b", "ws_0123456789abcdef0123456789abcdef");
    expect(answer(otherIncarnation.body).msg).toMatchObject({
      case: "dialResult",
      value: { status: ForwardDialStatus.NOT_CONNECTED, message: 'workspace "ws-b" is not connected to server s2' },
    });
    const noId = await call(`Bearer ${CLUSTER_SECRET}`, "ws-b", "");
    expect(answer(noId.body).msg).toMatchObject({ case: "dialResult", value: { message: expect.stringMatching(/without its id; upgrade every server/) } });
  });

  it("a stale presence record (its server gone) costs at most one failed try", async () => {
    const app = await namedApp("ws-stale");
    apps.set("ws-stale", app);
    const ws = await createWorkspace(servers[0]!, "ws-stale", [app.port]);
    const presenceKey = `warren:presence:${ws.id}`;
    agents.push(await startAgent(servers[2]!, ws.agentToken));
    // A ghost server that still looks alive and claims ws-stale with the freshest record.
    const ghostPort = await freePort();
    const far = Date.now() + 60_000;
    redis.cli("HSET", "warren:servers", "ghost", JSON.stringify({ address: `127.0.0.1:${ghostPort}`, expiresAt: far, startedAt: 0 }));
    redis.cli("HSET", presenceKey, "ghost", String(far));
    // And a server with no heartbeat at all: ruled out without a try.
    redis.cli("HSET", presenceKey, "vanished", String(far));
    const server = servers[0]!;
    const before = metric(await metrics(server), "warren_forwards_total", 'outcome="peer_unreachable"');
    for (let i = 0; i < 5; i++) {
      const res = await get(server, "ws-stale", app.port, `/stale-${i}`);
      expect(res.status, res.body.toString()).toBe(200);
      expect(JSON.parse(res.body.toString()).workspace).toBe("ws-stale");
      // A WebSocket is a dial of its own each time (HTTP requests may reuse a kept-alive one).
      const sock = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, { headers: { host: workspaceHost("ws-stale", app.port), "x-warren-token": server.adminToken } });
      const hello = await new Promise<string>((resolve, reject) => {
        sock.on("error", reject);
        sock.once("message", (data: Buffer) => resolve(data.toString()));
      });
      sock.close();
      expect(JSON.parse(hello)).toEqual({ hello: workspaceHost("ws-stale", app.port) });
    }
    const after = metric(await metrics(server), "warren_forwards_total", 'outcome="peer_unreachable"');
    expect(after - before).toBe(1);
    redis.cli("HDEL", presenceKey, "ghost", "vanished");
    redis.cli("HDEL", "warren:servers", "ghost");
  });

  it("keeps variables sealed in Redis: no value readable there, names shown by every server", async () => {
    const marker = "plaintext-marker-7f3a9c";
    const created = await callApi(servers[0]!, "WorkspaceService/CreateWorkspace", {
      name: "sealed",
      ports: [],
      variables: [{ name: "API_KEY", value: marker }, { name: "CONFIG", value: `key=${marker}`, file: true }],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const everything: string[] = [];
    for (const key of redis.cli("--scan", "--pattern", "*").split("\n").filter(Boolean)) {
      const type = redis.cli("TYPE", key).trim();
      const read: Record<string, string[]> = { string: ["GET", key], hash: ["HGETALL", key], set: ["SMEMBERS", key], zset: ["ZRANGE", key, "0", "-1"], list: ["LRANGE", key, "0", "-1"] };
      everything.push(key, read[type] ? redis.cli(...read[type]!) : "");
    }
    expect(everything.join("\n")).toContain("sealed");
    expect(everything.join("\n")).not.toContain(marker);
    const got = await callApi<{ workspace: { variableNames: string[] } }>(servers[2]!, "WorkspaceService/GetWorkspace", { name: "sealed" });
    expect(got.body.workspace.variableNames).toEqual(["API_KEY", "CONFIG"]);
    expect(JSON.stringify(got.body)).not.toContain(marker);
  });

  it("deleting a workspace on one server disconnects its agent on another within a second", async () => {
    const app = await namedApp("ws-del");
    apps.set("ws-del", app);
    const ws = await createWorkspace(servers[0]!, "ws-del", [app.port]);
    const agent = await startAgent(servers[2]!, ws.agentToken);
    agents.push(agent);
    // Visible cluster-wide once s3's presence write lands, a few ms after the agent's welcome.
    await eventually(async () => (await get(servers[0]!, "ws-del", app.port)).status === 200, 3000, "ws-del through s1");
    const started = Date.now();
    const res = await callApi(servers[0]!, "WorkspaceService/DeleteWorkspace", { name: "ws-del" });
    expect(res.status).toBe(200);
    const line = await servers[2]!.proc.waitFor((l) => l.msg === "disconnecting agent" && l["workspace"] === "ws-del", 5000, "s3 disconnects ws-del");
    expect(Date.parse(String(line["time"])) - started).toBeLessThan(1000);
    const exit = await agent.proc.exited;
    expect(exit.code).toBe(1);
    // s3 drops its presence record after the unregister linger.
    await eventually(() => redis.cli("HEXISTS", `warren:presence:${ws.id}`, "s3") === "0", 8000, "ws-del presence record removed");
    // Every server forgets it at once.
    for (const server of servers) expect((await get(server, "ws-del", app.port)).status).toBe(404);
  });

  it("a token revoked on one server is refused on every server at once, though they cache tokens", async () => {
    expect((await callApi(servers[0]!, "UserService/CreateUser", { name: "tina" })).status).toBe(200);
    const token = (await callApi<{ token: string; id: string }>(servers[0]!, "UserService/CreateAccessToken", { user: "tina" })).body;
    const app = await namedApp("ws-tina");
    apps.set("ws-tina", app);
    const ws = await callApi<{ agentToken: string }>(servers[0]!, "WorkspaceService/CreateWorkspace", { name: "ws-tina", ports: [{ port: app.port }] }, token.token);
    agents.push(await startAgent(servers[0]!, ws.body.agentToken));
    const asTina = (server: ClusterServerHandle) =>
      httpRequest({ port: server.httpPort, host: workspaceHost("ws-tina", app.port), headers: { "x-warren-token": token.token } });
    // Every server has now read (and cached) the token.
    for (const server of servers) await eventually(async () => (await asTina(server)).status === 200, 3000, `ws-tina through ${server.id}`);
    const started = Date.now();
    expect((await callApi(servers[1]!, "UserService/RevokeAccessToken", { id: token.id })).status).toBe(200);
    for (const server of servers) {
      await eventually(async () => (await asTina(server)).status === 401, 2000, `token refused on ${server.id}`);
    }
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("a flapping agent neither churns Redis nor loses its presence record", async () => {
    const app = await namedApp("ws-flap");
    apps.set("ws-flap", app);
    const ws = await createWorkspace(servers[0]!, "ws-flap", [app.port]);
    const hdelBefore = commandCalls(redis, "hdel");
    for (let i = 0; i < 4; i++) {
      const agent = await startAgent(servers[1]!, ws.agentToken);
      agent.proc.kill("SIGKILL");
      await agent.proc.exited;
    }
    const agent = await startAgent(servers[1]!, ws.agentToken);
    agents.push(agent);
    // Past the unregister linger and a refresh: the record must still be there.
    await new Promise((r) => setTimeout(r, 4000));
    expect(redis.cli("HEXISTS", `warren:presence:${ws.id}`, "s2")).toBe("1");
    expect(commandCalls(redis, "hdel")).toBe(hdelBefore);
    await eventually(async () => (await get(servers[2]!, "ws-flap", app.port)).status === 200, 5000, "ws-flap through s3");
  });
});

function commandCalls(redis: RedisHandle, command: string): number {
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(redis.cli("INFO", "commandstats"));
  return m ? Number(m[1]) : 0;
}

describe("rotating the cluster secret (WARREN_CLUSTER_SECRET_ACCEPTED)", () => {
  const OLD = "old-cluster-secret-0123456789";
  const NEW = "new-cluster-secret-9876543210";
  let redis: RedisHandle;
  let servers: ClusterServerHandle[] = [];
  const agents: AgentHandle[] = [];
  const apps: App[] = [];

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(servers.map((s) => s.stop()));
    for (const app of apps) await app.close();
    await redis?.stop();
  });

  it("forwards both ways between servers on either side of the switch, and refuses a secret nobody accepts", async () => {
    redis = await startRedis();
    // Mid-rollout of the switch: s1 still sends the old secret and accepts the new one; s2
    // sends the new one and accepts the old. s3 has a secret of its own.
    servers = [
      await startClusterServer(redis, "rot-1", { WARREN_CLUSTER_SECRET: OLD, WARREN_CLUSTER_SECRET_ACCEPTED: NEW }),
      await startClusterServer(redis, "rot-2", { WARREN_CLUSTER_SECRET: NEW, WARREN_CLUSTER_SECRET_ACCEPTED: OLD }),
      await startClusterServer(redis, "rot-3", { WARREN_CLUSTER_SECRET: "a-third-secret-nobody-accepts" }),
    ];
    const [s1, s2, s3] = servers as [ClusterServerHandle, ClusterServerHandle, ClusterServerHandle];
    for (const [name, holder] of [["rot-a", s1], ["rot-b", s2]] as const) {
      const app = await namedApp(name);
      apps.push(app);
      const ws = await createWorkspace(s1, name, [app.port]);
      agents.push(await startAgent(holder, ws.agentToken));
    }
    const [appA, appB] = apps as [App, App];
    // s2 -> s1 (new secret, accepted by s1) and s1 -> s2 (old secret, accepted by s2).
    await eventually(async () => (await get(s2, "rot-a", appA.port)).status === 200, 5000, "s2 to reach rot-a on s1");
    await eventually(async () => (await get(s1, "rot-b", appB.port)).status === 200, 5000, "s1 to reach rot-b on s2");
    expect(JSON.parse((await get(s2, "rot-a", appA.port)).body.toString())).toMatchObject({ workspace: "rot-a" });
    expect(JSON.parse((await get(s1, "rot-b", appB.port)).body.toString())).toMatchObject({ workspace: "rot-b" });
    // s3's secret is accepted nowhere: its forwards fail fast with 503, and nothing else breaks.
    const refused = await get(s3, "rot-a", appA.port);
    expect(refused.status).toBe(503);
    expect((await get(s2, "rot-a", appA.port)).status).toBe(200);
  });
});

describe("rotating the server secret (WARREN_SECRET_KEY_ACCEPTED)", () => {
  const OLD = "the-old-server-secret-of-32-characters-or-more";
  const NEW = "the-new-server-secret-of-32-characters-or-more";
  let redis: RedisHandle;
  const servers: ClusterServerHandle[] = [];
  const agents: AgentHandle[] = [];
  const dir = tempDir("warren-rotate-");

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(servers.map((s) => s.stop()));
    await redis?.stop();
  });

  it("variables sealed with the old secret reach the workload through a server on the new one that accepts it", async () => {
    redis = await startRedis();
    servers.push(
      await startClusterServer(redis, "key-old", { WARREN_SECRET_KEY: OLD }),
      await startClusterServer(redis, "key-new", { WARREN_SECRET_KEY: NEW, WARREN_SECRET_KEY_ACCEPTED: OLD }),
      await startClusterServer(redis, "key-only-new", { WARREN_SECRET_KEY: NEW }),
    );
    const [old, rotated, onlyNew] = servers as [ClusterServerHandle, ClusterServerHandle, ClusterServerHandle];
    const run = async (holder: ClusterServerHandle, name: string) => {
      const created = await callApi<{ agentToken: string }>(old, "WorkspaceService/CreateWorkspace", {
        name,
        ports: [],
        variables: [{ name: "API_KEY", value: `sealed-before-${name}` }],
      });
      expect(created.status).toBe(200);
      const out = join(dir, name);
      agents.push(await startAgent(holder, created.body.agentToken, { args: ["run", "--", "sh", "-c", `printf '%s' "$API_KEY" > ${out}.tmp && mv ${out}.tmp ${out}; exec sleep 60`] }));
      await eventually(() => existsSync(out), 10_000, `${name}'s workload to start`);
      return readFileSync(out, "utf8");
    };
    expect(await run(rotated, "rotated")).toBe("sealed-before-rotated");
    // Without the old secret the values stay sealed: the workload starts without them, and the
    // server says why.
    expect(await run(onlyNew, "unreadable")).toBe("");
    expect(onlyNew.proc.output()).toMatch(/cannot decrypt/);
  });
});
