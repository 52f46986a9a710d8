import { constants as h2, type Http2Stream } from "node:http2";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";

/**
 * Relays a forwarded connection between the calling server's stream and the agent's tunnel
 * stream without decoding it: both carry the same frames (data = 2, close_write = 3 in every
 * tunnel message), so the bytes pass as they are, with HTTP/2 backpressure both ways (pipe).
 * Each side is taken from its TunnelSocket once the dial exchange is over, with the frames it
 * had already received written first.
 *
 * A stream that ends cleanly ends the other (its half of the call: gRPC OK trailers on our
 * server streams); one that is reset, or closes without ending, resets the other, so neither
 * side outlives the other.
 */
export function spliceTunnels(caller: TunnelSocket, agent: TunnelSocket): void {
  const a = caller.detach();
  const b = agent.detach();
  for (const frame of b.pending) a.stream.write(frame);
  for (const frame of a.pending) b.stream.write(frame);
  join(a.stream, b.stream);
}

function join(a: Http2Stream, b: Http2Stream): void {
  const abortIfBroken = (from: Http2Stream, to: Http2Stream) => {
    const clean = from.readableEnded && (from.rstCode === undefined || from.rstCode === h2.NGHTTP2_NO_ERROR);
    if (!clean && !to.destroyed && !to.closed) to.close(h2.NGHTTP2_CANCEL);
  };
  a.on("error", () => {});
  b.on("error", () => {});
  a.once("close", () => abortIfBroken(a, b));
  b.once("close", () => abortIfBroken(b, a));
  a.pipe(b);
  b.pipe(a);
}
