import http2, { type ClientHttp2Stream } from "node:http2";
import net from "node:net";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlRequestSchema, ControlResponseSchema, TunnelRequestSchema, DialStatus } from "../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../shared/grpc-message.js";
import { startApp, type App } from "./harness/apps.js";
import { RawAgent } from "./harness/raw-agent.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/** A client that speaks the agent protocol by hand and then misbehaves. */
class HandRolledAgent extends RawAgent {
  control: ClientHttp2Stream | undefined;

  /** Opens the control stream, says hello and waits for welcome. */
  async connect(): Promise<void> {
    const control = this.session.request(this.headers("/warren.v1.AgentService/Control"));
    control.on("error", () => {});
    this.control = control;
    control.write(encodeGrpcMessage(ControlRequestSchema, create(ControlRequestSchema, { msg: { case: "hello", value: { version: "hostile", instanceId: "x" } } })));
    const decoder = new GrpcFrameDecoder(1 << 20);
    await new Promise<void>((resolve, reject) => {
      control.on("data", (chunk: Buffer) => {
        for (const m of decoder.push(chunk)) {
          if (decodeGrpcMessage(ControlResponseSchema, m).msg.case === "welcome") resolve();
        }
      });
      control.on("close", () => reject(new Error("control closed before welcome")));
    });
  }

  tunnel(): ClientHttp2Stream {
    const stream = this.session.request(this.headers("/warren.v1.AgentService/Tunnel"));
    stream.on("error", () => {});
    return stream;
  }

  /** Resolves with the gRPC status of a stream's response (headers or trailers). */
  static status(stream: ClientHttp2Stream): Promise<{ status: string; message: string }> {
    return new Promise((resolve) => {
      const on = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) resolve({ status: String(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) });
      };
      stream.on("response", on);
      stream.on("trailers", on);
      stream.resume();
    });
  }
}

describe("hostile agents", () => {
  let server: ServerHandle;
  let app: App;
  let goodAgent: AgentHandle;
  let hostileToken: string;

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("still fine"));
    server = await startServer();
    const good = await createWorkspace(server, "good", [app.port]);
    hostileToken = (await createWorkspace(server, "evil", [app.port])).agentToken;
    goodAgent = await startAgent(server, good.agentToken);
  });

  afterAll(async () => {
    await goodAgent?.stop();
    await server?.stop();
    await app?.close();
  });

  async function goodStillWorks(): Promise<void> {
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("good", app.port), headers: { "x-warren-token": server.adminToken } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("still fine");
  }

  it("drops a connection that sends garbage instead of HTTP/2", async () => {
    const socket = net.connect(server.agentPort, "127.0.0.1");
    socket.on("error", () => {});
    socket.resume();
    socket.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage".repeat(100)));
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    await goodStillWorks();
  });

  it("drops an agent that sends an oversized control frame", async () => {
    const agent = new HandRolledAgent(server.agentUrl, hostileToken);
    await agent.connect();
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(512 * 1024 * 1024, 1);
    agent.control!.write(prefix);
    agent.control!.write(Buffer.alloc(64 * 1024));
    await agent.closed;
    await goodStillWorks();
  });

  it("drops an agent that sends malformed protobuf on the control stream", async () => {
    const agent = new HandRolledAgent(server.agentUrl, hostileToken);
    await agent.connect();
    const junk = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, junk.length]), junk]);
    agent.control!.write(frame);
    await agent.closed;
    await goodStillWorks();
  });

  it("drops an agent that sends a dial result on a stream it was never asked to dial", async () => {
    const agent = new HandRolledAgent(server.agentUrl, hostileToken);
    await agent.connect();
    const stream = agent.tunnel();
    await new Promise((r) => setTimeout(r, 100));
    stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status: DialStatus.OK } } })));
    await agent.closed;
    await server.proc.waitFor((l) => String(l["err"] ?? "").includes("never asked to dial"), 5000, "the violation to be logged");
    await goodStillWorks();
  });

  it("drops an agent that sends an oversized frame on a claimed tunnel stream", async () => {
    const agent = new HandRolledAgent(server.agentUrl, hostileToken);
    await agent.connect();
    const stream = agent.tunnel();
    // Answer the server's dial with OK, then a frame far over the limit.
    stream.once("data", () => {
      stream.write(encodeGrpcMessage(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status: DialStatus.OK } } })));
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(100 * 1024 * 1024, 1);
      stream.write(prefix);
    });
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("evil", app.port), headers: { "x-warren-token": server.adminToken } });
    expect(res.status).toBe(502);
    await agent.closed;
    await goodStillWorks();
  });

  it("refuses tunnel streams opened before the control stream", async () => {
    const early = new HandRolledAgent(server.agentUrl, hostileToken);
    const status = await HandRolledAgent.status(early.tunnel());
    expect(status.status).toBe("9");
    expect(status.message).toMatch(/open the control stream/);
    early.session.destroy();

    await goodStillWorks();
  });

  it("refuses a control stream with a bad token", async () => {
    const agent = new HandRolledAgent(server.agentUrl, "wat_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    const control = agent.session.request(agent.headers("/warren.v1.AgentService/Control"));
    control.on("error", () => {});
    const status = await HandRolledAgent.status(control);
    expect(status).toEqual({ status: "16", message: "agent token is invalid, expired or revoked" });
    agent.session.destroy();
  });

  it("refuses tunnel streams beyond the per-connection limit with resource_exhausted", async () => {
    const agent = new HandRolledAgent(server.agentUrl, hostileToken);
    await agent.connect();
    const refused: string[] = [];
    for (let i = 0; i < 510; i++) {
      const s = agent.tunnel();
      void HandRolledAgent.status(s).then((st) => refused.push(st.status));
    }
    await new Promise((r) => setTimeout(r, 1500));
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set(["8"]));
    agent.session.destroy();
    await goodStillWorks();
  });

});
