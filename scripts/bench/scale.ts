import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, createWriteStream } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import type { SimulatorStatus } from "./agent-simulator.js";
import { benchNodeFlags, freePort, waitForPort } from "./processes.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";

/**
 * Scale: how many agents one server holds and what each costs, how fast 5,000 agents come
 * back after a server restart, and WebSocket echo latency with 1,000 open sockets.
 */

const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const CLUSTER_SECRET = "bench-cluster-secret-0123456789abcdef";
const KiB = 1024;

export async function benchScale(ctx: BenchContext): Promise<BenchSection> {
  const agents = Number(process.env["WARREN_BENCH_SCALE_AGENTS"] ?? (ctx.quick ? 500 : 5000));
  const parts = (process.env["WARREN_BENCH_SCALE_PARTS"] ?? "held,floor,storm,websocket").split(",");
  const rows: BenchRow[] = [];
  const notes: string[] = [
    `node ${process.version}; h2c on loopback; the simulated agents run the agent's own AgentRunner/AgentSession/TunnelPool with the default pool (min idle ${2}), in 2 processes on the same 2 cores as the server.`,
  ];
  const app = new Child("scale app", process.execPath, [`${ctx.root}dist/bench.cjs`, "--scale-app", String(await freePort())]);
  try {
    const appPort = Number((await app.waitFor(/scale app listening on (\d+)/))[1]);
    if (parts.includes("held")) await held(ctx, agents, appPort, rows, notes);
    if (parts.includes("floor")) await floor(ctx, agents, rows, notes);
    if (parts.includes("storm")) await storm(ctx, agents, appPort, rows, notes);
    if (parts.includes("websocket")) await websockets(ctx, appPort, rows, notes);
  } finally {
    await app.stop();
  }
  return { title: "Scale: agents held by one server, reconnect storm, WebSocket echo", rows, notes };
}

// ---------------------------------------------------------------------------------------------
// (a) agents held by one server

