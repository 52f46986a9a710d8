import type { ChainableCommander } from "ioredis";
import { systemClock, type Clock, type Timer } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { HolderMiss, Presence, PresenceHolder } from "./presence.js";
import type { RedisConnection } from "./redis-connection.js";

/** What presence needs of the Redis connection (a RedisConnection; a fake in unit specs). */
export interface PresenceRedis extends Pick<RedisConnection, "available" | "key" | "run" | "pipeline"> {
  subscriber(): PresenceSubscriber;
}

/** The subscribed client presence listens on for announcements. */
export interface PresenceSubscriber {
  on(event: "message", listener: (channel: string, message: string) => void): unknown;
  subscribe(channel: string): Promise<unknown>;
}

/** The local registry as presence sees it. */
export interface HeldWorkspaces {
  /** Workspaces with at least one agent connection on this server. */
  heldWorkspaces(): Iterable<string>;
  holds(workspace: string): boolean;
  /** Whether a usable agent connection of the workspace is here. */
  isConnected(workspace: string): boolean;
}

export interface RedisPresenceOptions {
  readonly redis: PresenceRedis;
  readonly serverId: string;
  readonly held: HeldWorkspaces;
  readonly log: Logger;
  /** Every server rewrites all of its records this often, in one pipeline. */
  readonly refreshIntervalMs?: number;
  /** Records not refreshed within this time are dead. */
  readonly ttlMs?: number;
  /** A workspace's record is removed this long after its last agent connection went. */
  readonly lingerMs?: number;
  /** Lookups that found holders are cached this long. */
  readonly cacheTtlMs?: number;
  /**
   * Lookups that found none are cached this long, so that a flood of requests for a
   * disconnected workspace costs Redis a read a second, not one per request. A server that
   * records a workspace announces it (P:presence-events), which drops such empty answers
   * everywhere at once.
   */
  readonly emptyCacheTtlMs?: number;
  /** Bound of one lookup. */
  readonly lookupTimeoutMs?: number;
  /** Records of dead servers are removed about this often, by any live server. */
  readonly gcIntervalMs?: number;
  /** Overrides clock.now (kept for callers that only move time). */
  readonly now?: () => number;
  /** Time and timers: linger, write batching, refresh and GC ticks. The system clock by default. */
  readonly clock?: Clock;
}

interface ServerRecord {
  readonly address: string;
  readonly expiresAt: number;
  readonly startedAt: number;
}

interface CachedLookup {
  readonly holders: readonly PresenceHolder[];
  readonly until: number;
}

/** Registrations are gathered this long, so a burst of connecting agents costs one round trip. */
const FLUSH_DELAY_MS = 10;
/** After a holder said "not connected here", it is left out for the workspace this long. */
const NOT_HERE_MS = 1000;

/**
 * Presence in Redis. Keys (under the cluster prefix P):
 *
 *   P:servers               hash  server id -> {"address","expiresAt","startedAt"} (heartbeat)
 *   P:presence:<workspace id>  hash  server id -> expiresAt (ms); key TTL refreshed with it
 *   P:held:<server id>      set   workspaces the server holds (to remove a dead server's records)
 *   P:presence-events       channel  a workspace id just recorded (drops cached empty lookups)
 *
 * Each server owns its own fields only, so servers never race on each other's records. All
 * writes go through one connection in the order they are decided, and whether a workspace is
 * held is read from the registry when a pipeline is built, never earlier: a register and an
 * unregister of a flapping agent cannot land out of order (KAS once unregistered a live
 * tunnel that way). Each refresh rewrites every record, so a Redis that lost its data, or a
 * GC that ran while this server was cut off, heals within one interval.
 */
export class RedisPresence implements Presence {
  readonly #o: Required<Omit<RedisPresenceOptions, "now" | "clock">> & { now: () => number };
  readonly #clock: Clock;
  readonly #redis: PresenceRedis;
  /** Workspaces connected since the last flush, to record at once. */
  readonly #pendingUp = new Set<string>();
  /** Workspaces whose last connection went; removed after the linger. */
  readonly #lingering = new Map<string, Timer>();
  /** Lingering workspaces that went before their record was first written. */
  readonly #neverWritten = new Set<string>();
  /** Workspaces to unregister (linger over) until a write confirms it. */
  readonly #pendingDown = new Set<string>();
  readonly #cache = new Map<string, CachedLookup>();
  readonly #inflight = new Map<string, Promise<readonly PresenceHolder[]>>();
  /** Server id -> heartbeat seen when it did not answer: left out until it heartbeats again. */
  readonly #unreachable = new Map<string, number>();
  /** "workspace\0server" -> until when that server is left out for that workspace. */
  readonly #notHere = new Map<string, number>();
  #flushTimer: Timer | undefined;
  #refreshTimer: Timer | undefined;
  #gcTimer: Timer | undefined;
  #startedAt = 0;
  #address = "";
  #running = false;

