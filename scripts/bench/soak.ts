import { FaultCluster, type FaultReport } from "../../test/harness/fault-cluster.js";
import type { LoadSummary } from "../../test/harness/checked-load.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";

/**
 * The soak: the fault suite's cluster (two servers, Redis, two workspaces, checked load of
 * every kind through a load balancer that follows /readyz) under random faults, one at a time,
 * for `--duration` (default 30m). Prints, per fault: requests attempted, ok, failed by status,
 * hung, misrouted, corrupt, the longest recovery, and the servers' largest RSS and descriptor
 * counts measured after it.
 */

const DEFAULT_DURATION_MS = 30 * 60_000;

type Fault = (c: FaultCluster) => Promise<FaultReport>;

const FAULTS: ReadonlyArray<readonly [string, Fault]> = [
  ["SIGTERM server 0", (c) => c.sigterm(0)],
  ["SIGTERM server 1", (c) => c.sigterm(1)],
  ["kill -9 of the agent's server", (c) => c.kill9Holder()],
  ["Redis SIGSTOP 5 s", (c) => c.redisStop(5000)],
  ["agent SIGSTOP 10 s", (c) => c.agentStop(10_000)],
  ["agent kill -9", (c) => c.agentKill()],
  ["app down 30 s", (c) => c.appDown()],
  ["burst of 300 slow requests", (c) => c.burst(300)],
  ["10 slow clients", (c) => c.slowClients(10)],
];

/** One fault's totals over the soak: the checked load's counts, summed, and what the fault cost. */
interface Tally extends Pick<LoadSummary, "attempted" | "ok" | "failed" | "hung" | "misrouted" | "corrupt" | "retried"> {
  runs: number;
  recoveryMs: number;
  rssMb: number;
  fds: number;
}

function durationArg(): number {
  const args = process.argv;
  const at = args.indexOf("--duration");
  if (at < 0) return DEFAULT_DURATION_MS;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(args[at + 1] ?? "");
  if (!m) throw new Error(`--duration takes a duration such as 30m, 300s or 1h, not "${args[at + 1] ?? ""}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "m") as "ms" | "s" | "m" | "h"];
  return Number(m[1]) * unit;
}

export async function benchSoak(ctx: BenchContext): Promise<BenchSection> {
  const durationMs = ctx.quick ? 120_000 : durationArg();
  const random = Math.random;
  const cluster = await FaultCluster.start({ appDownMs: 30_000 });
  const tallies = new Map<string, Tally>();
  const startedAt = Date.now();
  let before;
  let after;
  try {
    cluster.load.start();
    before = await cluster.quietFootprint();
    while (Date.now() - startedAt < durationMs) {
      const [name, fault] = FAULTS[Math.floor(random() * FAULTS.length)]!;
      ctx.log(`soak: ${name} (${Math.round((Date.now() - startedAt) / 1000)} s of ${Math.round(durationMs / 1000)} s)`);
      const report = await fault(cluster);
      const footprint = await cluster.footprint();
      const t = tallies.get(name) ?? { runs: 0, attempted: 0, ok: 0, failed: {}, hung: 0, misrouted: 0, corrupt: 0, retried: 0, recoveryMs: 0, rssMb: 0, fds: 0 };
      // A fault's own requests (burst, slow clients) count with the load's.
      for (const s of [report.all, ...(report.own ? [report.own] : [])]) {
        t.attempted += s.attempted;
        t.ok += s.ok;
        t.hung += s.hung;
        t.misrouted += s.misrouted;
        t.corrupt += s.corrupt;
        t.retried += s.retried;
        for (const [k, v] of Object.entries(s.failed)) t.failed[k] = (t.failed[k] ?? 0) + v;
      }
      t.runs++;
      t.recoveryMs = Math.max(t.recoveryMs, report.recoveryMs);
      for (const s of Object.values(footprint.servers)) {
        t.rssMb = Math.max(t.rssMb, s.rssMb);
        t.fds = Math.max(t.fds, s.fds);
      }
      tallies.set(name, t);
      // Calm between faults: the load goes on.
      await new Promise((r) => setTimeout(r, 2000));
    }
    after = await cluster.quietFootprint();
  } finally {
    await cluster.stop();
  }
  const statuses = [...new Set([...tallies.values()].flatMap((t) => Object.keys(t.failed)))].sort();
  const rows: BenchRow[] = [...tallies.entries()].map(([name, t]) => ({
    figure: name,
    unit: "count",
    values: {
      runs: t.runs,
      attempted: t.attempted,
      ok: t.ok,
      ...Object.fromEntries(statuses.map((s) => [`failed ${s}`, t.failed[s] ?? 0])),
      hung: t.hung,
      misrouted: t.misrouted,
      corrupt: t.corrupt,
      "retried (reused connection reset)": t.retried,
      "recovery ms (max)": t.recoveryMs,
      "RSS MiB (max)": t.rssMb,
      "fds (max)": t.fds,
    },
    higherIsBetter: false,
  }));
  const quiet = (f: typeof before) => Object.entries(f?.servers ?? {}).map(([id, s]) => `${id} ${s.fds} fds ${s.rssMb} MiB`).join(", ");
  return {
    title: `Soak: random faults for ${Math.round((Date.now() - startedAt) / 60_000)} min`,
    rows,
    notes: [
      "Two servers, Redis, two workspaces; checked load (2 keep-alive, 1 new-connection, 1 upload of 256 KiB, 1 download of 1 MiB, 1 slow (1 s) worker, 2 WebSockets) through a load balancer that follows /readyz; every answer checked for its app and bytes.",
      "Counts are of everything the load saw from a fault's start to the end of its recovery window (the fault's own burst or slow-client requests included). Recovery: from the fault's undoing (its start for a graceful one) to the last failure. RSS and descriptors: the larger server, measured after each fault under load.",
      `Quiet footprint (load stopped, idle connections timed out): before ${quiet(before)}; after ${quiet(after)}.`,
    ],
  };
}
