import type { AddressInfo, Server } from "node:net";
import type { HostPort } from "../../shared/settings.js";

/**
 * Binds a listener and resolves with its address; rejects (EADDRINUSE, EACCES...) instead of
 * leaving an "error" event that would crash the process after start-up.
 */
export function listenOn(server: Server, address: HostPort, backlog?: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: address.port, host: address.host, ...(backlog === undefined ? {} : { backlog }) }, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
