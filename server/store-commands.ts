import type { Readable, Writable } from "node:stream";
import { pino } from "pino";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import { RedisConnection } from "./cluster/redis-connection.js";
import { dataDirOf, storeKindOf, type ServerConfig } from "./config.js";
import { openEmbeddedStore, openEmbeddedStoreForReading } from "./store/embedded-data-dir.js";
import { RedisStore } from "./store/redis-store.js";
import { restoreBackup, writeBackup, type SnapshotSource } from "./store/snapshot.js";

/** How long backup and restore wait for Redis to answer before they give up. */
const REDIS_READY_TIMEOUT_MS = 15_000;

/** Logs of these commands go to stderr: stdout is the backup. */
const quiet = pino({ level: "warn" }, pino.destination(2));

/**
 * `warren-server backup`: writes a consistent snapshot of the configured store (embedded or
 * Redis) to `out`, beside a running server. Resolves with a line for stderr.
 */
export async function backupCommand(config: ServerConfig, out: Writable): Promise<string> {
  return withSource(config, "read", async (source, description) => {
    const count = await writeBackup(source, out, { source: description });
    return `backed up ${count} records from ${description}`;
  });
}

/**
 * `warren-server restore [--force]`: loads a backup from `input` into the configured store.
 * The embedded store is locked by a running server: stop it first.
 */
export async function restoreCommand(config: ServerConfig, input: Readable, force: boolean): Promise<string> {
  return withSource(config, "write", async (target, description) => {
    const count = await restoreBackup(target, input, { force });
    return `restored ${count} records into ${description}`;
  });
}

async function withSource<T>(config: ServerConfig, mode: "read" | "write", use: (source: SnapshotSource, description: string) => Promise<T>): Promise<T> {
  const kind = storeKindOf(config);
  if (kind === "memory") throw new WarrenError(ErrorCode.FailedPrecondition, "WARREN_STORE=memory keeps nothing to back up or restore into: use the embedded store or Redis");
  if (kind === "embedded") {
    const dataDir = dataDirOf(config);
    if (mode === "read") {
      const store = await openEmbeddedStoreForReading(dataDir);
      try {
        return await use(store, `the embedded store in ${dataDir}`);
      } finally {
        await store.close();
      }
    }
    const opened = await openEmbeddedStore({ dataDir, log: quiet });
    try {
      return await use(opened.store, `the embedded store in ${dataDir}`);
    } finally {
      await opened.close();
    }
  }
  const redis = new RedisConnection({ target: config.redisUrl!, prefix: config.redisPrefix, log: quiet, operationTimeoutMs: 10_000 });
  try {
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      redis.waitUntilReady().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), REDIS_READY_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!ready) throw new WarrenError(ErrorCode.Unavailable, `Redis at ${redis.description} did not answer within ${REDIS_READY_TIMEOUT_MS / 1000} s (WARREN_REDIS_URL)`);
    return await use(new RedisStore({ redis }), `Redis at ${redis.description} (prefix ${config.redisPrefix})`);
  } finally {
    await redis.close();
  }
}
