import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { STATUS_CODES } from "node:http";
import { WarrenError } from "../../shared/errors.js";
import { httpStatusOf } from "../../shared/http-status.js";

/** Answers with the error's status and a short text body that says what happened. */
export function sendError(res: ServerResponse, err: unknown): void {
  const e = WarrenError.from(err);
  // An error may name a more precise status than its code's (431 for an oversized head).
  const status = (e as { httpStatus?: number }).httpStatus ?? httpStatusOf(e.code);
  const body = `${e.message}\n`;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-warren-error": e.code,
  });
  res.end(body);
}

/** The same answer written raw on a socket whose upgrade we refuse. */
export function sendUpgradeError(socket: Duplex, err: unknown): void {
  const e = WarrenError.from(err);
  // An error may name a more precise status than its code's (431 for an oversized head).
  const status = (e as { httpStatus?: number }).httpStatus ?? httpStatusOf(e.code);
  const body = `${e.message}\n`;
  if (socket.destroyed) return;
  endAndDrain(
    socket,
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Warren-Error: ${e.code}\r\n` +
      "Connection: close\r\n\r\n" +
      body,
  );
}

/** How long a client may go on sending after its connection was ended before it is cut. */
const DRAIN_GRACE_MS = 5_000;

/**
 * Ends a socket after `data`, reading and dropping whatever the client still sends (the rest
 * of an upload nobody will read) so that it sees the answer, finishes and closes its side; a
 * socket left paused here would stay open for good. One that never closes is cut after a
 * short grace.
 */
export function endAndDrain(socket: Duplex, data?: string | Buffer): void {
  if (socket.destroyed || socket.writableEnded) return;
  if (data === undefined) socket.end();
  else socket.end(data);
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), DRAIN_GRACE_MS);
  timer.unref();
  // Both sides ended, the socket closes itself (autoDestroy).
  socket.once("close", () => clearTimeout(timer));
  socket.on("error", () => socket.destroy());
}
