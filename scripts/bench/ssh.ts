import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { BackgroundProcess, freePort, run, waitForPort } from "./processes.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";
import { ADMIN_TOKEN, startWarren, type WarrenRival } from "./rivals.js";

const MiB = 1024 * 1024;

/**
 * SSH through Warren's front door (ssh -> Warren -> tunnel -> agent -> workspace sshd) against
 * the same sshd reached directly, in the same run: `cat` round trips of a large stream, and
 * the time of a whole login running `true`.
 */
export async function benchSsh(ctx: BenchContext): Promise<BenchSection> {
  const bytes = (ctx.quick ? 64 : 256) * MiB;
  const logins = ctx.quick ? 5 : 15;
  const dir = mkdtempSync(join(tmpdir(), "warren-bench-sshd-"));
  chmodSync(dir, 0o755);
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host_key")]);
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "client_key")]);
  const authorizedKeys = join(dir, "authorized_keys");
  writeFileSync(authorizedKeys, readFileSync(join(dir, "client_key.pub")));
  chmodSync(authorizedKeys, 0o644);
  const sshdPort = await freePort();
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${sshdPort}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_key")}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin yes",
      "UsePAM no",
      "StrictModes no",
      "MaxStartups 100",
      `PidFile ${join(dir, "sshd.pid")}`,
      "LogLevel ERROR",
    ].join("\n") + "\n",
  );
  mkdirSync("/run/sshd", { recursive: true });
  const user = userInfo().username;
  const sshd = new BackgroundProcess("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")]);
  let warren: WarrenRival | undefined;
  try {
    await waitForPort(sshdPort, 10_000, `sshd (${sshd.output.join("")})`);
    // Port 9 stands in for an app: this section only uses the workspace's sshd.
    warren = await startWarren(ctx.root, 9, {}, { sshPort: sshdPort, sshUser: user });
    const api = async (method: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${warren!.httpPort}/warren.v1.${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${method}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    // The workspace's sshd trusts the workspace key; Warren trusts the person's key.
    const got = (await api("WorkspaceService/GetWorkspace", { name: "bench" })) as { workspace: { sshPublicKey: string } };
    appendFileSync(authorizedKeys, `${got.workspace.sshPublicKey}\n`);
    await api("UserService/AddSshKey", { user: "admin", publicKey: readFileSync(join(dir, "client_key.pub"), "utf8") });

    const targets = [
      { name: "direct", port: sshdPort, login: user },
      { name: "warren", port: warren.sshPort, login: "bench" },
    ];
    const sshArgs = (port: number, login: string) => [
      "-F", "/dev/null",
      "-o", "StrictHostKeyChecking=no",
      "-o", "UserKnownHostsFile=/dev/null",
      "-o", "LogLevel=ERROR",
      "-o", "BatchMode=yes",
      "-o", "IdentitiesOnly=yes",
      "-o", "Ciphers=aes128-gcm@openssh.com",
      "-i", join(dir, "client_key"),
      "-p", String(port),
      `${login}@127.0.0.1`,
    ];
    const throughput: Record<string, number> = {};
    const loginMs: Record<string, number> = {};
    for (const t of targets) {
      ctx.log(`ssh ${t.name}: warm-up`);
      await catThrough(sshArgs(t.port, t.login), 4 * MiB);
      ctx.log(`ssh ${t.name}: cat ${bytes / MiB} MiB`);
      throughput[t.name] = await catThrough(sshArgs(t.port, t.login), bytes);
      ctx.log(`ssh ${t.name}: ${logins} logins`);
      const times: number[] = [];
      for (let i = 0; i < logins; i++) {
        const started = process.hrtime.bigint();
        const code = await exitCode("ssh", [...sshArgs(t.port, t.login), "true"]);
        if (code !== 0) throw new Error(`ssh ${t.name} true exited ${code}`);
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      times.sort((a, b) => a - b);
      loginMs[t.name] = times[Math.floor(times.length / 2)]!;
    }
    const ratios: Array<readonly [string, string]> = [["warren", "direct"]];
    const rows: BenchRow[] = [
      { figure: `ssh cat round trip, ${bytes / MiB} MiB (stdin -> remote cat -> stdout)`, unit: "MB/s", values: throughput, ratios, higherIsBetter: true },
      { figure: `ssh login running \`true\`, median of ${logins}`, unit: "ms", values: loginMs, ratios, higherIsBetter: false },
    ];
    return {
      title: "SSH: workspace sshd directly vs through Warren's SSH front door (same sshd, same run)",
      rows,
      notes: [
        "OpenSSH client with aes128-gcm@openssh.com and an ed25519 key; Warren decrypts and re-encrypts (ssh2, Node's OpenSSL AES-GCM) and carries the inner session over the tunnel.",
        "MB/s counts the bytes that came back (10^6 bytes per MB); each byte also went up, so both directions carry that rate at once.",
      ],
    };
  } finally {
    await warren?.stop();
    await sshd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Streams `bytes` into `ssh ... cat` and returns MB/s of what comes back (checked for length). */
async function catThrough(args: string[], bytes: number): Promise<number> {
  const child = spawn("ssh", [...args, "cat"], { stdio: ["pipe", "pipe", "pipe"] });
  const chunk = randomBytes(MiB);
  let received = 0;
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (received += c.length));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once("drain", r));
  }
  child.stdin.end();
  const code = await exited;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0 || received !== bytes) throw new Error(`ssh cat: exit ${code}, ${received} of ${bytes} bytes back: ${stderr.slice(-500)}`);
  return bytes / seconds / 1e6;
}

function exitCode(command: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: "ignore" });
    child.on("close", resolve);
  });
}
