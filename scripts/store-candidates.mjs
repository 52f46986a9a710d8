// Measures the embedded database candidates for the one-server store (docs/storage.md):
// write latency with a synchronous (fsynced) commit, start-up with 1000 records, RSS, and
// what `kill -9` in the middle of a stream of writes leaves (every acknowledged write there?
// the file opens?). Each candidate runs in a child process of its own.
//
//   node scripts/store-candidates.mjs [dir-with-node_modules]
//
// lmdb is a dependency of Warren; the others are installed beside, e.g.
//   mkdir /tmp/cand && cd /tmp/cand && npm install node-sqlite3-wasm classic-level
//   node /path/to/warren/scripts/store-candidates.mjs /tmp/cand
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const extra = process.argv[2];
const role = process.env.CANDIDATE_ROLE;
const WRITES = 300;
const RECORDS = 1000;
const record = (i) => JSON.stringify({ name: `workspace-${i}`, ports: [{ port: 8000, public: false }], createdAt: Date.now(), agentTokenId: "0123456789abcdef".repeat(1), revision: i });

function requireFrom(name) {
  const dirs = [process.cwd(), ...(process.env.CANDIDATE_PATH ? [process.env.CANDIDATE_PATH] : [])];
  for (const d of dirs) {
    try {
      return createRequire(join(d, "noop.js"))(name);
    } catch {}
  }
  throw new Error(`${name} is not installed`);
}

/** Each candidate: open(dir) -> { put(key, value): Promise, count(): Promise<number>, has(key), close() }. */
const CANDIDATES = {
  async lmdb(dir) {
    const { open } = requireFrom("lmdb");
    const db = open({ path: dir, encoding: "string", useWritemap: false, noSync: false });
    return {
      put: (k, v) => db.put(k, v),
      has: async (k) => db.get(k) !== undefined,
      count: async () => db.getCount(),
      close: () => db.close(),
    };
  },
  async "node-sqlite3-wasm"(dir) {
    const { Database } = requireFrom("node-sqlite3-wasm");
    const db = new Database(join(dir, "store.sqlite"));
    db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)");
    return {
      // Synchronous: the event loop waits for the fsync.
      put: async (k, v) => void db.run("INSERT OR REPLACE INTO kv VALUES (?, ?)", [k, v]),
      has: async (k) => db.get("SELECT 1 AS x FROM kv WHERE k = ?", [k]) != null,
      count: async () => db.get("SELECT count(*) AS n FROM kv").n,
      close: async () => db.close(),
    };
  },
  async "classic-level"(dir) {
    const { ClassicLevel } = requireFrom("classic-level");
    const db = new ClassicLevel(dir);
    await db.open();
    return {
      put: (k, v) => db.put(k, v, { sync: true }),
      has: async (k) => (await db.get(k)) !== undefined,
      count: async () => (await db.keys().all()).length,
      close: () => db.close(),
    };
  },
};

async function measure(name, dir) {
  const rss0 = process.memoryUsage().rss;
  let t = performance.now();
  let db = await CANDIDATES[name](dir);
  const openEmpty = performance.now() - t;
  const lat = [];
  let maxLoopStall = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    maxLoopStall = Math.max(maxLoopStall, now - last - 1);
    last = now;
  }, 1);
  for (let i = 0; i < WRITES; i++) {
    const s = performance.now();
    await db.put(`workspace:${i}`, record(i));
    lat.push(performance.now() - s);
  }
  // Concurrent writes (API calls at once): throughput.
  t = performance.now();
  await Promise.all(Array.from({ length: RECORDS }, (_, i) => db.put(`workspace:c${i}`, record(i))));
  const concurrentPerSecond = RECORDS / ((performance.now() - t) / 1000);
  // A synchronous store never lets the ticker run: the whole burst is one stall.
  maxLoopStall = Math.max(maxLoopStall, performance.now() - last - 1);
  clearInterval(ticker);
  await db.close();
  t = performance.now();
  db = await CANDIDATES[name](dir);
  await db.has("workspace:1");
  const openFull = performance.now() - t;
  const rss = process.memoryUsage().rss - rss0;
  await db.close();
  lat.sort((a, b) => a - b);
  return {
    name,
    writeP50ms: +lat[Math.floor(lat.length / 2)].toFixed(2),
    writeP99ms: +lat[Math.floor(lat.length * 0.99)].toFixed(2),
    concurrentWritesPerSecond: Math.round(concurrentPerSecond),
    eventLoopStallMaxMs: +maxLoopStall.toFixed(1),
    openEmptyMs: +openEmpty.toFixed(1),
    openWithRecordsMs: +openFull.toFixed(1),
    rssAddedMiB: +(rss / 1048576).toFixed(1),
  };
}

