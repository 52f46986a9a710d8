import type { Logger } from "pino";
import type { RedisConnection } from "../cluster/redis-connection.js";

export interface RedisPersistence {
  readonly appendOnly: boolean;
  /** RDB snapshot rules ("3600 1 300 100"); empty when off. */
  readonly save: string;
}

/**
 * In cluster mode Redis is the system of record: every workspace, user and token is there
 * only. Reads whether it persists (AOF or RDB snapshots) from INFO persistence, which managed
 * Redis services answer where CONFIG is disabled.
 */
export async function readRedisPersistence(redis: RedisConnection): Promise<RedisPersistence | undefined> {
  let info: string;
  try {
    info = await redis.run("infoPersistence", (c) => c.info("persistence"), 5000);
  } catch {
    return undefined;
  }
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
  const appendOnly = field("aof_enabled") === "1";
  let save = "";
  try {
    const reply = (await redis.run("configGetSave", (c) => c.config("GET", "save"), 5000)) as string[];
    save = reply[1] ?? "";
  } catch {
    // CONFIG is often disabled on managed Redis, which persists on its own terms: no warning.
    save = "unknown (CONFIG GET is disabled)";
  }
  return { appendOnly, save };
}

/** Warns loudly when the cluster's Redis keeps nothing across its own restart. */
export async function warnUnlessRedisPersists(redis: RedisConnection, log: Logger): Promise<void> {
  const persistence = await readRedisPersistence(redis);
  if (!persistence) {
    log.warn("could not tell whether the cluster's Redis persists its data (INFO persistence failed)");
    return;
  }
  if (!persistence.appendOnly && persistence.save === "") {
    log.error(
      { redis: redis.description, appendonly: "no", save: "" },
      "the cluster's Redis does not persist: every workspace, user and access token vanishes when Redis restarts. Turn on AOF (appendonly yes, appendfsync everysec or always) and keep its directory on a persistent volume; see docs/operating.md",
    );
  } else if (!persistence.appendOnly) {
    log.warn(
      { redis: redis.description, appendonly: "no", save: persistence.save },
      "the cluster's Redis persists by RDB snapshots only: a Redis crash loses what changed since the last snapshot. Turn on AOF (appendonly yes) for a system of record",
    );
  } else {
    log.info({ redis: redis.description, appendonly: "yes", save: persistence.save }, "the cluster's Redis persists (AOF)");
  }
}
