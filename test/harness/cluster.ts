import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { freePort } from "./apps.js";
import { Proc } from "./processes.js";
import { tempDir } from "./temp-dirs.js";
import { startServer, type ServerHandle } from "./warren.js";

export const CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef";

/** A redis-server of its own for one test file: free port, no persistence. */
export interface RedisHandle {
  readonly port: number;
  readonly url: string;
  readonly proc: Proc;
  /** Runs redis-cli against it and returns stdout (trimmed). */
  cli(...args: string[]): string;
  /** SIGSTOP: Redis stops answering but keeps its connections (the nastier outage). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

function redisServerBinary(): string {
  for (const candidate of ["redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server"]) {
    if (spawnSync(candidate, ["--version"]).status === 0) return candidate;
  }
  throw new Error("redis-server is missing: run ./scripts/test.sh, which installs it (Debian package redis-server)");
}

/** Starts redis-server on a free port and waits until it answers PING. */
export async function startRedis(port?: number, extraArgs: string[] = []): Promise<RedisHandle> {
  const p = port ?? (await freePort());
  const dir = tempDir("warren-redis-");
  const proc = new Proc(
    redisServerBinary(),
    ["--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no", "--loglevel", "warning", ...extraArgs],
    process.env,
  );
  const deadline = Date.now() + 10_000;
  while (!(await ping(p))) {
    if (Date.now() > deadline || proc.child.exitCode !== null) throw new Error(`redis-server did not start on port ${p}:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    proc,
    cli: (...args) => {
      const r = spawnSync("redis-cli", ["-p", String(p), ...args], { encoding: "utf8", timeout: 5000 });
      return (r.stdout ?? "").trim();
    },
    pause: () => proc.kill("SIGSTOP"),
    resume: () => proc.kill("SIGCONT"),
    stop: async () => {
      proc.kill("SIGCONT");
      await proc.stop(5000);
    },
  };
}

/** A raw PING: resolves true when Redis answers +PONG within a second. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

/** A Sentinel watching `master` as "mymaster" (quorum 1). */
export async function startRedisSentinel(master: RedisHandle): Promise<{ port: number; url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = tempDir("warren-sentinel-");
  const conf = join(dir, "sentinel.conf");
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const proc = new Proc(redisServerBinary(), [conf, "--sentinel"], process.env);
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (Date.now() > deadline || proc.child.exitCode !== null) throw new Error(`redis sentinel did not start:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, url: `redis+sentinel://127.0.0.1:${port}/mymaster`, stop: () => proc.stop(5000) };
}

/** A three-master Redis Cluster (no replicas), ready to serve every slot. */
export async function startRedisCluster(): Promise<{ url: string; nodes: RedisHandle[]; stop(): Promise<void> }> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const nodes: RedisHandle[] = [];
  for (const port of ports) nodes.push(await startRedis(port, ["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`]));
  const r = spawnSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"], {
    encoding: "utf8",
    timeout: 20_000,
  });
  if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stdout}${r.stderr}`);
  const deadline = Date.now() + 15_000;
  while (!nodes.every((n) => /cluster_state:ok/.test(n.cli("CLUSTER", "INFO")))) {
    if (Date.now() > deadline) throw new Error("Redis Cluster did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

export interface ClusterServerHandle extends ServerHandle {
  readonly id: string;
  readonly privatePort: number;
}

/** Starts one warren-server in cluster mode (private listener on a free port) and waits until it is ready. */
export async function startClusterServer(redis: { url: string }, id: string, env: Record<string, string | undefined> = {}): Promise<ClusterServerHandle> {
  const server = await startServer({
    WARREN_REDIS_URL: redis.url,
    WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
    WARREN_PRIVATE_ADDR: "127.0.0.1:0",
    WARREN_SERVER_ID: id,
    ...env,
  });
  const ready = await server.proc.waitFor((l) => l.msg === "warren server ready");
  const privatePort = Number(String(ready["private"]).split(":").pop());
  return { ...server, id, privatePort };
}

/** Starts `ids.length` servers of one cluster, two at a time (a 2-core machine). */
export async function startCluster(redis: { url: string }, ids: string[], env: Record<string, string | undefined> = {}): Promise<ClusterServerHandle[]> {
  const out: ClusterServerHandle[] = [];
  for (let i = 0; i < ids.length; i += 2) {
    out.push(...(await Promise.all(ids.slice(i, i + 2).map((id) => startClusterServer(redis, id, env)))));
  }
  return out;
}

/** WARREN_SERVER for an agent that knows every server of the cluster. */
export function agentServerList(servers: ReadonlyArray<{ agentUrl: string }>): string {
  return servers.map((s) => s.agentUrl).join(",");
}
