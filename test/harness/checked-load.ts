import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";

/**
 * Checked load: traffic whose every answer is verified for the app that gave it (misroute) and
 * its bytes (checksum). Shared by the fault suite (test/faults/) and the soak bench
 * (scripts/bench/soak.ts), so it imports nothing that needs the test runner or a build.
 *
 * The apps and the clients run in one process and share the payload generator, so a client
 * knows the exact bytes it must get back: the app's name and the request's seed, then filler.
 */

/** The host name workspaces are served under, as the servers are configured. */
export interface CheckedTarget {
  readonly workspace: string;
  /** The app's port in the workspace. */
  readonly port: number;
  /** The name of the app that must answer (a different app answering is a misroute). */
  readonly app: string;
}

/** Where clients send: a server's public HTTP port, with a token that may reach the workspaces. */
export interface CheckedEntry {
  readonly httpPort: number;
  readonly token: string;
}

export type LoadKind = "keepalive" | "fresh" | "upload" | "download" | "websocket" | "slow";

export const LOAD_KINDS: readonly LoadKind[] = ["keepalive", "fresh", "upload", "download", "websocket", "slow"];

/** One request (or WebSocket message) and what came of it. */
export interface Outcome {
  readonly kind: LoadKind;
  /** When it started (ms since the epoch). */
  readonly at: number;
  readonly ms: number;
  /** "ok", an HTTP status ("503"), a socket error code ("ECONNRESET"), "hung", "ws-closed" or "ws-refused". */
  readonly result: string;
  /** Another app answered. */
  readonly misrouted: boolean;
  /** The right app answered with the wrong bytes. */
  readonly corrupt: boolean;
  /** The server port it went through. */
  readonly entry: number;
  /** The app that was to answer (the target's). */
  readonly app: string;
  /**
   * Sent again once: a reused keep-alive connection was reset before any answer (the server
   * closed it as idle just as the request went out), which HTTP clients retry for idempotent
   * requests (node's documentation: `request.reusedSocket`; browsers, undici).
   */
  readonly retried?: boolean;
}

export interface LoadSummary {
  attempted: number;
  ok: number;
  /** Failures by result ("503", "ECONNRESET", "ws-closed"...); hung ones are counted apart. */
  failed: Record<string, number>;
  hung: number;
  misrouted: number;
  corrupt: number;
  /** Requests sent a second time after a reset of a reused keep-alive connection (counted ok when then answered). */
  retried: number;
  /** The first and last failure (hung included), ms since the epoch; undefined when none. */
  firstFailureAt?: number;
  lastFailureAt?: number;
}

const FILLER = randomBytes(1 << 20);

/** The body an app answers for a seed: its name, the seed, then `bytes` of filler. */
export function expectedBody(app: string, seed: string, bytes: number): Buffer {
  return Buffer.concat([Buffer.from(`${app}:${seed}:`), repeatFiller(bytes)]);
}

function repeatFiller(bytes: number): Buffer {
  if (bytes <= FILLER.length) return FILLER.subarray(0, bytes);
  const out = Buffer.allocUnsafe(bytes);
  for (let at = 0; at < bytes; at += FILLER.length) FILLER.copy(out, at, 0, Math.min(FILLER.length, bytes - at));
  return out;
}

