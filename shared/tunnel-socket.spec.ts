import http2, { type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { TunnelRequestSchema } from "./gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "./grpc-frame-decoder.js";
import { encodeTunnelData } from "./tunnel-codec.js";
import { TunnelSocket } from "./tunnel-socket.js";

const CLOSE_WRITE = Buffer.from([0, 0, 0, 0, 2, (3 << 3) | 2, 0]);

describe("TunnelSocket.detach", () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  /** A real HTTP/2 stream pair in this process: the server side, and a writer for the client side. */
  async function streamPair(): Promise<{ server: ServerHttp2Stream; write: (b: Buffer) => void; end: () => void; cancel: () => void }> {
    const h2 = http2.createServer();
    const serverStream = new Promise<ServerHttp2Stream>((resolve) => h2.on("stream", (s) => resolve(s)));
    await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", () => resolve()));
    const client = http2.connect(`http://127.0.0.1:${(h2.address() as AddressInfo).port}`);
    const req = client.request({ ":method": "POST", ":path": "/" }, { endStream: false });
    req.on("error", () => {});
    cleanups.push(() => {
      client.destroy();
      h2.close();
    });
    req.write(Buffer.alloc(0));
    const server = await serverStream;
    server.respond({ ":status": 200 });
    return { server, write: (b) => req.write(b), end: () => req.end(), cancel: () => req.close(http2.constants.NGHTTP2_CANCEL) };
  }

  it("hands back unread data, the peer's half-close and a partial frame as raw frames, leaving the stream open", async () => {
    const { server, write } = await streamPair();
    const socket = new TunnelSocket({ stream: server, inbound: TunnelRequestSchema, maxMessageBytes: 1 << 20, finish: () => {} });
    const partial = Buffer.concat(encodeTunnelData(Buffer.from("ghijkl")));
    write(Buffer.concat([...encodeTunnelData(Buffer.from("abc")), ...encodeTunnelData(Buffer.from("def")), CLOSE_WRITE, partial.subarray(0, 8)]));
    await new Promise<void>((resolve) => socket.once("readable", () => setTimeout(resolve, 50)));

    const { stream, pending } = socket.detach();
    expect(stream).toBe(server);
    expect(socket.destroyed).toBe(true);
    expect(server.destroyed).toBe(false);
    // The frames decode back to the same byte stream: data, close_write, then the partial frame completes.
    const decoder = new GrpcFrameDecoder(1 << 20);
    const messages = decoder.push(Buffer.concat(pending));
    expect(messages.map((m) => m.toString("latin1"))).toEqual([`\x12\x06abcdef`, "\x1a\x00"]);
    expect(decoder.push(partial.subarray(8)).map((m) => m.subarray(2).toString())).toEqual(["ghijkl"]);
    // The socket no longer reads the stream: later bytes stay for the new owner.
    const later: Buffer[] = [];
    server.on("data", (c: Buffer) => later.push(c));
    write(Buffer.from("x"));
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(later).toString()).toBe("x");
  });

  it("regression: a stream the peer resets is a reset, not a clean end (node ends a reset stream's readable side too)", async () => {
    const { server, write, cancel } = await streamPair();
    const socket = new TunnelSocket({ stream: server, inbound: TunnelRequestSchema, maxMessageBytes: 1 << 20, finish: () => {} });
    // This side has finished writing, as a forwarded connection whose upload is done.
    socket.end();
    const got: Buffer[] = [];
    socket.on("data", (c: Buffer) => got.push(c));
    const outcome = new Promise<string>((resolve) => {
      socket.once("end", () => resolve("end"));
      socket.once("error", (err) => resolve(`error: ${err.message}`));
    });
    write(Buffer.concat(encodeTunnelData(Buffer.from("partial"))));
    await new Promise((r) => setTimeout(r, 50));
    cancel();
    expect(await outcome).toBe("error: tunnel closed by the other side");
    expect(Buffer.concat(got).toString()).toBe("partial");
  });
});
