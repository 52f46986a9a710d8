/**
 * WARREN_REDIS_URL: one setting for the three ways to run Redis.
 *
 *   redis://[[user]:password@]host[:6379][/db]                 one Redis (rediss:// for TLS)
 *   redis+sentinel://[[user]:password@]h1[:26379],h2/<master>[/db][?sentinelPassword=...]
 *   redis+cluster://[[user]:password@]h1[:6379],h2[:6379]       Redis Cluster
 *
 * `rediss+sentinel://` and `rediss+cluster://` use TLS. The user and password are Redis's
 * (ACL or requirepass); Sentinel's own password goes in the query.
 */

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

interface Credentials {
  readonly username?: string;
  readonly password?: string;
  readonly tls: boolean;
}

export type RedisTarget =
  | (Credentials & { readonly kind: "standalone"; readonly node: RedisNode; readonly db: number })
  | (Credentials & {
      readonly kind: "sentinel";
      readonly sentinels: readonly RedisNode[];
      readonly masterName: string;
      readonly db: number;
      readonly sentinelPassword?: string;
    })
  | (Credentials & { readonly kind: "cluster"; readonly nodes: readonly RedisNode[] });

const SCHEMES: Record<string, { kind: RedisTarget["kind"]; tls: boolean; defaultPort: number }> = {
  redis: { kind: "standalone", tls: false, defaultPort: 6379 },
  rediss: { kind: "standalone", tls: true, defaultPort: 6379 },
  "redis+sentinel": { kind: "sentinel", tls: false, defaultPort: 26379 },
  "rediss+sentinel": { kind: "sentinel", tls: true, defaultPort: 26379 },
  "redis+cluster": { kind: "cluster", tls: false, defaultPort: 6379 },
  "rediss+cluster": { kind: "cluster", tls: true, defaultPort: 6379 },
};

const FORMS = "redis://host:6379, rediss://, redis+sentinel://host:26379,host2:26379/<master>, redis+cluster://host:6379,host2:6379";

/** Parses WARREN_REDIS_URL; throws an Error whose message says what is wrong (never echoing the password). */
export function parseRedisUrl(raw: string): RedisTarget {
  const m = /^([a-z+]+):\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(raw.trim());
  if (!m) throw new Error(`not a Redis URL; use one of ${FORMS}`);
  const scheme = SCHEMES[m[1]!.toLowerCase()];
  if (!scheme) throw new Error(`unknown scheme "${m[1]}://"; use one of ${FORMS}`);
  const credentials = parseUserInfo(m[2]);
  const hosts = (m[3] ?? "").split(",").map((h) => h.trim());
  if (hosts.length === 0 || hosts.some((h) => h === "")) throw new Error("needs at least one host");
  const nodes = hosts.map((h) => parseNode(h, scheme.defaultPort));
  const path = (m[4] ?? "").split("/").filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(m[5] ?? "");
  for (const key of query.keys()) {
    if (key !== "sentinelPassword" || scheme.kind !== "sentinel") throw new Error(`unknown parameter "${key}"`);
  }
  const base = { ...credentials, tls: scheme.tls };
  switch (scheme.kind) {
    case "standalone": {
      if (nodes.length > 1) throw new Error("one host only; for several use redis+sentinel:// or redis+cluster://");
      if (path.length > 1) throw new Error("the path is the database number only, e.g. /0");
      return { ...base, kind: "standalone", node: nodes[0]!, db: parseDb(path[0]) };
    }
    case "sentinel": {
      if (path.length < 1 || path.length > 2) throw new Error("the path is /<master name>[/<db>], e.g. redis+sentinel://s1:26379,s2:26379/mymaster");
      const sentinelPassword = query.get("sentinelPassword") ?? undefined;
      return {
        ...base,
        kind: "sentinel",
        sentinels: nodes,
        masterName: path[0]!,
        db: parseDb(path[1]),
        ...(sentinelPassword ? { sentinelPassword } : {}),
      };
    }
    case "cluster": {
      if (path.length > 0) throw new Error("Redis Cluster has no databases: remove the path");
      return { ...base, kind: "cluster", nodes };
    }
  }
}

function parseUserInfo(info: string | undefined): { username?: string; password?: string } {
  if (!info) return {};
  const colon = info.indexOf(":");
  const user = decodeURIComponent(colon >= 0 ? info.slice(0, colon) : info);
  const password = colon >= 0 ? decodeURIComponent(info.slice(colon + 1)) : undefined;
  // redis://:password@host is the classic requirepass form; redis://password@host is not a user.
  if (password === undefined) return { password: user };
  return { ...(user ? { username: user } : {}), ...(password ? { password } : {}) };
}

function parseNode(raw: string, defaultPort: number): RedisNode {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(raw);
  if (!m) throw new Error(`"${raw}" is not host or host:port`);
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range 1-65535`);
  return { host: m[1] ?? m[2]!, port };
}

function parseDb(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 0;
  if (!/^\d{1,2}$/.test(raw)) throw new Error(`database "${raw}" is not a number 0-99`);
  return Number(raw);
}

/** The target for logs: hosts and kind, never the password. */
export function describeRedisTarget(target: RedisTarget): string {
  const scheme = target.kind === "standalone" ? (target.tls ? "rediss" : "redis") : `${target.tls ? "rediss" : "redis"}+${target.kind}`;
  const nodes = target.kind === "standalone" ? [target.node] : target.kind === "sentinel" ? target.sentinels : target.nodes;
  const hosts = nodes.map((n) => `${n.host.includes(":") ? `[${n.host}]` : n.host}:${n.port}`).join(",");
  const path = target.kind === "sentinel" ? `/${target.masterName}/${target.db}` : target.kind === "standalone" ? `/${target.db}` : "";
  return `${scheme}://${hosts}${path}`;
}
