import net, { type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { randomBytes } from "node:crypto";
import { Server, type AuthContext, type Client, type ClientInfo, type Connection } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { VERSION } from "../../shared/version.js";
import type { Principal } from "../domain/principal.js";
import { trafficRefusal } from "../domain/workspace-policy.js";
import { workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import type { LoginRateLimiter } from "./login-rate-limiter.js";
import { loginSourceOf } from "./login-source.js";
import type { SshAccess, SshAccessDecision } from "./ssh-access.js";
import { SSH_ALGORITHMS } from "./ssh-algorithms.js";
import { ConnectionRelay } from "./ssh-connection-relay.js";
import { parsePublicKey, type PublicKey } from "../domain/ssh-public-key.js";
import { listenOn } from "../net/listen.js";

/** What a client may try; "none" and keyboard-interactive are answered with this list. */
const METHODS = ["publickey", "password"] as const;

/** What open sessions are told when the lease of their credential or workspace ends. */
const CREDENTIAL_GONE = new WarrenError(
  ErrorCode.Unauthenticated,
  "the credential this session logged in with was revoked or has expired, or its workspace is gone",
);

/** Longest SSH user name shown in logs (workspace names are far shorter): a client chooses it. */
const MAX_LOGGED_NAME = 64;

/** An SSH user name as logs show it: capped, so a client cannot fill the log with one login. */
export function loggedName(name: string): string {
  return name.length > MAX_LOGGED_NAME ? `${name.slice(0, MAX_LOGGED_NAME)}...(${name.length} characters)` : name;
}

/** One logged-in connection, as `closeConnections` shows it to its filter. */
export interface OpenSshConnection {
  readonly id: string;
  readonly workspace: WorkspaceRecord;
  /** Who logged in, and with which credential (`tokenId`). */
  readonly principal: Principal;
}

export type SshLoginOutcome = "ok" | "denied" | "rate_limited" | "error";

export interface SshFrontDoorOptions {
  /** The TCP listener's address; undefined when it is off (connections come only through acceptAuthenticated()). */
  readonly listen: HostPort | undefined;
  /** Private host key (OpenSSH or PEM text). */
  readonly hostKey: string;
  readonly access: SshAccess;
  /** Opens the logged-in session to a workspace's sshd (see WorkspaceSshConnector). */
  readonly connectWorkspace: (workspace: WorkspaceRecord, connectionId: string) => Promise<Client>;
  readonly dialer: Dialer;
  readonly getWorkspace: (name: string) => Promise<WorkspaceRecord | undefined>;
  /**
   * Calls back with the name of every workspace that changed anywhere in the cluster (state,
   * deletion, token revocation); returns the unsubscribe function. Open connections to a
   * workspace that no longer takes traffic are then closed.
   */
  readonly watchWorkspaces?: (onChange: (name: string) => void) => () => void;
  /** Failed logins are counted per source address (see loginSourceOf), never per name. */
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
  readonly bindSession?: (decision: Extract<SshAccessDecision, { allowed: true }>, close: (reason?: string) => void) => { release(): void };
}

interface ConnectionState {
  readonly id: string;
  /** The rate-limit key of the client's address. */
  readonly source: string;
  readonly log: Logger;
  readonly end: () => void;
  failures: number;
  /** A key nobody registered was offered; counted once, when the connection ends without a login. */
  unregisteredKeyOffered: boolean;
  decision: Extract<SshAccessDecision, { allowed: true }> | undefined;
}

/**
 * The SSH front door: `ssh <workspace>@<server>`. Authenticates the person (access token as
 * password, or a registered public key) through SshAccess, with failed attempts rate limited
 * per source address only (so nobody can lock another address out), then relays the
 * connection to the workspace's own sshd through the tunnel. A connection lives only while its
 * workspace takes traffic: when the workspace stops, is terminated, deleted or replaced, the
 * connection is closed (`closeConnections` is the same hook for other reasons, e.g. a revoked
 * credential).
 */
export class SshFrontDoor {
  readonly #options: SshFrontDoorOptions;
  readonly #server: Server;
  readonly #listener: net.Server;
  #address: AddressInfo | undefined;
  readonly #sockets = new Set<net.Socket>();
  readonly #pendingLogins = new Map<string, net.Socket>();
  readonly #preauthorized = new WeakMap<Duplex, Extract<SshAccessDecision, { allowed: true }>>();
  readonly #open = new Map<string, { readonly connection: OpenSshConnection; readonly relay: ConnectionRelay }>();
  readonly #pruneTimer: NodeJS.Timeout;
  readonly #unwatch: () => void;
  #sessions = 0;

  constructor(options: SshFrontDoorOptions) {
    this.#options = options;
    this.#server = new Server({ hostKeys: [options.hostKey], algorithms: SSH_ALGORITHMS, ident: `Warren_${VERSION}` }, (client, info) =>
      this.#onConnection(client, info),
    );
    this.#listener = net.createServer((socket) => this.#onSocket(socket));
    // Failures age out even when nobody fails again (bounded memory by time).
    this.#pruneTimer = setInterval(() => options.rateLimiter.prune(), options.rateLimiter.windowMs);
    this.#pruneTimer.unref();
    this.#unwatch = options.watchWorkspaces?.((name) => this.#recheck(name)) ?? (() => {});
  }

  /** Resolves with the bound address; rejects when the address cannot be bound. */
  async listen(): Promise<AddressInfo> {
    if (!this.#options.listen) throw new Error("the SSH listener is off");
    this.#address = await listenOn(this.#listener, this.#options.listen);
    return this.#address;
  }

  /** The TCP listener's bound address once it listens (kept after it stops); undefined when it is off. */
  get address(): AddressInfo | undefined {
    return this.#address;
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
    if (this.#listener.listening) this.#listener.close();
    // No new logins: nothing more to count. Open connections still close when their workspace stops.
    clearInterval(this.#pruneTimer);
    if (this.#sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.#sockets.size === 0) resolve();
      };
      for (const s of this.#sockets) s.once("close", check);
    });
  }

  closeAll(): void {
    clearInterval(this.#pruneTimer);
    this.#unwatch();
    for (const s of this.#sockets) s.destroy();
  }

  /**
   * Closes every logged-in connection the filter picks, telling each open session `reason`
   * (stderr line, exit status 255). Returns how many it closes; they are gone within about a
   * second. For a credential's revocation, pick by `principal.tokenId`.
   */
  closeConnections(filter: (connection: OpenSshConnection) => boolean, reason: WarrenError): number {
    let count = 0;
    for (const { connection, relay } of this.#open.values()) {
      if (!filter(connection)) continue;
      count++;
      void relay.close(reason);
    }
    return count;
  }

  /** Resolves with the workspace as it is now when it still takes traffic; rejects with why not. */
  async #admit(workspace: WorkspaceRecord): Promise<WorkspaceRecord> {
    const fresh = await this.#options.getWorkspace(workspace.name);
    const refusal = refusalOf(workspace, fresh);
    if (refusal) throw refusal;
    return fresh!;
  }

  #recheck(name: string): void {
    const open = [...this.#open.values()].filter((o) => o.connection.workspace.name === name);
    if (open.length === 0) return;
    this.#options.getWorkspace(name).then(
      (fresh) => {
        for (const o of open) {
          const refusal = refusalOf(o.connection.workspace, fresh);
          // A connection that never reached the workspace is refused channel by channel, with
          // the reason; cutting it now would only race its first session to the message.
          if (refusal && o.relay.reachedWorkspace) void o.relay.close(refusal);
        }
      },
      // A store that does not answer says nothing about the workspace: the sessions go on.
      () => {},
    );
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

  /**
   * An SSH connection whose person the caller already authenticated (`warren ssh --stdio`
   * over the public HTTPS listener, with an access token): the same relay and host-key
   * pinning as the TCP listener, and no password or key is asked for. Works with the TCP
   * listener off.
   */
  acceptAuthenticated(stream: Duplex, remote: { ip: string; port: number }, decision: Extract<SshAccessDecision, { allowed: true }>): void {
    Object.assign(stream, { remoteAddress: remote.ip, remotePort: remote.port });
    this.#preauthorized.set(stream, decision);
    this.#sockets.add(stream as net.Socket);
    stream.once("close", () => this.#sockets.delete(stream as net.Socket));
    this.#server.injectSocket(stream as net.Socket);
  }

  #onConnection(client: Connection, info: ClientInfo): void {
    const id = randomBytes(6).toString("hex");
    const remote = `${info.ip}:${info.port}`;
    const log = this.#options.log.child({ sshConnection: id, remote });
    const state: ConnectionState = {
      id,
      source: loginSourceOf(info.ip),
      log,
      end: () => client.end(),
      failures: 0,
      unregisteredKeyOffered: false,
      decision: undefined,
    };
    const preauthorized = this.#preauthorized.get((client as unknown as { _sock: Duplex })._sock);
    log.debug({ client: info.header.versions.software.slice(0, MAX_LOGGED_NAME) }, "SSH connection");
    client.on("error", (err: Error & { level?: string }) => log.debug({ err: err.message, level: err.level }, "SSH connection error"));
    client.once("close", () => {
      // Clients offer every key they have before the right one: such a connection counts one
      // failure, and only when it never logged in.
      if (!state.decision && state.unregisteredKeyOffered) this.#options.rateLimiter.fail(state.source);
    });
    client.on("authentication", (ctx) => {
      if (preauthorized) {
        // The access token that opened the stream is the credential: any method is accepted.
        state.decision = preauthorized;
        this.#options.onLogin?.("ok");
        ctx.accept();
        return;
      }
      this.#authenticate(ctx, state).catch((err: unknown) => {
        log.error({ err: WarrenError.from(err).message }, "SSH authentication failed with an error");
        this.#options.onLogin?.("error");
        ctx.reject([...METHODS]);
      });
    });
    client.on("ready", () => {
      this.#pendingLogins.delete(remote);
      this.#sessions++;
      const decision = state.decision!;
      const workspace = decision.workspace;
      const clog = log.child({ workspace: workspace.name });
      clog.info({ principal: decision.principal.kind === "user" ? decision.principal.user : "admin" }, "SSH login");
      const upstream = this.#options.connectWorkspace(workspace, id);
      upstream.catch((err: unknown) => clog.warn({ err: WarrenError.from(err).message }, "could not open the workspace's SSH session"));
      const relay = new ConnectionRelay({
        client,
        workspace,
        upstream,
        dialer: this.#options.dialer,
        admit: () => this.#admit(workspace),
        connectionId: id,
        log: clog,
      });
      this.#open.set(id, { connection: { id, workspace, principal: decision.principal }, relay });
      const lease = this.#options.bindSession?.(decision, (reason) =>
        void relay.close(reason ? new WarrenError(ErrorCode.Unauthenticated, reason) : CREDENTIAL_GONE),
      );
      if (lease) client.once("close", () => lease.release());
      client.once("close", () => {
        this.#sessions--;
        this.#open.delete(id);
      });
    });
  }

  async #authenticate(ctx: AuthContext, state: ConnectionState): Promise<void> {
    const { log } = state;
    if (ctx.method !== "password" && ctx.method !== "publickey") return ctx.reject([...METHODS]);
    const workspaceName = ctx.username;
    const shown = loggedName(workspaceName);
    const limiter = this.#options.rateLimiter;
    // Only this client's own address can be blocked, so failing on purpose locks out nobody else.
    if (limiter.blocked(state.source)) {
      log.warn({ workspace: shown, retryAfterMs: limiter.retryAfterMs(state.source) }, "SSH login refused: too many failed attempts from this address");
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
      if (!ctx.signature) {
        // A key offered without a signature only asks whether it would do. The answer must not
        // depend on the workspace (it would tell which workspaces the key's owner has): yes for
        // any registered key; the signed attempt is then checked in full.
        if (await this.#options.access.acceptsKeyQuery(key)) return ctx.accept();
        state.unregisteredKeyOffered = true;
        log.debug({ workspace: shown, key: key.fingerprint }, "SSH key query for a key nobody registered");
        return ctx.reject([...METHODS]);
      }
      decision =
        key.parsed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true
          ? await this.#options.access.authorize(workspaceName, { kind: "publickey", key })
          : { allowed: false, reason: "unknown_key", user: undefined };
    }

    if (decision.allowed) {
      state.decision = decision;
      this.#options.onLogin?.("ok");
      return ctx.accept();
    }

    limiter.fail(state.source);
    log.info({ workspace: shown, method: ctx.method, reason: decision.reason, user: decision.user, key: key?.fingerprint }, "SSH login denied");
    this.#options.onLogin?.("denied");
    ctx.reject([...METHODS]);
    if (++state.failures >= (this.#options.maxAuthTries ?? 6)) {
      log.info("too many failed attempts on one SSH connection; disconnected");
      setImmediate(state.end);
    }
  }
}

/** Why a connection logged in to `workspace` may open nothing more, now that it is `fresh`. */
function refusalOf(workspace: WorkspaceRecord, fresh: WorkspaceRecord | undefined): WarrenError | undefined {
  // The same name created again is another workspace.
  if (!fresh || workspaceIdOf(fresh) !== workspaceIdOf(workspace)) return new WarrenError(ErrorCode.NotFound, `workspace "${workspace.name}" no longer exists`);
  return trafficRefusal(fresh);
}