  constructor(options: RedisPresenceOptions) {
    const clock = options.clock ?? systemClock;
    this.#clock = clock;
    this.#o = {
      refreshIntervalMs: 5000,
      ttlMs: 20_000,
      lingerMs: 3000,
      cacheTtlMs: 2000,
      emptyCacheTtlMs: 1000,
      lookupTimeoutMs: 500,
      gcIntervalMs: 15_000,
      ...options,
      now: options.now ?? (() => clock.now()),
    };
    this.#redis = options.redis;
  }

  #key(...parts: string[]): string {
    return this.#redis.key(...parts);
  }

  /** `address`: host:port other servers dial to reach this one (known once the private listener listens). */
  async start(address: string): Promise<void> {
    this.#address = address;
    this.#startedAt = this.#o.now();
    this.#running = true;
    const sub = this.#redis.subscriber();
    sub.on("message", (channel: string, workspace: string) => {
      if (channel !== this.#key("presence-events")) return;
      const cached = this.#cache.get(workspace);
      if (cached && cached.holders.length === 0) this.#cache.delete(workspace);
      this.#notHere.forEach((_until, key) => {
        if (key.startsWith(`${workspace}\0`)) this.#notHere.delete(key);
      });
    });
    sub.subscribe(this.#key("presence-events")).catch(() => {
      // Retried by ioredis on reconnect; without it empty answers just live their short TTL.
    });
    // Records of an earlier run under the same id point at agents this process never had.
    try {
      const stale = await this.#redis.run("presence start", (c) => c.smembers(this.#key("held", this.#o.serverId)));
      if (stale.length > 0) {
        await this.#redis.pipeline("presence start", (p) => {
          for (const w of stale) if (!this.#o.held.holds(w)) p.hdel(this.#key("presence", w), this.#o.serverId);
          p.del(this.#key("held", this.#o.serverId));
        });
        this.#o.log.info({ records: stale.length }, "removed presence records of an earlier run of this server id");
      }
    } catch {
      // Counted and logged by the connection; the refresh below heals what it can.
    }
    await this.#refresh();
    this.#refreshTimer = this.#clock.setInterval(() => void this.#refresh(), this.#o.refreshIntervalMs);
    this.#refreshTimer.unref();
    const gcEvery = this.#o.gcIntervalMs * (0.75 + Math.random() * 0.5);
    this.#gcTimer = this.#clock.setInterval(() => void this.collectGarbage(), gcEvery);
    this.#gcTimer.unref();
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#clock.clearTimer(this.#refreshTimer);
    this.#clock.clearTimer(this.#gcTimer);
    this.#clock.clearTimer(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const timer of this.#lingering.values()) this.#clock.clearTimer(timer);
    this.#lingering.clear();
    this.#neverWritten.clear();
    const id = this.#o.serverId;
    try {
      const members = await this.#redis.run("presence stop", (c) => c.smembers(this.#key("held", id)));
      await this.#redis.pipeline("presence stop", (p) => {
        for (const w of new Set([...members, ...this.#o.held.heldWorkspaces()])) p.hdel(this.#key("presence", w), id);
        p.del(this.#key("held", id));
        p.hdel(this.#key("servers"), id);
      });
    } catch {
      // Left to expire and to the other servers' GC.
    }
  }

  /**
   * Whether another server of the cluster has a live heartbeat: somewhere for this server's
   * agents to move to. True when Redis cannot tell (waiting costs time, not requests). Bounded
   * like a lookup; never rejects.
   */
  async hasLivePeers(): Promise<boolean> {
    try {
      const servers = await this.#redis.run("presence peers", (c) => c.hgetall(this.#key("servers")), this.#o.lookupTimeoutMs);
      const now = this.#o.now();
      return Object.entries(servers).some(([id, json]) => id !== this.#o.serverId && (parseServer(json)?.expiresAt ?? 0) > now);
    } catch {
      return true;
    }
  }

  workspaceChanged(workspace: string, connected: boolean): void {
    if (!this.#running) return;
    if (connected) {
      const lingering = this.#lingering.get(workspace);
      if (lingering) {
        // Back within the linger: the record never left Redis, nothing to write; unless it went
        // before its first write (then only the next refresh would have written it).
        this.#clock.clearTimer(lingering);
        this.#lingering.delete(workspace);
        if (!this.#neverWritten.delete(workspace)) return;
      }
      this.#pendingDown.delete(workspace);
      this.#pendingUp.add(workspace);
      this.#scheduleFlush();
      return;
    }
    // Gone before its record was written (a refresh may have written it: the linger removes it).
    const unwritten = this.#pendingUp.delete(workspace);
    if (this.#lingering.has(workspace)) return;
    if (unwritten) this.#neverWritten.add(workspace);
    const timer = this.#clock.setTimeout(() => {
      this.#lingering.delete(workspace);
      this.#neverWritten.delete(workspace);
      if (this.#o.held.holds(workspace)) return;
      this.#pendingDown.add(workspace);
      this.#scheduleFlush();
    }, this.#o.lingerMs);
    timer.unref();
    this.#lingering.set(workspace, timer);
  }

  #scheduleFlush(): void {
    if (this.#flushTimer || !this.#running) return;
    this.#flushTimer = this.#clock.setTimeout(() => {
      this.#flushTimer = undefined;
      void this.#flush();
    }, FLUSH_DELAY_MS);
    this.#flushTimer.unref();
  }

  /** Writes pending registrations and removals in one pipeline. */
  async #flush(): Promise<void> {
    const up = [...this.#pendingUp].filter((w) => this.#o.held.holds(w));
    const down = [...this.#pendingDown].filter((w) => !this.#o.held.holds(w));
    this.#pendingUp.clear();
    if (up.length === 0 && down.length === 0) return;
    if (!this.#redis.available) return; // the next refresh writes ups; downs stay pending
    const id = this.#o.serverId;
    const expiresAt = this.#o.now() + this.#o.ttlMs;
    try {
      await this.#redis.pipeline("presence write", (p) => {
        for (const w of up) {
          this.#writeHeld(p, w, expiresAt);
          p.publish(this.#key("presence-events"), w);
        }
        if (up.length > 0) {
          p.sadd(this.#key("held", id), ...up);
          p.pexpire(this.#key("held", id), this.#o.ttlMs * 2);
        }
        for (const w of down) {
          p.hdel(this.#key("presence", w), id);
          p.srem(this.#key("held", id), w);
        }
      });
      for (const w of down) if (!this.#o.held.holds(w)) this.#pendingDown.delete(w);
    } catch {
      // Ups are rewritten by the next refresh, downs retried by it.
    }
  }

  #writeHeld(p: ChainableCommander, workspace: string, expiresAt: number): void {
    const key = this.#key("presence", workspace);
    p.hset(key, this.#o.serverId, String(expiresAt));
    p.pexpire(key, this.#o.ttlMs);
  }

  /** Rewrites every record now (Redis came back: records may have expired meanwhile). Never blocks. */
  refreshNow(): void {
    void this.#refresh();
  }

  /** One pipeline per tick for the heartbeat and every record, however many agents. */
  async #refresh(): Promise<void> {
    if (!this.#running || !this.#redis.available) return;
    const id = this.#o.serverId;
    const now = this.#o.now();
    const expiresAt = now + this.#o.ttlMs;
    const server: ServerRecord = { address: this.#address, expiresAt, startedAt: this.#startedAt };
    const held = [...this.#o.held.heldWorkspaces()];
    const down = [...this.#pendingDown].filter((w) => !this.#o.held.holds(w));
    this.#pendingUp.clear();
    try {
      await this.#redis.pipeline(
        "presence refresh",
        (p) => {
          p.hset(this.#key("servers"), id, JSON.stringify(server));
          for (const w of held) this.#writeHeld(p, w, expiresAt);
          if (held.length > 0) p.sadd(this.#key("held", id), ...held);
          p.pexpire(this.#key("held", id), this.#o.ttlMs * 2);
          for (const w of down) {
            p.hdel(this.#key("presence", w), id);
            p.srem(this.#key("held", id), w);
          }
        },
        Math.max(1000, this.#o.refreshIntervalMs / 2),
      );
      for (const w of down) if (!this.#o.held.holds(w)) this.#pendingDown.delete(w);
    } catch {
      // Counted and logged by the connection; the next tick tries again.
    }
  }

  /**
   * Removes the records of servers whose heartbeat expired (killed, cut off). Any server may
   * run it; it is idempotent, so concurrent runs are harmless. A server that was only cut
   * off rewrites its records on its next refresh.
   */
  async collectGarbage(): Promise<number> {
    if (!this.#running || !this.#redis.available) return 0;
    try {
      const servers = await this.#redis.run("presence gc", (c) => c.hgetall(this.#key("servers")));
      const now = this.#o.now();
      const dead = Object.entries(servers)
        .filter(([id, json]) => id !== this.#o.serverId && (parseServer(json)?.expiresAt ?? 0) < now)
        .map(([id]) => id);
      for (const id of dead) {
        const held = await this.#redis.run("presence gc", (c) => c.smembers(this.#key("held", id)));
        await this.#redis.pipeline("presence gc", (p) => {
          for (const w of held) p.hdel(this.#key("presence", w), id);
          p.del(this.#key("held", id));
          p.hdel(this.#key("servers"), id);
        });
        this.#o.log.info({ server: id, records: held.length }, "removed the presence records of a dead server");
      }
      return dead.length;
    } catch {
      return 0;
    }
  }

  holders(workspace: string): Promise<readonly PresenceHolder[]> {
    const now = this.#o.now();
    const cached = this.#cache.get(workspace);
    if (cached && cached.until > now) return Promise.resolve(this.#usable(workspace, cached.holders, now));
    const inflight = this.#inflight.get(workspace);
    if (inflight) return inflight.then((h) => this.#usable(workspace, h, this.#o.now()));
    const lookup = this.#lookup(workspace).finally(() => this.#inflight.delete(workspace));
    this.#inflight.set(workspace, lookup);
    return lookup.then((h) => this.#usable(workspace, h, this.#o.now()));
  }

  async #lookup(workspace: string): Promise<readonly PresenceHolder[]> {
    const [fields, servers] = await this.#redis.pipeline(
      "presence lookup",
      (p) => p.hgetall(this.#key("presence", workspace)).hgetall(this.#key("servers")),
      this.#o.lookupTimeoutMs,
    );
    const now = this.#o.now();
    const holders: PresenceHolder[] = [];
    for (const [serverId, value] of Object.entries((fields ?? {}) as Record<string, string>)) {
      if (serverId === this.#o.serverId) continue;
      const expiresAt = Number(value);
      const server = parseServer(((servers ?? {}) as Record<string, string>)[serverId]);
      // A record outlives its server by at most one TTL: a dead heartbeat rules it out.
      if (!(expiresAt > now) || !server || server.expiresAt <= now) continue;
      holders.push({ serverId, address: server.address, expiresAt, heartbeatExpiresAt: server.expiresAt });
    }
    holders.sort((a, b) => b.expiresAt - a.expiresAt);
    const ttl = holders.length > 0 ? this.#o.cacheTtlMs : this.#o.emptyCacheTtlMs;
    this.#cache.set(workspace, { holders, until: now + ttl });
    if (this.#cache.size > 10_000) this.#sweep(now);
    return holders;
  }

  /** Leaves out holders known not to serve right now. */
  #usable(workspace: string, holders: readonly PresenceHolder[], now: number): readonly PresenceHolder[] {
    return holders.filter((h) => {
      if (this.#unreachable.get(h.serverId) === h.heartbeatExpiresAt) return false;
      const notHere = this.#notHere.get(`${workspace}\0${h.serverId}`);
      return notHere === undefined || notHere <= now;
    });
  }

  forget(workspace: string, holder: PresenceHolder, why: HolderMiss): void {
    this.#cache.delete(workspace);
    if (why === "unreachable") this.#unreachable.set(holder.serverId, holder.heartbeatExpiresAt);
    else this.#notHere.set(`${workspace}\0${holder.serverId}`, this.#o.now() + NOT_HERE_MS);
    if (this.#notHere.size > 10_000) this.#sweep(this.#o.now());
  }

  async isConnected(workspace: string): Promise<boolean> {
    if (this.#o.held.isConnected(workspace)) return true;
    try {
      return (await this.holders(workspace)).length > 0;
    } catch {
      return false;
    }
  }

  #sweep(now: number): void {
    for (const [k, v] of this.#cache) if (v.until <= now) this.#cache.delete(k);
    for (const [k, v] of this.#notHere) if (v <= now) this.#notHere.delete(k);
    if (this.#unreachable.size > 1000) this.#unreachable.clear();
  }
}

function parseServer(json: string | undefined): ServerRecord | undefined {
  if (!json) return undefined;
  try {
    const v = JSON.parse(json) as Partial<ServerRecord>;
    if (typeof v.address !== "string" || typeof v.expiresAt !== "number") return undefined;
    return { address: v.address, expiresAt: v.expiresAt, startedAt: v.startedAt ?? 0 };
  } catch {
    return undefined;
  }
}