export interface CheckedApp {
  readonly name: string;
  readonly port: number;
  /** Stops answering (closes every connection); `start()` listens on the same port again. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An app that says who it is in every answer:
 *   GET  /data?seed=S&bytes=N[&delay=MS]  the body expectedBody(name, S, N)
 *   POST /upload                          "<name>:<sha256 of the body>:<length>"
 *   WebSocket                             echoes every message as "<name>:<message>"
 */
export async function startCheckedApp(name: string, port = 0): Promise<CheckedApp> {
  let server: http.Server;
  let wss: WebSocketServer;
  const listen = async (p: number) => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://app");
      if (req.method === "POST" && url.pathname === "/upload") {
        const hash = createHash("sha256");
        let length = 0;
        req.on("data", (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        req.on("end", () => res.end(`${name}:${hash.digest("hex")}:${length}`));
        return;
      }
      const body = expectedBody(name, url.searchParams.get("seed") ?? "", Number(url.searchParams.get("bytes") ?? 0));
      const send = () => {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
        res.end(body);
      };
      const delay = Number(url.searchParams.get("delay") ?? 0);
      if (delay > 0) setTimeout(send, delay);
      else send();
    });
    wss = new WebSocketServer({ server });
    wss.on("connection", (ws) => ws.on("message", (data) => ws.send(`${name}:${data.toString()}`)));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(p, "127.0.0.1", () => resolve());
    });
    return (server.address() as AddressInfo).port;
  };
  const bound = await listen(port);
  // An app that goes down cuts its WebSockets too: server.close() waits for every socket it
  // accepted, upgraded ones included, which closeAllConnections() leaves open (the soak hung
  // in "app down" until an open WebSocket to the app ended by itself).
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      for (const ws of wss.clients) ws.terminate();
    });
  return {
    name,
    port: bound,
    stop,
    start: async () => {
      await listen(bound);
    },
    close: stop,
  };
}

