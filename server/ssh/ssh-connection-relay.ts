import type { Duplex } from "node:stream";
import type { Client, ClientChannel, Connection, ServerChannel, TcpConnectionDetails } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { workspaceRefOf, type WorkspaceRecord } from "../domain/records.js";
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
  /**
   * Resolves with the workspace as it is now when it still takes new channels (same
   * incarnation, not stopped or terminated; its exposed ports may have changed); rejects with
   * the WarrenError to show the person otherwise.
   */
  readonly admit: () => Promise<WorkspaceRecord>;
  readonly connectionId: string;
  readonly log: Logger;
}

/**
 * Relays one authenticated SSH connection: session channels to the workspace's sshd,
 * `direct-tcpip` (ssh -L) straight through the tunnel's dial to a port the workspace exposes,
 * and `tcpip-forward` (ssh -R) through the workspace's sshd. Unix socket forwarding is refused.
 * Every new channel and forward asks `admit` first, so a workspace that was stopped, terminated
 * or replaced since the login gets nothing new; `close` ends the whole connection.
 */
export class ConnectionRelay {
  readonly #options: ConnectionRelayOptions;
  readonly #sessions = new Set<SessionRelay>();
  #closing = false;
  #upstreamOpen = false;

  constructor(options: ConnectionRelayOptions) {
    this.#options = options;
    const { client, upstream, log } = options;
    let clientClosed = false;
    client.on("session", (accept) => {
      const session = accept();
      if (!session) return;
      const relay = new SessionRelay({ session, upstream, admit: () => this.#admit(), log });
      this.#sessions.add(relay);
      session.once("close", () => this.#sessions.delete(relay));
    });
    client.on("tcpip", (accept, reject, info) => void this.#directTcpip(accept, reject, info.destIP, info.destPort));
    client.on("openssh.streamlocal", (_accept, reject) => reject());
    client.on("request", (accept, reject, name, info) => {
      if (name !== "tcpip-forward" && name !== "cancel-tcpip-forward") return reject?.();
      const bind = info as { bindAddr: string; bindPort: number };
      const admitted = name === "tcpip-forward" ? this.#admit() : Promise.resolve();
      Promise.all([upstream, admitted]).then(
        ([up]) => {
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
        this.#upstreamOpen = true;
        // Connections the workspace's sshd accepted for an ssh -R forward go back to the person.
        up.on("tcp connection", (details: TcpConnectionDetails, acceptUp: () => ClientChannel, rejectUp: () => void) => {
          this.#admit().then(
            () =>
              client.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (err, down) => {
                if (err) return rejectUp();
                splice(down, acceptUp());
              }),
            () => rejectUp(),
          );
        });
        // The workspace's sshd went away: so does the person's connection, told why when the
        // workspace stopped or was deleted (its agent is then cut off, often before the news).
        up.once("close", () =>
          clientClosed ||
          this.#options.admit().then(
            () => client.end(),
            (err: unknown) => void this.close(WarrenError.from(err)),
          ),
        );
      },
      () => {},
    );
    // The person went away, perhaps before the workspace's session was even open.
    client.once("close", () => {
      clientClosed = true;
      upstream.then((up) => up.end(), () => {});
    });
  }

  /**
   * Whether the connection reached the workspace's sshd. One that did not (the workspace was
   * stopped or offline at login) holds nothing there: each of its channels fails on its own
   * with the reason.
   */
  get reachedWorkspace(): boolean {
    return this.#upstreamOpen;
  }

  /**
   * Ends the connection because of `reason` (the workspace stopped, the credential that opened
   * it was revoked, ...): each open session is told why on its stderr and ends with exit status
   * 255, then the connection closes. Resolves once it is closed; never rejects.
   */
  async close(reason: WarrenError): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const { client, upstream, log } = this.#options;
    log.info({ reason: reason.message }, "closing the SSH connection");
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    const told = Promise.all([...this.#sessions].map((s) => s.abort(reason)));
    // A person who does not read their channel must not keep the connection open.
    await Promise.race([told, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    client.end();
    upstream.then((up) => up.end(), () => {});
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  }

  async #admit(): Promise<WorkspaceRecord> {
    if (this.#closing) throw new WarrenError(ErrorCode.Unavailable, "the connection is closing");
    return this.#options.admit();
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
      const fresh = await this.#admit().catch((err: unknown) => {
        flog.info({ err: WarrenError.from(err).message }, "refused a forward: the workspace takes no new channels");
        return undefined;
      });
      if (!fresh) return reject();
      if (!fresh.ports.some((p) => p.port === port)) {
        flog.info("refused a forward to a port the workspace does not expose");
        return reject();
      }
      socket = await this.#options.dialer.dial(workspaceRefOf(workspace), port, { connectionId: this.#options.connectionId });
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
