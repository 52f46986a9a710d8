import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { RootRoute } from "./root-handler.js";
import { sendError } from "../web/error-response.js";
import { installScript, type InstallAddresses } from "./install-script.js";

/** The platforms the server hands out an agent for; the first is the one WARREN_AGENT_BINARY names. */
export const AGENT_PLATFORMS = ["linux-x64", "linux-arm64"] as const;
export type AgentPlatform = (typeof AGENT_PLATFORMS)[number];
export const AGENT_PLATFORM: AgentPlatform = "linux-x64";
export const AGENT_BINARY_NAME = agentBinaryName(AGENT_PLATFORM);

export function agentBinaryName(platform: AgentPlatform): string {
  return `warren-agent-${platform}`;
}

/**
 * Where each platform's binary is: the configured (linux-x64) one, and the others beside it,
 * named as the build names them (`warren-agent-linux-arm64` in the same directory).
 */
export function agentBinaryPaths(binaryPath: string): ReadonlyMap<AgentPlatform, string> {
  const dir = dirname(binaryPath);
  return new Map(
    AGENT_PLATFORMS.map((platform) => {
      if (platform === AGENT_PLATFORM) return [platform, binaryPath];
      const name = basename(binaryPath).includes(AGENT_PLATFORM) ? basename(binaryPath).replace(AGENT_PLATFORM, platform) : agentBinaryName(platform);
      return [platform, join(dir, name)];
    }),
  );
}
const PREFIX = "/-/agent/";
const gzipAsync = promisify(gzip);

export interface AgentDownloadOptions {
  /**
   * The linux-x64 single-file agent; the linux-arm64 one is beside it (agentBinaryPaths), and
   * `<binary>.json` beside each (written by the build) names its version.
   */
  readonly binaryPath: string;
  /** The server's version: only an agent binary of this version is served. */
  readonly version: string;
  /** Addresses the install script writes in, for one request. */
  readonly addressesFor: (req: IncomingMessage) => InstallAddresses;
  readonly log: Logger;
}

/** The binary as served: read, hashed and (on first demand) gzipped once per file version. */
interface LoadedBinary {
  readonly bytes: Buffer;
  readonly sha256: string;
  gzipped?: Promise<Buffer>;
}

/**
 * The agent download on the root domain, for each platform (linux-x64, linux-arm64):
 * - `GET /-/agent/<platform>`: the binary (gzip when the client accepts it), with ETag;
 * - `GET /-/agent/<platform>.sha256`: `<hex>  warren-agent-<platform>`, for `sha256sum -c`;
 * - `GET /-/agent/install.sh`: a POSIX sh script that picks the platform by `uname -m`, then
 *   downloads, verifies and installs it.
 * HEAD works on all. A file is loaded on first request, not at start (most servers start in
 * tests and never serve it), and again whenever it changes on disk; it is kept in memory
 * (about 105 MiB per platform, plus about 40 MiB gzipped once someone asks for gzip).
 */
export class AgentDownload {
  readonly #options: AgentDownloadOptions;
  readonly #files: ReadonlyMap<AgentPlatform, BinaryFile>;

  constructor(options: AgentDownloadOptions) {
    this.#options = options;
    this.#files = new Map([...agentBinaryPaths(options.binaryPath)].map(([platform, path]) => [platform, new BinaryFile(path, options)]));
  }

