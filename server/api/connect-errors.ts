import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { WarrenError } from "../../shared/errors.js";
import { grpcStatusOf } from "../../shared/grpc-status.js";

/** Connect and gRPC share status numbers, so a WarrenError maps through its gRPC status. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = WarrenError.from(err);
  return new ConnectError(e.message, grpcStatusOf(e.code) as Code);
}

/** Turns every WarrenError a handler throws into the matching Connect error. */
export const warrenErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
};