export interface CheckedLoadOptions {
  /** The servers to send through, read before every request (a stopped one may be left out). */
  readonly entries: () => readonly CheckedEntry[];
  readonly targets: readonly CheckedTarget[];
  /** How many concurrent workers of each kind (0 or absent: none). */
  readonly workers: Partial<Record<LoadKind, number>>;
  /** A request not answered within this time is "hung" (aborted). */
  readonly hungAfterMs?: number;
  /** Pause between two requests of one worker. */
  readonly pauseMs?: number;
  readonly hostOf: (target: CheckedTarget) => string;
  readonly uploadBytes?: number;
  readonly downloadBytes?: number;
  /** Delay of a "slow" request. */
  readonly slowMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Workers that send checked traffic of each kind until stopped; every outcome is kept, so
 * that any time window can be summarized (a fault's phase, its recovery).
 */
export class CheckedLoad {
  readonly outcomes: Outcome[] = [];
  readonly #o: Required<CheckedLoadOptions>;
  #running = false;
  #workers: Promise<void>[] = [];
  #seq = 0;
  readonly #agents: http.Agent[] = [];
  readonly #sockets = new Set<WebSocket>();

  constructor(options: CheckedLoadOptions) {
    this.#o = { hungAfterMs: 15_000, pauseMs: 20, uploadBytes: 256 << 10, downloadBytes: 1 << 20, slowMs: 1000, ...options };
  }

  start(): void {
    this.#running = true;
    for (const kind of LOAD_KINDS) {
      for (let i = 0; i < (this.#o.workers[kind] ?? 0); i++) this.#workers.push(kind === "websocket" ? this.#webSocketWorker() : this.#httpWorker(kind));
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#workers);
    this.#workers = [];
    for (const agent of this.#agents) agent.destroy();
    for (const ws of this.#sockets) ws.terminate();
  }

  /** Outcomes that started within [from, to). */
  between(from: number, to = Infinity): Outcome[] {
    return this.outcomes.filter((o) => o.at >= from && o.at < to);
  }

  #pick<T>(list: readonly T[]): T {
    return list[this.#seq++ % list.length]!;
  }

  async #httpWorker(kind: Exclude<LoadKind, "websocket">): Promise<void> {
    // A keep-alive worker keeps one connection per server and workspace host, as a browser
    // does per origin (Warren serves one workspace port per connection).
    const agents = new Map<string, http.Agent>();
    const agentFor = (target: CheckedTarget) => {
      if (kind === "fresh") return undefined;
      let agent = agents.get(target.app);
      if (!agent) {
        agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        agents.set(target.app, agent);
        this.#agents.push(agent);
      }
      return agent;
    };
    while (this.#running) {
      const entries = this.#o.entries();
      if (entries.length === 0) {
        await sleep(50);
        continue;
      }
      const entry = entries[this.#seq % entries.length]!;
      const target = this.#pick(this.#o.targets);
      this.outcomes.push(await this.#request(kind, entry, target, agentFor(target), {}));
      await sleep(this.#o.pauseMs);
    }
  }

  /**
   * One checked request on a connection of its own, outside the workers (a burst, a slow
   * client); `stallMs` stops reading the answer that long after its first bytes.
   */
  once(kind: Exclude<LoadKind, "websocket">, entry: CheckedEntry, target: CheckedTarget, options: { stallMs?: number; bytes?: number } = {}): Promise<Outcome> {
    return this.#request(kind, entry, target, undefined, options);
  }

  async #request(
    kind: Exclude<LoadKind, "websocket">,
    entry: CheckedEntry,
    target: CheckedTarget,
    agent: http.Agent | undefined,
    options: { stallMs?: number; bytes?: number },
  ): Promise<Outcome> {
    const first = await this.#attempt(kind, entry, target, agent, options);
    if (!first.resetBeforeAnswer || kind === "upload") return first.outcome;
    const again = await this.#attempt(kind, entry, target, agent, options);
    return { ...again.outcome, at: first.outcome.at, ms: again.outcome.at + again.outcome.ms - first.outcome.at, retried: true };
  }

  #attempt(
    kind: Exclude<LoadKind, "websocket">,
    entry: CheckedEntry,
    target: CheckedTarget,
    agent: http.Agent | undefined,
    options: { stallMs?: number; bytes?: number },
  ): Promise<{ outcome: Outcome; resetBeforeAnswer: boolean }> {
    const seed = `${kind}-${++this.#seq}`;
    const at = Date.now();
    const upload = kind === "upload" ? expectedBody("client", seed, this.#o.uploadBytes) : undefined;
    const bytes = options.bytes ?? (kind === "download" ? this.#o.downloadBytes : 512);
    const path = kind === "upload" ? "/upload" : `/data?seed=${seed}&bytes=${bytes}${kind === "slow" ? `&delay=${this.#o.slowMs}` : ""}`;
    return new Promise((resolve) => {
      let done = false;
      let answered = false;
      const finish = (result: string, misrouted = false, corrupt = false) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const resetBeforeAnswer = result === "ECONNRESET" && !answered && req.reusedSocket;
        resolve({ outcome: { kind, at, ms: Date.now() - at, result, misrouted, corrupt, entry: entry.httpPort, app: target.app }, resetBeforeAnswer });
      };
      const req = http.request(
        {
          host: "127.0.0.1",
          port: entry.httpPort,
          method: upload ? "POST" : "GET",
          path,
          headers: {
            host: this.#o.hostOf(target),
            "x-warren-token": entry.token,
            ...(kind === "fresh" ? { connection: "close" } : {}),
            ...(upload ? { "content-length": String(upload.length) } : {}),
          },
          agent: agent ?? false,
        },
        (res) => {
          answered = true;
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => {
            if (chunks.length === 0 && options.stallMs) {
              res.pause();
              setTimeout(() => res.resume(), options.stallMs);
            }
            chunks.push(c);
          });
          res.on("error", (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
          res.on("aborted", () => finish("ECONNRESET"));
          res.on("end", () => {
            const body = Buffer.concat(chunks);
            if (res.statusCode !== 200) return finish(String(res.statusCode));
            if (upload) {
              const [app, sha, length] = body.toString().split(":");
              if (app !== target.app) return finish("ok", true);
              const want = createHash("sha256").update(upload).digest("hex");
              return finish("ok", false, sha !== want || Number(length) !== upload.length);
            }
            const prefix = body.subarray(0, body.indexOf(":")).toString();
            if (prefix !== target.app) return finish("ok", true);
            finish("ok", false, !body.equals(expectedBody(target.app, seed, bytes)));
          });
        },
      );
      req.on("error", (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
      const timer = setTimeout(() => {
        finish("hung");
        req.destroy();
      }, this.#o.hungAfterMs);
      req.end(upload);
    });
  }

  /**
   * One WebSocket at a time, a message every pause: each echo is an outcome; a socket that
   * closes under it is one "ws-closed" outcome (with its close code in the log) and is opened again.
   */
  async #webSocketWorker(): Promise<void> {
    while (this.#running) {
      const entries = this.#o.entries();
      if (entries.length === 0) {
        await sleep(50);
        continue;
      }
      const entry = entries[this.#seq % entries.length]!;
      const target = this.#pick(this.#o.targets);
      await this.#webSocketSession(entry, target);
      await sleep(this.#o.pauseMs);
    }
  }

  async #webSocketSession(entry: CheckedEntry, target: CheckedTarget): Promise<void> {
    const openedAt = Date.now();
    const ws = new WebSocket(`ws://127.0.0.1:${entry.httpPort}/`, { headers: { host: this.#o.hostOf(target), "x-warren-token": entry.token } });
    this.#sockets.add(ws);
    let closed = false;
    let pending: { text: string; at: number; resolve: (reply: string | undefined) => void } | undefined;
    ws.on("message", (data) => {
      const p = pending;
      pending = undefined;
      p?.resolve(data.toString());
    });
    const gone = new Promise<void>((resolve) => {
      ws.once("close", () => {
        closed = true;
        pending?.resolve(undefined);
        resolve();
      });
      ws.once("error", () => {});
    });
    const opened = await new Promise<boolean>((resolve) => {
      ws.once("open", () => resolve(true));
      ws.once("close", () => resolve(false));
      setTimeout(() => resolve(false), this.#o.hungAfterMs).unref();
    });
    const record = (result: string, at: number, misrouted = false, corrupt = false) =>
      this.outcomes.push({ kind: "websocket", at, ms: Date.now() - at, result, misrouted, corrupt, entry: entry.httpPort, app: target.app });
    if (!opened) {
      record("ws-refused", openedAt);
      ws.terminate();
      this.#sockets.delete(ws);
      return;
    }
    while (this.#running && !closed) {
      const text = `m${++this.#seq}`;
      const at = Date.now();
      const reply = await new Promise<string | undefined>((resolve) => {
        pending = { text, at, resolve };
        const timer = setTimeout(() => resolve("hung"), this.#o.hungAfterMs);
        timer.unref();
        ws.send(text, (err) => {
          if (err) resolve(undefined);
        });
      });
      pending = undefined;
      if (reply === undefined) record("ws-closed", at);
      else if (reply === "hung") record("hung", at);
      else {
        const [app, echoed] = reply.split(":");
        record("ok", at, app !== target.app, app === target.app && echoed !== text);
      }
      if (reply === "hung") break;
      await sleep(Math.max(this.#o.pauseMs, 100));
    }
    ws.close();
    await Promise.race([gone, sleep(1000)]);
    ws.terminate();
    this.#sockets.delete(ws);
  }
}

/** Counts outcomes: attempted, ok, failed by result, hung, misrouted, corrupt. */
export function summarize(outcomes: readonly Outcome[]): LoadSummary {
  const s: LoadSummary = { attempted: 0, ok: 0, failed: {}, hung: 0, misrouted: 0, corrupt: 0, retried: 0 };
  for (const o of outcomes) {
    s.attempted++;
    if (o.retried) s.retried++;
    if (o.misrouted) s.misrouted++;
    if (o.corrupt) s.corrupt++;
    const failed = o.result !== "ok" || o.misrouted || o.corrupt;
    if (o.result === "ok" && !o.misrouted && !o.corrupt) s.ok++;
    else if (o.result === "hung") s.hung++;
    else if (o.result !== "ok") s.failed[o.result] = (s.failed[o.result] ?? 0) + 1;
    if (failed) {
      s.firstFailureAt = Math.min(s.firstFailureAt ?? Infinity, o.at);
      s.lastFailureAt = Math.max(s.lastFailureAt ?? 0, o.at + o.ms);
    }
  }
  return s;
}

/** Open descriptors and resident memory of a process (Linux /proc). */
export async function processFootprint(pid: number): Promise<{ fds: number; rssMb: number }> {
  const { readdir, readFile } = await import("node:fs/promises");
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { fds, rssMb: Math.round(rssKb / 1024) };
}
