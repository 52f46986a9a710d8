import type { Socket } from "node:net";

/** What every HTTP/2 client sends first (RFC 9113 3.4); no HTTP/1.x request starts this way. */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export type FirstBytes = "h2c" | "http1" | "gone";

/**
 * Reads a plain connection's first bytes to tell HTTP/2 with prior knowledge (h2c: agents and
 * `curl --http2-prior-knowledge`) from HTTP/1.x. What was read is put back on the socket, which
 * is left paused for whichever server takes it (node's HTTP/2 session reads what is buffered).
 * A client that sends nothing within `timeoutMs` is cut, as node's own header timeout would.
 */
export function readFirstBytes(socket: Socket, timeoutMs: number): Promise<FirstBytes> {
  return new Promise((resolve) => {
    let seen: Buffer = Buffer.alloc(0);
    const finish = (verdict: FirstBytes) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      socket.pause();
      if (seen.length > 0 && verdict !== "gone") socket.unshift(seen);
      resolve(verdict);
    };
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      if (seen.compare(PREFACE, 0, n, 0, n) !== 0) finish("http1");
      else if (n === PREFACE.length) finish("h2c");
      // A prefix of the preface so far: wait for more.
    };
    const onClose = () => finish("gone");
    const timer = setTimeout(() => {
      finish("gone");
      socket.destroy();
    }, timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onClose);
  });
}
