import http2, { type ClientHttp2Stream, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DialStatus, TunnelRequestSchema, TunnelResponseSchema } from "../../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../../shared/grpc-message.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";
import type { AgentConnection } from "./agent-connection.js";
import { respondOk } from "./grpc-responses.js";
import { TunnelDialer } from "./tunnel-dialer.js";
import type { AcquiredStream, StreamFinder } from "./tunnel-registry.js";

/** What the agent's side of a parked stream does once it reads the dial. */
type AgentMove = (stream: ClientHttp2Stream) => void;

const retire: AgentMove = (stream) => stream.end();
const answer =
  (status: DialStatus): AgentMove =>
  (stream) =>
    stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status, message: "" } } })));

const DEV: WorkspaceRef = { name: "dev", id: "w-dev" };

/**
 * The dialer over real HTTP/2 streams in this process (the agent's side is a client session
 * that parks streams and acts on the dial it reads), with a finder that hands out the parked
 * streams in order: the claim race without an agent process or a sleep.
 */
describe("TunnelDialer: the claim race", () => {
  let server: http2.Http2Server;
  let agent: http2.ClientHttp2Session;
  const parked: ServerHttp2Stream[] = [];
  const arrived: Array<() => void> = [];

  beforeAll(async () => {
    server = http2.createServer();
    server.on("stream", (stream) => {
      respondOk(stream);
      parked.push(stream);
      arrived.shift()?.();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    agent = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });

  afterAll(async () => {
    agent.close();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Parks one stream per move; each acts on the dial it is sent. */
  async function park(moves: AgentMove[]): Promise<void> {
    for (const move of moves) {
      const landed = new Promise<void>((resolve) => arrived.push(resolve));
      const stream = agent.request({ ":method": "POST", ":path": "/warren.v1.AgentService/Tunnel" });
      stream.on("error", () => {});
      const decoder = new GrpcFrameDecoder(1 << 20);
      stream.once("data", (chunk: Buffer) => {
        const [first] = decoder.push(chunk);
        expect(decodeGrpcMessage(TunnelResponseSchema, first!).msg.case).toBe("dial");
        move(stream);
      });
      await landed;
    }
  }

  function dialer(): { dialer: TunnelDialer; claims: () => number } {
    let claims = 0;
    const connection = { workspace: "dev", log: pino({ level: "silent" }), protocolViolation: () => {} } as unknown as AgentConnection;
    const finder: StreamFinder = {
      acquire: async (): Promise<AcquiredStream> => {
        claims++;
        const stream = parked.shift();
        if (!stream) throw new Error("no parked stream left");
        return { stream, connection };
      },
      isConnected: () => true,
    };
    return { dialer: new TunnelDialer({ finder, streamWaitMs: 1000, dialTimeoutMs: 1000, maxMessageBytes: 1 << 20, log: pino({ level: "silent" }) }), claims: () => claims };
  }

  it("a stream the agent retires as it is claimed is passed over: the dial takes the next one, unseen by the caller", async () => {
    await park([retire, retire, answer(DialStatus.OK)]);
    const { dialer: d, claims } = dialer();
    const socket = await d.dial(DEV, 8080);
    expect(socket.destroyed).toBe(false);
    expect(claims()).toBe(3);
    socket.destroy();
  });

  it("a draining agent's stream is passed over the same way", async () => {
    await park([answer(DialStatus.DRAINING), answer(DialStatus.OK)]);
    const { dialer: d, claims } = dialer();
    const socket = await d.dial(DEV, 8080);
    expect(claims()).toBe(2);
    socket.destroy();
  });

  it("gives up with unavailable when every stream offered is lost, and a refusal is the caller's answer at once", async () => {
    await park(Array.from({ length: 8 }, () => retire));
    const { dialer: d, claims } = dialer();
    await expect(d.dial(DEV, 8080)).rejects.toMatchObject({ code: "unavailable", message: 'workspace "dev" dropped every tunnel stream offered' });
    expect(claims()).toBe(8);

    await park([answer(DialStatus.REFUSED), answer(DialStatus.OK)]);
    const second = dialer();
    await expect(second.dialer.dial(DEV, 8080)).rejects.toMatchObject({ code: "bad_gateway" });
    expect(second.claims()).toBe(1);
    parked.shift()?.close();
  });
});