async function held(ctx: BenchContext, total: number, appPort: number, rows: BenchRow[], notes: string[]): Promise<void> {
  ctx.log(`scale: ${total} agents on one embedded server`);
  const server = await WarrenProcess.start(ctx, {});
  const sims: Simulator[] = [];
  try {
    const names = workspaceNames("held", total);
    const t0 = performance.now();
    const tokens = await createWorkspaces(server.httpPort, names, appPort);
    ctx.log(`scale: created ${total} workspaces in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    sims.push(...(await Simulator.startAll(ctx, server.agentPort, tokens, 2)));
    // Marginal cost: the first agents pay for code that runs once (lazy compilation, pools).
    const warm = Math.min(100, Math.floor(total / 10));
    await connect(sims, warm, server, 60_000);
    await settle();
    const before = await server.memory();
    const simBefore = sims.reduce((n, s) => n + s.status.rss, 0);
    ctx.log(`scale: ${warm} warm-up agents connected; server rss ${mib(before.rss)} MiB, heap ${mib(before.heapUsed)} MiB`);
    const t1 = performance.now();
    await connect(sims, total, server, 300_000, (n) => ctx.log(`scale: ${n} agents ready`));
    const connectSeconds = (performance.now() - t1) / 1000;
    await settle();
    const after = await server.memory();
    const simAfter = sims.reduce((n, s) => n + s.status.rss, 0);
    const stats = await server.tunnelStats();
    const n = total - warm;
    const per = (key: keyof MemoryFigures) => (after[key] - before[key]) / n / KiB;
    ctx.log(`scale: ${total} agents: server rss ${mib(after.rss)} MiB (+${per("rss").toFixed(1)} KiB/agent), heap ${mib(after.heapUsed)} MiB (+${per("heapUsed").toFixed(1)} KiB/agent)`);
    const idleCpu = await server.cpuPercent(ctx.quick ? 5000 : 15_000);
    ctx.log(`scale: server CPU while holding ${total} idle agents: ${idleCpu.toFixed(1)}% of one core`);
    // Over a whole ping interval (15 s): what housekeeping for thousands of agents does to a request.
    const latency = await requestLatencies(server.httpPort, names[Math.floor(total / 2)]!, appPort, ctx.quick ? 5 : 16);
    ctx.log(`scale: HTTP GET through one workspace while holding ${total} agents: ${latency.length} requests, p50 ${percentile(latency, 50).toFixed(2)} ms, p99 ${percentile(latency, 99).toFixed(2)} ms, max ${Math.max(...latency).toFixed(1)} ms`);
    const sample = sampleOf(names, ctx.quick ? 20 : 100);
    const probes = await probe(server.httpPort, sample, appPort);
    ctx.log(`scale: ${probes.ok}/${sample.length} sampled workspaces answered through the tunnel`);
    const breakdown = process.env["WARREN_BENCH_HEAP_SNAPSHOT"];
    if (breakdown) await server.heapSnapshot(breakdown);
    rows.push(
      { figure: "agents held by one server (default pool)", unit: "agents", values: { warren: stats.agents }, higherIsBetter: true },
      { figure: "idle tunnel streams parked", unit: "streams", values: { warren: stats.idleStreams }, higherIsBetter: true },
      { figure: "server RSS per agent (target < 64)", unit: "KiB", values: { warren: round(per("rss")) }, higherIsBetter: false },
      { figure: "server JS heap per agent (after GC)", unit: "KiB", values: { warren: round(per("heapUsed")) }, higherIsBetter: false },
      { figure: "server external + array buffers per agent", unit: "KiB", values: { warren: round(per("external")) }, higherIsBetter: false },
      { figure: `server CPU holding ${total} idle agents (embedded)`, unit: "% of a core", values: { warren: round(idleCpu) }, higherIsBetter: false },
      { figure: `HTTP GET through one workspace while holding ${total} agents, p99`, unit: "ms", values: { warren: round(percentile(latency, 99)) }, higherIsBetter: false },
      { figure: `HTTP GET through one workspace while holding ${total} agents, max`, unit: "ms", values: { warren: round(Math.max(...latency)) }, higherIsBetter: false },
      { figure: "agent side (simulator) RSS per agent", unit: "KiB", values: { simulator: round((simAfter - simBefore) / n / KiB) }, higherIsBetter: false },
      { figure: "agents connected per second (batches of 250)", unit: "agents/s", values: { warren: round(n / connectSeconds) }, higherIsBetter: true },
      { figure: "sampled workspaces answering through the tunnel", unit: "%", values: { warren: round((100 * probes.ok) / sample.length) }, higherIsBetter: true },
    );
    notes.push(
      `held: embedded server (embedded store in a fresh data directory), ${total} workspaces created first; per-agent figures are (after - before) / ${n}, where "before" has ${warm} warm-up agents connected; both after a full GC (inspector HeapProfiler.collectGarbage). Server totals with ${total} agents: RSS ${mib(after.rss)} MiB, heap ${mib(after.heapUsed)} MiB.`,
    );
    if (probes.failures.length > 0) notes.push(`held: probe failures: ${probes.failures.slice(0, 5).join("; ")}`);
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
    await server.stop();
  }
}

/**
 * The same measurement on a bare node:http2 server holding as many sessions of three open
 * streams (control + 2 idle), with Warren's settings: what node:http2 itself costs, which no
 * change to Warren's code can take away.
 */
async function floor(ctx: BenchContext, total: number, rows: BenchRow[], notes: string[]): Promise<void> {
  ctx.log(`scale: node:http2 floor, ${total} bare sessions of 3 streams`);
  const proc = new Child("h2 floor server", process.execPath, ["--inspect=127.0.0.1:0", `${ctx.root}dist/bench.cjs`, "--h2-floor-server"]);
  const clients: Child[] = [];
  try {
    const port = Number((await proc.waitFor(/h2 floor server listening on (\d+)/))[1]);
    const server = new InspectedProcess(proc, (await proc.waitFor(/Debugger listening on (ws:\/\/\S+)/))[1]!);
    const warm = Math.min(100, Math.floor(total / 10));
    const client = (count: number) => {
      const c = new Child("h2 floor client", process.execPath, [`${ctx.root}dist/bench.cjs`, "--h2-floor-client", String(port), String(count)]);
      clients.push(c);
      return c.waitFor(/h2 floor client ready/, 120_000);
    };
    await client(warm);
    await settle();
    const before = await server.memory();
    await Promise.all([client(Math.ceil((total - warm) / 2)), client(Math.floor((total - warm) / 2))]);
    await settle();
    const after = await server.memory();
    const per = (key: keyof MemoryFigures) => round((after[key] - before[key]) / (total - warm) / KiB);
    ctx.log(`scale: node:http2 floor: +${per("rss")} KiB RSS, +${per("heapUsed")} KiB heap per session`);
    rows.push(
      { figure: "node:http2 floor: RSS per bare session (3 open streams)", unit: "KiB", values: { "node:http2": per("rss") }, higherIsBetter: false },
      { figure: "node:http2 floor: JS heap per bare session", unit: "KiB", values: { "node:http2": per("heapUsed") }, higherIsBetter: false },
    );
    notes.push(
      "floor: a bare node:http2 server (scale-app.ts) with Warren's settings and windows, whose every stream is answered with headers and left open; clients open sessions of 3 streams with an agent's headers. Measured like the held row: marginal RSS and heap after a full GC.",
    );
  } finally {
    await Promise.all(clients.map((c) => c.stop("SIGKILL")));
    await proc.stop("SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------
// (b) reconnect storm

async function storm(ctx: BenchContext, total: number, appPort: number, rows: BenchRow[], notes: string[]): Promise<void> {
  ctx.log(`scale: reconnect storm with ${total} agents (cluster mode, Redis keeps the workspaces across the restart)`);
  const redisPort = await freePort();
  const redis = new Child("redis", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", mkdtempSync(join(tmpdir(), "warren-scale-redis-"))]);
  await waitForPort(redisPort, 10_000, "redis-server");
  // Same ports and id across the restart, as a restarted server would have.
  const ports = { http: await freePort(), agent: await freePort(), obs: await freePort(), private: await freePort() };
  const env = {
    WARREN_HTTP_ADDR: `127.0.0.1:${ports.http}`,
    WARREN_AGENT_ADDR: `127.0.0.1:${ports.agent}`,
    WARREN_OBSERVABILITY_ADDR: `127.0.0.1:${ports.obs}`,
    WARREN_PRIVATE_ADDR: `127.0.0.1:${ports.private}`,
    WARREN_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
    WARREN_SERVER_ID: "scale-storm",
    WARREN_DATA_DIR: mkdtempSync(join(tmpdir(), "warren-scale-data-")),
  };
  let server = await WarrenProcess.start(ctx, env);
  const sims: Simulator[] = [];
  try {
    const names = workspaceNames("storm", total);
    const tokens = await createWorkspaces(server.httpPort, names, appPort);
    sims.push(...(await Simulator.startAll(ctx, server.agentPort, tokens, 2)));
    await connect(sims, total, server, 300_000);
    await settle();
    const idleCpu = await server.cpuPercent(ctx.quick ? 5000 : 15_000);
    ctx.log(`scale: cluster-mode server CPU while holding ${total} idle agents: ${idleCpu.toFixed(1)}% of one core`);
    rows.push({ figure: `server CPU holding ${total} idle agents (cluster mode)`, unit: "% of a core", values: { warren: round(idleCpu) }, higherIsBetter: false });
    const signals: NodeJS.Signals[] = ctx.quick ? ["SIGTERM"] : ["SIGTERM", "SIGKILL"];
    for (const signal of signals) {
      await settle();
      const endsBefore = sims.reduce((n, s) => n + s.status.sessionEnds, 0);
      const reasonsBefore = endReasonsOf(sims);
      const commandsBefore = await redisCommandCalls(redisPort);
      ctx.log(`scale: ${total} agents serving; restarting the server (${signal})`);
      const t0 = performance.now();
      await server.kill(signal);
      const down = performance.now() - t0;
      server = await WarrenProcess.start(ctx, env);
      const up = performance.now() - t0;
      await waitServing(sims, server, total, 120_000, (s) => ctx.log(`scale: ${s.ready} agents welcomed again`));
      const recovered = performance.now() - t0;
      const commands = diffCalls(await redisCommandCalls(redisPort), commandsBefore);
      const commandTotal = Object.values(commands).reduce((a, b) => a + b, 0);
      ctx.log(`scale: ${signal}: Redis commands per agent during the restart: ${(commandTotal / total).toFixed(1)} (${Object.entries(commands).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${(v / total).toFixed(1)}`).join(", ")})`);
      const gaveUp = sims.reduce((n, s) => n + s.status.gaveUp, 0);
      const attempts = sims.reduce((n, s) => n + s.status.sessionEnds, 0) - endsBefore;
      const reasons = Object.entries(endReasonsOf(sims))
        .map(([reason, n]) => [reason, n - (reasonsBefore[reason] ?? 0)] as const)
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1]);
      const why = reasons.slice(0, 6).map(([reason, n]) => `${(n / total).toFixed(2)}/agent ${reason}`).join("; ");
      ctx.log(`scale: ${signal}: why sessions ended: ${why}`);
      notes.push(`storm (${signal}): why sessions ended, per agent: ${why}`);
      const sample = sampleOf(names, ctx.quick ? 20 : 100);
      const probes = await probe(server.httpPort, sample, appPort);
      ctx.log(`scale: ${signal}: all ${total} serving ${(recovered / 1000).toFixed(1)} s after the signal (old server gone after ${(down / 1000).toFixed(1)} s, new one ready after ${(up / 1000).toFixed(1)} s); ${gaveUp} gave up; ${probes.ok}/${sample.length} probes ok`);
      const what = signal === "SIGTERM" ? "graceful restart (SIGTERM)" : "crash (SIGKILL)";
      rows.push(
        { figure: `storm, ${what}: signal to all ${total} serving (target < 30)`, unit: "s", values: { warren: round(recovered / 1000) }, higherIsBetter: false },
        { figure: `storm, ${what}: old server exited to all serving`, unit: "s", values: { warren: round((recovered - down) / 1000) }, higherIsBetter: false },
        { figure: `storm, ${what}: new server ready to all serving`, unit: "s", values: { warren: round((recovered - up) / 1000) }, higherIsBetter: false },
        { figure: `storm, ${what}: agents that gave up`, unit: "agents", values: { warren: gaveUp }, higherIsBetter: false },
        { figure: `storm, ${what}: failed connection attempts per agent`, unit: "attempts", values: { warren: round(attempts / total) }, higherIsBetter: false },
        { figure: `storm, ${what}: sampled workspaces answering afterwards`, unit: "%", values: { warren: round((100 * probes.ok) / sample.length) }, higherIsBetter: true },
        { figure: `storm, ${what}: Redis commands per agent (shutdown, restart, reconnect)`, unit: "commands", values: { warren: round(commandTotal / total) }, higherIsBetter: false },
      );
      if (probes.failures.length > 0) notes.push(`storm (${signal}): probe failures: ${probes.failures.slice(0, 5).join("; ")}`);
    }
    notes.push(
      "storm: cluster mode with one server and a local redis-server, so workspaces and tokens survive the restart and agents come back with their own tokens; the new server listens on the same ports with the same server id. Serving = the server holds every agent with both idle streams parked and every simulated agent has its welcome. Agents reconnect with the shipped backoff (1 s to 20 s, factor 1.6, jitter 0.2; after a SERVER_DRAINING disconnect at once, within 0.5 s). SIGTERM is the shipped graceful drain: the old server keeps serving for WARREN_DRAIN_DELAY (default 5 s), then asks its agents to move and exits.",
    );
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
    await server.stop();
    await redis.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// (c) WebSocket echo with 1,000 open sockets

async function websockets(ctx: BenchContext, appPort: number, rows: BenchRow[], notes: string[]): Promise<void> {
  const sockets = Number(process.env["WARREN_BENCH_SCALE_SOCKETS"] ?? 1000);
  const workspaces = Number(process.env["WARREN_BENCH_SCALE_WS_AGENTS"] ?? 4);
  const seconds = ctx.quick ? 3 : 10;
  const rounds = ctx.quick ? 1 : 2;
  ctx.log(`scale: WebSocket echo, ${sockets} open sockets, direct vs Warren (${workspaces} workspaces, one warren-agent each)`);
  const server = await WarrenProcess.start(ctx, {});
  const agents: Child[] = [];
  const relays: Child[] = [];
  try {
    // Two plain relays in a row: the same number of processes and hops as server + agent.
    const relayB = new Child("relay", process.execPath, [`${ctx.root}dist/bench.cjs`, "--tcp-relay", String(await freePort()), String(appPort)]);
    relays.push(relayB);
    const relayBPort = Number((await relayB.waitFor(/tcp relay listening on (\d+)/))[1]);
    const relayA = new Child("relay", process.execPath, [`${ctx.root}dist/bench.cjs`, "--tcp-relay", String(await freePort()), String(relayBPort)]);
    relays.push(relayA);
    const relayAPort = Number((await relayA.waitFor(/tcp relay listening on (\d+)/))[1]);
    const names = workspaceNames("ws", workspaces);
    const tokens = await createWorkspaces(server.httpPort, names, appPort);
    for (const token of tokens) {
      const agent = new Child("agent", process.execPath, [...benchNodeFlags("agent"), `${ctx.root}dist/warren-agent.cjs`], {
        WARREN_SERVER: `http://127.0.0.1:${server.agentPort}`,
        WARREN_TOKEN: token,
        WARREN_LOG_LEVEL: "warn",
      });
      agents.push(agent);
    }
    await waitUntil(async () => (await server.tunnelStats()).agents === workspaces, 20_000, "agents connected");
    const targets = {
      direct: (_i: number) => ({ url: `ws://127.0.0.1:${appPort}/`, headers: {} }),
      "2 TCP relays": (_i: number) => ({ url: `ws://127.0.0.1:${relayAPort}/`, headers: {} }),
      warren: (i: number) => ({
        url: `ws://127.0.0.1:${server.httpPort}/`,
        headers: { host: `${appPort}-${names[i % workspaces]}.warren.localhost`, "x-warren-token": ADMIN_TOKEN },
      }),
    };
    const samples: Record<string, number[]> = { direct: [], "2 TCP relays": [], warren: [] };
    for (let round = 0; round < rounds; round++) {
      for (const [name, target] of Object.entries(targets)) {
        const result = await echoRound(sockets, target, seconds);
        samples[name]!.push(...result.rtts);
        ctx.log(`scale: websocket ${name}: ${result.rtts.length} echoes, p50 ${percentile(result.rtts, 50).toFixed(2)} ms, p90 ${percentile(result.rtts, 90).toFixed(2)} ms, p99 ${percentile(result.rtts, 99).toFixed(2)} ms, p99.9 ${percentile(result.rtts, 99.9).toFixed(2)} ms, max ${Math.max(...result.rtts).toFixed(1)} ms, ${result.late} late`);
      }
    }
    const ratios = [
      ["warren", "direct"],
      ["warren", "2 TCP relays"],
    ] as const;
    const p = (q: number) => Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round(percentile(v, q))]));
    const p99 = p(99);
    rows.push(
      { figure: `WebSocket echo round trip p50, ${sockets} open sockets`, unit: "ms", values: p(50), ratios, higherIsBetter: false },
      { figure: `WebSocket echo round trip p99, ${sockets} open sockets`, unit: "ms", values: p99, ratios, higherIsBetter: false },
      {
        figure: "WebSocket p99 minus direct (target for Warren < 2)",
        unit: "ms",
        values: { warren: round(p99["warren"]! - p99["direct"]!), "2 TCP relays": round(p99["2 TCP relays"]! - p99["direct"]!) },
        higherIsBetter: false,
      },
    );
    notes.push(
      `websocket: ${sockets} sockets open at once (through Warren: spread over ${workspaces} workspaces, each with its own warren-agent process), each sends a 32-byte message once a second at a random phase and waits for the echo; ${rounds} round(s) of ${seconds} s per rival, interleaved; client in the bench process (ws ${wsVersion(ctx.root)}). "2 TCP relays" is client -> relay -> relay -> app, two plain node TCP relays in their own processes: as many processes and loopback hops as client -> server -> agent -> app, and the floor for what those hops cost here.`,
    );
  } finally {
    await Promise.all([...agents, ...relays].map((a) => a.stop()));
    await server.stop();
  }
}

