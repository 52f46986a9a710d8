import net, { type AddressInfo } from "node:net";
import { createLogger } from "../../shared/logger.js";
import { SplicedConnection } from "../../server/proxy/spliced-connection.js";
import type { UpstreamPool } from "../../server/proxy/upstream-pool.js";

const log = createLogger({ name: "spliced-connection-spec", level: process.env["SPEC_LOG"] === "1" ? "debug" : "silent" });

/**
 * A front door of spliced connections onto a real app over plain TCP (no tunnel): every
 * request is forwarded, with a head deadline short enough to test.
 */
export async function startSplicedFrontDoor(appPort: number, options: { headTimeoutMs?: number; pool?: UpstreamPool } = {}) {
  const connections = new Set<SplicedConnection>();
  let appConnections = 0;
  // Half-open like node's HTTP server: a client that ends its side still gets its answers.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const connection = new SplicedConnection({
      socket,
      proto: "http",
      decide: async () => ({ kind: "forward", target: { workspace: "spec", workspaceId: "ws_spec", port: appPort } }),
      upstreams: {
        dial: async (_target, earlyData) => {
          const upstream = net.connect(appPort, "127.0.0.1");
          appConnections++;
          for (const part of earlyData) upstream.write(part);
          return upstream;
        },
        pool: options.pool,
        timeoutMs: 5_000,
        log,
      },
      handOff: (s) => s.destroy(),
      headTimeoutMs: options.headTimeoutMs ?? 5_000,
      idleTimeoutMs: 30_000,
      onClose: () => connections.delete(connection),
      log,
    });
    connections.add(connection);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    appConnections: () => appConnections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
