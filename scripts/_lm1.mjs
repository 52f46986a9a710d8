import { open } from "lmdb";
const db = open({ path: process.argv[2], encoding: "string" });
const t0 = performance.now();
await db.put("a", "1");
console.log("put ms", performance.now() - t0);
const r = await db.transaction(() => { const c = db.get("a"); db.put("a", String(Number(c) + 1)); return c; });
console.log("txn returned", r, db.get("a"));
console.log([...db.getRange({ start: "a", end: "b" })]);
await db.close();
