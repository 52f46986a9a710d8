import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** The checkout: two folders above this file, or above dist/ when bundled into the bench (CommonJS). */
export const REPO_ROOT = typeof __filename === "string" && __filename.endsWith(".cjs") ? `${dirname(dirname(__filename))}/` : fileURLToPath(new URL("../..", import.meta.url));
export const SERVER_BUNDLE = `${REPO_ROOT}dist/warren-server.cjs`;
export const AGENT_BUNDLE = `${REPO_ROOT}dist/warren-agent.cjs`;
/** The single-file agent (Node SEA), built by `npm run build` on linux-x64. */
export const AGENT_BINARY = `${REPO_ROOT}dist/warren-agent-linux-x64`;
/** The same agent for linux-arm64, built beside it. */
export const AGENT_BINARY_ARM64 = `${REPO_ROOT}dist/warren-agent-linux-arm64`;
/** The Node.js version inside the agent binaries (scripts/build/agent-node.json), e.g. "24.22.3". */
export const AGENT_NODE_VERSION = (JSON.parse(readFileSync(`${REPO_ROOT}scripts/build/agent-node.json`, "utf8")) as { version: string }).version;
/** The pinned Node.js the build unpacked for this machine (scripts/build/agent-node.mjs). */
export const PINNED_NODE = `${REPO_ROOT}node_modules/.cache/warren-agent-node/v${AGENT_NODE_VERSION}-${process.platform}-${process.arch}/node`;

export function requireBuilt(): void {
  for (const file of [SERVER_BUNDLE, AGENT_BUNDLE]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` before the tests`);
  }
}

export function requireAgentBinary(): string {
  if (!existsSync(AGENT_BINARY)) throw new Error(`${AGENT_BINARY} is missing: run \`npm run build\` (or \`npm run build:agent\`) on linux-x64 before the tests`);
  return AGENT_BINARY;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Counts a child as the test's until it exits: stopAllProcesses() ends it if the test did not. */
export function trackChild(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  running.add(child);
  child.once("exit", () => running.delete(child));
}

/**
 * Stops every tracked child still running (SIGTERM, SIGKILL after `graceMs`) and waits for
 * them to exit, so that their temporary directories can be removed. Vitest ends its worker
 * with SIGTERM, which skips "exit" handlers: this runs after each test file instead.
 */
export async function stopAllProcesses(graceMs = 5_000): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
          child.once("exit", () => {
            clearTimeout(timer);
            resolve();
          });
          // A paused process (SIGSTOP) would never see SIGTERM.
          child.kill("SIGCONT");
          child.kill("SIGTERM");
        }),
    ),
  );
}

export interface LogLine {
  readonly [key: string]: unknown;
  readonly msg?: string;
  readonly level?: string;
}

/** A child process whose stdout is JSON log lines (pino) we can wait on. */
export class Proc {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  readonly stdoutText: string[] = [];
  readonly #waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv, cwd = REPO_ROOT) {
    this.child = spawn(command, args, { env, cwd, stdio: ["pipe", "pipe", "pipe"] });
    trackChild(this.child);
    let buffer = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.stdoutText.push(text);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          continue;
        }
        this.lines.push(line);
        for (const w of [...this.#waiters]) {
          if (w.match(line)) {
            this.#waiters.splice(this.#waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => this.stderr.push(chunk));
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves with the first log line (past or future) that matches. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 15_000, what = "log line"): Promise<LogLine> {
    const found = this.lines.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`timed out waiting for ${what}; output so far:\n${this.output()}`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.#waiters.push(waiter);
      void this.exited.then(() => {
        if (this.#waiters.includes(waiter)) {
          clearTimeout(timer);
          reject(new Error(`process exited while waiting for ${what}; output:\n${this.output()}`));
        }
      });
    });
  }

  output(): string {
    return [...this.stdoutText, ...this.stderr].join("\n").slice(-6000);
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Resident set size in bytes, from /proc. */
  rssBytes(): number {
    return readRss(this.pid);
  }
}

export function readRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}
