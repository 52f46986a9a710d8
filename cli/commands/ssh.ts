import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { createWebSocketStream } from "ws";
import { openTunnelSocket, type ForwardTarget } from "./port-forward.js";

/** The WebSocket URL that carries `warren ssh --stdio NAME`. */
export function sshUrl(server: string, workspace: string): string {
  const url = new URL("/-/ssh", server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("workspace", workspace);
  return url.toString();
}

/**
 * `warren ssh --stdio NAME`, the ProxyCommand: stdin and stdout carry the SSH connection to
 * the server's SSH front door over the HTTPS listener; the access token is the credential.
 * Resolves when the connection ends.
 */
export async function sshStdio(target: ForwardTarget, workspace: string): Promise<void> {
  const ws = await openTunnelSocket(target, sshUrl(target.server, workspace));
  const stream = createWebSocketStream(ws, { allowHalfOpen: false });
  await new Promise<void>((resolve) => {
    stream.on("error", () => resolve());
    stream.on("close", () => resolve());
    process.stdin.pipe(stream);
    stream.pipe(process.stdout);
    process.stdin.on("end", () => stream.end());
    ws.resume();
  });
}

/** How ssh starts this CLI as its ProxyCommand (this very program, wherever it lives). */
export function proxyCommand(workspace: string): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, "\\$1")}"`);
  const self = process.argv[1] && /\.c?js$/.test(process.argv[1]) ? [process.execPath, process.argv[1]] : [process.argv[0] ?? "warren"];
  return [...self.map(quote), "ssh", "--stdio", workspace].join(" ");
}

/** `warren ssh NAME [-- CMD...]`: runs OpenSSH with the ProxyCommand; resolves with its exit status. */
export function sshInteractive(target: ForwardTarget, workspace: string, command: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "ssh",
      [
        "-o", `ProxyCommand=${proxyCommand(workspace)}`,
        "-o", `HostKeyAlias=warren.${workspace}`,
        // The connection runs inside HTTPS to the server: remember Warren's host key on first use.
        "-o", "StrictHostKeyChecking=accept-new",
        "-l", workspace,
        `warren.${workspace}`,
        ...(command.length > 0 ? ["--", ...command] : []),
      ],
      // The ProxyCommand finds the server and token here, whether they came from flags or login.
      { stdio: "inherit", env: { ...process.env, WARREN_URL: target.server, WARREN_ACCESS_TOKEN: target.token } },
    );
    child.once("error", (err: NodeJS.ErrnoException) => reject(new Error(err.code === "ENOENT" ? "ssh is not installed (OpenSSH's client)" : err.message)));
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 + 1 : 1)));
  });
}

const BEGIN = "# ------------ BEGIN warren config-ssh (do not edit: replaced by `warren config-ssh`) ------------";
const END = "# ------------ END warren config-ssh ------------";

/** The marked block of `Host warren.NAME` entries, one per workspace. */
export function sshConfigBlock(workspaces: readonly string[]): string {
  const hosts = workspaces.map((name) => `Host warren.${name}\n  User ${name}\n  ProxyCommand ${proxyCommand(name)}\n  HostKeyAlias warren.${name}\n  StrictHostKeyChecking accept-new\n`);
  return `${BEGIN}\n${hosts.join("\n")}${END}\n`;
}

/** ~/.ssh/config with the block replaced (or removed when `block` is undefined); the rest kept as it was. */
export function withBlock(existing: string, block: string | undefined): string {
  const start = existing.indexOf(BEGIN);
  const end = existing.indexOf(END);
  let rest = existing;
  if (start >= 0 && end > start) rest = `${existing.slice(0, start)}${existing.slice(end + END.length).replace(/^\n/, "")}`;
  if (block === undefined) return rest;
  return `${rest}${rest.length > 0 && !rest.endsWith("\n") ? "\n" : ""}${rest.length > 0 ? "\n" : ""}${block}`;
}

/** Writes the block into the SSH config file (mode 0600, directory 0700); returns its path. */
export function writeSshConfig(block: string | undefined, path = join(process.env["HOME"] || homedir(), ".ssh", "config")): string {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const existing = existsSync(path) ? readFileSync(path, "utf8") : "";
  writeFileSync(path, withBlock(existing, block), { mode: 0o600 });
  return path;
}
