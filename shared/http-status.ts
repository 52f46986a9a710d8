import { ErrorCode } from "./errors.js";

/** The HTTP status for each error code: the one place this mapping lives. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.InvalidArgument:
      return 400;
    case ErrorCode.Unauthenticated:
      return 401;
    case ErrorCode.PermissionDenied:
      return 403;
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.AlreadyExists:
    case ErrorCode.Aborted:
      return 409;
    case ErrorCode.FailedPrecondition:
      return 412;
    case ErrorCode.ResourceExhausted:
      return 429;
    case ErrorCode.Canceled:
      return 499;
    case ErrorCode.Unimplemented:
      return 501;
    case ErrorCode.BadGateway:
      return 502;
    case ErrorCode.Unavailable:
      return 503;
    case ErrorCode.DeadlineExceeded:
      return 504;
    case ErrorCode.Internal:
    case ErrorCode.Unknown:
      return 500;
  }
}
