import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, copyFileSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { AGENT_BINARY, AGENT_BINARY_ARM64, AGENT_NODE_VERSION, Proc, REPO_ROOT, requireAgentBinary } from "./harness/processes.js";
import { cleanEnv, createWorkspace, httpRequest, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";
// @ts-expect-error: a build script in plain JavaScript, without type declarations.
import { nativeStubs } from "../scripts/build/native-stubs.mjs";
import { tempDir } from "./harness/temp-dirs.js";

const PACKAGE_VERSION = (JSON.parse(readFileSync(`${REPO_ROOT}package.json`, "utf8")) as { version: string }).version;

describe("single-file agent binary", () => {
  let server: ServerHandle;
  let app: App;
  let dir: string;

  beforeAll(async () => {
    requireAgentBinary();
    dir = tempDir("warren-binary-");
    app = await startApp((_req, res) => res.end("hello from the workspace"));
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
    await app?.close();
  });

  /** Runs the binary copied alone into an empty directory, with only the given variables. */
  function runAlone(args: string[], env: Record<string, string>): Proc {
    const bin = join(dir, "warren-agent");
    copyFileSync(AGENT_BINARY, bin);
    expect(readdirSync(dir)).toEqual(["warren-agent"]);
    // No PATH with node on it, no node_modules, nothing inherited: what a bare container has.
    return new Proc(bin, args, { PATH: dir, ...env }, dir);
  }

  it("runs alone in an empty directory with a clean environment: connects and serves traffic", async () => {
    const ws = await createWorkspace(server, "alone", [app.port]);
    const agent = runAlone([], { WARREN_SERVER: server.agentUrl, WARREN_TOKEN: ws.agentToken });
    const ready = await agent.waitFor((l) => l["event"] === "ready", 15_000, "ready line");
    // The ports the agent dials: the exposed one, and the sshd port for the SSH front door.
    expect(ready).toMatchObject({ level: "info", workspace: "alone", urls: ws.urls, ports: [app.port, 22] });
    expect(ready.msg).toBe(`warren agent ready: workspace "alone" is reachable at ${ws.urls[0]}`);
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("alone", app.port), headers: { "x-warren-token": server.adminToken } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("hello from the workspace");
    // Same version on both sides: no mismatch warning anywhere.
    const connected = await server.proc.waitFor((l) => l.msg === "agent connected" && l["workspace"] === "alone");
    expect(connected["agentVersion"]).toBe(PACKAGE_VERSION);
    expect(server.proc.lines.some((l) => l.msg === "agent version differs from the server's")).toBe(false);
    agent.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
    // Nothing on stderr: no SEA warning, no missing native module.
    expect(agent.stderr.join("")).toBe("");
  });

  it("answers --version and --help without a server", () => {
    const version = execFileSync(AGENT_BINARY, ["--version"], { env: {} }).toString();
    // Its own version, and the pinned Node.js 24 inside (not the machine's node that built it).
    expect(version).toBe(`warren-agent ${PACKAGE_VERSION} (Node.js v${AGENT_NODE_VERSION}, linux-x64)\n`);
    expect(AGENT_NODE_VERSION).toMatch(/^24\./);
    const help = execFileSync(AGENT_BINARY, ["--help"], { env: {} }).toString();
    expect(help).toContain("warren-agent run [flags] -- CMD [ARGS...]");
    for (const name of ["WARREN_SERVER", "WARREN_TOKEN", "WARREN_TOKEN_FILE", "WARREN_SHUTDOWN_TIMEOUT", "WARREN_CONFIG"]) expect(help).toContain(name);
  });

  it("exits 2 with one clear line when the token or the server address is missing", () => {
    const noToken = spawnSync(AGENT_BINARY, [], { env: { WARREN_SERVER: server.agentUrl } });
    expect(noToken.status).toBe(2);
    expect(noToken.stderr.toString()).toBe("warren-agent: no agent token: set WARREN_TOKEN, --token or --token-file\n");
    const noServer = spawnSync(AGENT_BINARY, ["--token", "x"], { env: {} });
    expect(noServer.status).toBe(2);
    expect(noServer.stderr.toString()).toMatch(/^warren-agent: no server address: set WARREN_SERVER or --server[^\n]*\n$/);
    const badFlag = spawnSync(AGENT_BINARY, ["--nope"], { env: {} });
    expect(badFlag.status).toBe(2);
    expect(badFlag.stderr.toString()).toBe("warren-agent: unknown flag --nope (see --help)\n");
  });

  it("holds agent code only, and its manifest names the package version", () => {
    const bytes = readFileSync(AGENT_BINARY);
    // Strings only the server has.
    for (const serverOnly of ["warren server ready", "no such path on the root domain"]) expect(bytes.includes(serverOnly)).toBe(false);
    expect(bytes.includes("warren agent ready")).toBe(true);
    const manifest = JSON.parse(readFileSync(`${AGENT_BINARY}.json`, "utf8")) as Record<string, unknown>;
    expect(manifest).toMatchObject({ name: "warren-agent", version: PACKAGE_VERSION, platform: "linux-x64", node: `v${AGENT_NODE_VERSION}` });
  });

  it("logs a version mismatch on both sides, and still connects", async () => {
    // An agent built as another version: the same source with another version baked in.
    const other = join(dir, "other-agent.cjs");
    await build({
      entryPoints: [`${REPO_ROOT}agent/main.ts`],
      outfile: other,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      logLevel: "error",
      define: { __WARREN_VERSION__: JSON.stringify("0.0.1-other") },
    });
    const ws = await createWorkspace(server, "mismatch", [app.port]);
    const agent = new Proc(process.execPath, [other], cleanEnv({ WARREN_SERVER: server.agentUrl, WARREN_TOKEN: ws.agentToken }));
    await agent.waitFor((l) => l["event"] === "ready", 15_000, "ready line");
    const agentSide = await agent.waitFor((l) => l.msg === "server version differs from the agent's");
    expect(agentSide).toMatchObject({ level: "warn", serverVersion: PACKAGE_VERSION, agentVersion: "0.0.1-other" });
    const serverSide = await server.proc.waitFor((l) => l.msg === "agent version differs from the server's" && l["workspace"] === "mismatch");
    expect(serverSide).toMatchObject({ level: "warn", agentVersion: "0.0.1-other", serverVersion: PACKAGE_VERSION });
    await agent.stop();
  });

  it("bundles optional native modules as stubs that throw, which their users catch", async () => {
    const out = join(dir, "stubs.cjs");
    await build({
      stdin: {
        contents: [
          // Written as ssh2 and debug write them: optional, inside try/catch.
          "try { require('cpu-features'); } catch (err) { console.log(err.message); }",
          "try { require('./crypto/build/Release/sshcrypto.node'); } catch (err) { console.log(err.message); }",
          "try { require('supports-color'); } catch (err) { console.log(err.message); }",
        ].join("\n"),
        resolveDir: dir,
        loader: "js",
      },
      outfile: out,
      bundle: true,
      platform: "node",
      format: "cjs",
      logLevel: "error",
      plugins: [nativeStubs()],
    });
    const output = execFileSync(process.execPath, [out], { cwd: dir }).toString().trim().split("\n");
    expect(output).toEqual([
      "cpu-features is not available in the single-file warren-agent",
      "./crypto/build/Release/sshcrypto.node is not available in the single-file warren-agent",
      "supports-color is not available in the single-file warren-agent",
    ]);
  });
});

/** The ELF header's class, byte order and machine: what `file` would call the binary. */
function elfHeader(path: string): { magic: string; bits: number; endian: string; machine: number } {
  const header = Buffer.alloc(20);
  const fd = openSync(path, "r");
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return {
    magic: header.subarray(0, 4).toString("latin1"),
    bits: header[4] === 2 ? 64 : 32,
    endian: header[5] === 1 ? "little" : "big",
    machine: header.readUInt16LE(18),
  };
}

/** qemu-user and the arm64 C and C++ runtimes (Debian: qemu-user, libc6-arm64-cross, libstdc++6-arm64-cross). */
const QEMU = "/usr/bin/qemu-aarch64";
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

describe("single-file agent binary for linux-arm64", () => {
  let server: ServerHandle;
  let app: App;

  beforeAll(async () => {
    if (!existsSync(AGENT_BINARY_ARM64)) throw new Error(`${AGENT_BINARY_ARM64} is missing: run \`npm run build\` before the tests`);
    for (const needed of [QEMU, `${ARM64_SYSROOT}/lib/ld-linux-aarch64.so.1`, `${ARM64_SYSROOT}/lib/libstdc++.so.6`]) {
      if (!existsSync(needed)) throw new Error(`${needed} is missing: scripts/test.sh installs qemu-user, libc6-arm64-cross and libstdc++6-arm64-cross`);
    }
    app = await startApp((_req, res) => res.end("hello from an arm64 agent"));
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
    await app?.close();
  });

  /** Runs the arm64 binary under qemu-user; no binfmt needed, and no node on PATH. */
  const underQemu = (args: string[], env: Record<string, string>) => new Proc(QEMU, ["-L", ARM64_SYSROOT, AGENT_BINARY_ARM64, ...args], { PATH: "/nonexistent", ...env });

  it("is an aarch64 ELF whose manifest names its platform, the pinned Node.js 24 and its checksum", () => {
    // EM_AARCH64 is 183: an x86-64 binary (62) renamed would not pass.
    expect(elfHeader(AGENT_BINARY_ARM64)).toEqual({ magic: "\x7fELF", bits: 64, endian: "little", machine: 183 });
    expect(elfHeader(AGENT_BINARY).machine).toBe(62);
    const manifest = JSON.parse(readFileSync(`${AGENT_BINARY_ARM64}.json`, "utf8")) as Record<string, unknown>;
    const sha256 = createHash("sha256").update(readFileSync(AGENT_BINARY_ARM64)).digest("hex");
    expect(manifest).toEqual({ name: "warren-agent", version: PACKAGE_VERSION, platform: "linux-arm64", node: `v${AGENT_NODE_VERSION}`, sha256 });
    expect(readFileSync(AGENT_BINARY_ARM64).includes("warren agent ready")).toBe(true);
  });

  it("runs under qemu-user: --version names the embedded Node.js 24", async () => {
    const version = underQemu(["--version"], {});
    expect((await version.exited).code).toBe(0);
    expect(version.stdoutText).toEqual([`warren-agent ${PACKAGE_VERSION} (Node.js v${AGENT_NODE_VERSION}, linux-arm64)`]);
    expect(AGENT_NODE_VERSION).toMatch(/^24\./);
  });

  it("runs under qemu-user: connects to the server and serves its app", async () => {
    const ws = await createWorkspace(server, "arm64", [app.port]);
    const agent = underQemu([], { WARREN_SERVER: server.agentUrl, WARREN_TOKEN: ws.agentToken });
    try {
      // Emulated, the agent starts in seconds rather than a fraction of one.
      await agent.waitFor((l) => l["event"] === "ready", 60_000, "ready line from the emulated agent");
      const res = await httpRequest({ port: server.httpPort, host: workspaceHost("arm64", app.port), headers: { "x-warren-token": server.adminToken } });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe("hello from an arm64 agent");
      const connected = await server.proc.waitFor((l) => l.msg === "agent connected" && l["workspace"] === "arm64");
      expect(connected["agentVersion"]).toBe(PACKAGE_VERSION);
    } finally {
      agent.kill("SIGTERM");
      await agent.exited;
    }
    expect(agent.stderr.join("")).toBe("");
  }, 90_000);
});
