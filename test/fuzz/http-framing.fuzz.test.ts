import { createHash } from "node:crypto";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpMessageParser } from "../../server/proxy/http-message-parser.js";
import { startSplicedFrontDoor } from "../harness/spliced.js";
import { fuzzParameters, fuzzTimeoutMs } from "./fuzz-settings.js";

/** How the app frames its answer to one request (the request asks for it in X-Answer). */
type Answer = "length" | "chunked" | "hints" | "empty" | "cookie";

interface FuzzRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: { readonly kind: "none" } | { readonly kind: "length"; readonly data: string } | { readonly kind: "chunked"; readonly pieces: string[] };
  readonly answer: Answer;
  /** How the app cuts its answer's body into writes. */
  readonly answerPieces: number;
}

const token = fc.stringMatching(/^[a-z0-9-]{1,12}$/);
const requestArb: fc.Arbitrary<FuzzRequest> = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"),
  path: fc.stringMatching(/^\/[a-zA-Z0-9._~%/?=&-]{0,40}$/),
  headers: fc.array(fc.tuple(token.map((t) => `X-Fuzz-${t}`), fc.stringMatching(/^[ -~]{0,30}$/).map((v) => v.trim())), { maxLength: 5 }),
  body: fc.oneof(
    fc.constant({ kind: "none" as const }),
    fc.record({ kind: fc.constant("length" as const), data: fc.string({ maxLength: 3000 }) }),
    fc.record({ kind: fc.constant("chunked" as const), pieces: fc.array(fc.string({ minLength: 1, maxLength: 500 }), { maxLength: 6 }) }),
  ),
  answer: fc.constantFrom<Answer>("length", "chunked", "hints", "empty", "cookie"),
  answerPieces: fc.integer({ min: 1, max: 5 }),
});

function serialize(requests: readonly FuzzRequest[], host: string): Buffer {
  const parts: Buffer[] = [];
  requests.forEach((r, i) => {
    let head = `${r.method} ${r.path} HTTP/1.1\r\nHost: ${host}\r\nX-Answer: ${r.answer}\r\nX-Pieces: ${r.answerPieces}\r\n`;
    for (const [name, value] of r.headers) head += `${name}: ${value}\r\n`;
    if (i === requests.length - 1) head += "Connection: close\r\n";
    if (r.body.kind === "length") head += `Content-Length: ${Buffer.byteLength(r.body.data)}\r\n\r\n${r.body.data}`;
    else if (r.body.kind === "chunked") {
      head += "Transfer-Encoding: chunked\r\n\r\n";
      for (const piece of r.body.pieces) head += `${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`;
      head += "0\r\n\r\n";
    } else head += "\r\n";
    parts.push(Buffer.from(head, "utf8"));
  });
  return Buffer.concat(parts);
}

/**
 * Writes `bytes` cut at `cuts`, one piece per turn of the event loop, half-closing after them
 * with `end`; reads until the server closes.
 */
function exchange(port: number, bytes: Buffer, cuts: number[], end = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    socket.on("data", (c: Buffer) => got.push(c));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(got)));
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    let at = 0;
    const next = () => {
      const p = points.shift();
      if (p === undefined) {
        if (end) socket.end(bytes.subarray(at));
        else socket.write(bytes.subarray(at));
        return;
      }
      socket.write(bytes.subarray(at, p));
      at = p;
      setImmediate(next);
    };
    next();
  });
}

interface Parsed {
  readonly status: number;
  readonly body: string;
  readonly setCookie: string[];
}

/** The final responses in a raw stream (1xx left out), bodies skipped after HEAD. */
function parseResponses(raw: Buffer, methods: readonly string[]): Parsed[] {
  const out: Parsed[] = [];
  let body: Buffer[] = [];
  let current: { status: number; setCookie: string[] } | undefined;
  let index = 0;
  const parser = new HttpMessageParser("response", {
    onHead: (head) => {
      if (head.statusCode < 200) {
        current = undefined;
        return false;
      }
      const setCookie: string[] = [];
      for (let i = 0; i < head.rawHeaders.length; i += 2) if (head.rawHeaders[i]!.toLowerCase() === "set-cookie") setCookie.push(head.rawHeaders[i + 1]!);
      current = { status: head.statusCode, setCookie };
      body = [];
      return methods[index] === "HEAD";
    },
    onBody: (chunk) => void body.push(chunk),
    onComplete: () => {
      if (!current) return;
      out.push({ ...current, body: Buffer.concat(body).toString("utf8") });
      current = undefined;
      index++;
    },
  });
  parser.execute(raw);
  try {
    parser.finish();
  } catch {
    // A cut-short last message is left out.
  }
  parser.close();
  return out;
}

