// Bundles the programs with esbuild: one self-contained CommonJS file each under dist/.
// The agent bundle holds agent code only (a check below fails the build if server code leaks in);
// it is also the input of the single-file agent binary.
import { build } from "esbuild";
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  sourcemap: "linked",
  logLevel: "warning",
  define: { __WARREN_VERSION__: JSON.stringify(pkg.version) },
  metafile: true,
  legalComments: "none",
};

const entries = [
  // ssh2's optional native helpers stay out of the bundle: it requires them inside try/catch and
  // falls back to JavaScript and Node's own crypto, so the bundle still runs without node_modules.
  { entryPoints: ["server/main.ts"], outfile: "dist/warren-server.cjs", external: ["cpu-features", "*.node"] },
  { entryPoints: ["agent/main.ts"], outfile: "dist/warren-agent.cjs" },
  { entryPoints: ["scripts/bench.ts"], outfile: "dist/bench.cjs" },
];

const results = await Promise.all(entries.map((e) => build({ ...common, ...e })));
const agentInputs = Object.keys(results[1].metafile.inputs);
const leaked = agentInputs.filter((p) => p.startsWith("server/") || p.includes("node_modules/ssh2/"));
if (leaked.length > 0) {
  console.error(`agent bundle must not contain server code or ssh2: ${leaked.join(", ")}`);
  process.exit(1);
}
