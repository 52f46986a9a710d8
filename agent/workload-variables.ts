import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface WorkloadVariable {
  readonly name: string;
  readonly value: string;
  /** A file variable: the value is written to a file and the variable holds its path. */
  readonly file: boolean;
}

/**
 * The workspace's variables as the workload sees them: environment variables, and files in
 * a private directory (0700, files 0600) whose paths are the variables' values. The agent's
 * own settings (WARREN_TOKEN...) never reach the workload. Values are never logged.
 */
export class WorkloadVariables {
  #variables: readonly WorkloadVariable[] = [];
  #dir: string | undefined;
  #files = new Map<string, string>();

  /** Sets the variables (from the server's Welcome; frozen at creation, so once is enough). */
  set(variables: readonly WorkloadVariable[]): void {
    this.#variables = variables;
    this.#writeFiles();
  }

  /** The environment for a workload start: `base` without Warren's settings, plus the variables. */
  environment(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(base)) if (!k.startsWith("WARREN_")) env[k] = v;
    for (const v of this.#variables) env[v.name] = v.file ? this.#files.get(v.name) : v.value;
    return env;
  }

  /** Removes the files. */
  cleanup(): void {
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
    this.#files.clear();
  }

  #writeFiles(): void {
    this.cleanup();
    const files = this.#variables.filter((v) => v.file);
    if (files.length === 0) return;
    const dir = mkdtempSync(join(tmpdir(), "warren-variables-"));
    chmodSync(dir, 0o700);
    this.#dir = dir;
    for (const v of files) {
      const path = join(dir, v.name);
      writeFileSync(path, v.value, { mode: 0o600 });
      this.#files.set(v.name, path);
    }
  }
}
