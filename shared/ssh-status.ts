import { ErrorCode, type WarrenError } from "./errors.js";

/**
 * What an SSH client is shown for each error code: the one place this mapping lives. The
 * front door writes the text to the session's stderr and ends the session with the exit status
 * (255, as ssh itself exits when it cannot reach the other side), so scripts and people see
 * the same thing.
 */
export interface SshFailure {
  readonly text: string;
  readonly exitStatus: number;
}

export const SSH_FAILURE_EXIT_STATUS = 255;

function headline(code: ErrorCode): string {
  switch (code) {
    case ErrorCode.Unavailable:
      return "workspace unavailable";
    case ErrorCode.BadGateway:
      return "workspace sshd not reachable";
    case ErrorCode.DeadlineExceeded:
      return "workspace sshd did not answer in time";
    case ErrorCode.FailedPrecondition:
      return "cannot log in to the workspace";
    case ErrorCode.Unauthenticated:
    case ErrorCode.NotFound:
    case ErrorCode.PermissionDenied:
      return "access denied";
    case ErrorCode.ResourceExhausted:
      return "too many attempts";
    default:
      return "internal error";
  }
}

export function sshFailureOf(err: WarrenError): SshFailure {
  // Internal details stay in the server log.
  const detail = err.code === ErrorCode.Internal || err.code === ErrorCode.Unknown ? "see the server log" : err.message;
  return { text: `warren: ${headline(err.code)}: ${detail}`, exitStatus: SSH_FAILURE_EXIT_STATUS };
}
