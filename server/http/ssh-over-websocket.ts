import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { createWebSocketStream, WebSocketServer, type WebSocket } from "ws";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { bearerToken } from "../domain/tokens.js";
import { trafficRefusal } from "../domain/workspace-policy.js";
import type { SshAccess, SshAccessDecision } from "../ssh/ssh-access.js";
import { sendUpgradeError } from "../web/error-response.js";

/** `warren ssh --stdio`: an SSH connection carried by a WebSocket on the root domain. */
export const SSH_OVER_WEBSOCKET_PATH = "/-/ssh";

export interface SshOverWebSocketOptions {
  readonly access: SshAccess;
  /** Hands the authenticated SSH byte stream to the SSH front door. */
  readonly accept: (stream: Duplex, remote: { ip: string; port: number }, decision: Extract<SshAccessDecision, { allowed: true }>) => void;
  readonly log: Logger;
}

/**
 * `GET /-/ssh?workspace=NAME` with `Authorization: Bearer <access token>` and a WebSocket
 * upgrade: the access token is checked exactly as the SSH listener checks a password (owner
 * or admin; anyone else is told the workspace does not exist), then the WebSocket's binary
 * messages carry the SSH connection to the same SSH front door, which asks for no further
 * credential.
 */
export class SshOverWebSocket {
  readonly #options: SshOverWebSocketOptions;
  readonly #wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 });

  constructor(options: SshOverWebSocketOptions) {
    this.#options = options;
  }

  /** Takes upgrades on its path; false for any other path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): boolean {
    if (path !== SSH_OVER_WEBSOCKET_PATH) return false;
    this.#open(req, socket, head).catch((err) => sendUpgradeError(socket, err));
    return true;
  }

  async #open(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const name = new URL(req.url ?? "/", "http://x").searchParams.get("workspace") ?? "";
    if (!name) throw new WarrenError(ErrorCode.InvalidArgument, "workspace: required");
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new WarrenError(ErrorCode.Unauthenticated, "send an access token: Authorization: Bearer <token> (warren login)");
    const decision = await this.#options.access.authorize(name, { kind: "password", password: token });
    if (!decision.allowed) {
      if (decision.reason === "bad_token") throw new WarrenError(ErrorCode.Unauthenticated, "token is invalid, expired or revoked");
      throw new WarrenError(ErrorCode.NotFound, `workspace "${name}" not found`);
    }
    const refusal = trafficRefusal(decision.workspace);
    if (refusal) throw refusal;
    const ip = (req.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
    const port = req.socket.remotePort ?? 0;
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      this.#options.log.debug({ workspace: name }, "SSH over WebSocket");
      const stream = createWebSocketStream(ws, { allowHalfOpen: false });
      stream.on("error", () => stream.destroy());
      this.#options.accept(stream, { ip, port }, decision);
    });
  }
}
