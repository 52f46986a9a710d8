import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./apps.js";
import { Proc } from "./processes.js";
import { tempDir } from "./temp-dirs.js";

/**
 * The workspace's own sshd in tests: Debian's OpenSSH server with its own config, host key and
 * port, run as root (sshd needs root to log in as another user). Two users stand in for the
 * workspace image's user, created once with useradd when missing:
 *  - SSH_EMPTY_PASSWORD_USER has an empty password (`passwd -d`), as workspace images do;
 *  - SSH_KEY_USER has no usable password and trusts the workspace's key pair.
 * `UsePAM no` and `PermitEmptyPasswords yes` let the first in; `StrictModes no` because the
 * authorized_keys files sit in the temporary folder.
 */
export const SSH_EMPTY_PASSWORD_USER = "warren-ssh-test";
export const SSH_KEY_USER = "warren-ssh-key";

export const IS_ROOT = process.getuid?.() === 0;

export function ensureTestUsers(): void {
  for (const user of [SSH_EMPTY_PASSWORD_USER, SSH_KEY_USER]) {
    if (spawnSync("id", [user], { stdio: "ignore" }).status !== 0) {
      execFileSync("useradd", ["-m", "-s", "/bin/bash", user], { stdio: "pipe" });
    }
  }
  execFileSync("passwd", ["-d", SSH_EMPTY_PASSWORD_USER], { stdio: "pipe" });
  // No password, yet not locked: with UsePAM no, sshd refuses every login to a locked ("!") account.
  execFileSync("usermod", ["-p", "*", SSH_KEY_USER], { stdio: "pipe" });
}

export interface Sshd {
  readonly port: number;
  readonly dir: string;
  readonly hostKeyFile: string;
  readonly proc: Proc;
  /** Replaces the authorized keys of SSH_KEY_USER (read on every login). */
  authorize(publicKeys: string[]): void;
  stop(): Promise<void>;
}

/** Starts sshd on a free loopback port; `hostKeyFile` reuses a host key (new one when absent). */
export async function startSshd(options: { hostKeyFile?: string; port?: number; /** Run it inside this network namespace (give `port`). */ netns?: string } = {}): Promise<Sshd> {
  const dir = tempDir("warren-sshd-");
  // sshd reads authorized_keys as the logged-in user.
  chmodSync(dir, 0o755);
  const hostKeyFile = options.hostKeyFile ?? join(dir, "host_key");
  if (!existsSync(hostKeyFile)) execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKeyFile]);
  const port = options.port ?? (await freePort());
  const authorizedKeys = join(dir, "authorized_keys");
  writeFileSync(authorizedKeys, "");
  chmodSync(authorizedKeys, 0o644);
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKeyFile}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      "UsePAM no",
      "PermitEmptyPasswords yes",
      "PasswordAuthentication yes",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      `AuthorizedKeysFile ${authorizedKeys}`,
      "StrictModes no",
      `AllowUsers ${SSH_EMPTY_PASSWORD_USER} ${SSH_KEY_USER}`,
      "AcceptEnv LANG LC_* WARREN_*",
      "AllowTcpForwarding yes",
      "Subsystem sftp internal-sftp",
      // A burst of logins must not be dropped by sshd's own throttle.
      "MaxStartups 500",
      "MaxSessions 50",
      "LogLevel ERROR",
    ].join("\n") + "\n",
  );
  // sshd insists on its privilege separation directory.
  mkdirSync("/run/sshd", { recursive: true });
  const sshdArgs = ["-D", "-e", "-f", join(dir, "sshd_config")];
  const proc = options.netns
    ? new Proc("ip", ["netns", "exec", options.netns, "/usr/sbin/sshd", ...sshdArgs], process.env)
    : new Proc("/usr/sbin/sshd", sshdArgs, process.env);
  if (options.netns) await waitForTcpInNetns(options.netns, port, 10_000, () => proc.output());
  else await waitForTcp(port, 10_000, () => proc.output());
  return {
    port,
    dir,
    hostKeyFile,
    proc,
    authorize: (keys) => writeFileSync(authorizedKeys, keys.map((k) => `${k.trim()}\n`).join("")),
    stop: () => proc.stop(),
  };
}

async function waitForTcpInNetns(netns: string, port: number, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (spawnSync("ip", ["netns", "exec", netns, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: "ignore" }).status !== 0) {
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port} in ${netns}: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForTcp(port: number, timeoutMs: number, output: () => string): Promise<void> {
  const net = await import("node:net");
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
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port}: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options every client run uses: no known_hosts prompts, no agent, no local config. */
export function clientOptions(knownHosts = "/dev/null"): string[] {
  return [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "IdentityAgent=none",
    "-o", "ConnectTimeout=20",
  ];
}

/** Password login options: only the password method, one prompt (answered by sshpass). */
export function passwordOptions(): string[] {
  return ["-o", "PubkeyAuthentication=no", "-o", "KbdInteractiveAuthentication=no", "-o", "NumberOfPasswordPrompts=1"];
}

/** Key login options: only this key. */
export function keyOptions(keyFile: string): string[] {
  return ["-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no", "-o", "IdentitiesOnly=yes", "-i", keyFile];
}

/** Runs a command to completion, with optional stdin (a Buffer or a file path via `stdinFile`). */
export function run(
  command: string,
  args: string[],
  options: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(options.input);
  });
}

/** A client key pair in a temporary directory. */
export function clientKey(name = "id_ed25519"): { file: string; publicKey: string } {
  const dir = tempDir("warren-client-key-");
  const file = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `test@${name}`, "-f", file]);
  return { file, publicKey: readFileSync(`${file}.pub`, "utf8").trim() };
}

/** `SHA256:...` of a public key file, as ssh-keygen prints it. */
export function keygenFingerprint(publicKeyFile: string): string {
  return execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", publicKeyFile], { encoding: "utf8" }).split(" ")[1]!;
}
