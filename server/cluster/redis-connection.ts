import { Cluster, Redis, type ChainableCommander, type RedisOptions } from "ioredis";
import { systemClock, type Clock, type Timer } from "../../shared/clock.js";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { describeRedisTarget, type RedisTarget } from "./redis-url.js";

/** What every Redis-backed module talks to: a plain Redis, one behind Sentinel, or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  readonly target: RedisTarget;
  /** Key prefix without the separator; wrapped as a hash tag on Redis Cluster (see keys()). */
  readonly prefix: string;
  readonly log: Logger;
  /** Default bound of one operation (a command or a pipeline) before it counts as failed. */
  readonly operationTimeoutMs?: number;
  /** Observes each failed operation (metrics). */
  readonly onError?: (operation: string) => void;
  /** Observes the time of each operation attempted, failed ones included (metrics). */
  readonly onOperation?: (operation: string, seconds: number) => void;
  /** Observes each change between reachable and unreachable (metrics, logs). */
  readonly onAvailability?: (available: boolean) => void;
  /** Time, operation bounds and the probe's ticks; the system clock by default. */
  readonly clock?: Clock;
  /** Makes the Redis clients (the main one and each subscriber); ioredis by default, a fake in unit specs. */
  readonly createClient?: (target: RedisTarget, extra: ClientExtras) => RedisClient;
}

/** Where the connection to Redis is; only RedisConnection.#transition changes it. */
export enum RedisConnectionState {
  /** Not ready yet since start: operations fail at once. */
  Connecting = "connecting",
  /** Operations are attempted. */
  Ready = "ready",
  /** An operation failed for a connection reason: none is attempted until a PING answers. */
  Suspect = "suspect",
  /** The client lost its connection and reconnects on its own. */
  Reconnecting = "reconnecting",
  /** close() was called. Final. */
  Closed = "closed",
}

const TRANSITIONS: Readonly<Record<RedisConnectionState, readonly RedisConnectionState[]>> = {
  [RedisConnectionState.Connecting]: [RedisConnectionState.Ready, RedisConnectionState.Closed],
  [RedisConnectionState.Ready]: [RedisConnectionState.Suspect, RedisConnectionState.Reconnecting, RedisConnectionState.Closed],
  [RedisConnectionState.Suspect]: [RedisConnectionState.Ready, RedisConnectionState.Reconnecting, RedisConnectionState.Closed],
  [RedisConnectionState.Reconnecting]: [RedisConnectionState.Ready, RedisConnectionState.Closed],
  [RedisConnectionState.Closed]: [],
};

/** Whether a Redis connection may go from one state to another. */
export function mayTransition(from: RedisConnectionState, to: RedisConnectionState): boolean {
  return TRANSITIONS[from].includes(to);
}

const DEFAULT_OPERATION_TIMEOUT_MS = 1000;
const PROBE_INTERVAL_MS = 500;
const ERROR_LOG_INTERVAL_MS = 5000;

/**
 * Owns the Redis clients of one server and knows whether Redis answers. Every operation goes
 * through run(), which bounds its time and fails at once while Redis is known to be
 * unreachable, so that no request waits on a dead Redis: callers get unavailable and decide.
 *
 * A command that times out (Redis stopped, network cut without a reset) or fails for a
 * connection reason marks Redis unreachable; a PING probe marks it reachable again.
 */
export class RedisConnection {
  readonly #options: RedisConnectionOptions;
  readonly client: RedisClient;
  readonly #subscribers: RedisClient[] = [];
  readonly keyPrefix: string;
  readonly #clock: Clock;
  readonly #createClient: (target: RedisTarget, extra: ClientExtras) => RedisClient;
  #state = RedisConnectionState.Connecting;
  /** History, not state: waitUntilReady() returns at once once Redis has answered. */
  #everReady = false;
  #probe: Timer | undefined;
  #errorsSinceLog = 0;
  #lastErrorLog = 0;

