// The pinned Node.js binaries the single-file agent is built from (scripts/build/agent-node.json):
// fetched with npm's own client (`npm pack`, so from the npm registry or npm's cache), checked
// against the pinned tarball integrity, and unpacked once under node_modules/.cache.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PIN = JSON.parse(readFileSync(new URL("./agent-node.json", import.meta.url), "utf8"));

/** The platforms an agent binary is built for. */
export const AGENT_PLATFORMS = Object.keys(PIN.packages);
/** The pinned Node.js version, e.g. "24.22.3". */
export const AGENT_NODE_VERSION = PIN.version;

/** This machine as an agent platform ("linux-x64", "linux-arm64"), or undefined. */
export function hostPlatform() {
  const platform = `${process.platform}-${process.arch}`;
  return AGENT_PLATFORMS.includes(platform) ? platform : undefined;
}

/** Where the pinned node for `platform` is unpacked (it may not be there yet). */
export function agentNodePath(platform, root = ROOT) {
  return join(root, "node_modules", ".cache", "warren-agent-node", `v${PIN.version}-${platform}`, "node");
}

/** The pinned node binary for `platform`: unpacked already, or fetched and unpacked now. */
export function ensureAgentNode(platform, { root = ROOT, log = console.log } = {}) {
  const pkg = PIN.packages[platform];
  if (!pkg) throw new Error(`no pinned Node.js for ${platform} (scripts/build/agent-node.json has ${AGENT_PLATFORMS.join(", ")})`);
  const target = agentNodePath(platform, root);
  if (existsSync(target)) return target;
  const spec = `${pkg.name}@${PIN.version}`;
  mkdirSync(join(root, "node_modules", ".cache"), { recursive: true });
  const work = mkdtempSync(join(root, "node_modules", ".cache", "warren-agent-node-"));
  try {
    let packed;
    try {
      const npm = process.env["npm_execpath"];
      const [command, args] = npm ? [process.execPath, [npm]] : ["npm", []];
      const out = execFileSync(command, [...args, "pack", spec, "--pack-destination", work, "--json", "--loglevel=error"], {
        stdio: ["ignore", "pipe", "pipe"],
        cwd: work,
      });
      packed = JSON.parse(out.toString())[0];
    } catch (err) {
      throw new Error(`cannot fetch ${spec} from the npm registry (npm pack: ${err.stderr?.toString().trim() || err.message})`);
    }
    const tarball = join(work, packed.filename);
    const integrity = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (integrity !== pkg.integrity) {
      throw new Error(`${spec} does not match its pinned integrity in scripts/build/agent-node.json (got ${integrity})`);
    }
    execFileSync("tar", ["-xzf", tarball, "-C", work, "package/bin/node"], { stdio: ["ignore", "ignore", "pipe"] });
    mkdirSync(join(target, ".."), { recursive: true });
    renameSync(join(work, "package", "bin", "node"), target);
    log(`fetched ${spec} (${platform}) into ${target}`);
    return target;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
