import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";

const children = new Set<ChildProcess>();
/** Children started in a process group of their own: killed with their group (their own children too). */
const groups = new WeakSet<ChildProcess>();
function killChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (groups.has(child) && child.pid !== undefined) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is gone already.
    }
  } else child.kill(signal);
}
process.once("exit", () => {
  for (const c of children) killChild(c, "SIGKILL");
});

/** A background process of the benchmark, killed when the benchmark ends. */
export class BackgroundProcess {
  readonly child: ChildProcess;
  readonly output: string[] = [];

  /**
   * `group`: start it in a process group of its own and stop the whole group, for a program that
   * leaves children behind when it exits (code-server's extension hosts).
   */
  constructor(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, options: { group?: boolean } = {}) {
    this.child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"], detached: options.group === true });
    if (options.group) groups.add(this.child);
    children.add(this.child);
    this.child.once("exit", () => children.delete(this.child));
    const keep = (c: Buffer) => {
      this.output.push(c.toString());
      if (this.output.length > 200) this.output.shift();
    };
    this.child.stdout!.on("data", keep);
    this.child.stderr!.on("data", keep);
  }

  /** Resolves when the output matches, rejects on exit or after the timeout. */
  waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.output.join("").match(pattern);
        if (m) {
          cleanup();
          resolve(m);
        }
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`process exited before ${pattern}: ${this.output.join("").slice(-2000)}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${pattern}: ${this.output.join("").slice(-2000)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.child.stdout!.off("data", check);
        this.child.stderr!.off("data", check);
        this.child.off("exit", onExit);
      };
      this.child.stdout!.on("data", check);
      this.child.stderr!.on("data", check);
      this.child.once("exit", onExit);
      check();
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      if (groups.has(this.child)) killChild(this.child, "SIGKILL");
      return;
    }
    const exited = new Promise((r) => this.child.once("exit", r));
    killChild(this.child, "SIGTERM");
    const timer = setTimeout(() => killChild(this.child, "SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
    // What the group leader left behind.
    if (groups.has(this.child)) killChild(this.child, "SIGKILL");
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function hasCommand(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** Installs Debian packages for the commands that are missing (we run as root on CI machines). */
export function ensureCommands(needs: Record<string, string>, log: (s: string) => void): void {
  const missing = Object.entries(needs)
    .filter(([command]) => !hasCommand(command))
    .map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  log(`installing ${missing.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: "inherit", env });
  if (r.status !== 0) {
    spawnSync("apt-get", ["update"], { stdio: "inherit", env });
    r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: "inherit", env });
  }
  if (r.status !== 0) throw new Error(`could not install ${missing.join(" ")}`);
}

export function run(command: string, args: string[], options: { input?: string | Buffer; timeoutMs?: number } = {}): string {
  const r = spawnSync(command, args, { encoding: "utf8", input: options.input, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function runAsync(command: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(" ")} failed (${code}): ${err.slice(-2000)}`));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 10_000, what = `port ${port}`): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start listening`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Extra node flags for the Warren processes a benchmark starts, from WARREN_BENCH_SERVER_FLAGS,
 * WARREN_BENCH_AGENT_FLAGS or WARREN_BENCH_CLI_FLAGS (`warren port-forward`): e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" for profiles of the hot paths (summarize them with `node scripts/profile-top.mjs /tmp/prof/*.cpuprofile`).
 */
export function benchNodeFlags(kind: "server" | "agent" | "cli"): string[] {
  const variable = { server: "WARREN_BENCH_SERVER_FLAGS", agent: "WARREN_BENCH_AGENT_FLAGS", cli: "WARREN_BENCH_CLI_FLAGS" }[kind];
  return (process.env[variable] ?? "").split(" ").filter(Boolean);
}
