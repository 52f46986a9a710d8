import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { ProxyTarget } from "./proxy-target.js";

/**
 * The proxy's own answers, one text each whichever client side (spliced or node's messages)
 * the request came through; dial failures keep the dialer's own error (403, 503, 504).
 */

/** The app connection failed before an answer started (the app closed it, or refused it). */
export function upstreamFailed(target: ProxyTarget, cause?: Error): WarrenError {
  return new WarrenError(
    ErrorCode.BadGateway,
    `connection to port ${target.port} of workspace "${target.workspace}" failed${cause ? `: ${cause.message}` : ""}`,
  );
}

/** The app took longer than the upstream timeout to start its answer. */
export function upstreamTimedOut(target: ProxyTarget, timeoutMs: number): WarrenError {
  return new WarrenError(ErrorCode.DeadlineExceeded, `port ${target.port} of workspace "${target.workspace}" did not respond within ${timeoutMs} ms`);
}

/** The app's answer broke HTTP (framing, bytes nobody asked for, an upgrade nobody asked for). */
export function brokenResponse(target: ProxyTarget, why: string): WarrenError {
  return new WarrenError(ErrorCode.BadGateway, `port ${target.port} of workspace "${target.workspace}" sent a broken HTTP answer: ${why}`);
}
