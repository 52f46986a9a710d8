import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema, ControlResponseSchema, TunnelResponseSchema, type ControlResponse, type WorkloadState } from "../../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../../shared/grpc-message.js";

/** How a control stream ended: the gRPC status and message the server gave (or none). */
export interface ControlEnd {
  readonly status: string | undefined;
  readonly message: string;
}

/**
 * An agent written by hand against proto/warren/v1/agent.proto, step by step, so that a test
 * can do what the real agent never does: wait between opening its control stream and hello,
 * report whatever it likes, watch for dials it should not get.
 */
export class RawAgent {
  readonly session: ClientHttp2Session;
  readonly closed: Promise<void>;
  /** Every control message the server sent, in order. */
  readonly received: ControlResponse[] = [];
  /** Dials the server sent on this agent's tunnel streams (ports). */
  readonly dials: number[] = [];
  #control: ClientHttp2Stream | undefined;
  #controlEnded: Promise<ControlEnd> | undefined;
  #onMessage: Array<() => void> = [];

  constructor(
    url: string,
    readonly token: string,
  ) {
    this.session = http2.connect(url);
    this.session.on("error", () => {});
    this.closed = new Promise((resolve) => this.session.once("close", () => resolve()));
  }

  headers(path: string): http2.OutgoingHttpHeaders {
    return { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${this.token}` };
  }

  /** Opens the control stream without saying hello; resolves once the server answered its headers (the token was accepted). */
  async openControl(): Promise<void> {
    const control = this.session.request(this.headers("/warren.v1.AgentService/Control"));
    control.on("error", () => {});
    this.#control = control;
    const decoder = new GrpcFrameDecoder(1 << 20);
    control.on("data", (chunk: Buffer) => {
      for (const m of decoder.push(chunk)) {
        this.received.push(decodeGrpcMessage(ControlResponseSchema, m));
        for (const wake of this.#onMessage.splice(0)) wake();
      }
    });
    this.#controlEnded = new Promise((resolve) => {
      let status: string | undefined;
      let message = "";
      const on = (h: IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      };
      control.on("response", on);
      control.on("trailers", on);
      control.on("close", () => resolve({ status, message }));
    });
    await new Promise<void>((resolve, reject) => {
      control.once("response", (h) => (h["grpc-status"] === undefined ? resolve() : reject(new Error(`control refused: ${String(h["grpc-message"])}`))));
      control.once("close", () => reject(new Error("control stream closed before its headers")));
    });
  }

  sendHello(): void {
    this.#write(create(ControlRequestSchema, { msg: { case: "hello", value: { version: "raw", instanceId: "raw-agent" } } }));
  }

  sendReport(state: WorkloadState, message = ""): void {
    this.#write(create(ControlRequestSchema, { msg: { case: "workload", value: { state, exitCode: 1, message } } }));
  }

  #write(message: Parameters<typeof encodeGrpcMessage<typeof ControlRequestSchema>>[1]): void {
    if (!this.#control) throw new Error("open the control stream first");
    this.#control.write(encodeGrpcMessage(ControlRequestSchema, message));
  }

  /** Resolves with the welcome, or undefined when the control stream ended without one. */
  async welcome(): Promise<ControlResponse | undefined> {
    for (;;) {
      const found = this.received.find((m) => m.msg.case === "welcome");
      if (found) return found;
      const ended = this.#controlEnded;
      if (!ended) throw new Error("open the control stream first");
      const woken = new Promise<"message">((resolve) => this.#onMessage.push(() => resolve("message")));
      if ((await Promise.race([woken, ended.then(() => "ended" as const)])) === "ended") {
        return this.received.find((m) => m.msg.case === "welcome");
      }
    }
  }

  /** Resolves once the control stream is over, with the status the server gave. */
  controlEnd(): Promise<ControlEnd> {
    if (!this.#controlEnded) throw new Error("open the control stream first");
    return this.#controlEnded;
  }

  /** Opens `count` idle tunnel streams; dials arriving on them are recorded in `dials`. */
  parkStreams(count: number): void {
    for (let i = 0; i < count; i++) {
      const stream = this.session.request(this.headers("/warren.v1.AgentService/Tunnel"));
      stream.on("error", () => {});
      const decoder = new GrpcFrameDecoder(1 << 20);
      stream.on("data", (chunk: Buffer) => {
        for (const m of decoder.push(chunk)) {
          const msg = decodeGrpcMessage(TunnelResponseSchema, m);
          if (msg.msg.case === "dial") this.dials.push(msg.msg.value.port);
        }
      });
    }
  }

  destroy(): void {
    this.session.destroy();
  }
}
