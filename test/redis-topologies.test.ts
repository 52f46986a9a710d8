import { afterAll, describe, expect, it } from "vitest";
import { RedisConnection } from "../server/cluster/redis-connection.js";
import { RedisPresence } from "../server/cluster/redis-presence.js";
import { parseRedisUrl } from "../server/cluster/redis-url.js";
import { RedisStore } from "../server/store/redis-store.js";
import { createLogger } from "../shared/logger.js";
import { startApp, type App } from "./harness/apps.js";
import { startCluster, startRedis, startRedisCluster, startRedisSentinel } from "./harness/cluster.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, workspaceHost, type AgentHandle } from "./harness/warren.js";

const log = createLogger({ name: "topologies-test", level: "silent" });
const cleanups: Array<() => Promise<void>> = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe("Redis behind Sentinel and Redis Cluster", () => {
  it("redis+sentinel:// finds the master through Sentinel: store and presence work", async () => {
    const master = await startRedis();
    cleanups.push(() => master.stop());
    const sentinel = await startRedisSentinel(master);
    cleanups.push(() => sentinel.stop());
    const redis = new RedisConnection({ target: parseRedisUrl(sentinel.url), prefix: "warren", log });
    cleanups.push(() => redis.close());
    await redis.waitUntilReady();
    const store = new RedisStore({ redis });
    await store.createWorkspace({ name: "w", ports: [], createdAt: 0, agentTokenId: "t", agentTokenExpiresAt: 0 });
    expect((await store.listWorkspaces()).map((w) => w.name)).toEqual(["w"]);
    // The data is on the master that Sentinel named.
    expect(master.cli("EXISTS", "warren:workspace:w")).toBe("1");
    const held = new Set(["w"]);
    const presence = new RedisPresence({
      redis,
      serverId: "s",
      held: { heldWorkspaces: () => held, holds: (x) => held.has(x), isConnected: (x) => held.has(x) },
      log,
    });
    await presence.start("127.0.0.1:1");
    cleanups.push(() => presence.stop());
    expect(master.cli("HEXISTS", "warren:presence:w", "s")).toBe("1");
  });

  describe("redis+cluster://", () => {
    let agent: AgentHandle | undefined;
    let app: App | undefined;

    afterAll(async () => {
      await agent?.stop();
      await app?.close();
    });

    it("two servers on a Redis Cluster: shared store, presence, forwarding and revocation", async () => {
      const redisCluster = await startRedisCluster();
      cleanups.push(() => redisCluster.stop());
      const [s1, s2] = await startCluster({ url: redisCluster.url }, ["s1", "s2"]);
      cleanups.push(() => s1!.stop(), () => s2!.stop());
      app = await startApp((_req, res) => res.end("through the cluster"));
      const ws = await createWorkspace(s1!, "rc", [app.port]);
      agent = await startAgent(s2!, ws.agentToken);
      await eventually(async () => {
        const res = await httpRequest({ port: s1!.httpPort, host: workspaceHost("rc", app!.port), headers: { "x-warren-token": s1!.adminToken } });
        return res.status === 200 && res.body.toString() === "through the cluster";
      }, 5000, "rc through s1");
      // Every key shares one hash slot: all on the node that owns {warren}.
      const slot = redisCluster.nodes[0]!.cli("CLUSTER", "KEYSLOT", "{warren}:x");
      const owner = redisCluster.nodes.find((n) => Number(n.cli("CLUSTER", "COUNTKEYSINSLOT", slot)) > 0)!;
      expect(owner.cli("EXISTS", "{warren}:workspace:rc")).toBe("1");
      expect(owner.cli("HEXISTS", `{warren}:presence:${ws.id}`, "s2")).toBe("1");
      // Pub/sub crosses the cluster: deleting on s1 drops the agent on s2.
      expect((await callApi(s1!, "WorkspaceService/DeleteWorkspace", { name: "rc" })).status).toBe(200);
      expect((await agent.proc.exited).code).toBe(1);
    });
  });
});
