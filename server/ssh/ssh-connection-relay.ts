import type { Duplex } from "node:stream";
import type { Client, ClientChannel, Connection, ServerChannel, TcpConnectionDetails } from "ssh2";
import { WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { WorkspaceRecord } from "../store/records.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import { SessionRelay } from "./ssh-session-relay.js";

/** Host names a forward may ask for: the agent only ever dials the workspace's loopback. */
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export interface ConnectionRelayOptions {
  /** The person's authenticated connection. */
  readonly client: Connection;
  readonly workspace: WorkspaceRecord;
  /** The logged-in session to the workspace's sshd, or why there is none. */
  readonly upstream: Promise<Client>;
  readonly dialer: Dialer;
  /** A fresh look at the workspace (its exposed ports may have changed). */
  readonly getWorkspace: (name: string) => Promise<WorkspaceRecord | undefined>;
  readonly connectionId: string;
  readonly log: Logger;
}

/**
 * Relays one authenticated SSH connection: session channels to the workspace's sshd,
 * `direct-tcpip` (ssh -L) straight through the tunnel's dial to a port the workspace exposes,
 * and `tcpip-forward` (ssh -R) through the workspace's sshd. Unix socket forwarding is refused.
 */
export class ConnectionRelay {
  readonly #options: ConnectionRelayOptions;

  constructor(options: ConnectionRelayOptions) {
    this.#options = options;
    const { client, upstream, log } = options;
    client.on("session", (accept) => {
      const session = accept();
      if (session) new SessionRelay({ session, upstream, log });
    });
    client.on("tcpip", (accept, reject, info) => void this.#directTcpip(accept, reject, info.destIP, info.destPort));
    client.on("openssh.streamlocal", (_accept, reject) => reject());
    client.on("request", (accept, reject, name, info) => {
      if (name !== "tcpip-forward" && name !== "cancel-tcpip-forward") return reject?.();
      const bind = info as { bindAddr: string; bindPort: number };
      upstream.then(
        (up) => {
          const cb = (err: Error | null | undefined, port?: number) => (err ? reject?.() : (accept as ((port?: number) => void) | undefined)?.(port));
          try {
            if (name === "tcpip-forward") up.forwardIn(bind.bindAddr, bind.bindPort, cb);
            else up.unforwardIn(bind.bindAddr, bind.bindPort, cb);
          } catch {
            reject?.();
          }
        },
        () => reject?.(),
      );
    });
    upstream.then(
      (up) => {
        // Connections the workspace's sshd accepted for an ssh -R forward go back to the person.
        up.on("tcp connection", (details: TcpConnectionDetails, acceptUp: () => ClientChannel, rejectUp: () => void) => {
          client.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (err, down) => {
            if (err) return rejectUp();
            splice(down, acceptUp());
          });
        });
        // The workspace's sshd went away: so does the person's connection.
        up.once("close", () => client.end());
      },
      () => {},
    );
    // The person went away, perhaps before the workspace's session was even open.
    client.once("close", () => upstream.then((up) => up.end(), () => {}));
  }

  async #directTcpip(accept: () => ServerChannel, reject: () => void, host: string, port: number): Promise<void> {
    const { workspace, log } = this.#options;
    const flog = log.child({ forward: `${host}:${port}` });
    if (!LOOPBACK_HOSTS.has(host.toLowerCase())) {
      flog.info("refused a forward to a host other than the workspace's loopback");
      return reject();
    }
    let socket: Duplex;
    try {
      const fresh = await this.#options.getWorkspace(workspace.name);
      if (!fresh || fresh.createdAt !== workspace.createdAt) return reject();
      if (!fresh.ports.some((p) => p.port === port)) {
        flog.info("refused a forward to a port the workspace does not expose");
        return reject();
      }
      socket = await this.#options.dialer.dial(workspace.name, port, { connectionId: this.#options.connectionId });
    } catch (err) {
      flog.info({ err: WarrenError.from(err).message }, "forward failed");
      return reject();
    }
    const channel = accept();
    if (!channel) {
      socket.destroy();
      return;
    }
    splice(channel, socket);
  }
}

/**
 * Joins a server channel and a byte stream both ways with backpressure and half-close: the
 * stream's end becomes the channel's EOF (after pending data), and the channel closes once
 * both directions are done.
 */
export function splice(channel: ServerChannel, other: Duplex): void {
  let ends = 0;
  // Both directions done: close the channel; the stream finishes flushing on its own.
  const ended = () => {
    if (++ends === 2) channel.close();
  };
  channel.pipe(other);
  other.pipe(channel, { end: false });
  other.once("end", () => {
    channel.write(Buffer.alloc(0), () => channel.eof());
    ended();
  });
  channel.once("end", ended);
  other.on("error", () => channel.close());
  channel.on("error", () => other.destroy());
  // Closed before both directions were done (the person went away): drop the stream.
  channel.once("close", () => {
    if (ends < 2) other.destroy();
  });
}
