import { HTTPParser, methods } from "_http_common";
import { ErrorCode, WarrenError } from "../../shared/errors.js";

/**
 * HTTP/1.1 message framing with Node's own parser (llhttp, the one node:http uses), so that
 * the workspace proxy reads requests and responses exactly as node's HTTP server and client
 * would: the same limits, the same refusals of ambiguous framing (request smuggling), the same
 * chunked and close-delimited bodies. It is reached through node's internal `_http_common`
 * module; tests pin its behaviour on the Node version we ship.
 */

export interface MessageHead {
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Flat [name, value, ...] as received (casing and order kept). */
  readonly rawHeaders: string[];
  /** Request only. */
  readonly method: string;
  /** Request only. */
  readonly url: string;
  /** Response only. */
  readonly statusCode: number;
  /** Response only: the reason phrase as the app sent it. */
  readonly statusMessage: string;
  readonly upgrade: boolean;
  readonly shouldKeepAlive: boolean;
}

export interface MessageEvents {
  /** The first byte of a new message arrived (the start of its head). */
  readonly onMessageBegin?: () => void;
  /**
   * A message head was parsed. For a response, return true when the message has no body
   * whatever its headers say (the answer to a HEAD request).
   */
  readonly onHead: (head: MessageHead) => boolean | void;
  /** Body bytes, without chunked framing. */
  readonly onBody?: (chunk: Buffer) => void;
  readonly onComplete: () => void;
}

/** Largest request or response head accepted (node's own default is 16 KiB). */
export const MAX_HEAD_BYTES = 32 * 1024;

/**
 * The size of a request head on the wire, as near as its parsed parts tell: llhttp's own
 * limit counts only the request line's and the headers' text, not the ": " and line ends
 * between them, so a head of many small headers passes it at half again the limit.
 */
export function requestHeadBytes(method: string, url: string, rawHeaders: readonly string[]): number {
  // "METHOD URL HTTP/1.1\r\n" ... "\r\n"
  let bytes = method.length + url.length + 14;
  for (let i = 0; i < rawHeaders.length; i += 2) bytes += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 4;
  return bytes;
}

export class HttpMessageParser {
  readonly #parser = new HTTPParser();
  #headers: string[] = [];
  #url = "";
  #closed = false;
  #inMessage = false;
  #inHead = false;

  constructor(kind: "request" | "response", events: MessageEvents) {
    const parser = this.#parser;
    parser.initialize(kind === "request" ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, MAX_HEAD_BYTES, HTTPParser.kLenientNone);
    // Many headers arrive in several calls before the head completes.
    parser[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      this.#headers.push(...headers);
      this.#url += url;
    };
    parser[HTTPParser.kOnHeadersComplete] = (
      versionMajor: number,
      versionMinor: number,
      headers: string[] | undefined,
      method: number | undefined,
      url: string | undefined,
      statusCode: number | undefined,
      statusMessage: string | undefined,
      upgrade: boolean,
      shouldKeepAlive: boolean,
    ) => {
      this.#inHead = false;
      const rawHeaders = headers ?? this.#headers;
      const fullUrl = url ?? this.#url;
      this.#headers = [];
      this.#url = "";
      const skipBody = events.onHead({
        versionMajor,
        versionMinor,
        rawHeaders,
        method: method === undefined ? "" : (methods[method] ?? ""),
        url: fullUrl,
        statusCode: statusCode ?? 0,
        statusMessage: statusMessage ?? "",
        upgrade,
        shouldKeepAlive,
      });
      return skipBody ? 1 : 0;
    };
    // Only when wanted: for every body piece node copies the bytes into a new Buffer and
    // calls back into JS, which a parser that just follows the framing does not need.
    const onBody = events.onBody;
    if (onBody) parser[HTTPParser.kOnBody] = (chunk: Buffer) => onBody(chunk);
    parser[HTTPParser.kOnMessageComplete] = () => {
      this.#inMessage = false;
      events.onComplete();
    };
    parser[HTTPParser.kOnExecute] = () => {};
    parser[HTTPParser.kOnTimeout] = () => {};
    parser[HTTPParser.kOnMessageBegin] = () => {
      this.#inMessage = true;
      this.#inHead = true;
      events.onMessageBegin?.();
    };
  }

  /** Between a message's first byte and its end. */
  get inMessage(): boolean {
    return this.#inMessage;
  }

  /** Between a message's first byte and the end of its head. */
  get inHead(): boolean {
    return this.#inHead;
  }

  /**
   * Parses bytes; events fire synchronously. Returns the number of bytes consumed (fewer than
   * given after an upgrade: the rest belongs to the upgraded protocol). Throws a WarrenError
   * (invalid_argument) on a malformed message.
   */
  execute(data: Buffer): number {
    const ret = this.#parser.execute(data);
    if (typeof ret === "number") return ret;
    throw parseError(ret);
  }

  /** The peer closed: completes a message whose body ends with the connection. */
  finish(): void {
    const ret = this.#parser.finish();
    if (ret instanceof Error) throw new WarrenError(ErrorCode.InvalidArgument, `HTTP message cut short: ${ret.code ?? ret.message}`);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const parser = this.#parser;
    // Let any stack that is inside the parser unwind before its C++ object goes.
    setImmediate(() => parser.close());
  }
}

/**
 * A request head over the limit: answered 431 (Request Header Fields Too Large) rather than
 * the 400 of other malformed input, as node's own HTTP server does.
 */
export class HeadTooLargeError extends WarrenError {
  readonly httpStatus = 431;

  constructor() {
    super(ErrorCode.InvalidArgument, `request head over ${MAX_HEAD_BYTES} bytes (request line and headers together)`);
  }
}

/** A request head that took longer than allowed: answered 408 (Request Timeout), as node's HTTP server does. */
export class RequestTimeoutError extends WarrenError {
  readonly httpStatus = 408;

  constructor(timeoutMs: number) {
    super(ErrorCode.DeadlineExceeded, `request head not received within ${timeoutMs} ms`);
  }
}

/** The error for what llhttp (node's parser, here or in node's HTTP server) refused. */
export function parseError(err: { code?: string; reason?: string; message?: string }): WarrenError {
  if (err.code === "HPE_HEADER_OVERFLOW") return new HeadTooLargeError();
  return new WarrenError(ErrorCode.InvalidArgument, `malformed HTTP message: ${err.reason ?? err.code ?? err.message}`);
}
