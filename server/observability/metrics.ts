import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DialOutcome } from "../tunnel/tunnel-dialer.js";

export interface MetricsSources {
  /** Connected agent connections and their streams, read at scrape time. */
  readonly tunnelStats: () => { agents: number; idleStreams: number; streams: number };
  /** Open connections on the SSH listener, read at scrape time. */
  readonly sshConnections?: () => number;
  /** Cluster mode: whether Redis answers now. */
  readonly redisAvailable?: () => boolean;
}

/**
 * Prometheus metrics of one server, in a registry of its own. Labels are bounded: never a
 * workspace or user name.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly dials: Counter<"outcome">;
  readonly httpRequests: Counter<"code_class">;
  readonly httpDuration: Histogram;
  readonly tunnelBytes: Counter<"direction">;
  readonly agentConnects: Counter;
  readonly sshLogins: Counter<"outcome">;
  readonly redisErrors: Counter<"operation">;
  readonly forwards: Counter<"outcome">;
  readonly forwardedDials: Counter<"outcome">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "warren_agents_connected",
      help: "Agent connections held by this server",
      registers,
      collect() {
        this.set(sources.tunnelStats().agents);
      },
    });
    new Gauge({
      name: "warren_tunnel_streams",
      help: "Tunnel streams held by this server, by state",
      labelNames: ["state"],
      registers,
      collect() {
        const s = sources.tunnelStats();
        this.set({ state: "idle" }, s.idleStreams);
        this.set({ state: "busy" }, s.streams - s.idleStreams);
      },
    });
    new Gauge({
      name: "warren_ssh_connections",
      help: "Open connections on the SSH listener",
      registers,
      collect() {
        this.set(sources.sshConnections?.() ?? 0);
      },
    });
    this.sshLogins = new Counter({
      name: "warren_ssh_login_attempts_total",
      help: "SSH authentication attempts, by outcome (ok, denied, rate_limited, error)",
      labelNames: ["outcome"],
      registers,
    });
    this.agentConnects = new Counter({ name: "warren_agent_connections_total", help: "Agent connections accepted", registers });
    this.dials = new Counter({ name: "warren_dials_total", help: "Dials to workspace ports, by outcome", labelNames: ["outcome"], registers });
    this.httpRequests = new Counter({
      name: "warren_http_requests_total",
      help: "Proxied HTTP requests, by status class",
      labelNames: ["code_class"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "warren_http_request_duration_seconds",
      help: "Time to the end of proxied HTTP responses",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.redisErrors = new Counter({
      name: "warren_redis_errors_total",
      help: "Failed or timed-out Redis operations (cluster mode), by operation",
      labelNames: ["operation"],
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
    const redisAvailable = sources.redisAvailable;
    if (redisAvailable) {
      new Gauge({
        name: "warren_redis_up",
        help: "1 when the cluster's Redis answers, 0 while it is unreachable",
        registers,
        collect() {
          this.set(redisAvailable() ? 1 : 0);
        },
      });
    }
    this.tunnelBytes = new Counter({
      name: "warren_tunnel_bytes_total",
      help: "Bytes carried by tunnel streams (in: from workspaces, out: to workspaces)",
      labelNames: ["direction"],
      registers,
    });
  }

  dialOutcome(outcome: DialOutcome): void {
    this.dials.inc({ outcome });
  }

  httpResponse(status: number, startedAt: bigint): void {
    this.httpRequests.inc({ code_class: `${Math.floor(status / 100)}xx` });
    this.httpDuration.observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
  }
}
