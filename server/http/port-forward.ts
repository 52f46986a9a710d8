import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { bridgeWebSocket } from "../../shared/websocket-bridge.js";
import type { Principal } from "../domain/principal.js";
import { bearerToken } from "../domain/tokens.js";
import { mayReach, trafficRefusal } from "../domain/workspace-policy.js";
import { workspaceRefOf, type WorkspaceRecord } from "../domain/records.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import { sendUpgradeError } from "../web/error-response.js";
import type { WorkspaceLookup } from "../domain/store.js";

/** `warren port-forward`: one WebSocket per forwarded TCP connection, on the root domain. */
export const PORT_FORWARD_PATH = "/-/port-forward";
const BUSY_DIAL_ATTEMPTS = 5;

/** What a long-lived connection is bound to: closed when its access token is revoked. */
export type ConnectionBinder = (
  principal: Principal,
  workspace: WorkspaceRecord,
  close: (reason: string) => void,
) => { release(): void } | undefined;

export interface PortForwardOptions {
  readonly workspaces: WorkspaceLookup;
  readonly authenticateCaller: (token: string | undefined) => Promise<Principal>;
  readonly dialer: Dialer;
  readonly log: Logger;
  /** Binds each forwarded connection to the token that opened it (credential leases). */
  readonly bind?: ConnectionBinder;
  /** Observes each forward's outcome (metrics). */
  readonly onOutcome?: (outcome: "ok" | "denied" | "failed") => void;
}

/**
 * The server side of `warren port-forward`: `GET /-/port-forward?workspace=NAME&port=N` with
 * `Authorization: Bearer <access token>` and a WebSocket upgrade. The caller must be the
 * workspace's owner or an admin (anyone else is told the workspace does not exist), the port
 * must be exposed, and the dial must succeed before the upgrade is accepted, so that every
 * refusal comes back as an HTTP status with a message. Then the WebSocket carries the TCP
 * connection (shared/websocket-bridge.ts).
 */
export class PortForwardEndpoint {
  readonly #options: PortForwardOptions;
  readonly #wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

  constructor(options: PortForwardOptions) {
    this.#options = options;
  }

  /** Takes upgrades on its path; false for any other path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): boolean {
    if (path !== PORT_FORWARD_PATH) return false;
    this.#open(req, socket, head).catch((err) => {
      this.#options.onOutcome?.("denied");
      sendUpgradeError(socket, err);
    });
    return true;
  }

  /**
   * A burst of forwarded connections may outrun the agent's idle streams (it opens more on
   * request): the client is waiting anyway, so a dial that found no free stream is tried again
   * a few times before the refusal goes back.
   */
  async #dial(workspace: WorkspaceRef, port: number, signal: AbortSignal) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#options.dialer.dial(workspace, port, { signal });
      } catch (err) {
        const e = WarrenError.from(err);
        if (attempt >= BUSY_DIAL_ATTEMPTS || e.code !== ErrorCode.Unavailable || !/no free tunnel stream/.test(e.message) || signal.aborted) throw e;
      }
    }
  }

  async #open(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const principal = await this.#options.authenticateCaller(bearerToken(req.headers.authorization));
    const name = url.searchParams.get("workspace") ?? "";
    const port = Number(url.searchParams.get("port"));
    if (!name) throw new WarrenError(ErrorCode.InvalidArgument, "workspace: required");
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WarrenError(ErrorCode.InvalidArgument, `port: "${url.searchParams.get("port") ?? ""}" is not a port number 1-65535`);
    const workspace = await this.#options.workspaces.getWorkspace(name);
    if (!workspace || !mayReach(principal, workspace)) throw new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
    const refusal = trafficRefusal(workspace);
    if (refusal?.code === ErrorCode.NotFound) throw refusal;
    if (!workspace.ports.some((p) => p.port === port)) {
      throw new WarrenError(ErrorCode.PermissionDenied, `port ${port} is not exposed by workspace "${name}" (expose it with \`warren workspace expose ${name} ${port}\`)`);
    }
    if (refusal) throw refusal;
    const abort = new AbortController();
    socket.once("close", () => abort.abort());
    const tunnel = await this.#dial(workspaceRefOf(workspace), port, abort.signal);
    if (socket.destroyed) {
      tunnel.destroy();
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      this.#options.onOutcome?.("ok");
      const lease = this.#options.bind?.(principal, workspace, (reason) => {
        tunnel.destroy();
        ws.close(4001, reason.slice(0, 120));
      });
      const who = principal.kind === "admin" ? "admin" : principal.user;
      this.#options.log.debug({ workspace: name, port, user: who }, "port-forward connection opened");
      void bridgeWebSocket(ws, tunnel).then((end) => {
        lease?.release();
        this.#options.log.debug(
          { workspace: name, port, user: who, reset: end.reset, bytesIn: tunnel.bytesWritten, bytesOut: tunnel.bytesRead },
          "port-forward connection closed",
        );
      });
    });
  }
}
