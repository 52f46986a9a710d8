import http2, { type ClientHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDialHandshake } from "./dial-handshake.js";
import { errorOfDialStatus } from "./dial-protocol.js";
import { ErrorCode, WarrenError } from "./errors.js";
import { DialStatus, TunnelRequestSchema, TunnelResponseSchema, type TunnelRequest } from "./gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "./grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "./grpc-message.js";

/** What the peer (the agent's side) does with the dial it reads. */
type Peer = (stream: ServerHttp2Stream) => void;

describe("runDialHandshake (the calling side of a dial)", () => {
  let server: http2.Http2Server;
  let client: ClientHttp2Session;
  const peers: Peer[] = [];

  beforeAll(async () => {
    server = http2.createServer();
    server.on("stream", (stream) => peers.shift()!(stream));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });

  afterAll(async () => {
    client.close();
    await new Promise((resolve) => server.close(resolve));
  });

  function answer(stream: ServerHttp2Stream, status: DialStatus, message = ""): void {
    stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status, message } } })));
  }

  /** Runs a dial to port 8080 against a peer that behaves as `peer`. */
  function dial(peer: Peer, extra: { timeoutMs?: number; signal?: AbortSignal } = {}) {
    peers.push((stream) => {
      stream.respond({ ":status": 200 });
      // The dial message arrives first; the peer acts once it has read it.
      const decoder = new GrpcFrameDecoder(1 << 20);
      stream.once("data", (chunk: Buffer) => {
        const [first] = decoder.push(chunk);
        expect(decodeGrpcMessage(TunnelResponseSchema, first!).msg).toMatchObject({ case: "dial", value: { port: 8080 } });
        peer(stream);
      });
    });
    const stream = client.request({ ":method": "POST", ":path": "/t" });
    return runDialHandshake({
      stream,
      inbound: TunnelRequestSchema,
      maxMessageBytes: 1 << 20,
      finish: (s) => s.end(),
      request: encodeGrpcMessage(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "dial", value: { port: 8080, connectionId: "c1" } } })),
      answerOf: (m: TunnelRequest) => {
        if (m.msg.case !== "dialResult") return undefined;
        const { status, message } = m.msg.value;
        return status === DialStatus.OK ? { ok: true } : { ok: false, error: errorOfDialStatus("dev", 8080, status, message) };
      },
      closedEarly: () => new WarrenError(ErrorCode.Unavailable, "stream lost before the answer"),
      timeoutMs: extra.timeoutMs ?? 5000,
      timeoutError: () => new WarrenError(ErrorCode.DeadlineExceeded, "no answer in time"),
      signal: extra.signal,
    });
  }

  it("resolves with a byte socket once the peer answers OK", async () => {
    const socket = await dial((stream) => answer(stream, DialStatus.OK));
    expect(socket.destroyed).toBe(false);
    socket.destroy();
  });

  it("claim race: a stream retired at the moment it is claimed fails with closedEarly (the caller takes another)", async () => {
    await expect(dial((stream) => stream.close(http2.constants.NGHTTP2_CANCEL))).rejects.toMatchObject({ message: "stream lost before the answer" });
    // An agent retires an idle stream by ending its side: a dial that crossed it is not answered.
    await expect(dial((stream) => stream.end())).rejects.toMatchObject({ message: "stream lost before the answer" });
  });

  it("a refused dial is an answer: the error says what a person can do", async () => {
    await expect(dial((stream) => answer(stream, DialStatus.REFUSED, "ECONNREFUSED"))).rejects.toMatchObject({
      code: "bad_gateway",
      message: 'nothing is listening on port 8080 in workspace "dev": ECONNREFUSED',
    });
    await expect(dial((stream) => answer(stream, DialStatus.PORT_NOT_ALLOWED))).rejects.toMatchObject({ code: "permission_denied" });
  });

  it("a message that is not an answer is a protocol violation", async () => {
    const p = dial((stream) => stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "closeWrite", value: {} } }))));
    await expect(p).rejects.toBeInstanceOf(Error);
  });

  it("times out, and cancels with its signal", async () => {
    await expect(dial(() => {}, { timeoutMs: 30 })).rejects.toMatchObject({ code: "deadline_exceeded" });
    const abort = new AbortController();
    const p = dial(() => abort.abort(), { signal: abort.signal });
    await expect(p).rejects.toMatchObject({ code: "canceled" });
  });
});
