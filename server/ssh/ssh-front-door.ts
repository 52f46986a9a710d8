import net, { type AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { Server, type AuthContext, type Client, type ClientInfo, type Connection } from "ssh2";
import { WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { VERSION } from "../../shared/version.js";
import type { WorkspaceRecord } from "../store/records.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import type { LoginRateLimiter } from "./login-rate-limiter.js";
import type { SshAccess, SshAccessDecision } from "./ssh-access.js";
import { SSH_ALGORITHMS } from "./ssh-algorithms.js";
import { ConnectionRelay } from "./ssh-connection-relay.js";
import { parsePublicKey, type PublicKey } from "./ssh-public-key.js";
import { listenOn } from "../listen.js";

/** What a client may try; "none" and keyboard-interactive are answered with this list. */
const METHODS = ["publickey", "password"] as const;

export type SshLoginOutcome = "ok" | "denied" | "rate_limited" | "error";

export interface SshFrontDoorOptions {
  readonly listen: HostPort;
  /** Private host key (OpenSSH or PEM text). */
  readonly hostKey: string;
  readonly access: SshAccess;
  /** Opens the logged-in session to a workspace's sshd (see WorkspaceSshConnector). */
  readonly connectWorkspace: (workspace: WorkspaceRecord, connectionId: string) => Promise<Client>;
  readonly dialer: Dialer;
  readonly getWorkspace: (name: string) => Promise<WorkspaceRecord | undefined>;
  readonly rateLimiter: LoginRateLimiter;
  /** A client not authenticated within this time is disconnected. */
  readonly loginGraceMs: number;
  /** Failed attempts on one connection before it is dropped (OpenSSH's MaxAuthTries). */
  readonly maxAuthTries?: number;
  readonly log: Logger;
  readonly onLogin?: (outcome: SshLoginOutcome) => void;
  /**
   * Binds a logged-in connection to the credential and workspace it logged in with (see
   * server/auth/credential-leases.ts): `close` ends it when either is revoked; the returned
   * handle is released when it ends by itself.
   */
  readonly bindSession?: (decision: Extract<SshAccessDecision, { allowed: true }>, close: () => void) => { release(): void };
}

interface ConnectionState {
  readonly id: string;
  readonly ip: string;
  readonly log: Logger;
  readonly end: () => void;
  failures: number;
  keyFailureCounted: boolean;
  decision: Extract<SshAccessDecision, { allowed: true }> | undefined;
}

/**
 * The SSH front door: `ssh <workspace>@<server>`. Authenticates the person (access token as
 * password, or a registered public key) through SshAccess, with failed attempts rate limited
 * per source address, per workspace name and per user, then relays the connection to the
 * workspace's own sshd through the tunnel.
 */
export class SshFrontDoor {
  readonly #options: SshFrontDoorOptions;
  readonly #server: Server;
  readonly #listener: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #pendingLogins = new Map<string, net.Socket>();
  #sessions = 0;

  constructor(options: SshFrontDoorOptions) {
    this.#options = options;
    this.#server = new Server({ hostKeys: [options.hostKey], algorithms: SSH_ALGORITHMS, ident: `Warren_${VERSION}` }, (client, info) =>
      this.#onConnection(client, info),
    );
    this.#listener = net.createServer((socket) => this.#onSocket(socket));
  }

  /** Resolves with the bound address; rejects when the address cannot be bound. */
  listen(): Promise<AddressInfo> {
    return listenOn(this.#listener, this.#options.listen);
  }


  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** Logged-in connections, relayed to a workspace. */
  get sessionCount(): number {
    return this.#sessions;
  }

  /** Stops accepting; resolves once every open connection has ended (open sessions keep running). */
  stopAccepting(): Promise<void> {
    this.#listener.close();
    if (this.#sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.#sockets.size === 0) resolve();
      };
      for (const s of this.#sockets) s.once("close", check);
    });
  }

  closeAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  #onSocket(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.#sockets.add(socket);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#pendingLogins.set(key, socket);
    // Login grace time counts from the TCP connection, so a client that never sends its
    // version line or never authenticates does not hold a socket forever.
    const grace = setTimeout(() => {
      if (!this.#pendingLogins.has(key)) return;
      this.#options.log.info({ remote: key }, "SSH client did not authenticate within the login grace time; disconnected");
      socket.destroy();
    }, this.#options.loginGraceMs);
    socket.once("close", () => {
      clearTimeout(grace);
      this.#sockets.delete(socket);
      if (this.#pendingLogins.get(key) === socket) this.#pendingLogins.delete(key);
    });
    this.#server.injectSocket(socket);
  }

  #onConnection(client: Connection, info: ClientInfo): void {
    const id = randomBytes(6).toString("hex");
    const remote = `${info.ip}:${info.port}`;
    const log = this.#options.log.child({ sshConnection: id, remote });
    const state: ConnectionState = { id, ip: info.ip, log, end: () => client.end(), failures: 0, keyFailureCounted: false, decision: undefined };
    log.debug({ client: info.header.versions.software }, "SSH connection");
    client.on("error", (err: Error & { level?: string }) => log.debug({ err: err.message, level: err.level }, "SSH connection error"));
    client.on("authentication", (ctx) => {
      this.#authenticate(ctx, state).catch((err: unknown) => {
        log.error({ err: WarrenError.from(err).message }, "SSH authentication failed with an error");
        this.#options.onLogin?.("error");
        ctx.reject([...METHODS]);
      });
    });
    client.on("ready", () => {
      this.#pendingLogins.delete(remote);
      this.#sessions++;
      client.once("close", () => this.#sessions--);
      const decision = state.decision!;
      const lease = this.#options.bindSession?.(decision, () => client.end());
      if (lease) client.once("close", () => lease.release());
      const workspace = decision.workspace;
      const clog = log.child({ workspace: workspace.name });
      clog.info({ principal: decision.principal.kind === "user" ? decision.principal.user : "admin" }, "SSH login");
      const upstream = this.#options.connectWorkspace(workspace, id);
      upstream.catch((err: unknown) => clog.warn({ err: WarrenError.from(err).message }, "could not open the workspace's SSH session"));
      new ConnectionRelay({
        client,
        workspace,
        upstream,
        dialer: this.#options.dialer,
        getWorkspace: this.#options.getWorkspace,
        connectionId: id,
        log: clog,
      });
    });
  }

  async #authenticate(ctx: AuthContext, state: ConnectionState): Promise<void> {
    const { log } = state;
    if (ctx.method !== "password" && ctx.method !== "publickey") return ctx.reject([...METHODS]);
    const workspaceName = ctx.username;
    const limitKeys = [`addr:${state.ip}`, `workspace:${workspaceName}`];
    const limiter = this.#options.rateLimiter;
    if (limiter.blocked(limitKeys)) {
      log.warn({ workspace: workspaceName, retryAfterMs: limiter.retryAfterMs(limitKeys) }, "SSH login refused: too many failed attempts");
      this.#options.onLogin?.("rate_limited");
      ctx.reject([...METHODS]);
      // Nothing this connection tries can succeed now: drop it rather than answer each try.
      setImmediate(state.end);
      return;
    }

    let decision: SshAccessDecision;
    let key: PublicKey | undefined;
    if (ctx.method === "password") {
      decision = await this.#options.access.authorize(workspaceName, { kind: "password", password: ctx.password });
    } else {
      try {
        key = parsePublicKey(ctx.key.data);
      } catch {
        return ctx.reject([...METHODS]);
      }
      decision = await this.#options.access.authorize(workspaceName, { kind: "publickey", key });
      if (decision.allowed && ctx.signature && key.parsed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true) {
        decision = { allowed: false, reason: "unknown_key", user: decision.user };
      }
    }

    const keys = decision.user ? [...limitKeys, `user:${decision.user}`] : limitKeys;
    if (decision.allowed && decision.user && limiter.blocked([`user:${decision.user}`])) {
      log.warn({ workspace: workspaceName, user: decision.user }, "SSH login refused: too many failed attempts for this user");
      this.#options.onLogin?.("rate_limited");
      return ctx.reject([...METHODS]);
    }
    if (decision.allowed) {
      // A key offered without a signature only asks whether it would do: say yes, wait for the proof.
      if (ctx.method === "publickey" && !ctx.signature) return ctx.accept();
      state.decision = decision;
      this.#options.onLogin?.("ok");
      return ctx.accept();
    }

    // Clients offer every key they have before the right one: count key refusals once per connection.
    const counts = ctx.method === "password" || !state.keyFailureCounted;
    if (ctx.method === "publickey") state.keyFailureCounted = true;
    if (counts) limiter.fail(keys);
    log.info({ workspace: workspaceName, method: ctx.method, reason: decision.reason, user: decision.user, key: key?.fingerprint }, "SSH login denied");
    this.#options.onLogin?.("denied");
    ctx.reject([...METHODS]);
    if (counts && ++state.failures >= (this.#options.maxAuthTries ?? 6)) {
      log.info("too many failed attempts on one SSH connection; disconnected");
      setImmediate(state.end);
    }
  }
}