async function echoRound(
  count: number,
  target: (i: number) => { url: string; headers: Record<string, string> },
  seconds: number,
): Promise<{ rtts: number[]; late: number }> {
  const sockets: WebSocket[] = [];
  // Opened a few at a time: a burst of 1,000 upgrades is a different benchmark.
  for (let i = 0; i < count; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 50); j++) {
      const { url, headers } = target(j);
      const ws = new WebSocket(url, { headers, perMessageDeflate: false });
      sockets.push(ws);
      batch.push(
        new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
          ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
        }),
      );
    }
    await Promise.all(batch);
  }
  const rtts: number[] = [];
  let late = 0;
  let measuring = false;
  const payload = Buffer.alloc(32, 0x78);
  const timers: NodeJS.Timeout[] = [];
  for (const ws of sockets) {
    let sentAt = 0;
    ws.on("message", () => {
      if (measuring && sentAt > 0) rtts.push(performance.now() - sentAt);
      sentAt = 0;
    });
    const tick = () => {
      if (sentAt > 0) {
        late++;
        return;
      }
      sentAt = performance.now();
      ws.send(payload);
    };
    timers.push(
      setTimeout(() => {
        tick();
        timers.push(setInterval(tick, 1000));
      }, Math.random() * 1000),
    );
  }
  // One second of warm-up, then the measured window.
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  for (const t of timers) clearTimeout(t);
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once("close", () => resolve());
          ws.close();
          setTimeout(() => {
            ws.terminate();
            resolve();
          }, 2000).unref();
        }),
    ),
  );
  return { rtts, late };
}

