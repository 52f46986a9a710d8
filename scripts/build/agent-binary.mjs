// Turns the agent bundle into a Node.js Single Executable Application (SEA): a copy of the
// node binary running the build, stripped, with the bundle injected as its main script.
// Works offline (pkg and its forks download base binaries at build time; SEA needs none).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";

/** Fixed by Node: the fuse postject flips so node runs the injected blob. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** The platform this machine can build a binary for ("linux-x64"), or undefined. */
export function binaryPlatform() {
  return process.platform === "linux" && process.arch === "x64" ? "linux-x64" : undefined;
}

/**
 * Builds `output` from the CommonJS bundle `bundle`, and writes `<output>.json` (version,
 * platform, node version) beside it, which the server reads to serve only its own version.
 * Replaces both atomically, so a server serving the old file never sees half a new one.
 */
export function buildAgentBinary({ bundle, output, version, log = console.log }) {
  const platform = binaryPlatform();
  if (!platform) throw new Error(`the agent binary is built on linux-x64 only (this is ${process.platform}-${process.arch})`);
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), "warren-sea-"));
  try {
    const blob = join(work, "agent.blob");
    const seaConfig = join(work, "sea-config.json");
    writeFileSync(
      seaConfig,
      JSON.stringify({
        main: resolve(bundle),
        output: blob,
        disableExperimentalSEAWarning: true,
        // useSnapshot fails once http/http2 are loaded; the code cache gains little.
        useSnapshot: false,
        useCodeCache: false,
      }),
    );
    run(process.execPath, ["--experimental-sea-config", seaConfig], "node --experimental-sea-config");

    const binary = join(work, "warren-agent");
    copyFileSync(process.execPath, binary);
    chmodSync(binary, 0o755);
    // Strip before injecting: stripping an injected binary corrupts it (it segfaults).
    const stripped = strip(binary, log);
    inject(binary, blob);

    const bytes = readFileSync(binary);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const outDir = dirname(resolve(output));
    const tmpBinary = join(outDir, `.${basename(output)}.${process.pid}.tmp`);
    const tmpManifest = `${tmpBinary}.json`;
    copyFileSync(binary, tmpBinary);
    chmodSync(tmpBinary, 0o755);
    writeFileSync(tmpManifest, `${JSON.stringify({ name: "warren-agent", version, platform, node: process.version, sha256 }, null, 2)}\n`);
    renameSync(tmpBinary, output);
    renameSync(tmpManifest, `${output}.json`);
    log(
      `built ${output}: ${(bytes.length / 1048576).toFixed(1)} MiB${stripped ? "" : " (not stripped)"}, node ${process.version}, ` +
        `sha256 ${sha256.slice(0, 16)}..., ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    return { path: output, bytes: bytes.length, sha256 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Injects the blob with postject's command line in a child process: its ELF library prints a
 * warning per .note section of the node binary, which only matters when injection fails.
 */
function inject(binary, blob) {
  const cli = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  run(process.execPath, [cli, binary, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE], "postject");
}

/** Runs a build step quietly; its output is shown only when it fails. */
function run(command, args, what) {
  try {
    execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const output = [err.stdout, err.stderr].map((b) => b?.toString().trim()).filter(Boolean).join("\n");
    throw new Error(`${what} failed: ${output || err.message}`);
  }
}

/** Strips symbols with binutils' strip; without it the binary still works, only larger. */
function strip(file, log) {
  try {
    // strip warns about the many .note sections of the node binary; only failure matters.
    execFileSync("strip", ["--strip-all", file], { stdio: ["ignore", "ignore", "pipe"] });
    return true;
  } catch (err) {
    if (err.code === "ENOENT") {
      log("warning: `strip` (binutils) is not installed; the agent binary keeps its symbols (about 12 MiB more)");
      return false;
    }
    throw new Error(`strip failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}
