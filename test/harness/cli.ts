import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./processes.js";
import { tempDir } from "./temp-dirs.js";
import { cleanEnv } from "./warren.js";

export const CLI = `${REPO_ROOT}dist/warren.cjs`;

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A HOME of its own, so that no test reads or writes the real ~/.config/warren or ~/.ssh. */
export function cliHome(): string {
  return tempDir("warren-cli-home-");
}

export function cliEnv(home: string, env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, ".config"), ...env });
}

/** Runs the built `warren` CLI to the end. */
export function runCli(home: string, args: string[], options: { stdin?: string; env?: Record<string, string | undefined> } = {}): Promise<CliRun> {
  return new Promise<CliRun>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(home, options.env), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? "");
  });
}

/** Starts the CLI and leaves it running (port-forward, ssh --stdio); the caller stops it. */
export function spawnCli(home: string, args: string[], env: Record<string, string | undefined> = {}): ChildProcess & { output(): string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(home, env), stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (output += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (output += c));
  return Object.assign(child, { output: () => output });
}