// ---------------------------------------------------------------------------------------------
// processes

/** A child process whose output is kept (the tail) and always drained. */
class Child {
  readonly child: ChildProcess;
  readonly #tail: string[] = [];

  constructor(readonly name: string, command: string, args: string[], env: Record<string, string> = {}) {
    // Thousands of sockets: raise the descriptor limit as far as the hard limit allows (we may be root).
    const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';
    this.child = spawn("sh", ["-c", script, "sh", command, ...args], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    // WARREN_BENCH_SCALE_LOG_DIR keeps every line of every process (for reading timings afterwards).
    const dir = process.env["WARREN_BENCH_SCALE_LOG_DIR"];
    const file = dir ? createWriteStream(join(dir, `${name.replace(/\W+/g, "-")}-${this.child.pid}.log`)) : undefined;
    const keep = (c: Buffer) => {
      this.#tail.push(c.toString());
      if (this.#tail.length > 400) this.#tail.splice(0, 200);
      file?.write(c);
    };
    this.child.stdout!.on("data", keep);
    this.child.stderr!.on("data", keep);
    this.child.stdin!.on("error", () => {});
  }

  get output(): string {
    return this.#tail.join("");
  }

  waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return waitUntil(async () => pattern.exec(this.output) ?? undefined, timeoutMs, `${this.name}: ${pattern}`, () => this.output.slice(-2000), this.child);
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

interface MemoryFigures {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
}

/** warren-server with the inspector on, so that the bench can collect garbage and read its memory. */
/** A node process with the inspector on, so that the bench can collect garbage and read its memory. */
class InspectedProcess {
  constructor(
    readonly proc: Child,
    readonly inspectorUrl: string,
  ) {}

  /** CPU time (user + system) of the server over `ms`, as a percentage of one core. */
  async cpuPercent(ms: number): Promise<number> {
    const ticks = () => {
      const fields = readFileSync(`/proc/${this.proc.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
    };
    const t0 = performance.now();
    const c0 = ticks();
    await new Promise((r) => setTimeout(r, ms));
    return ((ticks() - c0) / 100 / ((performance.now() - t0) / 1000)) * 100;
  }

  /** Memory after a full GC: RSS from /proc, heap and external from process.memoryUsage(). */
  async memory(): Promise<MemoryFigures> {
    const usage = await this.#inspect(async (call) => {
      await call("HeapProfiler.collectGarbage");
      await call("HeapProfiler.collectGarbage");
      const r = (await call("Runtime.evaluate", { expression: "process.memoryUsage()", returnByValue: true })) as { result: { value: NodeJS.MemoryUsage } };
      return r.result.value;
    });
    const status = readFileSync(`/proc/${this.proc.child.pid}/status`, "utf8");
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * KiB;
    return { rss, heapUsed: usage.heapUsed, external: usage.external + usage.arrayBuffers };
  }

  /** Writes a heap snapshot (for the profile in docs/benchmarks.md). */
  async heapSnapshot(dir: string): Promise<void> {
    const file = join(dir, `warren-server-${Date.now()}.heapsnapshot`);
    const out = createWriteStream(file);
    await this.#inspect(async (call, on) => {
      on("HeapProfiler.addHeapSnapshotChunk", (p) => out.write((p as { chunk: string }).chunk));
      await call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    });
    await new Promise((r) => out.end(r));
  }

  async #inspect<T>(
    body: (call: (method: string, params?: object) => Promise<unknown>, on: (event: string, handler: (params: unknown) => void) => void) => Promise<T>,
  ): Promise<T> {
    const ws = new WebSocket(this.inspectorUrl, { perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    let id = 0;
    const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
    const handlers = new Map<string, (params: unknown) => void>();
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: unknown };
      if (m.id !== undefined) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.error) p?.reject(new Error(m.error.message));
        else p?.resolve(m.result);
      } else if (m.method) handlers.get(m.method)?.(m.params);
    });
    try {
      return await body(
        (method, params) =>
          new Promise((resolve, reject) => {
            pending.set(++id, { resolve, reject });
            ws.send(JSON.stringify({ id, method, params }));
          }),
        (event, handler) => handlers.set(event, handler),
      );
    } finally {
      ws.close();
    }
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    await this.proc.stop(signal);
  }

  /** Graceful, so that a --cpu-prof run writes its profile; killed after 15 s. */
  async stop(): Promise<void> {
    await this.proc.stop("SIGTERM");
  }
}

/** warren-server with the inspector on. */
class WarrenProcess extends InspectedProcess {
  constructor(
    proc: Child,
    inspectorUrl: string,
    readonly httpPort: number,
    readonly agentPort: number,
    readonly obsPort: number,
  ) {
    super(proc, inspectorUrl);
  }

  static async start(ctx: BenchContext, env: Record<string, string>): Promise<WarrenProcess> {
    const flags = benchNodeFlags("server");
    // Another build of the server to compare with (e.g. a checkout of an older commit).
    const bundle = process.env["WARREN_BENCH_SERVER_BUNDLE"] ?? `${ctx.root}dist/warren-server.cjs`;
    const proc = new Child("warren-server", process.execPath, [...flags, "--inspect=127.0.0.1:0", bundle], {
      WARREN_HTTP_ADDR: "127.0.0.1:0",
      WARREN_AGENT_ADDR: "127.0.0.1:0",
      WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
      WARREN_SSH_ADDR: "off",
      WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
      WARREN_LOG_LEVEL: "info",
      // A data directory of its own: never the user's (a second run would find the first's workspaces).
      WARREN_DATA_DIR: mkdtempSync(join(tmpdir(), "warren-scale-data-")),
      ...env,
    });
    const ready = await proc.waitFor(/\{[^\n]*"msg":"warren server ready"[^\n]*\}/, 60_000);
    const line = JSON.parse(ready[0]) as Record<string, string>;
    const port = (v: string | undefined) => Number(String(v).split(":").pop());
    const inspector = await proc.waitFor(/Debugger listening on (ws:\/\/\S+)/);
    return new WarrenProcess(proc, inspector[1]!, port(line["http"]), port(line["agent"]), port(line["observability"]));
  }

  async tunnelStats(): Promise<{ agents: number; idleStreams: number }> {
    const text = await httpGet(this.obsPort, "/metrics", "127.0.0.1");
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    return { agents: value(/^warren_agents_connected (\d+)/m), idleStreams: value(/^warren_tunnel_streams\{state="idle"\} (\d+)/m) };
  }
}


/** The simulators' session-end reasons, added up. */
function endReasonsOf(sims: Simulator[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const sim of sims) for (const [reason, n] of Object.entries(sim.status.endReasons ?? {})) sum[reason] = (sum[reason] ?? 0) + n;
  return sum;
}

/** A process of simulated agents (agent-simulator.ts). */
class Simulator {
  #status: SimulatorStatus = { sim: "status", started: 0, ready: 0, gaveUp: 0, sessionEnds: 0, welcomes: 0, endReasons: {}, rss: 0, heapUsed: 0 };
  readonly tokens: number;

  private constructor(readonly proc: Child, tokens: number) {
    this.tokens = tokens;
    createInterface({ input: proc.child.stdout! }).on("line", (line) => {
      if (!line.startsWith('{"sim"')) return;
      this.#status = JSON.parse(line) as SimulatorStatus;
    });
  }

  static async startAll(ctx: BenchContext, agentPort: number, tokens: string[], processes: number): Promise<Simulator[]> {
    const dir = mkdtempSync(join(tmpdir(), "warren-scale-tokens-"));
    const sims: Simulator[] = [];
    for (let p = 0; p < processes; p++) {
      const mine = tokens.filter((_t, i) => i % processes === p);
      const file = join(dir, `tokens-${p}`);
      writeFileSync(file, mine.join("\n") + "\n");
      const proc = new Child("agent simulator", process.execPath, [`${ctx.root}dist/bench.cjs`, "--simulate-agents", "--server", `http://127.0.0.1:${agentPort}`, "--tokens", file]);
      sims.push(new Simulator(proc, mine.length));
    }
    await waitUntil(async () => sims.every((s) => s.proc.output.includes('"sim"')), 20_000, "simulators started");
    return sims;
  }

  /** Its latest status; throws when the process died (an agent crashed it). */
  get status(): SimulatorStatus {
    if (this.proc.child.exitCode !== null) throw new Error(`agent simulator exited (${this.proc.child.exitCode}): ${this.proc.output.slice(-1500)}`);
    return this.#status;
  }

  /** Starts agents until `count` run in this process. */
  startUpTo(count: number): void {
    const more = Math.min(count, this.tokens) - this.#status.started;
    if (more > 0) this.proc.child.stdin!.write(`${JSON.stringify({ cmd: "start", count: more })}\n`);
  }

  async stop(): Promise<void> {
    if (this.proc.child.exitCode !== null) return;
    this.proc.child.stdin!.end(`${JSON.stringify({ cmd: "stop" })}\n`);
    const timer = setTimeout(() => void this.proc.stop("SIGKILL"), 10_000);
    await new Promise((r) => (this.proc.child.exitCode !== null ? r(undefined) : this.proc.child.once("exit", r)));
    clearTimeout(timer);
  }
}

/** Starts agents in batches of 250 until `total` are connected and serving. */
async function connect(sims: Simulator[], total: number, server: WarrenProcess, timeoutMs: number, progress?: (n: number) => void): Promise<void> {
  const batch = 250;
  const started = () => sims.reduce((n, s) => n + s.status.started, 0);
  for (let target = Math.min(total, started() + batch); ; target = Math.min(total, target + batch)) {
    sims.forEach((s, i) => s.startUpTo(Math.floor(target / sims.length) + (i < target % sims.length ? 1 : 0)));
    await waitUntil(async () => sims.reduce((n, s) => n + s.status.ready, 0) >= target || undefined, timeoutMs, `${target} agents ready`);
    if (target % 1000 === 0) progress?.(target);
    if (target >= total) break;
  }
  await waitServing(sims, server, total, timeoutMs);
}

/** Until the server holds `total` agents with every idle stream parked, and every agent is welcomed. */
async function waitServing(
  sims: Simulator[],
  server: WarrenProcess,
  total: number,
  timeoutMs: number,
  progress?: (s: { ready: number }) => void,
): Promise<void> {
  let last = 0;
  await waitUntil(
    async () => {
      const ready = sims.reduce((n, s) => n + s.status.ready, 0);
      if (progress && performance.now() - last > 5000) {
        last = performance.now();
        progress({ ready });
      }
      // The server is asked only once every agent says it is welcomed: a scrape of /metrics
      // with thousands of sockets open costs the server several milliseconds.
      if (ready < total) return undefined;
      let stats = { agents: 0, idleStreams: 0 };
      try {
        stats = await server.tunnelStats();
      } catch {
        // Not listening yet.
      }
      return (stats.agents >= total && stats.idleStreams >= 2 * total) || undefined;
    },
    timeoutMs,
    `${total} agents serving`,
    undefined,
    undefined,
    100,
  );
}

// ---------------------------------------------------------------------------------------------
// helpers

function workspaceNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_v, i) => `${prefix}-${String(i).padStart(5, "0")}`);
}

function sampleOf<T>(items: readonly T[], count: number): T[] {
  const step = Math.max(1, Math.floor(items.length / count));
  return items.filter((_v, i) => i % step === 0).slice(0, count);
}

/** Creates the workspaces through the API, 32 requests at a time; returns their agent tokens in order. */
async function createWorkspaces(httpPort: number, names: string[], appPort: number): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const tokens: string[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      const body = JSON.stringify({ name: names[i], ports: [{ port: appPort }] });
      const text = await httpRequest({ port: httpPort, method: "POST", path: "/warren.v1.WorkspaceService/CreateWorkspace", agent, headers: { host: "warren.localhost", authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" } }, body);
      tokens[i] = (JSON.parse(text) as { agentToken: string }).agentToken;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  agent.destroy();
  return tokens;
}

/** GET / of each workspace through the front door. */
async function probe(httpPort: number, names: string[], appPort: number): Promise<{ ok: number; failures: string[] }> {
  let ok = 0;
  const failures: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      try {
        const text = await httpRequest({ port: httpPort, method: "GET", path: "/", agent: false, headers: { host: `${appPort}-${name}.warren.localhost`, "x-warren-token": ADMIN_TOKEN } });
        if (text === "hello, world\n") ok++;
        else failures.push(`${name}: ${text.slice(0, 100)}`);
      } catch (err) {
        failures.push(`${name}: ${(err as Error).message}`);
      }
    }),
  );
  return { ok, failures };
}

/** One keep-alive connection, a GET every 5 ms (after the previous answer), for `seconds`: latencies in ms. */
async function requestLatencies(httpPort: number, name: string, appPort: number, seconds: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const headers = { host: `${appPort}-${name}.warren.localhost`, "x-warren-token": ADMIN_TOKEN };
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  try {
    while (performance.now() < end) {
      const t0 = performance.now();
      await httpRequest({ port: httpPort, method: "GET", path: "/", agent, headers });
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    agent.destroy();
  }
  return latencies;
}

/** Calls per command since Redis started (INFO commandstats), over a raw connection. */
async function redisCommandCalls(port: number): Promise<Record<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("INFO commandstats\r\n"));
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => {
      data += c;
      const header = /^\$(\d+)\r\n/.exec(data);
      if (header && Buffer.byteLength(data) >= header[0].length + Number(header[1]) + 2) {
        socket.destroy();
        resolve(data);
      }
    });
    socket.on("error", reject);
  });
  const calls: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_(\S+?):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

function diffCalls(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0 && k !== "info") diff[k] = v - (before[k] ?? 0);
  return diff;
}

function httpRequest(options: http.RequestOptions, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", timeout: 30_000, ...options }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${options.method} ${options.path}: ${res.statusCode} ${text.slice(0, 200)}`))));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

function httpGet(port: number, path: string, host: string): Promise<string> {
  return httpRequest({ port, method: "GET", path, agent: false, headers: { host } });
}

async function waitUntil<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
  detail?: () => string,
  child?: ChildProcess,
  pollMs = 50,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (child && child.exitCode !== null) throw new Error(`process exited while waiting for ${what}: ${detail?.() ?? ""}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}${detail ? `: ${detail()}` : ""}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Lets connections finish their handshakes and timers fire before measuring. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 2000));
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function round(v: number): number {
  return Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100;
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

function wsVersion(root: string): string {
  return (JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { dependencies: Record<string, string> }).dependencies["ws"] ?? "?";
}
