import { describe, expect, it } from "vitest";
import type { ChainableCommander } from "ioredis";
import { ManualClock } from "../../shared/manual-clock.js";
import { createLogger } from "../../shared/logger.js";
import type { RedisClient } from "./redis-connection.js";
import { RedisPresence, type PresenceRedis, type PresenceSubscriber, type RedisPresenceOptions } from "./redis-presence.js";
import { FakeRegistry } from "../../test/harness/fake-registry.js";

type Command = readonly [name: string, ...args: string[]];

/**
 * The few Redis commands presence sends, on in-memory hashes and sets, with every command
 * written down in order. Runs and pipelines answer at once (no network, no timeouts).
 */
class FakeRedis implements PresenceRedis {
  available = true;
  readonly commands: Command[] = [];
  readonly hashes = new Map<string, Map<string, string>>();
  readonly sets = new Map<string, Set<string>>();
  readonly #listeners: Array<(channel: string, message: string) => void> = [];

  key(...parts: string[]): string {
    return `warren:${parts.join(":")}`;
  }

  subscriber(): PresenceSubscriber {
    const listeners = this.#listeners;
    return {
      on: (_event, listener) => listeners.push(listener),
      subscribe: () => Promise.resolve(1),
    };
  }

  /** Commands named `name` on `key`. */
  sent(name: string, key: string): Command[] {
    return this.commands.filter(([n, k]) => n === name && k === key);
  }

