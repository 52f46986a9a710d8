import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Directories made by tempDir() that are still on disk. */
const made = new Set<string>();
let exitHook = false;

/**
 * A fresh directory under the temporary folder (named `prefix` plus random characters), removed
 * after the test file (test/harness/after-each-file.ts, once its processes are stopped) or, outside
 * vitest (the bench), when the process exits. Tests that restart a server on the same state keep
 * using the same directory until then.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (!exitHook) process.once("exit", removeTempDirs);
  exitHook = true;
  made.add(dir);
  return dir;
}

/** Removes every directory tempDir() made; the processes using them must be stopped first. */
export function removeTempDirs(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  made.clear();
}
