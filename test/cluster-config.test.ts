import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import { CLUSTER_SECRET, startRedis } from "./harness/cluster.js";
import { Proc, requireBuilt, SERVER_BUNDLE } from "./harness/processes.js";
import { ADMIN_TOKEN, cleanEnv, eventually, httpRequest } from "./harness/warren.js";

function run(env: Record<string, string>) {
  requireBuilt();
  const r = spawnSync(process.execPath, [SERVER_BUNDLE], { env: cleanEnv(env), encoding: "utf8", timeout: 15_000 });
  return { code: r.status, stderr: r.stderr };
}

describe("cluster settings", () => {
  it("refuses to start in cluster mode without a cluster secret, or with bad cluster settings (exit 2, one line)", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ WARREN_REDIS_URL: "redis://127.0.0.1:6379" }, /^warren-server: cluster mode \(WARREN_REDIS_URL is set\) needs WARREN_CLUSTER_SECRET/],
      [{ WARREN_REDIS_URL: "http://127.0.0.1:6379", WARREN_CLUSTER_SECRET: CLUSTER_SECRET }, /invalid WARREN_REDIS_URL \(WARREN_REDIS_URL\): unknown scheme "http:\/\/"/],
      [{ WARREN_REDIS_URL: "redis://127.0.0.1:6379", WARREN_CLUSTER_SECRET: "short" }, /invalid WARREN_CLUSTER_SECRET.*at least 16 characters/],
      [{ WARREN_PRIVATE_ADDR: "nowhere" }, /invalid WARREN_PRIVATE_ADDR.*is not host:port/],
      [{ WARREN_PRIVATE_ADVERTISE_ADDR: "0.0.0.0:8155" }, /invalid WARREN_PRIVATE_ADVERTISE_ADDR.*not a wildcard/],
      [{ WARREN_REDIS_PREFIX: "a b" }, /invalid WARREN_REDIS_PREFIX/],
    ];
    for (const [env, message] of cases) {
      const r = run({ WARREN_HTTP_ADDR: "127.0.0.1:0", ...env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("waits for an unreachable Redis at start: alive but not ready, then ready once Redis answers", async () => {
    requireBuilt();
    const redisPort = await freePort();
    const observability = await freePort();
    const proc = new Proc(
      process.execPath,
      [SERVER_BUNDLE],
      cleanEnv({
        WARREN_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
        WARREN_HTTP_ADDR: "127.0.0.1:0",
        WARREN_AGENT_ADDR: "127.0.0.1:0",
        WARREN_PRIVATE_ADDR: "127.0.0.1:0",
        WARREN_OBSERVABILITY_ADDR: `127.0.0.1:${observability}`,
        WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
        WARREN_DRAIN_DELAY: "0s",
      }),
    );
    try {
      const probe = (path: string) => httpRequest({ port: observability, host: "127.0.0.1", path }).catch(() => undefined);
      await eventually(async () => (await probe("/healthz"))?.status === 200, 10_000, "healthz");
      const ready = await probe("/readyz");
      expect(ready?.status).toBe(503);
      expect(ready?.body.toString()).toBe("not ready: waiting for Redis\n");
      const redis = await startRedis(redisPort);
      try {
        await proc.waitFor((l) => l.msg === "warren server ready", 15_000, "server ready");
        expect((await probe("/readyz"))?.status).toBe(200);
      } finally {
        await proc.stop();
        await redis.stop();
      }
    } finally {
      await proc.stop();
    }
  });
});
