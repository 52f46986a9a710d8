import { Cluster, Redis, type ChainableCommander, type RedisOptions } from "ioredis";
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
  #connected = false;
  #suspect = false;
  #everReady = false;
  #probe: NodeJS.Timeout | undefined;
  #closed = false;
  #errorsSinceLog = 0;
  #lastErrorLog = 0;

  constructor(options: RedisConnectionOptions) {
    this.#options = options;
    // One hash slot for every key on Redis Cluster: pipelines and MULTI span keys.
    this.keyPrefix = options.target.kind === "cluster" ? `{${options.prefix}}:` : `${options.prefix}:`;
    this.client = createClient(options.target, { commandTimeout: 2 * (options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS) });
    this.client.on("ready", () => {
      this.#everReady = true;
      this.#setConnected(true);
    });
    this.client.on("close", () => this.#setConnected(false));
    this.client.on("end", () => this.#setConnected(false));
    this.client.on("error", (err: Error) => {
      options.onError?.("connection");
      this.#logError("connection", err);
    });
  }

  /** The target for logs (no password). */
  get description(): string {
    return describeRedisTarget(this.#options.target);
  }

  /** Whether operations are attempted now (false: they fail at once with unavailable). */
  get available(): boolean {
    return this.#connected && !this.#suspect && !this.#closed;
  }

  /** Resolves once Redis has answered for the first time; logs while it waits. Never rejects. */
  async waitUntilReady(): Promise<void> {
    if (this.#everReady) return;
    const started = Date.now();
    const reminder = setInterval(() => {
      this.#options.log.warn({ redis: this.description, waitedMs: Date.now() - started }, "waiting for Redis");
    }, 5000);
    try {
      await new Promise<void>((resolve) => {
        if (this.#everReady) resolve();
        else this.client.once("ready", () => resolve());
      });
    } finally {
      clearInterval(reminder);
    }
  }

  /** A fresh client for SUBSCRIBE (a subscribed connection can run nothing else). Closed by close(). */
  subscriber(): RedisClient {
    // Queued while disconnected, so SUBSCRIBE may be called before the first connect;
    // ioredis subscribes again after every reconnect.
    const sub = createClient(this.#options.target, { enableOfflineQueue: true });
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
      throw new WarrenError(ErrorCode.Unavailable, this.#closed ? "Redis connection closed" : "the cluster's Redis is unreachable");
    }
    let timer: NodeJS.Timeout | undefined;
    const startedAt = process.hrtime.bigint();
    try {
      return await Promise.race([
        fn(this.client),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new RedisTimeout(`Redis did not answer ${operation} within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.#options.onError?.(operation);
      this.#logError(operation, err as Error);
      if (!isReplyError(err)) this.#markSuspect();
      throw new WarrenError(ErrorCode.Unavailable, `the cluster's Redis failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
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
    this.#closed = true;
    clearInterval(this.#probe);
    const clients = [this.client, ...this.#subscribers];
    await Promise.all(
      clients.map(async (c) => {
        try {
          await Promise.race([c.quit(), new Promise((resolve) => setTimeout(resolve, 500))]);
        } catch {
          // Already closed.
        }
        c.disconnect();
      }),
    );
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    const before = this.available;
    this.#connected = connected;
    if (connected) this.#suspect = false;
    this.#announce(before);
  }

  /** Stops sending work to Redis until a PING comes back. */
  #markSuspect(): void {
    if (this.#suspect || this.#closed) return;
    const before = this.available;
    this.#suspect = true;
    this.#announce(before);
    this.#probe = setInterval(() => {
      if (!this.#connected) return; // ioredis reconnects on its own; "ready" clears the suspicion
      let timer: NodeJS.Timeout | undefined;
      Promise.race([
        this.client.ping(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new RedisTimeout("probe")), PROBE_INTERVAL_MS * 2))),
      ]).then(
        () => {
          clearTimeout(timer);
          if (!this.#suspect) return;
          const was = this.available;
          this.#suspect = false;
          clearInterval(this.#probe);
          this.#announce(was);
        },
        () => clearTimeout(timer),
      );
    }, PROBE_INTERVAL_MS);
    this.#probe.unref();
  }

  #announce(before: boolean): void {
    const now = this.available;
    if (now === before || this.#closed) return;
    if (now) clearInterval(this.#probe);
    this.#options.log[now ? "info" : "warn"]({ redis: this.description }, now ? "Redis is reachable" : "Redis is unreachable");
    this.#options.onAvailability?.(now);
  }

  /** Rate-limited: a dead Redis must not flood the log. */
  #logError(operation: string, err: Error): void {
    if (this.#closed) return;
    this.#errorsSinceLog++;
    const now = Date.now();
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

function createClient(target: RedisTarget, extra: Pick<RedisOptions, "commandTimeout" | "enableOfflineQueue">): RedisClient {
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
