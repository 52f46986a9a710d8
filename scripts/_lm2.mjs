import { open } from "lmdb";
const db = open({ path: process.argv[2], encoding: "string" });
let i = 0;
for (;;) {
  try { await db.put("k" + i, "x".repeat(2000)); i++; }
  catch (e) { e.commitError?.catch(()=>{}); console.log("failed at", i, e.code, e.message); break; }
}
console.log("read back", db.get("k0")?.length, db.get("k" + (i-1))?.length);
for (let j = 0; j < i/2; j++) await db.remove("k" + j).catch(e => {e.commitError?.catch(()=>{}); console.log("remove fail", e.message)});
try { await db.put("after", "y".repeat(2000)); console.log("write after delete ok"); } catch (e) { e.commitError?.catch(()=>{}); console.log("still failing", e.message); }
await db.close();