describe("HTTP/1.1 framing through the spliced fast path (differential, node's HTTP server as the oracle)", () => {
  let app: http.Server;
  let appPort: number;
  let door: Awaited<ReturnType<typeof startSplicedFrontDoor>>;

  beforeAll(async () => {
    app = http.createServer((req, res) => {
      const hash = createHash("sha256");
      let length = 0;
      req.on("data", (c: Buffer) => {
        hash.update(c);
        length += c.length;
      });
      req.on("end", () => {
        const answer = String(req.headers["x-answer"]);
        // A damaged X-Pieces ("q") must not make the app loop forever on NaN: that was the
        // "hang" seed 1410848023 found (the app, not Warren, never finished its answer).
        const pieces = Math.max(1, Math.floor(Number(req.headers["x-pieces"] ?? 1)) || 1);
        const fuzzHeaders = Object.entries(req.headers).filter(([k]) => k.startsWith("x-fuzz-"));
        const text = JSON.stringify({ method: req.method, url: req.url, length, sha: hash.digest("hex").slice(0, 16), fuzzHeaders });
        if (answer === "hints") res.writeEarlyHints({ link: "</x.css>; rel=preload" });
        if (answer === "cookie") res.setHeader("set-cookie", ["k=v; Domain=warren.localhost; Path=/", "k2=v2; path=/; domain=.x.example"]);
        if (answer === "empty") {
          res.statusCode = 204;
          res.end();
          return;
        }
        if (answer !== "chunked") res.setHeader("content-length", Buffer.byteLength(text));
        const step = Math.ceil(text.length / pieces);
        let at = 0;
        const more = () => {
          if (at >= text.length) return void res.end();
          res.write(text.slice(at, at + step));
          at += step;
          setImmediate(more);
        };
        more();
      });
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    appPort = (app.address() as AddressInfo).port;
    door = await startSplicedFrontDoor(appPort);
  });

  afterAll(async () => {
    await door?.close();
    app.closeAllConnections();
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  it(
    "answers pipelined requests cut anywhere exactly as the app answers them directly (statuses and bodies, in order; cookies kept to the host)",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(requestArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), async (requests, cuts) => {
          const wire = serialize(requests, "80-fuzz.warren.localhost");
          const methods = requests.map((r) => r.method);
          const [spliced, direct] = await Promise.all([exchange(door.port, wire, cuts), exchange(appPort, wire, [])]);
          const through = parseResponses(spliced, methods);
          const oracle = parseResponses(direct, methods);
          expect(oracle).toHaveLength(requests.length);
          expect(through.map((r) => [r.status, r.body])).toEqual(oracle.map((r) => [r.status, r.body]));
          for (const r of through) for (const c of r.setCookie) expect(c).not.toMatch(/domain=/i);
        }),
        fuzzParameters(25),
      );
    },
    fuzzTimeoutMs(60_000),
  );

  it(
    "never hangs on a damaged request stream: every answer is a whole HTTP message and the connection ends",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(requestArb, { minLength: 1, maxLength: 3 }),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
          fc.array(fc.nat(), { maxLength: 4 }),
          async (requests, damage, cuts) => {
            // No HEAD here: the check below reads answers without knowing what they answer.
            const wire = Buffer.from(serialize(requests.map((r) => (r.method === "HEAD" ? { ...r, method: "GET" } : r)), "80-fuzz.warren.localhost"));
            for (const [at, byte] of damage) wire[at % wire.length] = byte;
            // The client ends its side: what it sent is all there is.
            const spliced = await exchange(door.port, wire, cuts, true);
            // Whatever came back parses as responses (a connection that closes mid-answer is allowed).
            const parser = new HttpMessageParser("response", { onHead: () => false, onComplete: () => {} });
            expect(() => parser.execute(spliced)).not.toThrow();
            parser.close();
          },
        ),
        fuzzParameters(25),
      );
    },
    fuzzTimeoutMs(60_000),
  );
});
