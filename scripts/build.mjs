// Bundles the programs with esbuild: one self-contained CommonJS file each under dist/, then
// turns the agent bundle into the single-file agent binaries dist/warren-agent-linux-x64 and
// dist/warren-agent-linux-arm64 (each on the pinned Node.js of scripts/build/agent-node.json).
// The agent bundle holds agent code only (a check below fails the build if server code leaks in).
//
//   node scripts/build.mjs          every bundle, and the agent binaries where they can be built
//                                   (on linux-x64 or linux-arm64); elsewhere skipped with a note
//   node scripts/build.mjs --agent  the agent bundle and binaries only (npm run build:agent)
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { buildAgentBinaries, binaryPlatform } from "./build/agent-binary.mjs";
import { nativeStubs } from "./build/native-stubs.mjs";
import { copyLmdbAddon, lmdbNative } from "./build/lmdb-native.mjs";

const agentOnly = process.argv.includes("--agent");
// The dashboard's browser script (web/): minified into a string the server bundle inlines.
const dashboardJs = agentOnly
  ? ""
  : (await build({ entryPoints: ["web/dashboard.ts"], bundle: true, minify: true, format: "iife", target: "es2022", platform: "browser", write: false, logLevel: "warning" }))
      .outputFiles[0].text;
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
  // ws masks WebSocket frames byte by byte unless it finds bufferutil: ours works by words.
  alias: { bufferutil: "./shared/websocket-mask.ts" },
};

const agent = { entryPoints: ["agent/main.ts"], outfile: "dist/warren-agent.cjs", plugins: [nativeStubs()] };
const cli = { entryPoints: ["cli/main.ts"], outfile: "dist/warren.cjs" };
const entries = agentOnly
  ? [agent]
  : [
      agent,
      cli,
      // ssh2's optional native helpers stay out of the bundle: it requires them inside try/catch
      // and falls back to JavaScript and Node's own crypto, so the bundle runs without node_modules.
      // lmdb's addon is loaded from beside the bundle (copied there below); msgpackr's optional
      // native extractor stays out the same way as ssh2's helpers.
      {
        entryPoints: ["server/main.ts"],
        outfile: "dist/warren-server.cjs",
        external: ["cpu-features", "msgpackr-extract", "*.node"],
        plugins: [lmdbNative()],
        define: { ...common.define, __WARREN_DASHBOARD_JS__: JSON.stringify(dashboardJs) },
      },
      // The workbench section drives Chromium with playwright-core from node_modules (a dev dependency).
      { entryPoints: ["scripts/bench.ts"], outfile: "dist/bench.cjs", external: ["playwright-core"] },
    ];

const results = await Promise.all(entries.map((e) => build({ ...common, ...e })));
if (!agentOnly) copyLmdbAddon("dist");
// The agent and the user CLI ship alone: neither may pull in server code (nor each other's).
const checks = [[0, "agent", ["server/", "cli/", "node_modules/ssh2/"]]];
if (!agentOnly) checks.push([1, "warren CLI", ["server/", "agent/"]]);
for (const [index, name, forbidden] of checks) {
  const leaked = Object.keys(results[index].metafile.inputs).filter((p) => forbidden.some((f) => p.startsWith(f)));
  if (leaked.length > 0) {
    console.error(`${name} bundle must not contain ${forbidden.join(" or ")} code: ${leaked.join(", ")}`);
    process.exit(1);
  }
}

if (agentOnly || binaryPlatform()) {
  try {
    await buildAgentBinaries({ bundle: agent.outfile, dir: "dist", version: pkg.version });
  } catch (err) {
    console.error(`agent binary: ${err.message}`);
    process.exit(1);
  }
} else {
  console.log(`note: skipped the agent binaries: they are built on linux-x64 or linux-arm64 only (this is ${process.platform}-${process.arch})`);
}