  constructor(options: RedisConnectionOptions) {
    this.#options = options;
    // One hash slot for every key on Redis Cluster: pipelines and MULTI span keys.
    this.keyPrefix = options.target.kind === "cluster" ? `{${options.prefix}}:` : `${options.prefix}:`;
    this.#clock = options.clock ?? systemClock;
    this.#createClient = options.createClient ?? createClient;
    this.client = this.#createClient(options.target, { commandTimeout: 2 * (options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS) });
    this.client.on("ready", () => {
      this.#everReady = true;
      // While suspect the client never stopped being connected: only a PING clears that.
      if (this.#state !== RedisConnectionState.Suspect) this.#transition(RedisConnectionState.Ready, "connected");
    });
    this.client.on("close", () => this.#transition(RedisConnectionState.Reconnecting, "connection closed"));
    this.client.on("end", () => this.#transition(RedisConnectionState.Reconnecting, "connection ended"));
    this.client.on("error", (err: Error) => {
      options.onError?.("connection");
      this.#logError("connection", err);
    });
  }

  /** The target for logs (no password). */
  get description(): string {
    return describeRedisTarget(this.#options.target);
  }

  get state(): RedisConnectionState {
    return this.#state;
  }

  /** Whether operations are attempted now (false: they fail at once with unavailable). */
  get available(): boolean {
    return this.#state === RedisConnectionState.Ready;
  }

  /**
   * The one place the state changes. Refuses (false) what the table does not allow, staying
   * put; logs every change at debug, and each change between reachable and unreachable once.
   */
  #transition(to: RedisConnectionState, why: string): boolean {
    const from = this.#state;
    if (!mayTransition(from, to)) return false;
    const before = this.available;
    this.#state = to;
    this.#options.log.debug({ redis: this.description, from, to, why }, "Redis connection state");
    if (to !== RedisConnectionState.Suspect) {
      this.#clock.clearTimer(this.#probe);
      this.#probe = undefined;
    }
    const now = this.available;
    if (now === before || to === RedisConnectionState.Closed) return true;
    this.#options.log[now ? "info" : "warn"]({ redis: this.description }, now ? "Redis is reachable" : "Redis is unreachable");
    this.#options.onAvailability?.(now);
    return true;
  }

  /** Resolves once Redis has answered for the first time; logs while it waits. Never rejects. */
  async waitUntilReady(): Promise<void> {
    if (this.#everReady) return;
    const started = this.#clock.now();
    const reminder = this.#clock.setInterval(() => {
      this.#options.log.warn({ redis: this.description, waitedMs: this.#clock.now() - started }, "waiting for Redis");
    }, 5000);
    try {
      await new Promise<void>((resolve) => {
        if (this.#everReady) resolve();
        else this.client.once("ready", () => resolve());
      });
    } finally {
      this.#clock.clearTimer(reminder);
    }
  }

  /** A fresh client for SUBSCRIBE (a subscribed connection can run nothing else). Closed by close(). */
  subscriber(): RedisClient {
    // Queued while disconnected, so SUBSCRIBE may be called before the first connect;
    // ioredis subscribes again after every reconnect.
    const sub = this.#createClient(this.#options.target, { enableOfflineQueue: true });
    sub.on("error", (err: Error) => this.#logError("subscriber", err));
    this.#subscribers.push(sub);
    return sub;
  }

  /** Key under this cluster's prefix. */
  key(...parts: string[]): string {
    return this.keyPrefix + parts.join(":");
  }

  /**
   * Runs one Redis operation within `timeoutMs`. Rejects with unavailable at once while Redis
   * is unreachable, and when the operation fails or times out (the operation itself may still
   * complete later in Redis: callers write idempotently). Nobody cancels it: the bound does.
   */
  async run<T>(operation: string, fn: (client: RedisClient) => Promise<T>, timeoutMs = this.#options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS): Promise<T> {
    if (!this.available) {
      throw new WarrenError(ErrorCode.Unavailable, this.#state === RedisConnectionState.Closed ? "Redis connection closed" : "the cluster's Redis is unreachable");
    }
    let timer: Timer | undefined;
    const startedAt = process.hrtime.bigint();
    try {
      return await Promise.race([
        fn(this.client),
        new Promise<never>((_, reject) => {
          timer = this.#clock.setTimeout(() => reject(new RedisTimeout(`Redis did not answer ${operation} within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.#options.onError?.(operation);
      this.#logError(operation, err as Error);
      if (!isReplyError(err)) this.#markSuspect(operation);
      throw new WarrenError(ErrorCode.Unavailable, `the cluster's Redis failed: ${(err as Error).message}`, { cause: err });
    } finally {
      this.#clock.clearTimer(timer);
      this.#options.onOperation?.(operation, Number(process.hrtime.bigint() - startedAt) / 1e9);
    }
  }

  /**
   * Runs the commands `build` adds as one pipeline (one round trip) under run()'s rules, and
   * resolves with their replies in order. ioredis resolves a pipeline even when its commands
   * failed (a timeout included): the first failure rejects here instead.
   */
  pipeline(operation: string, build: (p: ChainableCommander) => void, timeoutMs?: number): Promise<unknown[]> {
    return this.run(
      operation,
      async (client) => {
        const p = client.pipeline();
        build(p);
        const results = await p.exec();
        if (!results) throw new Error("pipeline discarded");
        const failed = results.find(([err]) => err);
        if (failed) throw failed[0];
        return results.map(([, value]) => value);
      },
      timeoutMs,
    );
  }

  async close(): Promise<void> {
    this.#transition(RedisConnectionState.Closed, "closed by the server");
    const clients = [this.client, ...this.#subscribers];
    await Promise.all(
      clients.map(async (c) => {
        try {
          let timer: Timer | undefined;
          await Promise.race([c.quit(), new Promise((resolve) => (timer = this.#clock.setTimeout(() => resolve(undefined), 500)))]).finally(() =>
            this.#clock.clearTimer(timer),
          );
        } catch {
          // Already closed.
        }
        c.disconnect();
      }),
    );
  }

  /** Stops sending work to Redis until a PING comes back. */
  #markSuspect(operation: string): void {
    // Only from Ready: while reconnecting, "ready" brings it back; once closed, nothing does.
    if (!this.#transition(RedisConnectionState.Suspect, `${operation} failed`)) return;
    this.#probe = this.#clock.setInterval(() => {
      let timer: Timer | undefined;
      Promise.race([
        this.client.ping(),
        new Promise((_, reject) => (timer = this.#clock.setTimeout(() => reject(new RedisTimeout("probe")), PROBE_INTERVAL_MS * 2))),
      ]).then(
        () => {
          this.#clock.clearTimer(timer);
          if (this.#state === RedisConnectionState.Suspect) this.#transition(RedisConnectionState.Ready, "PING answered");
        },
        () => this.#clock.clearTimer(timer),
      );
    }, PROBE_INTERVAL_MS);
    this.#probe.unref();
  }

  /** Rate-limited: a dead Redis must not flood the log. */
  #logError(operation: string, err: Error): void {
    if (this.#state === RedisConnectionState.Closed) return;
    this.#errorsSinceLog++;
    const now = this.#clock.now();
    if (now - this.#lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    this.#options.log.warn({ operation, err: err.message, errors: this.#errorsSinceLog, redis: this.description }, "Redis error");
    this.#errorsSinceLog = 0;
    this.#lastErrorLog = now;
  }
}

class RedisTimeout extends Error {}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError";
}

/** What a client is made with beyond its target. */
export type ClientExtras = Pick<RedisOptions, "commandTimeout" | "enableOfflineQueue">;

function createClient(target: RedisTarget, extra: ClientExtras): RedisClient {
  const common: RedisOptions = {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
    connectTimeout: 2000,
    // Fail at once while disconnected instead of queueing: callers answer 503 and retry later.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A write sent before a disconnect is never replayed after newer ones (presence ordering).
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    ...extra,
  };
  switch (target.kind) {
    case "standalone":
      return new Redis({ ...common, host: target.node.host, port: target.node.port, db: target.db });
    case "sentinel":
      return new Redis({
        ...common,
        sentinels: target.sentinels.map((n) => ({ host: n.host, port: n.port })),
        name: target.masterName,
        db: target.db,
        ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
        ...(target.tls ? { enableTLSForSentinelMode: true } : {}),
        sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
      });
    case "cluster": {
      const { retryStrategy: _r, enableOfflineQueue, ...redisOptions } = common;
      return new Cluster(
        target.nodes.map((n) => ({ host: n.host, port: n.port })),
        {
          redisOptions,
          enableOfflineQueue,
          clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
          slotsRefreshTimeout: 2000,
        },
      );
    }
  }
}
