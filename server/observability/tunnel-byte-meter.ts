import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { DialOptions, Dialer } from "../tunnel/tunnel-dialer.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";

/**
 * Counts the bytes of the tunnel sockets this server's front doors use. Sockets still open
 * are summed when asked (at scrape time), closed ones were added as they closed: a long
 * transfer shows while it flows, and no chunk pays for counting.
 */
export class TunnelByteMeter {
  readonly #open = new Set<TunnelSocket>();
  #closedIn = 0;
  #closedOut = 0;

  /** Counts a socket's bytes from now until it closes. */
  track(socket: TunnelSocket): void {
    if (socket.destroyed) {
      this.#closedIn += socket.bytesRead;
      this.#closedOut += socket.bytesWritten;
      return;
    }
    this.#open.add(socket);
    socket.once("close", () => {
      this.#open.delete(socket);
      this.#closedIn += socket.bytesRead;
      this.#closedOut += socket.bytesWritten;
    });
  }

  /** Bytes so far: in (from workspaces) and out (to workspaces). Never blocks. */
  totals(): { in: number; out: number } {
    let bytesIn = this.#closedIn;
    let bytesOut = this.#closedOut;
    for (const socket of this.#open) {
      bytesIn += socket.bytesRead;
      bytesOut += socket.bytesWritten;
    }
    return { in: bytesIn, out: bytesOut };
  }

  /** The same dialer, with every socket it returns counted. */
  wrap(dialer: Dialer): Dialer {
    return {
      dial: async (workspace: WorkspaceRef, port: number, options?: DialOptions) => {
        const socket = await dialer.dial(workspace, port, options);
        this.track(socket);
        return socket;
      },
    };
  }
}