  async run<T>(_operation: string, fn: (client: RedisClient) => Promise<T>): Promise<T> {
    this.#mustBeUp();
    const client = { smembers: async (key: string) => this.#exec(["smembers", key]), hgetall: async (key: string) => this.#exec(["hgetall", key]) };
    return fn(client as unknown as RedisClient);
  }

  async pipeline(_operation: string, build: (p: ChainableCommander) => void): Promise<unknown[]> {
    this.#mustBeUp();
    const queued: Command[] = [];
    const p: ChainableCommander = new Proxy({} as ChainableCommander, {
      get: (_target, name: string) => (...args: unknown[]) => {
        queued.push([name, ...args.map(String)]);
        return p;
      },
    });
    build(p);
    return queued.map((c) => this.#exec(c));
  }

  #mustBeUp(): void {
    if (!this.available) throw new Error("the cluster's Redis is unreachable");
  }

  #exec(command: Command): unknown {
    this.commands.push(command);
    const [name, key, ...args] = command;
    const hash = (this.hashes.get(key) ?? this.hashes.set(key, new Map()).get(key))!;
    const set = (this.sets.get(key) ?? this.sets.set(key, new Set()).get(key))!;
    switch (name) {
      case "hset":
        hash.set(args[0]!, args[1]!);
        return 1;
      case "hdel":
        return args.filter((f) => hash.delete(f)).length;
      case "hgetall":
        return Object.fromEntries(hash);
      case "sadd":
        args.forEach((m) => set.add(m));
        return args.length;
      case "srem":
        return args.filter((m) => set.delete(m)).length;
      case "smembers":
        return [...set];
      case "del":
        this.hashes.delete(key);
        this.sets.delete(key);
        return 1;
      case "publish":
        for (const listener of this.#listeners) listener(key, args[0]!);
        return 1;
      case "pexpire":
        return 1;
      default:
        throw new Error(`FakeRedis does not know ${name}`);
    }
  }
}


const log = createLogger({ name: "presence-spec", level: "silent" });
const LINGER_MS = 3000;

async function startPresence(serverId = "a", options: Partial<RedisPresenceOptions> = {}) {
  const clock = new ManualClock();
  const redis = new FakeRedis();
  const registry = new FakeRegistry();
  const presence = new RedisPresence({ redis, serverId, held: registry, log, clock, lingerMs: LINGER_MS, ...options });
  await presence.start("127.0.0.1:7001");
  const connect = (w: string) => {
    registry.set.add(w);
    presence.workspaceChanged(w, true);
  };
  const disconnect = (w: string) => {
    registry.set.delete(w);
    presence.workspaceChanged(w, false);
  };
  return { clock, redis, registry, presence, connect, disconnect };
}

describe("RedisPresence (manual clock, fake Redis)", () => {
  it("records an agent's workspace under its workspace id, in one batched write that announces it", async () => {
    const { clock, redis, connect } = await startPresence();
    connect("ws_1");
    connect("ws_2");
    expect(redis.sent("hset", "warren:presence:ws_1")).toHaveLength(0); // batched, not yet written
    await clock.advance(10);
    expect(redis.hashes.get("warren:presence:ws_1")?.get("a")).toBe(String(clock.now() + 20_000));
    expect(redis.hashes.get("warren:presence:ws_2")?.has("a")).toBe(true);
    expect([...(redis.sets.get("warren:held:a") ?? [])].sort()).toEqual(["ws_1", "ws_2"]);
    expect(redis.commands.filter(([n]) => n === "publish").map(([, , w]) => w)).toEqual(["ws_1", "ws_2"]);
  });

  it("writes no delete when an agent flaps: down, then up again within the linger", async () => {
    const { clock, redis, connect, disconnect } = await startPresence();
    connect("ws_1");
    await clock.advance(10);
    const writes = redis.commands.length;
    disconnect("ws_1");
    await clock.advance(LINGER_MS - 1);
    connect("ws_1");
    await clock.advance(LINGER_MS * 2);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(0);
    expect(redis.hashes.get("warren:presence:ws_1")?.has("a")).toBe(true);
    // Back within the linger: the record never left Redis, so nothing was written for the flap
    // beyond the refresh ticks.
    expect(redis.commands.slice(writes).filter(([n]) => n === "publish")).toHaveLength(0);
  });

  it("deletes the record once when the agent stays away past the linger", async () => {
    const { clock, redis, connect, disconnect } = await startPresence();
    connect("ws_1");
    await clock.advance(10);
    disconnect("ws_1");
    await clock.advance(LINGER_MS - 1);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(0);
    await clock.advance(1 + 10);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toEqual([["hdel", "warren:presence:ws_1", "a"]]);
    expect(redis.hashes.get("warren:presence:ws_1")?.has("a")).toBe(false);
    expect(redis.sets.get("warren:held:a")?.has("ws_1")).toBe(false);
    await clock.advance(60_000); // refresh ticks do not delete it again
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(1);
  });

  it("keeps the record when another connection of the workspace is here as the linger ends", async () => {
    const { clock, redis, registry, presence, connect } = await startPresence();
    connect("ws_1");
    await clock.advance(10);
    presence.workspaceChanged("ws_1", false); // registry still holds it: its last connection is not gone
    await clock.advance(LINGER_MS + 10);
    expect(registry.holds("ws_1")).toBe(true);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(0);
  });

  it("retries a delete that Redis missed on the next refresh", async () => {
    const { clock, redis, connect, disconnect } = await startPresence("a", { refreshIntervalMs: 5000 });
    connect("ws_1");
    await clock.advance(10);
    disconnect("ws_1");
    redis.available = false;
    await clock.advance(LINGER_MS + 10);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(0);
    redis.available = true;
    await clock.advance(5000);
    expect(redis.sent("hdel", "warren:presence:ws_1")).toHaveLength(1);
    expect(redis.hashes.get("warren:presence:ws_1")?.has("a")).toBe(false);
  });

  it("rewrites every record on each refresh tick, so a Redis that lost its data heals", async () => {
    const { clock, redis, connect } = await startPresence("a", { refreshIntervalMs: 5000 });
    connect("ws_1");
    await clock.advance(10);
    redis.hashes.clear();
    redis.sets.clear();
    await clock.advance(5000);
    expect(redis.hashes.get("warren:presence:ws_1")?.has("a")).toBe(true);
    expect(JSON.parse(redis.hashes.get("warren:servers")?.get("a") ?? "{}")).toMatchObject({ address: "127.0.0.1:7001" });
  });

  it("caches an empty lookup until another server announces the workspace", async () => {
    const a = await startPresence("a");
    // A second server on the same Redis and clock.
    const bRegistry = new FakeRegistry();
    const b = new RedisPresence({ redis: a.redis, serverId: "b", held: bRegistry, log, clock: a.clock });
    await b.start("127.0.0.1:7002");
    expect(await a.presence.holders("ws_1")).toEqual([]);
    const lookups = () => a.redis.sent("hgetall", "warren:presence:ws_1").length;
    const before = lookups();
    expect(await a.presence.holders("ws_1")).toEqual([]);
    expect(lookups()).toBe(before); // answered from the cache
    bRegistry.set.add("ws_1");
    b.workspaceChanged("ws_1", true);
    await a.clock.advance(10); // b's write announces ws_1; a drops its empty answer
    const holders = await a.presence.holders("ws_1");
    expect(lookups()).toBe(before + 1);
    expect(holders.map((h) => [h.serverId, h.address])).toEqual([["b", "127.0.0.1:7002"]]);
    await b.stop();
  });

  it("answers an empty lookup from the cache for its TTL when nothing is announced", async () => {
    const { clock, redis, presence } = await startPresence("a", { emptyCacheTtlMs: 1000 });
    const lookups = () => redis.sent("hgetall", "warren:presence:ws_1").length;
    await presence.holders("ws_1");
    await clock.advance(999);
    await presence.holders("ws_1");
    expect(lookups()).toBe(1);
    await clock.advance(1);
    await presence.holders("ws_1");
    expect(lookups()).toBe(2);
  });

  it("stops its timers and removes its own records on stop", async () => {
    const { clock, redis, presence, connect, disconnect } = await startPresence();
    connect("ws_1");
    connect("ws_2");
    await clock.advance(10);
    disconnect("ws_2");
    await presence.stop();
    expect(clock.pending).toBe(0);
    expect(redis.hashes.get("warren:presence:ws_1")?.has("a")).toBe(false);
    expect(redis.hashes.get("warren:presence:ws_2")?.has("a")).toBe(false);
    expect(redis.hashes.get("warren:servers")?.has("a")).toBe(false);
  });
});
