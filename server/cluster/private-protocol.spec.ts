import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { ForwardDialStatus } from "../../shared/gen/warren/v1/private_pb.js";
import { httpStatusOf } from "../../shared/http-status.js";
import { errorOfForwardStatus, forwardStatusOf, HolderNotConnected } from "./private-protocol.js";

describe("private dial results", () => {
  it("carry a dial error's code across the hop, so the caller answers what the holder would have", () => {
    const cases: Array<[WarrenError, number]> = [
      [new WarrenError(ErrorCode.BadGateway, 'nothing is listening on port 1 in workspace "w"'), 502],
      [new WarrenError(ErrorCode.PermissionDenied, 'port 1 is not exposed by workspace "w"'), 403],
      [new WarrenError(ErrorCode.DeadlineExceeded, 'workspace "w" did not connect to port 1 within 10 ms'), 504],
      [new WarrenError(ErrorCode.Unavailable, 'workspace "w" has no free tunnel stream'), 503],
      [new WarrenError(ErrorCode.Internal, "boom"), 502],
    ];
    for (const [err, status] of cases) {
      const back = errorOfForwardStatus(forwardStatusOf(err), err.message);
      expect(httpStatusOf(back.code), err.code).toBe(status);
      expect(back.message).toBe(err.message);
      expect(back).not.toBeInstanceOf(HolderNotConnected);
    }
  });

  it("tell a stale holder apart, so that the caller tries the next one", () => {
    expect(forwardStatusOf(new HolderNotConnected("gone"))).toBe(ForwardDialStatus.NOT_CONNECTED);
    expect(errorOfForwardStatus(ForwardDialStatus.NOT_CONNECTED, "gone")).toBeInstanceOf(HolderNotConnected);
    expect(errorOfForwardStatus(ForwardDialStatus.UNSPECIFIED, "").message).toMatch(/failed the dial/);
  });
});
