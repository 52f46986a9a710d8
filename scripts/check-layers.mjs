#!/usr/bin/env node
// The architecture's import rules, checked on every test run (docs/architecture.md):
//   - no module cycles (madge --circular) and no cycles between folders;
//   - shared/ imports nothing of server/, agent/ or cli/; agent/ and cli/ never import server/;
//     server/ never imports agent/ or cli/; cli/ never imports agent/ (the agent is its own binary);
//   - server/domain/ (names, states, records, access policy, token kinds, store ports) imports
//     only shared/ and itself: every front door and store builds on it, never the reverse;
//   - nothing imports the composition root (server/main.ts, server/warren-server.ts, the mode, control-layer and
//     front-door factories, the drain sequence) except the composition root itself.
// Prints each broken rule with the imports that break it; exits 1 when any is broken.
import madge from "madge";

// The composition root: the program, the server that wires everything, and the factories and
// helpers only it uses (modes, control layer, front doors, drain, bindings): nothing below imports them.
const COMPOSITION_ROOT = new Set([
  "server/main.ts",
  "server/warren-server.ts",
  "server/server-mode.ts",
  "server/embedded-mode.ts",
  "server/cluster-mode.ts",
  "server/front-doors.ts",
  "server/control-layer.ts",
  "server/drain-sequence.ts",
  "server/late-binding.ts",
  "server/public-origin.ts",
  "server/server-phase.ts",
]);

/** server/<folder> for files below server/, else the top folder; server/ files themselves are the root layer. */
function folderOf(file) {
  const parts = file.split("/");
  if (parts[0] === "server") return parts.length > 2 ? `server/${parts[1]}` : "server";
  return parts[0];
}

const TOP_RULES = [
  ["shared", /^(server|agent|cli)/],
  ["agent", /^(server|cli)/],
  ["cli", /^(server|agent)/],
  ["server", /^(agent|cli)$/],
];

const result = await madge(["server", "agent", "shared", "cli"], {
  fileExtensions: ["ts"],
  tsConfig: "tsconfig.json",
  excludeRegExp: [/\.spec\.ts$/, /shared\/gen\//, /\.d\.ts$/],
});
const graph = result.obj();
const problems = [];

for (const cycle of result.circular()) problems.push(`module cycle: ${cycle.join(" -> ")} -> ${cycle[0]}`);

const folderEdges = new Map();
for (const [from, tos] of Object.entries(graph)) {
  for (const to of tos) {
    const a = folderOf(from);
    const b = folderOf(to);
    const top = (f) => f.split("/")[0];
    for (const [layer, forbidden] of TOP_RULES) {
      if (top(a) === layer && top(b) !== layer && forbidden.test(b)) problems.push(`${layer}/ may not import ${b}/: ${from} -> ${to}`);
    }
    if (a === "server/domain" && b !== a && top(b) !== "shared") problems.push(`server/domain may import only shared/: ${from} -> ${to}`);
    if (COMPOSITION_ROOT.has(to) && !COMPOSITION_ROOT.has(from)) problems.push(`only the composition root imports ${to}: ${from}`);
    if (a === b) continue;
    if (!folderEdges.has(a)) folderEdges.set(a, new Map());
    const edges = folderEdges.get(a);
    if (!edges.has(b)) edges.set(b, []);
    edges.get(b).push(`${from} -> ${to}`);
  }
}

// Folder cycles: Tarjan's strongly connected components over the folder graph.
const folders = [...new Set([...folderEdges.keys(), ...[...folderEdges.values()].flatMap((m) => [...m.keys()])])];
let index = 0;
const stack = [];
const state = new Map();
function strongConnect(v) {
  state.set(v, { index, low: index, onStack: true });
  index++;
  stack.push(v);
  for (const w of folderEdges.get(v)?.keys() ?? []) {
    if (!state.has(w)) {
      strongConnect(w);
      state.get(v).low = Math.min(state.get(v).low, state.get(w).low);
    } else if (state.get(w).onStack) {
      state.get(v).low = Math.min(state.get(v).low, state.get(w).index);
    }
  }
  if (state.get(v).low === state.get(v).index) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      state.get(w).onStack = false;
      component.push(w);
    } while (w !== v);
    if (component.length > 1) {
      const inside = new Set(component);
      const lines = [];
      for (const a of component) for (const [b, why] of folderEdges.get(a) ?? []) if (inside.has(b)) lines.push(`    ${a} -> ${b}: ${why.slice(0, 3).join(", ")}`);
      problems.push(`folder cycle among ${component.sort().join(", ")}:\n${lines.join("\n")}`);
    }
  }
}
for (const f of folders) if (!state.has(f)) strongConnect(f);

if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} broken import rule(s) (docs/architecture.md):`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log(`check-layers: ${Object.keys(graph).length} modules, no cycles, every import runs downwards`);
