import type { Duplex } from "node:stream";
import type WebSocket from "ws";

/**
 * How a TCP connection rides on a WebSocket (port-forward, `warren ssh --stdio`): binary
 * messages carry the bytes, the text message "eof" is TCP's half-close of the sender, and the
 * WebSocket closes normally (1000) once both directions ended. Any other close, or a reset of
 * either side, resets the other.
 */
export const EOF_MESSAGE = "eof";
/** Close code for a connection that failed (reset): the reason says why. */
export const CLOSE_RESET = 4000;

/** How a bridged connection ended: `reset` says why when it did not end cleanly. */
export interface BridgeEnd {
  readonly reset?: string;
}

/** Above this many bytes handed to the WebSocket and not yet written out, reading pauses. */
const HIGH_WATER_BYTES = 1024 * 1024;
const LOW_WATER_BYTES = 256 * 1024;

/**
 * Splices `socket` onto an open WebSocket with half-close and backpressure both ways. The
 * socket must allow half-open (allowHalfOpen: true). Resolves once both are closed; never
 * rejects.
 */
export function bridgeWebSocket(ws: WebSocket, socket: Duplex): Promise<BridgeEnd> {
  return new Promise<BridgeEnd>((resolve) => {
    let sentEof = false;
    let gotEof = false;
    let pending = 0;
    let done = false;
    let resetWhy: string | undefined;

    const finish = () => {
      if (done) return;
      done = true;
      resolve(resetWhy === undefined ? {} : { reset: resetWhy });
    };
    const reset = (why: string) => {
      resetWhy ??= why;
      destroyWithReset(socket);
      if (ws.readyState === ws.OPEN) ws.close(CLOSE_RESET, why.slice(0, 120));
      else if (ws.readyState === ws.CONNECTING) ws.terminate();
    };
    const closeIfDone = () => {
      if (sentEof && gotEof && ws.readyState === ws.OPEN) ws.close(1000);
    };

    // The frames of one turn of the event loop go out in one write (writev), not one system
    // call each: a tunnel read often holds several messages. (Not the socket's writes: corked,
    // each would report a full buffer and pause the WebSocket until the turn ends.)
    const corkWebSocket = corkerFor((ws as unknown as { _socket?: Duplex })._socket);

    // Socket -> WebSocket, pausing while too much waits to be written out.
    socket.on("data", (chunk: Buffer) => {
      if (ws.readyState !== ws.OPEN) return;
      corkWebSocket();
      pending += chunk.length;
      ws.send(chunk, { binary: true }, () => {
        pending -= chunk.length;
        if (pending < LOW_WATER_BYTES && socket.isPaused()) socket.resume();
      });
      if (pending > HIGH_WATER_BYTES) socket.pause();
    });
    socket.on("end", () => {
      sentEof = true;
      if (ws.readyState === ws.OPEN) ws.send(EOF_MESSAGE, { binary: false });
      closeIfDone();
    });
    socket.on("error", (err: Error) => {
      // The close handler resets the WebSocket.
      resetWhy ??= err.message;
    });
    socket.on("close", () => {
      if (!(sentEof && gotEof)) reset("connection reset");
      if (ws.readyState === ws.CLOSED) finish();
    });

    // WebSocket -> socket, pausing the WebSocket while the socket's buffer is full.
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        if (String(data) === EOF_MESSAGE && !gotEof) {
          gotEof = true;
          socket.end();
          closeIfDone();
        }
        return;
      }
      const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (socket.destroyed || socket.writableEnded) return;
      if (!socket.write(chunk)) {
        ws.pause();
        socket.once("drain", () => ws.resume());
      }
    });
    ws.on("error", (err: Error) => {
      // The close handler resets the socket.
      resetWhy ??= err.message;
    });
    ws.on("close", (code: number, reason: Buffer) => {
      if (code !== 1000 || !(sentEof && gotEof)) {
        resetWhy ??= `WebSocket closed (${code}${reason.length > 0 ? `: ${reason.toString()}` : ""})`;
        destroyWithReset(socket);
      }
      if (socket.destroyed || socket.closed) finish();
      else socket.once("close", finish);
    });
    if (socket.isPaused()) socket.resume();
    if (ws.isPaused) ws.resume();
  });
}

/** A TCP socket is reset (RST), so that its peer cannot take a cut-off stream for a complete one. */
function destroyWithReset(socket: Duplex): void {
  if (socket.destroyed) return;
  const tcp = socket as Duplex & { resetAndDestroy?: () => void; _handle?: unknown };
  if (typeof tcp.resetAndDestroy === "function" && tcp._handle) tcp.resetAndDestroy();
  else socket.destroy();
}

/** Corks `stream` until the end of the current tick, once per tick however often it is called. */
function corkerFor(stream: Duplex | undefined): () => void {
  let corked = false;
  const uncork = () => {
    corked = false;
    stream!.uncork();
  };
  return () => {
    if (corked || !stream || stream.destroyed) return;
    corked = true;
    stream.cork();
    process.nextTick(uncork);
  };
}
