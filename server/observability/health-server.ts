import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { HostPort } from "../../shared/settings.js";
import { listenOn } from "../listen.js";

export interface HealthServerOptions {
  readonly listen: HostPort;
  readonly registry: Registry;
  /** Undefined when ready, else the reason it is not. */
  readonly notReadyReason: () => string | undefined;
}

/** /healthz (the process serves), /readyz (it should get traffic) and /metrics. */
export class HealthServer {
  readonly #options: HealthServerOptions;
  readonly #server: http.Server;

  constructor(options: HealthServerOptions) {
    this.#options = options;
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
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
