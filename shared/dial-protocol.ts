import { ErrorCode, WarrenError } from "./errors.js";
import { DialStatus } from "./gen/warren/v1/agent_pb.js";

/*
 * The dial protocol, in one place for the agent, the server and the private API: the gRPC
 * paths, and what each DialStatus means to a person. The exchange on a stream is one
 * `dial` message (port, connection id), one `dialResult` answer, then data both ways
 * (tunnel-codec.ts); dial-handshake.ts runs it on the calling side, agent/local-dial.ts answers.
 */

/** The agent service (agent.proto): one Control stream per connection, many Tunnel streams. */
export const AGENT_SERVICE_PREFIX = "/warren.v1.AgentService/";
export const AGENT_CONTROL_PATH = `${AGENT_SERVICE_PREFIX}Control`;
export const AGENT_TUNNEL_PATH = `${AGENT_SERVICE_PREFIX}Tunnel`;

/** The private API between servers of a cluster (private.proto): its one method. */
export const PRIVATE_DIAL_PATH = "/warren.v1.PrivateService/Dial";

/**
 * What a failed DialStatus from the agent means, in words a person can act on. DRAINING is
 * not a failure of the dial (the agent is leaving: take another stream); callers handle it
 * before asking.
 */
export function errorOfDialStatus(workspace: string, port: number, status: DialStatus, message: string): WarrenError {
  const detail = message ? `: ${message}` : "";
  switch (status) {
    case DialStatus.REFUSED:
      return new WarrenError(ErrorCode.BadGateway, `nothing is listening on port ${port} in workspace "${workspace}"${detail}`);
    case DialStatus.PORT_NOT_ALLOWED:
      return new WarrenError(ErrorCode.PermissionDenied, `port ${port} is not exposed by workspace "${workspace}"`);
    case DialStatus.TIMEOUT:
      return new WarrenError(ErrorCode.DeadlineExceeded, `workspace "${workspace}" timed out connecting to port ${port}${detail}`);
    default:
      return new WarrenError(ErrorCode.BadGateway, `workspace "${workspace}" could not connect to port ${port}${detail}`);
  }
}

/** The agent's side: the DialStatus of a failed connect to a loopback port (its errno). */
export function dialStatusOfConnectError(errno: string | undefined): DialStatus {
  return errno === "ECONNREFUSED" ? DialStatus.REFUSED : DialStatus.ERROR;
}
