import http2, { type ServerHttp2Stream } from "node:http2";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlResponseSchema, DialStatus, TunnelRequestSchema, TunnelResponseSchema, type DialResult } from "../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../shared/grpc-message.js";
import { listen } from "./harness/apps.js";
import { startAgent, type AgentHandle } from "./harness/warren.js";

/**
 * A hand-rolled server that welcomes the real agent with one allowed port, then dials
 * whatever the test asks: the agent must refuse every port the workspace does not expose.
 */
describe("the agent dials only loopback ports the workspace exposes", () => {
  let fake: http2.Http2Server;
  let agent: AgentHandle;
  let allowed: net.Server;
  let forbidden: net.Server;
  let allowedPort: number;
  let forbiddenPort: number;
  let forbiddenConnections = 0;
  const idle: ServerHttp2Stream[] = [];

  beforeAll(async () => {
    allowed = net.createServer((s) => s.on("data", (d) => s.write(Buffer.concat([Buffer.from("echo:"), d]))));
    forbidden = net.createServer((s) => {
      forbiddenConnections++;
      s.destroy();
    });
    allowedPort = await listen(allowed);
    forbiddenPort = await listen(forbidden);
    fake = http2.createServer();
    fake.on("stream", (stream, headers) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      if (headers[":path"] === "/warren.v1.AgentService/Control") {
        stream.on("data", () => {});
        stream.write(
          encodeGrpcMessage(
            ControlResponseSchema,
            create(ControlResponseSchema, {
              msg: { case: "welcome", value: { workspace: "policy", allowedPorts: [allowedPort], urls: [], serverVersion: "fake", maxStreams: 10 } },
            }),
          ),
        );
      } else {
        idle.push(stream);
      }
    });
    const port = await listen(fake as unknown as net.Server);
    agent = await startAgent({ agentUrl: `http://127.0.0.1:${(fake.address() as AddressInfo).port || port}` }, "wat_fake");
  });

  afterAll(async () => {
    await agent?.stop();
    fake?.close();
    allowed?.close();
    forbidden?.close();
  });

  async function dial(port: number): Promise<{ result: DialResult; stream: ServerHttp2Stream; decoder: GrpcFrameDecoder }> {
    for (let i = 0; i < 50 && idle.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const stream = idle.shift()!;
    const decoder = new GrpcFrameDecoder(1 << 20);
    stream.write(encodeGrpcMessage(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "dial", value: { port, connectionId: "t" } } })));
    const result = await new Promise<DialResult>((resolve) => {
      stream.once("data", (chunk: Buffer) => {
        const [first] = decoder.push(chunk);
        const msg = decodeGrpcMessage(TunnelRequestSchema, first!);
        if (msg.msg.case === "dialResult") resolve(msg.msg.value);
      });
    });
    return { result, stream, decoder };
  }

  it("refuses a port that is not exposed, without connecting to it", async () => {
    const { result } = await dial(forbiddenPort);
    expect(result.status).toBe(DialStatus.PORT_NOT_ALLOWED);
    expect(forbiddenConnections).toBe(0);
    await agent.proc.waitFor((l) => l.msg === "refused a dial to a port the workspace does not expose", 5000);
  });

  it("connects an exposed port on 127.0.0.1 and carries bytes", async () => {
    const { result, stream, decoder } = await dial(allowedPort);
    expect(result.status).toBe(DialStatus.OK);
    const payload = Buffer.from("hello");
    const frame = encodeGrpcMessage(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "data", value: payload } }));
    stream.write(frame);
    const echoed = await new Promise<string>((resolve) => {
      stream.on("data", (chunk: Buffer) => {
        for (const m of decoder.push(chunk)) {
          const msg = decodeGrpcMessage(TunnelRequestSchema, m);
          if (msg.msg.case === "data") resolve(Buffer.from(msg.msg.value).toString());
        }
      });
    });
    expect(echoed).toBe("echo:hello");
    stream.close();
  });
});
