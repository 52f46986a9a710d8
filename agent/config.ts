import type { LevelWithSilent } from "pino";
import { LOG_LEVELS } from "../shared/logger.js";
import { DEFAULT_LIVENESS } from "../shared/liveness.js";
import { formatDuration, parseDuration, parseIntegerIn, parseNonEmpty, parseOneOf, parseReadableFile, setting, type SettingsOf } from "../shared/settings.js";

/** A server address: http(s)://host:port, or host:port (https unless the host is loopback). */
export function parseServerAddress(raw: string): URL {
  const value = raw.trim();
  let url: URL;
  try {
    url = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? new URL(value) : new URL(`${isLoopback(value) ? "http" : "https"}://${value}`);
  } catch {
    throw new Error(`"${raw}" is not a server address like https://warren.example.com`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`"${raw}": use http:// (h2c) or https://`);
  if (url.pathname !== "/" && url.pathname !== "") throw new Error(`"${raw}": a server address has no path`);
  return url;
}

function isLoopback(hostPort: string): boolean {
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i.test(hostPort);
}

/** A comma-separated list of server addresses (cluster: the agent picks one, then tries the others). */
export function parseServerList(raw: string): URL[] {
  const parts = raw.split(",").map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new Error("no server address given");
  return parts.map(parseServerAddress);
}

function duration(min: number, max: number) {
  return (raw: string): number => {
    const ms = parseDuration(raw);
    if (ms < min || ms > max) throw new Error(`${raw} is out of range ${formatDuration(min)}-${formatDuration(max)}`);
    return ms;
  };
}

/** Settings of warren-agent. Names and defaults are part of the public contract. */
export const AGENT_SETTINGS = {
  server: setting<URL[] | undefined>({
    key: "server",
    flag: "server",
    env: "WARREN_SERVER",
    description: "the Warren server's public URL, e.g. https://ws.example.com (or its agent listener, https://ws.example.com:8150); comma-separated for several",
    parse: parseServerList,
  }),
  token: setting<string | undefined>({
    key: "token",
    flag: "token",
    env: "WARREN_TOKEN",
    description: "agent token of the workspace",
    parse: parseNonEmpty,
  }),
  tokenFile: setting<string | undefined>({
    key: "tokenFile",
    flag: "token-file",
    env: "WARREN_TOKEN_FILE",
    description: "file holding the agent token (read at each connect, so it can be rotated)",
    parse: parseReadableFile,
  }),
  caFile: setting<string | undefined>({
    key: "caFile",
    flag: "ca-file",
    env: "WARREN_CA_FILE",
    description: "PEM file of CA certificates to verify the server with (default: system CAs)",
    parse: parseReadableFile,
  }),
  poolMinIdle: setting({
    key: "poolMinIdle",
    flag: "pool-min-idle",
    env: "WARREN_POOL_MIN_IDLE",
    description: "idle tunnel streams kept open for new connections",
    default: 2,
    parse: parseIntegerIn(1, 1000),
  }),
  poolMaxStreams: setting({
    key: "poolMaxStreams",
    flag: "pool-max-streams",
    env: "WARREN_POOL_MAX_STREAMS",
    description: "most tunnel streams (idle and busy) on one connection",
    default: 500,
    parse: parseIntegerIn(1, 100_000),
  }),
  poolBurst: setting({
    key: "poolBurst",
    flag: "pool-burst",
    env: "WARREN_POOL_BURST",
    description: "streams opened at once when the idle pool runs low",
    default: 10,
    parse: parseIntegerIn(1, 1000),
  }),
  poolIdleTimeout: setting({
    key: "poolIdleTimeout",
    flag: "pool-idle-timeout",
    env: "WARREN_POOL_IDLE_TIMEOUT",
    description: "an idle stream beyond the minimum is closed after this long",
    default: 60_000,
    defaultText: "1m",
    parse: duration(1000, 86_400_000),
  }),
  dialTimeout: setting({
    key: "dialTimeout",
    flag: "dial-timeout",
    env: "WARREN_DIAL_TIMEOUT",
    description: "how long to wait for a local port to accept a connection",
    default: 5000,
    defaultText: "5s",
    parse: duration(100, 300_000),
  }),
  pingInterval: setting({
    key: "pingInterval",
    flag: "ping-interval",
    env: "WARREN_AGENT_PING_INTERVAL",
    description: "how often the agent pings the server over its connection",
    default: DEFAULT_LIVENESS.intervalMs,
    defaultText: "2s",
    parse: duration(100, 600_000),
  }),
  pingTimeout: setting({
    key: "pingTimeout",
    flag: "ping-timeout",
    env: "WARREN_AGENT_PING_TIMEOUT",
    description: "a server silent this long after a ping is gone: the agent connects again",
    default: DEFAULT_LIVENESS.timeoutMs,
    defaultText: "2s",
    parse: duration(100, 600_000),
  }),
  shutdownTimeout: setting({
    key: "shutdownTimeout",
    flag: "shutdown-timeout",
    env: "WARREN_SHUTDOWN_TIMEOUT",
    description: "how long open connections may run after SIGTERM",
    default: 10_000,
    defaultText: "10s",
    parse: duration(0, 600_000),
  }),
  workloadStopTimeout: setting({
    key: "workloadStopTimeout",
    flag: "workload-stop-timeout",
    env: "WARREN_WORKLOAD_STOP_TIMEOUT",
    description: "with `run`: how long the workload may take to exit after SIGTERM before SIGKILL",
    default: 10_000,
    defaultText: "10s",
    parse: duration(0, 600_000),
  }),
  portDiscoveryInterval: setting({
    key: "portDiscoveryInterval",
    flag: "port-discovery-interval",
    env: "WARREN_PORT_DISCOVERY_INTERVAL",
    description: "how often to look for TCP ports listening in the workspace (reported as detectedPorts); 0 or off turns it off",
    default: 3000,
    defaultText: "3s",
    parse: (raw: string) => {
      const ms = raw.trim() === "0" || raw.trim() === "off" ? 0 : parseDuration(raw);
      if (ms !== 0 && (ms < 100 || ms > 3_600_000)) throw new Error(`${raw} is out of range 100ms-1h (or 0 for off)`);
      return ms;
    },
  }),
  logLevel: setting<LevelWithSilent>({
    key: "logLevel",
    flag: "log-level",
    env: "WARREN_LOG_LEVEL",
    description: "log level",
    default: "info",
    parse: parseOneOf(LOG_LEVELS),
  }),
};

export type AgentConfig = SettingsOf<typeof AGENT_SETTINGS>;
