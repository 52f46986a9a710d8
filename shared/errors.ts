/**
 * One error type for all of Warren. Each error carries a code from a fixed set and a message a
 * user can act on; HTTP status, gRPC status and SSH disconnect text are derived from the code
 * in one place each (see http-status.ts, grpc-status.ts).
 */
export const ErrorCode = {
  Canceled: "canceled",
  Unknown: "unknown",
  InvalidArgument: "invalid_argument",
  DeadlineExceeded: "deadline_exceeded",
  NotFound: "not_found",
  AlreadyExists: "already_exists",
  PermissionDenied: "permission_denied",
  ResourceExhausted: "resource_exhausted",
  FailedPrecondition: "failed_precondition",
  Aborted: "aborted",
  Unimplemented: "unimplemented",
  Internal: "internal",
  Unavailable: "unavailable",
  Unauthenticated: "unauthenticated",
  /** The workspace was reached but nothing answered on the port (HTTP 502). */
  BadGateway: "bad_gateway",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class WarrenError extends Error {
  override readonly name = "WarrenError";
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** Turns anything thrown into a WarrenError, keeping a WarrenError as it is. */
  static from(err: unknown, fallback: ErrorCode = ErrorCode.Internal): WarrenError {
    if (err instanceof WarrenError) return err;
    if (err instanceof Error) {
      if (err.name === "AbortError") return new WarrenError(ErrorCode.Canceled, "operation canceled", { cause: err });
      return new WarrenError(fallback, err.message, { cause: err });
    }
    return new WarrenError(fallback, String(err));
  }
}

export function isWarrenError(err: unknown, code?: ErrorCode): err is WarrenError {
  return err instanceof WarrenError && (code === undefined || err.code === code);
}
