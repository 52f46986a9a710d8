import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { VERSION } from "../../shared/version.js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DialOutcome } from "../tunnel/tunnel-dialer.js";

export interface MetricsSources {
  /** Connected agent connections and their streams, read at scrape time. */
  readonly tunnelStats: () => { agents: number; idleStreams: number; streams: number };
  /** Bytes carried to and from workspaces so far (open sockets included), read at scrape time. */
  readonly tunnelBytes?: () => { in: number; out: number };
  /** Open connections on the SSH listener, read at scrape time. */
  readonly sshConnections?: () => number;
  /** Logged-in SSH connections relayed to a workspace, read at scrape time. */
  readonly sshSessions?: () => number;
  /** HTTP requests being answered now, read at scrape time. */
  readonly httpInFlight?: () => number;
  /** Proxied upgrades (WebSocket) open now, read at scrape time. */
  readonly webSocketsOpen?: () => number;
  /** Cluster mode: whether Redis answers now. */
  readonly redisAvailable?: () => boolean;
  /** Whether the server is shutting down (unready, draining). */
  readonly draining?: () => boolean;
}

/** Which listener a request came to: a workspace host or the root domain (API, login, downloads). */
export type HttpTarget = "workspace" | "root";

/** How a proxied upgrade ended: spliced to the app, refused before dialing (401/403/404), or failed (503/502/504). */
export type UpgradeOutcome = "ok" | "denied" | "failed";

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const REDIS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * Prometheus metrics of one server, in a registry of its own. Names start with warren_ (the
 * default process_* and nodejs_* metrics keep their usual names). Labels are bounded: never a
 * workspace or user name.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly dials: Counter<"outcome">;
  readonly httpRequests: Counter<"code_class" | "target">;
  readonly httpDuration: Histogram<"target">;
  readonly agentConnects: Counter;
  readonly sshLogins: Counter<"outcome">;
  readonly webSocketUpgrades: Counter<"outcome">;
  readonly redisErrors: Counter<"operation">;
  readonly redisDuration: Histogram<"operation">;
  readonly forwards: Counter<"outcome">;
  readonly forwardedDials: Counter<"outcome">;

  #observed = false;

  /** Counters and histograms: the modules count into them from the start. The gauges come with observe(). */
  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // Which build runs where: 1, with the version and the Node.js it runs on as labels (the Prometheus convention).
    new Gauge({ name: "warren_build_info", help: "Always 1: the server's version and Node.js version as labels", labelNames: ["version", "node"], registers }).set(
      { version: VERSION, node: process.version },
      1,
    );
    this.sshLogins = new Counter({
      name: "warren_ssh_login_attempts_total",
      help: "SSH authentication attempts, by outcome (ok, denied, rate_limited, error)",
      labelNames: ["outcome"],
      registers,
    });
    this.agentConnects = new Counter({ name: "warren_agent_connections_total", help: "Agent connections accepted", registers });
    this.dials = new Counter({
      name: "warren_dials_total",
      help: "Dials to workspace ports over this server's own agents, by outcome (ok, refused, not_allowed, timeout, unavailable, error, canceled)",
      labelNames: ["outcome"],
      registers,
    });
    this.httpRequests = new Counter({
      name: "warren_http_requests_total",
      help: "HTTP requests answered on the public listener, by status class (4xx for a client that left before the answer) and target (workspace or root)",
      labelNames: ["code_class", "target"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "warren_http_request_duration_seconds",
      help: "Time from an HTTP request's arrival to the end of its response, by target (workspace or root)",
      labelNames: ["target"],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.webSocketUpgrades = new Counter({
      name: "warren_websocket_upgrades_total",
      help: "Upgrade requests (WebSocket) to workspace hosts, by outcome (ok: spliced to the app, denied, failed)",
      labelNames: ["outcome"],
      registers,
    });
    this.redisErrors = new Counter({
      name: "warren_redis_errors_total",
      help: "Failed or timed-out Redis operations (cluster mode), by operation",
      labelNames: ["operation"],
      registers,
    });
    this.redisDuration = new Histogram({
      name: "warren_redis_operation_duration_seconds",
      help: "Time of Redis operations (a command or a pipeline; cluster mode), by operation",
      labelNames: ["operation"],
      buckets: REDIS_BUCKETS,
      registers,
    });
    this.forwards = new Counter({
      name: "warren_forwards_total",
      help: "Dials this server sent to the server holding the agent, by outcome (cluster mode)",
      labelNames: ["outcome"],
      registers,
    });
    this.forwardedDials = new Counter({
      name: "warren_forwarded_dials_total",
      help: "Dials other servers asked this server to make, by outcome (cluster mode)",
      labelNames: ["outcome"],
      registers,
    });
  }

  /**
   * Registers what is read at scrape time (gauges, tunnel bytes), from the parts the composition
   * root built: called once, after they exist, and before the observability listener listens.
   */
  observe(sources: MetricsSources): void {
    if (this.#observed) throw new WarrenError(ErrorCode.Internal, "the metrics sources are given twice (ServerMetrics.observe)");
    this.#observed = true;
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: (() => number) | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read?.() ?? 0);
        },
      });
    gauge("warren_agents_connected", "Agent connections held by this server", () => sources.tunnelStats().agents);
    new Gauge({
      name: "warren_tunnel_streams",
      help: "Tunnel streams held by this server, by state (idle: parked for the next connection; busy: carrying one)",
      labelNames: ["state"],
      registers,
      collect() {
        const s = sources.tunnelStats();
        this.set({ state: "idle" }, s.idleStreams);
        this.set({ state: "busy" }, s.streams - s.idleStreams);
      },
    });
    gauge("warren_ssh_connections", "Open connections on the SSH listener (logged in or not)", sources.sshConnections);
    gauge("warren_ssh_sessions", "Logged-in SSH connections relayed to a workspace", sources.sshSessions);
    gauge("warren_http_requests_in_flight", "HTTP requests being answered on the public listener", sources.httpInFlight);
    gauge("warren_websockets_open", "Proxied upgraded connections (WebSocket) open now", sources.webSocketsOpen);
    gauge("warren_draining", "1 while the server shuts down (unready, handing its agents over, finishing requests)", () => (sources.draining?.() ? 1 : 0));
    const redisAvailable = sources.redisAvailable;
    if (redisAvailable) gauge("warren_redis_up", "1 when the cluster's Redis answers, 0 while it is unreachable", () => (redisAvailable() ? 1 : 0));
    const tunnelBytes = sources.tunnelBytes;
    new Counter({
      name: "warren_tunnel_bytes_total",
      help: "Bytes between this server's front doors (HTTP, WebSocket, SSH) and workspaces, whichever server holds the agent (in: from workspaces, out: to workspaces)",
      labelNames: ["direction"],
      registers,
      // Read at scrape time, open connections included: a long transfer shows while it flows.
      collect() {
        if (!tunnelBytes) return;
        const totals = tunnelBytes();
        this.reset();
        this.inc({ direction: "in" }, totals.in);
        this.inc({ direction: "out" }, totals.out);
      },
    });
  }

  dialOutcome(outcome: DialOutcome): void {
    this.dials.inc({ outcome });
  }

  httpResponse(target: HttpTarget, status: number, startedAt: bigint): void {
    this.httpRequests.inc({ code_class: `${Math.floor(status / 100)}xx`, target });
    this.httpDuration.observe({ target }, Number(process.hrtime.bigint() - startedAt) / 1e9);
  }

  redisOperation(operation: string, seconds: number): void {
    this.redisDuration.observe({ operation }, seconds);
  }
}
