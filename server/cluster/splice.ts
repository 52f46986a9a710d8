import type { TunnelSocket } from "../../shared/tunnel-socket.js";

/**
 * Joins two byte streams both ways, with backpressure (pipe) and half-close (each end() is
 * the other's close_write). A reset or error on either side drops both: the caller's
 * connection must never outlive the agent's, nor the reverse.
 */
export function splice(a: TunnelSocket, b: TunnelSocket): void {
  const destroyBoth = () => {
    if (!a.destroyed) a.destroy();
    if (!b.destroyed) b.destroy();
  };
  a.on("error", destroyBoth);
  b.on("error", destroyBoth);
  a.on("close", () => {
    if (!a.completed) destroyBoth();
  });
  b.on("close", () => {
    if (!b.completed) destroyBoth();
  });
  a.pipe(b);
  b.pipe(a);
}
