import { ErrorCode, WarrenError } from "./errors.js";

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const toGrpc: Record<ErrorCode, number> = {
  [ErrorCode.Canceled]: GrpcStatus.CANCELLED,
  [ErrorCode.Unknown]: GrpcStatus.UNKNOWN,
  [ErrorCode.InvalidArgument]: GrpcStatus.INVALID_ARGUMENT,
  [ErrorCode.DeadlineExceeded]: GrpcStatus.DEADLINE_EXCEEDED,
  [ErrorCode.NotFound]: GrpcStatus.NOT_FOUND,
  [ErrorCode.AlreadyExists]: GrpcStatus.ALREADY_EXISTS,
  [ErrorCode.PermissionDenied]: GrpcStatus.PERMISSION_DENIED,
  [ErrorCode.ResourceExhausted]: GrpcStatus.RESOURCE_EXHAUSTED,
  [ErrorCode.FailedPrecondition]: GrpcStatus.FAILED_PRECONDITION,
  [ErrorCode.Aborted]: GrpcStatus.ABORTED,
  [ErrorCode.Unimplemented]: GrpcStatus.UNIMPLEMENTED,
  [ErrorCode.Internal]: GrpcStatus.INTERNAL,
  [ErrorCode.Unavailable]: GrpcStatus.UNAVAILABLE,
  [ErrorCode.Unauthenticated]: GrpcStatus.UNAUTHENTICATED,
  [ErrorCode.BadGateway]: GrpcStatus.UNAVAILABLE,
};

export function grpcStatusOf(code: ErrorCode): number {
  return toGrpc[code];
}

export function errorCodeOfGrpc(status: number): ErrorCode {
  for (const [code, grpc] of Object.entries(toGrpc)) {
    if (grpc === status && code !== ErrorCode.BadGateway) return code as ErrorCode;
  }
  return ErrorCode.Unknown;
}

/** gRPC carries messages percent-encoded in the grpc-message trailer. */
export function encodeGrpcStatusMessage(message: string): string {
  return encodeURIComponent(message).replace(/%20/g, " ");
}

export function decodeGrpcStatusMessage(value: string | string[] | undefined): string {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return "";
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** Builds the error a gRPC status and message stand for. */
export function errorFromGrpc(status: number, message: string): WarrenError {
  return new WarrenError(errorCodeOfGrpc(status), message || `gRPC status ${status}`);
}
