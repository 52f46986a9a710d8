import http from "node:http";
import https from "node:https";
import type { SecureContextOptions } from "node:tls";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { HostPort } from "../../shared/settings.js";
import { listenOn } from "../net/listen.js";

export interface HealthServerOptions {
  readonly listen: HostPort;
  readonly registry: Registry;
  /** Undefined when ready, else the reason it is not. */
  readonly notReadyReason: () => string | undefined;
  /** Certificate and key: serve over TLS (WARREN_OBSERVABILITY_TLS). */
  readonly tls?: SecureContextOptions;
}

/** /healthz (the process serves), /readyz (it should get traffic) and /metrics. */
export class HealthServer {
  readonly #options: HealthServerOptions;
  readonly #server: http.Server | https.Server;

  constructor(options: HealthServerOptions) {
    this.#options = options;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.#handle(req, res);
    this.#server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler);
  }

  /** Swaps the TLS certificate for new connections. */
  setSecureContext(options: SecureContextOptions): void {
    if (this.#server instanceof https.Server) this.#server.setSecureContext(options);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const text = (status: number, body: string) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(body);
    };
    if (path === "/healthz") return text(200, "ok\n");
    if (path === "/readyz") {
      const reason = this.#options.notReadyReason();
      return reason ? text(503, `not ready: ${reason}\n`) : text(200, "ready\n");
    }
    if (path === "/metrics") {
      try {
        const body = await this.#options.registry.metrics();
        res.writeHead(200, { "content-type": this.#options.registry.contentType });
        res.end(body);
      } catch (err) {
        text(500, `metrics failed: ${(err as Error).message}\n`);
      }
      return;
    }
    text(404, "not found: try /healthz, /readyz or /metrics\n");
  }

  async listen(): Promise<AddressInfo> {
    return listenOn(this.#server, this.#options.listen);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
