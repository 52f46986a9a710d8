import type { Client, ClientChannel, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { sshFailureOf } from "../../shared/ssh-status.js";

export interface SessionRelayOptions {
  /** The person's session channel (already accepted). */
  readonly session: Session;
  /** The logged-in client session to the workspace's sshd, or why there is none. */
  readonly upstream: Promise<Client>;
  /** Resolves when the workspace still takes new sessions; rejects with the WarrenError to show otherwise. */
  readonly admit: () => Promise<unknown>;
  readonly log: Logger;
}

type Exit = { readonly code: number } | { readonly signal: string; readonly coreDumped: boolean; readonly message: string };

/**
 * Relays one session channel to a session channel on the workspace's sshd: pty-req and env
 * are remembered and sent with the shell, exec or subsystem request that starts the session
 * (ssh2's client sends them as part of it); window-change and signal go through as they come;
 * stdin, stdout and stderr are piped with backpressure; stdin EOF is passed on; exit status
 * or exit signal is relayed before the channel closes. x11 and agent forwarding are refused.
 *
 * ssh2's server channel cannot send an exit status after its EOF, and ending it sends EOF and
 * CLOSE at once, so the workspace's EOF is held back until its channel closes: then pending
 * output is flushed, the exit status sent, and only then the channel ended.
 */
export class SessionRelay {
  readonly #options: SessionRelayOptions;
  readonly #env: Record<string, string> = {};
  #pty: PseudoTtyInfo | undefined;
  #upstreamChannel: ClientChannel | undefined;
  /** The person's channel once a shell, exec or subsystem request started it. */
  #down: ServerChannel | undefined;
  #started = false;
  #closed = false;
  /** Set once the session is being ended for a reason of Warren's (see abort). */
  #aborted: Promise<void> | undefined;
  #abortReason: WarrenError | undefined;

  constructor(options: SessionRelayOptions) {
    this.#options = options;
    const session = options.session;
    session.on("pty", (accept, _reject, info) => {
      this.#pty = info;
      accept?.();
    });
    session.on("env", (accept, _reject, info) => {
      this.#env[info.key] = info.val;
      accept?.();
    });
    session.on("window-change", (accept, _reject, info) => {
      if (this.#upstreamChannel) this.#upstreamChannel.setWindow(info.rows, info.cols, info.height, info.width);
      else if (this.#pty) this.#pty = { ...this.#pty, rows: info.rows, cols: info.cols, width: info.width, height: info.height };
      accept?.();
    });
    session.on("signal", (accept, reject, info) => {
      if (!this.#upstreamChannel) return reject?.();
      try {
        this.#upstreamChannel.signal(info.name);
        accept?.();
      } catch {
        reject?.();
      }
    });
    session.on("x11", (_accept, reject) => reject?.());
    session.on("auth-agent", (_accept, reject) => reject?.());
    session.on("shell", (accept, reject) => this.#start({ kind: "shell" }, accept, reject));
    session.on("exec", (accept, reject, info) => this.#start({ kind: "exec", command: info.command }, accept, reject));
    session.on("subsystem", (accept, reject, info) => this.#start({ kind: "subsystem", name: info.name }, accept, reject));
    session.on("close", () => {
      this.#closed = true;
      this.#upstreamChannel?.close();
    });
  }

  #start(
    request: { kind: "shell" } | { kind: "exec"; command: string } | { kind: "subsystem"; name: string },
    accept: () => ServerChannel,
    reject: (() => void) | undefined,
  ): void {
    if (this.#started) return reject?.();
    this.#started = true;
    // Accepted at once: ssh2 drops a session whose EOF (stdin at its end, common for exec)
    // arrives before the request is answered, and the workspace's answer takes a round trip.
    // A refusal by the workspace's sshd then comes as a message and exit status 255.
    const down = accept();
    if (!down) return;
    this.#down = down;
    if (this.#abortReason) return this.#fail(down, this.#abortReason, true);
    const log = this.#options.log;
    const what = request.kind === "exec" ? "exec" : request.kind === "shell" ? "shell" : `subsystem ${request.name}`;
    Promise.all([this.#options.upstream, this.#options.admit()]).then(
      ([client]) => {
        if (this.#closed || this.#aborted) return;
        const opened = (err: Error | undefined, channel: ClientChannel) => {
          if (err) {
            log.info({ request: what, err: err.message }, "the workspace's sshd refused the session request");
            this.#fail(down, new WarrenError(ErrorCode.FailedPrecondition, `the SSH server of the workspace refused the ${what} request (${err.message})`));
            return;
          }
          if (this.#closed || this.#aborted) {
            channel.close();
            return;
          }
          this.#upstreamChannel = channel;
          this.#relay(down, channel);
        };
        const pty = this.#pty ? { rows: this.#pty.rows, cols: this.#pty.cols, width: this.#pty.width, height: this.#pty.height, term: this.#pty.term, modes: this.#pty.modes } : undefined;
        try {
          if (request.kind === "shell") client.shell(pty ?? false, { env: this.#env }, opened);
          else if (request.kind === "exec") client.exec(request.command, { env: this.#env, ...(pty ? { pty } : {}) }, opened);
          else client.subsys(request.name, opened);
        } catch (err) {
          // The workspace's connection went away between its ready and this request.
          this.#fail(down, err);
        }
      },
      (err: unknown) => this.#fail(down, err),
    );
  }

  /**
   * Ends the session because of `reason`: the workspace's side is closed and the person is told
   * why, as when it could not start. Resolves once the person's channel is ended; never rejects.
   */
  abort(reason: WarrenError): Promise<void> {
    if (this.#aborted) return this.#aborted;
    if (this.#closed) return Promise.resolve();
    const down = this.#down;
    const up = this.#upstreamChannel;
    if (up) {
      up.unpipe(down);
      up.stderr.unpipe(down?.stderr);
      down?.unpipe(up);
      up.close();
    }
    this.#abortReason = reason;
    this.#aborted = new Promise<void>((resolve) => {
      this.#options.session.once("close", () => resolve());
      // Not started yet: the shell, exec or subsystem request that comes next is told instead.
      if (down) this.#fail(down, reason, true);
    });
    return this.#aborted;
  }

  /** Tells the person why there is no session: a line on stderr and exit status 255. */
  #fail(channel: ServerChannel, err: unknown, aborting = false): void {
    if (this.#closed || (this.#aborted && !aborting)) return;
    const failure = sshFailureOf(WarrenError.from(err));
    const eol = this.#pty ? "\r\n" : "\n";
    channel.stderr.write(`${failure.text}${eol}`);
    finish(channel, { code: failure.exitStatus });
  }

  #relay(down: ServerChannel, up: ClientChannel): void {
    let exit: Exit | undefined;
    let pending = 3; // stdout end, stderr end, upstream close
    const done = () => {
      if (--pending !== 0 || this.#aborted) return;
      if (exit) return finish(down, exit);
      // The workspace's side went away without an exit status: say why when it is Warren's
      // doing (the workspace stopped or was deleted), rather than end without a word.
      this.#options.admit().then(
        () => {
          if (!this.#aborted) finish(down, undefined);
        },
        (err: unknown) => void this.abort(WarrenError.from(err)),
      );
    };
    up.on("exit", (code: number | null, signal?: string, coreDumped?: boolean, message?: string) => {
      exit = code !== null && code !== undefined ? { code } : { signal: signal ?? "SIGKILL", coreDumped: Boolean(coreDumped), message: message ?? "" };
    });
    up.once("end", done);
    up.stderr.once("end", done);
    up.once("close", done);
    up.pipe(down, { end: false });
    up.stderr.pipe(down.stderr, { end: false });
    // The person's EOF (stdin closed) becomes the workspace's EOF.
    down.pipe(up);
    down.on("error", () => up.close());
    up.on("error", () => down.close());
  }
}

/** Flushes pending output, then sends the exit status and ends (EOF + CLOSE) the channel. */
function finish(channel: ServerChannel, exit: Exit | undefined): void {
  const empty = Buffer.alloc(0);
  // An empty write's callback runs once everything written before it went out.
  channel.stderr.write(empty, () => {
    channel.write(empty, () => {
      try {
        if (exit && "code" in exit) channel.exit(exit.code);
        else if (exit) channel.exit(exit.signal, exit.coreDumped, exit.message);
      } catch {
        // An exit signal ssh2 does not know: the client sees no status, as with a lost one.
      }
      channel.end();
    });
  });
}
