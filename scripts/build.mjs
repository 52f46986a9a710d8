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
  { entryPoints: ["server/main.ts"], outfile: "dist/warren-server.cjs" },
  { entryPoints: ["agent/main.ts"], outfile: "dist/warren-agent.cjs" },
  { entryPoints: ["scripts/bench.ts"], outfile: "dist/bench.cjs" },
  { entryPoints: ["cli/main.ts"], outfile: "dist/warren.cjs" },
];

const results = await Promise.all(entries.map((e) => build({ ...common, ...e })));
// The agent and the user CLI ship alone: neither may pull in server code (nor each other's).
for (const [index, name, forbidden] of [
  [1, "agent", ["server/", "cli/"]],
  [3, "warren CLI", ["server/", "agent/"]],
]) {
  const leaked = Object.keys(results[index].metafile.inputs).filter((p) => forbidden.some((f) => p.startsWith(f)));
  if (leaked.length > 0) {
    console.error(`${name} bundle must not contain ${forbidden.join(" or ")} code: ${leaked.join(", ")}`);
    process.exit(1);
  }
}
