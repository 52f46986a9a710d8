// npm run bench -- --only soak [--duration 30m]: random faults on a cluster under checked load (scripts/bench/soak.ts).
// npm run bench [-- --quick] [-- --only tunnel,cluster,ssh,port-forward,agent-binary,transports,scale,store,workbench]: starts
// everything it needs, measures Warren against a direct connection and OpenSSH's reverse tunnel
// in one run (tunnel), the cross-server path (cluster), the SSH front door (ssh), `warren
// port-forward` against `ssh -L` (port-forward), the agent
// binary (agent-binary) and Warren's gRPC framing against grpc-js and connect-node
// (transports), thousands of agents on one server (scale), the embedded store against memory
// while the API writes (store), a VS Code workbench load in Chromium directly, over HTTP/1.1 and
// over HTTP/2 through Warren (workbench), prints a table with the
// ratios and writes it as JSON under .bench/ for comparison between commits.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { runBenchApp } from "./bench/bench-app.js";
import { ensureCommands } from "./bench/processes.js";
import type { BenchContext, BenchSection } from "./bench/report.js";
import { benchAgentBinary } from "./bench/agent-binary.js";
import { runAgentSimulator } from "./bench/agent-simulator.js";
import { benchCluster } from "./bench/cluster.js";
import { runH2FloorClient, runH2FloorServer, runScaleApp, runTcpRelay } from "./bench/scale-app.js";
import { benchScale } from "./bench/scale.js";
import { benchSoak } from "./bench/soak.js";
import { benchSsh } from "./bench/ssh.js";
import { benchPortForward } from "./bench/port-forward.js";
import { benchStore } from "./bench/store.js";
import { runTransportRole } from "./bench/transport-peers.js";
import { benchTransports } from "./bench/transports.js";
import { benchTunnel } from "./bench/tunnel.js";
import { benchWorkbench, runWorkbenchApp } from "./bench/workbench.js";

const SECTIONS: Record<string, (ctx: BenchContext) => Promise<BenchSection>> = {
  tunnel: benchTunnel,
  cluster: benchCluster,
  ssh: benchSsh,
  "port-forward": benchPortForward,
  "agent-binary": benchAgentBinary,
  transports: benchTransports,
  scale: benchScale,
  store: benchStore,
  workbench: benchWorkbench,
};

/** Run only when named (`--only soak`): it lasts `--duration` (default 30m). */
const ON_REQUEST: Record<string, (ctx: BenchContext) => Promise<BenchSection>> = {
  soak: benchSoak,
};

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function printSection(section: BenchSection): void {
  process.stdout.write(`\n## ${section.title}\n\n`);
  const rivals = [...new Set(section.rows.flatMap((r) => Object.keys(r.values)))];
  const ratioCols = [...new Set(section.rows.flatMap((r) => (r.ratios ?? []).map(([a, b]) => `${a}/${b}`)))];
  const header = ["figure", "unit", ...rivals, ...ratioCols];
  const lines = section.rows.map((r) => [
    r.figure,
    r.unit,
    ...rivals.map((name) => (r.values[name] === undefined ? "" : fmt(r.values[name]!))),
    ...ratioCols.map((col) => {
      const [a, b] = col.split("/") as [string, string];
      const x = r.values[a];
      const y = r.values[b];
      return x !== undefined && y !== undefined && y !== 0 ? `${(x / y).toFixed(2)}x` : "";
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |\n`;
  process.stdout.write(row(header));
  process.stdout.write(row(widths.map((w) => "-".repeat(w))));
  for (const l of lines) process.stdout.write(row(l));
  for (const note of section.notes ?? []) process.stdout.write(`\n${note}\n`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const appIndex = args.indexOf("--app");
  if (appIndex >= 0) {
    runBenchApp(Number(args[appIndex + 1]));
    return;
  }
  const workbenchAppIndex = args.indexOf("--workbench-app");
  if (workbenchAppIndex >= 0) {
    runWorkbenchApp(Number(args[workbenchAppIndex + 1]));
    return;
  }
  const scaleAppIndex = args.indexOf("--scale-app");
  if (scaleAppIndex >= 0) {
    runScaleApp(Number(args[scaleAppIndex + 1]));
    return;
  }
  const relayIndex = args.indexOf("--tcp-relay");
  if (relayIndex >= 0) {
    runTcpRelay(Number(args[relayIndex + 1]), Number(args[relayIndex + 2]));
    return;
  }
  if (args.includes("--h2-floor-server")) {
    runH2FloorServer();
    return;
  }
  const floorIndex = args.indexOf("--h2-floor-client");
  if (floorIndex >= 0) {
    runH2FloorClient(Number(args[floorIndex + 1]), Number(args[floorIndex + 2]));
    return;
  }
  if (args.includes("--simulate-agents")) {
    await runAgentSimulator(args);
    return;
  }
  if (args.includes("--transport-role")) {
    await runTransportRole(args);
    return;
  }
  const quick = args.includes("--quick");
  const onlyIndex = args.indexOf("--only");
  const only = onlyIndex >= 0 ? args[onlyIndex + 1]!.split(",") : Object.keys(SECTIONS);
  const root = fileURLToPath(new URL("..", `file://${__filename}`));
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  // The transports section needs only this bundle and node; the tunnel section needs the rest.
  if (only.includes("tunnel") || only.includes("store")) {
    for (const bundle of ["dist/warren-server.cjs", "dist/warren-agent.cjs"]) {
      if (!existsSync(`${root}${bundle}`)) throw new Error(`${bundle} is missing: run npm run build first`);
    }
    ensureCommands({ wrk: "wrk", curl: "curl", "/usr/sbin/sshd": "openssh-server", ssh: "openssh-client" }, log);
  }
  const ctx: BenchContext = { quick, root, log };
  const results: BenchSection[] = [];
  for (const name of only) {
    const section = SECTIONS[name] ?? ON_REQUEST[name];
    if (!section) throw new Error(`unknown section ${name}; known: ${[...Object.keys(SECTIONS), ...Object.keys(ON_REQUEST)].join(", ")}`);
    log(`section ${name}`);
    const result = await section(ctx);
    results.push(result);
    printSection(result);
  }
  const report = { date: new Date().toISOString(), quick, node: process.version, cpus: cpus().length, sections: results };
  mkdirSync(`${root}.bench`, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, "-");
  writeFileSync(`${root}.bench/bench-${stamp}.json`, JSON.stringify(report, null, 2));
  writeFileSync(`${root}.bench/latest.json`, JSON.stringify(report, null, 2));
  log(`wrote .bench/latest.json`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