/** Child: writes forever, printing each acknowledged key; the parent kills it. */
async function writer(name, dir) {
  const db = await CANDIDATES[name](dir);
  for (let i = 0; ; i++) {
    await db.put(`k${i}`, record(i));
    process.stdout.write(`${i}\n`);
  }
}

async function killTest(name) {
  const dir = mkdtempSync(join(tmpdir(), `cand-kill-${name}-`));
  const child = spawn(process.execPath, [process.argv[1], ...(extra ? [extra] : [])], { env: { ...process.env, CANDIDATE_ROLE: "writer", CANDIDATE: name, CANDIDATE_DIR: dir }, stdio: ["ignore", "pipe", "inherit"] });
  let acked = -1;
  let buf = "";
  child.stdout.setEncoding("utf8").on("data", (c) => {
    buf += c;
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const l of lines) acked = Math.max(acked, Number(l));
  });
  await new Promise((r) => setTimeout(r, 1500));
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  const check = spawnSync(process.execPath, [process.argv[1], ...(extra ? [extra] : [])], { env: { ...process.env, CANDIDATE_ROLE: "check", CANDIDATE: name, CANDIDATE_DIR: dir, ACKED: String(acked) }, encoding: "utf8" });
  rmSync(dir, { recursive: true, force: true });
  return { acked: acked + 1, after: check.status === 0 ? JSON.parse(check.stdout) : { error: check.stderr.split("\n").find((l) => /^\w*Error: /.test(l))?.slice(0, 160) || `exit ${check.status} ${check.signal ?? ""}` } };
}

async function check(name, dir, acked) {
  const db = await CANDIDATES[name](dir);
  let missing = 0;
  for (let i = 0; i <= acked; i++) if (!(await db.has(`k${i}`))) missing++;
  process.stdout.write(JSON.stringify({ opens: true, stored: await db.count(), missingAcknowledged: missing }));
  await db.close();
}

if (extra) process.env.CANDIDATE_PATH = extra;
if (role === "writer") await writer(process.env.CANDIDATE, process.env.CANDIDATE_DIR);
else if (role === "check") await check(process.env.CANDIDATE, process.env.CANDIDATE_DIR, Number(process.env.ACKED));
else if (role === "measure") process.stdout.write(JSON.stringify(await measure(process.env.CANDIDATE, process.env.CANDIDATE_DIR)));
else {
  for (const name of Object.keys(CANDIDATES)) {
    const dir = mkdtempSync(join(tmpdir(), `cand-${name}-`));
    const r = spawnSync(process.execPath, [process.argv[1], ...(extra ? [extra] : [])], { env: { ...process.env, CANDIDATE_ROLE: "measure", CANDIDATE: name, CANDIDATE_DIR: dir }, encoding: "utf8" });
    rmSync(dir, { recursive: true, force: true });
    if (r.status !== 0) {
      console.log(JSON.stringify({ name, error: (r.stderr || "").split("\n").find((l) => l.trim()) ?? `exit ${r.status}` }));
      continue;
    }
    console.log(JSON.stringify({ ...JSON.parse(r.stdout), kill9: await killTest(name) }));
  }
}
