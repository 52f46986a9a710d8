import type { AgentConnection } from "./agent-connection.js";

/**
 * Asks an agent connection to move once it is older than `maxAgeMs` (±10 %, so that agents
 * that connected together do not all move together). The agent uses the drain handoff: it
 * opens its new connection first, through the load balancer, then lets this one finish its
 * streams. Without it, agents stay where they landed: after a rolling restart the servers
 * restarted last hold none until the next restart.
 */
export function limitConnectionAge(
  connection: Pick<AgentConnection, "requestHandoff" | "onClose">,
  maxAgeMs: number,
  random: () => number = Math.random,
): void {
  if (maxAgeMs <= 0) return;
  const timer = setTimeout(
    () => connection.requestHandoff("this connection reached WARREN_AGENT_MAX_CONNECTION_AGE; reconnect (possibly to another server)"),
    Math.round(maxAgeMs * (0.9 + 0.2 * random())),
  );
  timer.unref();
  connection.onClose(() => clearTimeout(timer));
}
