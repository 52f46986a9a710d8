import { readdir, readFile, readlink } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema, type ControlRequest } from "../shared/gen/warren/v1/agent_pb.js";
import type { Logger } from "../shared/logger.js";

/** A TCP port listening inside the workspace. */
export interface ListeningPort {
  readonly port: number;
  /** "127.0.0.1", "0.0.0.0", "::", "::1", ... */
  readonly address: string;
  /** /proc/PID/comm of the listening process, when readable. */
  readonly process?: string;
}

/** Where the tables live (tests and other namespaces pass their own root). */
export interface ProcFiles {
  readFile(path: string): Promise<string>;
  readdir(path: string): Promise<string[]>;
  readlink(path: string): Promise<string>;
}

const nodeProc: ProcFiles = {
  readFile: (path) => readFile(path, "utf8"),
  readdir: (path) => readdir(path),
  readlink: (path) => readlink(path),
};

const TCP_LISTEN = "0A";

/** Parses /proc/net/tcp or tcp6: the listening sockets on loopback or on every address, with their inode. */
export function parseProcNetTcp(text: string, ipv6: boolean): Array<{ port: number; address: string; inode: string }> {
  const out: Array<{ port: number; address: string; inode: string }> = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== TCP_LISTEN) continue;
    const [hexAddress, hexPort] = (fields[1] ?? "").split(":");
    if (!hexAddress || !hexPort) continue;
    const address = ipv6 ? ipv6Of(hexAddress) : ipv4Of(hexAddress);
    if (address === undefined || !reachableFromAgent(address)) continue;
    out.push({ port: parseInt(hexPort, 16), address, inode: fields[9] ?? "0" });
  }
  return out;
}

/** The kernel prints each 32-bit word in host byte order (little-endian here). */
function ipv4Of(hex: string): string | undefined {
  if (hex.length !== 8) return undefined;
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join(".");
}

function ipv6Of(hex: string): string | undefined {
  if (hex.length !== 32) return undefined;
  const bytes: number[] = [];
  for (let word = 0; word < 4; word++) {
    const w = hex.slice(word * 8, word * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(w.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join(".")}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Shorten the longest run of two or more zero groups, as people write addresses.
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLength).join(":")}`;
}

/** The agent dials 127.0.0.1 only: listeners on loopback or on every address are the ones it could reach. */
function reachableFromAgent(address: string): boolean {
  return /^127\./.test(address) || address === "0.0.0.0" || address === "::" || address === "::1" || /^::ffff:127\./.test(address) || address === "::ffff:0.0.0.0";
}

/**
 * The listening ports now, with process names where /proc lets us read them. `names` caches
 * what each socket inode resolved to ("" for unknown) across calls, so that /proc/PID/fd is
 * walked only for new listeners. Never rejects.
 */
export async function listListeningPorts(proc: ProcFiles = nodeProc, root = "/proc", names = new Map<string, string>()): Promise<ListeningPort[]> {
  const sockets: Array<{ port: number; address: string; inode: string }> = [];
  for (const [file, ipv6] of [["net/tcp", false], ["net/tcp6", true]] as const) {
    try {
      sockets.push(...parseProcNetTcp(await proc.readFile(`${root}/${file}`), ipv6));
    } catch {
      // No IPv6 (or no /proc): nothing listens there as far as we can tell.
    }
  }
  const inodes = new Set(sockets.map((s) => s.inode));
  for (const inode of names.keys()) if (!inodes.has(inode)) names.delete(inode);
  const unknown = new Set([...inodes].filter((inode) => !names.has(inode)));
  if (unknown.size > 0) {
    const found = await processNamesByInode(proc, root, unknown);
    for (const inode of unknown) names.set(inode, found.get(inode) ?? "");
  }
  const seen = new Set<string>();
  const out: ListeningPort[] = [];
  for (const s of sockets) {
    const key = `${s.port}/${s.address}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const name = names.get(s.inode);
    out.push({ port: s.port, address: s.address, ...(name ? { process: name } : {}) });
  }
  return out.sort((a, b) => a.port - b.port || a.address.localeCompare(b.address));
}

/** socket:[inode] links under /proc/PID/fd, for the processes we may read (others are skipped). */
async function processNamesByInode(proc: ProcFiles, root: string, wanted: Set<string>): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  let pids: string[];
  try {
    pids = (await proc.readdir(root)).filter((d) => /^\d+$/.test(d));
  } catch {
    return names;
  }
  for (const pid of pids) {
    if (names.size === wanted.size) break;
    let fds: string[];
    try {
      fds = await proc.readdir(`${root}/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = await proc.readlink(`${root}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (!inode || !wanted.has(inode) || names.has(inode)) continue;
      try {
        names.set(inode, (await proc.readFile(`${root}/${pid}/comm`)).trim());
      } catch {
        // The process exited meanwhile.
      }
    }
  }
  return names;
}

export interface PortDiscoveryOptions {
  /** How often to look; the report follows a change within this long. */
  readonly intervalMs: number;
  /** Called with the full list whenever it changed (and once at start). */
  readonly onChange: (ports: readonly ListeningPort[]) => void;
  readonly log: Logger;
  /** Reads the port tables (tests pass a fake). */
  readonly list?: () => Promise<ListeningPort[]>;
}

/**
 * Looks at the workspace's listening TCP ports every `intervalMs` and reports when they
 * change. Informational only: the allowed ports decide what the agent dials.
 */
export class PortDiscovery {
  readonly #options: PortDiscoveryOptions;
  #timer: NodeJS.Timeout | undefined;
  #last: string | undefined;
  #current: readonly ListeningPort[] = [];
  #stopped = false;
  readonly #names = new Map<string, string>();

  constructor(options: PortDiscoveryOptions) {
    this.#options = options;
  }

  /** The list as last seen. */
  get current(): readonly ListeningPort[] {
    return this.#current;
  }

  start(): void {
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    try {
      const ports = await (this.#options.list ?? (() => listListeningPorts(undefined, undefined, this.#names)))();
      const key = JSON.stringify(ports);
      if (key !== this.#last) {
        this.#last = key;
        this.#current = ports;
        this.#options.log.debug({ ports }, "listening ports changed");
        this.#options.onChange(ports);
      }
    } catch (err) {
      this.#options.log.debug({ err: (err as Error).message }, "could not read the listening ports");
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), this.#options.intervalMs);
    this.#timer.unref();
  }
}

/** The control message that reports the list to the server. */
export function listeningPortsMessage(ports: readonly ListeningPort[]): ControlRequest {
  return create(ControlRequestSchema, {
    msg: { case: "listeningPorts", value: { ports: ports.map((p) => ({ port: p.port, address: p.address, process: p.process ?? "" })) } },
  });
}
