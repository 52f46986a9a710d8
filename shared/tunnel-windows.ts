/**
 * HTTP/2 flow-control sizes for agent connections, used on both sides. Each side sets the
 * windows it receives with. Bigger windows let one stream fill a fast link; the stream window
 * also bounds what a paused (slow-reader) stream can buffer on the receiving side.
 * Chosen by measurement (docs/benchmarks.md).
 */
export const TUNNEL_WINDOWS = {
  /** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindowBytes: 4 * 1024 * 1024,
  /** Connection-level receive window. */
  sessionWindowBytes: 32 * 1024 * 1024,
  /** Largest HTTP/2 frame we accept (SETTINGS_MAX_FRAME_SIZE). */
  maxFrameBytes: 64 * 1024,
  /** node:http2 maxSessionMemory, in MB: outgoing data one session may hold before it refuses streams. */
  maxSessionMemoryMb: 64,
  /** Largest data chunk carried in one tunnel message. */
  maxChunkBytes: 64 * 1024,
  /** Largest tunnel message either side accepts: a chunk plus framing, with room to spare. */
  maxMessageBytes: 1024 * 1024,
} as const;