  readonly route: RootRoute = (req, res, path) => {
    if (!path.startsWith(PREFIX) || (req.method !== "GET" && req.method !== "HEAD")) return false;
    this.#serve(req, res, path.slice(PREFIX.length)).catch((err) => {
      this.#options.log.warn({ path: this.#options.binaryPath, err: (err as Error).message }, "agent download failed");
      sendError(res, err);
    });
    return true;
  };

  async #serve(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const common: OutgoingHttpHeaders = { "x-warren-version": this.#options.version, "cache-control": "no-cache" };
    if (name === "install.sh") {
      // Only when the linux-x64 binary is there: a server without its agent offers no script.
      await this.#files.get(AGENT_PLATFORM)!.load();
      const script = installScript({ version: this.#options.version, addresses: this.#options.addressesFor(req) });
      // Written for this request's Host: no cache may keep it for another.
      send(req, res, Buffer.from(script), { ...common, "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      return;
    }
    const platform = AGENT_PLATFORMS.find((p) => name === p || name === `${p}.sha256`);
    if (platform === undefined) {
      const offered = AGENT_PLATFORMS.flatMap((p) => [`${PREFIX}${p}`, `${PREFIX}${p}.sha256`]).join(", ");
      throw new WarrenError(ErrorCode.NotFound, `no agent download "${name}": this server offers ${offered} and ${PREFIX}install.sh`);
    }
    const binary = await this.#files.get(platform)!.load();
    const fileName = agentBinaryName(platform);
    if (name.endsWith(".sha256")) {
      send(req, res, Buffer.from(`${binary.sha256}  ${fileName}\n`), { ...common, "content-type": "text/plain; charset=utf-8" });
      return;
    }
    const headers: OutgoingHttpHeaders = {
      ...common,
      "content-type": "application/octet-stream",
      "content-disposition": `attachment; filename="${fileName}"`,
      vary: "accept-encoding",
    };
    const tag = binary.sha256.slice(0, 32);
    if (acceptsGzip(req.headers["accept-encoding"])) {
      if (!binary.gzipped) {
        this.#options.log.info({ path: fileName, bytes: binary.bytes.length }, "compressing the agent binary for download (once per version)");
        const gzipped = gzipAsync(binary.bytes);
        binary.gzipped = gzipped;
        // A failure is retried by the next request.
        gzipped.catch(() => {
          if (binary.gzipped === gzipped) binary.gzipped = undefined;
        });
      }
      const body = await binary.gzipped;
      send(req, res, body, { ...headers, "content-encoding": "gzip", etag: `"${tag}-gzip"` });
    } else {
      send(req, res, binary.bytes, { ...headers, etag: `"${tag}"` });
    }
  }

}

/** One platform's binary file on disk, loaded on demand. */
class BinaryFile {
  readonly #path: string;
  readonly #options: AgentDownloadOptions;
  #cache: { readonly identity: string; readonly loaded: Promise<LoadedBinary> } | undefined;
  #warnedUnversioned = false;

  constructor(path: string, options: AgentDownloadOptions) {
    this.#path = path;
    this.#options = options;
  }

  /** The current binary; reloads when the file on disk is another one (rebuilt, replaced). */
  async load(): Promise<LoadedBinary> {
    const path = this.#path;
    let identity: string;
    try {
      const info = await stat(path);
      identity = `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new WarrenError(
          ErrorCode.NotFound,
          // The path is the operator's to know (the log says it), not every visitor's.
          "the agent binary is not on this server (build it with `npm run build:agent`, or set WARREN_AGENT_BINARY; the server's log names the path)",
        );
      }
      throw new WarrenError(ErrorCode.Internal, `cannot read the agent binary: ${code ?? "read failed"} (the server's log names the path)`);
    }
    if (this.#cache?.identity !== identity) {
      const loaded = this.#read(path);
      this.#cache = { identity, loaded };
      // A failed read is retried by the next request.
      loaded.catch(() => {
        if (this.#cache?.loaded === loaded) this.#cache = undefined;
      });
    }
    return this.#cache!.loaded;
  }

  async #read(path: string): Promise<LoadedBinary> {
    const { version, log } = this.#options;
    const builtVersion = await readManifestVersion(`${path}.json`);
    if (builtVersion === undefined) {
      if (!this.#warnedUnversioned) log.warn({ path }, `serving an agent binary of unknown version: ${path}.json is missing`);
      this.#warnedUnversioned = true;
    } else if (builtVersion !== version) {
      throw new WarrenError(
        ErrorCode.NotFound,
        `the agent binary on this server is version ${builtVersion}, not this server's ${version}: install the binary built with this server (npm run build:agent)`,
      );
    }
    // Read in chunks and hash as we go: hashing 85 MiB in one call would stall the event loop.
    const hash = createHash("sha256");
    const chunks: Buffer[] = [];
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      chunks.push(chunk as Buffer);
    }
    const bytes = Buffer.concat(chunks);
    const sha256 = hash.digest("hex");
    log.info({ path, bytes: bytes.length, sha256, version: builtVersion }, "loaded the agent binary for download");
    return { bytes, sha256 };
  }
}

async function readManifestVersion(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const version = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === "string" ? version : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an Accept-Encoding header allows gzip (listed, or `*`, with a q-value above 0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  let star = false;
  for (const part of header.split(",")) {
    const [coding = "", ...params] = part.toLowerCase().split(";").map((p) => p.trim());
    const q = params.find((p) => p.startsWith("q="));
    const allowed = q === undefined || Number(q.slice(2)) > 0;
    if (coding === "gzip" || coding === "x-gzip") return allowed;
    if (coding === "*") star = allowed;
  }
  return star;
}

/** 200 with the body (none for HEAD), or 304 when the client already has this ETag. */
function send(req: IncomingMessage, res: ServerResponse, body: Buffer, headers: OutgoingHttpHeaders): void {
  const etag = headers["etag"];
  if (etag !== undefined && req.headers["if-none-match"]?.split(",").some((t) => t.trim() === etag)) {
    const kept: OutgoingHttpHeaders = {};
    for (const name of ["etag", "vary", "cache-control", "x-warren-version"]) if (headers[name] !== undefined) kept[name] = headers[name];
    res.writeHead(304, kept);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, "content-length": body.length });
  if (req.method === "HEAD") res.end();
  else res.end(body);
}
