import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_BINARY, AGENT_BINARY_ARM64, REPO_ROOT, requireAgentBinary } from "./harness/processes.js";
import { httpRequest, startServer, type HttpResult, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

const PACKAGE_VERSION = (JSON.parse(readFileSync(`${REPO_ROOT}package.json`, "utf8")) as { version: string }).version;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("agent download", () => {
  let server: ServerHandle;
  /** Serves a small stand-in binary: for the install.sh variants, which need no 85 MiB. */
  let small: ServerHandle;
  let dir: string;
  let binary: Buffer;
  const smallBinary = Buffer.from("#!/bin/sh\necho small stand-in agent\n");
  const smallArm64Binary = Buffer.from("#!/bin/sh\necho small stand-in arm64 agent\n");

  beforeAll(async () => {
    requireAgentBinary();
    binary = readFileSync(AGENT_BINARY);
    dir = tempDir("warren-download-");
    // The default: the binary beside the server bundle in dist/.
    server = await startServer({ WARREN_LOG_LEVEL: "info" });
    mkdirSync(join(dir, "small"));
    writeFileSync(join(dir, "small", "warren-agent-linux-x64"), smallBinary);
    writeFileSync(join(dir, "small", "warren-agent-linux-x64.json"), JSON.stringify({ version: PACKAGE_VERSION }));
    writeFileSync(join(dir, "small", "warren-agent-linux-arm64"), smallArm64Binary);
    writeFileSync(join(dir, "small", "warren-agent-linux-arm64.json"), JSON.stringify({ version: PACKAGE_VERSION }));
    small = await startServer({ WARREN_AGENT_BINARY: join(dir, "small", "warren-agent-linux-x64") });
  });

  afterAll(async () => {
    await server?.stop();
    await small?.stop();
  });

  // IP literals reach the root domain, as they do for a CI job that knows only an address.
  const get = (path: string, headers: Record<string, string> = {}, method = "GET", port = server.httpPort): Promise<HttpResult> =>
    httpRequest({ port, host: `127.0.0.1:${port}`, path, method, headers });

  it("serves the binary as is to a client that does not accept gzip", async () => {
    const res = await get("/-/agent/linux-x64");
    expect(res.status).toBe(200);
    expect(res.headers["content-encoding"]).toBeUndefined();
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    expect(res.headers["x-warren-version"]).toBe(PACKAGE_VERSION);
    expect(Number(res.headers["content-length"])).toBe(binary.length);
    expect(sha256(res.body)).toBe(sha256(binary));
    expect(res.headers["etag"]).toBe(`"${sha256(binary).slice(0, 32)}"`);
  });

  it("serves it gzipped to a client that accepts gzip, compressed once", async () => {
    const first = await get("/-/agent/linux-x64", { "accept-encoding": "gzip, deflate, br" });
    expect(first.status).toBe(200);
    expect(first.headers["content-encoding"]).toBe("gzip");
    expect(first.headers["vary"]).toBe("accept-encoding");
    expect(Number(first.headers["content-length"])).toBe(first.body.length);
    expect(first.body.length).toBeLessThan(binary.length / 2);
    expect(sha256(gunzipSync(first.body))).toBe(sha256(binary));
    // The second answer is the same bytes, and nothing is compressed again (regression: a
    // timed assertion here failed on a loaded machine; the server's log tells it exactly).
    const second = await get("/-/agent/linux-x64", { "accept-encoding": "gzip" });
    expect(second.body.equals(first.body)).toBe(true);
    expect(server.proc.lines.filter((l) => l.msg === "compressing the agent binary for download (once per version)")).toHaveLength(1);
    // gzip refused with q=0: identity.
    const refused = await get("/-/agent/linux-x64", { "accept-encoding": "gzip;q=0, identity" });
    expect(refused.headers["content-encoding"]).toBeUndefined();
    expect(refused.body.length).toBe(binary.length);
  });

  it("publishes a checksum that sha256sum -c accepts and that matches the served bytes", async () => {
    const res = await get("/-/agent/linux-x64.sha256");
    expect(res.status).toBe(200);
    const text = res.body.toString();
    expect(text).toBe(`${sha256(binary)}  warren-agent-linux-x64\n`);
    const served = (await get("/-/agent/linux-x64")).body;
    writeFileSync(join(dir, "warren-agent-linux-x64"), served);
    writeFileSync(join(dir, "warren-agent-linux-x64.sha256"), text);
    const check = spawnSync("sha256sum", ["-c", "warren-agent-linux-x64.sha256"], { cwd: dir });
    expect(check.stdout.toString()).toBe("warren-agent-linux-x64: OK\n");
    expect(check.status).toBe(0);
  });

  it("answers HEAD with the headers of GET and no body, and 304 for a known ETag", async () => {
    for (const encoding of ["identity", "gzip"]) {
      const got = await get("/-/agent/linux-x64", { "accept-encoding": encoding }, "GET", small.httpPort);
      expect(got.headers["content-encoding"]).toBe(encoding === "gzip" ? "gzip" : undefined);
      const head = await get("/-/agent/linux-x64", { "accept-encoding": encoding }, "HEAD", small.httpPort);
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(head.headers["content-length"]).toBe(got.headers["content-length"]);
      expect(head.headers["etag"]).toBe(got.headers["etag"]);
      const again = await get("/-/agent/linux-x64", { "accept-encoding": encoding, "if-none-match": got.headers["etag"]! }, "GET", small.httpPort);
      expect(again.status).toBe(304);
      expect(again.body.length).toBe(0);
    }
    // The real one too, without downloading it.
    const head = await get("/-/agent/linux-x64", {}, "HEAD");
    expect(Number(head.headers["content-length"])).toBe(binary.length);
  });

  async function runInstallScript(env: Record<string, string>, from = server): Promise<{ status: number | null; stdout: string; stderr: string; target: string }> {
    const script = await get("/-/agent/install.sh", {}, "GET", from.httpPort);
    expect(script.status).toBe(200);
    const work = mkdtempSync(join(dir, "install-"));
    writeFileSync(join(work, "install.sh"), script.body);
    const installDir = join(work, "bin");
    const run = spawnSync("/bin/sh", ["install.sh"], { cwd: work, env: { WARREN_INSTALL_DIR: installDir, ...env } });
    return { status: run.status, stdout: run.stdout.toString(), stderr: run.stderr.toString(), target: join(installDir, "warren-agent") };
  }

  it("install.sh run by sh downloads with curl, verifies, installs and says how to run the agent", async () => {
    const run = await runInstallScript({ PATH: process.env["PATH"] ?? "/usr/bin:/bin" });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(sha256(readFileSync(run.target))).toBe(sha256(binary));
    expect(statSync(run.target).mode & 0o777).toBe(0o755);
    // The public listener takes agents too: the URL the script came from is the agent's.
    const agentUrl = `http://127.0.0.1:${server.httpPort}`;
    expect(run.stdout).toContain(`warren-agent ${PACKAGE_VERSION} (linux-x64) installed at ${run.target} (sha256 ${sha256(binary)})`);
    expect(run.stdout).toContain(`WARREN_SERVER=${agentUrl} WARREN_TOKEN=<agent token> ${run.target}\n`);
    expect(run.stdout).toContain(`WARREN_SERVER=${agentUrl} WARREN_TOKEN=<agent token> ${run.target} run -- code-server`);
    const version = spawnSync(run.target, ["--version"], { env: {} });
    expect(version.stdout.toString()).toMatch(new RegExp(`^warren-agent ${PACKAGE_VERSION} \\(Node\\.js v24\\.\\d+\\.\\d+, linux-x64\\)\n$`));
  });

  it("serves the linux-arm64 binary with its checksum, from beside the linux-x64 one", async () => {
    const arm64 = readFileSync(AGENT_BINARY_ARM64);
    const head = await get("/-/agent/linux-arm64", {}, "HEAD");
    expect(head.status).toBe(200);
    expect(Number(head.headers["content-length"])).toBe(arm64.length);
    expect(head.headers["content-disposition"]).toBe('attachment; filename="warren-agent-linux-arm64"');
    const sum = await get("/-/agent/linux-arm64.sha256");
    expect(sum.body.toString()).toBe(`${sha256(arm64)}  warren-agent-linux-arm64\n`);
    // The x64 checksum is another one: each platform is hashed on its own.
    expect((await get("/-/agent/linux-x64.sha256")).body.toString()).toBe(`${sha256(binary)}  warren-agent-linux-x64\n`);
    const small64 = await get("/-/agent/linux-arm64", {}, "GET", small.httpPort);
    expect(small64.body).toEqual(smallArm64Binary);
  });

  it("install.sh on an aarch64 machine installs the linux-arm64 binary", async () => {
    // uname answers as an arm64 machine would; everything else is the real tool.
    const bin = join(dir, "aarch64-bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "uname"), '#!/bin/sh\nif [ "$1" = -m ]; then echo aarch64; else exec /bin/uname "$@"; fi\n');
    chmodSync(join(bin, "uname"), 0o755);
    const run = await runInstallScript({ PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` }, small);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(readFileSync(run.target)).toEqual(smallArm64Binary);
    expect(run.stdout).toContain(`warren-agent ${PACKAGE_VERSION} (linux-arm64) installed at ${run.target} (sha256 ${sha256(smallArm64Binary)})`);
  });

  it("install.sh works with wget where there is no curl", async () => {
    // A PATH holding only the tools the script may use, wget instead of curl.
    const bin = join(dir, "wget-only-bin");
    mkdirSync(bin, { recursive: true });
    for (const tool of ["wget", "sha256sum", "cut", "uname", "mkdir", "chmod", "mv", "rm", "cat"]) {
      const found = ["/usr/bin", "/bin"].map((d) => join(d, tool)).find((p) => existsSync(p));
      if (!found) throw new Error(`${tool} is not installed (scripts/test.sh installs it)`);
      if (!existsSync(join(bin, tool))) symlinkSync(found, join(bin, tool));
    }
    const run = await runInstallScript({ PATH: bin }, small);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(readFileSync(run.target)).toEqual(smallBinary);
  });

  it("install.sh refuses a download whose checksum does not match", async () => {
    // The script fetches through a stand-in curl that corrupts the binary on its way.
    const bin = join(dir, "corrupting-bin");
    mkdirSync(bin, { recursive: true });
    const curl = join(bin, "curl");
    writeFileSync(
      curl,
      [
        "#!/bin/sh",
        '/usr/bin/curl "$@" || exit $?',
        "prev=; out=; url=",
        'for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; url=$a; done',
        'case "$url" in *.sha256) ;; *) printf x >> "$out" ;; esac',
        "",
      ].join("\n"),
    );
    chmodSync(curl, 0o755);
    const run = await runInstallScript({ PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` }, small);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^warren-agent install: checksum mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}\n$/);
    expect(existsSync(run.target)).toBe(false);
  });

  it("names what it offers for an unknown download", async () => {
    const res = await get("/-/agent/darwin-arm64");
    expect(res.status).toBe(404);
    expect(res.body.toString()).toBe(
      "no agent download \"darwin-arm64\": this server offers /-/agent/linux-x64, /-/agent/linux-x64.sha256, /-/agent/linux-arm64, /-/agent/linux-arm64.sha256 and /-/agent/install.sh\n",
    );
  });

  it("answers 404 with a clear text when the binary is missing or of another version (never the server's file path), and serves a new one at once", async () => {
    const custom = join(dir, "custom", "warren-agent-linux-x64");
    const other = await startServer({ WARREN_AGENT_BINARY: custom });
    try {
      expect(other.proc.lines.find((l) => l.msg === "warren server ready")?.["agentBinary"]).toBe(custom);
      await other.proc.waitFor((l) => l.level === "warn" && String(l.msg).startsWith("the agent binary is missing"));
      for (const path of ["/-/agent/linux-x64", "/-/agent/linux-x64.sha256", "/-/agent/install.sh"]) {
        const res = await get(path, {}, "GET", other.httpPort);
        expect(res.status).toBe(404);
        expect(res.body.toString()).toBe(
          "the agent binary is not on this server (build it with `npm run build:agent`, or set WARREN_AGENT_BINARY; the server's log names the path)\n",
        );
        expect(res.body.toString()).not.toContain(dir);
      }
      // A binary of another version is not this server's to hand out.
      mkdirSync(join(dir, "custom"), { recursive: true });
      writeFileSync(custom, "#!/bin/sh\necho old agent\n");
      writeFileSync(`${custom}.json`, JSON.stringify({ version: "0.0.1-old" }));
      const old = await get("/-/agent/linux-x64", {}, "GET", other.httpPort);
      expect(old.status).toBe(404);
      expect(old.body.toString()).toMatch(/^the agent binary on this server is version 0\.0\.1-old, not this server's /);
      expect(old.body.toString()).not.toContain(dir);
      // Replaced by the right version: served without a restart.
      writeFileSync(`${custom}.json`, JSON.stringify({ version: PACKAGE_VERSION }));
      writeFileSync(custom, "#!/bin/sh\necho the new agent\n");
      const fresh = await get("/-/agent/linux-x64", {}, "GET", other.httpPort);
      expect(fresh.status).toBe(200);
      expect(fresh.body.toString()).toBe("#!/bin/sh\necho the new agent\n");
      const sum = await get("/-/agent/linux-x64.sha256", {}, "GET", other.httpPort);
      expect(sum.body.toString()).toBe(`${sha256(fresh.body)}  warren-agent-linux-x64\n`);
    } finally {
      await other.stop();
    }
  });
});
