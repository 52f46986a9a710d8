import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { RedisConnection } from "../server/cluster/redis-connection.js";
import { RedisPresence, type RedisPresenceOptions } from "../server/cluster/redis-presence.js";
import { parseRedisUrl } from "../server/cluster/redis-url.js";
import { createLogger } from "../shared/logger.js";
import { startRedis, type RedisHandle } from "./harness/cluster.js";
import { eventually } from "./harness/warren.js";
import { FakeRegistry } from "./harness/fake-registry.js";


interface Node {
  readonly id: string;
  readonly redis: RedisConnection;
  readonly registry: FakeRegistry;
  readonly presence: RedisPresence;
  connect(workspace: string): void;
  disconnect(workspace: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = createLogger({ name: "presence-test", level: "silent" });

describe("Redis presence", () => {
  let redis: RedisHandle;
  const nodes: Node[] = [];

  async function node(id: string, options: Partial<RedisPresenceOptions> = {}): Promise<Node> {
    const connection = new RedisConnection({ target: parseRedisUrl(redis.url), prefix: "warren", log });
    await connection.waitUntilReady();
    const registry = new FakeRegistry();
    const presence = new RedisPresence({ redis: connection, serverId: id, held: registry, log, ...options });
    await presence.start(`127.0.0.1:1${id.length}`);
    const n: Node = {
      id,
      redis: connection,
      registry,
      presence,
      connect: (w) => {
        const first = !registry.set.has(w);
        registry.set.add(w);
        if (first) presence.workspaceChanged(w, true);
      },
      disconnect: (w) => {
        if (registry.set.delete(w)) presence.workspaceChanged(w, false);
      },
    };
    nodes.push(n);
    return n;
  }

  /** Simulates kill -9: the process's timers and connection die, its records stay. */
  async function crash(n: Node): Promise<void> {
    await n.redis.close();
  }

  const recorded = (w: string, id: string) => redis.cli("HEXISTS", `warren:presence:${w}`, id) === "1";
  const calls = (command: string) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(redis.cli("INFO", "commandstats"))?.[1] ?? 0);

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.presence.stop();
      await n.redis.close();
    }
    redis.cli("FLUSHALL");
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it("records a burst of first connections at once, in one round trip", async () => {
    const a = await node("a");
    const pipelines = vi.spyOn(a.redis, "pipeline");
    for (let i = 0; i < 100; i++) a.connect(`w${i}`);
    await eventually(() => recorded("w99", "a"), 2000, "w99 recorded");
    expect(recorded("w0", "a")).toBe(true);
    expect(pipelines.mock.calls.filter(([op]) => op === "presence write")).toHaveLength(1);
    expect(redis.cli("SCARD", "warren:held:a")).toBe("100");
  });

  it("refreshes the heartbeat and every record in one pipeline per tick", async () => {
    const a = await node("a", { refreshIntervalMs: 200 });
    for (let i = 0; i < 300; i++) a.connect(`w${i}`);
    await eventually(() => recorded("w299", "a"), 2000, "w299 recorded");
    const before = Number(redis.cli("HGET", "warren:presence:w150", "a"));
    const pipelines = vi.spyOn(a.redis, "pipeline");
    await sleep(1000);
    const refreshes = pipelines.mock.calls.filter(([op]) => op === "presence refresh").length;
    expect(refreshes).toBeGreaterThanOrEqual(3);
    expect(refreshes).toBeLessThanOrEqual(7);
    // Nothing else went to Redis meanwhile: no per-agent round trips.
    expect(pipelines.mock.calls.length).toBe(refreshes);
    expect(Number(redis.cli("HGET", "warren:presence:w150", "a"))).toBeGreaterThan(before);
    expect(Number(redis.cli("PTTL", "warren:presence:w0"))).toBeGreaterThan(0);
    expect(JSON.parse(redis.cli("HGET", "warren:servers", "a"))).toMatchObject({ address: "127.0.0.1:11" });
  });

  it("unregisters only after the linger; a flap within it costs Redis nothing", async () => {
    const a = await node("a", { lingerMs: 400 });
    a.connect("w");
    await eventually(() => recorded("w", "a"), 2000, "w recorded");
    const hdel = calls("hdel");
    const hset = calls("hset");
    for (let i = 0; i < 5; i++) {
      a.disconnect("w");
      await sleep(50);
      a.connect("w");
      await sleep(20);
    }
    await sleep(600);
    expect(recorded("w", "a")).toBe(true);
    expect(calls("hdel")).toBe(hdel);
    expect(calls("hset")).toBe(hset);
    a.disconnect("w");
    await sleep(200);
    expect(recorded("w", "a")).toBe(true);
    await eventually(() => !recorded("w", "a"), 2000, "w unregistered");
    expect(redis.cli("SISMEMBER", "warren:held:a", "w")).toBe("0");
  });

  it("a workspace that goes and comes back before its first write is recorded at once, not at the next refresh", async () => {
    const a = await node("a", { lingerMs: 5000, refreshIntervalMs: 60_000 });
    // The agent is welcomed and killed before the registration is flushed, then reconnects.
    a.connect("early");
    a.disconnect("early");
    a.connect("early");
    await eventually(() => recorded("early", "a"), 2000, "early recorded");
  });

  it("reconnect flaps never leave a live tunnel unregistered, nor a gone one registered", async () => {
    const a = await node("a", { lingerMs: 2 });
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 300; i++) {
        if (random() < 0.5) a.connect("flap");
        else a.disconnect("flap");
        if (random() < 0.3) await sleep(Math.floor(random() * 15));
      }
      // End connected in round 0, gone in round 1.
      if (round === 0) a.connect("flap");
      else a.disconnect("flap");
      await sleep(300);
      expect(recorded("flap", "a"), `round ${round}`).toBe(round === 0);
    }
  });

  it("an unregister stuck in a stopped Redis cannot land after the reconnect that follows it", async () => {
    const a = await node("a", { lingerMs: 50, refreshIntervalMs: 500 });
    a.connect("w");
    await eventually(() => recorded("w", "a"), 2000, "w recorded");
    a.disconnect("w");
    await sleep(20);
    redis.pause();
    try {
      await sleep(80); // the HDEL is sent to the stopped Redis
      a.connect("w"); // the agent is back
      await sleep(300);
    } finally {
      redis.resume();
    }
    await eventually(() => recorded("w", "a"), 5000, "w recorded again");
    await sleep(1200);
    expect(recorded("w", "a")).toBe(true);
  });

  it("lookups are merged, cached, freshest first, and leave out dead servers", async () => {
    const a = await node("a");
    const b = await node("b");
    const c = await node("c");
    b.connect("w");
    await eventually(() => recorded("w", "b"), 2000, "b records w");
    await sleep(5);
    c.connect("w");
    await eventually(() => recorded("w", "c"), 2000, "c records w");
    // A record whose server has no live heartbeat is left out.
    redis.cli("HSET", "warren:servers", "dead", JSON.stringify({ address: "127.0.0.1:1", expiresAt: Date.now() - 1000, startedAt: 0 }));
    redis.cli("HSET", "warren:presence:w", "dead", String(Date.now() + 60_000));
    const pipelines = vi.spyOn(a.redis, "pipeline");
    const answers = await Promise.all(Array.from({ length: 20 }, () => a.presence.holders("w")));
    expect(pipelines).toHaveBeenCalledTimes(1);
    for (const holders of answers) expect(holders.map((h) => h.serverId)).toEqual(["c", "b"]);
    expect(answers[0]![0]!.address).toBe("127.0.0.1:11");
    await a.presence.holders("w");
    expect(pipelines).toHaveBeenCalledTimes(1);
    // A holder that said "not here" is left out; an unreachable one until it heartbeats again.
    a.presence.forget("w", answers[0]![0]!, "not-connected");
    expect((await a.presence.holders("w")).map((h) => h.serverId)).toEqual(["b"]);
    expect(pipelines).toHaveBeenCalledTimes(2);
    expect(await a.presence.isConnected("w")).toBe(true);
    expect(await a.presence.isConnected("nowhere")).toBe(false);
  });

  it("a lookup never waits long on a stopped Redis, and works again when it returns", async () => {
    const a = await node("a", { lookupTimeoutMs: 300 });
    const b = await node("b");
    b.connect("w");
    await eventually(() => recorded("w", "b"), 2000, "b records w");
    redis.pause();
    try {
      let started = Date.now();
      await expect(a.presence.holders("w")).rejects.toThrow(/Redis/);
      expect(Date.now() - started).toBeLessThan(1000);
      started = Date.now();
      await expect(a.presence.holders("other")).rejects.toThrow(/unreachable/);
      expect(Date.now() - started).toBeLessThan(50);
      expect(await a.presence.isConnected("w")).toBe(false);
    } finally {
      redis.resume();
    }
    await eventually(async () => (await a.presence.holders("w").catch(() => [])).length === 1, 5000, "lookups work again");
  });

  it("garbage-collects the records of a dead server", async () => {
    const a = await node("a");
    const b = await node("b", { ttlMs: 300, refreshIntervalMs: 100 });
    b.connect("w1");
    b.connect("w2");
    await eventually(() => recorded("w2", "b"), 2000, "b records w2");
    await crash(b);
    expect(await a.presence.collectGarbage()).toBe(0);
    await sleep(400);
    expect(await a.presence.collectGarbage()).toBe(1);
    expect(recorded("w1", "b")).toBe(false);
    expect(recorded("w2", "b")).toBe(false);
    expect(redis.cli("HEXISTS", "warren:servers", "b")).toBe("0");
    expect(redis.cli("EXISTS", "warren:held:b")).toBe("0");
    expect(redis.cli("HEXISTS", "warren:servers", "a")).toBe("1");
  });

  it("a server restarted under the same id drops the records of its earlier run; stop() removes its own", async () => {
    const b = await node("b");
    b.connect("w");
    await eventually(() => recorded("w", "b"), 2000, "b records w");
    await crash(b);
    nodes.splice(nodes.indexOf(b), 1);
    const again = await node("b");
    expect(recorded("w", "b")).toBe(false);
    again.connect("x");
    await eventually(() => recorded("x", "b"), 2000, "b records x");
    await again.presence.stop();
    expect(recorded("x", "b")).toBe(false);
    expect(redis.cli("HEXISTS", "warren:servers", "b")).toBe("0");
  });
});
