#!/usr/bin/env node
// node scripts/profile-top.mjs FILE.cpuprofile [N]: the N functions with the most self time
// and the N with the most inclusive time (callees included) in a --cpu-prof profile, in ms,
// with the idle share: the first look at where a Warren process spends its CPU.
import { readFileSync } from "node:fs";

const [file, many = "25"] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: node scripts/profile-top.mjs FILE.cpuprofile [N]\n");
  process.exit(2);
}
const top = Number(many);
// Piped into head: stop quietly when the reader has enough.
process.stdout.on("error", (err) => process.exit(err.code === "EPIPE" ? 0 : 1));
const profile = JSON.parse(readFileSync(file, "utf8"));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

const nameOf = (n) => `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`;
const self = new Map();
const inclusive = new Map();
let total = 0;
// Inclusive time counts a function once per stack, even when it recurses.
function walk(id, onStack) {
  const n = nodes.get(id);
  const name = nameOf(n);
  let t = selfUs.get(id) ?? 0;
  self.set(name, (self.get(name) ?? 0) + t);
  total += t;
  const inner = new Set(onStack).add(name);
  for (const child of n.children ?? []) t += walk(child, inner);
  if (!onStack.has(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + t);
  return t;
}
walk(profile.nodes[0].id, new Set());

const ms = (us) => (us / 1000).toFixed(1).padStart(9);
const idle = [...self].filter(([k]) => k.startsWith("(idle)")).reduce((a, [, t]) => a + t, 0);
const print = (title, map) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, t] of [...map].filter(([k]) => !k.startsWith("(root)") && !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${ms(t)}  ${k}\n`);
  }
};
process.stdout.write(`${file}: ${ms(total).trim()} ms sampled, ${ms(total - idle).trim()} ms busy (${(((total - idle) / total) * 100).toFixed(0)} %)\n`);
print("self time (ms)", self);
print("inclusive time (ms)", inclusive);
