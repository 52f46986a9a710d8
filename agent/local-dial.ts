import net from "node:net";
import type { ClientHttp2Stream } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { DialStatus, TunnelRequestSchema, type Dial } from "../shared/gen/warren/v1/agent_pb.js";
import { encodeGrpcMessage } from "../shared/grpc-message.js";
import { dialStatusOfConnectError } from "../shared/dial-protocol.js";
import type { Logger } from "../shared/logger.js";
import type { TunnelSocket } from "../shared/tunnel-socket.js";
import type { AllowedPorts } from "./allowed-ports.js";

/** The agent only ever dials this address: it is never a way into the network around it. */
export const LOOPBACK = "127.0.0.1";

export interface LocalDialOptions {
  readonly socket: TunnelSocket;
  readonly stream: ClientHttp2Stream;
  readonly dial: Dial;
  /** Ports the workspace exposes now; a connection to a port it stops exposing is closed. */
  readonly allowedPorts: ReadonlySet<number> | AllowedPorts;
  readonly draining: boolean;
  readonly timeoutMs: number;
  readonly log: Logger;
}

function writeResult(stream: ClientHttp2Stream, status: DialStatus, message = ""): void {
  if (stream.destroyed || stream.closed) return;
  stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status, message } } })));
}

/** Refuses the dial: the result goes out, then the agent's side of the stream ends. */
function refuse(options: LocalDialOptions, status: DialStatus, message: string): void {
  writeResult(options.stream, status, message);
  if (!options.stream.destroyed) options.stream.end();
}

/**
 * Answers a Dial on a claimed tunnel stream: connects to 127.0.0.1:port when the workspace
 * exposes the port, reports the outcome, then splices the local connection and the tunnel with
 * half-close and backpressure. Resolves when the connection is over.
 */
export function handleDial(options: LocalDialOptions): Promise<void> {
  const { socket, dial, log } = options;
  const port = dial.port;
  const clog = log.child({ connectionId: dial.connectionId, port });
  if (options.draining) {
    refuse(options, DialStatus.DRAINING, "agent is shutting down");
    return Promise.resolve();
  }
  if (!options.allowedPorts.has(port)) {
    clog.warn("refused a dial to a port the workspace does not expose");
    refuse(options, DialStatus.PORT_NOT_ALLOWED, `port ${port} is not exposed`);
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    const local = net.connect({ host: LOOPBACK, port, allowHalfOpen: true, noDelay: true });
    let connected = false;
    const timer = setTimeout(() => {
      if (connected) return;
      local.destroy();
      refuse(options, DialStatus.TIMEOUT, `no answer from ${LOOPBACK}:${port} within ${options.timeoutMs} ms`);
      resolve();
    }, options.timeoutMs);
    local.once("connect", () => {
      connected = true;
      clearTimeout(timer);
      writeResult(options.stream, DialStatus.OK);
      if ("track" in options.allowedPorts) options.allowedPorts.track(port, local);
      clog.debug("connected");
      local.pipe(socket);
      socket.pipe(local);
    });
    local.on("error", (err: NodeJS.ErrnoException) => {
      if (!connected) {
        clearTimeout(timer);
        const status = dialStatusOfConnectError(err.code);
        clog.debug({ err: err.message }, "local connect failed");
        refuse(options, status, err.code ?? err.message);
        resolve();
        return;
      }
      socket.destroy();
    });
    socket.on("error", () => local.destroy());
    socket.on("close", () => {
      // The tunnel was reset: so is the local connection. After a clean finish, the pipes end it.
      if (!socket.completed) local.destroy();
      if (connected) resolve();
    });
    local.on("close", (hadError) => {
      // A refused connect was answered above (DialResult): resetting its stream as well sent
      // one RST_STREAM per refusal, and past about 1,000 of them (then 33 a second) node's
      // HTTP/2 rapid-reset defence on the server tore down the agent's whole session (issue 14).
      if (hadError && connected) socket.destroy();
    });
  });
}
