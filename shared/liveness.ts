/**
 * Liveness of an agent connection, the same settings on both programs
 * (WARREN_AGENT_PING_INTERVAL, WARREN_AGENT_PING_TIMEOUT).
 *
 * The agent pings the server every `intervalMs` and gives the connection up when neither the
 * answer nor any other byte arrives within `timeoutMs`. The server sends no pings of its own
 * to an agent that pings (the answers are nghttp2's, with no JavaScript per ping: 5,000 agents
 * cost next to nothing); it counts the bytes each connection received and drops one silent for
 * `intervalMs + timeoutMs`, pinging it once first when it has been silent for longer than
 * `intervalMs` (an older agent pings less often). A stall is seen within interval + timeout.
 */
export interface LivenessSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** A stalled agent or server is noticed within 4 s (and a little timer slack). */
export const DEFAULT_LIVENESS: LivenessSettings = { intervalMs: 2000, timeoutMs: 2000 };
