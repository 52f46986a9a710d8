import { describe, expect, it } from "vitest";
import { describeRedisTarget, parseRedisUrl } from "./redis-url.js";

describe("WARREN_REDIS_URL", () => {
  it("reads one Redis, with TLS, credentials and a database", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6380")).toEqual({ kind: "standalone", node: { host: "127.0.0.1", port: 6380 }, db: 0, tls: false });
    expect(parseRedisUrl("rediss://warren:s%40cret@redis.example.com/2")).toEqual({
      kind: "standalone",
      node: { host: "redis.example.com", port: 6379 },
      db: 2,
      tls: true,
      username: "warren",
      password: "s@cret",
    });
    expect(parseRedisUrl("redis://:pw@[::1]:7000")).toMatchObject({ node: { host: "::1", port: 7000 }, password: "pw" });
    expect(parseRedisUrl("redis://pw@h")).toMatchObject({ password: "pw" });
  });

  it("reads Sentinel and Cluster forms", () => {
    expect(parseRedisUrl("redis+sentinel://:pw@s1,s2:26380/mymaster/3?sentinelPassword=sp")).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26380 },
      ],
      masterName: "mymaster",
      db: 3,
      tls: false,
      password: "pw",
      sentinelPassword: "sp",
    });
    expect(parseRedisUrl("rediss+cluster://n1:7000,n2:7001")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "n1", port: 7000 },
        { host: "n2", port: 7001 },
      ],
      tls: true,
    });
  });

  it("refuses what it cannot use, with a reason and never the password", () => {
    const cases: Array<[string, RegExp]> = [
      ["http://h:6379", /unknown scheme "http:\/\/"/],
      ["redis://", /at least one host/],
      ["redis://a,b", /one host only/],
      ["redis://h:99999", /out of range/],
      ["redis://h/x", /database "x"/],
      ["redis+sentinel://s1", /master name/],
      ["redis+cluster://n1/0", /no databases/],
      ["redis://h?foo=1", /unknown parameter "foo"/],
      ["localhost:6379", /not a Redis URL/],
    ];
    for (const [raw, message] of cases) expect(() => parseRedisUrl(raw), raw).toThrow(message);
    try {
      parseRedisUrl("redis://:topsecret@a,b");
    } catch (err) {
      expect((err as Error).message).not.toContain("topsecret");
    }
  });

  it("describes a target for logs without its password", () => {
    expect(describeRedisTarget(parseRedisUrl("rediss://u:pw@h:1/2"))).toBe("rediss://h:1/2");
    expect(describeRedisTarget(parseRedisUrl("redis+sentinel://:pw@s1,s2/m"))).toBe("redis+sentinel://s1:26379,s2:26379/m/0");
    expect(describeRedisTarget(parseRedisUrl("redis+cluster://n1:7000"))).toBe("redis+cluster://n1:7000");
  });
});
