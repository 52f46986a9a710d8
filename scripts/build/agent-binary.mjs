// Turns the agent bundle into Node.js Single Executable Applications (SEA), one per platform
// (linux-x64, linux-arm64): a copy of the pinned Node.js 24 binary (scripts/build/agent-node.mjs),
// stripped, with the bundle injected as its main script. Works offline once npm has the pinned
// packages in its cache (pkg and its forks download base binaries from elsewhere at build time).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { AGENT_NODE_VERSION, AGENT_PLATFORMS, ensureAgentNode, hostPlatform } from "./agent-node.mjs";

const execFileAsync = promisify(execFile);

/** Fixed by Node: the fuse postject flips so node runs the injected blob. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** The platform this machine can build agent binaries on ("linux-x64", "linux-arm64"), or undefined. */
export function binaryPlatform() {
  return hostPlatform();
}

/** `dist/warren-agent-<platform>` for each platform an agent binary is built for. */
export function agentBinaryOutputs(dir = "dist") {
  return AGENT_PLATFORMS.map((platform) => ({ platform, output: join(dir, `warren-agent-${platform}`) }));
}

/**
 * Builds `dist/warren-agent-<platform>` for every platform from the CommonJS bundle `bundle`, and
 * writes `<output>.json` (version, platform, node version, sha256) beside each, which the server
 * reads to serve only its own version. Replaces both atomically, so a server serving the old
 * file never sees half a new one.
 */
export async function buildAgentBinaries({ bundle, dir = "dist", version, log = console.log }) {
  const host = hostPlatform();
  if (!host) throw new Error(`the agent binaries are built on ${AGENT_PLATFORMS.join(" or ")} (this is ${process.platform}-${process.arch})`);
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), "warren-sea-"));
  try {
    // One blob for every platform: it is plain data for the same Node.js version, portable
    // across architectures as long as it holds no code cache and no snapshot.
    const hostNode = ensureAgentNode(host, { log });
    const blob = join(work, "agent.blob");
    const seaConfig = join(work, "sea-config.json");
    writeFileSync(
      seaConfig,
      JSON.stringify({ main: resolve(bundle), output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false }),
    );
    await run(hostNode, ["--experimental-sea-config", seaConfig], "node --experimental-sea-config");
    const nodes = new Map(AGENT_PLATFORMS.map((platform) => [platform, ensureAgentNode(platform, { log })]));
    const built = await Promise.all(
      agentBinaryOutputs(dir).map(({ platform, output }) =>
        buildOne({ platform, node: nodes.get(platform), blob, work, output, version, log }),
      ),
    );
    log(`built ${built.length} agent binaries in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return built;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function buildOne({ platform, node, blob, work, output, version, log }) {
  const binary = join(work, `warren-agent-${platform}`);
  copyFileSync(node, binary);
  chmodSync(binary, 0o755);
  // Strip before injecting: stripping an injected binary corrupts it (it segfaults).
  const stripped = await strip(binary, platform, log);
  await inject(binary, blob);

  const bytes = readFileSync(binary);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const outDir = dirname(resolve(output));
  const tmpBinary = join(outDir, `.${basename(output)}.${process.pid}.tmp`);
  const tmpManifest = `${tmpBinary}.json`;
  copyFileSync(binary, tmpBinary);
  chmodSync(tmpBinary, 0o755);
  const manifest = { name: "warren-agent", version, platform, node: `v${AGENT_NODE_VERSION}`, sha256 };
  writeFileSync(tmpManifest, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(tmpBinary, output);
  renameSync(tmpManifest, `${output}.json`);
  log(
    `built ${output}: ${(bytes.length / 1048576).toFixed(1)} MiB${stripped ? "" : " (not stripped)"}, node v${AGENT_NODE_VERSION}, ` +
      `sha256 ${sha256.slice(0, 16)}...`,
  );
  return { platform, path: output, bytes: bytes.length, sha256 };
}

/**
 * Injects the blob with postject's command line in a child process: its ELF library prints a
 * warning per .note section of the node binary, which only matters when injection fails.
 */
async function inject(binary, blob) {
  const cli = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  await run(process.execPath, [cli, binary, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE], "postject");
}

/** Runs a build step quietly; its output is shown only when it fails. */
async function run(command, args, what) {
  try {
    await execFileAsync(command, args, { maxBuffer: 64 << 20 });
  } catch (err) {
    const output = [err.stdout, err.stderr].map((b) => b?.toString().trim()).filter(Boolean).join("\n");
    throw new Error(`${what} failed: ${output || err.message}`);
  }
}

/** binutils' strip for the binary's architecture: the host's own, or the cross one. */
function stripFor(platform) {
  if (platform === hostPlatform()) return { command: "strip", apt: "binutils" };
  if (platform === "linux-arm64") return { command: "aarch64-linux-gnu-strip", apt: "binutils-aarch64-linux-gnu" };
  return { command: "x86-64-linux-gnu-strip", apt: "binutils-x86-64-linux-gnu" };
}

/** Strips symbols (about 18 MiB); without the right strip the binary still works, only larger. */
async function strip(file, platform, log) {
  const { command, apt } = stripFor(platform);
  try {
    // strip warns about the many .note sections of the node binary; only failure matters.
    await execFileAsync(command, ["--strip-all", file]);
    return true;
  } catch (err) {
    if (err.code === "ENOENT") {
      log(`warning: \`${command}\` (Debian: ${apt}) is not installed; the ${platform} agent binary keeps its symbols (about 18 MiB more)`);
      return false;
    }
    throw new Error(`${command} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}
