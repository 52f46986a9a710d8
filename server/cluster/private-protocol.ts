import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { ForwardDialStatus } from "../../shared/gen/warren/v1/private_pb.js";

/** The holder had no agent of the workspace (stale presence): the caller tries the next one. */
export class HolderNotConnected extends WarrenError {
  constructor(message: string) {
    super(ErrorCode.Unavailable, message);
  }
}

/** The holder could not be reached or dropped the call before answering: the dial never started there. */
export class HolderUnreachable extends WarrenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Unavailable, message, options);
  }
}

/** How the holding server reports a dial's failure: the code survives the hop, so A answers what B would have. */
export function forwardStatusOf(err: WarrenError): ForwardDialStatus {
  switch (err.code) {
    case ErrorCode.Unavailable:
      return err instanceof HolderNotConnected ? ForwardDialStatus.NOT_CONNECTED : ForwardDialStatus.UNAVAILABLE;
    case ErrorCode.BadGateway:
      return ForwardDialStatus.REFUSED;
    case ErrorCode.PermissionDenied:
      return ForwardDialStatus.PORT_NOT_ALLOWED;
    case ErrorCode.DeadlineExceeded:
      return ForwardDialStatus.TIMEOUT;
    default:
      return ForwardDialStatus.ERROR;
  }
}

/** The caller's side of forwardStatusOf. */
export function errorOfForwardStatus(status: ForwardDialStatus, message: string): WarrenError {
  switch (status) {
    case ForwardDialStatus.NOT_CONNECTED:
      return new HolderNotConnected(message);
    case ForwardDialStatus.UNAVAILABLE:
      return new WarrenError(ErrorCode.Unavailable, message);
    case ForwardDialStatus.REFUSED:
      return new WarrenError(ErrorCode.BadGateway, message);
    case ForwardDialStatus.PORT_NOT_ALLOWED:
      return new WarrenError(ErrorCode.PermissionDenied, message);
    case ForwardDialStatus.TIMEOUT:
      return new WarrenError(ErrorCode.DeadlineExceeded, message);
    default:
      return new WarrenError(ErrorCode.BadGateway, message || "the holding server failed the dial");
  }
}
