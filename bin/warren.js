#!/usr/bin/env node
import { existsSync } from "node:fs";
import { createRequire } from "node:module";

const bundle = new URL("../dist/warren.cjs", import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write("warren: not built yet; run `npm install` (or `npm run build`) in the repository first\n");
  process.exit(2);
}
createRequire(import.meta.url)(bundle.pathname);
