import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { STATUS_CODES } from "node:http";
import { WarrenError } from "../../shared/errors.js";
import { httpStatusOf } from "../../shared/http-status.js";
import { errorPage, wantsHtml, type ErrorRequest } from "./error-page.js";

export type { ErrorRequest } from "./error-page.js";

/**
 * The answer to an error: a short text body that says what happened, or, for a browser that
 * asked for HTML, a page saying the same with what to do (same status either way).
 */
export function errorAnswer(err: unknown, request?: ErrorRequest): { status: number; headers: Record<string, string>; body: string } {
  const e = WarrenError.from(err);
  // An error may name a more precise status than its code's (431 for an oversized head).
  const status = (e as { httpStatus?: number }).httpStatus ?? httpStatusOf(e.code);
  if (wantsHtml(request)) {
    const page = errorPage(e, status, request!);
    return { status, headers: { ...page.headers, "x-warren-error": e.code }, body: page.html };
  }
  const body = `${e.message}\n`;
  return {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(body)), "cache-control": "no-store", "x-warren-error": e.code },
    body,
  };
}

/** Answers with the error's status (text, or a page for browsers: res.req says which). */
export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const req = res.req as ServerResponse["req"] | undefined;
  const answer = errorAnswer(err, req ? { accept: req.headers.accept, host: req.headers.host, method: req.method } : undefined);
  res.writeHead(answer.status, answer.headers);
  res.end(req?.method === "HEAD" ? undefined : answer.body);
}

/** The same answer written raw on a socket whose upgrade we refuse (or on the fast path). */
export function sendUpgradeError(socket: Duplex, err: unknown, request?: ErrorRequest): void {
  if (socket.destroyed) return;
  const answer = errorAnswer(err, request);
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ""}\r\n`;
  for (const [name, value] of Object.entries(answer.headers)) head += `${name}: ${value}\r\n`;
  endAndDrain(socket, `${head}Connection: close\r\n\r\n${request?.method === "HEAD" ? "" : answer.body}`);
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
